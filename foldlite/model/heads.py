"""Output heads and the bins they predict over.

* distogram (Suppl. 1.9.8): 64 bins of the CB-CB distance (CA for glycine), edges
  ``DISTOGRAM_BREAKS`` = 63 equally spaced values 2.3125..21.6875 A (as AlphaFold2); logits from
  the pair representation, symmetrised.
* pLDDT (Suppl. Alg. 29): 50 bins of per-residue lDDT-CA in [0, 1] (width 0.02); from the
  structure module's final single representation. ``plddt_from_logits`` gives the expected
  lDDT x 100.
* predicted aligned error (Suppl. 1.9.7): 64 bins of the error of residue ``j``'s CA when
  aligned on residue ``i``'s frame: bins of 0.5 A over [0, 31.5) plus an open last bin; bin
  centres ``PAE_BIN_CENTERS`` = 0.25..31.75 A. From the pair representation.
  ``ptm_from_logits`` gives the predicted TM-score (Suppl. 1.9.7, eq. 40).
* secondary structure: 3 states (0 helix, 1 strand, 2 coil) from the trunk's single.
"""

from __future__ import annotations

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np

from foldlite.model.layers import LayerNorm, Linear

#: distogram: 64 bins, 63 inner edges (Angstrom); bin 0 is < 2.3125 A, bin 63 is >= 21.6875 A
DISTOGRAM_NUM_BINS = 64
DISTOGRAM_FIRST_BREAK = 2.3125
DISTOGRAM_LAST_BREAK = 21.6875
DISTOGRAM_BREAKS = np.linspace(DISTOGRAM_FIRST_BREAK, DISTOGRAM_LAST_BREAK,
                               DISTOGRAM_NUM_BINS - 1).astype(np.float32)

#: pLDDT: 50 bins of lDDT in [0, 1]
PLDDT_NUM_BINS = 50
PLDDT_BIN_WIDTH = 1.0 / PLDDT_NUM_BINS
PLDDT_BIN_CENTERS = ((np.arange(PLDDT_NUM_BINS) + 0.5) * PLDDT_BIN_WIDTH).astype(np.float32)

#: predicted aligned error: 64 bins of 0.5 A; 63 inner edges 0.5..31.5 A
PAE_NUM_BINS = 64
PAE_BIN_WIDTH = 0.5
PAE_BREAKS = (np.arange(1, PAE_NUM_BINS) * PAE_BIN_WIDTH).astype(np.float32)
PAE_BIN_CENTERS = ((np.arange(PAE_NUM_BINS) + 0.5) * PAE_BIN_WIDTH).astype(np.float32)
MAX_PAE = float(PAE_BIN_CENTERS[-1])  # 31.75

#: secondary structure states
SS_NUM_CLASSES = 3
SS_STATES = ("helix", "strand", "coil")


def plddt_from_logits(logits: jnp.ndarray) -> jnp.ndarray:
    """[..., 50] -> [...] expected lDDT x 100 (0..100)."""
    probs = jax.nn.softmax(jnp.asarray(logits, jnp.float32), axis=-1)
    return 100.0 * jnp.sum(probs * PLDDT_BIN_CENTERS, axis=-1)


def pae_from_logits(logits: jnp.ndarray) -> jnp.ndarray:
    """[..., N, N, 64] -> [..., N, N] expected aligned error (Angstrom)."""
    probs = jax.nn.softmax(jnp.asarray(logits, jnp.float32), axis=-1)
    return jnp.sum(probs * PAE_BIN_CENTERS, axis=-1)


def tm_d0(num_residues: jnp.ndarray) -> jnp.ndarray:
    """TM-score distance scale ``d0 = 1.24 (max(L, 19) - 15)^(1/3) - 1.8`` (Angstrom)."""
    n = jnp.maximum(jnp.asarray(num_residues, jnp.float32), 19.0)
    return 1.24 * jnp.cbrt(n - 15.0) - 1.8


def ptm_from_logits(logits: jnp.ndarray, mask: jnp.ndarray) -> jnp.ndarray:
    """Predicted TM-score from PAE logits (Suppl. 1.9.7, eq. 40).

    ``pTM = max_i (1/L) sum_j E[ 1 / (1 + (e_ij / d0)^2) ]`` over real residues ``i, j``,
    with ``L`` the number of real residues.

    Args:
      logits: [N, N, 64] PAE logits.
      mask: [N] 1 for real residues.

    Returns:
      [] pTM in [0, 1].
    """
    logits = jnp.asarray(logits, jnp.float32)
    mask = jnp.asarray(mask, jnp.float32)
    n_res = jnp.sum(mask)
    d0 = tm_d0(n_res)
    tm_per_bin = 1.0 / (1.0 + jnp.square(PAE_BIN_CENTERS / d0))  # [64]
    probs = jax.nn.softmax(logits, axis=-1)
    expected = jnp.sum(probs * tm_per_bin, axis=-1)  # [N, N]
    per_alignment = jnp.sum(expected * mask[None, :], axis=-1) / jnp.maximum(n_res, 1.0)
    return jnp.max(jnp.where(mask > 0, per_alignment, 0.0))


class DistogramHead(hk.Module):
    """[N, N, C_z] -> symmetric [N, N, 64] distogram logits."""

    def __init__(self, name: str | None = "distogram_head"):
        super().__init__(name=name)

    def __call__(self, z: jnp.ndarray) -> jnp.ndarray:
        half = Linear(DISTOGRAM_NUM_BINS, name="logits")(LayerNorm(name="norm")(z))
        return half + jnp.swapaxes(half, 0, 1)


class PAEHead(hk.Module):
    """[N, N, C_z] -> [N, N, 64] predicted aligned error logits."""

    def __init__(self, name: str | None = "pae_head"):
        super().__init__(name=name)

    def __call__(self, z: jnp.ndarray) -> jnp.ndarray:
        return Linear(PAE_NUM_BINS, name="logits")(LayerNorm(name="norm")(z))


class PLDDTHead(hk.Module):
    """[N, C_s] -> [N, 50] pLDDT logits (Suppl. Alg. 29)."""

    def __init__(self, hidden: int, name: str | None = "plddt_head"):
        super().__init__(name=name)
        self.hidden = hidden

    def __call__(self, s: jnp.ndarray) -> jnp.ndarray:
        h = LayerNorm(name="norm")(s)
        h = jax.nn.relu(Linear(self.hidden, init="relu", name="hidden_1")(h))
        h = jax.nn.relu(Linear(self.hidden, init="relu", name="hidden_2")(h))
        return Linear(PLDDT_NUM_BINS, name="logits")(h)


class SecondaryStructureHead(hk.Module):
    """[N, C_s] -> [N, 3] secondary-structure logits (helix, strand, coil)."""

    def __init__(self, name: str | None = "secondary_structure_head"):
        super().__init__(name=name)

    def __call__(self, s: jnp.ndarray) -> jnp.ndarray:
        return Linear(SS_NUM_CLASSES, name="logits")(LayerNorm(name="norm")(s))
