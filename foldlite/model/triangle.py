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

        def project(z_c, m_c, parts=slice(None)):
            # z_c [r, N, C_z] rows of z; m_c [r, N] their pair mask -> a, b: [c, r, N].
            # Projecting straight into the channel-first layout avoids a transpose of the
            # [N, N, 4c] projections (measured 2x faster on CPU). ``parts``: slice(0, 2c) for
            # ``a`` alone, slice(2c, 4c) for ``b`` alone (one [c, N, N] array, not two).
            zn = layer_norm(z_c, *ln_in).astype(dtype)
            w, bias = w_ab[:, parts], b_ab[parts]
            p = jnp.einsum("ijd,de->eij", zn, w.astype(dtype)) + bias.astype(dtype)[:, None, None]
            m = m_c.astype(dtype)
            gated = [jax.nn.sigmoid(p[k:k + c]) * p[k + c:k + 2 * c] * m
                     for k in range(0, p.shape[0], 2 * c)]
            return tuple(gated) if len(gated) > 1 else gated[0]

        # outgoing: x_ij = sum_k a_ik b_jk; incoming: x_ij = sum_k a_ki b_kj
        spec = "cik,cjk->cij" if self.outgoing else "cki,ckj->cij"

        def finish(x_c, z_c):
            # x_c [c, r, N] products for rows i; z_c [r, N, C_z] the same rows of z (gate).
            x = layer_norm(jnp.moveaxis(x_c, 0, -1), *ln_out)  # [r, N, c]
            out = apply_linear(x, w_o, b_o)
            zn = layer_norm(z_c, *ln_in).astype(dtype)
            gate = jax.nn.sigmoid(apply_linear(zn, w_g, b_g))
            return (out * gate).astype(jnp.float32)

        if chunk_size > 0:
            # bounded memory: only ``b`` is held whole ([c, N, N]); ``a`` for a block of rows
            # i (outgoing: rows i of z; incoming: columns i of z), its product with ``b`` and
            # the output are made a block at a time.
            b = chunked(lambda z_c, m_c: project(z_c, m_c, slice(2 * c, 4 * c)), chunk_size,
                        (z, pair_mask), (0, 0), out_axis=1)
            z_axis = 0 if self.outgoing else 1

            def block(z_a, m_a, z_c):
                a_c = project(jnp.moveaxis(z_a, z_axis, 0), jnp.moveaxis(m_a, z_axis, 0),
                              slice(0, 2 * c))
                # a_c [c, r, N]: a_{i k} for the block's i (outgoing) / a_{k i} transposed
                x_c = jnp.einsum("cik,cjk->cij" if self.outgoing else "cik,ckj->cij", a_c, b)
                return finish(x_c, z_c)

            return chunked(block, chunk_size, (z, pair_mask, z), (z_axis, z_axis, 0))
        a, b = chunked(project, chunk_size, (z, pair_mask), (0, 0), out_axis=1)  # [c, N, N]
        # fastest: one batched matrix product, then the per-position output side over
        # cache-sized row blocks
        x = jnp.einsum(spec, a, b)  # [c, N, N]
        rows = row_block_size(chunk_size, x.shape[1], x.shape[2])
        return chunked(finish, rows, (x, z), (1, 0))
