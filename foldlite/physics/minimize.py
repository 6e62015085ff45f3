"""The minimiser: optax (L-BFGS or Adam) in one jitted ``lax.while_loop`` with a stopping rule.

``minimize`` runs on flat heavy-atom positions (``mode="cartesian"``) or on the chi angles of
rebuilt side chains (``mode="chi"``, atoms placed with ideal geometry by
``foldlite.geometry.torsions.place_sidechains``). Each iteration:

1. rebuilds the neighbour list when an atom has moved more than half the skin since the last
   build (``neighbors.needs_rebuild``), inside the loop (``lax.cond``);
2. evaluates the energy and its gradient (padding atoms get zero gradient);
3. takes an optimiser step;
4. stops when the gradient RMS (per coordinate) falls below ``grad_tol``, or the energy changed by
   less than ``energy_tol`` (relative) for ``patience`` steps in a row, or after ``max_steps``, or
   when the neighbour list overflowed (the caller grows its capacities and continues).

Everything that shapes the compiled program is in the hashable ``MinSettings`` (a static jit
argument); arrays are padded to bucketed sizes by the topology, so similar proteins share one
compiled program.
"""

from __future__ import annotations

import dataclasses
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from foldlite.geometry import torsions as tors
from foldlite.physics import energy as E
from foldlite.physics.neighbors import NeighborList, build_neighbor_list, needs_rebuild


@dataclasses.dataclass(frozen=True)
class MinSettings:
    """Static settings of one minimisation (hashable)."""

    weights: E.EnergyWeights = E.EnergyWeights()
    optimizer: str = "lbfgs"          # "lbfgs" | "adam"
    learning_rate: float = 0.02       # Adam (A or rad per step), decays x0.05 over max_steps
    lbfgs_memory: int = 10
    max_steps: int = 1000
    grad_tol: float = 0.05            # gradient RMS per coordinate (energy units / A)
    energy_tol: float = 1e-6          # relative energy change
    patience: int = 10
    skin: float = 1.0                 # Verlet skin (A)
    pairs_per_atom: int = 8           # pair-list capacity per (padded) atom
    row_capacity: int = 32            # pairs per atom before exclusions are removed
    cell_capacity: int = 24           # atoms per grid cell
    mode: str = "cartesian"           # "cartesian" | "chi"
    trajectory_every: int = 0         # 0 = no trajectory

    @property
    def cutoff(self) -> float:
        """Neighbour-list cutoff: the longest interaction plus the skin."""
        reach = 2 * 1.8  # largest van der Waals contact (S-S)
        if self.weights.attraction:
            reach += self.weights.attraction_width
        if self.weights.hbond:
            reach = max(reach, 2.9 + 4 * 0.3)
        return float(reach + self.skin)

    @property
    def n_frames(self) -> int:
        return self.max_steps // self.trajectory_every + 1 if self.trajectory_every else 0


class ChiSystem(NamedTuple):
    """Data for chi-space minimisation (``mode="chi"``).

    base: [A,3] flat positions of every atom (those not rebuilt stay there);
    atom37: [L,37,3] backbone positions (N, CA, C, O used) ; mask37 [L,37]; aatype [L];
    flat_index: [L,37] flat index of each rebuilt atom, A (= out of range) elsewhere.
    """

    base: jax.Array
    atom37: jax.Array
    mask37: jax.Array
    aatype: jax.Array
    flat_index: jax.Array


class MinResult(NamedTuple):
    params: jax.Array        # final parameters (positions [A,3] or chis [L,4])
    positions: jax.Array     # final positions [A,3]
    energy: jax.Array        # [] at the start of the last step
    grad_rms: jax.Array      # []
    steps: jax.Array         # [] int
    overflow: jax.Array      # [] bool
    converged: jax.Array     # [] bool
    frames: jax.Array        # [F,A,3] trajectory (F = 0 when not recorded)
    n_frames: jax.Array      # [] int frames written


def chi_positions(chis: jax.Array, system: ChiSystem) -> jax.Array:
    """Flat positions [A,3] with side chains built at ``chis`` [L,4] (ideal geometry)."""
    x37, _ = tors.place_sidechains(system.atom37, system.mask37, system.aatype, chis)
    flat = system.flat_index.reshape(-1)
    return system.base.at[flat].set(x37.reshape(-1, 3), mode="drop")


