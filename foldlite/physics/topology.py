"""Molecular topology for refinement: a flat heavy-atom list with bonded index tables.

A ``Protein`` (atom37) becomes a flat list of its present heavy atoms (residue by residue, atom14
order, then OXT), padded to a size from a geometric ladder of atom counts (``bucket_size``); every
other table's padded size is a function of that atom bucket (``TABLE_TIERS``), so different
proteins in one bucket share every ``jax.jit`` program (padding rows are masked and change
nothing). The bonded terms get index tables built from the covalent graph of each residue type:

  bonds    [B,2]  every covalent bond: within residues, the peptide bond C(i)-N(i+1) between
                  linked residues, C-OXT, and disulfide bonds SG-SG (found in the input, < 2.5 A).
  angles   [T,3]  every pair of bonds sharing an atom (so every sp2 centre gets its three angles,
                  which sum to 360 degrees only when it is planar: aromatic rings, carboxyl,
                  amide and guanidinium groups and the peptide unit stay planar through angles).
  omegas   [P,4]  (CA_i, C_i, N_i+1, CA_i+1) per peptide bond; target trans (pi), or cis (0)
                  where the input is cis and residue i+1 is proline (``cis_nonproline`` also keeps
                  cis bonds before other residues).
  chirals  [Q,4]  (centre, a, b, c): CA with (N, C, CB); CB of Ile with (CA, CG1, CG2); CB of Thr
                  with (CA, OG1, CG2). Ideal signed volumes from ideal L-residue geometry.
  exclusions [A,E] atoms within three bonds of each atom (1-2, 1-3, 1-4 pairs), for the
                  neighbour list of the non-bonded terms.
  one_five [A,F]  atoms exactly four bonds away (1-5 pairs), which get a shorter contact
                  distance in the non-bonded terms.

Ideal values (``ideal_bond``, ``ideal_angle``, ``ideal_chiral_volume``) come from the chemistry
tables of ``foldlite.constants``: the backbone (N-CA, CA-C, C=O, CA-CB and the angles at CA and
C) and the peptide bond (C-N, CA-C-N, O-C-N, C-N-CA, with their glycine and proline exceptions)
take the means and standard deviations of Engh & Huber (1991, Acta Cryst. A47, 392-400); side
chains take ``constants.ideal_bond_length`` / ``ideal_bond_angle`` (Bio.PDB.ic_data survey means
and sds of refined structures); the C-terminal carboxylate takes the ic_data (CA, C, OXT) hedron.
Chiral volumes are measured on ``constants.restype_atom14_ideal_coords``.

Chain linkage: residues ``i`` and ``i+1`` (next in the chain's order) are linked by a peptide
bond when C(i)-N(i+1) is shorter than 2.0 A whatever their numbers (crystal structures number
around insertions and deletions, e.g. chymotrypsin numbering), or when their residue numbers are
consecutive (or equal with different insertion codes) and C(i)-N(i+1) is shorter than
``max_peptide_bond`` (a model's stretched bond is still a bond; a gap in a crystal structure is
not).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import numpy as np

from foldlite import constants as rc
from foldlite.errors import InputError

#: Chiral centres (centre, a, b, c) per residue type; the sign of the ideal volume is that of
#: the L-amino acid (and of the natural 2S,3S Ile / 2S,3R Thr).
CHIRAL_CENTRES: dict[str, tuple[tuple[str, str, str, str], ...]] = {
    "ILE": (("CB", "CA", "CG1", "CG2"),),
    "THR": (("CB", "CA", "OG1", "CG2"),),
}
CA_CHIRAL = ("CA", "N", "C", "CB")

# Disulfide geometry: typical values of refined protein structures (SG-SG about 2.04 A,
# CB-SG-SG about 104 degrees), with loose standard deviations.
DISULFIDE_BOND = (2.04, 0.02)
DISULFIDE_ANGLE = (math.radians(104.0), math.radians(2.5))
DISULFIDE_MAX = 2.5

#: C(i)-N(i+1) shorter than this is a peptide bond whatever the residue numbers.
BONDED_C_N = 2.0
OMEGA_SD = math.radians(5.0)
CHIRAL_SD = 0.2


def residue_bonds(resname: str) -> tuple[tuple[str, str], ...]:
    """Intra-residue heavy-atom bonds (names) of a residue type, without OXT
    (``foldlite.constants.residue_bonds``)."""
    return tuple(rc.residue_bonds[resname])


# ---------------------------------------------------------------------------------------------
# Ideal geometry
# ---------------------------------------------------------------------------------------------

#: Backbone bonds and angles that take Engh & Huber (1991) means and sds (``rc.engh_huber``).
_EH_BONDS = (("N", "CA"), ("CA", "C"), ("C", "O"), ("CA", "CB"))
_EH_ANGLES = (("N", "CA", "C"), ("CA", "C", "O"), ("N", "CA", "CB"), ("CB", "CA", "C"))


def _eh(key: tuple[str, ...], resname: str, degrees: bool) -> tuple[float, float]:
    m, s = rc.engh_huber(key, resname if resname != "UNK" else "X")
    return (math.radians(m), math.radians(s)) if degrees else (m, s)


def ideal_bond(resname: str, a: str, b: str, next_resname: str | None = None
               ) -> tuple[float, float]:
    """(mean A, sd A) of a bond; ``+N`` names the next residue's N (peptide bond)."""
    if {a, b} == {"C", "+N"}:
        return tuple(rc.peptide_geometry(resname, next_resname or "GLY")["c_n"])
    if {a, b} == {"C", "OXT"}:
        return _oxt_geometry(resname)["bond"]
    if {a, b} == {"SG", "SG'"}:
        return DISULFIDE_BOND
    for key in _EH_BONDS:
        if {a, b} == set(key):
            return _eh(key, resname, False)
    return tuple(rc.ideal_bond_length[(resname, a, b)])


