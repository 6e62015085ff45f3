"""Torsion angles <-> atom coordinates (JAX, float32, differentiable, any batch shape).

* ``frames_and_torsions_to_atom14``: all heavy atoms from backbone frames and seven torsion
  angles with ideal geometry (Jumper et al. 2021, Suppl. Alg. 24 "computeAllAtomCoordinates").
* ``torsion_angles``: omega, phi, psi and chi1..chi4 measured from coordinates, with masks and
  the alternative (pi-flipped) values of pi-periodic chis (Suppl. 1.9.1, cf. Alg. 25/27).
* ``backbone_frames``: N-CA-C frames (Suppl. Alg. 21) from atom37 coordinates.
* ``atom14_to_atom37`` / ``atom37_to_atom14``: layout conversion.
* ``rebuild_from_atom37``: rebuild a structure from its own frames and measured torsions.
* ``place_sidechains``: keep the backbone atoms, place side chains at given chi angles.
* ``dihedral`` / ``dihedral_sin_cos``: IUPAC-signed dihedral angles.
* ``canonicalize_arginine``: rename ARG NH1/NH2 to the IUPAC convention (NH1 cis to CD).

Torsion order (axis -2 of a ``[..., 7, 2]`` array) is omega, phi, psi, chi1, chi2, chi3, chi4;
each torsion is ``(sin, cos)``. Conventions of the rigid groups are documented in
``foldlite.constants`` ("Ideal residue coordinates and rigid groups"). In particular the psi
torsion that places O is ``dihedral(N, CA, C, O) - 180 deg`` (measured from O, as in
AlphaFold2), which equals the usual psi (N-CA-C-N(i+1)) up to the small non-planarity of the
peptide; omega and phi rotate groups without heavy atoms and only affect ``all_frames``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from foldlite import constants as rc
from foldlite.geometry.rigid import Rigid

__all__ = [
    "TORSION_NAMES",
    "dihedral",
    "dihedral_sin_cos",
    "angles_to_sin_cos",
    "sin_cos_to_angles",
    "backbone_frames",
    "frames_and_torsions_to_atom14",
    "atom14_to_atom37",
    "atom37_to_atom14",
    "torsion_angles",
    "rebuild_from_atom37",
    "place_sidechains",
    "atom14_torsion_mask",
    "canonicalize_arginine",
]

TORSION_NAMES: tuple[str, ...] = ("omega", "phi", "psi", "chi1", "chi2", "chi3", "chi4")

_N, _CA, _C, _O = (rc.atom_order[a] for a in ("N", "CA", "C", "O"))


def _table(array: np.ndarray, aatype: jnp.ndarray, dtype=None) -> jnp.ndarray:
    """Gather rows of a per-residue-type table: ``array[aatype]`` with out-of-range -> UNK."""
    aatype = jnp.clip(jnp.asarray(aatype, jnp.int32), 0, rc.restype_num)
    return jnp.asarray(array, dtype)[aatype]


# ------------------------------------------------------------------------------------ angles
@jax.jit
def dihedral_sin_cos(p0: jnp.ndarray, p1: jnp.ndarray, p2: jnp.ndarray, p3: jnp.ndarray,
                     eps: float = 1e-8) -> jnp.ndarray:
    """(sin, cos) [..., 2] of the dihedral p0-p1-p2-p3 (IUPAC sign), points [..., 3].

    Degenerate inputs (coincident points) give (0, 0) with finite gradients.
    """
    b0 = p0 - p1
    b1 = p2 - p1
    b2 = p3 - p2
    b1n = b1 / jnp.sqrt(jnp.sum(b1 * b1, axis=-1, keepdims=True) + eps)
    v = b0 - jnp.sum(b0 * b1n, axis=-1, keepdims=True) * b1n
    w = b2 - jnp.sum(b2 * b1n, axis=-1, keepdims=True) * b1n
    x = jnp.sum(v * w, axis=-1)
    y = jnp.sum(jnp.cross(b1n, v) * w, axis=-1)
    norm = jnp.sqrt(x * x + y * y + eps)
    return jnp.stack([y / norm, x / norm], axis=-1)


def dihedral(p0: jnp.ndarray, p1: jnp.ndarray, p2: jnp.ndarray, p3: jnp.ndarray) -> jnp.ndarray:
    """Dihedral angle p0-p1-p2-p3 in radians, in (-pi, pi] [...]; points [..., 3]."""
    sc = dihedral_sin_cos(p0, p1, p2, p3)
    return jnp.arctan2(sc[..., 0], sc[..., 1])


def angles_to_sin_cos(angles: jnp.ndarray) -> jnp.ndarray:
    """[...] radians -> [..., 2] (sin, cos)."""
    angles = jnp.asarray(angles, jnp.float32)
    return jnp.stack([jnp.sin(angles), jnp.cos(angles)], axis=-1)


def sin_cos_to_angles(sin_cos: jnp.ndarray) -> jnp.ndarray:
    """[..., 2] (sin, cos) -> [...] radians."""
    return jnp.arctan2(sin_cos[..., 0], sin_cos[..., 1])


# ------------------------------------------------------------------------------------ layouts
def _gather_atoms(x: jnp.ndarray, index: jnp.ndarray, n_batch: int) -> jnp.ndarray:
    """x [..., L, A, *tail], index [..., L, B] -> [..., L, B, *tail] along the atom axis."""
    tail = x.ndim - n_batch - 1
    idx = index.reshape(index.shape + (1,) * tail)
    idx = jnp.broadcast_to(idx, index.shape + x.shape[n_batch + 1:])
    return jnp.take_along_axis(x, idx, axis=n_batch)


@jax.jit
def atom14_to_atom37(x14: jnp.ndarray, aatype: jnp.ndarray) -> jnp.ndarray:
    """Scatter atom14 data [..., L, 14, *tail] to the atom37 layout [..., L, 37, *tail].

    Atoms that the residue type does not have are zero.
    """
    x14 = jnp.asarray(x14)
    aatype = jnp.asarray(aatype)
    nb = aatype.ndim
    out = _gather_atoms(x14, _table(rc.restype_atom37_to_atom14, aatype), nb)
    mask = _table(rc.restype_atom37_mask, aatype, x14.dtype)
    return out * mask.reshape(mask.shape + (1,) * (x14.ndim - nb - 1))


@jax.jit
def atom37_to_atom14(x37: jnp.ndarray, aatype: jnp.ndarray) -> jnp.ndarray:
    """Gather atom37 data [..., L, 37, *tail] into the atom14 layout [..., L, 14, *tail]."""
    x37 = jnp.asarray(x37)
    aatype = jnp.asarray(aatype)
    nb = aatype.ndim
    out = _gather_atoms(x37, _table(rc.restype_atom14_to_atom37, aatype), nb)
    mask = _table(rc.restype_atom14_mask, aatype, x37.dtype)
    return out * mask.reshape(mask.shape + (1,) * (x37.ndim - nb - 1))


# ------------------------------------------------------------------------------------ frames
@jax.jit
def backbone_frames(atom37: jnp.ndarray, atom37_mask: jnp.ndarray) -> tuple[Rigid, jnp.ndarray]:
    """Backbone frames from N, CA, C (Suppl. Alg. 21).

    Args:
      atom37: [..., L, 37, 3] coordinates.
      atom37_mask: [..., L, 37].
    Returns:
      (Rigid [..., L], mask [..., L]) where the mask is 1 when N, CA and C are all present.
    """
    atom37 = jnp.asarray(atom37, jnp.float32)
    atom37_mask = jnp.asarray(atom37_mask, jnp.float32)
    frames = Rigid.from_three_points(atom37[..., _N, :], atom37[..., _CA, :], atom37[..., _C, :])
    mask = atom37_mask[..., _N] * atom37_mask[..., _CA] * atom37_mask[..., _C]
    return frames, mask


def _rot_x(sin_cos: jnp.ndarray) -> jnp.ndarray:
    """Rotations about x [..., 3, 3] from (sin, cos) [..., 2]."""
    s, c = sin_cos[..., 0], sin_cos[..., 1]
    zero, one = jnp.zeros_like(s), jnp.ones_like(s)
    return jnp.stack([
        jnp.stack([one, zero, zero], -1),
        jnp.stack([zero, c, -s], -1),
        jnp.stack([zero, s, c], -1),
    ], axis=-2)


@jax.jit
def frames_and_torsions_to_atom14(bb_frames: Rigid, torsions: jnp.ndarray, aatype: jnp.ndarray,
                                  eps: float = 1e-8) -> tuple[jnp.ndarray, jnp.ndarray, Rigid]:
    """All heavy atoms with ideal geometry from frames and torsions (Suppl. Alg. 24).

    Args:
      bb_frames: Rigid [..., L], backbone frames (``Rigid.from_three_points(N, CA, C)``).
      torsions: [..., L, 7, 2] (sin, cos) of omega, phi, psi, chi1..chi4. Each pair is
        normalised here, so unnormalised network outputs are fine.
      aatype: [..., L] int residue types (0..20).
    Returns:
      atom14: [..., L, 14, 3] coordinates (zero where the residue type has no atom).
      atom14_mask: [..., L, 14] float32 from the residue type.
      all_frames: Rigid [..., L, 8], global frames of the eight rigid groups.
    """
    torsions = jnp.asarray(torsions, jnp.float32)
    torsions = torsions / jnp.sqrt(jnp.sum(torsions * torsions, axis=-1, keepdims=True) + eps)
    aatype = jnp.asarray(aatype, jnp.int32)

    default = _table(rc.restype_rigid_group_default_frame, aatype, jnp.float32)  # [...,L,8,4,4]
    default = Rigid(default[..., :3, :3], default[..., :3, 3])
    # Backbone group: no torsion (identity rotation).
    bb_sc = jnp.broadcast_to(jnp.array([0.0, 1.0], jnp.float32), torsions.shape[:-2] + (1, 2))
    all_sc = jnp.concatenate([bb_sc, torsions], axis=-2)  # [..., L, 8, 2]
    rot = _rot_x(all_sc)
    local = default.compose(Rigid(rot, jnp.zeros(rot.shape[:-1], jnp.float32)))  # [..., L, 8]

    # Chain the chi frames: chi2 in chi1, chi3 in chi2, chi4 in chi3.
    chi1 = local[..., 4]
    chi2 = chi1.compose(local[..., 5])
    chi3 = chi2.compose(local[..., 6])
    chi4 = chi3.compose(local[..., 7])
    rel_bb = Rigid(
        jnp.concatenate([local.rot[..., :5, :, :], chi2.rot[..., None, :, :],
                         chi3.rot[..., None, :, :], chi4.rot[..., None, :, :]], axis=-3),
        jnp.concatenate([local.trans[..., :5, :], chi2.trans[..., None, :],
                         chi3.trans[..., None, :], chi4.trans[..., None, :]], axis=-2))
    all_frames = bb_frames.unsqueeze(-1).compose(rel_bb)  # [..., L, 8]

    group = _table(rc.restype_atom14_to_rigid_group, aatype)  # [..., L, 14]
    atom_rot = jnp.take_along_axis(all_frames.rot, group[..., None, None], axis=-3)
    atom_trans = jnp.take_along_axis(all_frames.trans, group[..., None], axis=-2)
    lit = _table(rc.restype_atom14_rigid_group_positions, aatype, jnp.float32)  # [..., L, 14, 3]
    atom14 = jnp.sum(atom_rot * lit[..., None, :], axis=-1) + atom_trans
    mask = _table(rc.restype_atom14_mask, aatype, jnp.float32)
    return atom14 * mask[..., None], mask, all_frames


# ------------------------------------------------------------------------------------ torsions
def _shift_prev(x: jnp.ndarray, axis: int) -> jnp.ndarray:
    """Values of residue i-1 at position i along ``axis`` (zeros at i = 0)."""
    pad = [(0, 0)] * x.ndim
    pad[axis] = (1, 0)
    x = jnp.pad(x, pad)
    return jax.lax.slice_in_dim(x, 0, x.shape[axis] - 1, axis=axis)


@jax.jit
def torsion_angles(atom37: jnp.ndarray, atom37_mask: jnp.ndarray, aatype: jnp.ndarray,
                   residue_index: jnp.ndarray | None = None
                   ) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray]:
    """Measure omega, phi, psi, chi1..chi4 from coordinates.

    omega_i = CA(i-1)-C(i-1)-N(i)-CA(i); phi_i = C(i-1)-N(i)-CA(i)-C(i);
    psi_i = dihedral(N, CA, C, O) - 180 deg (O-based, see the module docstring);
    chi_k from ``constants.chi_angles_atoms``.

    Args:
      atom37: [..., L, 37, 3]; atom37_mask: [..., L, 37]; aatype: [..., L].
      residue_index: optional [..., L]; when given, omega and phi are masked where residue i-1
        is not the sequence neighbour (``residue_index[i] - residue_index[i-1] != 1``).
    Returns:
      sin_cos: [..., L, 7, 2], (0, 1) where masked.
      mask: [..., L, 7] float32, 1 where all four atoms (and the chi) exist.
      alt_sin_cos: [..., L, 7, 2], the same with pi-periodic chis rotated by pi.
    """
    atom37 = jnp.asarray(atom37, jnp.float32)
    m37 = jnp.asarray(atom37_mask, jnp.float32)
    aatype = jnp.asarray(aatype, jnp.int32)
    ax = aatype.ndim - 1  # residue axis
    prev_x = _shift_prev(atom37, ax)
    prev_m = _shift_prev(m37, ax)

    def at(x, k):
        return x[..., k, :]

    omega_pts = (at(prev_x, _CA), at(prev_x, _C), at(atom37, _N), at(atom37, _CA))
    omega_m = prev_m[..., _CA] * prev_m[..., _C] * m37[..., _N] * m37[..., _CA]
    phi_pts = (at(prev_x, _C), at(atom37, _N), at(atom37, _CA), at(atom37, _C))
    phi_m = prev_m[..., _C] * m37[..., _N] * m37[..., _CA] * m37[..., _C]
    psi_pts = (at(atom37, _N), at(atom37, _CA), at(atom37, _C), at(atom37, _O))
    psi_m = m37[..., _N] * m37[..., _CA] * m37[..., _C] * m37[..., _O]
    if residue_index is not None:
        ri = jnp.asarray(residue_index, jnp.int32)
        consecutive = (ri - _shift_prev(ri, ax) == 1).astype(jnp.float32)
        omega_m = omega_m * consecutive
        phi_m = phi_m * consecutive

    chi_idx = _table(rc.chi_angles_atom37_indices, aatype)  # [..., L, 4, 4]
    flat_idx = chi_idx.reshape(chi_idx.shape[:-2] + (16,))
    chi_x = _gather_atoms(atom37, flat_idx, aatype.ndim).reshape(chi_idx.shape + (3,))
    chi_m = _gather_atoms(m37, flat_idx, aatype.ndim).reshape(chi_idx.shape)
    chi_m = jnp.prod(chi_m, axis=-1) * _table(rc.chi_angles_mask, aatype, jnp.float32)

    pts = [jnp.stack([omega_pts[i], phi_pts[i], psi_pts[i]], axis=-2) for i in range(4)]
    pts = [jnp.concatenate([pts[i], chi_x[..., i, :]], axis=-2) for i in range(4)]
    sc = dihedral_sin_cos(*pts)  # [..., L, 7, 2]
    # psi from O: rotate by pi.
    sc = sc * jnp.array([1.0, 1.0, -1.0, 1.0, 1.0, 1.0, 1.0], jnp.float32)[:, None]
    mask = jnp.concatenate([jnp.stack([omega_m, phi_m, psi_m], axis=-1), chi_m], axis=-1)
    identity = jnp.array([0.0, 1.0], jnp.float32)
    sc = jnp.where(mask[..., None] > 0, sc, identity)
    periodic = _table(rc.chi_pi_periodic, aatype, jnp.float32)  # [..., L, 4]
    flip = jnp.concatenate([jnp.zeros(periodic.shape[:-1] + (3,), jnp.float32), periodic],
                           axis=-1)
    alt = sc * (1.0 - 2.0 * flip)[..., None]
    return sc, mask, alt


@jax.jit
def atom14_torsion_mask(torsion_mask: jnp.ndarray, aatype: jnp.ndarray) -> jnp.ndarray:
    """[..., L, 14] mask of atoms whose placement needs only available torsions.

    An atom in group psi needs psi; an atom in group chi_k needs chi_1..chi_k. Backbone-group
    atoms (N, CA, C, CB) need none.

    Args:
      torsion_mask: [..., L, 7] as returned by ``torsion_angles``.
      aatype: [..., L].
    """
    tm = jnp.asarray(torsion_mask, jnp.float32)
    chi_cum = jnp.cumprod(tm[..., 3:], axis=-1)  # chi1..chi4 all present up to k
    group_ok = jnp.concatenate([jnp.ones_like(tm[..., :1]), tm[..., :3], chi_cum], axis=-1)
    group = _table(rc.restype_atom14_to_rigid_group, aatype)
    ok = jnp.take_along_axis(group_ok, group, axis=-1)
    return ok * _table(rc.restype_atom14_mask, aatype, jnp.float32)


# ------------------------------------------------------------------------------------ rebuild
def _chi1_offset(frames: Rigid, atom37: jnp.ndarray, atom37_mask: jnp.ndarray,
                 aatype: jnp.ndarray) -> jnp.ndarray:
    """Angle [..., L] about CA-CB from the observed N to the ideal N of the backbone frame.

    The builder measures chi1 from the ideal N (placed by the frame); a chi1 measured from the
    observed N differs by this angle when the observed N-CA-C angle is not ideal. Subtracting it
    makes a built side chain have exactly the requested chi1 with respect to the observed N.
    """
    local = _table(rc.restype_atom37_rigid_group_positions, aatype, jnp.float32)
    n_ideal = frames.apply(local[..., _N, :])
    cb_ideal = frames.apply(local[..., rc.atom_order["CB"], :])
    sc = dihedral_sin_cos(atom37[..., _N, :], atom37[..., _CA, :], cb_ideal, n_ideal)
    has = atom37_mask[..., _N] * (jnp.sum(sc * sc, axis=-1) > 0.5)
    return jnp.where(has > 0, jnp.arctan2(sc[..., 0], sc[..., 1]), 0.0)


def _shift_chi1(sin_cos: jnp.ndarray, offset: jnp.ndarray) -> jnp.ndarray:
    """Rotate the chi1 entry (index 3) of torsions [..., L, 7, 2] by -offset [..., L]."""
    chi1 = jnp.arctan2(sin_cos[..., 3, 0], sin_cos[..., 3, 1]) - offset
    return sin_cos.at[..., 3, :].set(jnp.stack([jnp.sin(chi1), jnp.cos(chi1)], axis=-1))


@jax.jit
def rebuild_from_atom37(atom37: jnp.ndarray, atom37_mask: jnp.ndarray, aatype: jnp.ndarray
                        ) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Rebuild every heavy atom from the structure's own backbone frames and torsions.

    Ideal bond lengths and angles replace the observed ones; the chi angles, psi and the
    backbone frames are the observed ones (chi1 with respect to the observed N). Used to check
    the geometry tables (a real structure comes back to ~0.1-0.2 A all-atom RMSD) and to
    idealise a structure.

    Args:
      atom37: [..., L, 37, 3]; atom37_mask: [..., L, 37]; aatype: [..., L].
    Returns:
      (atom37 [..., L, 37, 3], mask [..., L, 37]): the mask is 1 for atoms that could be placed
      (residue has N, CA, C and the torsions the atom depends on).
    """
    atom37 = jnp.asarray(atom37, jnp.float32)
    atom37_mask = jnp.asarray(atom37_mask, jnp.float32)
    frames, fmask = backbone_frames(atom37, atom37_mask)
    sc, tmask, _ = torsion_angles(atom37, atom37_mask, aatype)
    sc = _shift_chi1(sc, _chi1_offset(frames, atom37, atom37_mask, aatype))
    x14, _, _ = frames_and_torsions_to_atom14(frames, sc, aatype)
    m14 = atom14_torsion_mask(tmask, aatype) * fmask[..., None]
    return atom14_to_atom37(x14, aatype), atom14_to_atom37(m14, aatype)


