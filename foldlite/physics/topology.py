"""Molecular topology for refinement: a flat heavy-atom list with bonded index tables.

A ``Protein`` (atom37) becomes a flat list of its present heavy atoms (residue by residue, atom14
order, then OXT), padded to a bucketed size so that ``jax.jit`` compiles for few shapes. The
bonded terms get index tables built from the covalent graph of each residue type:

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

Ideal values (``ideal_geometry``): the chemistry tables of ``foldlite.constants`` where they
provide bond and angle statistics; otherwise they are derived here from Biopython's
``Bio.PDB.ic_data.hedra_defaults`` (bond lengths and angles averaged over high-resolution PDB
structures, per residue type), by building ideal tripeptides with Bio.PDB's internal-coordinate
builder and measuring every bond, angle and chiral volume of the built atoms. Standard deviations
follow Engh & Huber (1991, Acta Cryst. A47, 392-400) in magnitude: 0.02 A for bonds (0.014 A for
the peptide C-N bond), and the survey standard deviation of each angle from ``hedra_defaults``
clipped to [1.5, 3.0] degrees (2.0 degrees where the survey gives none).

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
import warnings

import jax
import numpy as np

from foldlite import constants as rc
from foldlite.errors import InputError

# Covalent bonds between heavy atoms within each residue type (side chain and CA-CB), by name.
# The backbone N-CA, CA-C, C-O (and C-OXT) are common to all residues.
BACKBONE_BONDS: tuple[tuple[str, str], ...] = (("N", "CA"), ("CA", "C"), ("C", "O"))
SIDECHAIN_BONDS: dict[str, tuple[tuple[str, str], ...]] = {
    "ALA": (("CA", "CB"),),
    "ARG": (("CA", "CB"), ("CB", "CG"), ("CG", "CD"), ("CD", "NE"), ("NE", "CZ"), ("CZ", "NH1"),
            ("CZ", "NH2")),
    "ASN": (("CA", "CB"), ("CB", "CG"), ("CG", "OD1"), ("CG", "ND2")),
    "ASP": (("CA", "CB"), ("CB", "CG"), ("CG", "OD1"), ("CG", "OD2")),
    "CYS": (("CA", "CB"), ("CB", "SG")),
    "GLN": (("CA", "CB"), ("CB", "CG"), ("CG", "CD"), ("CD", "OE1"), ("CD", "NE2")),
    "GLU": (("CA", "CB"), ("CB", "CG"), ("CG", "CD"), ("CD", "OE1"), ("CD", "OE2")),
    "GLY": (),
    "HIS": (("CA", "CB"), ("CB", "CG"), ("CG", "ND1"), ("CG", "CD2"), ("ND1", "CE1"),
            ("CD2", "NE2"), ("CE1", "NE2")),
    "ILE": (("CA", "CB"), ("CB", "CG1"), ("CB", "CG2"), ("CG1", "CD1")),
    "LEU": (("CA", "CB"), ("CB", "CG"), ("CG", "CD1"), ("CG", "CD2")),
    "LYS": (("CA", "CB"), ("CB", "CG"), ("CG", "CD"), ("CD", "CE"), ("CE", "NZ")),
    "MET": (("CA", "CB"), ("CB", "CG"), ("CG", "SD"), ("SD", "CE")),
    "PHE": (("CA", "CB"), ("CB", "CG"), ("CG", "CD1"), ("CG", "CD2"), ("CD1", "CE1"),
            ("CD2", "CE2"), ("CE1", "CZ"), ("CE2", "CZ")),
    "PRO": (("CA", "CB"), ("CB", "CG"), ("CG", "CD"), ("CD", "N")),
    "SER": (("CA", "CB"), ("CB", "OG")),
    "THR": (("CA", "CB"), ("CB", "OG1"), ("CB", "CG2")),
    "TRP": (("CA", "CB"), ("CB", "CG"), ("CG", "CD1"), ("CG", "CD2"), ("CD1", "NE1"),
            ("NE1", "CE2"), ("CD2", "CE2"), ("CE2", "CZ2"), ("CZ2", "CH2"), ("CH2", "CZ3"),
            ("CZ3", "CE3"), ("CE3", "CD2")),
    "TYR": (("CA", "CB"), ("CB", "CG"), ("CG", "CD1"), ("CG", "CD2"), ("CD1", "CE1"),
            ("CD2", "CE2"), ("CE1", "CZ"), ("CE2", "CZ"), ("CZ", "OH")),
    "VAL": (("CA", "CB"), ("CB", "CG1"), ("CB", "CG2")),
    "UNK": (),
}
#: Chiral centres (centre, a, b, c) per residue type; the sign of the ideal volume is that of
#: the L-amino acid (and of the natural 2S,3S Ile / 2S,3R Thr).
CHIRAL_CENTRES: dict[str, tuple[tuple[str, str, str, str], ...]] = {
    "ILE": (("CB", "CA", "CG1", "CG2"),),
    "THR": (("CB", "CA", "OG1", "CG2"),),
}
CA_CHIRAL = ("CA", "N", "C", "CB")

# Disulfide geometry (typical crystallographic values; Engh & Huber 2001 / CCP4 monomer library
# magnitudes): SG-SG 2.04 A, CB-SG-SG 104 degrees.
DISULFIDE_BOND = (2.04, 0.02)
DISULFIDE_ANGLE = (math.radians(104.0), math.radians(2.5))
DISULFIDE_MAX = 2.5

#: C(i)-N(i+1) shorter than this is a peptide bond whatever the residue numbers.
BONDED_C_N = 2.0
BOND_SD = 0.02
PEPTIDE_BOND_SD = 0.014
ANGLE_SD_RANGE = (math.radians(1.5), math.radians(3.0))
ANGLE_SD_DEFAULT = math.radians(2.0)
OMEGA_SD = math.radians(5.0)
CHIRAL_SD = 0.2


def residue_bonds(resname: str) -> tuple[tuple[str, str], ...]:
    """Intra-residue heavy-atom bonds (names) of a residue type, without OXT."""
    return BACKBONE_BONDS + SIDECHAIN_BONDS[resname]


# ---------------------------------------------------------------------------------------------
# Ideal geometry
# ---------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class IdealGeometry:
    """Ideal values keyed by residue name and atom names.

    Names of neighbouring residues' atoms carry a prefix: ``-C`` (previous C), ``+N``, ``+CA``
    (next residue). Keys are canonical: bonds sorted, angles with ``a <= c``.

    bonds:  {(resname, a, b): (length A, sd A)}
    angles: {(resname, a, b, c): (angle rad, sd rad)} (vertex b)
    chiral: {(resname, centre, a, b, c): volume A^3}
    source: where the numbers come from.
    """

    bonds: dict
    angles: dict
    chiral: dict
    source: str

    def bond(self, resname: str, a: str, b: str) -> tuple[float, float]:
        key = (resname,) + tuple(sorted((a, b)))
        if key in self.bonds:
            return self.bonds[key]
        gly = ("GLY",) + key[1:]
        if resname == "UNK" and gly in self.bonds:
            return self.bonds[gly]
        raise KeyError(f"no ideal bond {key}")

    def angle(self, resname: str, a: str, b: str, c: str) -> tuple[float, float]:
        key = (resname, a, b, c) if a <= c else (resname, c, b, a)
        if key in self.angles:
            return self.angles[key]
        gly = ("GLY",) + key[1:]
        if resname == "UNK" and gly in self.angles:
            return self.angles[gly]
        raise KeyError(f"no ideal angle {key}")


def _angle_sd_from_survey() -> dict:
    """{(resname, a, b, c) canonical: sd (rad)} from ``Bio.PDB.ic_data.hedra_defaults``."""
    from Bio.PDB import ic_data

    out = {}
    letters = {k: v for k, v in rc.restype_1to3.items()}
    names = {r: set(rc.residue_atoms[r]) | {"OXT"} for r in rc.residue_atoms}
    for key, (_, sd) in ic_data.hedra_defaults.items():
        res = letters.get(key[0])
        if res is None:
            continue
        parts = _split_hedron(key, key[0], names[res])
        if parts is None:
            continue
        parts = tuple("+N" if p == "XN" else ("-C" if p == "XC" else p) for p in parts)
        a, b, c = parts
        ck = (res, a, b, c) if a <= c else (res, c, b, a)
        out[ck] = math.radians(sd) if sd > 0 else ANGLE_SD_DEFAULT
    return out


def _split_hedron(key: str, letter: str, names: set) -> tuple[str, str, str] | None:
    """Split e.g. 'ACAACXN' into ('CA', 'C', 'XN') for residue letter 'A'."""
    def rec(s: str, acc: tuple) -> tuple | None:
        if not s:
            return acc if len(acc) == 3 else None
        if len(acc) == 3:
            return None
        for pre, kind in ((letter, ""), ("X", "X")):
            if s.startswith(pre):
                rest = s[len(pre):]
                for n in sorted(names | {"N", "C"}, key=len, reverse=True):
                    if rest.startswith(n) and (kind == "" or n in ("N", "C", "CA")):
                        got = rec(rest[len(n):], acc + (kind + n,))
                        if got is not None:
                            return got
        return None
    return rec(key, ())


@functools.lru_cache(maxsize=1)
def _biopython_ideal_geometry() -> IdealGeometry:
    """Measure ideal geometry on tripeptides built by Bio.PDB from its PDB-survey defaults."""
    from Bio.PDB.PICIO import read_PIC_seq
    from Bio.Seq import Seq
    from Bio.SeqRecord import SeqRecord

    order = [r for r in rc.restypes]
    # G X G segments so every residue type has a neighbour on each side (and Pro follows each).
    seq = "".join(f"G{r}GP" for r in order) + "G"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        structure = read_PIC_seq(SeqRecord(Seq(seq), id="ideal", description="ideal"))
        structure.internal_to_atom_coordinates()
    residues = list(next(structure.get_chains()))
    coords = [{a.get_id(): np.asarray(a.coord, np.float64) for a in r} for r in residues]
    rnames = [r.get_resname() for r in residues]

    survey_sd = _angle_sd_from_survey()
    bonds: dict = {}
    angles: dict = {}
    chiral: dict = {}

    def dist(p, q):
        return float(np.linalg.norm(p - q))

    def ang(p, q, r):
        u, v = p - q, r - q
        return float(math.atan2(np.linalg.norm(np.cross(u, v)), np.dot(u, v)))

    for i in range(1, len(residues) - 1):
        res = rnames[i]
        xyz = dict(coords[i])
        xyz["-C"] = coords[i - 1]["C"]
        xyz["+N"] = coords[i + 1]["N"]
        xyz["+CA"] = coords[i + 1]["CA"]
        graph = _residue_graph(res, with_neighbours=True)
        for a, b in graph["bonds"]:
            if a in xyz and b in xyz:
                key = (res,) + tuple(sorted((a, b)))
                sd = PEPTIDE_BOND_SD if {a, b} in ({"C", "+N"}, {"-C", "N"}) else BOND_SD
                bonds.setdefault(key, (dist(xyz[a], xyz[b]), sd))
        for a, b, c in graph["angles"]:
            if a in xyz and b in xyz and c in xyz:
                key = (res, a, b, c) if a <= c else (res, c, b, a)
                sd = survey_sd.get(key, ANGLE_SD_DEFAULT)
                sd = min(max(sd, ANGLE_SD_RANGE[0]), ANGLE_SD_RANGE[1])
                angles.setdefault(key, (ang(xyz[a], xyz[b], xyz[c]), sd))
        centres = ((CA_CHIRAL,) if "CB" in xyz else ()) + CHIRAL_CENTRES.get(res, ())
        for c, a, b, d in centres:
            v = float(np.dot(xyz[a] - xyz[c], np.cross(xyz[b] - xyz[c], xyz[d] - xyz[c])))
            chiral.setdefault((res, c, a, b, d), v)
    # The carboxy terminus: C-OXT like C-O, and its angles by symmetry of the carboxylate.
    for res in rc.resnames[:-1]:
        lo, sd = bonds[(res, "C", "O")]
        bonds[(res, "C", "OXT")] = (lo, sd)
        a_cao, sd_cao = angles[(res, "CA", "C", "O")]
        angles[(res, "CA", "C", "OXT")] = (math.radians(117.0), sd_cao)
        angles[(res, "O", "C", "OXT")] = (2 * math.pi - a_cao - math.radians(117.0), sd_cao)
    return IdealGeometry(bonds=bonds, angles=angles, chiral=chiral,
                         source="Bio.PDB.ic_data.hedra_defaults (built and measured)")


def _residue_graph(res: str, with_neighbours: bool = False) -> dict:
    """Bonds and angles (by name) of one residue; with ``-C``, ``+N``, ``+CA`` when asked."""
    bonds = list(residue_bonds(res))
    if with_neighbours:
        bonds += [("-C", "N"), ("C", "+N"), ("+N", "+CA")]
    adj: dict[str, list[str]] = {}
    for a, b in bonds:
        adj.setdefault(a, []).append(b)
        adj.setdefault(b, []).append(a)
    angles = []
    for b, nbrs in adj.items():
        if b[0] in "+-":
            continue
        for x in range(len(nbrs)):
            for y in range(x + 1, len(nbrs)):
                angles.append((nbrs[x], b, nbrs[y]))
    return {"bonds": bonds, "angles": angles}


@functools.lru_cache(maxsize=1)
def ideal_geometry() -> IdealGeometry:
    """The ideal bond lengths, angles and chiral volumes used by the energy (cached)."""
    return _biopython_ideal_geometry()


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
                   pad: bool = True, geometry: IdealGeometry | None = None
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
      pad: pad every table to a bucketed size.
      geometry: ideal values (default ``ideal_geometry()``).

    Returns:
      (Topology with numpy arrays, AtomLayout).
    """
    geo = geometry or ideal_geometry()
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
                add_bond(u, v, geo.bond(rn, a, b))
        u, v = idx(i, "C"), idx(i, "OXT")
        if u >= 0 and v >= 0:
            add_bond(u, v, geo.bond(rn if rn != "UNK" else "GLY", "C", "OXT"))
    for i in np.nonzero(linked)[0]:
        i = int(i)
        add_bond(idx(i, "C"), idx(i + 1, "N"), geo.bond(names[i], "C", "+N")
                 if names[i] != "UNK" else geo.bond("GLY", "C", "+N"))
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
                    rn = names[vr] if names[vr] != "UNK" else "GLY"
                    ideal = geo.angle(rn, la, vname, lc)
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
                q_ideal.append(geo.chiral[(rn, c, a, b, d)])

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

    A = bucket_size(n_atoms) if pad else max(n_atoms, 1)
    B = bucket_size(len(bonds)) if pad else max(len(bonds), 1)
    T = bucket_size(len(angles)) if pad else max(len(angles), 1)
    P = bucket_size(len(omegas), 32) if pad else max(len(omegas), 1)
    Q = bucket_size(len(chirals), 32) if pad else max(len(chirals), 1)
    E = max((len(e) for e in excl), default=0)
    E = int(math.ceil(max(E, 1) / 8) * 8) if pad else max(E, 1)
    F = max((len(e) for e in five), default=0)
    F = int(math.ceil(max(F, 1) / 8) * 8) if pad else max(F, 1)

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
