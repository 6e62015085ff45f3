"""Energy terms of foldlite's refinement force field (heavy atoms, JAX, differentiable).

Every term is a standalone function of flat atom positions ``x [A, 3]`` (float32) and index
arrays with masks, so it can be used and tested alone. Units: Angstrom, radians; energies are
dimensionless "z^2" units for the statistical (bonded) terms, ``0.5 * sum(z^2)`` with
``z = (value - ideal) / sd`` and the ideal values and standard deviations of
``foldlite.physics.topology`` (Engh & Huber, Acta Cryst. A47, 392-400, 1991, for the backbone).
With this scale, a bond one standard deviation off costs 0.5, and the other terms are weighted
against it (``EnergyWeights``); the unit is kT (a Boltzmann distribution of width sd has energy
``0.5 z^2 kT``), taken at 298 K to convert force-field values given in kcal/mol
(``KT_KCAL_PER_MOL``, e.g. AlphaFold2's restraint of 10 kcal/mol/A^2 is 16.9 kT/A^2).

Terms
  * ``bond_energy``       harmonic in bond-length z-scores.
  * ``angle_energy``      harmonic in bond-angle z-scores.
  * ``omega_energy``      peptide planarity, ``(1 - cos(omega - target)) / sd^2`` (trans target pi,
                          cis target 0), equal to ``0.5 z^2`` near the target.
  * ``chirality_energy``  harmonic in the signed volume of a chiral centre (CA; CB of Ile/Thr).
  * ``repulsion_energy``  ``sum relu(contact - tolerance - d)^2`` over the non-bonded pairs of
                          a neighbour list; contact from van der Waals radii (shorter for 1-5
                          pairs and for pairs that can hydrogen bond).
  * ``attraction_energy`` optional weak contact attraction (smooth well past the contact distance).
  * ``hbond_energy``      optional backbone N...O hydrogen-bond well.
  * ``restraint_energy``  harmonic or flat-bottom pull to reference coordinates, per-atom weights.

``total_energy`` combines them for a ``Topology`` (see ``foldlite.physics.topology``).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

_EPS = 1e-8
#: kT at 298.15 K in kcal/mol (R T): the energy unit, to convert force-field constants.
KT_KCAL_PER_MOL = 0.0019872 * 298.15


def _safe_norm(v: jax.Array, axis: int = -1) -> jax.Array:
    """Euclidean norm with a finite gradient at 0."""
    return jnp.sqrt(jnp.sum(v * v, axis=axis) + _EPS)


def _take(x: jax.Array, idx: jax.Array) -> jax.Array:
    """Positions ``x[idx]`` with indices clipped (padding rows may hold any index)."""
    return x[jnp.clip(idx, 0, x.shape[0] - 1)]


# ---------------------------------------------------------------------------------------------
# Geometry of index tuples
# ---------------------------------------------------------------------------------------------

def bond_lengths(x: jax.Array, pairs: jax.Array) -> jax.Array:
    """Distances ``|x[j] - x[i]|``. x [A,3], pairs int [B,2] -> [B]."""
    p = _take(x, pairs)
    return _safe_norm(p[:, 1] - p[:, 0])


def bond_angles(x: jax.Array, triples: jax.Array) -> jax.Array:
    """Angles i-j-k in radians (vertex j), via atan2 for stable gradients. triples [T,3] -> [T]."""
    p = _take(x, triples)
    a = p[:, 0] - p[:, 1]
    b = p[:, 2] - p[:, 1]
    cross = _safe_norm(jnp.cross(a, b))
    dot = jnp.sum(a * b, axis=-1)
    return jnp.arctan2(cross, dot)


def _dihedral_xy(x: jax.Array, quads: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(r cos, r sin) of dihedral angles i-j-k-l; quads [P,4] -> ([P], [P])."""
    p = _take(x, quads)
    p0, p1, p2, p3 = p[:, 0], p[:, 1], p[:, 2], p[:, 3]
    b0 = p0 - p1
    b1 = p2 - p1
    b2 = p3 - p2
    b1n = b1 / _safe_norm(b1)[:, None]
    v = b0 - jnp.sum(b0 * b1n, -1, keepdims=True) * b1n
    w = b2 - jnp.sum(b2 * b1n, -1, keepdims=True) * b1n
    xx = jnp.sum(v * w, -1)
    yy = jnp.sum(jnp.cross(b1n, v) * w, -1)
    return xx, yy


