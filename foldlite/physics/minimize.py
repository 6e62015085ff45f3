"""The minimiser: optax (L-BFGS or Adam) in one jitted ``lax.while_loop`` with a stopping rule.

``minimize`` runs on flat heavy-atom positions (``mode="cartesian"``) or on the chi angles of
rebuilt side chains (``mode="chi"``, atoms placed with ideal geometry by
``foldlite.geometry.torsions.frames_and_torsions_to_atom14`` on the fixed backbone frames).
Each iteration:

1. rebuilds the neighbour list when an atom has moved more than half the skin since the last
   build (``neighbors.needs_rebuild``), inside the loop (``lax.cond``);
2. evaluates the energy and its gradient (padding atoms get zero gradient);
3. takes an optimiser step;
4. stops when the gradient RMS (per coordinate) falls below ``grad_tol``, or the energy changed by
   less than ``energy_tol`` (relative) for ``patience`` steps in a row, or after ``max_steps``, or
   when the neighbour list overflowed (the caller grows its capacities and continues).

The shape of the compiled program comes from the hashable ``MinSettings`` (a static jit
argument) less its step cap, tolerances, learning rate, repulsion scale and overflow tolerance,
which are passed as values; arrays are
padded to bucketed sizes by the topology, so similar proteins share one compiled program. The
loop state (parameters, optimiser state, neighbour list) goes in and out of the compiled loop,
so a trajectory is recorded by running it in chunks with no extra compile.
"""

from __future__ import annotations

import dataclasses
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from foldlite.cache import persistent_jit
from foldlite.geometry import torsions as tors
from foldlite.physics import energy as E
from foldlite.physics.neighbors import (NeighborList, build_neighbor_list, grow_capacities,
                                       list_sizes, needs_rebuild)


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
    candidates_per_atom: int = 64     # candidate pairs examined per (padded) atom
    mode: str = "cartesian"           # "cartesian" | "chi"
    tolerate_overflow: bool = False   # go on with truncated pair lists (traced: no recompile)
    trajectory_every: int = 0         # 0 = no trajectory; else keep positions every N steps
    repulsion_scale: float = 1.0      # multiplies the repulsion term (traced: no recompile)

    @property
    def capacities(self) -> dict:
        """The neighbour-list capacities (``neighbors.CAPACITY_LADDER`` keys)."""
        return {"pairs_per_atom": self.pairs_per_atom,
                "candidates_per_atom": self.candidates_per_atom}

    @property
    def cutoff(self) -> float:
        """Neighbour-list cutoff: the longest interaction plus the skin."""
        reach = 2 * 1.8  # largest van der Waals contact (S-S)
        if self.weights.attraction:
            reach += self.weights.attraction_width
        if self.weights.hbond:
            reach = max(reach, 2.9 + 4 * 0.3)
        return float(reach + self.skin)


class ChiSystem(NamedTuple):
    """Data for chi-space minimisation (``mode="chi"``).

    base: [A,3] flat positions of every atom (those not rebuilt stay there);
    frames: Rigid [L] backbone frames; backbone_torsions: [L,3,2] (sin, cos) of omega, phi, psi
    (psi places O); aatype: [L]; flat_index: [L,14] flat index of each rebuilt atom14 atom,
    A (= out of range, dropped) elsewhere.
    """

    base: jax.Array
    frames: object
    backbone_torsions: jax.Array
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
    frames: np.ndarray | None  # [F,A,3] positions every ``trajectory_every`` steps, or None
    n_frames: jax.Array      # [] int
    stopped: bool = False    # ended early because ``should_stop`` said so
    builds: int = 0          # neighbour-list builds


def chi_positions(chis: jax.Array, system: ChiSystem) -> jax.Array:
    """Flat positions [A,3] with side chains built at ``chis`` [L,4] with ideal geometry
    (``torsions.frames_and_torsions_to_atom14`` on the fixed backbone frames)."""
    torsions = jnp.concatenate([system.backbone_torsions, tors.angles_to_sin_cos(chis)], axis=-2)
    x14, _, _ = tors.frames_and_torsions_to_atom14(system.frames, torsions, system.aatype)
    flat = system.flat_index.reshape(-1)
    return system.base.at[flat].set(x14.reshape(-1, 3), mode="drop")