def _positions(params, system, mode: str):
    if mode == "chi":
        return chi_positions(params, system)
    return params


def _make_optimizer(s: MinSettings, limits: "_Limits"):
    if s.optimizer == "adam":
        def sched(count):  # exponential decay to 5% over max_steps (traced, no recompiles)
            frac = count / jnp.maximum(limits.max_steps, 1).astype(jnp.float32)
            return limits.learning_rate * 0.05 ** frac
        return optax.adam(sched)
    if s.optimizer == "lbfgs":
        return optax.lbfgs(
            memory_size=s.lbfgs_memory,
            linesearch=optax.scale_by_zoom_linesearch(max_linesearch_steps=15,
                                                      initial_guess_strategy="one"))
    if s.optimizer == "lbfgs_bt":
        return optax.lbfgs(
            memory_size=s.lbfgs_memory,
            linesearch=optax.scale_by_backtracking_linesearch(max_backtracking_steps=15,
                                                              store_grad=True))
    raise ValueError(f"unknown optimizer {s.optimizer!r}")


class _Limits(NamedTuple):
    """The settings passed as traced values (changing them does not recompile)."""

    max_steps: jax.Array
    grad_tol: jax.Array
    energy_tol: jax.Array
    patience: jax.Array
    learning_rate: jax.Array


def minimize(params0: jax.Array, topo, system: ChiSystem | None, settings: MinSettings
             ) -> MinResult:
    """Minimise the energy of ``topo`` over ``params0`` (positions [A,3] or chis [L,4]).

    Args:
      params0: starting parameters.
      topo: ``foldlite.physics.topology.Topology`` (jnp arrays).
      system: ``ChiSystem`` for ``mode="chi"``, else None.
      settings: ``MinSettings``. Step cap, tolerances, patience and learning rate are passed
        to the compiled loop as values; the rest shapes the program (a new compile per value).
    """
    limits = _Limits(jnp.int32(settings.max_steps), jnp.float32(settings.grad_tol),
                     jnp.float32(settings.energy_tol), jnp.int32(settings.patience),
                     jnp.float32(settings.learning_rate))
    static = dataclasses.replace(
        settings, max_steps=settings.max_steps if settings.trajectory_every else 0,
        grad_tol=0.0, energy_tol=0.0, patience=0, learning_rate=0.0)
    return _minimize(params0, topo, system, limits, static)


