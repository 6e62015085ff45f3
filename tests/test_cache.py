"""foldlite.cache: the persistent program cache (``persistent_jit``) behind a fast second run."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from foldlite import cache


class State(NamedTuple):
    x: jax.Array
    steps: jax.Array


def _step(state: State, scale, *, power: int) -> tuple[State, jax.Array]:
    y = state.x * scale + jnp.sum(state.x) ** power
    return State(y, state.steps + 1), jnp.max(y)


def _out_tree(state, scale):
    return jax.tree_util.tree_structure((state, jnp.float32(0)))


def _metrics(x, *, shift: float) -> dict:
    return {"mean": jnp.mean(x) + shift, "pair": (jnp.min(x), jnp.max(x))}


@pytest.fixture
def programs(tmp_path, monkeypatch):
    """A program folder of this test only (the compilation cache settings stay as they are)."""
    folder = tmp_path / "programs"
    monkeypatch.setattr(cache, "_CACHE_STATE", {"dir": tmp_path / "jax", "programs": folder})
    return folder


def _state(n=5):
    return State(jnp.arange(n, dtype=jnp.float32), jnp.int32(0))


def test_exported_once_then_loaded_by_a_new_process(programs):
    state = _state()
    want = jax.jit(_step, static_argnames=("power",))(state, jnp.float32(2.0), power=2)

    first = cache.PersistentJit(_step, "test.step", static_argnames=("power",),
                                out_tree=_out_tree)
    got = first(state, jnp.float32(2.0), power=2)
    assert isinstance(got[0], State)  # the NamedTuple state comes back as one
    np.testing.assert_allclose(got[0].x, want[0].x)
    assert int(got[0].steps) == 1 and float(got[1]) == float(want[1])
    assert (first.exported, first.loaded) == (1, 0)
    files = sorted(p.name for p in programs.iterdir())
    assert len(files) == 1 and files[0].startswith("test.step-")

    # Same call again: in memory, nothing traced or read.
    first(state, jnp.float32(3.0), power=2)
    assert (first.exported, first.loaded) == (1, 0)

    # A new object (as in a new process) reads the program instead of tracing it.
    second = cache.PersistentJit(_step, "test.step", static_argnames=("power",),
                                 out_tree=_out_tree)
    again = second(state, jnp.float32(2.0), power=2)
    assert (second.exported, second.loaded) == (0, 1)
    np.testing.assert_allclose(again[0].x, want[0].x)

    # Another static value or another shape is another program.
    second(state, jnp.float32(2.0), power=3)
    second(_state(7), jnp.float32(2.0), power=2)
    assert second.exported == 2
    assert len(list(programs.iterdir())) == 3


def test_builtin_output_structure_and_positional_static(programs):
    prog = cache.PersistentJit(_metrics, "test.metrics", static_argnames=("shift",))
    x = jnp.asarray([1.0, 4.0, 7.0])
    out = prog(x, shift=0.5)
    assert set(out) == {"mean", "pair"} and float(out["mean"]) == pytest.approx(4.5)
    assert [float(v) for v in out["pair"]] == [1.0, 7.0]
    fresh = cache.PersistentJit(_metrics, "test.metrics", static_argnames=("shift",))
    assert float(fresh(x, shift=0.5)["mean"]) == pytest.approx(4.5) and fresh.loaded == 1


def test_damaged_file_is_traced_again(programs):
    prog = cache.PersistentJit(_metrics, "test.metrics", static_argnames=("shift",))
    x = jnp.ones(4)
    prog(x, shift=1.0)
    (path,) = programs.iterdir()
    path.write_bytes(b"not a program")
    fresh = cache.PersistentJit(_metrics, "test.metrics", static_argnames=("shift",))
    assert float(fresh(x, shift=1.0)["mean"]) == pytest.approx(2.0)
    assert (fresh.loaded, fresh.exported) == (0, 1)


def test_new_code_fingerprint_replaces_old_programs(programs, monkeypatch):
    x = jnp.ones(3)
    cache.PersistentJit(_metrics, "test.metrics", static_argnames=("shift",))(x, shift=0.0)
    (old,) = programs.iterdir()
    monkeypatch.setattr(cache, "_FINGERPRINT", ["f" * 64])  # as after an edit of foldlite
    prog = cache.PersistentJit(_metrics, "test.metrics", static_argnames=("shift",))
    prog(x, shift=0.0)
    assert prog.exported == 1
    (new,) = programs.iterdir()
    assert new.name != old.name and "-ffffffffffff-" in new.name


def test_fingerprint_covers_the_sources():
    fp = cache.code_fingerprint()
    assert len(fp) == 64 and fp == cache.code_fingerprint()


def test_caches_off_or_under_a_transformation_is_plain_jit(tmp_path, monkeypatch):
    monkeypatch.setattr(cache, "_CACHE_STATE", {"dir": None})
    prog = cache.PersistentJit(_metrics, "test.metrics", static_argnames=("shift",))
    assert float(prog(jnp.ones(2), shift=1.0)["mean"]) == 2.0
    assert (prog.exported, prog.loaded) == (0, 0)
    monkeypatch.setattr(cache, "_CACHE_STATE",
                        {"dir": tmp_path / "jax", "programs": tmp_path / "programs"})
    # Differentiated and vmapped through (tracers): traced as a plain jit, nothing exported.
    g = jax.grad(lambda x: prog(x, shift=0.0)["mean"])(jnp.ones(4))
    np.testing.assert_allclose(g, np.full(4, 0.25))
    v = jax.vmap(lambda x: prog(x, shift=0.0)["mean"])(jnp.ones((3, 2)))
    assert v.shape == (3,) and prog.exported == 0


def test_python_scalars_numpy_and_weak_types_are_accepted(programs):
    def affine(x, a, b):
        return {"y": x * a + b}

    prog = cache.PersistentJit(affine, "test.affine")
    x = np.arange(3, dtype=np.float64)  # numpy float64: float32 in the program (x64 off)
    out = prog(x, 2.0, jnp.float32(1.0))
    np.testing.assert_allclose(out["y"], [1.0, 3.0, 5.0])
    # The same program (same shapes and canonical dtypes) takes strong and weak types alike.
    out = prog(jnp.asarray(x, jnp.float32), jnp.float32(2.0), 1.0)
    np.testing.assert_allclose(out["y"], [1.0, 3.0, 5.0])
    assert prog.exported == 1 and prog._cache_size() == 1


def test_export_platform_names():
    assert cache._platform([np.ones(2), jnp.ones(2)]) == "cpu"
    assert cache._platform([1.0]) == jax.export.default_export_platform()
    assert cache.export_platform("gpu", "cuda") == "cuda"
    assert cache.export_platform("gpu", "rocm") == "rocm"
    assert cache.export_platform("gpu", "cpu") == "cuda"  # --device gpu beside a CPU default
    assert cache.export_platform("tpu", "cpu") == "tpu"
    assert cache.export_platform(None, "cpu") == "cpu"
