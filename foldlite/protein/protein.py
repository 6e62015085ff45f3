"""The ``Protein`` type: one protein chain in the atom37 layout, and its constructors from
atom14 and from backbone atoms.

A ``Protein`` holds one chain (arrays of length ``L`` residues):

  aatype:          int32   [L]       residue type 0..20 (``constants.restypes_with_x``; 20 = UNK)
  atom_positions:  float32 [L,37,3]  coordinates (Angstrom), atom37 order (``constants.atom_types``)
  atom_mask:       float32 [L,37]    1 where the atom is present
  residue_index:   int32   [L]       residue numbers as in the file (author numbering)
  chain_id:        str               chain identifier (author chain id for mmCIF)
  b_factors:       float32 [L,37]    B-factors, or per-residue pLDDT broadcast over the atoms
  insertion_code:  str     [L]       PDB insertion codes, '' where there is none
"""

from __future__ import annotations

import dataclasses

import numpy as np

from foldlite import constants as rc

_UNK = rc.unk_restype_index
#: Longest C(i)-N(i+1) distance (Angstrom) counted as a peptide bond (ideal 1.33 A).
PEPTIDE_BOND_MAX = 2.0
# Ideal backbone carbonyl geometry, used to place O from N, CA, C (Engh & Huber 1991,
# Acta Cryst. A47, 392-400): C=O 1.231 A, angle CA-C-O 120.5 degrees.
_C_O_BOND = 1.231
_CA_C_O_ANGLE = np.deg2rad(120.5)


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
        return self.replace(b_factors=plddt_b_factors(plddt, self))

    def __len__(self) -> int:
        return self.length


def plddt_b_factors(plddt: np.ndarray, protein: Protein) -> np.ndarray:
    """[L, 37] B-factors: the per-residue ``plddt`` [L] on every present atom of ``protein``."""
    plddt = np.asarray(plddt, dtype=np.float32).reshape(-1)
    if plddt.shape != (protein.length,):
        raise ValueError(f"plddt has {plddt.shape[0]} values for {protein.length} residues")
    return np.repeat(plddt[:, None], rc.atom_type_num, axis=1) * protein.atom_mask


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
        has &= np.linalg.norm(bb[1:, 0] - bb[:-1, 2], axis=-1) <= PEPTIDE_BOND_MAX
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