def _positions(params, system, mode: str):
    if mode == "chi":
        return chi_positions(params, system)
    return params


def zoom_lbfgs(memory_size: int = 10) -> optax.GradientTransformationExtraArgs:
    """optax L-BFGS with a zoom line search (strong Wolfe, at most 15 steps, first guess a
    unit step): the minimiser's default, also used by ``coarse.relax_ca``."""
    return optax.lbfgs(
        memory_size=memory_size,
        linesearch=optax.scale_by_zoom_linesearch(max_linesearch_steps=15,
                                                  initial_guess_strategy="one"))


def strongly_typed(tree):
    """``tree`` with every leaf strongly typed (optax initialises some scalars weakly typed), so
    that a loop state comes out of a compiled loop with the types it went in with."""
    return jax.tree_util.tree_map(lambda v: jnp.asarray(v, dtype=jnp.asarray(v).dtype), tree)


def _make_optimizer(s: MinSettings, limits: "_Limits"):
    if s.optimizer == "adam":
        def sched(count):  # exponential decay to 5% over the step cap (traced: no recompiles)
            frac = count / jnp.maximum(limits.schedule_steps, 1).astype(jnp.float32)
            return limits.learning_rate * 0.05 ** jnp.minimum(frac, 1.0)
        return optax.adam(sched)
    if s.optimizer == "lbfgs":
        return zoom_lbfgs(s.lbfgs_memory)
    if s.optimizer == "lbfgs_bt":
        return optax.lbfgs(
            memory_size=s.lbfgs_memory,
            linesearch=optax.scale_by_backtracking_linesearch(max_backtracking_steps=15,
                                                              store_grad=True))
    raise ValueError(f"unknown optimizer {s.optimizer!r}")


class _Limits(NamedTuple):
    """The settings passed as traced values (changing them does not recompile)."""

    max_steps: jax.Array       # steps of this call
    schedule_steps: jax.Array  # length of the Adam learning-rate decay
    grad_tol: jax.Array
    energy_tol: jax.Array
    patience: jax.Array
    learning_rate: jax.Array
    repulsion_scale: jax.Array
    tolerate_overflow: jax.Array


class LoopState(NamedTuple):
    """What the minimisation loop carries (so a run can continue where a call stopped)."""

    params: jax.Array
    opt_state: object
    nl: NeighborList
    energy: jax.Array
    grad_rms: jax.Array
    calm: jax.Array
    overflow: jax.Array
    builds: jax.Array  # neighbour-list builds so far


def _static(settings: MinSettings) -> MinSettings:
    """The part of the settings that shapes the compiled program."""
    return dataclasses.replace(settings, max_steps=0, grad_tol=0.0, energy_tol=0.0, patience=0,
                               learning_rate=0.0, trajectory_every=0, repulsion_scale=1.0,
                               tolerate_overflow=False)


def _limits(settings: MinSettings, max_steps: int) -> _Limits:
    return _Limits(jnp.int32(max_steps), jnp.int32(settings.max_steps),
                   jnp.float32(settings.grad_tol), jnp.float32(settings.energy_tol),
                   jnp.int32(settings.patience), jnp.float32(settings.learning_rate),
                   jnp.float32(settings.repulsion_scale), jnp.bool_(settings.tolerate_overflow))


@partial(jax.jit, static_argnames=("s",))
def _init_state(params0, topo, system, limits: _Limits, s: MinSettings) -> LoopState:
    x0 = _positions(params0, system, s.mode)
    # An empty list whose reference is far away: the first step builds the real one (a single
    # build site in the compiled loop keeps compile time down).
    a = x0.shape[0]
    p = s.pairs_per_atom * a
    nl0 = NeighborList(pairs=jnp.full((p, 2), a, jnp.int32), special=jnp.zeros((p,), bool),
                       count=jnp.zeros((), jnp.int32), reference=jnp.full_like(x0, 1e6),
                       overflow=jnp.zeros((), bool))
    opt = _make_optimizer(s, limits)
    state = LoopState(params0, opt.init(params0), nl0, jnp.float32(jnp.inf),
                      jnp.float32(jnp.inf), jnp.int32(0), jnp.zeros((), bool), jnp.int32(0))
    # Strong types throughout (optax initialises some scalars weakly typed), so that the state
    # coming out of ``_minimize`` has the same types as the one going in: no recompiles when a
    # run continues in chunks.
    return strongly_typed(state)


