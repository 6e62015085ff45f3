"""Residue constants: amino acids, atom layouts and ideal geometry.

The residue order and the atom37/atom14 layouts follow the convention of AlphaFold2
(Jumper et al. 2021, Suppl. 1.2.1), so that arrays are interchangeable with that literature:

* ``restypes``: the 20 standard amino acids in the order ``ARNDCQEGHILKMFPSTWYV``; index 20 is
  the unknown residue ``X`` (``UNK``).
* ``atom_types``: the 37 heavy-atom names that occur in the 20 amino acids ("atom37").
* ``restype_name_to_atom14_names``: a compact per-residue layout of at most 14 heavy atoms.

Chemistry tables (ideal geometry, rigid groups, chi angles, radii, rotamers) follow below the
layout tables; each carries its source.
"""

from __future__ import annotations

import numpy as np

# --------------------------------------------------------------------------------------------
# Residue types
# --------------------------------------------------------------------------------------------

#: The 20 standard amino acids (one-letter codes) in AlphaFold2 order.
restypes: list[str] = list("ARNDCQEGHILKMFPSTWYV")
#: Index of a residue type by its one-letter code.
restype_order: dict[str, int] = {r: i for i, r in enumerate(restypes)}
#: Number of standard residue types.
restype_num: int = len(restypes)  # 20
#: Index used for an unknown residue (one-letter ``X``, three-letter ``UNK``).
unk_restype_index: int = restype_num  # 20
#: Residue types including unknown.
restypes_with_x: list[str] = restypes + ["X"]
restype_order_with_x: dict[str, int] = {r: i for i, r in enumerate(restypes_with_x)}

restype_1to3: dict[str, str] = {
    "A": "ALA", "R": "ARG", "N": "ASN", "D": "ASP", "C": "CYS",
    "Q": "GLN", "E": "GLU", "G": "GLY", "H": "HIS", "I": "ILE",
    "L": "LEU", "K": "LYS", "M": "MET", "F": "PHE", "P": "PRO",
    "S": "SER", "T": "THR", "W": "TRP", "Y": "TYR", "V": "VAL",
}
restype_3to1: dict[str, str] = {v: k for k, v in restype_1to3.items()}
#: Three-letter names indexed like ``restypes_with_x``.
resnames: list[str] = [restype_1to3[r] for r in restypes] + ["UNK"]

#: Common modified residues read as their parent amino acid (structure input).
#: MSE (selenomethionine) -> MET is the usual crystallographic substitution.
modified_residue_parent: dict[str, str] = {
    "MSE": "MET",
}

#: The alphabet of ProMod3/BLAST-style amino-acid profiles (alphabetical one-letter codes).
profile_alphabet: str = "ACDEFGHIKLMNPQRSTVWY"
#: Permutation taking a profile in ``profile_alphabet`` order to ``restypes`` order:
#: ``profile_restypes = profile_alpha[..., profile_to_restype_perm]``.
profile_to_restype_perm: np.ndarray = np.array(
    [profile_alphabet.index(r) for r in restypes], dtype=np.int32)

# --------------------------------------------------------------------------------------------
# Atom layouts
# --------------------------------------------------------------------------------------------

#: The 37 heavy-atom names of the standard amino acids (AlphaFold2 "atom37" order).
atom_types: list[str] = [
    "N", "CA", "C", "CB", "O", "CG", "CG1", "CG2", "OG", "OG1", "SG", "CD",
    "CD1", "CD2", "ND1", "ND2", "OD1", "OD2", "SD", "CE", "CE1", "CE2", "CE3",
    "NE", "NE1", "NE2", "OE1", "OE2", "CH2", "NH1", "NH2", "OH", "CZ", "CZ2",
    "CZ3", "NZ", "OXT",
]
atom_order: dict[str, int] = {a: i for i, a in enumerate(atom_types)}
atom_type_num: int = len(atom_types)  # 37

#: Heavy atoms of each residue type (three-letter name), backbone first.
residue_atoms: dict[str, list[str]] = {
    "ALA": ["C", "CA", "CB", "N", "O"],
    "ARG": ["C", "CA", "CB", "CG", "CD", "CZ", "N", "NE", "O", "NH1", "NH2"],
    "ASN": ["C", "CA", "CB", "CG", "N", "ND2", "O", "OD1"],
    "ASP": ["C", "CA", "CB", "CG", "N", "O", "OD1", "OD2"],
    "CYS": ["C", "CA", "CB", "N", "O", "SG"],
    "GLN": ["C", "CA", "CB", "CG", "CD", "N", "NE2", "O", "OE1"],
    "GLU": ["C", "CA", "CB", "CG", "CD", "N", "O", "OE1", "OE2"],
    "GLY": ["C", "CA", "N", "O"],
    "HIS": ["C", "CA", "CB", "CG", "CD2", "CE1", "N", "ND1", "NE2", "O"],
    "ILE": ["C", "CA", "CB", "CG1", "CG2", "CD1", "N", "O"],
    "LEU": ["C", "CA", "CB", "CG", "CD1", "CD2", "N", "O"],
    "LYS": ["C", "CA", "CB", "CG", "CD", "CE", "N", "NZ", "O"],
    "MET": ["C", "CA", "CB", "CG", "CE", "N", "O", "SD"],
    "PHE": ["C", "CA", "CB", "CG", "CD1", "CD2", "CE1", "CE2", "CZ", "N", "O"],
    "PRO": ["C", "CA", "CB", "CG", "CD", "N", "O"],
    "SER": ["C", "CA", "CB", "N", "O", "OG"],
    "THR": ["C", "CA", "CB", "CG2", "N", "O", "OG1"],
    "TRP": ["C", "CA", "CB", "CG", "CD1", "CD2", "CE2", "CE3", "CZ2", "CZ3",
            "CH2", "N", "NE1", "O"],
    "TYR": ["C", "CA", "CB", "CG", "CD1", "CD2", "CE1", "CE2", "CZ", "N", "O", "OH"],
    "VAL": ["C", "CA", "CB", "CG1", "CG2", "N", "O"],
}