def ideal_angle(resname: str, a: str, v: str, c: str, prev_resname: str | None = None,
                next_resname: str | None = None) -> tuple[float, float]:
    """(mean rad, sd rad) of the angle a-v-c of residue ``resname`` (owner of the vertex).

    ``-C`` names the previous residue's C, ``+N`` the next residue's N.
    """
    ends = {a, c}
    if v == "C" and "+N" in ends:
        pep = rc.peptide_geometry(resname, next_resname or "GLY")
        m, s = pep["ca_c_n"] if "CA" in ends else pep["o_c_n"]
        return math.radians(m), math.radians(s)
    if v == "N" and "-C" in ends:
        if "CA" in ends:
            m, s = rc.peptide_geometry(prev_resname or "GLY", resname)["c_n_ca"]
            return math.radians(m), math.radians(s)
        return tuple(rc.ideal_bond_angle[(resname, "-C", "N", "CD")])
    if v == "C" and "OXT" in ends:
        oxt = _oxt_geometry(resname)
        return oxt["ca_c_oxt"] if "CA" in ends else oxt["o_c_oxt"]
    if v == "SG" and "SG'" in ends:
        return DISULFIDE_ANGLE
    for key in _EH_ANGLES:
        if v == key[1] and ends == {key[0], key[2]}:
            return _eh(key, resname, True)
    return tuple(rc.ideal_bond_angle[(resname, a, v, c)])


@functools.lru_cache(maxsize=None)
def _oxt_geometry(resname: str) -> dict:
    """Carboxy-terminal C-OXT bond and angles: ic_data survey (CA, C, OXT) hedron; O-C-OXT closes
    the planar carboxylate (360 - CA-C-O - CA-C-OXT)."""
    name = resname if (resname, "CA", "C", "OXT") in rc.ic_hedra else "ALA"
    _, _, ang, ang_sd, length, length_sd, _ = rc.ic_hedra[(name, "CA", "C", "OXT")]
    ca_c_o = ideal_angle(resname, "CA", "C", "O")
    sd = math.radians(max(ang_sd, 1.5))
    ca_c_oxt = math.radians(ang)
    return {"bond": (length, max(length_sd, 0.01)), "ca_c_oxt": (ca_c_oxt, sd),
            "o_c_oxt": (2 * math.pi - ca_c_o[0] - ca_c_oxt, sd)}