def dihedral_angles(x: jax.Array, quads: jax.Array) -> jax.Array:
    """Dihedral angles i-j-k-l in radians in (-pi, pi] (IUPAC sign). quads [P,4] -> [P]."""
    xx, yy = _dihedral_xy(x, quads)
    return jnp.arctan2(yy, xx)


def dihedral_cos_sin(x: jax.Array, quads: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(cos, sin) of dihedral angles, smooth everywhere (finite gradient when degenerate)."""
    xx, yy = _dihedral_xy(x, quads)
    r = jnp.sqrt(xx * xx + yy * yy + _EPS)
    return xx / r, yy / r


def signed_volumes(x: jax.Array, quads: jax.Array) -> jax.Array:
    """Signed volume ``(a - c) . ((b - c) x (d - c))`` of a centre ``c`` with substituents a, b, d.

    quads [Q,4] holds ``(c, a, b, d)``. Returns [Q] in Angstrom^3. Positive for CA with
    (N, C, CB) in an L-amino acid.
    """
    p = _take(x, quads)
    c, a, b, d = p[:, 0], p[:, 1], p[:, 2], p[:, 3]
    return jnp.sum((a - c) * jnp.cross(b - c, d - c), axis=-1)


# ---------------------------------------------------------------------------------------------
# Bonded terms
# ---------------------------------------------------------------------------------------------

def bond_energy(x: jax.Array, pairs: jax.Array, ideal: jax.Array, sd: jax.Array,
                mask: jax.Array) -> jax.Array:
    """``0.5 * sum(mask * ((d - ideal) / sd)^2)``. pairs [B,2], ideal/sd/mask [B] -> []."""
    z = (bond_lengths(x, pairs) - ideal) / sd
    return 0.5 * jnp.sum(mask * z * z)


def angle_energy(x: jax.Array, triples: jax.Array, ideal: jax.Array, sd: jax.Array,
                 mask: jax.Array) -> jax.Array:
    """``0.5 * sum(mask * ((theta - ideal) / sd)^2)``, radians. triples [T,3] -> []."""
    z = (bond_angles(x, triples) - ideal) / sd
    return 0.5 * jnp.sum(mask * z * z)


def omega_energy(x: jax.Array, quads: jax.Array, target: jax.Array, sd: jax.Array,
                 mask: jax.Array) -> jax.Array:
    """Peptide planarity ``sum(mask * (1 - cos(omega - target)) / sd^2)``.

    quads [P,4] = (CA_i, C_i, N_i+1, CA_i+1); target [P] (pi for trans, 0 for cis), sd [P]
    radians. Smooth and periodic; ``~0.5 ((omega - target)/sd)^2`` near the target.
    """
    c, s = dihedral_cos_sin(x, quads)
    cos_diff = c * jnp.cos(target) + s * jnp.sin(target)
    return jnp.sum(mask * (1.0 - cos_diff) / (sd * sd))


def chirality_energy(x: jax.Array, quads: jax.Array, ideal: jax.Array, sd: jax.Array,
                     mask: jax.Array) -> jax.Array:
    """``0.5 * sum(mask * ((V - ideal) / sd)^2)`` on signed volumes (``signed_volumes``)."""
    z = (signed_volumes(x, quads) - ideal) / sd
    return 0.5 * jnp.sum(mask * z * z)


# ---------------------------------------------------------------------------------------------
# Non-bonded terms (pairs [P,2] from a neighbour list; padding rows hold index A)
# ---------------------------------------------------------------------------------------------

def pair_distances(x: jax.Array, pairs: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Distances of listed pairs. x [A,3], pairs int [P,2] -> (d [P], valid [P])."""
    valid = pairs[:, 0] < x.shape[0]
    p = _take(x, pairs)
    return _safe_norm(p[:, 1] - p[:, 0]), valid


def contact_distance(radius: jax.Array, polar: jax.Array, pairs: jax.Array,
                     special: jax.Array, *, hbond_contact: float = 2.7,
                     one_five_reduction: float = 0.5) -> jax.Array:
    """Van der Waals contact distance of each listed pair [P] (Angstrom).

    ``radius_i + radius_j``, less ``one_five_reduction`` for pairs four bonds apart
    (``special``: their distance follows a torsion, and without hydrogens, e.g. O(i)..C(i+1),
    they sit inside the heavy-atom contact distance in well-refined structures); two polar atoms
    (N/O, able to hydrogen bond) may come as close as ``hbond_contact``.
    """
    r = _take(radius, pairs)
    q = _take(polar, pairs)
    contact = r[:, 0] + r[:, 1] - one_five_reduction * special
    both_polar = (q[:, 0] > 0) & (q[:, 1] > 0)
    return jnp.where(both_polar, jnp.minimum(contact, hbond_contact), contact)


def pair_overlaps(x: jax.Array, pairs: jax.Array, special: jax.Array, radius: jax.Array,
                  polar: jax.Array, *, hbond_contact: float = 2.7,
                  one_five_reduction: float = 0.5) -> tuple[jax.Array, jax.Array]:
    """Overlap ``contact - d`` of listed pairs [P] (positive = closer than contact), validity."""
    d, valid = pair_distances(x, pairs)
    contact = contact_distance(radius, polar, pairs, special, hbond_contact=hbond_contact,
                               one_five_reduction=one_five_reduction)
    return contact - d, valid


def repulsion_energy(x: jax.Array, pairs: jax.Array, special: jax.Array, radius: jax.Array,
                     polar: jax.Array, *, tolerance: float = 0.2, hbond_contact: float = 2.7,
                     one_five_reduction: float = 0.5) -> jax.Array:
    """Soft repulsion ``sum(relu(overlap - tolerance)^2)`` (Angstrom^2) over listed pairs.

    x [A,3]; pairs [P,2] non-bonded pairs (exclusions applied when the list was built);
    special [P] 1-5 pairs; radius [A] van der Waals radii; polar [A] 1 for N/O. See
    ``contact_distance``.
    """
    over, valid = pair_overlaps(x, pairs, special, radius, polar, hbond_contact=hbond_contact,
                                one_five_reduction=one_five_reduction)
    v = jnp.where(valid, jax.nn.relu(over - tolerance), 0.0)
    return jnp.sum(v * v)


def _switch(t: jax.Array) -> jax.Array:
    """Smooth step from 1 (t <= 0) to 0 (t >= 1), continuous first derivative."""
    t = jnp.clip(t, 0.0, 1.0)
    return 0.5 * (1.0 + jnp.cos(jnp.pi * t))


def attraction_energy(x: jax.Array, pairs: jax.Array, radius: jax.Array, *,
                      width: float = 1.5) -> jax.Array:
    """Weak contact attraction ``-sum(s(d))``: 1 per pair at or inside van der Waals contact
    (``r_i + r_j``), falling smoothly to 0 at contact + ``width``. Needs a list cutoff of at
    least ``2 * max(radius) + width``.
    """
    d, valid = pair_distances(x, pairs)
    r = _take(radius, pairs)
    s = _switch((d - r[:, 0] - r[:, 1]) / width)
    return -jnp.sum(jnp.where(valid, s, 0.0))


def hbond_energy(x: jax.Array, pairs: jax.Array, donor: jax.Array, acceptor: jax.Array,
                 residue: jax.Array, *, optimum: float = 2.9, width: float = 0.3,
                 min_separation: int = 3) -> jax.Array:
    """Backbone hydrogen bonds: ``-sum(exp(-((d - optimum) / width)^2 / 2))`` over listed pairs
    of a backbone N (donor [A]) and a backbone O (acceptor [A]) at least ``min_separation``
    residues apart (residue [A], chain position).
    """
    d, valid = pair_distances(x, pairs)
    dn = _take(donor, pairs)
    ac = _take(acceptor, pairs)
    is_pair = ((dn[:, 0] > 0) & (ac[:, 1] > 0)) | ((ac[:, 0] > 0) & (dn[:, 1] > 0))
    res = _take(residue, pairs)
    sep = jnp.abs(res[:, 0] - res[:, 1]) >= min_separation
    g = jnp.exp(-0.5 * ((d - optimum) / width) ** 2)
    return -jnp.sum(jnp.where(valid & is_pair & sep, g, 0.0))


# ---------------------------------------------------------------------------------------------
# Restraints
# ---------------------------------------------------------------------------------------------

def restraint_energy(x: jax.Array, reference: jax.Array, weight: jax.Array, *,
                     flat_bottom: float = 0.0) -> jax.Array:
    """``0.5 * sum(weight * relu(|x - reference| - flat_bottom)^2)``. x, reference [A,3];
    weight [A] (per Angstrom^2; 0 for free or padding atoms)."""
    dev = _safe_norm(x - reference) if flat_bottom > 0 else None
    if dev is None:
        sq = jnp.sum((x - reference) ** 2, axis=-1)
    else:
        sq = jax.nn.relu(dev - flat_bottom) ** 2
    return 0.5 * jnp.sum(weight * sq)


# ---------------------------------------------------------------------------------------------
# Combination
# ---------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class EnergyWeights:
    """Weights and shape parameters of the terms (hashable: a static jit argument).

    Attributes:
      bond, angle, omega, chirality: multipliers of the statistical bonded terms.
      repulsion: per Angstrom^2 of overlap squared.
      attraction: per contact (0 turns the term off).
      hbond: per backbone hydrogen bond (0 turns the term off).
      restraint: multiplier of the per-atom restraint weights.
      clash_tolerance: overlap allowed before repulsion starts (Angstrom).
      hbond_contact: contact distance of two polar atoms (N/O), which may hydrogen bond.
      one_five_reduction: contact distance reduction for pairs four bonds apart.
      restraint_flat_bottom: free radius of the restraint (Angstrom; 0 = harmonic).
    """

    bond: float = 1.0
    angle: float = 1.0
    omega: float = 2.0
    chirality: float = 1.0
    repulsion: float = 100.0
    attraction: float = 0.0
    hbond: float = 0.0
    restraint: float = 1.0
    clash_tolerance: float = 0.2
    hbond_contact: float = 2.7
    one_five_reduction: float = 0.5
    attraction_width: float = 1.5
    restraint_flat_bottom: float = 0.0


TERMS = ("bond", "angle", "omega", "chirality", "repulsion", "attraction", "hbond", "restraint")


def energy_terms(x: jax.Array, topo, nbr, weights: EnergyWeights) -> dict[str, jax.Array]:
    """Each weighted term of the total energy as a scalar.

    x [A,3]; topo a ``foldlite.physics.topology.Topology``; nbr a
    ``foldlite.physics.neighbors.NeighborList`` built with ``topo.exclusions`` and
    ``topo.one_five``.
    """
    pairs = nbr.pairs
    t = topo
    out = {
        "bond": weights.bond * bond_energy(x, t.bonds, t.bond_ideal, t.bond_sd, t.bond_mask),
        "angle": weights.angle * angle_energy(x, t.angles, t.angle_ideal, t.angle_sd,
                                              t.angle_mask),
        "omega": weights.omega * omega_energy(x, t.omegas, t.omega_target, t.omega_sd,
                                              t.omega_mask),
        "chirality": weights.chirality * chirality_energy(x, t.chirals, t.chiral_ideal,
                                                          t.chiral_sd, t.chiral_mask),
        "repulsion": weights.repulsion * repulsion_energy(
            x, pairs, nbr.special, t.radius, t.polar, tolerance=weights.clash_tolerance,
            hbond_contact=weights.hbond_contact, one_five_reduction=weights.one_five_reduction),
        "restraint": weights.restraint * restraint_energy(
            x, t.reference, t.restraint_weight, flat_bottom=weights.restraint_flat_bottom),
    }
    zero = jnp.zeros((), x.dtype)
    out["attraction"] = (weights.attraction * attraction_energy(
        x, pairs, t.radius, width=weights.attraction_width) if weights.attraction else zero)
    out["hbond"] = (weights.hbond * hbond_energy(x, pairs, t.donor, t.acceptor, t.residue)
                    if weights.hbond else zero)
    return {k: out[k] for k in TERMS}


def total_energy(x: jax.Array, topo, nbr, weights: EnergyWeights) -> jax.Array:
    """Sum of ``energy_terms``."""
    return sum(energy_terms(x, topo, nbr, weights).values())
