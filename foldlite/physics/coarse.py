"""Coarse-grained pre-relaxation: a collapsed model opened up at the level of its CA trace.

A weakly trained network hedges where it is unsure by pulling residues towards the centre: its
models can be balls with consecutive CA atoms 1-3 A apart and distant residues on top of each
other (the shipped model's 1,000-residue predictions hold ~100 atom clashes per atom). The
all-atom minimiser cannot untangle that in a sensible number of steps: every atom overlaps many
others, the neighbour lists are at their caps, and full-strength repulsion drives the energy up
by orders of magnitude before it comes down. A CA model with a handful of terms can, because it
has one bead per residue and no side chains in the way:

* virtual bonds: consecutive CA atoms of linked residues at ``ca_bond`` (3.80 A, trans peptide);
* virtual angles: CA(i)..CA(i+2) no closer than ``ca_i2_min`` (5.0 A; real chains: 5.2-7.3 A);
* excluded volume: any other two CA atoms no closer than ``ca_min`` (5.5 A: more than the
  closest non-adjacent CA pairs of crystal structures, ~4.2 A across beta strands, so that the
  side chains get room; the all-atom rounds settle the packing). Measured on the shipped
  model's predictions of 100, 200 and 400 residues (all-atom steps and clashes left after the
  refinement): 4.0 A 795 / 1,461 / 1,700 steps and 0 / 7 / 299 clashes; 5.0 A 877 / 1,160 /
  1,850 and 0 / 1 / 8; 5.5 A 749 / 1,150 / 1,200 and 0 / 0 / 0;
* restraints to the prediction, ``0.5 * restraint * w_i * |x_i - x0_i|^2`` with ``w_i``
  the refinement's per-residue weight ((pLDDT/100)^2), weak enough that the trace moves only as
  far as the constraints above need.

Every term is a square in A^2 (weights ``bond`` for the virtual bonds, ``clash`` for both
lower bounds, ``restraint``), flat-bottomed for the bounds. The energy
is dense over residue pairs ([L, L], ``O(L^2)`` memory: 4 MB of distances for 1,024 residues)
and minimised with L-BFGS in one jitted loop. The refinement (``refine.refine``) runs it on
collapsed starts and then moves every atom of a residue with its CA, so the all-atom rounds start
from a trace that is open and continuous (the residues keep their internal geometry and
orientation; the peptide bonds are mended by the all-atom minimiser).
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from foldlite.cache import persistent_jit
from foldlite.physics.minimize import strongly_typed, zoom_lbfgs


@dataclasses.dataclass(frozen=True)
class CoarseConfig:
    """Settings of the CA-level pre-relaxation (see the module docstring). Distances in A."""

    ca_bond: float = 3.80
    ca_i2_min: float = 5.0
    ca_min: float = 5.5
    bond: float = 10.0
    clash: float = 10.0
    restraint: float = 0.1
    max_steps: int = 500
    grad_tol: float = 0.01   # gradient RMS per coordinate (energy units / A)
    max_length: int = 4096   # longer chains skip the stage (dense [L, L] energy)


class CoarseResult(NamedTuple):
    ca: np.ndarray          # [L,3] relaxed CA positions
    steps: int
    ca_rmsd: float          # CA RMSD moved (A)
    violations_before: int  # CA pairs violating the bounds by more than 0.5 A
    violations_after: int


def _bucket(n: int) -> int:
    """Padded length: a power of two, at least 64 (few compiled programs)."""
    return max(64, 1 << max(0, math.ceil(math.log2(max(n, 1)))))


def _tables(n: int, linked: np.ndarray, pad: int, config: CoarseConfig
            ) -> tuple[np.ndarray, np.ndarray]:
    """Bond mask [P] (i, i+1 linked) and pair lower bounds [P,P] in A (0 = no bound), host side:
    ``ca_min`` for every pair of real residues except the bonded ones and ``ca_i2_min`` for
    i, i+2 when both links exist."""
    bonded = np.zeros(pad, np.float32)
    bonded[: n - 1] = linked[: n - 1]
    lower = np.zeros((pad, pad), np.float32)
    lower[:n, :n] = config.ca_min
    idx = np.arange(n)
    lower[idx, idx] = 0.0
    i1 = idx[:-1][bonded[: n - 1] > 0]
    lower[i1, i1 + 1] = lower[i1 + 1, i1] = 0.0      # the virtual bond term holds these
    two = idx[:-2][(bonded[: n - 2] > 0) & (bonded[1 : n - 1] > 0)]
    lower[two, two + 2] = lower[two + 2, two] = config.ca_i2_min
    return bonded, lower


@persistent_jit(static_argnames=("max_steps",))
def _relax(x0, mask, bonded, lower, weight, params, *, max_steps: int):
    """L-BFGS on the CA energy. x0 [P,3], mask [P], bonded [P], lower [P,P] (bounds in A),
    weight [P], params [5] (ca_bond, bond, clash, restraint, grad_tol: values, so changing
    them does not recompile). Returns (x [P,3], steps, grad RMS)."""
    ca_bond, k_bond, k_clash, k_rest, tol = (params[i] for i in range(5))
    m = mask.astype(jnp.float32)
    n_real = jnp.maximum(jnp.sum(m) * 3.0, 1.0)

    def energy(x):
        d_bond = jnp.sqrt(jnp.sum((x[1:] - x[:-1]) ** 2, axis=-1) + 1e-8)
        e_bond = k_bond * jnp.sum(bonded[:-1] * (d_bond - ca_bond) ** 2)
        diff = x[:, None, :] - x[None, :, :]
        d = jnp.sqrt(jnp.sum(diff * diff, axis=-1) + 1e-8)
        e_clash = 0.5 * k_clash * jnp.sum(jax.nn.relu(lower - d) ** 2)
        e_rest = 0.5 * k_rest * jnp.sum(weight * m * jnp.sum((x - x0) ** 2, axis=-1))
        return e_bond + e_clash + e_rest

    opt = zoom_lbfgs()
    value_and_grad = optax.value_and_grad_from_state(energy)

    def cond(c):
        _, _, k, g_rms = c
        return (k < max_steps) & (g_rms > tol)

    def body(c):
        x, st, k, _ = c
        v, g = value_and_grad(x, state=st)
        g = jnp.where(jnp.isfinite(g), g, 0.0) * m[:, None]
        upd, st = opt.update(g, st, x, value=v, grad=g, value_fn=energy)
        x = x + upd * m[:, None]
        return x, st, k + 1, jnp.sqrt(jnp.sum(g * g) / n_real)

    st0 = strongly_typed(opt.init(x0))
    x, _, k, g_rms = jax.lax.while_loop(cond, body, (x0, st0, jnp.int32(0), jnp.float32(jnp.inf)))
    return x, k, g_rms


def _violations(ca: np.ndarray, bonded: np.ndarray, lower: np.ndarray, ca_bond: float) -> int:
    """CA pairs off their bounds by more than 0.5 A (host side)."""
    n = len(ca)
    d = np.linalg.norm(ca[:, None] - ca[None], axis=-1)
    short = np.triu((lower[:n, :n] - d) > 0.5, 1).sum()
    dn = np.linalg.norm(ca[1:] - ca[:-1], axis=-1)
    stretched = ((np.abs(dn - ca_bond) > 0.5) & (bonded[: n - 1] > 0)).sum()
    return int(short + stretched)


def relax_ca(ca: np.ndarray, linked: np.ndarray, weight: np.ndarray | None = None,
             config: CoarseConfig = CoarseConfig()) -> CoarseResult:
    """Relax a CA trace (see the module docstring).

    Args:
      ca: [L,3] CA positions (A).
      linked: [L-1] bool: residues i and i+1 are joined by a peptide bond (False across chain
        breaks and between chains).
      weight: [L] restraint weight per residue (e.g. (pLDDT/100)^2); default 1.
      config: ``CoarseConfig``.

    Returns:
      ``CoarseResult`` (positions, steps, CA RMSD moved, CA violations before and after).
    """
    ca = np.asarray(ca, np.float32)
    n = len(ca)
    if n < 2:
        return CoarseResult(ca.copy(), 0, 0.0, 0, 0)
    linked = np.asarray(linked, bool).reshape(-1)
    if linked.shape != (n - 1,):
        raise ValueError(f"linked has {linked.size} entries for {n} residues (need {n - 1})")
    w = np.ones(n, np.float32) if weight is None else np.asarray(weight, np.float32)
    pad = _bucket(n)
    bonded, lower = _tables(n, linked, pad, config)
    before = _violations(ca, bonded, lower, config.ca_bond)
    x0 = np.zeros((pad, 3), np.float32)  # padding beads: no bounds, no weight, masked
    x0[:n] = ca
    mask = np.zeros(pad, np.float32)
    mask[:n] = 1.0
    wp = np.zeros(pad, np.float32)
    wp[:n] = w
    params = np.array([config.ca_bond, config.bond, config.clash, config.restraint,
                       config.grad_tol], np.float32)
    x, steps, _ = _relax(jnp.asarray(x0), jnp.asarray(mask), jnp.asarray(bonded),
                         jnp.asarray(lower), jnp.asarray(wp), jnp.asarray(params),
                         max_steps=int(config.max_steps))
    out = np.asarray(x)[:n]
    rmsd = float(np.sqrt(np.mean(np.sum((out - ca) ** 2, axis=-1))))
    return CoarseResult(out, int(steps), rmsd, before,
                        _violations(out, bonded, lower, config.ca_bond))
