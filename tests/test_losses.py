"""Training losses: zero (or minimal) at the truth, invariant to a global rigid transform of the
prediction, finite gradients, masks respected; on a real structure (1A8O, full atom) and on its
backbone-only version (the ProMod3 case)."""

from __future__ import annotations

import functools
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from foldlite import constants as rc
from foldlite.geometry import torsions as tors
from foldlite.geometry.rigid import Rigid, random_rigid
from foldlite.model import ModelOutput
from foldlite.model import heads
from foldlite.model.inference import FAST_COMPILE
from foldlite.train import losses as L
from foldlite.train.config import LossConfig, LossWeights
from foldlite.train.fape import frame_aligned_point_error

DATA = Path(__file__).parent / "data"
N_RES = 24
ALL_WEIGHTS = LossWeights(fape=1.0, sidechain_fape=1.0, chi=1.0, angle_norm=1.0, distogram=1.0,
                          plddt=1.0, pae=1.0, ss=1.0, bond=1.0, angle=1.0, ca_ca=1.0, clash=1.0)


@pytest.fixture(scope="module")
def chain():
    from foldlite.protein import read_structure
    p = read_structure(DATA / "1A8O.pdb")
    s = slice(10, 10 + N_RES)
    return {"atom37": p.atom_positions[s], "atom37_mask": p.atom_mask[s],
            "aatype": p.aatype[s], "residue_index": p.residue_index[s]}


def _targets(ch, pad=0, idealise=False, backbone_only=False, garbage_seed=None):
    atom37, mask37 = np.array(ch["atom37"]), np.array(ch["atom37_mask"])
    aatype, ridx = np.array(ch["aatype"]), np.array(ch["residue_index"])
    if idealise:
        atom37, mask37 = (np.asarray(x) for x in tors.rebuild_from_atom37(atom37, mask37, aatype))
    if backbone_only:
        keep = np.zeros(37, np.float32)
        keep[[rc.atom_order[a] for a in ("N", "CA", "C", "O")]] = 1
        mask37 = mask37 * keep
    n = len(aatype)
    dssp3 = np.arange(n) % 3
    rmask = np.ones(n, np.float32)
    if pad:
        atom37 = np.concatenate([atom37, np.zeros((pad, 37, 3), np.float32)])
        mask37 = np.concatenate([mask37, np.zeros((pad, 37), np.float32)])
        aatype = np.concatenate([aatype, np.full(pad, 20)])
        ridx = np.concatenate([ridx, ridx[-1] + 1 + np.arange(pad)])
        dssp3 = np.concatenate([dssp3, -np.ones(pad, int)])
        rmask = np.concatenate([rmask, np.zeros(pad, np.float32)])
    if garbage_seed is not None:  # anything at absent atoms must not matter
        g = np.random.default_rng(garbage_seed).normal(0, 30, atom37.shape).astype(np.float32)
        atom37 = np.where(mask37[..., None] > 0, atom37, g)
    return _make_targets(atom37, mask37, aatype, rmask, ridx, dssp3)


# jitted once per shape for the whole module (eager dispatch and recompiles are what cost
# time), at XLA optimisation level 0 (half the compile time; these arrays are small)
_jit = functools.partial(jax.jit, compiler_options=FAST_COMPILE)
_make_targets = _jit(L.make_targets)
_compute = _jit(L.compute_losses, static_argnums=(2, 3))
_build = _jit(tors.frames_and_torsions_to_atom14)
_violations = _jit(L.backbone_violations)
_clash = _jit(L.clash_loss)
_grad = _jit(jax.grad(lambda o, t: L.compute_losses(o, t, ALL_WEIGHTS, clamp_fape=False)[0]))


def compute_losses(out, t, weights, config=LossConfig(), clamp_fape=True):
    return _compute(out, t, weights, config, clamp_fape)


def _true_bins(t: L.Targets):
    pb = np.asarray(t.pseudo_beta)
    d = np.sqrt(((pb[:, None] - pb[None]) ** 2).sum(-1))
    return np.sum(d[..., None] > heads.DISTOGRAM_BREAKS, -1)


