"""Proteins: the ``Protein`` type (one chain in the atom37 layout) and its files.

* ``protein.py``: the type (fields and shapes in its docstring) and constructors
  (``from_atom14``, ``from_backbone``, ``to_atom14``);
* ``reading.py``: PDB/mmCIF files (plain or gzipped) -> ``Protein`` (Biopython ``Bio.PDB``;
  first model, altlocs, modified residues: the rules in its docstring);
* ``writing.py``: ``Protein`` -> PDB/mmCIF text and files (pLDDT in the B-factor column);
* ``pdb_text.py``: PDB text as the 3D viewer takes it (residues and B-factors, multi-model
  frames).

Everything is imported from here: ``from foldlite.protein import Protein, read_structure``.
"""

from foldlite.protein.pdb_text import (PdbResidue, multi_model_pdb, pdb_residues,
                                       split_pdb_models, structure_pdb_text)
from foldlite.protein.protein import Protein, from_atom14, from_backbone, to_atom14
from foldlite.protein.reading import as_protein, read_structure, read_structure_chains
from foldlite.protein.writing import (to_mmcif_string, to_pdb_string, write_mmcif, write_pdb,
                                      write_structure)

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
