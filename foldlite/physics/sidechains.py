"""Side chains: build from rotamers with ideal geometry, pick one per residue, refine the chis.

``pack_sidechains(protein)`` gives every residue a complete side chain:

1. **Which residues.** Residues whose side chain is incomplete (backbone-only input, missing
   atoms) are rebuilt; complete side chains are kept unless ``rebuild_all=True``. A missing
   carbonyl O is built too. Glycine and UNK have nothing to build.
2. **Rotamers.** For each rebuilt residue every rotamer of ``constants.rotamer_library``
   (Lovell et al. 2000; the ``MAX_ROTAMERS`` most frequent) is built with ideal geometry on the residue's backbone frame
   (``foldlite.geometry.torsions.place_sidechains``), and scored by the steric overlap of its
   atoms beyond CB with the environment (backbone, kept side chains and the other rebuilt
   residues' current choice) plus a prior ``-log(frequency)``. The best rotamer is chosen per
   residue; a few sweeps re-score against the updated choices (a residue changes only when
   that lowers its score).
3. **Chi refinement.** The chi angles of the rebuilt residues are then optimised by gradient
   descent on the refinement energy (``foldlite.physics.energy``) with the atoms placed from the
   chis (``minimize(mode="chi")``): bond lengths and angles stay ideal while the side chains
   move out of clashes. ``foldlite.physics.refine`` afterwards relaxes all atoms.

Shapes: proteins are atom37 ``[L,37,3]``; candidate rotamers ``[R,L,14,3]`` (R = MAX_ROTAMERS).
"""

from __future__ import annotations

import dataclasses
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from foldlite import constants as rc
from foldlite.errors import InputError
from foldlite.geometry import torsions as tors
from foldlite.physics import energy as E
from foldlite.physics.minimize import ChiSystem, MinSettings, run_minimizer
from foldlite.physics.neighbors import query_neighbors
from foldlite.physics.topology import build_topology, bucket_size

_N, _CA, _C, _O, _CB = (rc.atom_order[a] for a in ("N", "CA", "C", "O", "CB"))
_BACKBONE37 = np.zeros(37, bool)
_BACKBONE37[[_N, _CA, _C, _O, rc.atom_order["OXT"]]] = True
#: [21, 37] side-chain atoms (CB onwards) of each residue type.
SIDECHAIN_MASK37: np.ndarray = (rc.restype_atom37_mask > 0) & ~_BACKBONE37[None]
#: [21, 14] atoms beyond CB (those that differ between rotamers).
_BEYOND_CB14: np.ndarray = rc.restype_atom14_mask.copy()
_BEYOND_CB14[:, :5] = 0.0


#: Rotamers tried per residue: the most frequent ones of the library.
MAX_ROTAMERS = 6


def _rotamer_table() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """chis [21,R,4] (rad), prior [21,R] (-log frequency), mask [21,R]; R = MAX_ROTAMERS."""
    r = MAX_ROTAMERS
    chis = np.zeros((21, r, 4), np.float32)
    prior = np.zeros((21, r), np.float32)
    mask = np.zeros((21, r), np.float32)
    for i, name in enumerate(rc.resnames):
        c, f = rc.rotamer_chis(name)
        if len(c) == 0:
            mask[i, 0] = 1.0  # no chis: a single "rotamer"
            continue
        top = np.argsort(-f, kind="stable")[:r]
        chis[i, : len(top)] = c[top]
        prior[i, : len(top)] = -np.log(np.maximum(f[top], 1e-3))
        mask[i, : len(top)] = 1.0
    return chis, prior, mask


ROTAMER_CHIS, ROTAMER_PRIOR, ROTAMER_MASK = _rotamer_table()


@dataclasses.dataclass(frozen=True)
class PackConfig:
    """Side-chain packing settings.

    Attributes:
      sweeps: rotamer re-scoring sweeps after the first choice.
      prior_weight: weight of ``-log(rotamer frequency)`` against the overlap score (A^2).
      chi_steps: gradient steps on the chi angles (0 = keep the rotamers as chosen).
      chi_learning_rate: Adam step on the chis (radians).
      clash_tolerance: overlap (A) below which rotamer atoms are not penalised.
    """

    sweeps: int = 2
    prior_weight: float = 0.1
    chi_steps: int = 150
    chi_learning_rate: float = 0.05
    clash_tolerance: float = 0.2


def incomplete_sidechains(aatype: np.ndarray, atom_mask: np.ndarray) -> np.ndarray:
    """bool [L]: residues missing a side-chain atom of their type (or their carbonyl O)."""
    aatype = np.asarray(aatype)
    present = np.asarray(atom_mask) > 0
    expected = SIDECHAIN_MASK37[aatype]
    missing_sc = np.any(expected & ~present, axis=-1)
    return missing_sc | ~present[:, _O]