@functools.lru_cache(maxsize=None)
def ideal_chiral_volume(resname: str, centre: str, a: str, b: str, c: str) -> float:
    """Signed volume (A^3) of a chiral centre in the ideal residue (``rc`` ideal coordinates),
    independent of torsions."""
    r = rc.resnames.index(resname)
    names = rc.restype_name_to_atom14_names[resname]
    xyz = rc.restype_atom14_ideal_coords[r].astype(np.float64)
    p = {n: xyz[names.index(n)] for n in (centre, a, b, c)}
    return float(np.dot(p[a] - p[centre], np.cross(p[b] - p[centre], p[c] - p[centre])))


# ---------------------------------------------------------------------------------------------
# Topology of one protein
# ---------------------------------------------------------------------------------------------

@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Topology:
    """Flat heavy-atom topology, padded (every array has a mask or a padding convention).

    Atoms [A]: ``atom_mask``, ``radius`` (van der Waals, A), ``polar`` (N/O), ``donor`` (backbone
    N), ``acceptor`` (backbone O), ``residue`` (chain position), ``reference`` [A,3] (restraint
    target), ``restraint_weight`` [A] (per A^2), ``exclusions`` [A,E] (1-2, 1-3, 1-4 partners)
    and ``one_five`` [A,F] (1-5 partners), both -1 padded.
    Bonded tables (index rows of padding point at atom 0 and have mask 0): ``bonds`` [B,2],
    ``angles`` [T,3], ``omegas`` [P,4], ``chirals`` [Q,4] with ideal values, sds and masks.
    """

    atom_mask: np.ndarray
    radius: np.ndarray
    polar: np.ndarray
    donor: np.ndarray
    acceptor: np.ndarray
    residue: np.ndarray
    reference: np.ndarray
    restraint_weight: np.ndarray
    exclusions: np.ndarray
    one_five: np.ndarray
    bonds: np.ndarray
    bond_ideal: np.ndarray
    bond_sd: np.ndarray
    bond_mask: np.ndarray
    angles: np.ndarray
    angle_ideal: np.ndarray
    angle_sd: np.ndarray
    angle_mask: np.ndarray
    omegas: np.ndarray
    omega_target: np.ndarray
    omega_sd: np.ndarray
    omega_mask: np.ndarray
    chirals: np.ndarray
    chiral_ideal: np.ndarray
    chiral_sd: np.ndarray
    chiral_mask: np.ndarray

    @property
    def num_atoms_padded(self) -> int:
        return int(self.atom_mask.shape[0])

    def replace(self, **kw) -> "Topology":
        return dataclasses.replace(self, **kw)


@dataclasses.dataclass(frozen=True)
class AtomLayout:
    """Where each flat atom comes from (host side, numpy).

    res [N] residue (chain position), atom37 [N] atom37 slot, for the ``N`` real atoms (the
    first ``N`` rows of the padded arrays); ``index37`` [L,37] flat index or -1;
    ``linked`` [L-1] peptide bond between i and i+1; ``cis`` [L-1] omega target is cis;
    ``disulfides`` list of (i, j) residue pairs.
    """

    res: np.ndarray
    atom37: np.ndarray
    index37: np.ndarray
    linked: np.ndarray
    cis: np.ndarray
    disulfides: tuple
    num_atoms: int
    length: int

    def to_flat(self, atom37_array: np.ndarray, padded: int, fill=0.0) -> np.ndarray:
        """Gather an [L,37,...] array into the flat padded [padded,...] layout."""
        x = np.asarray(atom37_array)
        out = np.full((padded,) + x.shape[2:], fill, dtype=x.dtype)
        out[: self.num_atoms] = x[self.res, self.atom37]
        return out

    def to_atom37(self, flat: np.ndarray, base: np.ndarray) -> np.ndarray:
        """Scatter the first ``num_atoms`` rows of ``flat`` into a copy of ``base`` [L,37,...]."""
        out = np.array(base, copy=True)
        out[self.res, self.atom37] = np.asarray(flat)[: self.num_atoms].astype(out.dtype)
        return out


