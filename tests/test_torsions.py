"""Torsion angles <-> atoms: foldlite.geometry.torsions."""

from __future__ import annotations

import gzip
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from foldlite import constants as rc
from foldlite.geometry import torsions as T
from foldlite.geometry.rigid import Rigid, random_rigid

DATA = Path(__file__).resolve().parent / "data"


# ------------------------------------------------------------------ helpers
PAD = 256


def _load_chain(path: Path, chain_id: str | None = None, pad_to: int | None = PAD):
    """First model, one chain, standard residues, highest-occupancy altlocs -> atom37 arrays.

    Parsed with Bio.PDB directly so that this test does not depend on foldlite.protein.
    """
    from Bio.PDB import MMCIFParser, PDBParser

    if not path.exists():
        pytest.skip(f"{path} not present (tests/data ships structures from Biopython's tests)")
    opener = gzip.open if path.suffix == ".gz" else open
    parser = MMCIFParser(QUIET=True) if ".cif" in path.name else PDBParser(QUIET=True)
    with opener(path, "rt") as fh:
        structure = parser.get_structure(path.stem, fh)
    chains = [c for c in structure[0] if chain_id is None or c.id == chain_id]
    aatype, pos, mask = [], [], []
    for res in chains[0]:
        name = rc.modified_residue_parent.get(res.get_resname(), res.get_resname())
        if res.id[0] not in (" ", "H_MSE") or name not in rc.restype_3to1:
            continue
        p, m = np.zeros((37, 3), np.float32), np.zeros(37, np.float32)
        for atom in res:  # the selected (highest-occupancy) altloc of each atom
            aname = "SD" if (name == "MET" and atom.get_id() == "SE") else atom.get_id()
            if aname in rc.atom_order:
                p[rc.atom_order[aname]] = atom.get_coord()
                m[rc.atom_order[aname]] = 1.0
        aatype.append(rc.restype_order[rc.restype_3to1[name]])
        pos.append(p)
        mask.append(m)
    aatype = np.array(aatype, np.int32)
    mask = np.array(mask) * rc.restype_atom37_mask[aatype]
    pos = np.array(pos)
    if pad_to:  # one padded length for every structure: one compilation per function
        n = pad_to - len(aatype)
        assert n >= 0
        aatype = np.concatenate([aatype, np.full(n, rc.unk_restype_index, np.int32)])
        pos = np.concatenate([pos, np.zeros((n, 37, 3), np.float32)])
        mask = np.concatenate([mask, np.zeros((n, 37), np.float32)])
    return aatype, pos, mask


def _random_torsions(key, shape):
    ang = jax.random.uniform(key, shape + (7,), minval=-np.pi, maxval=np.pi)
    return T.angles_to_sin_cos(ang), ang


def _wrap(x):
    return (x + np.pi) % (2 * np.pi) - np.pi


# ------------------------------------------------------------------ dihedral
def test_dihedral_matches_biopython():
    from Bio.PDB.vectors import Vector, calc_dihedral

    rng = np.random.default_rng(0)
    pts = rng.normal(size=(50, 4, 3)).astype(np.float32) * 2.0
    ours = np.asarray(T.dihedral(pts[:, 0], pts[:, 1], pts[:, 2], pts[:, 3]))
    ref = np.array([calc_dihedral(*(Vector(*p) for p in q)) for q in pts])
    np.testing.assert_allclose(_wrap(ours - ref), 0.0, atol=1e-4)


# ------------------------------------------------------------------ layouts
def test_atom14_atom37_round_trip():
    aatype = jnp.arange(21)
    x14 = jax.random.normal(jax.random.PRNGKey(0), (21, 14, 3))
    m14 = jnp.asarray(rc.restype_atom14_mask)
    x37 = T.atom14_to_atom37(x14 * m14[..., None], aatype)
    back = T.atom37_to_atom14(x37, aatype)
    np.testing.assert_allclose(back, x14 * m14[..., None], atol=0)
    np.testing.assert_allclose(T.atom14_to_atom37(m14, aatype), rc.restype_atom37_mask)
    # batch shapes: [2, 21, 14] with no trailing axis
    m2 = T.atom14_to_atom37(jnp.stack([m14, m14]), jnp.stack([aatype, aatype]))
    assert m2.shape == (2, 21, 37)


# ------------------------------------------------------------------ building
def _bond_lengths(x14, aatype):
    out = []
    for i, a in enumerate(np.asarray(aatype)):
        name = rc.resnames[a]
        names14 = rc.restype_name_to_atom14_names[name]
        for p, q in rc.residue_bonds[name]:
            d = np.linalg.norm(x14[i, names14.index(p)] - x14[i, names14.index(q)])
            out.append((name, p, q, d, rc.ideal_bond_length[(name, p, q)][0]))
    return out