def check_backbone(protein, source: str = "structure") -> None:
    """InputError unless every residue has N, CA and C and all coordinates are finite."""
    if protein.length == 0:
        raise InputError(f"{source}: no protein residues to refine")
    m = np.asarray(protein.atom_mask) > 0
    need = m[:, _N] & m[:, _CA] & m[:, _C]
    if not need.all():
        bad = np.nonzero(~need)[0]
        names = ", ".join(
            f"{rc.resnames[protein.aatype[i]]} {protein.residue_ids[i]} (position {i + 1})"
            for i in bad[:5])
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise InputError(
            f"{source}: chain {protein.chain_id}: residue(s) {names}{more} lack backbone atoms "
            f"(N, CA and C are required); remove or complete them before refinement")
    pos = np.asarray(protein.atom_positions)
    if not np.all(np.isfinite(pos[m])):
        raise InputError(f"{source}: chain {protein.chain_id}: non-finite atom coordinates")


@jax.jit
def _candidates(atom37, mask37, aatype):
    """All rotamers of every residue: (atom14 [R,L,14,3], chis [R,L,4])."""
    chis = jnp.asarray(ROTAMER_CHIS)[aatype]  # [L,R,4]
    chis = jnp.moveaxis(chis, 1, 0)           # [R,L,4]

    def one(c):
        x37, _ = tors.place_sidechains(atom37, mask37, aatype, c)
        return tors.atom37_to_atom14(x37, aatype)

    return jax.lax.map(one, chis), chis


@partial(jax.jit, static_argnames=("capacity", "cell_capacity", "tolerance"))
def _rotamer_scores(cand14, env14, env_mask14, aatype, rebuild, *, capacity: int,
                    cell_capacity: int, tolerance: float):
    """Overlap score [R, L] of each rotamer's atoms beyond CB against the environment.

    cand14 [R,L,14,3]; env14 [L,14,3] with env_mask14 [L,14] (the residue's own atoms are
    skipped); rebuild [L] bool.
    """
    L = aatype.shape[0]
    radius14 = jnp.asarray(_RADIUS14)[aatype]          # [L,14]
    polar14 = jnp.asarray(_POLAR14)[aatype]
    qmask = (jnp.asarray(_BEYOND_CB14)[aatype] > 0) & rebuild[:, None]  # [L,14]
    env_x = env14.reshape(-1, 3)
    env_m = env_mask14.reshape(-1) > 0
    env_res = jnp.repeat(jnp.arange(L), 14)
    env_r = radius14.reshape(-1)
    env_p = polar14.reshape(-1)
    q_res = jnp.repeat(jnp.arange(L), 14)

    def one(c14):
        pts = c14.reshape(-1, 3)
        idx, over = query_neighbors(pts, qmask.reshape(-1), env_x, env_m, cutoff=3.8,
                                    capacity=capacity, cell_capacity=cell_capacity)
        valid = idx < env_x.shape[0]
        j = jnp.clip(idx, 0, env_x.shape[0] - 1)
        d = jnp.sqrt(jnp.sum((pts[:, None] - env_x[j]) ** 2, -1) + 1e-8)
        contact = radius14.reshape(-1)[:, None] + env_r[j]
        sep = jnp.abs(q_res[:, None] - env_res[j])
        contact = contact - 0.5 * (sep == 1)          # neighbouring backbone: 1-5-like pairs
        both_polar = (polar14.reshape(-1)[:, None] > 0) & (env_p[j] > 0)
        contact = jnp.where(both_polar, jnp.minimum(contact, 2.7), contact)
        ov = jax.nn.relu(contact - tolerance - d)
        ov = jnp.where(valid & (sep > 0), ov, 0.0)
        per_atom = jnp.sum(ov * ov, axis=-1)
        return jnp.sum(per_atom.reshape(L, 14), axis=-1), over

    scores, over = jax.lax.map(one, cand14)
    return scores, jnp.any(over)


def _atom_tables() -> tuple[np.ndarray, np.ndarray]:
    radius = np.full((21, 14), 1.7, np.float32)
    polar = np.zeros((21, 14), np.float32)
    for i, name in enumerate(rc.resnames):
        for j, atom in enumerate(rc.restype_name_to_atom14_names[name]):
            if atom:
                radius[i, j] = rc.van_der_waals_radius[atom[0]]
                polar[i, j] = float(atom[0] in "NO")
    return radius, polar


_RADIUS14, _POLAR14 = _atom_tables()


@jax.jit
def _backbone_state(atom37, mask37, aatype):
    """Backbone frames (Rigid [L]) and (sin, cos) of omega, phi, psi [L,3,2]."""
    frames, _ = tors.backbone_frames(atom37, mask37)
    sc, _, _ = tors.torsion_angles(atom37, mask37, aatype)
    return frames, sc[:, :3]