def _perfect_output(t: L.Targets, n_iter: int = 3, logit_scale: float = 50.0) -> ModelOutput:
    """A prediction that reproduces the targets: true frames and torsions through the builder,
    logits peaked on the true bins."""
    frames = t.bb_frames
    atom14, mask14, groups = _build(frames, t.torsions, t.aatype)
    n = t.aatype.shape[0]
    atom37 = tors.atom14_to_atom37(atom14, t.aatype)
    err = np.asarray(L.aligned_error(frames, frames))
    pae_bins = np.sum(err[..., None] > heads.PAE_BREAKS, -1)
    dssp = np.clip(np.asarray(t.dssp3), 0, 2)
    return ModelOutput(
        frames=frames,
        traj_frames=jax.tree_util.tree_map(lambda x: jnp.stack([x] * n_iter), frames),
        sidechain_frames=groups, torsions=t.torsions, unnormalized_torsions=t.torsions,
        atom14=atom14, atom14_mask=mask14, atom37=atom37,
        atom37_mask=tors.atom14_to_atom37(mask14, t.aatype),
        distogram_logits=logit_scale * jax.nn.one_hot(_true_bins(t), 64),
        plddt_logits=logit_scale * jax.nn.one_hot(jnp.full(n, 49), 50),
        pae_logits=logit_scale * jax.nn.one_hot(pae_bins, 64),
        ss_logits=logit_scale * jax.nn.one_hot(dssp, 3),
        single=jnp.zeros((n, 8)))


def _transform_output(out: ModelOutput, T: Rigid) -> ModelOutput:
    import dataclasses

    def tr(r: Rigid) -> Rigid:
        nb = len(r.shape)
        TT = T
        for _ in range(nb):
            TT = TT.unsqueeze(-1)
        return TT.compose(r)
    return dataclasses.replace(out, frames=tr(out.frames), traj_frames=tr(out.traj_frames),
                               sidechain_frames=tr(out.sidechain_frames),
                               atom14=T.apply(out.atom14), atom37=T.apply(out.atom37))


def _noisy_output(t: L.Targets, seed: int = 0, scale: float = 1.0) -> ModelOutput:
    import dataclasses
    rng = np.random.default_rng(seed)
    out = _perfect_output(t, logit_scale=1.0)
    n = t.aatype.shape[0]
    noise = lambda *s: jnp.asarray(rng.normal(0, scale, s), jnp.float32)  # noqa: E731
    frames = Rigid(out.frames.rot, out.frames.trans + noise(n, 3))
    q = jnp.concatenate([jnp.ones((n, 1)), 0.2 * noise(n, 3)], -1)
    frames = frames.compose(Rigid.from_quaternion(q))
    tors_pred = out.torsions + 0.3 * noise(n, 7, 2)
    atom14, mask14, groups = _build(frames, tors_pred, t.aatype)
    traj = jax.tree_util.tree_map(lambda a, b: jnp.stack([a, b]),
                                  Rigid(frames.rot, frames.trans + noise(n, 3)), frames)
    return dataclasses.replace(
        out, frames=frames, traj_frames=traj, sidechain_frames=groups,
        torsions=tors_pred / jnp.linalg.norm(tors_pred, axis=-1, keepdims=True),
        unnormalized_torsions=tors_pred, atom14=atom14,
        atom37=tors.atom14_to_atom37(atom14, t.aatype),
        distogram_logits=out.distogram_logits + noise(n, n, 64),
        plddt_logits=noise(n, 50), pae_logits=noise(n, n, 64), ss_logits=noise(n, 3))


# --------------------------------------------------------------------------------------------

def test_fape_zero_at_truth_and_clamped():
    key = jax.random.PRNGKey(0)
    frames = random_rigid(key, (10,))
    pts = frames.trans
    m = jnp.ones(10)
    f0 = frame_aligned_point_error(frames, frames, m, pts, pts, m)
    assert float(f0) < 2e-3  # sqrt(eps) / Z
    far = pts + 100.0
    clamped = frame_aligned_point_error(frames, frames, m, far * 1.5, pts, m, clamp_distance=10.)
    unclamped = frame_aligned_point_error(frames, frames, m, far * 1.5, pts, m,
                                          clamp_distance=None)
    assert float(clamped) <= 1.0 + 1e-6
    assert float(unclamped) > 2.0


def test_pseudo_beta_virtual_cb(chain):
    t_full = _targets(chain)
    t_bb = _targets(chain, backbone_only=True)
    d = np.linalg.norm(np.asarray(t_full.pseudo_beta) - np.asarray(t_bb.pseudo_beta), axis=-1)
    assert np.all(np.asarray(t_bb.pseudo_beta_mask) == 1)
    assert d.max() < 0.25, d.max()


def test_losses_minimal_at_truth(chain):
    t = _targets(chain, idealise=True)
    out = _perfect_output(t)
    _, terms = compute_losses(out, t, ALL_WEIGHTS, LossConfig())
    terms = {k: float(v) for k, v in terms.items()}
    assert terms["fape"] < 2e-3 and terms["fape_final"] < 2e-3
    assert terms["sidechain_fape"] < 2e-3
    for k in ("chi", "angle_norm", "bond", "angle", "ca_ca", "clash"):
        assert terms[k] < 1e-4, (k, terms[k])
    for k in ("distogram", "plddt", "pae", "ss"):
        assert terms[k] < 1e-3, (k, terms[k])
    assert terms["lddt_ca"] > 0.999


