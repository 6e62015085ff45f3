"""Geometry validation of a structure in the refinement topology: violations, clashes, RMSZ.

Definitions (heavy atoms; z = (value - ideal) / sd with the ideal values of
``foldlite.physics.topology``):

* **violations**, after AlphaFold2 (Jumper et al. 2021, Suppl. 1.9.11): a bond length or a bond
  angle more than 12 standard deviations from ideal, or a clash of two non-bonded heavy atoms
  (more than three bonds apart) overlapping by more than 1.5 A, overlap = r_i + r_j - d with the
  van der Waals radii of ``constants.van_der_waals_radius``.
* **clashes**: non-bonded heavy-atom pairs (more than three bonds apart) overlapping by more than
  0.4 A. Without hydrogens two corrections keep well-refined crystal structures from counting
  ordinary contacts: pairs four bonds apart (1-5, e.g. O(i)..C(i+1), whose distance follows a
  torsion) have their contact distance shortened by ``one_five_reduction`` (0.5 A), and two polar
  atoms (N/O, which may share a hydrogen bond) have a contact distance of ``hbond_contact``
  (2.7 A). Reported per 1,000 atoms as well.
* **bond / angle RMSZ**: root-mean-square z over all bonds / angles.
* **omega**: deviation of each peptide's CA-C-N-CA dihedral from its target (trans or cis).
* **chirality**: chiral centres whose signed volume has the wrong sign.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from foldlite.cache import persistent_jit
from foldlite.physics import energy as E
from foldlite.physics.neighbors import (DEFAULT_CAPACITIES, build_neighbor_list,
                                       grow_capacities)

#: AlphaFold2's violation thresholds.
VIOLATION_SD = 12.0
VIOLATION_CLASH = 1.5
#: Clash threshold of the clash count.
CLASH_OVERLAP = 0.4
_LIST_CUTOFF = 3.7  # > largest van der Waals contact (S-S 3.6 A)


def list_cutoff(weights: E.EnergyWeights) -> float:
    """Cutoff (A) of ``evaluate``'s neighbour list: the van der Waals contacts of the clash
    count, and the attraction and hydrogen-bond terms when they are on (no skin)."""
    cutoff = _LIST_CUTOFF + (weights.attraction_width if weights.attraction else 0.0)
    if weights.hbond:
        cutoff = max(cutoff, 2.9 + 4 * 0.3)
    return cutoff


@persistent_jit(static_argnames=("weights", "per_atom", "candidates_per_atom"))
def _evaluate(x, topo, weights: E.EnergyWeights, *, per_atom: int, candidates_per_atom: int):
    """Energy terms and per-item validation values, with one neighbour list."""
    cutoff = list_cutoff(weights)
    nl = build_neighbor_list(x, topo.atom_mask, topo.exclusions, topo.one_five,
                             cutoff=cutoff, capacity=per_atom * x.shape[0],
                             candidate_capacity=candidates_per_atom * x.shape[0])
    terms = E.energy_terms(x, topo, nl, weights)
    bz = (E.bond_lengths(x, topo.bonds) - topo.bond_ideal) / topo.bond_sd
    az = (E.bond_angles(x, topo.angles) - topo.angle_ideal) / topo.angle_sd
    cos_w, sin_w = E.dihedral_cos_sin(x, topo.omegas)
    dev = jnp.arctan2(sin_w * jnp.cos(topo.omega_target) - cos_w * jnp.sin(topo.omega_target),
                      cos_w * jnp.cos(topo.omega_target) + sin_w * jnp.sin(topo.omega_target))
    vol = E.signed_volumes(x, topo.chirals)
    wrong_hand = jnp.sign(vol) != jnp.sign(topo.chiral_ideal)
    # Clash count overlaps (with the 1-5 and hydrogen-bond corrections) and plain overlaps.
    over, valid = E.pair_overlaps(x, nl.pairs, nl.special, topo.radius, topo.polar,
                                  hbond_contact=weights.hbond_contact,
                                  one_five_reduction=weights.one_five_reduction)
    plain, _ = E.pair_overlaps(x, nl.pairs, jnp.zeros_like(nl.special), topo.radius,
                               jnp.zeros_like(topo.polar), hbond_contact=0.0,
                               one_five_reduction=0.0)
    over = jnp.where(valid, over, -1.0)
    plain = jnp.where(valid, plain, -1.0)
    values = (bz, az, dev, wrong_hand, over, plain, nl.pairs)
    return terms, values, nl.overflow


def evaluate(x, topo, weights: E.EnergyWeights = E.EnergyWeights(),
             capacities: dict | None = None) -> tuple[dict, dict]:
    """Energy terms (floats, with "total") and per-item validation values (numpy) at ``x``.

    ``capacities``: starting neighbour-list capacities (``neighbors.estimate_capacities``);
    they grow on overflow (``neighbors.grow_capacities``) up to ``neighbors.MAX_CAPACITIES``,
    beyond which the pair list is truncated and ``per_item["truncated"]`` is True (only for
    grossly overcrowded input).

    Per-item values: bond_z [B], angle_z [T], omega_dev [P] (rad), omega_trans [P],
    wrong_hand [Q], overlap and plain_overlap [N] of the N non-bonded pairs within 3.7 A with
    their atom indices pairs [N,2]; padding rows are dropped.
    """
    caps = dict(capacities or DEFAULT_CAPACITIES)
    while True:
        terms, values, overflow = _evaluate(jnp.asarray(x, jnp.float32), topo, weights,
                                        per_atom=caps["pairs_per_atom"],
                                        candidates_per_atom=caps["candidates_per_atom"])
        grown = grow_capacities(caps) if bool(overflow) else None
        if grown is None:
            break
        caps = grown
    bz, az, dev, wrong, over, plain, pairs = (np.asarray(v) for v in values)
    a = np.asarray(topo.atom_mask).shape[0]
    energy = {k: float(v) for k, v in terms.items()}
    energy["total"] = float(sum(energy.values()))
    per_item = {
        "bond_z": bz[np.asarray(topo.bond_mask) > 0],
        "angle_z": az[np.asarray(topo.angle_mask) > 0],
        "omega_dev": dev[np.asarray(topo.omega_mask) > 0],
        "omega_trans": np.asarray(topo.omega_target)[np.asarray(topo.omega_mask) > 0] > 1.0,
        "wrong_hand": wrong[np.asarray(topo.chiral_mask) > 0],
        "overlap": over[pairs[:, 0] < a],
        "plain_overlap": plain[pairs[:, 0] < a],
        "pairs": pairs[pairs[:, 0] < a],
        "truncated": bool(overflow),
    }
    return energy, per_item


def _rmsz(z: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(z)))) if z.size else 0.0


def metrics_from_values(v: dict, num_atoms: int) -> dict:
    """Validation figures (see ``geometry_metrics``) from ``evaluate``'s per-item values."""
    n = int(num_atoms)
    bz, az = v["bond_z"], v["angle_z"]
    trans_dev = np.degrees(np.abs(v["omega_dev"][v["omega_trans"]]))
    bond_v = int(np.sum(np.abs(bz) > VIOLATION_SD))
    angle_v = int(np.sum(np.abs(az) > VIOLATION_SD))
    clash_v = int(np.sum(v["plain_overlap"] > VIOLATION_CLASH))
    clashes = int(np.sum(v["overlap"] > CLASH_OVERLAP))
    return {
        "num_atoms": n,
        "bond_rmsz": _rmsz(bz),
        "angle_rmsz": _rmsz(az),
        "bond_max_z": float(np.max(np.abs(bz))) if bz.size else 0.0,
        "angle_max_z": float(np.max(np.abs(az))) if az.size else 0.0,
        "bond_violations": bond_v,
        "angle_violations": angle_v,
        "clash_violations": clash_v,
        "violations": bond_v + angle_v + clash_v,
        "clashes": clashes,
        "clashes_per_1000": 1000.0 * clashes / max(n, 1),
        "omega_max_dev_deg": float(trans_dev.max()) if trans_dev.size else 0.0,
        "omega_over_15deg": int(np.sum(trans_dev > 15.0)),
        "wrong_chirality": int(np.sum(v["wrong_hand"])),
        "pair_list_truncated": bool(v.get("truncated", False)),
    }