def bucket_size(n: int, minimum: int = 64) -> int:
    """Round ``n`` up to a size from a geometric ladder (ratio ~1.19, multiples of 32), so that
    similar sizes share a compiled program."""
    size = minimum
    while size < n:
        size = int(math.ceil(size * 2 ** 0.25 / 32.0) * 32)
    return size


#: Padded table sizes as fractions of the padded atom count ``A`` (the atom bucket), smallest
#: first: a table takes the first that holds it. The first tier holds every protein made of the
#: 20 standard residues in realistic proportions (measured: bonds 1.02-1.03 A, angles 1.37-1.40
#: A, omegas and chiral centres 0.12-0.14 A); the last holds any chain, e.g. polyproline
#: (bonds 1.14 A, angles 1.71 A; at least 3 atoms per residue, at most 2 chiral centres per 7
#: atoms). So the whole topology's shape is a function of the atom bucket alone, and two
#: proteins in one bucket share every compiled program.
TABLE_TIERS = {"bonds": (1.0625, 1.25), "angles": (1.5, 1.75), "omegas": (1 / 6, 1 / 3),
               "chirals": (1 / 6, 1 / 3)}
#: Widths of the exclusion (1-2, 1-3, 1-4) and 1-5 tables: at most 13 and 8 in proteins
#: (disulfides included); wider rows (not expected) round up to a multiple of 8.
EXCLUSION_WIDTH = 16
ONE_FIVE_WIDTH = 16


def _round_up(n: float, multiple: int) -> int:
    return int(math.ceil(n / multiple) * multiple)


def table_size(kind: str, count: int, atoms_padded: int) -> int:
    """Padded length of a bonded table (``TABLE_TIERS``) for ``count`` rows in a topology of
    ``atoms_padded`` atoms: a multiple of 32 fixed by the atom bucket; a count beyond every tier
    (impossible for a protein chain) gets its own bucket."""
    for frac in TABLE_TIERS[kind]:
        size = max(_round_up(frac * atoms_padded, 32), 32)
        if count <= size:
            return size
    return bucket_size(count, 32)


def table_width(count: int, floor: int) -> int:
    """Padded width of a per-atom partner table: ``floor``, or a multiple of 8 beyond it."""
    return max(floor, _round_up(max(count, 1), 8))


def _dihedral(p0, p1, p2, p3) -> float:
    b0, b1, b2 = p0 - p1, p2 - p1, p3 - p2
    b1 = b1 / (np.linalg.norm(b1) + 1e-12)
    v = b0 - np.dot(b0, b1) * b1
    w = b2 - np.dot(b2, b1) * b1
    return float(math.atan2(np.dot(np.cross(b1, v), w), np.dot(v, w)))


def chain_links(positions: np.ndarray, mask: np.ndarray, residue_index: np.ndarray,
                insertion_code=None, max_peptide_bond: float = 4.0) -> np.ndarray:
    """bool [L-1]: residue i is peptide-bonded to i+1 (see the module docstring)."""
    L = len(residue_index)
    if L < 2:
        return np.zeros((0,), bool)
    c, n = rc.atom_order["C"], rc.atom_order["N"]
    ri = np.asarray(residue_index)
    step = ri[1:] - ri[:-1]
    consecutive = step == 1
    if insertion_code is not None:
        ic = np.asarray(insertion_code).astype(str)
        consecutive |= (step == 0) & (np.char.strip(ic[1:]) != np.char.strip(ic[:-1]))
    d = np.linalg.norm(positions[1:, n] - positions[:-1, c], axis=-1)
    present = (mask[:-1, c] > 0) & (mask[1:, n] > 0)
    return present & ((consecutive & (d < max_peptide_bond)) | (d < BONDED_C_N))