def test_built_atoms_have_ideal_bond_lengths_and_measured_torsions():
    """Every residue type, random frames and torsions: ideal bonds, torsions recovered."""
    aatype = jnp.arange(21)
    k1, k2 = jax.random.split(jax.random.PRNGKey(1))
    frames = random_rigid(k1, aatype.shape)
    sc, ang = _random_torsions(k2, aatype.shape)
    x14, m14, all_frames = T.frames_and_torsions_to_atom14(frames, sc, aatype)
    assert x14.shape == (21, 14, 3) and m14.shape == (21, 14) and all_frames.shape == (21, 8)
    x14 = np.asarray(x14, np.float64)
    for name, p, q, d, ideal in _bond_lengths(x14, aatype):
        if name == "PRO" and {p, q} == {"CD", "N"}:
            continue  # closes only at ring-compatible chi1/chi2
        assert abs(d - ideal) < 2e-3, (name, p, q, d, ideal)
    # chis measured from the built atoms equal the chis that built them
    x37 = T.atom14_to_atom37(x14, aatype)
    m37 = T.atom14_to_atom37(m14, aatype)
    meas, tmask, _ = T.torsion_angles(x37, m37, aatype)
    meas = np.asarray(T.sin_cos_to_angles(meas))
    chi_mask = rc.chi_angles_mask[np.asarray(aatype)]
    np.testing.assert_array_equal(np.asarray(tmask)[:, 3:], chi_mask)
    err = np.abs(_wrap(meas[:, 3:] - np.asarray(ang)[:, 3:])) * chi_mask
    assert err.max() < 1e-3
    # psi (O-based) too
    np.testing.assert_allclose(_wrap(meas[:, 2] - np.asarray(ang)[:, 2]), 0, atol=1e-3)
    # the chi frames: origin on the chi axis end atom, x axis along the axis
    for i, a in enumerate(np.asarray(aatype)):
        name = rc.resnames[a]
        names14 = rc.restype_name_to_atom14_names[name]
        for k, atoms in enumerate(rc.chi_angles_atoms[name]):
            np.testing.assert_allclose(all_frames.trans[i, 4 + k],
                                       x14[i, names14.index(atoms[2])], atol=1e-3)


def test_rebuild_is_exact_on_ideal_structures():
    """Build, measure, rebuild: the same coordinates (the inverse of each other)."""
    aatype = jnp.arange(21)
    k1, k2 = jax.random.split(jax.random.PRNGKey(2))
    frames = random_rigid(k1, aatype.shape)
    sc, _ = _random_torsions(k2, aatype.shape)
    x14, m14, _ = T.frames_and_torsions_to_atom14(frames, sc, aatype)
    x37, m37 = T.atom14_to_atom37(x14, aatype), T.atom14_to_atom37(m14, aatype)
    y37, ym = T.rebuild_from_atom37(x37, m37, aatype)
    np.testing.assert_array_equal(ym, m37)
    assert float(jnp.max(jnp.abs(y37 - x37))) < 2e-3


def test_pi_periodic_alternative_swaps_ambiguous_atoms():
    aatype = jnp.arange(21)  # the ambiguous residues D, E, F, Y among all others
    k1, k2 = jax.random.split(jax.random.PRNGKey(3))
    frames = random_rigid(k1, aatype.shape)
    sc, _ = _random_torsions(k2, aatype.shape)
    x14, m14, _ = T.frames_and_torsions_to_atom14(frames, sc, aatype)
    x37, m37 = T.atom14_to_atom37(x14, aatype), T.atom14_to_atom37(m14, aatype)
    _, _, alt = T.torsion_angles(x37, m37, aatype)
    x14_alt, _, _ = T.frames_and_torsions_to_atom14(frames, alt, aatype)
    perm = jnp.asarray(rc.restype_atom14_swap_index)[aatype]
    swapped = jnp.take_along_axis(x14, perm[..., None], axis=1)
    # symmetric groups: the flipped build puts each atom where its partner was; residues
    # without pi-periodic chis are unchanged
    assert float(jnp.max(jnp.abs(x14_alt - swapped) * m14[..., None])) < 0.05
    plain = rc.chi_pi_periodic.sum(-1) == 0
    np.testing.assert_allclose(np.asarray(x14_alt)[plain], np.asarray(x14)[plain], atol=2e-3)


