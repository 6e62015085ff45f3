"""Model input features: the type that crosses from foldlite.data to foldlite.model.

A ``Features`` holds one protein (or a batch, with a leading batch axis on every array), padded
to a length bucket ``N`` with ``mask`` marking real residues. It is a JAX pytree.

Arrays (unbatched shapes; a batch adds a leading ``B``):
  aatype:        int32   [N]      residue type 0..20 (``constants.restypes_with_x``); 20 on padding
  profile:       float32 [N, 20]  amino-acid frequencies in ``constants.restypes`` order; the
                                  one-hot of the sequence when no MSA/profile is available
  residue_index: int32   [N]      residue numbers (gaps in numbering are chain breaks)
  mask:          float32 [N]      1 for real residues, 0 for padding
  has_profile:   float32 []       1 when ``profile`` comes from an alignment, 0 when one-hot
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from foldlite import constants as rc


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Features:
    aatype: np.ndarray
    profile: np.ndarray
    residue_index: np.ndarray
    mask: np.ndarray
    has_profile: np.ndarray

    @property
    def length(self) -> int:
        """Padded length ``N``."""
        return int(self.aatype.shape[-1])

    @property
    def num_residues(self) -> int:
        """Number of real residues (unbatched features)."""
        return int(np.asarray(self.mask).sum())


def one_hot_profile(aatype: np.ndarray) -> np.ndarray:
    """[L] residue types -> [L, 20] one-hot profile (unknown residues get a uniform row)."""
    aatype = np.asarray(aatype)
    prof = np.zeros(aatype.shape + (rc.restype_num,), np.float32)
    known = aatype < rc.restype_num
    prof[known, aatype[known]] = 1.0
    prof[~known] = 1.0 / rc.restype_num
    return prof


def make_features(aatype: np.ndarray, profile: np.ndarray | None = None,
                  residue_index: np.ndarray | None = None, pad_to: int | None = None
                  ) -> Features:
    """Features for one chain.

    Args:
      aatype: [L] int residue types (0..20).
      profile: [L, 20] amino-acid frequencies in ``restypes`` order, or None for one-hot.
      residue_index: [L] residue numbers; default ``0..L-1``.
      pad_to: pad every array to this length (>= L); default: no padding.
    """
    aatype = np.asarray(aatype, np.int32)
    L = aatype.shape[0]
    has_profile = profile is not None
    prof = one_hot_profile(aatype) if profile is None else np.asarray(profile, np.float32)
    if prof.shape != (L, rc.restype_num):
        raise ValueError(f"profile has shape {prof.shape}, expected {(L, rc.restype_num)}")
    ridx = np.arange(L, dtype=np.int32) if residue_index is None else np.asarray(
        residue_index, np.int32)
    n = L if pad_to is None else int(pad_to)
    if n < L:
        raise ValueError(f"pad_to={n} is shorter than the sequence ({L})")
    pad = n - L
    last = int(ridx[-1]) if L else 0
    return Features(
        aatype=np.concatenate([aatype, np.full(pad, rc.unk_restype_index, np.int32)]),
        profile=np.concatenate([prof, np.zeros((pad, rc.restype_num), np.float32)]),
        residue_index=np.concatenate([ridx, last + 1 + np.arange(pad, dtype=np.int32)]),
        mask=np.concatenate([np.ones(L, np.float32), np.zeros(pad, np.float32)]),
        has_profile=np.asarray(float(has_profile), np.float32),
    )


def stack_features(items: list[Features]) -> Features:
    """Stack equally padded features into a batch (leading axis ``B``)."""
    return jax.tree_util.tree_map(lambda *xs: np.stack(xs), *items)


def length_bucket(length: int, buckets: tuple[int, ...] = (64, 128, 192, 256, 384, 512, 768, 1024)
                  ) -> int:
    """Smallest bucket >= ``length`` (multiples of 256 beyond the largest bucket)."""
    for b in buckets:
        if length <= b:
            return b
    return int(np.ceil(length / 256) * 256)
