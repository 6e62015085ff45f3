"""Invariant Point Attention (Jumper et al. 2021, Suppl. Alg. 22).

Each residue ``i`` carries a frame ``T_i``. Queries, keys and values have a scalar part and a
set of 3D points generated in the local frame and mapped to the global frame by ``T_i``. The
attention logits combine scalar products, the pair bias and the squared distances between
query and key points:

    a_ij = softmax_j( w_L [ q_i.k_j / sqrt(c) + b_ij
                            - gamma_h w_C / 2 sum_p |T_i q_ip - T_j k_jp|^2 ] )

with ``w_L = sqrt(1/3)``, ``w_C = sqrt(2 / (9 P_qk))``, ``gamma_h = softplus(.)`` learned per
head. The output concatenates the attended scalar values, the attended value points mapped back
into the local frame ``T_i^-1`` (and their norms) and the attended pair representation. Since
the points enter only through distances and local coordinates, the result is invariant to a
global rotation and translation of all frames.

The squared distance is expanded as ``|q|^2 + |k|^2 - 2 q.k``, so it is a matrix product and
needs ``O(H N^2)`` memory instead of ``O(H P N^2)``; with a chunk size, blocks of query rows
need ``O(chunk H N)``.
"""

from __future__ import annotations

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np

from foldlite.geometry.rigid import Rigid
from foldlite.model.layers import MASK_BIAS, Linear, apply_linear, chunked, layer_norm


class InvariantPointAttention(hk.Module):
    """Invariant Point Attention (Suppl. Alg. 22); float32 throughout."""

    def __init__(self, num_heads: int, head_dim: int, num_qk_points: int, num_v_points: int,
                 dist_epsilon: float = 1e-8, name: str | None = "invariant_point_attention"):
        super().__init__(name=name)
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.num_qk_points = num_qk_points
        self.num_v_points = num_v_points
        self.dist_epsilon = dist_epsilon

    def __call__(self, s: jnp.ndarray, z: jnp.ndarray, frames: Rigid,
                 mask: jnp.ndarray, *, chunk_size: int = 0,
                 pair_norm: tuple[jnp.ndarray, jnp.ndarray] | None = None) -> jnp.ndarray:
        """
        Args:
          s: [N, C_s] single representation.
          z: [N, N, C_z] pair representation.
          frames: Rigid [N]; translations in the structure module's units.
          mask: [N] 1 for real residues.
          chunk_size: > 0: evaluate ``chunk_size`` query rows at a time (the pair bias, the
            ``[H, rows, N]`` logits and the attended pair representation), which bounds the
            memory to ``O(chunk * N * (H + C_z))`` beside ``z``; same result to float tolerance.
          pair_norm: layer-norm (scale, offset) to apply to ``z`` first, row block by row
            block (so that no normalised copy of ``z`` is made).

        Returns:
          [N, C_s] update for ``s``.
        """
        h, c = self.num_heads, self.head_dim
        pq, pv = self.num_qk_points, self.num_v_points
        s = s.astype(jnp.float32)
        z = z.astype(jnp.float32)
        mask = mask.astype(jnp.float32)
        c_s = s.shape[-1]

        q = Linear((h, c), name="q")(s)
        k = Linear((h, c), name="k")(s)
        v = Linear((h, c), name="v")(s)
        # points generated in the local frame, then mapped to the global frame
        local = frames.map(lambda x: x[:, None, None])  # Rigid [N, 1, 1]
        q_pts = local.apply(Linear((h, pq, 3), name="q_points")(s))  # [N, H, Pq, 3]
        k_pts = local.apply(Linear((h, pq, 3), name="k_points")(s))
        v_pts = local.apply(Linear((h, pv, 3), name="v_points")(s))  # [N, H, Pv, 3]
        w_b, b_b = Linear(h, name="pair_bias").weights((z.shape[-1],))

        w_l = np.sqrt(1.0 / 3.0)
        w_c = np.sqrt(2.0 / (9.0 * pq))
        # gamma_h = softplus(theta_h), initialised to 1
        theta = hk.get_parameter("point_weights", (h,), jnp.float32,
                                 init=hk.initializers.Constant(float(np.log(np.e - 1.0))))
        gamma = jax.nn.softplus(theta)

        k_sq = jnp.sum(jnp.square(k_pts), axis=(-2, -1))  # [N, H]
        key_bias = (MASK_BIAS * (1.0 - mask))[None, None, :]

        def attend(q_c, q_pts_c, z_c):
            # q_c [r, H, c], q_pts_c [r, H, Pq, 3], z_c [r, N, C_z]: the rows i of a block.
            if pair_norm is not None:
                z_c = layer_norm(z_c, *pair_norm)
            pair_bias = apply_linear(z_c, w_b, b_b)  # [r, N, H]
            scalar = jnp.einsum("ihc,jhc->hij", q_c, k) / np.sqrt(c)
            q_sq = jnp.sum(jnp.square(q_pts_c), axis=(-2, -1))  # [r, H]
            qk = jnp.einsum("ihpx,jhpx->hij", q_pts_c, k_pts)
            dist2 = q_sq.T[:, :, None] + k_sq.T[:, None, :] - 2.0 * qk  # [H, r, N]
            logits = w_l * (scalar + jnp.moveaxis(pair_bias, -1, 0)
                            - 0.5 * w_c * gamma[:, None, None] * dist2)
            attn = jax.nn.softmax(logits + key_bias, axis=-1)  # [H, r, N]
            o_scalar = jnp.einsum("hij,jhc->ihc", attn, v)  # [r, H, c]
            o_pts_global = jnp.einsum("hij,jhpx->ihpx", attn, v_pts)  # [r, H, Pv, 3]
            o_pair = jnp.einsum("hij,ijc->ihc", attn, z_c)  # [r, H, C_z]
            return o_scalar, o_pts_global, o_pair

        o_scalar, o_pts_global, o_pair = chunked(attend, max(chunk_size, 0), (q, q_pts, z),
                                                 (0, 0, 0))
        o_pts = local.invert_apply(o_pts_global)
        o_norm = jnp.sqrt(self.dist_epsilon + jnp.sum(jnp.square(o_pts), axis=-1))  # [N, H, Pv]

        n = s.shape[0]
        features = jnp.concatenate([
            o_scalar.reshape(n, -1), o_pts.reshape(n, -1), o_norm.reshape(n, -1),
            o_pair.reshape(n, -1)], axis=-1)
        return Linear(c_s, init="final", name="output")(features)
