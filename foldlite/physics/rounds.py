"""The minimisation rounds of a refinement (``foldlite.physics.refine``, step 4), as a small
engine with explicit state.

``RefineRounds(config, topo, topo_np, layout, residue_weight).run(metrics_before)`` minimises
the flat heavy-atom positions in rounds:

* a collapsed start (AlphaFold2 clash violations on more than ``CROWDED_CLASH_FRACTION`` of the
  atoms) gets weaker restraints (``collapsed_restraint_weight``), is opened at the level of its
  CA trace (``coarse.relax_ca``; every atom moves with its residue's CA and the restraints hold
  the opened start), and gets ``len(clash_ramp)`` rounds with a softened repulsion first;
* then up to ``max_rounds`` rounds at full strength; after each, the restraints of residues
  with violations (and clashes, with ``release_clashes``) are released and the next round
  starts, until none is left (AlphaFold2's relax loop).

Each round (``minimize_round``) runs the jitted minimiser with neighbour-list capacities
estimated from the coordinates, and ends by the optimiser's rule, by ``SettleCheck`` (clean and
the energy no longer falling), or at its step budget.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from foldlite import constants as rc
from foldlite.physics.coarse import relax_ca
from foldlite.physics.config import RefineConfig
from foldlite.physics.minimize import MinSettings, run_minimizer
from foldlite.physics.neighbors import (DEFAULT_CAPACITIES, capacity_level,
                                       estimate_capacities)
from foldlite.physics.topology import AtomLayout, Topology
from foldlite.physics.validation import (clashing_atoms, evaluate, list_cutoff,
                                         metrics_from_values, violating_atoms)

_CA = rc.atom_order["CA"]

#: A start with AlphaFold2 clash violations (overlap > 1.5 A) on more than this fraction of its
#: atoms counts as collapsed and gets the ``clash_ramp`` rounds first.
CROWDED_CLASH_FRACTION = 0.1
#: Steps between re-estimates of the neighbour-list capacities of a crowded structure when
#: ``RefineConfig.check_every`` is 0 (see ``minimize_round``).
CROWDED_CHUNK = 100


def evaluate_energy(x: jax.Array, topo: Topology, topo_np: Topology, weights: Any
                    ) -> tuple[dict, dict]:
    """Energy terms and validation values of positions ``x`` [A, 3] with ``topo``'s restraints
    (``validation.evaluate``). Neighbour-list capacities come from the coordinates: the
    bucket's defaults for any folded protein (no new compile), larger ones for crowded input
    (e.g. collapsed models). ``topo_np``: the same topology as numpy arrays (atom mask and
    exclusions for the estimate)."""
    caps, _ = estimate_capacities(np.asarray(x), topo_np.atom_mask, list_cutoff(weights),
                                  topo_np.exclusions)
    return evaluate(x, topo, weights, caps)


def minimize_round(x, topo_j, topo_np, settings: MinSettings, cutoff: float, *,
                   check_every: int = 0, settled: Callable | None = None):
    """One minimisation round of up to ``settings.max_steps`` steps from ``x`` [A,3].

    Neighbour-list capacities come from the current coordinates (``estimate_capacities``: the
    bucket's defaults for a folded protein, so no new compile). While they are above the
    defaults (a crowded structure, e.g. a collapsed model) they are re-estimated every
    ``check_every`` steps (``CROWDED_CHUNK`` when 0), and the round goes on with smaller lists
    once the structure has opened up enough for a set at least two steps down the ladder, or
    for the defaults (each switch restarts the optimiser and needs the program of that set: in
    a new process about a second to trace and load, even from the persistent cache, so the
    walk down skips sets). An overcrowded structure (lists beyond
    ``neighbors.MAX_CAPACITIES``) is minimised with truncated lists until they fit.
    ``settled(x, energy) -> bool`` is asked every ``check_every`` steps with the positions and
    the minimised energy (the optimiser carries its state across) and ends the round when
    True.

    Returns (x, steps, how it ended: "converged" | "settled" | "step budget", ended with
    truncated lists, trajectory frames [F, A, 3] or None, neighbour-list builds).
    """
    total = settings.max_steps
    steps, frames, builds = 0, [], 0
    end = "step budget"
    truncated = False
    while steps < total:
        caps, truncated = estimate_capacities(np.asarray(x), topo_np.atom_mask, cutoff,
                                              topo_np.exclusions)
        crowded = truncated or caps != DEFAULT_CAPACITIES
        flags = {}

        def should_stop(xx, n, energy, _caps=caps, _truncated=truncated):
            if settled is not None and settled(xx, energy):
                flags["settled"] = True
                return True
            if _truncated or _caps != DEFAULT_CAPACITIES:
                now, still = estimate_capacities(np.asarray(xx), topo_np.atom_mask, cutoff,
                                                 topo_np.exclusions)
                level, was = capacity_level(now), capacity_level(_caps)
                if (_truncated and not still) or level <= max(was - 2, 0) or (
                        level == 0 and was > 0):
                    return True  # much smaller lists fit now: go on with them
            return False

        every = check_every if check_every else (CROWDED_CHUNK if crowded else 0)
        use_check = settled is not None or crowded
        res, used = run_minimizer(x, topo_j, None, dataclasses.replace(
            settings, max_steps=total - steps, tolerate_overflow=truncated, **caps),
            check_every=every if use_check else 0,
            should_stop=should_stop if (use_check and every) else None)
        x = res.positions
        steps += int(res.steps)
        builds += res.builds
        if res.frames is not None:
            frames.append(res.frames if not frames else res.frames[1:])
        truncated = used.tolerate_overflow and bool(res.overflow)
        if flags.get("settled"):
            end = "settled"
            break
        if bool(res.converged):
            end = "converged"
            break
        if not res.stopped:
            break
    trajectory = np.concatenate(frames) if frames else None
    return x, steps, end, truncated, trajectory, builds


class SettleCheck:
    """The early stop of a full-strength round, called as ``(x, energy) -> bool``: True once the
    minimised energy fell by less than ``tol`` (relative) since the previous call (never at the
    first) and ``x`` has no violations: the round has converged to ``tol`` (a round with
    violations left goes on to the optimiser's own rule or its step budget, as AlphaFold2's
    relax, before their restraints are released). In a round after restraints were released
    (``released``) also True as soon as ``x`` has no violations and no clashes: the released
    residues have done what they were released for, and would only drift away from the start.

    ``problems(x) -> (violations, clashes)`` is asked only when the energy criterion is met or
    after a release. State: ``last_energy``, the energy at the previous call.
    """

    def __init__(self, tol: float, problems: Callable[[Any], tuple[int, int]], *,
                 released: bool):
        self.tol = tol
        self.problems = problems
        self.released = released
        self.last_energy = math.inf

    def __call__(self, x, energy: float) -> bool:
        drop = (self.last_energy - energy) / max(abs(energy), 1.0)
        self.last_energy = energy
        if drop >= self.tol and not self.released:
            return False
        violations, clashes = self.problems(x)
        if violations:
            return False
        return drop < self.tol or clashes == 0


class RefineRounds:
    """The rounds of one refinement and their state (see the module docstring).

    Args:
      config: the refinement settings.
      topo: the topology as jnp arrays, restrained to the start (``topo.reference``).
      topo_np: the same topology as numpy arrays.
      layout: the topology's atom layout.
      residue_weight: [L] restraint scale per residue (the coarse pre-relaxation's weights).
      record_trajectory: keep the minimiser's frames (every ``config.trajectory_every`` steps).

    State, read after ``run``:
      x: [A, 3] positions (starts at ``topo.reference``).
      topo: the topology of the next round: restraints weakened for a collapsed start, those of
        released residues zero, the reference moved by the coarse pre-relaxation.
      released: restraints were released after a round.
      steps, rounds: optimiser steps and rounds run.
      converged: the last round ended by a stopping rule, not its step budget.
      truncated: the last round ended with truncated neighbour lists.
      collapsed: the start counted as collapsed (``CROWDED_CLASH_FRACTION``).
      restraint_weight: the restraint weight (kcal/mol/A^2) the rounds used.
      coarse: what the coarse pre-relaxation did (dict), or None.
      frames: trajectory frames of each round ([F, A, 3]; a round's first frame, equal to the
        previous round's last, is dropped).
      log: one dict per round (``RefineReport.round_log``).
    """

    def __init__(self, config: RefineConfig, topo: Topology, topo_np: Topology, layout: AtomLayout,
                 residue_weight: np.ndarray, *, record_trajectory: bool = False):
        self.config = config
        self.topo_np = topo_np
        self.layout = layout
        self.residue_weight = residue_weight
        self.record_trajectory = record_trajectory
        self.weights = config.energy_weights()
        self.settings = MinSettings(
            weights=self.weights, optimizer=config.optimizer,
            learning_rate=config.learning_rate, max_steps=config.max_steps,
            grad_tol=config.grad_tol, energy_tol=config.energy_tol, patience=config.patience,
            skin=config.neighbor_skin,
            trajectory_every=config.trajectory_every if record_trajectory else 0)
        self.x = topo.reference
        self.topo = topo
        self.released = False
        self.steps = 0
        self.rounds = 0
        self.converged = False
        self.truncated = False
        self.collapsed = False
        self.restraint_weight = config.restraint_weight
        self.coarse: dict | None = None
        self.frames: list[np.ndarray] = []
        self.log: list[dict] = []

    def evaluate(self, x: jax.Array, topo: Topology) -> tuple[dict, dict]:
        """Energy terms and validation values of ``x`` with ``topo``'s restraints."""
        return evaluate_energy(x, topo, self.topo_np, self.weights)

    def run(self, metrics_before: dict) -> "RefineRounds":
        """All rounds, from the start whose validation metrics are ``metrics_before``."""
        cfg = self.config
        self.collapsed = bool(metrics_before["clash_violations"]
                              > CROWDED_CLASH_FRACTION * self.layout.num_atoms)
        ramp = tuple(cfg.clash_ramp) if self.collapsed else ()
        if self.collapsed:
            self._open_collapsed_start()
        scales = ramp + (1.0,) * cfg.max_rounds
        if cfg.max_steps == 0:
            return self
        for number, scale in enumerate(scales, start=1):
            self.rounds = number
            values = self._round(scale)
            if number == len(scales):
                break
            if scale < 1.0:
                continue  # a softened round leaves overlaps by design: no restraint is released
            if not self._release(values):
                break
        return self

    def trajectory(self) -> np.ndarray | None:
        """[F, A, 3] frames of every round, or None."""
        return np.concatenate(self.frames, axis=0) if self.frames else None

    def _open_collapsed_start(self) -> None:
        """Weaker restraints to a start that is far from physical (the report's energies keep
        the start's restraints, so before and after compare), then the trace opened at the CA
        level (``coarse``): every atom moves with its residue's CA, and the all-atom rounds are
        restrained to that opened start."""
        cfg = self.config
        if cfg.collapsed_restraint_weight < cfg.restraint_weight:
            self.restraint_weight = cfg.collapsed_restraint_weight
            weaken = self.restraint_weight / cfg.restraint_weight
            self.topo = self.topo.replace(restraint_weight=self.topo.restraint_weight * weaken)
        layout = self.layout
        if not (cfg.coarse.max_steps > 0 and cfg.max_steps > 0
                and layout.length <= cfg.coarse.max_length):
            return
        t = time.perf_counter()
        x_start = np.asarray(self.x)
        ca_flat = layout.index37[:, _CA]
        relaxed = relax_ca(x_start[ca_flat], layout.linked, self.residue_weight, cfg.coarse)
        shift = np.zeros_like(x_start)
        shift[: layout.num_atoms] = (relaxed.ca - x_start[ca_flat])[layout.res]
        self.x = jnp.asarray(x_start + shift)
        self.topo = self.topo.replace(reference=self.x)
        self.coarse = {"steps": relaxed.steps, "ca_rmsd": relaxed.ca_rmsd,
                       "ca_violations_before": relaxed.violations_before,
                       "ca_violations_after": relaxed.violations_after,
                       "time_s": time.perf_counter() - t}

    def _problems(self, topo: Topology, x: jax.Array) -> tuple[int, int]:
        """(violations, clashes) of ``x`` with ``topo``'s restraints."""
        m = metrics_from_values(self.evaluate(x, topo)[1], self.layout.num_atoms)
        return m["violations"], m["clashes"]

    def _round(self, scale: float) -> dict:
        """One round at repulsion scale ``scale``; returns the validation values at its end."""
        cfg = self.config
        t = time.perf_counter()
        budget = cfg.max_steps
        if scale < 1.0 and cfg.clash_ramp_steps:
            budget = min(cfg.clash_ramp_steps, cfg.max_steps)
        settled = None
        if scale == 1.0 and cfg.settle_tol > 0 and cfg.check_every > 0:
            settled = SettleCheck(cfg.settle_tol, functools.partial(self._problems, self.topo),
                                  released=self.released)
        settings = dataclasses.replace(self.settings, repulsion_scale=scale, max_steps=budget)
        cutoff = MinSettings(weights=self.weights, skin=cfg.neighbor_skin).cutoff
        x, n, end, self.truncated, frames, builds = minimize_round(
            self.x, self.topo, self.topo_np, settings, cutoff, check_every=cfg.check_every,
            settled=settled)
        self.x = x
        self.steps += n
        self.converged = end != "step budget"
        if self.record_trajectory and frames is not None:
            self.frames.append(frames if not self.frames else frames[1:])
        energy, values = self.evaluate(x, self.topo)
        m = metrics_from_values(values, self.layout.num_atoms)
        self.log.append({"repulsion_scale": float(scale), "steps": int(n), "end": end,
                         "time_s": time.perf_counter() - t, "list_builds": int(builds),
                         "violations": m["violations"], "clashes": m["clashes"],
                         "energy": energy["total"]})
        return values

    def _release(self, values: dict) -> bool:
        """Release the restraints of residues with violations (and clashes, with
        ``release_clashes``) for the next round; False when there are none."""
        bad = violating_atoms(values, self.topo)
        if self.config.release_clashes:
            bad |= clashing_atoms(values, self.topo)
        if not bad.any():
            return False
        layout = self.layout
        bad_res = np.zeros(layout.length, bool)
        bad_res[layout.res[bad[: layout.num_atoms]]] = True
        weights = np.array(self.topo.restraint_weight)
        weights[: layout.num_atoms][bad_res[layout.res]] = 0.0
        self.topo = self.topo.replace(restraint_weight=jnp.asarray(weights))
        self.released = True
        return True
