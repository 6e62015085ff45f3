"""foldlite.physics.minimize: progress checks carry the optimiser's state and can stop a run."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from conftest import perturbed_topology

from foldlite.physics.minimize import MinSettings, minimize, run_minimizer


@pytest.fixture(scope="module")
def system():
    topo, _ = perturbed_topology(seed=3, sigma=0.3)
    # Tolerances off: every run takes exactly max_steps steps unless a check stops it.
    settings = MinSettings(max_steps=60, grad_tol=0.0, energy_tol=0.0)
    return topo, settings


def test_checks_carry_the_optimiser_state(system):
    topo, s = system
    plain = minimize(topo.reference, topo, None, s)
    calls = []

    def never(x, steps, energy):
        calls.append((steps, energy))
        assert x.shape == topo.reference.shape
        return False

    checked = minimize(topo.reference, topo, None, s, check_every=20, should_stop=never)
    # Asked at 20 and 40 (not at the end); the run is the same as one without checks.
    assert [c[0] for c in calls] == [20, 40]
    assert all(np.isfinite(e) for _, e in calls) and calls[1][1] < calls[0][1]
    assert int(checked.steps) == int(plain.steps) == 60 and not checked.stopped
    np.testing.assert_allclose(np.asarray(checked.positions), np.asarray(plain.positions),
                               atol=1e-4)


def test_a_check_can_stop_the_run(system):
    topo, s = system
    short = minimize(topo.reference, topo, None, dataclasses.replace(s, max_steps=40))
    stopped, _ = run_minimizer(topo.reference, topo, None, s, check_every=20,
                               should_stop=lambda x, steps, energy: steps >= 40)
    assert stopped.stopped and int(stopped.steps) == 40
    np.testing.assert_allclose(np.asarray(stopped.positions), np.asarray(short.positions),
                               atol=1e-4)
    assert stopped.builds >= 1  # the first step builds the neighbour list