def _pad_residues(lpad: int, pos37: np.ndarray, mask37: np.ndarray, aatype: np.ndarray, *rest):
    """Pad residue arrays to ``lpad`` with ideal glycine backbones (non-degenerate frames keep
    gradients finite; callers mask the padding out); extra arrays are zero padded."""
    L = len(aatype)
    n = lpad - L
    gly = rc.restype_order["G"]
    ideal = np.zeros((n, 37, 3), np.float32)
    ideal[:, [_N, _CA, _C]] = rc.restype_atom14_ideal_coords[gly, :3]
    m = np.zeros((n, 37), mask37.dtype)
    m[:, [_N, _CA, _C]] = 1
    out = [np.concatenate([pos37.astype(np.float32), ideal]),
           np.concatenate([mask37, m]),
           np.concatenate([aatype, np.full(n, gly, aatype.dtype)])]
    for a in rest:
        widths = [(0, n)] + [(0, 0)] * (a.ndim - 1)
        out.append(np.pad(a, widths))
    return out


def choose_rotamers(atom37: np.ndarray, mask37: np.ndarray, aatype: np.ndarray,
                    rebuild: np.ndarray, config: PackConfig = PackConfig()
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Best rotamer per rebuilt residue (see module docstring).

    Args:
      atom37 [L,37,3], mask37 [L,37] (atoms to keep), aatype [L], rebuild bool [L].
    Returns:
      (chis [L,4] radians of the chosen rotamers (0 where not rebuilt), rotamer index [L],
      atom14 [L,14,3] coordinates of the chosen rotamers: kept N, CA, C, O (O built where
      missing) and the side chain with ideal geometry).
    """
    L0 = len(aatype)
    lpad = bucket_size(L0, 32)
    atom37, mask37, aatype, rebuild = _pad_residues(
        lpad, np.asarray(atom37), np.asarray(mask37, np.float32), np.asarray(aatype, np.int32),
        np.asarray(rebuild, bool))
    L = lpad
    aa = jnp.asarray(aatype, jnp.int32)
    cand14, chis = _candidates(jnp.asarray(atom37), jnp.asarray(mask37), aa)
    cand14 = np.asarray(cand14)
    chis = np.asarray(chis)
    prior = ROTAMER_PRIOR[aatype].T                       # [R,L]
    valid = ROTAMER_MASK[aatype].T > 0                    # [R,L]
    kept14 = np.asarray(tors.atom37_to_atom14(jnp.asarray(atom37), aa))
    m14 = np.asarray(tors.atom37_to_atom14(jnp.asarray(mask37), aa))
    full14 = rc.restype_atom14_mask[aatype]
    moving = (_BEYOND_CB14[aatype] > 0) & rebuild[:, None]
    # Environment: everything kept, minus the atoms being rebuilt (beyond CB); the CB of a
    # rebuilt residue does not depend on the rotamer: take it from the first candidate.
    env = kept14.copy()
    env_mask = m14 * ~moving * (np.arange(L) < L0)[:, None]
    cb_built = rebuild & (full14[:, 4] > 0)
    env[cb_built, 4] = cand14[0, cb_built, 4]
    env_mask[cb_built, 4] = 1.0
    choice = np.zeros(L, np.int64)
    capacity, cell_capacity = 32, 16
    cols = np.arange(L)
    for sweep in range(config.sweeps + 1):
        if sweep > 0:
            chosen = cand14[choice, cols]
            env = np.where(moving[..., None], chosen, env)
            env_mask = np.where(moving, full14, env_mask)
        while True:
            scores, over = _rotamer_scores(
                jnp.asarray(cand14), jnp.asarray(env), jnp.asarray(env_mask, jnp.float32), aa,
                jnp.asarray(rebuild), capacity=capacity, cell_capacity=cell_capacity,
                tolerance=config.clash_tolerance)
            if not bool(over):
                break
            if capacity >= 1024:
                raise RuntimeError("rotamer scoring: neighbour list overflow")
            capacity, cell_capacity = capacity * 2, cell_capacity * 2
        total = np.asarray(scores) + config.prior_weight * prior
        total = np.where(valid, total, np.inf)
        best = np.argmin(total, axis=0)
        if sweep == 0:
            choice = best
            continue
        better = total[best, cols] < total[choice, cols] - 1e-3
        if not better.any():
            break
        choice = np.where(better, best, choice)
    out = chis[choice, cols] * rebuild[:, None]
    return out[:L0].astype(np.float32), choice[:L0], cand14[choice, cols][:L0]


def pack_sidechains(protein, *, rebuild_all: bool = False, residues: np.ndarray | None = None,
                    config: PackConfig = PackConfig(), weights: E.EnergyWeights | None = None,
                    return_info: bool = False):
    """A full-atom copy of ``protein`` with rebuilt side chains (see the module docstring).

    Args:
      protein: ``foldlite.protein.Protein`` with at least N, CA, C per residue.
      rebuild_all: rebuild every side chain, not only incomplete ones.
      residues: explicit bool [L] of residues to rebuild (overrides the default choice).
      config: ``PackConfig``.
      weights: energy weights for the chi refinement (default ``EnergyWeights()``).
      return_info: also return a dict (rebuilt residues, chosen rotamers, chi steps).
    Returns:
      Protein (and the info dict when asked).
    """
    check_backbone(protein)
    aatype = np.asarray(protein.aatype)
    mask37 = np.asarray(protein.atom_mask) > 0
    pos37 = np.asarray(protein.atom_positions, np.float32)
    if residues is not None:
        rebuild = np.asarray(residues, bool)
    elif rebuild_all:
        rebuild = np.ones(len(aatype), bool)
    else:
        rebuild = incomplete_sidechains(aatype, mask37)
    rebuild &= aatype != rc.unk_restype_index
    info = {"rebuilt": int(rebuild.sum()), "chi_steps": 0}
    if not rebuild.any():
        return (protein, info) if return_info else protein

    # Keep backbone (+ kept side chains); drop partial side chains of rebuilt residues.
    keep37 = mask37 & ~(rebuild[:, None] & SIDECHAIN_MASK37[aatype])
    chis, choice, x14 = choose_rotamers(pos37, keep37, aatype, rebuild, config)
    x37 = np.zeros_like(pos37)
    slots = rc.restype_atom14_mask[aatype] > 0
    rows = np.broadcast_to(np.arange(len(aatype))[:, None], slots.shape)
    x37[rows[slots], rc.restype_atom14_to_atom37[aatype][slots]] = x14[slots]
    m37 = rc.restype_atom37_mask[aatype] > 0
    built = (rebuild[:, None] & SIDECHAIN_MASK37[aatype]) | (~mask37[:, _O] & m37[:, _O])[:, None] \
        * (np.arange(37) == _O)[None]
    new_pos = np.where(built[..., None], x37, pos37 * keep37[..., None])
    new_mask = keep37 | (built & m37)
    # Restore OXT (not built by the side-chain builder).
    oxt = rc.atom_order["OXT"]
    new_mask[:, oxt] = mask37[:, oxt]
    new_pos[:, oxt] = pos37[:, oxt]

    if config.chi_steps > 0:
        topo, layout = build_topology(aatype, new_pos, new_mask, protein.residue_index,
                                      insertion_code=protein.insertion_code,
                                      restraint_weight=0.0)
        a = topo.atom_mask.shape[0]
        flat37 = np.where(built & new_mask, layout.index37, a)
        flat37 = np.where(flat37 < 0, a, flat37)
        # atom14 slots of each residue -> flat atom index (A where not rebuilt).
        flat14 = np.take_along_axis(flat37, rc.restype_atom14_to_atom37[aatype], axis=1)
        flat14 = np.where(rc.restype_atom14_mask[aatype] > 0, flat14, a).astype(np.int32)
        lpad = bucket_size(len(aatype), 32)
        p_pos, p_mask, p_aa, p_chis, p_index = _pad_residues(
            lpad, new_pos, new_mask.astype(np.float32), aatype.astype(np.int32), chis,
            flat14 - a)
        frames, bb_sc = _backbone_state(jnp.asarray(p_pos), jnp.asarray(p_mask),
                                        jnp.asarray(p_aa))
        system = ChiSystem(
            base=jnp.asarray(topo.reference), frames=frames,
            backbone_torsions=bb_sc, aatype=jnp.asarray(p_aa),
            flat_index=jnp.asarray(p_index + a, jnp.int32))
        settings = MinSettings(weights=weights or E.EnergyWeights(), optimizer="adam",
                               learning_rate=config.chi_learning_rate,
                               max_steps=config.chi_steps, grad_tol=1e-3, mode="chi")
        topo_j = jax.tree_util.tree_map(jnp.asarray, topo)
        res, _ = run_minimizer(jnp.asarray(p_chis), topo_j, system, settings)
        x = np.asarray(res.positions)
        new_pos = layout.to_atom37(x, new_pos)
        info["chi_steps"] = int(res.steps)
    bf = np.asarray(protein.b_factors).copy()
    ca_b = bf[:, _CA:_CA + 1]
    bf = np.where(built, ca_b, bf)
    out = protein.replace(atom_positions=new_pos.astype(np.float32),
                          atom_mask=new_mask.astype(np.float32), b_factors=bf)
    info["rotamers"] = choice.tolist()
    return (out, info) if return_info else out
