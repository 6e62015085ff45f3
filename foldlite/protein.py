"""The ``Protein`` type: one protein chain in the atom37 layout, and its PDB/mmCIF input/output.

A ``Protein`` holds one chain (arrays of length ``L`` residues):

  aatype:          int32   [L]       residue type 0..20 (``constants.restypes_with_x``; 20 = UNK)
  atom_positions:  float32 [L,37,3]  coordinates (Angstrom), atom37 order (``constants.atom_types``)
  atom_mask:       float32 [L,37]    1 where the atom is present
  residue_index:   int32   [L]       residue numbers as in the file (author numbering)
  chain_id:        str               chain identifier (author chain id for mmCIF)
  b_factors:       float32 [L,37]    B-factors, or per-residue pLDDT broadcast over the atoms
  insertion_code:  str     [L]       PDB insertion codes, '' where there is none

Reading (Biopython ``Bio.PDB``; PDB and mmCIF, plain or gzip-compressed; the format is sniffed
from the contents, not the file name) follows these rules:

* the first model only (NMR ensembles, multi-model files);
* one chain: the one asked for, else the first protein chain in the file (a chain is a protein
  chain when it has at least one amino-acid residue);
* alternate locations: per residue, the altloc with the highest occupancy (ties: the one first in
  the file) is used for every disordered atom of that residue; an atom without that altloc uses its
  own highest-occupancy location. Point mutations modelled as alternates (two residue names at one
  position) keep the residue name with the highest occupancy;
* selenomethionine MSE is read as MET (its SE atom becomes SD); other modified or non-standard
  amino acids that are part of the chain (an ATOM record with N, CA and C, or a HETATM residue with
  N, CA and C that is peptide-bonded to a neighbour) become UNK with their backbone atoms
  N, CA, C, O (and OXT) only;
* insertion codes are kept (in ``insertion_code``) and residues stay in file order;
* waters, ions, ligands, caps without a CA (ACE, NH2) and nucleic acids are dropped;
* hydrogens and atoms that are not part of the residue type are ignored; missing atoms are masked.

Writing uses ``Bio.PDB.PDBIO`` / ``Bio.PDB.MMCIFIO``: element symbols, occupancy 1.0, the B-factor
column from ``b_factors`` or from an explicit per-residue ``plddt``, TER after each chain and END
(PDB). Files are written atomically (``foldlite.fileio``).

PDB text as the 3D viewer takes it (``foldlite.viz``): ``structure_pdb_text`` (a PDB file's own
text, an mmCIF file's protein chains as PDB), ``pdb_residues`` (residues and B-factors of a PDB
text, read column by column), ``multi_model_pdb`` / ``split_pdb_models`` (MODEL/ENDMDL frames).
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import os
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from foldlite import constants as rc
from foldlite import fileio
from foldlite.errors import InputError

__all__ = [
    "Protein",
    "read_structure",
    "read_structure_chains",
    "as_protein",
    "to_pdb_string",
    "to_mmcif_string",
    "write_pdb",
    "write_mmcif",
    "write_structure",
    "from_atom14",
    "from_backbone",
    "to_atom14",
    "structure_pdb_text",
    "PdbResidue",
    "pdb_residues",
    "multi_model_pdb",
    "split_pdb_models",
]

_UNK = rc.unk_restype_index
_BACKBONE_NAMES = ("N", "CA", "C", "O", "OXT")
# Residue names that count as amino acids when deciding whether a chain is a protein chain.
_AMINO_ACID_NAMES = frozenset(rc.restype_3to1) | frozenset(rc.modified_residue_parent) | {"UNK"}
# Atom renames applied while reading: (residue name after parent mapping, atom name) -> atom37 name.
_ATOM_RENAMES = {("MET", "SE"): "SD"}
# Terminal oxygen names used by some programs (CHARMM/GROMACS): OT1 is O, OT2 is OXT.
_TERMINAL_RENAMES = {"OT1": "O", "OT2": "OXT", "O1": "O", "O2": "OXT"}
# Longest C(i)-N(i+1) distance (Angstrom) counted as a peptide bond (ideal 1.33 A).
_PEPTIDE_BOND_MAX = 2.0

# Ideal backbone carbonyl geometry, used to place O from N, CA, C (Engh & Huber 1991,
# Acta Cryst. A47, 392-400): C=O 1.231 A, angle CA-C-O 120.5 degrees.
_C_O_BOND = 1.231
_CA_C_O_ANGLE = np.deg2rad(120.5)


# --------------------------------------------------------------------------------------------
# The type
# --------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Protein:
    """One protein chain in the atom37 layout (shapes in the module docstring).

    ``b_factors`` defaults to zeros and ``insertion_code`` to '' for every residue. Arrays are
    converted to their documented dtypes; insertion codes ' ' are stored as ''.
    """

    aatype: np.ndarray
    atom_positions: np.ndarray
    atom_mask: np.ndarray
    residue_index: np.ndarray
    chain_id: str = "A"
    b_factors: np.ndarray | None = None
    insertion_code: np.ndarray | None = None

    def __post_init__(self) -> None:
        aatype = np.asarray(self.aatype, dtype=np.int32).reshape(-1)
        n = aatype.shape[0]
        pos = np.asarray(self.atom_positions, dtype=np.float32)
        mask = np.asarray(self.atom_mask, dtype=np.float32)
        ridx = np.asarray(self.residue_index, dtype=np.int32).reshape(-1)
        if pos.shape != (n, rc.atom_type_num, 3):
            raise ValueError(f"atom_positions has shape {pos.shape}, expected ({n}, 37, 3)")
        if mask.shape != (n, rc.atom_type_num):
            raise ValueError(f"atom_mask has shape {mask.shape}, expected ({n}, 37)")
        if ridx.shape != (n,):
            raise ValueError(f"residue_index has shape {ridx.shape}, expected ({n},)")
        if n and (aatype.min() < 0 or aatype.max() > _UNK):
            raise ValueError(f"aatype values must lie in 0..{_UNK}")
        if self.b_factors is None:
            bf = np.zeros((n, rc.atom_type_num), np.float32)
        else:
            bf = np.asarray(self.b_factors, dtype=np.float32)
            if bf.shape == (n,):
                bf = np.repeat(bf[:, None], rc.atom_type_num, axis=1)
            if bf.shape != (n, rc.atom_type_num):
                raise ValueError(f"b_factors has shape {bf.shape}, expected ({n}, 37) or ({n},)")
        if self.insertion_code is None:
            icode = np.full((n,), "", dtype="<U1")
        else:
            codes = [str(c).strip() for c in np.asarray(self.insertion_code).reshape(-1)]
            if len(codes) != n or any(len(c) > 1 for c in codes):
                raise ValueError(f"insertion_code must hold {n} codes of at most one character")
            icode = np.asarray(codes, dtype="<U1").reshape(n)
        if not isinstance(self.chain_id, str) or not self.chain_id.strip():
            raise ValueError(f"chain_id must be a non-empty string, got {self.chain_id!r}")
        for name, value in (("aatype", aatype), ("atom_positions", pos), ("atom_mask", mask),
                            ("residue_index", ridx), ("b_factors", bf),
                            ("insertion_code", icode)):
            object.__setattr__(self, name, value)

    @property
    def length(self) -> int:
        """Number of residues ``L``."""
        return int(self.aatype.shape[0])

    @property
    def sequence(self) -> str:
        """One-letter sequence (X for unknown residues)."""
        return "".join(rc.restypes_with_x[int(a)] for a in self.aatype)

    @property
    def ca_positions(self) -> np.ndarray:
        """[L, 3] CA coordinates."""
        return self.atom_positions[:, rc.atom_order["CA"]]

    @property
    def ca_mask(self) -> np.ndarray:
        """[L] 1 where the CA atom is present."""
        return self.atom_mask[:, rc.atom_order["CA"]]

    @property
    def residue_ids(self) -> list[str]:
        """Residue numbers with insertion codes as strings ('51', '51A')."""
        return [f"{int(r)}{c}" for r, c in zip(self.residue_index, self.insertion_code)]

    def replace(self, **changes) -> "Protein":
        """A copy with some fields replaced (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)

    def with_plddt(self, plddt: np.ndarray) -> "Protein":
        """A copy whose B-factors are the per-residue ``plddt`` [L] on every present atom."""
        return self.replace(b_factors=_plddt_b_factors(plddt, self))

    def __len__(self) -> int:
        return self.length


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------

