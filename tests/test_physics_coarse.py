"""foldlite.physics.coarse: the CA-level pre-relaxation of collapsed models."""

from __future__ import annotations

import numpy as np
import pytest

from foldlite.physics.coarse import CoarseConfig, relax_ca
from foldlite.protein import read_structure

_CA = 1


@pytest.fixture(scope="module")
def native_ca(repo_root):
    p = read_structure(repo_root / "tests/data/1A8O.pdb")
    return p.atom_positions[:, _CA].astype(np.float32)


def _pair_distances(ca):
    d = np.linalg.norm(ca[:, None] - ca[None], axis=-1)
    return d


def test_collapsed_trace_is_opened_and_continuous(native_ca):
    centre = native_ca.mean(0)
    ball = (native_ca - centre) * 0.25 + centre           # 4x shrunk: CAs ~1 A apart
    n = len(ball)
    linked = np.ones(n - 1, bool)
    cfg = CoarseConfig()
    res = relax_ca(ball, linked, config=cfg)
    assert res.violations_before > n and res.violations_after == 0
    bonds = np.linalg.norm(res.ca[1:] - res.ca[:-1], axis=-1)
    assert np.all(np.abs(bonds - cfg.ca_bond) < 0.1)
    d = _pair_distances(res.ca)
    iu = np.triu_indices(n, 3)
    assert d[iu].min() > cfg.ca_min - 0.3
    assert np.all(np.diagonal(d, 2) > cfg.ca_i2_min - 0.3)
    assert 0 < res.steps <= cfg.max_steps and res.ca_rmsd > 1.0
    # Opened, not blown apart: the radius of gyration stays within that of a compact chain.
    rg = np.sqrt(np.mean(np.sum((res.ca - res.ca.mean(0)) ** 2, axis=-1)))
    assert rg < 3.0 * n ** 0.4


def test_a_sound_trace_barely_moves_and_breaks_are_respected(native_ca):
    n = len(native_ca)
    linked = np.ones(n - 1, bool)
    cfg = CoarseConfig(ca_min=4.0)  # the crystal structure's own CA pairs all lie beyond 4 A
    res = relax_ca(native_ca, linked, config=cfg)
    assert res.violations_before == 0 and res.violations_after == 0
    assert res.ca_rmsd < 0.1
    # A chain break: the two pieces are no longer pulled to 3.8 A apart.
    far = native_ca.copy()
    far[n // 2:] += np.array([30.0, 0.0, 0.0], np.float32)
    broken = linked.copy()
    broken[n // 2 - 1] = False
    res = relax_ca(far, broken, config=cfg)
    gap = np.linalg.norm(res.ca[n // 2] - res.ca[n // 2 - 1])
    assert gap > 25.0 and res.violations_after == 0


def test_restraint_weights_hold_confident_residues(native_ca):
    centre = native_ca.mean(0)
    ball = (native_ca - centre) * 0.25 + centre
    n = len(ball)
    weight = np.full(n, 0.01, np.float32)
    weight[: n // 2] = 1.0
    res = relax_ca(ball, np.ones(n - 1, bool), weight, CoarseConfig(restraint=1.0))
    moved = np.linalg.norm(res.ca - ball, axis=-1)
    assert moved[: n // 2].mean() < moved[n // 2:].mean()


def test_padding_changes_nothing(native_ca, monkeypatch):
    """The energy is padded to a power-of-two length; more padding gives the same trace."""
    from foldlite.physics import coarse

    centre = native_ca.mean(0)
    ball = (native_ca[:40] - centre) * 0.25 + centre
    a = relax_ca(ball, np.ones(39, bool))              # padded to 64
    monkeypatch.setattr(coarse, "_bucket", lambda n: 128)
    b = relax_ca(ball, np.ones(39, bool))
    assert a.ca.shape == b.ca.shape == (40, 3) and a.violations_after == 0
    assert a.steps == b.steps
    np.testing.assert_allclose(a.ca, b.ca, atol=1e-3)


def test_bad_arguments():
    with pytest.raises(ValueError, match="linked"):
        relax_ca(np.zeros((5, 3)), np.ones(3, bool))
    one = relax_ca(np.zeros((1, 3)), np.ones(0, bool))
    assert one.steps == 0 and one.ca.shape == (1, 3)
