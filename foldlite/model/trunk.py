"""The trunk: a stack of blocks updating the single ``s [N, C_s]`` and pair ``z [N, N, C_z]``
representations, in the spirit of AlphaFold2's Evoformer (Jumper et al. 2021, Suppl. Alg. 6)
with a single sequence in place of the MSA.

One block:

1. ``s += SingleAttention(s, z)``: gated self-attention over residues with pair bias (Alg. 7);
2. ``s += Transition(s)`` (Alg. 9);
3. ``z += OuterProductUpdate(s)``: the outer product of two projections of ``s`` (Alg. 10 for
   one sequence);
4. ``z += TriangleMultiplication`` outgoing (Alg. 11) and incoming (Alg. 12);
5. optionally ``z += TriangleAttention`` around the starting and ending node (Alg. 13, 14);
6. ``z += Transition(z)`` (Alg. 15).

Blocks are stacked with ``hk.layer_stack`` (one compiled block scanned over stacked
parameters; unrolled and without CPU cache blocks when training, which makes the backward pass
faster), optionally under ``hk.remat``. The residual streams ``s`` and ``z`` stay float32;
each update computes in the configured dtype.
"""

from __future__ import annotations

import haiku as hk
import jax
import jax.numpy as jnp

from foldlite.model.attention import SingleAttention, TriangleAttention
from foldlite.model.config import ModelConfig
from foldlite.model.layers import (NO_BLOCKS, LayerNorm, Linear, apply_linear, chunked, dropout,
                                   layer_norm, row_block_size)
from foldlite.model.triangle import TriangleMultiplication


class Transition(hk.Module):
    """Two-layer ReLU transition ``LayerNorm -> Linear(n*C) -> relu -> Linear(C)`` (Alg. 9, 15).

    On a pair representation it runs over blocks of rows (``chunk_size`` rows, or cache-sized
    blocks when ``chunk_size`` is 0; see ``layers.row_block_size``)."""

    def __init__(self, factor: int, name: str | None = None):
        super().__init__(name=name)
        self.factor = factor

    def __call__(self, x: jnp.ndarray, *, dtype: jnp.dtype = jnp.float32,
                 chunk_size: int = 0) -> jnp.ndarray:
        """x: [..., C] -> float32 update [..., C]."""
        c = x.shape[-1]
        ln = LayerNorm(name="norm").weights(c)
        w1, b1 = Linear(self.factor * c, init="relu", name="hidden").weights((c,))
        w2, b2 = Linear(c, init="final", name="output").weights((self.factor * c,))

        def fn(x_c):
            h = jax.nn.relu(apply_linear(layer_norm(x_c, *ln).astype(dtype), w1, b1))
            return apply_linear(h, w2, b2).astype(jnp.float32)

        if x.ndim == 3:  # pair transition: cache-sized row blocks unless told otherwise
            chunk_size = row_block_size(chunk_size, x.shape[0], x.shape[1])
        return chunked(fn, chunk_size, (x,), (0,))


class OuterProductUpdate(hk.Module):
    """Pair update from the outer product of the single representation (Alg. 10, one sequence):
    ``z_ij += W . (a_i outer b_j) + bias`` with ``a, b = Linear(LayerNorm(s))``.

    Evaluated as ``u_i = a_i . W`` ([N, c, C_z]) then ``u_i . b_j``, which costs
    ``N^2 c C_z`` multiply-adds instead of ``N^2 c^2 C_z``.
    """

    def __init__(self, hidden_dim: int, name: str | None = None):
        super().__init__(name=name)
        self.hidden_dim = hidden_dim

    def __call__(self, s: jnp.ndarray, mask: jnp.ndarray, c_z: int, *,
                 dtype: jnp.dtype = jnp.float32, chunk_size: int = 0) -> jnp.ndarray:
        """s: [N, C_s], mask [N] -> float32 update [N, N, C_z]."""
        c = self.hidden_dim
        sn = LayerNorm(name="norm")(s).astype(dtype)
        m = mask.astype(dtype)[:, None]
        a = Linear(c, name="left")(sn) * m
        b = Linear(c, name="right")(sn) * m
        w, bias = Linear(c_z, num_input_dims=2, init="final", name="output").weights((c, c))
        u = jnp.einsum("id,dez->ize", a, w.astype(dtype))  # [N, C_z, c]

        def fn(u_c):
            out = jnp.einsum("ize,je->ijz", u_c, b) + bias.astype(dtype)
            return out.astype(jnp.float32)

        return chunked(fn, chunk_size, (u,), (0,))


