"""Triangle multiplicative updates of the pair representation (Suppl. Alg. 11 and 12).

Outgoing edges: ``x_ij = sum_k a_ik * b_jk``; incoming edges: ``x_ij = sum_k a_ki * b_kj``,
with ``a = sigmoid(Linear(z)) * Linear(z)`` (likewise ``b``) masked by the pair mask, then
``z_ij += sigmoid(Linear(z_ij)) * Linear(LayerNorm(x_ij))``.

The projections ``a`` and ``b`` are laid out channel-first ``[c, N, N]`` so that the
contraction over ``k`` is a batch of ``c`` plain matrix products. With ``chunk_size > 0`` the
product, its layer norm, the output projection and the gate are evaluated for blocks of rows
``i`` (bounded memory); otherwise the product is one batched matmul and the per-position output
side runs over cache-sized row blocks (faster on CPU).
"""

from __future__ import annotations

import haiku as hk
import jax
import jax.numpy as jnp

from foldlite.model.layers import (LayerNorm, Linear, apply_linear, chunked, layer_norm,
                                   row_block_size)


class TriangleMultiplication(hk.Module):
    """Triangle multiplicative update using outgoing (Alg. 11) or incoming (Alg. 12) edges."""

    def __init__(self, hidden_dim: int, outgoing: bool, name: str | None = None):
        super().__init__(name=name)
        self.hidden_dim = hidden_dim
        self.outgoing = outgoing

    def __call__(self, z: jnp.ndarray, pair_mask: jnp.ndarray, *,
                 dtype: jnp.dtype = jnp.float32, chunk_size: int = 0) -> jnp.ndarray:
        """
        Args:
          z: [N, N, C_z] pair representation.
          pair_mask: [N, N] 1 where both residues are real.

        Returns:
          [N, N, C_z] float32 update for ``z``.
        """
        c, c_z = self.hidden_dim, z.shape[-1]
        ln_in = LayerNorm(name="norm_in").weights(c_z)
        # a = sigmoid(gate_a) * proj_a and b likewise, fused into one [C_z, 4c] matrix
        parts = [Linear(c, init=init, name=name).weights((c_z,)) for name, init in (
            ("left_gate", "gating"), ("left_proj", "linear"),
            ("right_gate", "gating"), ("right_proj", "linear"))]
        w_ab = jnp.concatenate([w for w, _ in parts], axis=-1)
        b_ab = jnp.concatenate([b for _, b in parts], axis=-1)
        ln_out = LayerNorm(name="norm_out").weights(c)
        w_o, b_o = Linear(c_z, init="final", name="output").weights((c,))
        w_g, b_g = Linear(c_z, init="gating", name="gate").weights((c_z,))

        def project(z_c, m_c):
            # z_c [r, N, C_z] rows of z; m_c [r, N] their pair mask -> a, b: [c, r, N].
            # Projecting straight into the channel-first layout avoids a transpose of the
            # [N, N, 4c] projections (measured 2x faster on CPU).
            zn = layer_norm(z_c, *ln_in).astype(dtype)
            p = jnp.einsum("ijd,de->eij", zn, w_ab.astype(dtype)) + b_ab.astype(dtype)[:, None,
                                                                                      None]
            m = m_c.astype(dtype)
            a = jax.nn.sigmoid(p[:c]) * p[c:2 * c] * m
            b = jax.nn.sigmoid(p[2 * c:3 * c]) * p[3 * c:] * m
            return a, b

        a, b = chunked(project, chunk_size, (z, pair_mask), (0, 0), out_axis=1)  # [c, N, N]
        # outgoing: x_ij = sum_k a_ik b_jk; incoming: x_ij = sum_k a_ki b_kj
        spec = "cik,cjk->cij" if self.outgoing else "cki,ckj->cij"
        a_axis = 1 if self.outgoing else 2

        def finish(x_c, z_c):
            # x_c [c, r, N] products for rows i; z_c [r, N, C_z] the same rows of z (gate).
            x = layer_norm(jnp.moveaxis(x_c, 0, -1), *ln_out)  # [r, N, c]
            out = apply_linear(x, w_o, b_o)
            zn = layer_norm(z_c, *ln_in).astype(dtype)
            gate = jax.nn.sigmoid(apply_linear(zn, w_g, b_g))
            return (out * gate).astype(jnp.float32)

        if chunk_size > 0:
            # bounded memory: product and output for a block of rows at a time
            return chunked(lambda a_c, z_c: finish(jnp.einsum(spec, a_c, b), z_c),
                           chunk_size, (a, z), (a_axis, 0))
        # fastest: one batched matrix product, then the per-position output side over
        # cache-sized row blocks
        x = jnp.einsum(spec, a, b)  # [c, N, N]
        rows = row_block_size(chunk_size, x.shape[1], x.shape[2])
        return chunked(finish, rows, (x, z), (1, 0))
