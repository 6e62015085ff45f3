"""Gated multi-head attention: over residues with pair bias, and triangle attention on pairs.

* ``SingleAttention``: self-attention over residues on the single representation, biased by
  the pair representation and gated -- AlphaFold2's MSA row attention with pair bias
  (Jumper et al. 2021, Suppl. Alg. 7) applied to a single sequence.
* ``TriangleAttention``: triangular gated self-attention around the starting node
  (Suppl. Alg. 13) or, by transposing the pair representation, the ending node (Alg. 14).

Both evaluate in chunks along the query axis (same result to float tolerance): ``chunk_size``
rows at a time when given, which bounds memory (triangle attention then needs
``O(chunk * H * L^2)`` for its logits instead of ``O(H * L^3)``), else blocks of about
``layers.ATTENTION_BLOCK_BYTES`` of logits, which keeps them in cache (much faster on CPU).

Masked keys get a large negative bias, so padded residues never change real ones.
Softmax and the bias run in float32 whatever the compute dtype.
"""

from __future__ import annotations

import haiku as hk
import jax
import jax.numpy as jnp

from foldlite.model.layers import (MASK_BIAS, LayerNorm, Linear, apply_linear,
                                   attention_block_size, chunked, layer_norm)


def gated_attention(q: jnp.ndarray, k: jnp.ndarray, v: jnp.ndarray, bias: jnp.ndarray,
                    gate: jnp.ndarray | None = None) -> jnp.ndarray:
    """Scaled dot-product attention with an additive bias and an optional sigmoid gate.

    Args:
      q: [..., Q, H, d] queries.
      k: [..., K, H, d] keys.
      v: [..., K, H, d] values.
      bias: float32, broadcastable to [..., H, Q, K] (pair bias + mask bias).
      gate: [..., Q, H, d] gate logits, or None.

    Returns:
      [..., Q, H, d] in the dtype of ``v``.
    """
    scale = q.shape[-1] ** -0.5
    logits = jnp.einsum("...qhd,...khd->...hqk", q * jnp.asarray(scale, q.dtype), k)
    logits = logits.astype(jnp.float32) + bias
    weights = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
    out = jnp.einsum("...hqk,...khd->...qhd", weights, v)
    if gate is not None:
        out = out * jax.nn.sigmoid(gate)
    return out


class SingleAttention(hk.Module):
    """Gated self-attention over residues with pair bias (Suppl. Alg. 7, one sequence)."""

    def __init__(self, num_heads: int, head_dim: int, name: str | None = None):
        super().__init__(name=name)
        self.num_heads = num_heads
        self.head_dim = head_dim

    def __call__(self, s: jnp.ndarray, z: jnp.ndarray, mask: jnp.ndarray, *,
                 dtype: jnp.dtype = jnp.float32, chunk_size: int = 0) -> jnp.ndarray:
        """
        Args:
          s: [N, C_s] single representation.
          z: [N, N, C_z] pair representation.
          mask: [N] 1 for real residues.

        Returns:
          [N, C_s] float32 update for ``s``.
        """
        h, d = self.num_heads, self.head_dim
        c_s, c_z = s.shape[-1], z.shape[-1]
        sn = LayerNorm(name="norm_single")(s).astype(dtype)
        q = Linear((h, d), use_bias=False, name="q")(sn)
        k = Linear((h, d), use_bias=False, name="k")(sn)
        v = Linear((h, d), use_bias=False, name="v")(sn)
        g = Linear((h, d), init="gating", name="gate")(sn)
        ln_z = LayerNorm(name="norm_pair").weights(c_z)
        w_b, _ = Linear(h, use_bias=False, name="pair_bias").weights((c_z,))
        key_bias = (MASK_BIAS * (1.0 - mask.astype(jnp.float32)))[None, None, :]  # [1,1,K]

        def attend(q_c, g_c, z_c):
            # q_c, g_c [c, H, d]; z_c [c, N, C_z] pair rows of the queries.
            zn = layer_norm(z_c, *ln_z).astype(dtype)
            pair_bias = jnp.moveaxis(apply_linear(zn, w_b, None), -1, 0)  # [H, c, N]
            return gated_attention(q_c, k, v, pair_bias.astype(jnp.float32) + key_bias, g_c)

        n = s.shape[0]
        rows = attention_block_size(chunk_size, n, h * n * 4)
        o = chunked(attend, rows, (q, g, z), (0, 0, 0))  # [N, H, d]
        return Linear(c_s, num_input_dims=2, init="final", name="output")(o).astype(jnp.float32)


class TriangleAttention(hk.Module):
    """Triangular gated self-attention around the starting (Alg. 13) or ending (Alg. 14) node.

    Starting node: for each row ``i``, positions ``(i, j)`` attend to ``(i, k)`` with bias
    ``b_jk``. The ending node is the same on the transposed pair representation.
    """

    def __init__(self, num_heads: int, head_dim: int, ending_node: bool,
                 name: str | None = None):
        super().__init__(name=name)
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.ending_node = ending_node

    def __call__(self, z: jnp.ndarray, pair_mask: jnp.ndarray, *,
                 dtype: jnp.dtype = jnp.float32, chunk_size: int = 0) -> jnp.ndarray:
        """
        Args:
          z: [N, N, C_z] pair representation.
          pair_mask: [N, N] 1 where both residues are real.

        Returns:
          [N, N, C_z] float32 update for ``z``.
        """
        h, d = self.num_heads, self.head_dim
        c_z = z.shape[-1]
        if self.ending_node:
            z = jnp.swapaxes(z, 0, 1)
            pair_mask = jnp.swapaxes(pair_mask, 0, 1)
        ln = LayerNorm(name="norm").weights(c_z)
        w_b, _ = Linear(h, use_bias=False, name="triangle_bias").weights((c_z,))
        w_q, _ = Linear((h, d), use_bias=False, name="q").weights((c_z,))
        w_k, _ = Linear((h, d), use_bias=False, name="k").weights((c_z,))
        w_v, _ = Linear((h, d), use_bias=False, name="v").weights((c_z,))
        w_g, b_g = Linear((h, d), init="gating", name="gate").weights((c_z,))
        w_o, b_o = Linear(c_z, num_input_dims=2, init="final", name="output").weights((h, d))

        # triangle bias b_jk [H, N, N], shared by every row i
        def bias_rows(z_c):
            zn = layer_norm(z_c, *ln).astype(dtype)
            return apply_linear(zn, w_b, None).astype(jnp.float32)  # [c, N, H]

        tri_bias = jnp.moveaxis(chunked(bias_rows, chunk_size, (z,), (0,)), -1, 0)

        def attend(z_c, m_c):
            # z_c [c, N, C_z] rows i of the pair representation; m_c [c, N] their key masks.
            zn = layer_norm(z_c, *ln).astype(dtype)
            q = apply_linear(zn, w_q, None)
            k = apply_linear(zn, w_k, None)
            v = apply_linear(zn, w_v, None)
            g = apply_linear(zn, w_g, b_g)
            key_bias = (MASK_BIAS * (1.0 - m_c.astype(jnp.float32)))[:, None, None, :]
            o = gated_attention(q, k, v, tri_bias[None] + key_bias, g)  # [c, N, H, d]
            return apply_linear(o, w_o, b_o, num_input_dims=2).astype(jnp.float32)

        n = z.shape[0]
        rows = attention_block_size(chunk_size, n, h * n * n * 4)
        out = chunked(attend, rows, (z, pair_mask), (0, 0))
        if self.ending_node:
            out = jnp.swapaxes(out, 0, 1)
        return out