#: atom14 layout: backbone N, CA, C, O then side-chain atoms outward along the chain.
#: Empty strings pad to 14. UNK has the backbone only.
restype_name_to_atom14_names: dict[str, list[str]] = {
    "ALA": ["N", "CA", "C", "O", "CB", "", "", "", "", "", "", "", "", ""],
    "ARG": ["N", "CA", "C", "O", "CB", "CG", "CD", "NE", "CZ", "NH1", "NH2", "", "", ""],
    "ASN": ["N", "CA", "C", "O", "CB", "CG", "OD1", "ND2", "", "", "", "", "", ""],
    "ASP": ["N", "CA", "C", "O", "CB", "CG", "OD1", "OD2", "", "", "", "", "", ""],
    "CYS": ["N", "CA", "C", "O", "CB", "SG", "", "", "", "", "", "", "", ""],
    "GLN": ["N", "CA", "C", "O", "CB", "CG", "CD", "OE1", "NE2", "", "", "", "", ""],
    "GLU": ["N", "CA", "C", "O", "CB", "CG", "CD", "OE1", "OE2", "", "", "", "", ""],
    "GLY": ["N", "CA", "C", "O", "", "", "", "", "", "", "", "", "", ""],
    "HIS": ["N", "CA", "C", "O", "CB", "CG", "ND1", "CD2", "CE1", "NE2", "", "", "", ""],
    "ILE": ["N", "CA", "C", "O", "CB", "CG1", "CG2", "CD1", "", "", "", "", "", ""],
    "LEU": ["N", "CA", "C", "O", "CB", "CG", "CD1", "CD2", "", "", "", "", "", ""],
    "LYS": ["N", "CA", "C", "O", "CB", "CG", "CD", "CE", "NZ", "", "", "", "", ""],
    "MET": ["N", "CA", "C", "O", "CB", "CG", "SD", "CE", "", "", "", "", "", ""],
    "PHE": ["N", "CA", "C", "O", "CB", "CG", "CD1", "CD2", "CE1", "CE2", "CZ", "", "", ""],
    "PRO": ["N", "CA", "C", "O", "CB", "CG", "CD", "", "", "", "", "", "", ""],
    "SER": ["N", "CA", "C", "O", "CB", "OG", "", "", "", "", "", "", "", ""],
    "THR": ["N", "CA", "C", "O", "CB", "OG1", "CG2", "", "", "", "", "", "", ""],
    "TRP": ["N", "CA", "C", "O", "CB", "CG", "CD1", "CD2", "NE1", "CE2", "CE3", "CZ2",
            "CZ3", "CH2"],
    "TYR": ["N", "CA", "C", "O", "CB", "CG", "CD1", "CD2", "CE1", "CE2", "CZ", "OH", "", ""],
    "VAL": ["N", "CA", "C", "O", "CB", "CG1", "CG2", "", "", "", "", "", "", ""],
    "UNK": ["N", "CA", "C", "O", "", "", "", "", "", "", "", "", "", ""],
}


def _build_atom_maps() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Index tables between atom14 and atom37 for each of the 21 residue types.

    Returns:
      atom14_to_atom37: int32 [21, 14], atom37 index of each atom14 slot (0 where empty).
      atom37_to_atom14: int32 [21, 37], atom14 index of each atom37 slot (0 where absent).
      atom14_mask: float32 [21, 14], 1 where the slot holds an atom.
      atom37_mask: float32 [21, 37], 1 where the residue type has that atom.
    """
    a14_to_37 = np.zeros((21, 14), np.int32)
    a37_to_14 = np.zeros((21, 37), np.int32)
    m14 = np.zeros((21, 14), np.float32)
    m37 = np.zeros((21, 37), np.float32)
    for i, name in enumerate(resnames):
        for j, atom in enumerate(restype_name_to_atom14_names[name]):
            if atom:
                k = atom_order[atom]
                a14_to_37[i, j] = k
                a37_to_14[i, k] = j
                m14[i, j] = 1.0
                m37[i, k] = 1.0
    return a14_to_37, a37_to_14, m14, m37


restype_atom14_to_atom37, restype_atom37_to_atom14, restype_atom14_mask, restype_atom37_mask = (
    _build_atom_maps())

#: Backbone atoms present in every residue, atom37 indices.
backbone_atom37: list[int] = [atom_order[a] for a in ("N", "CA", "C", "O")]


def element_of(atom_name: str) -> str:
    """Element symbol of a standard amino-acid heavy-atom name (first letter: C, N, O or S)."""
    return atom_name[0]

# --------------------------------------------------------------------------------------------
# Van der Waals radii (Angstrom), heavy atoms by element.
# Source: A. Bondi, "van der Waals Volumes and Radii", J. Phys. Chem. 68, 441-451 (1964).
# --------------------------------------------------------------------------------------------
van_der_waals_radius: dict[str, float] = {
    "C": 1.70,  # Bondi 1964
    "N": 1.55,  # Bondi 1964
    "O": 1.52,  # Bondi 1964
    "S": 1.80,  # Bondi 1964
}