@jax.jit
def _positions_chi(params, system):
    return chi_positions(params, system)


def _loop_out_tree(state, topo, system, limits):
    """Treedef of ``_minimize``'s output: (the state it was given, steps)."""
    return jax.tree_util.tree_structure((state, jnp.int32(0)))


@persistent_jit(static_argnames=("s",), out_tree=_loop_out_tree)
def _minimize(state: LoopState, topo, system, limits: _Limits, s: MinSettings
              ) -> tuple[LoopState, jax.Array]:
    """Up to ``limits.max_steps`` optimiser steps from ``state``: (new state, steps taken)."""
    mode = s.mode
    mask = topo.atom_mask
    opt = _make_optimizer(s, limits)
    params0 = state.params
    if mode == "cartesian":
        pmask = mask[:, None]
    else:
        pmask = jnp.ones_like(params0)
    n_real = jnp.maximum(jnp.sum(jnp.broadcast_to(pmask, params0.shape)), 1.0)

    def build(x):
        return build_neighbor_list(x, mask, topo.exclusions, topo.one_five, cutoff=s.cutoff,
                                   **list_sizes(s.capacities, x.shape[0]))

    def energy_fn(params, nl: NeighborList):
        x = _positions(params, system, mode)
        terms = E.energy_terms(x, topo, nl, s.weights)
        return sum(terms.values()) + (limits.repulsion_scale - 1.0) * terms["repulsion"]

    def cond(c):
        st, step = c
        go = (step < limits.max_steps) & (st.grad_rms > limits.grad_tol) & (
            st.calm < limits.patience)
        return go & (limits.tolerate_overflow | ~st.overflow)

    def body(c):
        st, step = c
        x = _positions(st.params, system, mode)
        rebuild = needs_rebuild(st.nl, x, mask, s.skin)
        nl = jax.lax.cond(rebuild, build, lambda _: st.nl, x)
        f = partial(energy_fn, nl=nl)
        if s.optimizer.startswith("lbfgs"):
            e, g = optax.value_and_grad_from_state(f)(st.params, state=st.opt_state)
            g = jnp.where(jnp.isfinite(g), g, 0.0) * pmask
            updates, opt_state = opt.update(g, st.opt_state, st.params, value=e, grad=g,
                                            value_fn=f)
        else:
            e, g = jax.value_and_grad(f)(st.params)
            g = jnp.where(jnp.isfinite(g), g, 0.0) * pmask
            updates, opt_state = opt.update(g, st.opt_state, st.params)
        params = st.params + updates * pmask
        grad_rms = jnp.sqrt(jnp.sum(g * g) / n_real)
        rel = jnp.abs(e - st.energy) / jnp.maximum(jnp.abs(e), 1.0)
        calm = jnp.where(rel < limits.energy_tol, st.calm + 1, 0)
        bad = ~jnp.isfinite(e)
        # A step computed with an incomplete pair list is not taken: the loop stops and the
        # caller rebuilds with larger capacities (``run_minimizer``), unless overflow is
        # tolerated (capacities at their caps).
        keep = bad | (nl.overflow & ~limits.tolerate_overflow)
        new = LoopState(jnp.where(keep, st.params, params),
                        jax.tree_util.tree_map(lambda a, b: jnp.where(keep, a, b),
                                               st.opt_state, opt_state),
                        nl, e, grad_rms, jnp.where(bad, limits.patience, calm),
                        st.overflow | nl.overflow, st.builds + rebuild.astype(jnp.int32))
        return new, step + 1

    return jax.lax.while_loop(cond, body, (state, jnp.int32(0)))


