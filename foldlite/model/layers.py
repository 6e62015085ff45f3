"""Building blocks shared by the network modules: linear layers, layer norm, dropout, chunking.

``Linear`` and ``LayerNorm`` can hand out their parameters (``weights()``) so that the
computation can run inside ``jax.lax.map`` over chunks (``chunked``): Haiku parameters must be
created outside such a loop, the loop body is then a pure function of arrays.

Mixed precision: parameters are float32; ``Linear`` computes in the dtype of its input (bfloat16
in a bfloat16 trunk), ``LayerNorm`` normalises in float32 and returns the input dtype.

Initialisers follow Jumper et al. 2021, Suppl. 1.11.4: ``linear`` (LeCun normal), ``relu``
(He normal), ``final`` (zeros: residual branches start as the identity), ``gating`` (zero
weights, bias 1: gates start open at sigmoid(1)).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np

#: additive attention bias for masked keys (in float32 logits)
MASK_BIAS = -1e9


def _initializer(kind: str, fan_in: int) -> hk.initializers.Initializer:
    if kind == "linear":
        return hk.initializers.VarianceScaling(1.0, "fan_in", "truncated_normal")
    if kind == "relu":
        return hk.initializers.VarianceScaling(2.0, "fan_in", "truncated_normal")
    if kind in ("final", "gating", "zeros"):
        return hk.initializers.Constant(0.0)
    raise ValueError(f"unknown initializer {kind!r}")


class Linear(hk.Module):
    """Dense layer over the last ``num_input_dims`` axes to ``output_shape``.

    Weights ``w [*in_shape, *out_shape]`` (float32), bias ``b [*out_shape]``.
    """

    def __init__(self, output_shape: int | Sequence[int], *, num_input_dims: int = 1,
                 init: str = "linear", use_bias: bool = True, bias_init: float = 0.0,
                 name: str | None = None):
        super().__init__(name=name)
        self.output_shape = (output_shape,) if isinstance(output_shape, int) else tuple(
            output_shape)
        self.num_input_dims = num_input_dims
        self.init = init
        self.use_bias = use_bias
        self.bias_init = 1.0 if init == "gating" else bias_init

    def weights(self, input_shape: Sequence[int]) -> tuple[jnp.ndarray, jnp.ndarray | None]:
        """Create (at init) or fetch the parameters for inputs whose last axes are
        ``input_shape``."""
        input_shape = tuple(int(d) for d in input_shape)
        fan_in = int(np.prod(input_shape))
        w = hk.get_parameter("weights", input_shape + self.output_shape, jnp.float32,
                             init=_initializer(self.init, fan_in))
        b = None
        if self.use_bias:
            b = hk.get_parameter("bias", self.output_shape, jnp.float32,
                                 init=hk.initializers.Constant(self.bias_init))
        return w, b

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        w, b = self.weights(x.shape[x.ndim - self.num_input_dims:])
        return apply_linear(x, w, b, self.num_input_dims)


def apply_linear(x: jnp.ndarray, w: jnp.ndarray, b: jnp.ndarray | None,
                 num_input_dims: int = 1) -> jnp.ndarray:
    """``x [..., *in] @ w [*in, *out] + b`` computed in ``x.dtype``."""
    w = w.astype(x.dtype)
    y = jnp.tensordot(x, w, axes=num_input_dims)
    if b is not None:
        y = y + b.astype(x.dtype)
    return y


class LayerNorm(hk.Module):
    """Layer normalisation over the last axis with learned scale and offset."""

    def __init__(self, eps: float = 1e-5, name: str | None = None):
        super().__init__(name=name)
        self.eps = eps

    def weights(self, channels: int) -> tuple[jnp.ndarray, jnp.ndarray]:
        scale = hk.get_parameter("scale", (int(channels),), jnp.float32,
                                 init=hk.initializers.Constant(1.0))
        offset = hk.get_parameter("offset", (int(channels),), jnp.float32,
                                  init=hk.initializers.Constant(0.0))
        return scale, offset

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        scale, offset = self.weights(x.shape[-1])
        return layer_norm(x, scale, offset, self.eps)


def layer_norm(x: jnp.ndarray, scale: jnp.ndarray, offset: jnp.ndarray,
               eps: float = 1e-5) -> jnp.ndarray:
    """Normalise ``x [..., C]`` over C in float32; returns ``x.dtype``."""
    dtype = x.dtype
    x = x.astype(jnp.float32)
    mean = jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
    y = (x - mean) * jax.lax.rsqrt(var + eps) * scale + offset
    return y.astype(dtype)


def dropout(x: jnp.ndarray, rate: float, is_training: bool,
            shared_axis: int | None = None) -> jnp.ndarray:
    """Dropout with an optional axis along which the mask is shared (AF2's row/column-wise
    dropout on pair updates, Suppl. 1.11.6). No-op unless training with ``rate > 0``."""
    if not is_training or rate <= 0.0:
        return x
    shape = list(x.shape)
    if shared_axis is not None:
        shape[shared_axis] = 1
    keep = jax.random.bernoulli(hk.next_rng_key(), 1.0 - rate, tuple(shape))
    return jnp.where(keep, x / (1.0 - rate), 0.0).astype(x.dtype)


#: per-position pair operations (transitions, the output side of triangle updates) are
#: evaluated over blocks of about this many pair positions when no chunk size is given: on CPU
#: the fused layer-norm / matmul / activation kernels slow down ~2x once their operands no
#: longer fit in cache (measured at L = 512 on a 2-core Xeon). Results do not change.
POSITIONS_PER_BLOCK = 8192


#: ``chunk_size`` value meaning "one piece, no cache blocks": the trunk uses it when training.
#: Cache blocks speed up a forward pass at large L on CPU, but under ``jax.grad`` the
#: ``lax.map`` over blocks becomes a scan whose residuals are stacked and sliced, which made
#: the backward pass of the ``small`` trunk at L = 96 1.5x slower (measured on 2 CPU cores).
NO_BLOCKS = -1


#: attention logits are evaluated over blocks of query rows of about this many bytes when no
#: chunk size is given: triangle attention at L = 256 ran 5-8x faster on CPU with its
#: [rows, H, L, L] logits in blocks of ~2 MiB (L2-cache sized) than in one piece.
ATTENTION_BLOCK_BYTES = 2 << 20


def attention_block_size(chunk_size: int, num_rows: int, bytes_per_row: int) -> int:
    """Rows per chunk for attention whose logits take ``bytes_per_row`` per chunked row:
    ``chunk_size`` when given (> 0); no chunking when it is negative (training: see
    ``NO_BLOCKS``); else blocks of about ``ATTENTION_BLOCK_BYTES`` (0: no chunking when
    everything fits)."""
    if chunk_size != 0:
        return max(chunk_size, 0)
    rows = max(1, ATTENTION_BLOCK_BYTES // max(1, bytes_per_row))
    return _even_blocks(rows, num_rows)


def row_block_size(chunk_size: int, num_rows: int, row_length: int) -> int:
    """Rows per chunk for a per-position op on ``[num_rows, row_length, C]``: ``chunk_size``
    when given (> 0); no chunking when it is negative (training: see ``NO_BLOCKS``); else a
    cache-sized block of about ``POSITIONS_PER_BLOCK`` positions (0: no chunking when the whole
    array is that small)."""
    if chunk_size != 0:
        return max(chunk_size, 0)
    rows = max(1, POSITIONS_PER_BLOCK // max(1, row_length))
    return _even_blocks(rows, num_rows)


def _even_blocks(rows: int, num_rows: int) -> int:
    """At most ``rows`` rows per block, spread evenly so that the last block needs little
    padding (``num_rows = 96, rows = 85`` gives 2 blocks of 48, not 2 of 85 with 74 padded);
    0 (one piece) when a single block holds everything."""
    if rows >= num_rows:
        return 0
    blocks = -(-num_rows // rows)
    return -(-num_rows // blocks)


def chunked(fn: Callable[..., Any], chunk_size: int, args: Sequence[Any],
            in_axes: Sequence[int | None], out_axis: int = 0) -> Any:
    """Evaluate ``fn(*args)`` in chunks along one axis to bound peak memory.

    ``fn`` must act independently on each index of the chunked axis. Arguments with an
    ``in_axes`` entry of ``None`` are passed whole; the others are split along their axis
    (all of the same length ``n``). Every output of ``fn`` carries the chunked axis at
    ``out_axis``.
    Chunks run one after another (``jax.lax.fori_loop``), each written in place into the
    preallocated outputs, so the peak is the outputs plus one chunk's temporaries (no stacked
    copy of the outputs); the last chunk starts at ``n - chunk_size`` (it recomputes a few rows
    of the one before, which ``fn``'s independence makes harmless). ``chunk_size <= 0`` or
    ``>= n`` runs unchunked.
    """
    sizes = {a.shape[ax] for a, ax in zip(args, in_axes) if ax is not None}
    if len(sizes) != 1:
        raise ValueError(f"chunked: inconsistent lengths along the chunked axes: {sizes}")
    n = sizes.pop()
    if chunk_size <= 0 or chunk_size >= n:
        return fn(*args)
    num_chunks = -(-n // chunk_size)

    def piece(start):
        return [a if ax is None else jax.lax.dynamic_slice_in_dim(a, start, chunk_size, ax)
                for a, ax in zip(args, in_axes)]

    shapes = jax.eval_shape(lambda: fn(*piece(0)))

    def empty(sd):
        shape = list(sd.shape)
        shape[out_axis] = n
        return jnp.zeros(shape, sd.dtype)

    def body(i, out):
        start = jnp.minimum(i * chunk_size, n - chunk_size)
        y = fn(*piece(start))
        return jax.tree_util.tree_map(
            lambda o, v: jax.lax.dynamic_update_slice_in_dim(o, v, start, out_axis), out, y)

    return jax.lax.fori_loop(0, num_chunks, body, jax.tree_util.tree_map(empty, shapes))