def test_real_structure_has_no_violations(chain):
    t = _targets(chain)
    atom14 = t.atom14
    v = _violations(atom14, t.atom14_mask, t)
    assert float(v["bond"]) == 0 and float(v["angle"]) == 0 and float(v["ca_ca"]) == 0
    clash, count = _clash(atom14, t.atom14_mask, t)
    assert float(clash) == 0 and float(count) == 0


def test_violations_detect_broken_geometry(chain):
    t = _targets(chain)
    a14 = np.array(t.atom14)
    a14[12:] += np.array([1.0, 0.0, 0.0], np.float32)  # stretch the bond between 11 and 12
    v = _violations(jnp.asarray(a14), t.atom14_mask, t)
    # one broken pair of 23: the mean is about (shift - tolerance) / 23
    assert float(v["bond"]) > 0.01 and float(v["ca_ca"]) > 0.01
    # bend CA(11)-C(11)-N(12) to 60 degrees, keeping the C-N bond length
    c14 = np.array(t.atom14)
    ca, c = c14[11, 1], c14[11, 2]
    u = (ca - c) / np.linalg.norm(ca - c)
    w = np.cross(u, [0.0, 0.0, 1.0])
    w /= np.linalg.norm(w)
    c14[12, 0] = c + 1.329 * (np.cos(np.pi / 3) * u + np.sin(np.pi / 3) * w)
    v = _violations(jnp.asarray(c14), t.atom14_mask, t)
    assert float(v["angle"]) > 0.01 and float(v["bond"]) < 1e-3
    b14 = np.array(t.atom14)
    b14[20] = b14[5] + 0.5  # residue 20 on top of residue 5
    clash, count = _clash(jnp.asarray(b14), t.atom14_mask, t)
    assert float(clash) > 0.01 and float(count) > 10


def test_symmetric_atoms_and_pi_periodic_chis(chain):
    import dataclasses
    t = _targets(chain, idealise=True)
    aatype = np.asarray(t.aatype)
    assert np.any(np.isin(aatype, [rc.restype_order[r] for r in "DEFY"])), "need an ambiguous res"
    out = _perfect_output(t)
    # predict the alternative naming: torsions flipped by pi for pi-periodic chis
    a14, m14, groups = _build(t.bb_frames, t.torsions_alt, t.aatype)
    alt = dataclasses.replace(out, torsions=t.torsions_alt, unnormalized_torsions=t.torsions_alt,
                              atom14=a14, sidechain_frames=groups)
    renamed = np.asarray(L.optimal_renaming(a14, t))
    assert renamed.sum() > 0
    _, terms = compute_losses(alt, t, ALL_WEIGHTS)
    assert float(terms["sidechain_fape"]) < 2e-3
    assert float(terms["chi"]) < 1e-5


def test_invariant_to_global_transform(chain):
    t = _targets(chain)
    out = _noisy_output(t)
    T = random_rigid(jax.random.PRNGKey(3), (), scale=30.0)
    a = compute_losses(out, t, ALL_WEIGHTS)[1]
    b = compute_losses(_transform_output(out, T), t, ALL_WEIGHTS)[1]
    for k in a:
        np.testing.assert_allclose(float(a[k]), float(b[k]), rtol=2e-4, atol=2e-4, err_msg=k)
    assert float(a["fape"]) > 0.01 and float(a["sidechain_fape"]) > 0.01


def test_fape_is_not_mirror_invariant(chain):
    import dataclasses
    t = _targets(chain)
    out = _perfect_output(t)
    mirror = jnp.diag(jnp.array([1.0, 1.0, -1.0]))
    tr = out.frames.trans @ mirror
    mirrored = dataclasses.replace(
        out, traj_frames=Rigid(out.traj_frames.rot, jnp.stack([tr] * 3)))
    _, terms = compute_losses(mirrored, t, ALL_WEIGHTS)
    assert float(terms["fape"]) > 0.1


@pytest.mark.parametrize("at_truth", [True, False])
def test_gradients_finite(chain, at_truth):
    t = _targets(chain, pad=5)
    out = _perfect_output(t) if at_truth else _noisy_output(t)
    g = _grad(out, t)
    leaves = jax.tree_util.tree_leaves(g)
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in leaves)
    assert any(float(jnp.abs(x).sum()) > 0 for x in leaves)