def read_structure(path: str | os.PathLike, chain: str | None = None) -> Protein:
    """Read one protein chain from a PDB or mmCIF file (plain or .gz), first model.

    Args:
      path: the structure file.
      chain: the chain id (author chain id for mmCIF); default the first protein chain.

    Raises:
      InputError: naming the file, when it is missing or empty, not a structure, has no protein
        chain, or has no chain ``chain`` (the message lists the protein chains there are).
    """
    path = Path(path)
    model = _first_model(path)
    chains = list(model)
    if chain is None:
        for ch in chains:
            prot = _chain_to_protein(ch)
            if prot is not None:
                return prot
        raise InputError(f"{path}: no protein chain found (chains: "
                         f"{_chain_list(chains) or 'none'})")
    for ch in chains:
        if ch.id == chain:
            prot = _chain_to_protein(ch)
            if prot is None:
                raise InputError(
                    f"{path}: chain {chain!r} is not a protein chain (it has no amino-acid "
                    f"residues); protein chains: {_protein_chain_list(chains) or 'none'}")
            return prot
    raise InputError(f"{path}: chain {chain!r} not found; protein chains: "
                     f"{_protein_chain_list(chains) or 'none'}")


def read_structure_chains(path: str | os.PathLike) -> list[Protein]:
    """Every protein chain of the first model of a PDB/mmCIF file, in file order.

    Raises:
      InputError: naming the file, when it is not a structure or has no protein chain.
    """
    path = Path(path)
    model = _first_model(path)
    prots = [p for p in (_chain_to_protein(ch) for ch in model) if p is not None]
    if not prots:
        raise InputError(f"{path}: no protein chain found (chains: "
                         f"{_chain_list(list(model)) or 'none'})")
    return prots


