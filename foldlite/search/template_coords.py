"""A template's backbone in query positions.

``template_coords(hit, library)`` reads the hit's chain from the template library's dataset and
places its backbone atoms (N, CA, C, O) at the query positions the hit's alignment maps them to
(``TemplateHit.query_to_template``): ``TemplateCoords.backbone`` [L, 4, 3] in the template's own
frame, ``mask`` [L] where the query residue is aligned to a template residue whose N, CA and C
are present. Everything else about the hit (id, identity, coverage, E-value) travels with it.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from foldlite import constants as rc
from foldlite.data.dataset import Dataset
from foldlite.errors import InputError
from foldlite.search.templates import TemplateHit, TemplateIndex

#: atom37 indices of the backbone atoms, in ``TemplateCoords.backbone`` order.
BACKBONE_ATOMS = ("N", "CA", "C", "O")
BACKBONE37 = np.array([rc.atom_order[a] for a in BACKBONE_ATOMS])


@dataclasses.dataclass(frozen=True)
class TemplateCoords:
    """One template mapped to a query of ``L`` residues.

    Attributes:
      hit: the ``TemplateHit`` (chain id, identity, coverage, E-value, residue map).
      backbone: float32 [L, 4, 3] N, CA, C, O of the aligned template residue (Angstrom,
        template frame); zero where ``mask`` is 0.
      atom_mask: float32 [L, 4] the atom is present (O may be missing where N, CA, C are not).
      mask: bool [L] the query residue has a template residue with N, CA and C.
      template_aatype: int32 [L] the template's residue type there (``rc.unk_restype_index``
        where unaligned).
    """

    hit: TemplateHit
    backbone: np.ndarray
    atom_mask: np.ndarray
    mask: np.ndarray
    template_aatype: np.ndarray

    @property
    def length(self) -> int:
        return int(self.mask.shape[0])

    @property
    def aligned(self) -> int:
        """Query residues with template coordinates."""
        return int(self.mask.sum())

    @property
    def ca(self) -> np.ndarray:
        """[L, 3] template CA at the query positions (zero where unaligned)."""
        return self.backbone[:, 1]


def open_library(library: Dataset | TemplateIndex | str | os.PathLike) -> Dataset:
    """The dataset behind a template library: a ``Dataset``, an opened ``TemplateIndex`` or a
    dataset folder."""
    if isinstance(library, Dataset):
        return library
    if isinstance(library, TemplateIndex):
        return Dataset(library.dataset)
    return Dataset(library)


def template_coords(hit: TemplateHit, library: Dataset | TemplateIndex | str | os.PathLike
                    ) -> TemplateCoords:
    """The backbone of ``hit``'s chain at the query positions (see the module docstring).

    Raises ``InputError`` when the library has no such chain or the residue map points past it.
    """
    ds = open_library(library)
    i = ds.index(hit.chain_id)
    q2t = np.asarray(hit.query_to_template, np.int64).reshape(-1)
    n_t = int(ds.lengths[i])
    if q2t.size and int(q2t.max()) >= n_t:
        raise InputError(f"template {hit.chain_id}: the alignment maps to residue "
                         f"{int(q2t.max()) + 1} of a {n_t}-residue chain (index of another "
                         "library?)")
    aligned = q2t >= 0
    L = q2t.shape[0]
    backbone = np.zeros((L, 4, 3), np.float32)
    atom_mask = np.zeros((L, 4), np.float32)
    aatype = np.full(L, rc.unk_restype_index, np.int32)
    if aligned.any():
        pos, mask37 = ds.atoms(i, residues=q2t[aligned])
        backbone[aligned] = pos[:, BACKBONE37]
        atom_mask[aligned] = mask37[:, BACKBONE37]
        start = int(ds.offsets[i])
        aatype[aligned] = np.asarray(ds.arrays["aatype"][start + q2t[aligned]], np.int32)
    mask = atom_mask[:, :3].min(axis=1) > 0
    backbone *= atom_mask[..., None]
    return TemplateCoords(hit=hit, backbone=backbone, atom_mask=atom_mask, mask=mask,
                          template_aatype=aatype)
