"""PDB text for the 3D viewer.

PDB text as the 3D viewer takes it (``foldlite.viz``): ``structure_pdb_text`` (a PDB file's own
text, an mmCIF file's protein chains as PDB), ``pdb_residues`` (residues and B-factors of a PDB
text, read column by column), ``multi_model_pdb`` / ``split_pdb_models`` (MODEL/ENDMDL frames).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from foldlite.protein.reading import read_structure_chains, sniff_mmcif, structure_text
from foldlite.protein.writing import to_pdb_string


def structure_pdb_text(path: str | os.PathLike) -> str:
    """PDB text of a structure file (plain or .gz): a PDB file's own text, as it is (every
    record, ligands and waters too), or the protein chains of an mmCIF file written as PDB."""
    path = Path(path)
    text = structure_text(path)
    if sniff_mmcif(path, text):
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