@partial(jax.jit, static_argnames=("s",))
def _minimize(params0, topo, system, limits: _Limits, s: MinSettings) -> MinResult:
    mode = s.mode
    mask = topo.atom_mask
    opt = _make_optimizer(s, limits)
    if mode == "cartesian":
        pmask = mask[:, None]
    else:
        pmask = jnp.ones_like(params0)
    n_real = jnp.maximum(jnp.sum(jnp.broadcast_to(pmask, params0.shape)), 1.0)

    def build(x):
        return build_neighbor_list(x, mask, topo.exclusions, topo.one_five, cutoff=s.cutoff,
                                   capacity=s.pairs_per_atom * x.shape[0],
                                   row_capacity=s.row_capacity, cell_capacity=s.cell_capacity)

    def energy_fn(params, nl: NeighborList):
        x = _positions(params, system, mode)
        return E.total_energy(x, topo, nl, s.weights)

    x0 = _positions(params0, system, mode)
    # An empty list whose reference is far away: the first iteration builds the real one (a
    # single build site in the compiled loop keeps compile time down).
    a = x0.shape[0]
    p = s.pairs_per_atom * a
    nl0 = NeighborList(pairs=jnp.full((p, 2), a, jnp.int32), special=jnp.zeros((p,), bool),
                       count=jnp.zeros((), jnp.int32), reference=jnp.full_like(x0, 1e6),
                       overflow=jnp.zeros((), bool))
    frames0 = jnp.zeros((s.n_frames,) + x0.shape, x0.dtype)
    if s.n_frames:
        frames0 = frames0.at[0].set(x0)

    class Carry(NamedTuple):
        params: jax.Array
        opt_state: object
        nl: NeighborList
        step: jax.Array
        energy: jax.Array
        grad_rms: jax.Array
        calm: jax.Array
        overflow: jax.Array
        frames: jax.Array
        n_frames: jax.Array

    def cond(c: Carry):
        return ((c.step < limits.max_steps) & (c.grad_rms > limits.grad_tol)
                & (c.calm < limits.patience) & ~c.overflow)

    def body(c: Carry) -> Carry:
        x = _positions(c.params, system, mode)
        nl = jax.lax.cond(needs_rebuild(c.nl, x, mask, s.skin), build, lambda _: c.nl, x)
        f = partial(energy_fn, nl=nl)
        if s.optimizer.startswith("lbfgs"):
            e, g = optax.value_and_grad_from_state(f)(c.params, state=c.opt_state)
            g = jnp.where(jnp.isfinite(g), g, 0.0) * pmask
            updates, opt_state = opt.update(g, c.opt_state, c.params, value=e, grad=g,
                                            value_fn=f)
        else:
            e, g = jax.value_and_grad(f)(c.params)
            g = jnp.where(jnp.isfinite(g), g, 0.0) * pmask
            updates, opt_state = opt.update(g, c.opt_state, c.params)
        params = c.params + updates * pmask
        grad_rms = jnp.sqrt(jnp.sum(g * g) / n_real)
        rel = jnp.abs(e - c.energy) / jnp.maximum(jnp.abs(e), 1.0)
        calm = jnp.where(rel < limits.energy_tol, c.calm + 1, 0)
        step = c.step + 1
        frames, n_frames = c.frames, c.n_frames
        if s.n_frames:
            take = (step % s.trajectory_every) == 0
            xn = _positions(params, system, mode)
            frames = jax.lax.cond(take, lambda fr: fr.at[step // s.trajectory_every].set(xn),
                                  lambda fr: fr, frames)
            n_frames = jnp.where(take, step // s.trajectory_every + 1, n_frames)
        bad = ~jnp.isfinite(e)
        return Carry(jnp.where(bad, c.params, params), opt_state, nl, step, e, grad_rms,
                     jnp.where(bad, limits.patience, calm), c.overflow | nl.overflow, frames,
                     n_frames)

    init = Carry(params0, opt.init(params0), nl0, jnp.int32(0), jnp.float32(jnp.inf),
                 jnp.float32(jnp.inf), jnp.int32(0), nl0.overflow, frames0,
                 jnp.int32(1 if s.n_frames else 0))
    c = jax.lax.while_loop(cond, body, init)
    x = _positions(c.params, system, mode)
    return MinResult(params=c.params, positions=x, energy=c.energy, grad_rms=c.grad_rms,
                     steps=c.step, overflow=c.overflow,
                     converged=(c.grad_rms <= limits.grad_tol) | (c.calm >= limits.patience),
                     frames=c.frames, n_frames=c.n_frames)


def run_minimizer(params0, topo, system, settings: MinSettings) -> tuple[MinResult, MinSettings]:
    """``minimize`` with neighbour-list overflow handling: on overflow, double the capacities and
    continue from where it stopped (a new compile; rare). Returns (result, settings used)."""
    params = params0
    steps_done = 0
    frames = []
    while True:
        res = minimize(params, topo, system, settings)
        steps_done += int(res.steps)
        if settings.n_frames:
            frames.append(np.asarray(res.frames[: int(res.n_frames)]))
        if not bool(res.overflow):
            break
        if settings.row_capacity >= 1024:
            raise RuntimeError("neighbour list overflow: atoms far too dense (overlapping)")
        params = res.params
        settings = dataclasses.replace(
            settings, pairs_per_atom=settings.pairs_per_atom * 2,
            row_capacity=settings.row_capacity * 2, cell_capacity=settings.cell_capacity * 2,
            max_steps=max(settings.max_steps - int(res.steps), 1))
    if frames:
        res = res._replace(frames=np.concatenate(frames, axis=0),
                           n_frames=np.int32(sum(len(f) for f in frames)))
    return res._replace(steps=np.int32(steps_done)), settings