def test_masks_and_padding_respected(chain):
    """Padding residues and absent atoms (holding garbage) change nothing."""
    t0 = _targets(chain)
    out0 = _noisy_output(t0, seed=1)
    _, a = compute_losses(out0, t0, ALL_WEIGHTS)
    pad = 5
    t1 = _targets(chain, pad=pad, garbage_seed=7)
    rng = np.random.default_rng(2)

    def padded(x, axes):
        x = np.asarray(x)
        for ax in axes:
            shape = list(x.shape)
            shape[ax] = pad
            x = np.concatenate([x, rng.normal(0, 50, shape).astype(x.dtype)], axis=ax)
        return jnp.asarray(x)

    def padr(r: Rigid, axis: int) -> Rigid:
        q = rng.normal(size=r.shape[:axis] + (pad,) + r.shape[axis + 1:] + (4,))
        extra = Rigid.from_quaternion(jnp.asarray(q, jnp.float32),
                                      jnp.asarray(rng.normal(0, 50, q.shape[:-1] + (3,)),
                                                  jnp.float32))
        return Rigid(jnp.concatenate([r.rot, extra.rot], axis),
                     jnp.concatenate([r.trans, extra.trans], axis))

    out1 = ModelOutput(
        frames=padr(out0.frames, 0), traj_frames=padr(out0.traj_frames, 1),
        sidechain_frames=padr(out0.sidechain_frames, 0),
        torsions=padded(out0.torsions, [0]), unnormalized_torsions=padded(
            out0.unnormalized_torsions, [0]),
        atom14=padded(out0.atom14, [0]), atom14_mask=padded(out0.atom14_mask, [0]),
        atom37=padded(out0.atom37, [0]), atom37_mask=padded(out0.atom37_mask, [0]),
        distogram_logits=padded(out0.distogram_logits, [0, 1]),
        plddt_logits=padded(out0.plddt_logits, [0]),
        pae_logits=padded(out0.pae_logits, [0, 1]), ss_logits=padded(out0.ss_logits, [0]),
        single=padded(out0.single, [0]))
    _, b = compute_losses(out1, t1, ALL_WEIGHTS)
    for k in a:
        np.testing.assert_allclose(float(a[k]), float(b[k]), rtol=1e-4, atol=1e-5, err_msg=k)


def test_backbone_only_data(chain):
    """ProMod3-like input: no side chains. Chi terms are masked (0), side-chain FAPE covers the
    backbone and O, distogram uses virtual CBs, and garbage at absent atoms changes nothing."""
    t = _targets(chain, backbone_only=True)
    assert float(jnp.sum(t.torsion_mask[:, 3:])) == 0
    gm = np.asarray(t.group_mask)
    assert gm[:, 0].all() and gm[:, 3].all() and not gm[:, 4:].any()
    out = _noisy_output(t, seed=4)
    _, a = compute_losses(out, t, ALL_WEIGHTS)
    assert float(a["chi"]) == 0.0
    assert np.isfinite(float(a["loss"])) and float(a["sidechain_fape"]) > 0
    t2 = _targets(chain, backbone_only=True, garbage_seed=11)
    _, b = compute_losses(out, t2, ALL_WEIGHTS)
    for k in a:
        np.testing.assert_allclose(float(a[k]), float(b[k]), rtol=1e-5, atol=1e-6, err_msg=k)


def test_ss_loss_masks_unknown(chain):
    t = _targets(chain)
    import dataclasses
    logits = jnp.asarray(np.random.default_rng(0).normal(size=(N_RES, 3)), jnp.float32)
    a = L.ss_loss(logits, t)
    t2 = dataclasses.replace(t, dssp3=t.dssp3.at[:5].set(-1))
    logits2 = logits.at[:5].set(100.0)
    b = L.ss_loss(logits2, t2)
    c = L.ss_loss(logits, t2)
    assert float(a) != float(c)
    np.testing.assert_allclose(float(b), float(c), rtol=1e-6)


def test_plddt_target_is_lddt_of_prediction(chain):
    t = _targets(chain)
    out = _noisy_output(t, seed=5, scale=2.0)
    lddt = np.asarray(L.lddt_ca_per_residue(out.frames.trans, t))
    from foldlite import metrics
    ref = metrics.lddt_ca(np.asarray(out.frames.trans), np.asarray(t.bb_frames.trans),
                          per_residue=True)
    np.testing.assert_allclose(lddt, ref, atol=1e-5)
    assert 0.1 < lddt.mean() < 0.95


def test_stage_weights():
    from foldlite.train.config import LossStage
    cfg = LossConfig(stages=(LossStage(0, LossWeights(clash=0.0)),
                             LossStage(100, LossWeights(clash=1.0))))
    assert cfg.weights_at(0).clash == 0.0 and cfg.weights_at(99).clash == 0.0
    assert cfg.weights_at(100).clash == 1.0 and cfg.weights_at(10**6).clash == 1.0
