"""Reading PDB and mmCIF files into ``Protein``s.

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
"""

from __future__ import annotations

import gzip
import io
import os
import warnings
from pathlib import Path

import numpy as np

from foldlite import constants as rc
from foldlite.errors import InputError
from foldlite.protein.protein import PEPTIDE_BOND_MAX, Protein

_UNK = rc.unk_restype_index
_BACKBONE_NAMES = ("N", "CA", "C", "O", "OXT")
# Residue names that count as amino acids when deciding whether a chain is a protein chain.
_AMINO_ACID_NAMES = frozenset(rc.restype_3to1) | frozenset(rc.modified_residue_parent) | {"UNK"}
# Atom renames applied while reading: (residue name after parent mapping, atom name) -> atom37 name.
_ATOM_RENAMES = {("MET", "SE"): "SD"}
# Terminal oxygen names used by some programs (CHARMM/GROMACS): OT1 is O, OT2 is OXT.
_TERMINAL_RENAMES = {"OT1": "O", "OT2": "OXT", "O1": "O", "O2": "OXT"}


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


def structure_text(path: Path) -> str:
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


def sniff_mmcif(path: Path, text: str) -> bool:
    """True for mmCIF, False for PDB; InputError when the text is neither."""
    if _is_mmcif(text):
        return True
    if not any(line.startswith(("ATOM  ", "HETATM")) for line in io.StringIO(text)):
        raise InputError(f"{path}: not a structure: no ATOM/HETATM records and no mmCIF "
                         "data block")
    return False


def _first_model(path: Path):
    from Bio.PDB import MMCIFParser, PDBParser  # deferred: Biopython takes a while to import

    text = structure_text(path)
    is_cif = sniff_mmcif(path, text)
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
    return bool(d <= PEPTIDE_BOND_MAX)


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