# ------------------------------------------------------------------ real structures
@pytest.mark.parametrize("fname,chain", [("1A8O.pdb", None), ("4ZHL.cif.gz", "U")])
def test_rebuild_real_structure_side_chains(fname, chain):
    """A real structure from its own backbone frames and measured torsions: RMSD < 0.3 A."""
    aatype, pos, mask = _load_chain(DATA / fname, chain)
    pos = np.asarray(T.canonicalize_arginine(pos, mask, aatype))
    x, m = T.rebuild_from_atom37(pos, mask, aatype)
    m = np.asarray(m) * mask
    assert m.sum() > 0.98 * mask.sum()  # everything with a frame and torsions is rebuilt
    d2 = np.sum((np.asarray(x) - pos) ** 2, axis=-1)
    rmsd = float(np.sqrt((d2 * m).sum() / m.sum()))
    assert rmsd < 0.3, rmsd
    sc_mask = m.copy()
    sc_mask[:, rc.backbone_atom37] = 0
    sc_rmsd = float(np.sqrt((d2 * sc_mask).sum() / sc_mask.sum()))
    assert sc_rmsd < 0.35, sc_rmsd
    # backbone atoms come back almost exactly (only ideal bond lengths / angles differ)
    bb = np.sqrt((d2[:, rc.backbone_atom37] * m[:, rc.backbone_atom37]).sum()
                 / m[:, rc.backbone_atom37].sum())
    assert bb < 0.08, bb


def test_real_structure_torsions_are_sane():
    aatype, pos, mask = _load_chain(DATA / "1A8O.pdb", pad_to=None)
    n = len(aatype)
    sc, tmask, alt = T.torsion_angles(pos, mask, aatype, residue_index=np.arange(n))
    ang = np.degrees(np.asarray(T.sin_cos_to_angles(sc)))
    tmask = np.asarray(tmask)
    assert tmask[0, 0] == 0 and tmask[0, 1] == 0 and tmask[1:, :3].all()
    # trans peptides, and mostly helical phi (1A8O is an all-helical domain)
    omega = ang[1:, 0]
    assert np.mean(np.abs(omega) > 150) > 0.95
    phi = ang[1:, 1]
    assert np.median(phi) < -50
    # alt differs from sin_cos only for the pi-periodic chis
    diff = np.any(np.abs(np.asarray(alt) - np.asarray(sc)) > 1e-6, axis=-1)
    periodic = np.concatenate([np.zeros((len(aatype), 3)), rc.chi_pi_periodic[aatype]], -1)
    assert np.all(diff[periodic == 0] == 0)
    # a residue-numbering gap masks phi and omega
    ri = np.arange(len(aatype))
    ri[10:] += 5
    _, tm2, _ = T.torsion_angles(pos, mask, aatype, residue_index=ri)
    assert np.asarray(tm2)[10, 0] == 0 and np.asarray(tm2)[10, 1] == 0
    assert np.asarray(tm2)[11, 0] == 1


def test_place_sidechains_keeps_backbone_and_sets_chis():
    aatype, pos, mask = _load_chain(DATA / "1A8O.pdb")
    bb_only = mask * np.isin(np.arange(37), rc.backbone_atom37)[None]
    chis = np.zeros((len(aatype), 4), np.float32)
    for i, a in enumerate(aatype):
        rots = rc.rotamer_library.get(rc.resnames[a])
        if rots:
            chis[i, :len(rots[0][2])] = np.deg2rad(rots[0][2])
    x, m = T.place_sidechains(pos * bb_only[..., None], bb_only, aatype, chis)
    x, m = np.asarray(x), np.asarray(m)
    np.testing.assert_array_equal(m, mask)  # every heavy atom of every (real) residue
    np.testing.assert_allclose(x[:, rc.backbone_atom37], pos[:, rc.backbone_atom37], atol=1e-5)
    sc, tmask, _ = T.torsion_angles(x, m, aatype)
    got = np.asarray(T.sin_cos_to_angles(sc))[:, 3:]
    cm = rc.chi_angles_mask[aatype]
    assert np.max(np.abs(_wrap(got - chis)) * cm) < 1e-3


