"""Input and recycling embeddings (Jumper et al. 2021, Suppl. Alg. 3, 4 and 32).

Per-residue input ``f_i`` [42] = one-hot residue type (21) + amino-acid profile (20) +
``has_profile`` (1). Then

* single ``s_i = Linear(f_i)`` [C_s];
* pair ``z_ij = Linear(f_i) + Linear(f_j) + Linear(onehot(relpos_ij))`` [C_z], with
  ``relpos_ij = clip(r_i - r_j, -K, K)`` over residue numbers (2K+1 classes; a gap in the
  numbering shows as a larger offset, as in AlphaFold2).

Recycling adds ``LayerNorm(s_prev)``, ``LayerNorm(z_prev)`` and an embedding of the distogram of
the previous pass's pseudo-beta positions (CB, or CA for glycine).
"""

from __future__ import annotations

import haiku as hk
import jax
import jax.numpy as jnp

from foldlite import constants as rc
from foldlite.data.features import Features
from foldlite.geometry.rigid import Rigid
from foldlite.model.layers import LayerNorm, Linear

#: input feature width: residue type one-hot (21) + profile (20) + has_profile (1)
TARGET_FEAT_DIM = 21 + 20 + 1


def target_features(features: Features) -> jnp.ndarray:
    """[N, 42] per-residue input features."""
    aatype = jnp.asarray(features.aatype)
    n = aatype.shape[0]
    has_profile = jnp.broadcast_to(jnp.asarray(features.has_profile, jnp.float32), (n, 1))
    return jnp.concatenate([jax.nn.one_hot(aatype, 21, dtype=jnp.float32),
                            jnp.asarray(features.profile, jnp.float32), has_profile], axis=-1)


class InputEmbedder(hk.Module):
    """Features -> initial single ``s [N, C_s]`` and pair ``z [N, N, C_z]`` (float32)."""

    def __init__(self, c_s: int, c_z: int, max_relative_position: int,
                 name: str | None = "input_embedder"):
        super().__init__(name=name)
        self.c_s, self.c_z, self.k = c_s, c_z, max_relative_position

    def __call__(self, features: Features) -> tuple[jnp.ndarray, jnp.ndarray]:
        f = target_features(features)
        s = Linear(self.c_s, name="single")(f)
        left = Linear(self.c_z, name="pair_left")(f)
        right = Linear(self.c_z, use_bias=False, name="pair_right")(f)
        ridx = jnp.asarray(features.residue_index, jnp.int32)
        rel = jnp.clip(ridx[:, None] - ridx[None, :], -self.k, self.k) + self.k
        # one-hot(rel) @ W is a row lookup
        w_rel, _ = Linear(self.c_z, use_bias=False, name="relpos").weights((2 * self.k + 1,))
        z = left[:, None, :] + right[None, :, :] + jnp.take(w_rel, rel, axis=0)
        return s, z


def pseudo_beta_from_frames(frames: Rigid, aatype: jnp.ndarray) -> jnp.ndarray:
    """[N, 3] pseudo-beta positions straight from backbone frames [N]: the ideal CB (part of the
    backbone rigid group, so no torsion is needed), CA for glycine and unknown residues.
    Equal to ``foldlite.geometry.pseudo_beta.pseudo_beta`` of the atoms built from the same
    frames, for glycine and the residue types that have a CB."""
    cb = 4  # atom14 slot of CB in every residue type that has one (N, CA, C, O, CB, ...)
    local = (rc.restype_atom14_rigid_group_positions[:, cb]
             * rc.restype_atom14_mask[:, cb, None])  # [21, 3]; zeros (= CA) without CB
    return frames.apply(jnp.asarray(local)[aatype])


def distogram_one_hot(positions: jnp.ndarray, min_bin: float, max_bin: float,
                      num_bins: int) -> jnp.ndarray:
    """[N, 3] -> [N, N, num_bins] one-hot distance bins (Suppl. Alg. 32 line 1): bin edges
    ``linspace(min_bin, max_bin, num_bins)``, bins ``[lower, upper)``; the last bin is
    open-ended; distances below ``min_bin`` fall in no bin."""
    lower = jnp.square(jnp.linspace(min_bin, max_bin, num_bins))
    upper = jnp.concatenate([lower[1:], jnp.array([1e8], jnp.float32)])
    d2 = jnp.sum(jnp.square(positions[:, None, :] - positions[None, :, :]), axis=-1,
                 keepdims=True)
    return ((d2 >= lower) & (d2 < upper)).astype(jnp.float32)


class RecyclingEmbedder(hk.Module):
    """Adds the previous pass's single, pair and pseudo-beta distogram (Suppl. Alg. 32)."""

    def __init__(self, min_bin: float, max_bin: float, num_bins: int,
                 name: str | None = "recycling_embedder"):
        super().__init__(name=name)
        self.min_bin, self.max_bin, self.num_bins = min_bin, max_bin, num_bins

    def __call__(self, s: jnp.ndarray, z: jnp.ndarray, prev_s: jnp.ndarray,
                 prev_z: jnp.ndarray, prev_pos: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
        """
        Args:
          s: [N, C_s]; z: [N, N, C_z] current embeddings.
          prev_s: [N, C_s]; prev_z: [N, N, C_z]; prev_pos: [N, 3] pseudo-beta positions (A).
            All zeros on the first pass.
        """
        dgram = Linear(z.shape[-1], name="distogram")(
            distogram_one_hot(prev_pos, self.min_bin, self.max_bin, self.num_bins))
        s = s + LayerNorm(name="norm_single")(prev_s)
        z = z + LayerNorm(name="norm_pair")(prev_z) + dgram
        return s, z