def minimize(params0: jax.Array, topo, system: ChiSystem | None, settings: MinSettings, *,
             check_every: int = 0, should_stop=None) -> MinResult:
    """Minimise the energy of ``topo`` over ``params0`` (positions [A,3] or chis [L,4]).

    Args:
      params0: starting parameters.
      topo: ``foldlite.physics.topology.Topology`` (jnp arrays).
      system: ``ChiSystem`` for ``mode="chi"``, else None.
      settings: ``MinSettings``. Step cap, tolerances, patience and learning rate are passed
        to the compiled loop as values; the rest shapes the program (a new compile per value).
        With ``trajectory_every`` the loop runs in chunks of that many steps, carrying its
        state, and the positions after each chunk are kept (the same compiled program).
      check_every, should_stop: every ``check_every`` steps (the loop carries its state across,
        as for a trajectory: no restart of the optimiser, no compile) call
        ``should_stop(positions [A,3], steps so far, energy) -> bool`` (energy: the minimised
        energy, repulsion scale included, at the start of the last step); True ends the
        minimisation there (``MinResult.stopped``). 0 / None: no checks.
    """
    s = _static(settings)
    state = _init_state(params0, topo, system, _limits(settings, settings.max_steps), s)
    frames = []
    every = settings.trajectory_every
    check = check_every if (should_stop is not None and check_every > 0) else 0
    pos = (lambda p: _positions_chi(p, system)) if settings.mode == "chi" else (lambda p: p)
    if every:
        frames.append(np.asarray(pos(state.params)))
    steps = 0
    stopped = False
    while steps < settings.max_steps:
        chunk = settings.max_steps - steps
        if every:
            chunk = min(chunk, every - steps % every)
        if check:
            chunk = min(chunk, check - steps % check)
        state, n = _minimize(state, topo, system, _limits(settings, chunk), s)
        n = int(n)
        steps += n
        if every and n and (steps % every == 0 or n < chunk or steps == settings.max_steps):
            frames.append(np.asarray(pos(state.params)))
        if n < chunk:
            break
        if check and steps % check == 0 and steps < settings.max_steps and \
                should_stop(pos(state.params), steps, float(state.energy)):
            stopped = True
            if every and steps % every:
                frames.append(np.asarray(pos(state.params)))
            break
    converged = (float(state.grad_rms) <= settings.grad_tol) or (
        int(state.calm) >= settings.patience)
    return MinResult(params=state.params, positions=pos(state.params), energy=state.energy,
                     grad_rms=state.grad_rms, steps=np.int32(steps), overflow=state.overflow,
                     converged=np.bool_(converged),
                     frames=np.stack(frames) if frames else None,
                     n_frames=np.int32(len(frames)), stopped=stopped,
                     builds=int(state.builds))


def _offset_steps(should_stop, done: int, x, steps: int, energy: float) -> bool:
    """``should_stop`` with the steps counted from ``done`` steps earlier."""
    return should_stop(x, done + steps, energy)


def run_minimizer(params0, topo, system, settings: MinSettings, *, check_every: int = 0,
                  should_stop=None) -> tuple[MinResult, MinSettings]:
    """``minimize`` with neighbour-list overflow handling: on overflow (the step that saw it is
    not taken), grow the capacities to the next set of ``neighbors.CAPACITY_LADDER`` (up to
    ``neighbors.MAX_CAPACITIES``; a new compile, rare) and continue from where it stopped;
    at the caps, go on with truncated lists (``tolerate_overflow``). ``check_every`` and
    ``should_stop`` as for ``minimize`` (steps counted from this call's start). Returns
    (result, settings used)."""
    params = params0
    steps_done = 0
    builds = 0
    frames = []
    while True:
        stop = None if should_stop is None else partial(_offset_steps, should_stop, steps_done)
        res = minimize(params, topo, system, settings, check_every=check_every, should_stop=stop)
        steps_done += int(res.steps)
        builds += res.builds
        if res.frames is not None:
            frames.append(res.frames if not frames else res.frames[1:])
        if not bool(res.overflow) or settings.tolerate_overflow or res.stopped:
            break
        grown = grow_capacities(settings.capacities)
        params = res.params
        remaining = settings.max_steps - int(res.steps)
        if remaining <= 0:
            break
        if grown is None:
            settings = dataclasses.replace(settings, tolerate_overflow=True, max_steps=remaining)
        else:
            settings = dataclasses.replace(settings, max_steps=remaining, **grown)
    if frames:
        res = res._replace(frames=np.concatenate(frames, axis=0),
                           n_frames=np.int32(sum(len(f) for f in frames)))
    return res._replace(steps=np.int32(steps_done), builds=builds), settings