# ------------------------------------------------------------------ JAX properties
def test_se3_equivariance():
    aatype = jnp.arange(21)
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(4), 3)
    frames = random_rigid(k1, aatype.shape)
    sc, _ = _random_torsions(k2, aatype.shape)
    g = random_rigid(k3, ())
    x, m, f = T.frames_and_torsions_to_atom14(frames, sc, aatype)
    moved = Rigid(jnp.broadcast_to(g.rot, frames.rot.shape),
                  jnp.broadcast_to(g.trans, frames.trans.shape)).compose(frames)
    y, _, fy = T.frames_and_torsions_to_atom14(moved, sc, aatype)
    np.testing.assert_allclose(y, g.apply(x) * m[..., None], atol=2e-4)
    np.testing.assert_allclose(fy.trans, g.apply(f.trans), atol=2e-4)
    # torsions measured from coordinates are invariant
    x37, m37 = T.atom14_to_atom37(x, aatype), T.atom14_to_atom37(m, aatype)
    a, _, _ = T.torsion_angles(x37, m37, aatype)
    b, _, _ = T.torsion_angles(T.atom14_to_atom37(y, aatype), m37, aatype)
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_gradients_finite():
    aatype = jnp.arange(21)
    k1, k2 = jax.random.split(jax.random.PRNGKey(5))
    frames = random_rigid(k1, aatype.shape)
    raw = jax.random.normal(k2, (21, 7, 2))  # unnormalised network-style output

    def loss(trans, raw):
        x, m, f = T.frames_and_torsions_to_atom14(Rigid(frames.rot, trans), raw, aatype)
        return jnp.sum((x * m[..., None]) ** 2) + jnp.sum(f.trans ** 2)

    gt, gr = jax.grad(loss, argnums=(0, 1))(frames.trans, raw)
    assert np.all(np.isfinite(gt)) and np.all(np.isfinite(gr)) and np.abs(gr).sum() > 0

    # measuring torsions is differentiable, also with absent (zero) atoms
    x14, m14, _ = T.frames_and_torsions_to_atom14(frames, raw, aatype)
    x37 = T.atom14_to_atom37(x14, aatype)
    m37 = T.atom14_to_atom37(m14, aatype)

    def tloss(x):
        sc, tm, _ = T.torsion_angles(x, m37, aatype)
        return jnp.sum(sc * tm[..., None])

    g = jax.grad(tloss)(x37)
    assert np.all(np.isfinite(g))
    g0 = jax.grad(lambda x: jnp.sum(T.dihedral_sin_cos(x, x, x, x)))(jnp.zeros(3))
    assert np.all(np.isfinite(g0))


def test_jit_vmap_and_batch_shapes():
    assert hasattr(T.frames_and_torsions_to_atom14, "lower")  # a jax.jit-wrapped function
    aatype = jnp.tile(jnp.arange(21)[None], (2, 1))  # [2, 21]
    k1, k2 = jax.random.split(jax.random.PRNGKey(6))
    frames = random_rigid(k1, aatype.shape)
    sc, _ = _random_torsions(k2, aatype.shape)
    # the public functions are jax.jit-compiled already; batch axes, vmap and single examples
    batched = T.frames_and_torsions_to_atom14(frames, sc, aatype)[0]
    vmapped = jax.vmap(T.frames_and_torsions_to_atom14)(frames, sc, aatype)[0]
    single = T.frames_and_torsions_to_atom14(frames[1], sc[1], aatype[1])[0]
    np.testing.assert_allclose(vmapped, batched, atol=1e-5)
    np.testing.assert_allclose(single, batched[1], atol=1e-5)
    # torsion measurement and frames under jit + vmap with a batch axis
    x37 = T.atom14_to_atom37(batched, aatype)
    m37 = jnp.asarray(rc.restype_atom37_mask)[aatype]
    a = jax.vmap(T.torsion_angles)(x37, m37, aatype)[0]
    b = T.torsion_angles(x37, m37, aatype)[0]
    np.testing.assert_allclose(a, b, atol=1e-5)
    fr, fm = T.backbone_frames(x37, m37)
    assert fr.shape == (2, 21) and fm.shape == (2, 21)
    np.testing.assert_allclose(fr.trans, frames.trans, atol=1e-4)
    np.testing.assert_allclose(fr.rot, frames.rot, atol=1e-4)


def test_canonicalize_arginine():
    i = rc.restype_order["R"]
    aatype = jnp.arange(21)
    frames = random_rigid(jax.random.PRNGKey(7), (21,))
    sc = T.angles_to_sin_cos(jnp.deg2rad(jnp.tile(jnp.asarray([0, 0, 0, -67, 180, 180, 180.0]),
                                                  (21, 1))))
    x14, m14, _ = T.frames_and_torsions_to_atom14(frames, sc, aatype)
    x37, m37 = T.atom14_to_atom37(x14, aatype), T.atom14_to_atom37(m14, aatype)
    nh1, nh2 = rc.atom_order["NH1"], rc.atom_order["NH2"]
    swapped = x37.at[i, nh1].set(x37[i, nh2]).at[i, nh2].set(x37[i, nh1])
    np.testing.assert_allclose(T.canonicalize_arginine(swapped, m37, aatype), x37, atol=0)
    np.testing.assert_allclose(T.canonicalize_arginine(x37, m37, aatype), x37, atol=0)
