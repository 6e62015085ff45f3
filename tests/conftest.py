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


@pytest.fixture(scope="module")
def fast_compile():
    """XLA optimisation level 0 for the tiny models of a test module (compiles in about half
    the time; ``foldlite.model.inference.compiler_options``). Use as
    ``pytestmark = pytest.mark.usefixtures("fast_compile")``."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FOLDLITE_FAST_COMPILE", "1")
        yield


def compile_fast(fn, *args):
    """``jax.jit(fn)`` compiled for ``args`` with the cheap XLA optimisation settings
    (``foldlite.model.inference.FAST_COMPILE``: compile time dominates at test sizes)."""
    import jax

    from foldlite.model.inference import FAST_COMPILE

    lowered = jax.jit(fn).lower(*args)
    try:
        return lowered.compile(compiler_options=FAST_COMPILE)
    except Exception:  # option names unknown to this XLA version: compile normally
        return lowered.compile()


def perturbed_params(params, scale: float = 0.1, seed: int = 1):
    """``params`` with Gaussian noise of sd ``scale`` added to every leaf: zero-initialised
    output layers ("final" init) make many outputs, gradients and updates exactly zero at init,
    and the noise makes the tests see a generic network. (numpy: eager jax.random calls would
    compile one kernel per parameter shape.)"""
    import jax
    import numpy as np

    rng = np.random.default_rng(seed)
    return jax.tree_util.tree_map(
        lambda x: np.asarray(x) + rng.normal(0.0, scale, x.shape).astype(np.float32), params)


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


def write_tiny_dataset(out: Path) -> tuple[Path, str]:
    """Six chains cut from 1A8O (full atom; half with random profiles) in the foldlite dataset
    format, and split files ``{prefix}_{train,valid,test}.txt``. Returns (dataset, prefix)."""
    import numpy as np

    from foldlite.data.dataset import ChainRecord, write_dataset
    from foldlite.protein import read_structure

    p = read_structure(REPO / "tests" / "data" / "1A8O.pdb")
    rng = np.random.default_rng(0)
    recs = []
    for k, (s, e) in enumerate([(0, 30), (10, 50), (20, 60), (30, 66), (0, 20), (5, 45)]):
        n = e - s
        prof = rng.dirichlet(np.ones(20), n).astype(np.float32) if k % 2 == 0 else None
        dssp = np.frombuffer((b"HHHHEEEC" * 20)[:n], np.uint8).copy()
        recs.append(ChainRecord(chain_id=f"T{k}_A", aatype=p.aatype[s:e],
                                atom_positions=p.atom_positions[s:e],
                                atom_mask=p.atom_mask[s:e], residue_index=p.residue_index[s:e],
                                insertion_code=np.array([""] * n), dssp=dssp, profile=prof))
    ds = write_dataset(out / "ds", recs, source="test")
    prefix = out / "tiny"
    (out / "tiny_train.txt").write_text("T0_A\nT1_A\nT2_A\nT3_A\n")
    (out / "tiny_valid.txt").write_text("T4_A\nT5_A\n")
    (out / "tiny_test.txt").write_text("T5_A\nT4_A\n")
    return ds, str(prefix)


_TINY_WEIGHTS: dict[str, Path] = {}


def tiny_weights() -> Path:
    """Weights of an untrained `tiny` model, made once per process (seeded: always the same)."""
    if "tiny" not in _TINY_WEIGHTS:
        import tempfile

        from foldlite.model.inference import init_params
        from foldlite.model.weights_io import save_weights
        params, cfg = init_params("tiny", seed=0)
        path = Path(tempfile.mkdtemp(prefix="foldlite-test-weights-")) / "tiny-test.npz"
        save_weights(path, params, cfg, {"name": "tiny-test", "note": "untrained, for tests"})
        _TINY_WEIGHTS["tiny"] = path
    return _TINY_WEIGHTS["tiny"]
