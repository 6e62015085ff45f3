"""Memory a prediction needs, estimated before it runs (no tracing, no compiling).

``network_bytes(cfg, n, chunk_size)`` is the peak of the network for a padded length ``n``:
what XLA's buffer assignment holds at once (``compiled.memory_analysis()``: temporaries,
arguments, outputs), modelled per pair of residues, since the ``[N, N, *]`` arrays dominate.
The peak is in a trunk block:

* pair-sized arrays alive at the peak: the recycled pair representation, the embedding, the
  block's input, updates and output, in units of ``c_z`` (``PAIR_COPIES``, fitted);
* the triangle multiplicative update: its projections ``a`` and ``b`` and their product
  ``[c, N, N]`` (3 x ``triangle_mult_dim``); with chunking only ``b`` is held whole and the rest
  is made a block of rows at a time (1 x);
* ``[H, N, N]`` attention arrays (``IPA_COPIES`` x IPA heads) and the PAE head's
  ``[N, N, 64]`` logits;
* triangle attention (when the config has it): its bias ``[H, N, N]`` and the logits of one
  block of rows, ``rows x H x N x N`` (``rows`` = the chunk size, or the cache-sized block that
  ``layers.attention_block_size`` picks without one: a large chunk size costs more than none);
* with a chunk size, the temporaries of one chunk of the pair transition.

Every ``[N, N, *]`` stage runs in blocks of rows with a chunk size (attention logits, triangle
updates, transitions, the outer product, IPA with its pair layer norm); what remains is the
pair representation itself, a few copies of it, and ``b``.

Calibrated against ``memory_analysis()`` of the ``small`` config on CPU (jax 0.10): 2,850 bytes
per pair unchunked and 2,330 with ``chunk_size`` 32, at N = 512, 768 and 1024 (the model gives
2,842 and 2,330). Measured by running (peak RSS above that of a 20-residue run) at N = 768:
1.74 GiB unchunked, 1.46 GiB with chunk size 32, against estimates of 1.97 and 1.68 GiB.
``MARGIN`` covers the rest (allocator, the runtime, host copies).
"""

from __future__ import annotations

from foldlite.data.features import length_bucket
from foldlite.model.config import ModelConfig
from foldlite.model.heads import PAE_NUM_BINS
from foldlite.model.layers import attention_block_size

#: pair-sized arrays (in units of c_z float32 channels) alive at the network's peak
PAIR_COPIES = 6.6
#: [H, N, N] arrays of Invariant Point Attention alive at once
IPA_COPIES = 4
#: headroom over the modelled peak
MARGIN = 1.10
#: fixed overhead: XLA's runtime and JAX's buffers beside the program's own
OVERHEAD_BYTES = 256 << 20

F32 = 4


def network_bytes(cfg: ModelConfig, n: int, chunk_size: int | None = None) -> int:
    """Estimated peak bytes of one inference of the network at padded length ``n``."""
    chunk = cfg.chunk_size if chunk_size is None else int(chunk_size)
    t, st = cfg.trunk, cfg.structure
    pairs = n * n
    per_pair = (PAIR_COPIES * cfg.c_z + (1 if chunk > 0 else 3) * t.triangle_mult_dim
                + IPA_COPIES * st.ipa_heads + PAE_NUM_BINS)
    total = per_pair * pairs * F32
    if t.triangle_attention:
        h = t.triangle_attention_heads
        rows = attention_block_size(chunk, n, h * n * n * F32) or n
        total += (h * pairs + rows * h * pairs) * F32
    if chunk > 0:
        total += chunk * n * cfg.c_z * (t.transition_factor + 2) * F32
    return int(total * MARGIN) + OVERHEAD_BYTES


#: chunk sizes ``best_chunk_size`` considers
CHUNK_CHOICES = (64, 32, 16, 8, 4)


def best_chunk_size(cfg: ModelConfig, n: int) -> tuple[int, int]:
    """``(chunk_size, bytes)``: the chunk size of ``CHUNK_CHOICES`` with the lowest estimate at
    padded length ``n`` (the largest, so the fastest, within 2% of it)."""
    est = {c: network_bytes(cfg, n, c) for c in CHUNK_CHOICES}
    low = min(est.values())
    chunk = next(c for c in CHUNK_CHOICES if est[c] <= low * 1.02)
    return chunk, est[chunk]


def longest_length(cfg: ModelConfig, limit: int, chunk_size: int | None = None) -> int:
    """The longest sequence whose length bucket (``features.length_bucket``) fits in ``limit``
    bytes by the estimate (0: none)."""
    best, n = 0, length_bucket(1)
    while network_bytes(cfg, n, chunk_size) <= limit:
        best, n = n, length_bucket(n + 1)
    return best


__all__ = ["network_bytes", "longest_length", "best_chunk_size"]
