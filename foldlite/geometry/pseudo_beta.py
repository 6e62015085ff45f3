"""The pseudo-beta atom of each residue: CB, CA for glycine, and a virtual CB placed from the
backbone where CB is missing (backbone-only structures, such as the ProMod3 database)."""

from __future__ import annotations

import jax.numpy as jnp

from foldlite import constants as rc

_N, _CA, _C, _CB = (rc.atom_order[a] for a in ("N", "CA", "C", "CB"))
_GLY = rc.restype_order["G"]


def pseudo_beta(atom37: jnp.ndarray, atom37_mask: jnp.ndarray, aatype: jnp.ndarray
                ) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Pseudo-beta atoms [..., N, 3] and mask [..., N]: CB, CA for glycine, a virtual CB without
    CB.

    Args:
      atom37: [..., N, 37, 3] atom positions.
      atom37_mask: [..., N, 37] 1 where an atom is present.
      aatype: int [..., N].

    The virtual CB is placed from N, CA, C with the ideal tetrahedral geometry of
    Yang et al., PNAS 117, 1496 (2020) (trRosetta):
    ``CB = -0.58273431 a + 0.56802827 b - 0.54067466 c + CA`` with ``b = CA - N``,
    ``c = C - CA``, ``a = b x c``. The mask is CA's for glycine, else 1 where CB or the three
    backbone atoms are present.
    """
    n, ca, c, cb = (atom37[..., i, :] for i in (_N, _CA, _C, _CB))
    b = ca - n
    cc = c - ca
    a = jnp.cross(b, cc)
    virtual = -0.58273431 * a + 0.56802827 * b - 0.54067466 * cc + ca
    has_bb = atom37_mask[..., _N] * atom37_mask[..., _CA] * atom37_mask[..., _C]
    has_cb = atom37_mask[..., _CB]
    is_gly = (aatype == _GLY)
    pos = jnp.where(is_gly[..., None], ca,
                    jnp.where(has_cb[..., None] > 0, cb, virtual))
    mask = jnp.where(is_gly, atom37_mask[..., _CA],
                     jnp.maximum(has_cb, has_bb))
    return pos, mask