def geometry_metrics(x, topo, weights: E.EnergyWeights = E.EnergyWeights(), *,
                     num_atoms: int | None = None) -> dict:
    """Validation figures of positions ``x`` [A,3] in topology ``topo`` (see module docstring).

    Returns a JSON-ready dict: bond_rmsz, angle_rmsz, bond_max_z, angle_max_z, bond_violations,
    angle_violations, clash_violations, violations (their sum), clashes, clashes_per_1000,
    omega_max_dev_deg (trans peptides), omega_over_15deg, wrong_chirality, num_atoms.
    ``weights`` supplies the clash-count contact corrections (hbond_contact,
    one_five_reduction).
    """
    _, v = evaluate(x, topo, weights)
    n = num_atoms if num_atoms is not None else int(np.asarray(topo.atom_mask).sum())
    return metrics_from_values(v, n)


def violating_atoms(values: dict, topo) -> np.ndarray:
    """bool [A]: atoms in a violation (AlphaFold2's definitions: bond/angle beyond 12 sd,
    clash overlap beyond 1.5 A), from ``evaluate``'s per-item values."""
    v = values
    a = np.asarray(topo.atom_mask).shape[0]
    flag = np.zeros(a, bool)
    bonds = np.asarray(topo.bonds)[np.asarray(topo.bond_mask) > 0]
    flag[bonds[np.abs(v["bond_z"]) > VIOLATION_SD].ravel()] = True
    angles = np.asarray(topo.angles)[np.asarray(topo.angle_mask) > 0]
    flag[angles[np.abs(v["angle_z"]) > VIOLATION_SD].ravel()] = True
    flag[v["pairs"][v["plain_overlap"] > VIOLATION_CLASH].ravel()] = True
    return flag & (np.asarray(topo.atom_mask) > 0)


def clashing_atoms(values: dict, topo) -> np.ndarray:
    """bool [A]: atoms in a clash (overlap beyond ``CLASH_OVERLAP``, with the 1-5 and
    hydrogen-bond corrections of the clash count), from ``evaluate``'s per-item values."""
    a = np.asarray(topo.atom_mask).shape[0]
    flag = np.zeros(a, bool)
    flag[values["pairs"][values["overlap"] > CLASH_OVERLAP].ravel()] = True
    return flag & (np.asarray(topo.atom_mask) > 0)
