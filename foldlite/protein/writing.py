"""Writing ``Protein``s as PDB and mmCIF.

Writing uses ``Bio.PDB.PDBIO`` / ``Bio.PDB.MMCIFIO``: element symbols, occupancy 1.0, the B-factor
column from ``b_factors`` or from an explicit per-residue ``plddt``, TER after each chain and END
(PDB). Files are written atomically (``foldlite.fileio``).
"""

from __future__ import annotations

import io
import os
from typing import Sequence

import numpy as np

from foldlite import constants as rc
from foldlite import fileio
from foldlite.errors import InputError
from foldlite.protein.protein import Protein, plddt_b_factors


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
            bfac = plddt_b_factors(plddts[p_i], prot)
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