class TrunkBlock(hk.Module):
    """One trunk block (see the module docstring)."""

    def __init__(self, cfg: ModelConfig, name: str | None = None):
        super().__init__(name=name)
        self.cfg = cfg

    def __call__(self, s: jnp.ndarray, z: jnp.ndarray, mask: jnp.ndarray, is_training: bool,
                 chunk_size: int) -> tuple[jnp.ndarray, jnp.ndarray]:
        t = self.cfg.trunk
        dtype = jnp.dtype(self.cfg.dtype)
        kw = dict(dtype=dtype, chunk_size=chunk_size)
        pair_mask = mask[:, None] * mask[None, :]

        s = s + dropout(SingleAttention(t.attention_heads, t.attention_head_dim,
                                        name="single_attention")(s, z, mask, **kw),
                        t.single_dropout, is_training)
        s = s + Transition(t.transition_factor, name="single_transition")(s, dtype=dtype)
        z = z + OuterProductUpdate(t.outer_product_dim, name="outer_product")(
            s, mask, z.shape[-1], **kw)
        z = z + dropout(TriangleMultiplication(t.triangle_mult_dim, outgoing=True,
                                               name="triangle_mult_outgoing")(z, pair_mask, **kw),
                        t.pair_dropout, is_training, shared_axis=0)
        z = z + dropout(TriangleMultiplication(t.triangle_mult_dim, outgoing=False,
                                               name="triangle_mult_incoming")(z, pair_mask, **kw),
                        t.pair_dropout, is_training, shared_axis=0)
        if t.triangle_attention:
            z = z + dropout(TriangleAttention(t.triangle_attention_heads,
                                              t.triangle_attention_head_dim, ending_node=False,
                                              name="triangle_attention_start")(z, pair_mask, **kw),
                            t.pair_dropout, is_training, shared_axis=0)
            z = z + dropout(TriangleAttention(t.triangle_attention_heads,
                                              t.triangle_attention_head_dim, ending_node=True,
                                              name="triangle_attention_end")(z, pair_mask, **kw),
                            t.pair_dropout, is_training, shared_axis=1)
        z = z + Transition(t.transition_factor, name="pair_transition")(z, **kw)
        return s, z


class Trunk(hk.Module):
    """``cfg.trunk.num_blocks`` trunk blocks under ``hk.layer_stack`` (optionally remat)."""

    def __init__(self, cfg: ModelConfig, name: str | None = "trunk"):
        super().__init__(name=name)
        self.cfg = cfg

    def __call__(self, s: jnp.ndarray, z: jnp.ndarray, mask: jnp.ndarray, *,
                 is_training: bool, chunk_size: int) -> tuple[jnp.ndarray, jnp.ndarray]:
        """
        Args:
          s: [N, C_s] float32; z: [N, N, C_z] float32; mask: [N].

        Returns:
          updated ``(s, z)``, float32.
        """
        n = self.cfg.trunk.num_blocks
        if n == 0:
            return s, z

        if is_training and chunk_size == 0:
            chunk_size = NO_BLOCKS

        def block(s_, z_):
            return TrunkBlock(self.cfg, name="block")(s_, z_, mask, is_training, chunk_size)

        if self.cfg.trunk.remat:
            block = hk.remat(block)
        # Training unrolls the scan over blocks (same stacked parameters) unless the config
        # asks for a scan: the backward pass of a rolled scan slices its stacked residuals and
        # accumulates the stacked gradients dynamically (the `small` trunk's gradient 1.6x
        # slower at L = 96 on CPU), but it compiles one block instead of every block.
        unroll = n if is_training and self.cfg.trunk.unroll_training else 1
        return hk.layer_stack(n, unroll=unroll, name="blocks")(block)(s, z)
