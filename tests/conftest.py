"""Shared pytest fixtures.

The ProMod3 database and other large files live in ``../shared`` (for CI and developers, not
users) or are downloaded; tests that need them skip with a reason when they are absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=true")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} not present (it exists for developers and CI only)")
    return SHARED


def perturbed_topology(n: int = 16, *, seed: int, sigma: float, restraint_weight: float = 5.0):
    """The first ``n`` residues of tests/data/1A8O.pdb with Gaussian noise of ``sigma`` A on
    every atom, as a physics ``Topology`` of jnp arrays (restraints to the noisy start) and its
    layout: a small system for the energy and minimiser tests."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from foldlite.physics.topology import build_topology
    from foldlite.protein import read_structure

    p = read_structure(REPO / "tests/data/1A8O.pdb")
    rng = np.random.default_rng(seed)
    pos = p.atom_positions[:n] + rng.normal(0, sigma, (n, 37, 3)).astype(np.float32)
    topo, layout = build_topology(p.aatype[:n], pos, p.atom_mask[:n], p.residue_index[:n],
                                  restraint_weight=restraint_weight)
    return jax.tree_util.tree_map(jnp.asarray, topo), layout


_TINY_WEIGHTS: dict[str, Path] = {}


def tiny_weights() -> Path:
    """Weights of an untrained `tiny` model, made once per process (seeded: always the same)."""
    if "tiny" not in _TINY_WEIGHTS:
        import tempfile

        from foldlite import pipeline
        from foldlite.train.checkpoint import save_weights
        params, cfg = pipeline.init_params("tiny", seed=0)
        path = Path(tempfile.mkdtemp(prefix="foldlite-test-weights-")) / "tiny-test.npz"
        save_weights(path, params, cfg, {"name": "tiny-test", "note": "untrained, for tests"})
        _TINY_WEIGHTS["tiny"] = path
    return _TINY_WEIGHTS["tiny"]