@jax.jit
def place_sidechains(atom37: jnp.ndarray, atom37_mask: jnp.ndarray, aatype: jnp.ndarray,
                     chi_angles: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Keep the backbone atoms and build CB and the side chain at the given chi angles.

    Args:
      atom37: [..., L, 37, 3] with at least N, CA, C (O is kept when present, else built at
        psi = the measured N-CA-C-O or, without O, at the ideal position for psi = 0).
      atom37_mask: [..., L, 37].
      aatype: [..., L].
      chi_angles: [..., L, 4] radians (entries beyond the residue's chis are ignored); chi1 is
        exact with respect to the observed N.
    Returns:
      (atom37 [..., L, 37, 3], mask [..., L, 37]): input N, CA, C, O where present, built CB and
      side-chain atoms for residues whose backbone frame exists.
    """
    atom37 = jnp.asarray(atom37, jnp.float32)
    m37 = jnp.asarray(atom37_mask, jnp.float32)
    frames, fmask = backbone_frames(atom37, m37)
    sc, _, _ = torsion_angles(atom37, m37, aatype)
    chi_sc = angles_to_sin_cos(chi_angles)
    torsions = jnp.concatenate([sc[..., :3, :], chi_sc], axis=-2)
    torsions = _shift_chi1(torsions, _chi1_offset(frames, atom37, m37, aatype))
    x14, m14, _ = frames_and_torsions_to_atom14(frames, torsions, aatype)
    built37 = atom14_to_atom37(x14, aatype)
    built_m = atom14_to_atom37(m14, aatype) * fmask[..., None]
    backbone = jnp.zeros((37,), jnp.float32).at[jnp.array([_N, _CA, _C, _O])].set(1.0)
    keep = backbone * m37  # observed backbone atoms
    out = keep[..., None] * atom37 + (1.0 - keep[..., None]) * built37
    out_m = jnp.maximum(keep, built_m * (1.0 - backbone))
    # O: observed if present, else built when the frame exists.
    o_built = (1.0 - m37[..., _O]) * fmask
    out_m = out_m.at[..., _O].set(jnp.maximum(m37[..., _O], o_built))
    return out * out_m[..., None], out_m


@jax.jit
def canonicalize_arginine(atom37: jnp.ndarray, atom37_mask: jnp.ndarray, aatype: jnp.ndarray
                          ) -> jnp.ndarray:
    """Swap ARG NH1/NH2 where NH1 is trans to CD, so that NH1 is cis to CD (IUPAC 1970).

    Some PDB entries name the two guanidinium nitrogens the other way round; the rigid-group
    geometry (and Bio.PDB.ic_data, whose CD-NE-CZ-NH1 mode is 0 degrees) follows IUPAC, so a
    structure is canonicalised before its atoms are compared with built ones.

    Args:
      atom37: [..., L, 37, 3]; atom37_mask: [..., L, 37]; aatype: [..., L].
    Returns:
      atom37 [..., L, 37, 3] with the names fixed (the mask is unchanged: both atoms or none).
    """
    atom37 = jnp.asarray(atom37, jnp.float32)
    m37 = jnp.asarray(atom37_mask, jnp.float32)
    cd, ne, cz, nh1, nh2 = (rc.atom_order[a] for a in ("CD", "NE", "CZ", "NH1", "NH2"))
    sc = dihedral_sin_cos(atom37[..., cd, :], atom37[..., ne, :], atom37[..., cz, :],
                          atom37[..., nh1, :])
    present = m37[..., cd] * m37[..., ne] * m37[..., cz] * m37[..., nh1] * m37[..., nh2]
    swap = (jnp.asarray(aatype) == rc.restype_order["R"]) & (present > 0) & (sc[..., 1] < 0)
    x1, x2 = atom37[..., nh1, :], atom37[..., nh2, :]
    new1 = jnp.where(swap[..., None], x2, x1)
    new2 = jnp.where(swap[..., None], x1, x2)
    return atom37.at[..., nh1, :].set(new1).at[..., nh2, :].set(new2)