def as_protein(obj: Protein | str | os.PathLike) -> Protein:
    """``obj`` if it is a ``Protein``, else the first protein chain of the structure file."""
    return obj if isinstance(obj, Protein) else read_structure(obj)


def _read_text(path: Path) -> str:
    if not path.exists():
        raise InputError(f"{path}: structure file not found")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not a structure file")
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise InputError(f"{path}: not a readable gzip file ({exc})") from None
    if not raw.strip():
        raise InputError(f"{path}: structure file is empty")
    if b"\x00" in raw[:4096]:
        raise InputError(f"{path}: not a structure: binary data (expected PDB or mmCIF text)")
    return raw.decode("utf-8", errors="replace")


def _is_mmcif(text: str) -> bool:
    for line in io.StringIO(text):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        return s.lower().startswith("data_")
    return False


def _sniff_format(path: Path, text: str) -> bool:
    """True for mmCIF, False for PDB; InputError when the text is neither."""
    if _is_mmcif(text):
        return True
    if not any(line.startswith(("ATOM  ", "HETATM")) for line in io.StringIO(text)):
        raise InputError(f"{path}: not a structure: no ATOM/HETATM records and no mmCIF "
                         "data block")
    return False


def _first_model(path: Path):
    from Bio.PDB import MMCIFParser, PDBParser  # deferred: Biopython takes a while to import

    text = _read_text(path)
    is_cif = _sniff_format(path, text)
    parser = MMCIFParser(QUIET=True) if is_cif else PDBParser(PERMISSIVE=True, QUIET=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            structure = parser.get_structure(path.stem, io.StringIO(text))
    except Exception as exc:  # Biopython raises many types on malformed input
        kind = "mmCIF" if is_cif else "PDB"
        raise InputError(f"{path}: not a readable {kind} structure ({type(exc).__name__}: "
                         f"{exc})") from None
    models = list(structure)
    if not models or not any(True for _ in models[0].get_atoms()):
        raise InputError(f"{path}: not a structure: no atoms in the first model")
    return models[0]


def _chain_list(chains) -> str:
    return ", ".join(repr(ch.id) for ch in chains)


def _protein_chain_list(chains) -> str:
    return ", ".join(repr(ch.id) for ch in chains if _chain_to_protein(ch) is not None)


def _pick_residue(res):
    """Resolve a point-mutation DisorderedResidue to its highest-occupancy residue name."""
    if res.is_disordered() != 2:
        return res
    best, best_occ = None, -np.inf
    for child in res.disordered_get_list():  # file order
        occ = max((_max_occupancy(a) for a in child), default=0.0)
        if occ > best_occ:
            best, best_occ = child, occ
    return best


def _max_occupancy(atom) -> float:
    if atom.is_disordered():
        return max(float(c.get_occupancy() or 0.0) for c in atom.disordered_get_list())
    return float(atom.get_occupancy() or 0.0)


def _resolve_atoms(res) -> dict:
    """{atom name: Atom} for one residue, choosing one location per disordered atom."""
    alt_occ: dict[str, float] = {}
    for atom in res:
        if atom.is_disordered():
            for alt, child in atom.child_dict.items():
                occ = float(child.get_occupancy() or 0.0)
                alt_occ[alt] = max(alt_occ.get(alt, -np.inf), occ)
    best_alt = None
    if alt_occ:
        best_occ = max(alt_occ.values())
        best_alt = next(a for a, o in alt_occ.items() if o == best_occ)  # first in file
    atoms = {}
    for atom in res:
        if atom.is_disordered():
            if best_alt in atom.child_dict:
                chosen = atom.child_dict[best_alt]
            else:
                chosen = None
                for child in atom.disordered_get_list():
                    if chosen is None or (child.get_occupancy() or 0.0) > (
                            chosen.get_occupancy() or 0.0):
                        chosen = child
            atom = chosen
        name = atom.get_id().strip().upper()
        atoms.setdefault(name, atom)
    return atoms


def _peptide_bonded(c_atoms: dict | None, n_atoms: dict | None) -> bool:
    if not c_atoms or not n_atoms or "C" not in c_atoms or "N" not in n_atoms:
        return False
    d = np.linalg.norm(c_atoms["C"].get_coord() - n_atoms["N"].get_coord())
    return bool(d <= _PEPTIDE_BOND_MAX)


def _chain_to_protein(chain) -> Protein | None:
    """Convert a Bio.PDB chain to a Protein; None when it holds no amino-acid residue."""
    entries = []  # (hetflag, resseq, icode, name, atoms)
    for res in chain:
        hetflag, resseq, icode = res.get_id()
        if hetflag == "W":
            continue
        res = _pick_residue(res)
        name = res.get_resname().strip().upper()
        entries.append((hetflag.strip(), int(resseq), icode.strip(), name, _resolve_atoms(res)))
    if not any(e[3] in _AMINO_ACID_NAMES for e in entries):
        return None

    kept = []
    for i, (hetflag, resseq, icode, name, atoms) in enumerate(entries):
        parent = rc.modified_residue_parent.get(name, name)
        has_backbone = all(a in atoms for a in ("N", "CA", "C"))
        if parent in rc.restype_3to1 or name == "UNK":
            if hetflag and name not in rc.modified_residue_parent and not (
                    has_backbone and (
                        _peptide_bonded(entries[i - 1][4] if i > 0 else None, atoms)
                        or _peptide_bonded(atoms, entries[i + 1][4] if i + 1 < len(entries)
                                           else None))):
                continue  # a free amino acid as a ligand
        elif not has_backbone:
            continue  # ligand, ion, cap (ACE/NH2), nucleotide
        elif hetflag and not (
                _peptide_bonded(entries[i - 1][4] if i > 0 else None, atoms)
                or _peptide_bonded(atoms, entries[i + 1][4] if i + 1 < len(entries) else None)):
            continue  # a hetero group with N/CA/C atoms that is not part of the chain
        kept.append((resseq, icode, parent, atoms))
    if not kept:
        return None

    n = len(kept)
    aatype = np.full((n,), _UNK, np.int32)
    pos = np.zeros((n, rc.atom_type_num, 3), np.float32)
    mask = np.zeros((n, rc.atom_type_num), np.float32)
    bfac = np.zeros((n, rc.atom_type_num), np.float32)
    ridx = np.zeros((n,), np.int32)
    icodes = []
    for i, (resseq, icode, parent, atoms) in enumerate(kept):
        if parent in rc.restype_3to1:
            aatype[i] = rc.restype_order[rc.restype_3to1[parent]]
            allowed = set(rc.residue_atoms[parent]) | {"OXT"}
        else:
            allowed = set(_BACKBONE_NAMES)
        ridx[i] = resseq
        icodes.append(icode)
        for atom_name, atom in atoms.items():
            target = _ATOM_RENAMES.get((parent, atom_name), atom_name)
            if target not in allowed and target in _TERMINAL_RENAMES:
                target = _TERMINAL_RENAMES[target]
            if target not in allowed:
                continue
            k = rc.atom_order[target]
            if mask[i, k]:
                continue  # a duplicate (e.g. OT1 after O): keep the first
            pos[i, k] = atom.get_coord()
            mask[i, k] = 1.0
            bfac[i, k] = float(atom.get_bfactor() or 0.0)
    return Protein(aatype=aatype, atom_positions=pos, atom_mask=mask, residue_index=ridx,
                   chain_id=str(chain.id), b_factors=bfac,
                   insertion_code=np.asarray(icodes, dtype="<U1"))


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------

def _plddt_b_factors(plddt: np.ndarray, protein: Protein) -> np.ndarray:
    plddt = np.asarray(plddt, dtype=np.float32).reshape(-1)
    if plddt.shape != (protein.length,):
        raise ValueError(f"plddt has {plddt.shape[0]} values for {protein.length} residues")
    return np.repeat(plddt[:, None], rc.atom_type_num, axis=1) * protein.atom_mask


def _atom_write_order(restype: int, mask_row: np.ndarray) -> list[int]:
    """atom37 indices to write for one residue: the atom14 order of its type, then the rest."""
    order = [int(k) for k, m in zip(rc.restype_atom14_to_atom37[restype],
                                    rc.restype_atom14_mask[restype]) if m]
    order += [k for k in range(rc.atom_type_num) if k not in order]
    return [k for k in order if mask_row[k] > 0.5]


def _as_list(proteins: Protein | Sequence[Protein]) -> list[Protein]:
    prots = [proteins] if isinstance(proteins, Protein) else list(proteins)
    if not prots:
        raise ValueError("no protein to write")
    ids = [p.chain_id for p in prots]
    if len(set(ids)) != len(ids):
        raise ValueError(f"chain ids must be distinct to write several chains, got {ids}")
    return prots


def _to_biopython(proteins: list[Protein], plddts: list | None, pdb_limits: bool):
    """Build a Bio.PDB Structure (one model) from proteins."""
    # deferred: Biopython takes a while to import; only writing files needs it
    from Bio.PDB.Atom import Atom
    from Bio.PDB.Chain import Chain
    from Bio.PDB.Model import Model
    from Bio.PDB.Residue import Residue
    from Bio.PDB.Structure import Structure

    structure = Structure("foldlite")
    model = Model(0)
    structure.add(model)
    serial = 0
    for p_i, prot in enumerate(proteins):
        if pdb_limits and len(prot.chain_id) != 1:
            raise InputError(f"chain id {prot.chain_id!r} does not fit the PDB format (one "
                             "character); write mmCIF instead")
        bfac = prot.b_factors
        if plddts is not None and plddts[p_i] is not None:
            bfac = _plddt_b_factors(plddts[p_i], prot)
        present = prot.atom_mask > 0.5
        if not np.all(np.isfinite(prot.atom_positions[present])):
            raise ValueError(f"chain {prot.chain_id}: non-finite coordinates of present atoms")
        if pdb_limits:
            coords = prot.atom_positions[present]
            if coords.size and (coords.min() < -999.999 or coords.max() > 9999.999):
                raise ValueError(f"chain {prot.chain_id}: coordinates outside the PDB range "
                                 "[-999.999, 9999.999]; write mmCIF instead")
            if prot.length and (prot.residue_index.min() < -999
                                or prot.residue_index.max() > 9999):
                raise ValueError(f"chain {prot.chain_id}: residue numbers outside the PDB range "
                                 "[-999, 9999]; write mmCIF instead")
        chain = Chain(prot.chain_id)
        model.add(chain)
        seen = set()
        for i in range(prot.length):
            restype = int(prot.aatype[i])
            icode = prot.insertion_code[i] or " "
            res_id = (" ", int(prot.residue_index[i]), icode)
            if res_id in seen:
                raise ValueError(f"chain {prot.chain_id}: residue {int(prot.residue_index[i])}"
                                 f"{prot.insertion_code[i]} occurs twice")
            seen.add(res_id)
            residue = Residue(res_id, rc.resnames[restype], "    ")
            for k in _atom_write_order(restype, prot.atom_mask[i]):
                name = rc.atom_types[k]
                element = rc.element_of(name)
                fullname = f" {name:<3s}" if len(name) < 4 else name
                serial += 1
                residue.add(Atom(name, prot.atom_positions[i, k].astype(np.float64),
                                 round(float(bfac[i, k]), 2), 1.0, " ", fullname, serial,
                                 element=element))
            chain.add(residue)
    return structure


def to_pdb_string(protein: Protein | Sequence[Protein], plddt=None) -> str:
    """PDB text for one protein (or several chains), via ``Bio.PDB.PDBIO``.

    Args:
      protein: a Protein, or a sequence of Proteins with distinct one-character chain ids.
      plddt: optional per-residue pLDDT [L] (or one array per chain) written as the B-factor
        of every atom; default ``protein.b_factors``.
    Returns:
      The text: ATOM records with element symbols, TER after each chain, END.
    """
    from Bio.PDB import PDBIO  # deferred: Biopython takes a while to import

    prots = _as_list(protein)
    structure = _to_biopython(prots, _plddt_list(plddt, prots), pdb_limits=True)
    pdbio = PDBIO()
    pdbio.set_structure(structure)
    buf = io.StringIO()
    pdbio.save(buf, write_end=True)
    return buf.getvalue()


def to_mmcif_string(protein: Protein | Sequence[Protein], plddt=None) -> str:
    """mmCIF text for one protein (or several chains), via ``Bio.PDB.MMCIFIO``.

    The ``_atom_site`` loop carries auth and label chain ids and residue numbers, insertion codes
    (``pdbx_PDB_ins_code``), element symbols and B-factors (``plddt`` per residue if given).
    """
    from Bio.PDB import MMCIFIO  # deferred: Biopython takes a while to import

    prots = _as_list(protein)
    structure = _to_biopython(prots, _plddt_list(plddt, prots), pdb_limits=False)
    cifio = MMCIFIO()
    cifio.set_structure(structure)
    buf = io.StringIO()
    cifio.save(buf)
    return buf.getvalue()


def _plddt_list(plddt, prots: list[Protein]) -> list | None:
    if plddt is None:
        return None
    if len(prots) == 1:
        return [plddt]
    if len(plddt) != len(prots):
        raise ValueError("give one plddt array per chain")
    return list(plddt)


def write_pdb(protein: Protein | Sequence[Protein], path: str | os.PathLike,
              plddt=None) -> None:
    """Write a PDB file atomically (see ``to_pdb_string``)."""
    fileio.write_text(path, to_pdb_string(protein, plddt=plddt))


def write_mmcif(protein: Protein | Sequence[Protein], path: str | os.PathLike,
                plddt=None) -> None:
    """Write an mmCIF file atomically (see ``to_mmcif_string``)."""
    fileio.write_text(path, to_mmcif_string(protein, plddt=plddt))


def write_structure(protein: Protein | Sequence[Protein], path: str | os.PathLike,
                    plddt=None) -> None:
    """Write PDB or mmCIF by the file name: .cif/.mmcif is mmCIF, anything else PDB."""
    if str(path).lower().endswith((".cif", ".mmcif")):
        write_mmcif(protein, path, plddt=plddt)
    else:
        write_pdb(protein, path, plddt=plddt)


# --------------------------------------------------------------------------------------------
# Constructors and conversions
# --------------------------------------------------------------------------------------------

def _default_residue_index(n: int, residue_index) -> np.ndarray:
    if residue_index is None:
        return np.arange(1, n + 1, dtype=np.int32)
    return np.asarray(residue_index, dtype=np.int32).reshape(n)


def from_atom14(aatype, atom14, atom14_mask, residue_index=None, chain_id: str = "A",
                b_factors=None) -> Protein:
    """A Protein from atom14 coordinates (e.g. a model's output).

    Args:
      aatype: [L] residue types 0..20.
      atom14: [L, 14, 3] coordinates in the atom14 layout of each residue type.
      atom14_mask: [L, 14] 1 where the atom exists (slots the residue type lacks are dropped).
      residue_index: [L] residue numbers; default 1..L.
      chain_id: chain id.
      b_factors: None (zeros), per-residue [L] (e.g. pLDDT), per-atom [L, 14] or [L, 37].
    """
    aatype = np.asarray(aatype, dtype=np.int32).reshape(-1)
    n = aatype.shape[0]
    atom14 = np.asarray(atom14, dtype=np.float32).reshape(n, 14, 3)
    m14 = np.asarray(atom14_mask, dtype=np.float32).reshape(n, 14)
    m14 = m14 * rc.restype_atom14_mask[aatype]
    idx37 = rc.restype_atom14_to_atom37[aatype]  # [L, 14]
    rows, slots = np.nonzero(m14 > 0.5)
    pos = np.zeros((n, rc.atom_type_num, 3), np.float32)
    mask = np.zeros((n, rc.atom_type_num), np.float32)
    pos[rows, idx37[rows, slots]] = atom14[rows, slots]
    mask[rows, idx37[rows, slots]] = 1.0
    bf = np.zeros((n, rc.atom_type_num), np.float32)
    if b_factors is not None:
        b = np.asarray(b_factors, dtype=np.float32)
        if b.shape == (n,):
            bf = np.repeat(b[:, None], rc.atom_type_num, axis=1) * mask
        elif b.shape == (n, 14):
            bf[rows, idx37[rows, slots]] = b[rows, slots]
        elif b.shape == (n, rc.atom_type_num):
            bf = b * mask
        else:
            raise ValueError(f"b_factors has shape {b.shape}; expected ({n},), ({n}, 14) or "
                             f"({n}, 37)")
    return Protein(aatype=aatype, atom_positions=pos, atom_mask=mask,
                   residue_index=_default_residue_index(n, residue_index), chain_id=chain_id,
                   b_factors=bf)


def to_atom14(protein: Protein) -> tuple[np.ndarray, np.ndarray]:
    """atom14 coordinates [L, 14, 3] and mask [L, 14] of a Protein (inverse of from_atom14)."""
    idx = rc.restype_atom14_to_atom37[protein.aatype]  # [L, 14]
    rows = np.arange(protein.length)[:, None]
    pos = protein.atom_positions[rows, idx]
    mask = protein.atom_mask[rows, idx] * rc.restype_atom14_mask[protein.aatype]
    return pos * mask[..., None], mask.astype(np.float32)


def _ideal_oxygen(ca: np.ndarray, c: np.ndarray, n_next: np.ndarray) -> np.ndarray:
    """Carbonyl O [.., 3] in the peptide plane of CA(i), C(i), N(i+1), trans to N(i+1)."""
    u = ca - c
    u = u / np.linalg.norm(u, axis=-1, keepdims=True)
    v = n_next - c
    v = v - np.sum(v * u, axis=-1, keepdims=True) * u
    v = v / np.linalg.norm(v, axis=-1, keepdims=True)
    direction = np.cos(_CA_C_O_ANGLE) * u - np.sin(_CA_C_O_ANGLE) * v
    return c + _C_O_BOND * direction


def from_backbone(aatype, backbone, mask=None, residue_index=None, chain_id: str = "A",
                  b_factors=None) -> Protein:
    """A backbone-only Protein (side chains masked) from N, CA, C (and optionally O) arrays.

    Args:
      aatype: [L] residue types 0..20.
      backbone: [L, 4, 3] coordinates of N, CA, C, O, or [L, 3, 3] of N, CA, C. Without O, the
        carbonyl O is placed with ideal geometry (C=O 1.231 A, CA-C-O 120.5 degrees, Engh & Huber
        1991) in the plane of CA(i), C(i), N(i+1) wherever residue i+1 follows in sequence
        (consecutive residue numbers and C(i)-N(i+1) <= 2 A); elsewhere O stays masked.
      mask: None (all present), [L] per residue, or [L, 3|4] per atom.
      residue_index: [L]; default 1..L.
      chain_id: chain id.
      b_factors: None, per-residue [L] or per-atom [L, 37].
    """
    aatype = np.asarray(aatype, dtype=np.int32).reshape(-1)
    n = aatype.shape[0]
    bb = np.asarray(backbone, dtype=np.float32)
    if bb.ndim != 3 or bb.shape[0] != n or bb.shape[1] not in (3, 4) or bb.shape[2] != 3:
        raise ValueError(f"backbone has shape {bb.shape}; expected ({n}, 3 or 4, 3)")
    n_atoms = bb.shape[1]
    if mask is None:
        m = np.ones((n, n_atoms), np.float32)
    else:
        m = np.asarray(mask, dtype=np.float32)
        if m.shape == (n,):
            m = np.repeat(m[:, None], n_atoms, axis=1)
        if m.shape != (n, n_atoms):
            raise ValueError(f"mask has shape {m.shape}; expected ({n},) or ({n}, {n_atoms})")
    ridx = _default_residue_index(n, residue_index)
    pos = np.zeros((n, rc.atom_type_num, 3), np.float32)
    mask37 = np.zeros((n, rc.atom_type_num), np.float32)
    for j, name in enumerate(("N", "CA", "C", "O")[:n_atoms]):
        pos[:, rc.atom_order[name]] = bb[:, j] * m[:, j, None]
        mask37[:, rc.atom_order[name]] = m[:, j]
    if n_atoms == 3 and n > 1:
        o = rc.atom_order["O"]
        has = (m[:-1, 1] > 0.5) & (m[:-1, 2] > 0.5) & (m[1:, 0] > 0.5)
        has &= ridx[1:] == ridx[:-1] + 1
        has &= np.linalg.norm(bb[1:, 0] - bb[:-1, 2], axis=-1) <= _PEPTIDE_BOND_MAX
        if has.any():
            i = np.nonzero(has)[0]
            pos[i, o] = _ideal_oxygen(bb[i, 1], bb[i, 2], bb[i + 1, 0])
            mask37[i, o] = 1.0
    bf = None
    if b_factors is not None:
        b = np.asarray(b_factors, dtype=np.float32)
        if b.shape == (n,):
            b = np.repeat(b[:, None], rc.atom_type_num, axis=1)
        if b.shape != (n, rc.atom_type_num):
            raise ValueError(f"b_factors has shape {b.shape}; expected ({n},) or ({n}, 37)")
        bf = b * mask37
    return Protein(aatype=aatype, atom_positions=pos, atom_mask=mask37, residue_index=ridx,
                   chain_id=chain_id, b_factors=bf)


# --------------------------------------------------------------------------------------------
# PDB text for the 3D viewer
# --------------------------------------------------------------------------------------------

def structure_pdb_text(path: str | os.PathLike) -> str:
    """PDB text of a structure file (plain or .gz): a PDB file's own text, as it is (every
    record, ligands and waters too), or the protein chains of an mmCIF file written as PDB."""
    path = Path(path)
    text = _read_text(path)
    if _sniff_format(path, text):
        return to_pdb_string(read_structure_chains(path))
    return text


@dataclasses.dataclass(frozen=True)
class PdbResidue:
    """A residue of a PDB text: chain id, residue number, insertion code, B-factor."""

    chain: str
    resi: int
    icode: str
    bfactor: float


def pdb_residues(text: str) -> list[PdbResidue]:
    """Residues of the first model of a PDB text (ATOM and HETATM records), in file order; the
    B-factor is the CA atom's, else the mean of the residue's atoms."""
    residues: dict[tuple[str, int, str], list] = {}
    for line in text.splitlines():
        if line.startswith("ENDMDL"):
            break
        if not line.startswith(("ATOM  ", "HETATM")) or len(line) < 27:
            continue
        try:
            key = (line[21], int(line[22:26]), line[26].strip())
            b = float(line[60:66]) if len(line) >= 66 and line[60:66].strip() else 0.0
        except ValueError:
            continue
        entry = residues.setdefault(key, [None, []])
        entry[1].append(b)
        if line[12:16].strip() == "CA":
            entry[0] = b
    return [PdbResidue(c, r, i, ca if ca is not None else float(np.mean(bs)))
            for (c, r, i), (ca, bs) in residues.items()]


def multi_model_pdb(frames: Sequence[str]) -> str:
    """Join PDB texts into one multi-model PDB (MODEL/ENDMDL records)."""
    out = []
    for i, text in enumerate(frames, start=1):
        out.append(f"MODEL     {i:4d}")
        out.extend(line for line in text.splitlines()
                   if line.startswith(("ATOM  ", "HETATM", "TER")))
        out.append("ENDMDL")
    out.append("END")
    return "\n".join(out) + "\n"


def split_pdb_models(text: str) -> list[str]:
    """The MODEL/ENDMDL frames of a multi-model PDB text, each as PDB text (``[text]`` when it
    has no MODEL records)."""
    frames, cur = [], []
    for line in text.splitlines():
        if line.startswith("MODEL"):
            cur = []
        elif line.startswith("ENDMDL"):
            frames.append("\n".join(cur) + "\nEND\n")
            cur = []
        else:
            cur.append(line)
    return frames or [text]
