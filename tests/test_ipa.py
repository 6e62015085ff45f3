"""Invariant Point Attention and the structure module: SE(3) invariance / equivariance, masking."""

from __future__ import annotations

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import perturbed_params

from conftest import compile_fast
from foldlite.geometry.rigid import Rigid, random_rigid
from foldlite.model.config import load_model_config
from foldlite.model.ipa import InvariantPointAttention
from foldlite.model.structure import StructureModule

N = 12


def _global_transform(frames: Rigid, g: Rigid) -> Rigid:
    """``g o frames`` for every frame."""
    return Rigid(jnp.broadcast_to(g.rot, frames.rot.shape),
                 jnp.broadcast_to(g.trans, frames.trans.shape)).compose(frames)


@pytest.fixture(scope="module")
def cfg():
    return load_model_config("tiny")


@pytest.fixture(scope="module")
def inputs(cfg):
    keys = jax.random.split(jax.random.PRNGKey(0), 4)
    s = jax.random.normal(keys[0], (N, cfg.c_s))
    z = jax.random.normal(keys[1], (N, N, cfg.c_z))
    frames = random_rigid(keys[2], (N,), scale=1.0)  # IPA works in 10-A units
    mask = jnp.ones(N).at[-3:].set(0.0)
    return s, z, frames, mask


@pytest.fixture(scope="module")
def ipa_fn(cfg, inputs):
    sc = cfg.structure
    t = hk.without_apply_rng(hk.transform(
        lambda s, z, r, tr, m: InvariantPointAttention(
            sc.ipa_heads, sc.ipa_head_dim, sc.ipa_qk_points, sc.ipa_v_points)(
                s, z, Rigid(r, tr), m)))
    s, z, frames, mask = inputs
    args = (s, z, frames.rot, frames.trans, mask)
    key = jax.random.PRNGKey(1)
    params = perturbed_params(compile_fast(t.init, key, *args)(key, *args))
    fn = compile_fast(t.apply, params, *args)
    return lambda s, z, f, m: fn(params, s, z, f.rot, f.trans, m)


def test_ipa_invariant_to_global_rigid_motion(ipa_fn, inputs):
    s, z, frames, mask = inputs
    out = np.asarray(ipa_fn(s, z, frames, mask))
    assert np.abs(out).max() > 1e-3  # not trivially zero
    for seed in range(3):
        g = random_rigid(jax.random.PRNGKey(10 + seed), (), scale=3.0)
        moved = np.asarray(ipa_fn(s, z, _global_transform(frames, g), mask))
        np.testing.assert_allclose(moved, out, atol=2e-4, rtol=1e-4)


def test_ipa_depends_on_relative_frames(ipa_fn, inputs):
    """Moving one residue's frame (not a global motion) changes the output."""
    s, z, frames, mask = inputs
    out = np.asarray(ipa_fn(s, z, frames, mask))
    trans = frames.trans.at[0].add(jnp.array([0.5, 0.0, 0.0]))
    moved = np.asarray(ipa_fn(s, z, Rigid(frames.rot, trans), mask))
    assert np.abs(moved - out).max() > 1e-4


def test_ipa_ignores_masked_residues(ipa_fn, inputs):
    s, z, frames, mask = inputs
    out = np.asarray(ipa_fn(s, z, frames, mask))
    n_real = int(mask.sum())
    # change everything about the padded residues
    s2 = s.at[n_real:].set(7.0)
    z2 = z.at[n_real:].set(-3.0).at[:, n_real:].set(5.0)
    trans2 = frames.trans.at[n_real:].set(100.0)
    out2 = np.asarray(ipa_fn(s2, z2, Rigid(frames.rot, trans2), mask))
    np.testing.assert_allclose(out2[:n_real], out[:n_real], atol=1e-5, rtol=1e-5)


@pytest.fixture(scope="module")
def structure_fn(cfg, inputs):
    t = hk.without_apply_rng(hk.transform(
        lambda s, z, aa, m, r, tr: StructureModule(cfg.structure)(
            s, z, aa, m, initial_frames=Rigid(r, tr))))
    s, z, frames, mask = inputs
    aatype = jnp.arange(N, dtype=jnp.int32) % 20
    frames_a = frames.scale_translation(10.0)
    args = (s, z, aatype, mask, frames_a.rot, frames_a.trans)
    key = jax.random.PRNGKey(2)
    params = perturbed_params(compile_fast(t.init, key, *args)(key, *args))
    fn = compile_fast(t.apply, params, *args)
    return lambda f: fn(params, s, z, aatype, mask, f.rot, f.trans), frames_a, mask


def test_structure_module_atoms_are_equivariant(structure_fn):
    """Starting frames moved by g -> every output frame and atom moved by g."""
    fn, frames, mask = structure_fn
    out = fn(frames)
    atoms = np.asarray(out.atom14)
    assert np.all(np.isfinite(atoms))
    # the structure module moved the frames away from where they started
    assert np.abs(np.asarray(out.frames.trans) - np.asarray(frames.trans)).max() > 1e-2
    g = random_rigid(jax.random.PRNGKey(5), (), scale=20.0)
    moved = fn(_global_transform(frames, g))
    want = np.einsum("ij,naj->nai", np.asarray(g.rot), atoms) + np.asarray(g.trans)
    m = np.asarray(out.atom14_mask)[..., None]
    np.testing.assert_allclose(np.asarray(moved.atom14) * m, want * m, atol=2e-3)
    np.testing.assert_allclose(np.asarray(moved.frames.trans),
                               np.asarray(g.apply(out.frames.trans)), atol=2e-3)
    np.testing.assert_allclose(np.asarray(moved.frames.rot),
                               np.einsum("ij,njk->nik", np.asarray(g.rot),
                                         np.asarray(out.frames.rot)), atol=1e-4)
    # torsions are invariant
    np.testing.assert_allclose(np.asarray(moved.torsions), np.asarray(out.torsions), atol=1e-4)
    # trajectory: one entry per iteration, each a proper rotation
    rot = np.asarray(out.traj_frames.rot)
    assert rot.shape[0] == 2
    np.testing.assert_allclose(np.linalg.det(rot), 1.0, atol=1e-4)
    assert np.all(np.asarray(out.atom14_mask)[int(mask.sum()):] == 0)