def build_topology(aatype: np.ndarray, positions: np.ndarray, mask: np.ndarray,
                   residue_index: np.ndarray, *, insertion_code=None,
                   residue_weight: np.ndarray | None = None, restraint_weight: float = 10.0,
                   cis_nonproline: bool = False, max_peptide_bond: float = 4.0,
                   chain_breaks: np.ndarray | None = None, pad: bool = True
                   ) -> tuple[Topology, AtomLayout]:
    """Build the flat topology of one chain.

    Args:
      aatype: int [L] residue types (20 = UNK: backbone only).
      positions: float [L,37,3] atom37 coordinates (also the restraint reference).
      mask: [L,37] atoms present (atoms not in the residue type are ignored).
      residue_index: int [L]; insertion_code: str [L] or None.
      residue_weight: [L] multiplier of the restraint per residue (e.g. from pLDDT), default 1.
      restraint_weight: restraint strength per A^2 (0 = unrestrained).
      cis_nonproline: keep cis peptide bonds before any residue (default: before proline only).
      max_peptide_bond: longest C(i)-N(i+1) (A) still treated as a bond between consecutive
        residues.
      chain_breaks: optional bool [L-1]: never link residue i to i+1 where True (chain ends when
        several chains are refined together).
      pad: pad every table to a size fixed by the atom bucket (``bucket_size`` of the atom
        count; ``TABLE_TIERS``), so that proteins in one bucket share compiled programs; False
        gives exact sizes.

    Returns:
      (Topology with numpy arrays, AtomLayout).
    """
    aatype = np.asarray(aatype, np.int64)
    positions = np.asarray(positions, np.float32)
    mask = np.asarray(mask) > 0
    L = len(aatype)
    if L == 0:
        raise InputError("no residues to refine")
    mask = mask & (rc.restype_atom37_mask[aatype] > 0) | (
        mask & (np.arange(37) == rc.atom_order["OXT"])[None])
    names = [rc.resnames[a] for a in aatype]

    # Flat atom list: atom14 order, then OXT.
    res_l, a37_l = [], []
    oxt = rc.atom_order["OXT"]
    for i, a in enumerate(aatype):
        for slot in range(14):
            if rc.restype_atom14_mask[a, slot] > 0:
                k = rc.restype_atom14_to_atom37[a, slot]
                if mask[i, k]:
                    res_l.append(i)
                    a37_l.append(k)
        if mask[i, oxt]:
            res_l.append(i)
            a37_l.append(oxt)
    res = np.asarray(res_l, np.int32)
    a37 = np.asarray(a37_l, np.int32)
    n_atoms = len(res)
    index37 = np.full((L, 37), -1, np.int64)
    index37[res, a37] = np.arange(n_atoms)

    def idx(i: int, name: str) -> int:
        return int(index37[i, rc.atom_order[name]])

    linked = chain_links(positions, mask, residue_index, insertion_code, max_peptide_bond)
    if chain_breaks is not None and L > 1:
        linked = linked & ~np.asarray(chain_breaks, bool)

    # Disulfides from the input geometry.
    sg = rc.atom_order["SG"]
    cys = np.nonzero((aatype == rc.restype_order["C"]) & mask[:, sg])[0]
    disulfides = []
    if len(cys) > 1:
        d = np.linalg.norm(positions[cys, sg][:, None] - positions[cys, sg][None], axis=-1)
        taken = set()
        for p, q in zip(*np.nonzero(np.triu(d < DISULFIDE_MAX, 1))):
            if cys[p] not in taken and cys[q] not in taken:
                disulfides.append((int(cys[p]), int(cys[q])))
                taken |= {cys[p], cys[q]}

    # Bonds.
    bonds, b_ideal, b_sd = [], [], []
    adjacency: list[list[int]] = [[] for _ in range(n_atoms)]

    def add_bond(u: int, v: int, ideal: tuple[float, float]) -> None:
        bonds.append((u, v))
        b_ideal.append(ideal[0])
        b_sd.append(ideal[1])
        adjacency[u].append(v)
        adjacency[v].append(u)

    owner: dict[int, tuple[int, str]] = {}
    for f in range(n_atoms):
        owner[f] = (int(res[f]), rc.atom_types[a37[f]])
    for i, rn in enumerate(names):
        for a, b in residue_bonds(rn):
            u, v = idx(i, a), idx(i, b)
            if u >= 0 and v >= 0:
                add_bond(u, v, ideal_bond(rn, a, b))
        u, v = idx(i, "C"), idx(i, "OXT")
        if u >= 0 and v >= 0:
            add_bond(u, v, ideal_bond(rn, "C", "OXT"))
    for i in np.nonzero(linked)[0]:
        i = int(i)
        add_bond(idx(i, "C"), idx(i + 1, "N"), ideal_bond(names[i], "C", "+N", names[i + 1]))
    for p, q in disulfides:
        add_bond(idx(p, "SG"), idx(q, "SG"), DISULFIDE_BOND)

    # Angles: every pair of bonds sharing a vertex.
    def label(vertex_res: int, f: int) -> str:
        r, name = owner[f]
        if r == vertex_res:
            return name
        if r == vertex_res - 1 and name == "C":
            return "-C"
        if r == vertex_res + 1 and name in ("N", "CA"):
            return "+" + name
        return "?" + name

    angles, t_ideal, t_sd = [], [], []
    for v in range(n_atoms):
        nb = adjacency[v]
        vr, vname = owner[v]
        for x in range(len(nb)):
            for y in range(x + 1, len(nb)):
                a, c = nb[x], nb[y]
                la, lc = label(vr, a), label(vr, c)
                if la.startswith("?") or lc.startswith("?"):  # disulfide CB-SG-SG'
                    ideal = DISULFIDE_ANGLE
                else:
                    ideal = ideal_angle(names[vr], la, vname, lc,
                                        names[vr - 1] if vr > 0 else None,
                                        names[vr + 1] if vr + 1 < L else None)
                angles.append((a, v, c))
                t_ideal.append(ideal[0])
                t_sd.append(ideal[1])

    # Omega.
    omegas, o_target, cis_flags = [], [], np.zeros(max(L - 1, 0), bool)
    for i in np.nonzero(linked)[0]:
        i = int(i)
        quad = (idx(i, "CA"), idx(i, "C"), idx(i + 1, "N"), idx(i + 1, "CA"))
        if min(quad) < 0:
            continue
        w = _dihedral(*(positions[res[f], a37[f]] for f in quad))
        is_cis = abs(w) < math.pi / 2 and (cis_nonproline or aatype[i + 1] == rc.restype_order["P"])
        cis_flags[i] = is_cis
        omegas.append(quad)
        o_target.append(0.0 if is_cis else math.pi)

    # Chirality.
    chirals, q_ideal = [], []
    for i, rn in enumerate(names):
        centres = ((CA_CHIRAL,) if rn not in ("GLY", "UNK") else ()) + CHIRAL_CENTRES.get(rn, ())
        for c, a, b, d in centres:
            quad = (idx(i, c), idx(i, a), idx(i, b), idx(i, d))
            if min(quad) >= 0:
                chirals.append(quad)
                q_ideal.append(ideal_chiral_volume(rn, c, a, b, d))

    # Exclusions: atoms within three bonds; 1-5 pairs: exactly four bonds.
    excl: list[list[int]] = []
    five: list[list[int]] = []
    for f in range(n_atoms):
        seen = {f}
        frontier = [f]
        for depth in range(4):
            nxt = []
            for u in frontier:
                for w_ in adjacency[u]:
                    if w_ not in seen:
                        seen.add(w_)
                        nxt.append(w_)
            frontier = nxt
            if depth == 2:
                within3 = set(seen)
        within3.discard(f)
        excl.append(sorted(within3))
        five.append(sorted(frontier))

    # Per-atom properties.
    elements = np.array([rc.atom_types[k][0] for k in a37]) if n_atoms else np.zeros(0, str)
    radius = np.array([rc.van_der_waals_radius[e] for e in elements], np.float32)
    polar = np.isin(elements, ["N", "O"]).astype(np.float32)
    donor = (a37 == rc.atom_order["N"]).astype(np.float32)
    acceptor = (a37 == rc.atom_order["O"]).astype(np.float32)
    rw = np.ones(L, np.float32) if residue_weight is None else np.asarray(residue_weight, np.float32)
    weight = (restraint_weight * rw[res]).astype(np.float32)
    ref = positions[res, a37].astype(np.float32)

    E = max((len(e) for e in excl), default=0)
    F = max((len(e) for e in five), default=0)
    if pad:  # every size from the atom bucket (see TABLE_TIERS)
        A = bucket_size(n_atoms)
        B = table_size("bonds", len(bonds), A)
        T = table_size("angles", len(angles), A)
        P = table_size("omegas", len(omegas), A)
        Q = table_size("chirals", len(chirals), A)
        E = table_width(E, EXCLUSION_WIDTH)
        F = table_width(F, ONE_FIVE_WIDTH)
    else:  # exact sizes (a compile per protein; for tests of padding invariance)
        A, B, T = max(n_atoms, 1), max(len(bonds), 1), max(len(angles), 1)
        P, Q, E, F = max(len(omegas), 1), max(len(chirals), 1), max(E, 1), max(F, 1)

    def padded(rows, width, n, dtype=np.int32, fill=0):
        out = np.full((n, width) if width else (n,), fill, dtype)
        if len(rows):
            out[: len(rows)] = np.asarray(rows, dtype)
        return out

    def vec(vals, n, fill=0.0):
        out = np.full((n,), fill, np.float32)
        out[: len(vals)] = np.asarray(vals, np.float32)
        return out

    def msk(k, n):
        out = np.zeros((n,), np.float32)
        out[:k] = 1.0
        return out

    ex = np.full((A, E), -1, np.int32)
    for f, e in enumerate(excl):
        ex[f, : len(e)] = e
    f5 = np.full((A, F), -1, np.int32)
    for f, e in enumerate(five):
        f5[f, : len(e)] = e
    atom_mask = msk(n_atoms, A)
    topo = Topology(
        atom_mask=atom_mask,
        radius=vec(radius, A, 1.7),
        polar=vec(polar, A),
        donor=vec(donor, A),
        acceptor=vec(acceptor, A),
        residue=padded(res, 0, A, np.int32, -1000),
        reference=padded(ref, 3, A, np.float32, 0.0),
        restraint_weight=vec(weight, A),
        exclusions=ex,
        one_five=f5,
        bonds=padded(bonds, 2, B),
        bond_ideal=vec(b_ideal, B, 1.0),
        bond_sd=vec(b_sd, B, 1.0),
        bond_mask=msk(len(bonds), B),
        angles=padded(angles, 3, T),
        angle_ideal=vec(t_ideal, T, 1.0),
        angle_sd=vec(t_sd, T, 1.0),
        angle_mask=msk(len(angles), T),
        omegas=padded(omegas, 4, P),
        omega_target=vec(o_target, P, math.pi),
        omega_sd=vec([OMEGA_SD] * len(omegas), P, 1.0),
        omega_mask=msk(len(omegas), P),
        chirals=padded(chirals, 4, Q),
        chiral_ideal=vec(q_ideal, Q, 0.0),
        chiral_sd=vec([CHIRAL_SD] * len(chirals), Q, 1.0),
        chiral_mask=msk(len(chirals), Q),
    )
    layout = AtomLayout(res=res, atom37=a37, index37=index37, linked=linked, cis=cis_flags,
                        disulfides=tuple(disulfides), num_atoms=n_atoms, length=L)
    return topo, layout
