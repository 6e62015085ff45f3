"""Refinement: gradient descent on foldlite's energy makes a structure physically sound.

``refine(protein, plddt=None, *, config=RefineConfig(), record_trajectory=False)`` returns the
refined ``Protein`` and a ``RefineReport``. The steps:

1. **Check the input** (``sidechains.check_backbone``): every residue needs N, CA and C, and the
   coordinates must be finite, else ``InputError`` naming the residues. Non-standard residues
   (UNK: modified amino acids the reader could not map) are refined as backbone only (N, CA,
   C, O) and listed in the report.
2. **Side chains**: incomplete side chains (and all of them unless ``keep_sidechains``) are
   built from rotamers and their chis optimised (``sidechains.pack_sidechains``).
3. **Topology** (``topology.build_topology``): bonds, angles, peptide planarity, chirality,
   exclusions; harmonic restraints to the starting heavy atoms of ``restraint_weight``
   kcal/mol/A^2 (AlphaFold2's relax uses 10; converted to the energy's kT units at 298 K),
   scaled per residue by ``(pLDDT / 100)^2`` when a pLDDT is given (confident regions barely
   move); side-chain atoms built in step 2 are not restrained. Every array is padded to a size
   fixed by the atom-count bucket (``topology.bucket_size``), and the neighbour-list capacities
   are fixed per bucket (larger only for overcrowded input), so a second protein in the same
   bucket reuses the compiled programs; ``refine`` also turns on JAX's persistent compilation
   cache, so a second process does not compile either.
4. **Minimise** (``minimize.run_minimizer``): L-BFGS (or Adam) in one jitted loop, in rounds.
   A round ends when the optimiser converges (gradient RMS below ``grad_tol`` or energy change
   below ``energy_tol`` per step), or, checked every ``check_every`` steps, when no violations
   are left and the energy fell by less than ``settle_tol`` since the previous check (a
   convergence tolerance: perturbed crystal structures converge by ``grad_tol`` first;
   predictions that clash relax slowly for hundreds of steps more with little left to gain;
   a round after a release ends as soon as it is clean), or after ``max_steps``. As in
   AlphaFold2's relax, when violations (and, with ``release_clashes``, clashes) remain, the
   restraints of those residues are released and the minimisation is repeated (at most
   ``max_rounds`` rounds). A collapsed start (AlphaFold2 clash violations on more than 10% of
   the atoms, as in the output of a weakly trained network) is first opened at the level of
   its CA trace (``coarse.relax_ca``: virtual bonds, excluded volume; every atom moves with
   its residue's CA, and the restraints then hold the opened start), its restraints are
   weakened to ``collapsed_restraint_weight``, and it gets ``len(clash_ramp)`` rounds with a
   softened repulsion of at most ``clash_ramp_steps`` steps each, which untangle it for the
   full-strength rounds (no restraint is released after them: they leave overlaps by
   design). Neighbour-list capacities come from the coordinates
   (``neighbors.estimate_capacities``): the bucket's defaults for folded proteins, a larger set
   of ``neighbors.CAPACITY_LADDER`` for crowded ones, re-estimated at every check so that a
   structure that opens up goes on with smaller, cheaper lists. A list that would need more
   room than its capacities is rebuilt with the next larger set (never silently truncated: the
   step that found it is not taken) up to ``neighbors.MAX_CAPACITIES``; only grossly
   overcrowded input reaches those caps, and then goes on with truncated lists until they fit
   (the report flags lists still truncated at the end: ``pair_list_truncated``). Time is
   bounded by ``len(clash_ramp) * min(clash_ramp_steps, max_steps) + max_rounds * max_steps``
   steps; each round's steps, end, time and remaining problems are in
   ``RefineReport.round_log``.
5. **Report** (``RefineReport``): energy per term before and after, violations, clashes, bond
   and angle RMSZ, omega, chirality (``validation.geometry_metrics``) before and after, CA RMSD
   moved, steps, rounds (with a log of each), time, and optionally trajectory frames.

Command line: ``foldlite refine IN.pdb -o OUT.pdb [--restraint-weight W] [--max-steps N]
[--keep-sidechains | --no-keep-sidechains] [--plddt-from-bfactors] [--report REPORT.json]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from pathlib import Path
from typing import Literal, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from foldlite import constants as rc
from foldlite.errors import ConfigError, InputError
from foldlite.physics import energy as E
from foldlite.physics.coarse import CoarseConfig, relax_ca
from foldlite.physics.minimize import MinSettings, run_minimizer
from foldlite.physics.neighbors import (DEFAULT_CAPACITIES, capacity_level,
                                       estimate_capacities)
from foldlite.physics.sidechains import (SIDECHAIN_MASK37, PackConfig, check_backbone,
                                         incomplete_sidechains, pack_sidechains)
from foldlite.physics.topology import build_topology
from foldlite.physics.validation import (clashing_atoms, evaluate, list_cutoff,
                                         metrics_from_values, violating_atoms)

_CA = rc.atom_order["CA"]


@dataclasses.dataclass(frozen=True)
class RefineConfig:
    """Refinement settings (load from YAML with ``foldlite.config.from_dict``).

    Attributes:
      max_steps: optimiser steps per round (a cap; the stopping rule usually ends earlier);
        0 = no minimisation (side chains are still completed and the report computed).
      max_rounds: minimisation rounds; after a round with violations, the restraints of the
        violating residues are released (AlphaFold2's relax loop).
      restraint_weight: harmonic restraint ``0.5 k d^2`` on every heavy atom to its start, k in
        kcal/mol/A^2 (AlphaFold2's relax: 10), converted to the energy's units (kT at 298 K,
        ``energy.KT_KCAL_PER_MOL``; a bond one sd off costs 0.5 kT). 0 = unrestrained.
      restraint_flat_bottom: free radius (A) before the restraint acts (overrides
        ``energy.restraint_flat_bottom`` when non-zero).
      plddt_weighting: scale restraints per residue by (pLDDT/100)^2 when a pLDDT is given.
      optimizer: "lbfgs" or "adam".
      learning_rate: Adam step size (A), decayed x0.05 over ``max_steps``.
      grad_tol: stop when the gradient RMS per coordinate is below this (energy units / A).
      energy_tol: stop when the relative energy change stays below this for ``patience`` steps.
      patience: see ``energy_tol``.
      keep_sidechains: keep complete side chains of the input (else rebuild all).
      cis_nonproline: keep cis peptide bonds before any residue type (default: proline only).
      max_peptide_bond: longest C(i)-N(i+1) (A) still treated as a peptide bond between
        consecutively numbered residues.
      neighbor_skin: Verlet skin (A) of the neighbour list.
      energy: term weights (``EnergyWeights``).
      pack: side-chain packing settings (``PackConfig``).
      trajectory_every: steps between trajectory frames when a trajectory is recorded.
      collapsed_restraint_weight: restraint weight (kcal/mol/A^2) used instead of
        ``restraint_weight`` when it is lower, for a collapsed start (the clash criterion of
        ``clash_ramp``): such a start is far from physical, and strong restraints to it hold
        atoms in overlaps for hundreds of extra steps (measured on the shipped model's
        predictions of 100, 200 and 400 residues, weight 2 against 10: 1,059 / 2,100 / 2,200
        steps against 1,550 / 3,150 / 3,200, with fewer clashes left and less CA movement).
      coarse: the CA-level pre-relaxation of a collapsed start (``coarse.CoarseConfig``;
        ``max_steps`` 0 turns it off): the trace is opened up (virtual bonds, excluded volume)
        and every atom moved with its residue's CA before the all-atom rounds, which are then
        restrained to that opened start.
      clash_ramp: repulsion scales of extra rounds run first on a collapsed start (AlphaFold2
        clash violations on more than ``CROWDED_CLASH_FRACTION`` of the atoms), before the
        ``max_rounds`` rounds at full strength; () turns the ramp off.
      clash_ramp_steps: step budget of each softened (``clash_ramp``) round, at most
        ``max_steps``; 0 = ``max_steps``.
        The softened rounds only untangle a collapsed start for the full-strength rounds, and
        most of that happens in their first ~200 steps.
      check_every: steps between checks of a round's progress (violations, clashes, energy),
        and of the neighbour-list capacities while they are above the defaults (crowded
        structures: the lists shrink as the structure opens up). The optimiser carries its
        state across checks. 0 = no checks (each round runs until it converges or
        ``max_steps``; crowded lists are then re-sized every ``CROWDED_CHUNK`` steps).
      settle_tol: a full-strength round also ends at a check once no violations are left and
        the total energy fell by less than this fraction since the previous check (a
        convergence tolerance per ``check_every`` steps, looser than ``energy_tol`` per step;
        perturbed crystal structures converge by ``grad_tol`` before it triggers); a round
        after a release also ends as soon as no violations and no clashes are left. 0 = only
        the optimiser's own rule.
      release_clashes: after a full-strength round, release the restraints of residues in
        clashes as well as of those with violations (a clash that outlives a round is held
        there by the restraints: the start itself clashes); False = violations only, as
        AlphaFold2's relax.
      pad_shapes: pad arrays to sizes fixed by the atom bucket (shared compiled programs);
        False uses exact sizes (a compile per protein; for tests and debugging).
    """

    max_steps: int = 1000
    max_rounds: int = 3
    restraint_weight: float = 10.0
    restraint_flat_bottom: float = 0.0
    plddt_weighting: bool = True
    optimizer: Literal["lbfgs", "lbfgs_bt", "adam"] = "lbfgs"
    learning_rate: float = 0.02
    grad_tol: float = 1.0
    energy_tol: float = 1e-6
    patience: int = 10
    keep_sidechains: bool = True
    cis_nonproline: bool = False
    max_peptide_bond: float = 4.0
    neighbor_skin: float = 1.0
    energy: E.EnergyWeights = E.EnergyWeights()
    pack: PackConfig = PackConfig()
    trajectory_every: int = 10
    pad_shapes: bool = True
    collapsed_restraint_weight: float = 2.0
    coarse: CoarseConfig = CoarseConfig()
    clash_ramp: tuple[float, ...] = (0.1,)
    clash_ramp_steps: int = 200
    check_every: int = 50
    settle_tol: float = 0.01
    release_clashes: bool = True

    def __post_init__(self) -> None:
        if self.max_steps < 0 or self.max_rounds < 1:
            raise ConfigError("refine: max_steps must be >= 0 and max_rounds >= 1")
        if min(self.restraint_weight, self.restraint_flat_bottom,
               self.collapsed_restraint_weight) < 0:
            raise ConfigError("refine: restraint_weight, collapsed_restraint_weight and "
                              "restraint_flat_bottom must be >= 0")
        if self.optimizer not in ("lbfgs", "lbfgs_bt", "adam"):
            raise ConfigError(f"refine: optimizer {self.optimizer!r} is not 'lbfgs', "
                              f"'lbfgs_bt' or 'adam'")
        if any(not 0.0 < v <= 1.0 for v in self.clash_ramp):
            raise ConfigError("refine: clash_ramp values must lie in (0, 1]")
        if self.trajectory_every < 1:
            raise ConfigError("refine: trajectory_every must be at least 1")
        if self.clash_ramp_steps < 0 or self.check_every < 0:
            raise ConfigError("refine: clash_ramp_steps and check_every must be >= 0")
        if not 0.0 <= self.settle_tol < 1.0:
            raise ConfigError("refine: settle_tol must lie in [0, 1)")


@dataclasses.dataclass
class RefineReport:
    """What refinement did (``to_dict()`` for JSON).

    energy_before / energy_after: {term: value, "total": value} (energy units; see
      ``foldlite.physics.energy``), with the restraints of the start.
    metrics_before / metrics_after: ``validation.geometry_metrics`` (violations by AlphaFold2's
      definitions, clashes, RMSZ, omega, chirality).
    ca_rmsd: CA RMSD (A) between the refined and the starting structure (no superposition; the
      restraints keep the frame).
    steps, rounds, converged, time_s, num_residues, num_atoms, rebuilt_sidechains,
    nonstandard_residues (residue ids refined as backbone only), timings (per stage, s).
    pair_list_truncated: the input was so overcrowded (e.g. a collapsed model) that the
      neighbour lists hit ``neighbors.MAX_CAPACITIES`` and some atom pairs were left out of the
      minimisation; the "after" figures are then lower bounds on the problems left.
    collapsed_start: the start counted as collapsed and got the ``clash_ramp`` rounds.
    coarse: what the CA-level pre-relaxation of a collapsed start did (steps, ca_rmsd moved,
      ca_violations_before/after: CA pairs off their bounds by more than 0.5 A, time_s), or
      None when it did not run.
    restraint_weight: the restraint weight (kcal/mol/A^2) the minimisation used
      (``collapsed_restraint_weight`` for a collapsed start when lower than ``restraint_weight``).
    round_log: one dict per round: repulsion_scale, steps, time_s, end ("converged": the
      optimiser's stopping rule, "settled": clean and the energy change below ``settle_tol``,
      "step budget": ``max_steps`` or ``clash_ramp_steps`` used up), and the violations,
      clashes and total energy (with that round's restraints) at its end.
    trajectory: optional [F, L, 37, 3] frames of the minimisation (None unless recorded).
    """

    energy_before: dict
    energy_after: dict
    metrics_before: dict
    metrics_after: dict
    ca_rmsd: float
    steps: int
    rounds: int
    converged: bool
    time_s: float
    num_residues: int
    num_atoms: int
    rebuilt_sidechains: int
    nonstandard_residues: list
    timings: dict
    pair_list_truncated: bool = False
    collapsed_start: bool = False
    restraint_weight: float = 0.0
    coarse: dict | None = None
    round_log: list = dataclasses.field(default_factory=list)
    trajectory: np.ndarray | None = None

    @property
    def violations_before(self) -> int:
        return int(self.metrics_before["violations"])

    @property
    def violations_after(self) -> int:
        return int(self.metrics_after["violations"])

    @property
    def clashes_before(self) -> int:
        return int(self.metrics_before["clashes"])

    @property
    def clashes_after(self) -> int:
        return int(self.metrics_after["clashes"])

    def to_dict(self) -> dict:
        """JSON-ready dict (the trajectory is summarised by its frame count)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
               if f.name != "trajectory"}
        out["trajectory_frames"] = 0 if self.trajectory is None else int(len(self.trajectory))
        for k in ("violations_before", "violations_after", "clashes_before", "clashes_after"):
            out[k] = getattr(self, k)
        return _plain(out)


def _plain(obj):
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, (np.floating, np.integer, np.bool_)):
        return obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _weights(config: RefineConfig) -> E.EnergyWeights:
    """The energy weights, with the config's flat-bottom radius when it sets one."""
    if config.restraint_flat_bottom:
        return dataclasses.replace(config.energy,
                                   restraint_flat_bottom=config.restraint_flat_bottom)
    return config.energy


def _list_cutoff(config: RefineConfig) -> float:
    return MinSettings(weights=_weights(config), skin=config.neighbor_skin).cutoff


def _residue_weights(protein, plddt, config: RefineConfig) -> np.ndarray:
    L = protein.length
    if plddt is None or not config.plddt_weighting:
        return np.ones(L, np.float32)
    p = np.asarray(plddt, np.float32).reshape(-1)
    if p.shape != (L,):
        raise InputError(f"plddt has {p.size} values for {L} residues")
    if np.nanmax(p) <= 1.0 + 1e-6:  # given as fractions
        p = p * 100.0
    p = np.clip(np.nan_to_num(p, nan=50.0), 0.0, 100.0)
    return (p / 100.0) ** 2


#: A start with AlphaFold2 clash violations (overlap > 1.5 A) on more than this fraction of its
#: atoms counts as collapsed and gets the ``clash_ramp`` rounds first.
CROWDED_CLASH_FRACTION = 0.1
#: Steps between re-estimates of the neighbour-list capacities of a crowded structure when
#: ``RefineConfig.check_every`` is 0 (see ``_minimize_round``).
CROWDED_CHUNK = 100


def _minimize_round(x, topo_j, topo_np, settings: MinSettings, cutoff: float, *,
                    check_every: int = 0, settled=None):
    """One minimisation round of up to ``settings.max_steps`` steps from ``x`` [A,3].

    Neighbour-list capacities come from the current coordinates (``estimate_capacities``: the
    bucket's defaults for a folded protein, so no new compile). While they are above the
    defaults (a crowded structure, e.g. a collapsed model) they are re-estimated every
    ``check_every`` steps (``CROWDED_CHUNK`` when 0), and the round goes on with smaller lists
    once the structure has opened up enough for a set at least two steps down the ladder, or
    for the defaults (each switch restarts the optimiser and needs the program of that set: in
    a new process about a second to trace and load, even from the persistent cache, so the
    walk down skips sets). An overcrowded structure (lists beyond
    ``neighbors.MAX_CAPACITIES``) is minimised with truncated lists until they fit.
    ``settled(x, energy) -> bool`` is asked every ``check_every`` steps with the positions and
    the minimised energy (the optimiser carries its state across) and ends the round when
    True.

    Returns (x, steps, how it ended: "converged" | "settled" | "step budget", ended with
    truncated lists, trajectory frames or None, neighbour-list builds).
    """
    total = settings.max_steps
    steps, frames, builds = 0, [], 0
    end = "step budget"
    while steps < total:
        caps, truncated = estimate_capacities(np.asarray(x), topo_np.atom_mask, cutoff,
                                              topo_np.exclusions)
        crowded = truncated or caps != DEFAULT_CAPACITIES
        flags = {}

        def should_stop(xx, n, energy, _caps=caps, _truncated=truncated):
            if settled is not None and settled(xx, energy):
                flags["settled"] = True
                return True
            if _truncated or _caps != DEFAULT_CAPACITIES:
                now, still = estimate_capacities(np.asarray(xx), topo_np.atom_mask, cutoff,
                                                 topo_np.exclusions)
                level, was = capacity_level(now), capacity_level(_caps)
                if (_truncated and not still) or level <= max(was - 2, 0) or (
                        level == 0 and was > 0):
                    return True  # much smaller lists fit now: go on with them
            return False

        every = check_every if check_every else (CROWDED_CHUNK if crowded else 0)
        use_check = settled is not None or crowded
        res, used = run_minimizer(x, topo_j, None, dataclasses.replace(
            settings, max_steps=total - steps, tolerate_overflow=truncated, **caps),
            check_every=every if use_check else 0,
            should_stop=should_stop if (use_check and every) else None)
        x = res.positions
        steps += int(res.steps)
        builds += res.builds
        if res.frames is not None:
            frames.append(res.frames if not frames else res.frames[1:])
        truncated = used.tolerate_overflow and bool(res.overflow)
        if flags.get("settled"):
            end = "settled"
            break
        if bool(res.converged):
            end = "converged"
            break
        if not res.stopped:
            break
    trajectory = np.concatenate(frames) if frames else None
    return x, steps, end, truncated, trajectory, builds


def _settled_check(tol: float, problems):
    """The early stop of a full-strength round: a callable ``(x, energy) -> bool``, True once
    the minimised energy fell by less than ``tol`` (relative) since the previous check (never
    at the first) and ``x`` has no violations: the round has converged to ``tol`` (a round with
    violations left goes on to the optimiser's own rule or its step budget, as AlphaFold2's
    relax, before their restraints are released). In the rounds after restraints were
    released also True as soon as ``x`` has no violations and no clashes: the released residues
    have done what they were released for, and would only drift away from the start.

    ``problems(x) -> (violations, clashes)``, asked only when the energy criterion is met or in
    the rounds after a release (``problems.released``).
    """
    last = [math.inf]

    def settled(x, energy: float) -> bool:
        drop = (last[0] - energy) / max(abs(energy), 1.0)
        last[0] = energy
        if drop >= tol and not problems.released:
            return False
        violations, clashes = problems(x)
        if violations:
            return False
        return drop < tol or clashes == 0

    return settled


def refine(protein, plddt=None, *, config: RefineConfig = RefineConfig(),
           record_trajectory: bool = False, source: str = "structure"):
    """Refine ``protein`` (see the module docstring).

    Args:
      protein: ``foldlite.protein.Protein`` (one chain), or a sequence of them (refined together,
        so chains cannot clash; then a list is returned).
      plddt: optional per-residue confidence [L] (0-100 or 0-1); a list for several chains.
      config: ``RefineConfig``.
      record_trajectory: keep frames every ``config.trajectory_every`` steps in the report.
      source: name of the input, for error messages.

    Turns on JAX's persistent compilation cache (``foldlite.cache.enable_compilation_cache``)
    unless ``FOLDLITE_NO_COMPILATION_CACHE=1``.

    Returns:
      (refined Protein (or list), RefineReport).
    """
    from foldlite.cache import enable_compilation_cache

    t_start = time.perf_counter()
    # JAX's persistent compilation cache (``FOLDLITE_NO_COMPILATION_CACHE=1`` turns it off): a
    # later process refining a protein of an atom bucket seen before loads the programs.
    enable_compilation_cache()
    timings: dict[str, float] = {}
    many = isinstance(protein, (list, tuple))
    chains = list(protein) if many else [protein]
    if not chains:
        raise InputError(f"{source}: no protein chains to refine")
    plddts = list(plddt) if (many and plddt is not None) else [plddt]
    if many and plddt is not None and len(plddts) != len(chains):
        raise InputError("refine: one pLDDT array per chain is needed")
    for c in chains:
        check_backbone(c, source)

    # Side chains.
    t = time.perf_counter()
    packed, rebuilt = [], []
    for c in chains:
        need = (np.ones(c.length, bool) if not config.keep_sidechains
                else incomplete_sidechains(c.aatype, c.atom_mask))
        need &= np.asarray(c.aatype) != rc.unk_restype_index
        if need.any():
            c2 = pack_sidechains(c, residues=need, config=config.pack, weights=config.energy)
        else:
            c2 = c
        packed.append(c2)
        rebuilt.append(need)
    timings["sidechains"] = time.perf_counter() - t

    # Concatenate chains into one system (no peptide bonds between chains).
    t = time.perf_counter()
    aatype = np.concatenate([c.aatype for c in packed])
    pos37 = np.concatenate([c.atom_positions for c in packed]).astype(np.float32)
    mask37 = np.concatenate([c.atom_mask for c in packed]) > 0
    ridx = np.concatenate([c.residue_index for c in packed])
    icode = np.concatenate([c.insertion_code for c in packed])
    breaks = np.zeros(len(aatype) - 1, bool) if len(aatype) > 1 else np.zeros(0, bool)
    ends = np.cumsum([c.length for c in packed])[:-1]
    breaks[ends - 1] = True
    rw = np.concatenate([_residue_weights(c, p, config) for c, p in
                         zip(packed, plddts if plddt is not None else [None] * len(packed))])
    rebuilt_all = np.concatenate(rebuilt)
    weights = _weights(config)
    topo, layout = build_topology(aatype, pos37, mask37, ridx, insertion_code=icode,
                                  residue_weight=rw,
                                  restraint_weight=config.restraint_weight / E.KT_KCAL_PER_MOL,
                                  cis_nonproline=config.cis_nonproline,
                                  max_peptide_bond=config.max_peptide_bond, chain_breaks=breaks,
                                  pad=config.pad_shapes)
    # Side-chain atoms built here are guesses: leave them unrestrained.
    built_atoms = rebuilt_all[layout.res] & SIDECHAIN_MASK37[aatype[layout.res], layout.atom37]
    w = np.array(topo.restraint_weight)
    w[: layout.num_atoms][built_atoms] = 0.0
    topo = topo.replace(restraint_weight=w)
    topo_j = jax.tree_util.tree_map(jnp.asarray, topo)
    timings["topology"] = time.perf_counter() - t

    t = time.perf_counter()
    x0 = topo_j.reference

    def evaluate_at(x, topo_now):
        # Neighbour-list capacities: the bucket's defaults for any folded protein (no new
        # compile); crowded inputs (e.g. collapsed models) get larger ones.
        caps, _ = estimate_capacities(np.asarray(x), topo.atom_mask, list_cutoff(weights),
                                      topo.exclusions)
        return evaluate(x, topo_now, weights, caps)

    energy_before, values = evaluate_at(x0, topo_j)
    metrics_before = metrics_from_values(values, layout.num_atoms)
    timings["validation"] = time.perf_counter() - t

    settings = MinSettings(
        weights=weights, optimizer=config.optimizer, learning_rate=config.learning_rate,
        max_steps=config.max_steps, grad_tol=config.grad_tol, energy_tol=config.energy_tol,
        patience=config.patience, skin=config.neighbor_skin,
        trajectory_every=config.trajectory_every if record_trajectory else 0)
    t = time.perf_counter()
    x = x0
    steps = 0
    rounds = 0
    converged = False
    truncated = False
    frames = []
    topo_round = topo_j
    released = False  # restraints released after a round
    # A collapsed start (many atoms on top of each other) first gets rounds with a softened
    # repulsion, so that the chain can untangle while its bonded geometry forms.
    crowded = metrics_before["clash_violations"] > CROWDED_CLASH_FRACTION * layout.num_atoms
    ramp = tuple(config.clash_ramp) if crowded else ()
    restraint_used = config.restraint_weight
    if crowded and config.collapsed_restraint_weight < config.restraint_weight:
        # Weaker restraints to a start that is far from physical (the report's energies keep
        # the start's restraints, so before and after compare).
        restraint_used = config.collapsed_restraint_weight
        weaken = restraint_used / config.restraint_weight
        topo_round = topo_round.replace(restraint_weight=topo_round.restraint_weight * weaken)
    coarse_report = None
    if (crowded and config.coarse.max_steps > 0 and config.max_steps > 0
            and layout.length <= config.coarse.max_length):
        # Open the collapsed trace at the CA level first (``coarse``), move every atom with its
        # residue's CA, and restrain the all-atom rounds to that opened start.
        t_coarse = time.perf_counter()
        x_start = np.asarray(x0)
        ca_flat = layout.index37[:, _CA]
        relaxed = relax_ca(x_start[ca_flat], layout.linked, rw, config.coarse)
        shift = np.zeros_like(x_start)
        shift[: layout.num_atoms] = (relaxed.ca - x_start[ca_flat])[layout.res]
        x = jnp.asarray(x_start + shift)
        topo_round = topo_round.replace(reference=x)
        coarse_report = {"steps": relaxed.steps, "ca_rmsd": relaxed.ca_rmsd,
                         "ca_violations_before": relaxed.violations_before,
                         "ca_violations_after": relaxed.violations_after,
                         "time_s": time.perf_counter() - t_coarse}
    scales = ramp + (1.0,) * config.max_rounds
    round_log = []
    for rounds, scale in enumerate(scales, start=1):
        if config.max_steps == 0:
            rounds = 0
            break
        t_round = time.perf_counter()
        budget = config.max_steps
        if scale < 1.0 and config.clash_ramp_steps:
            budget = min(config.clash_ramp_steps, config.max_steps)
        settled = None
        if scale == 1.0 and config.settle_tol > 0 and config.check_every > 0:
            def problems(xx, _topo=topo_round):
                m = metrics_from_values(evaluate_at(xx, _topo)[1], layout.num_atoms)
                return m["violations"], m["clashes"]
            problems.released = released
            settled = _settled_check(config.settle_tol, problems)
        x, n, end, truncated, round_frames, builds = _minimize_round(
            x, topo_round, topo, dataclasses.replace(settings, repulsion_scale=scale,
                                                     max_steps=budget),
            _list_cutoff(config), check_every=config.check_every, settled=settled)
        steps += n
        converged = end != "step budget"
        if record_trajectory and round_frames is not None:
            frames.append(round_frames if not frames else round_frames[1:])
        energy_now, values = evaluate_at(x, topo_round)
        m = metrics_from_values(values, layout.num_atoms)
        round_log.append({"repulsion_scale": float(scale), "steps": int(n), "end": end,
                          "time_s": time.perf_counter() - t_round, "list_builds": int(builds),
                          "violations": m["violations"], "clashes": m["clashes"],
                          "energy": energy_now["total"]})
        if rounds == len(scales):
            break
        if scale < 1.0:
            continue  # a softened round leaves overlaps by design: no restraint is released
        bad = violating_atoms(values, topo_round)
        if config.release_clashes:
            bad |= clashing_atoms(values, topo_round)
        if not bad.any():
            break
        # Release the restraints of residues with violations (and clashes) and go again.
        bad_res = np.zeros(layout.length, bool)
        bad_res[layout.res[bad[: layout.num_atoms]]] = True
        rw_atoms = np.array(topo_round.restraint_weight)
        rw_atoms[: layout.num_atoms][bad_res[layout.res]] = 0.0
        topo_round = topo_round.replace(restraint_weight=jnp.asarray(rw_atoms))
        released = True
    jax.block_until_ready(x)
    timings["minimize"] = time.perf_counter() - t

    t = time.perf_counter()
    energy_after, values = evaluate_at(x, topo_j)
    metrics_after = metrics_from_values(values, layout.num_atoms)
    timings["validation"] += time.perf_counter() - t

    xf = np.asarray(x)
    new37 = layout.to_atom37(xf, pos37)
    ca_flat = layout.index37[:, _CA]
    ca_ok = ca_flat >= 0
    ca0 = np.asarray(topo.reference)[ca_flat[ca_ok]]
    ca1 = xf[ca_flat[ca_ok]]
    ca_rmsd = float(np.sqrt(np.mean(np.sum((ca1 - ca0) ** 2, axis=-1)))) if ca_ok.any() else 0.0

    out_chains = []
    start = 0
    for c in packed:
        sl = slice(start, start + c.length)
        out_chains.append(c.replace(atom_positions=new37[sl], atom_mask=mask37[sl].astype(
            np.float32)))
        start += c.length

    trajectory = None
    if record_trajectory and frames:
        flat = np.concatenate(frames, axis=0)
        trajectory = np.stack([layout.to_atom37(f, pos37) for f in flat])
    nonstandard = [f"{c.chain_id}:{rid}" for c in chains
                   for a, rid in zip(c.aatype, c.residue_ids) if a == rc.unk_restype_index]
    report = RefineReport(
        energy_before=energy_before, energy_after=energy_after,
        metrics_before=metrics_before, metrics_after=metrics_after, ca_rmsd=ca_rmsd,
        steps=steps, rounds=rounds, converged=converged,
        time_s=time.perf_counter() - t_start, num_residues=int(len(aatype)),
        num_atoms=int(layout.num_atoms), rebuilt_sidechains=int(rebuilt_all.sum()),
        nonstandard_residues=nonstandard, timings=timings,
        pair_list_truncated=bool(truncated or metrics_after["pair_list_truncated"]),
        collapsed_start=bool(crowded), restraint_weight=float(restraint_used),
        coarse=coarse_report,
        round_log=round_log,
        trajectory=trajectory)
    return (out_chains if many else out_chains[0]), report


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="structure to refine (PDB or mmCIF, .gz ok)")
    parser.add_argument("-o", "--output", required=True,
                        help="refined structure (.pdb, or .cif for mmCIF); an existing folder "
                             "gets INPUT_refined.pdb inside it")
    parser.add_argument("--chain", default=None,
                        help="refine only this chain (default: every protein chain, together)")
    parser.add_argument("--restraint-weight", type=float, default=None,
                        help="harmonic restraint of every heavy atom to its start, "
                             "kcal/mol/A^2 (default 10, as AlphaFold2's relax; 0 = none)")
    parser.add_argument("--max-steps", type=int, default=None,
                        help="optimiser steps per round (default 1000)")
    parser.add_argument("--keep-sidechains", action=argparse.BooleanOptionalAction, default=True,
                        help="keep complete side chains of the input (default); "
                             "--no-keep-sidechains rebuilds them all")
    parser.add_argument("--plddt-from-bfactors", action="store_true",
                        help="read per-residue pLDDT from the B-factor column (AlphaFold-style "
                             "models) and weight the restraints by it")
    parser.add_argument("--config", default=None, help="RefineConfig YAML file")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a RefineConfig field (repeatable)")
    parser.add_argument("--report", default=None, help="write the refinement report (JSON)")


def _load_config(args) -> RefineConfig:
    from foldlite.config import apply_overrides, from_dict, load_yaml
    data = load_yaml(args.config) if args.config else {}
    data = apply_overrides(data, args.set)
    if args.restraint_weight is not None:
        data["restraint_weight"] = args.restraint_weight
    if args.max_steps is not None:
        data["max_steps"] = args.max_steps
    data["keep_sidechains"] = bool(args.keep_sidechains)
    return from_dict(RefineConfig, data, where=args.config or "refine options")


def run(args) -> int:
    from foldlite import fileio
    from foldlite.protein import read_structure, read_structure_chains, write_structure

    config = _load_config(args)
    path = Path(args.input)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    # outputs are checked before the work: an existing folder gets <input>_refined.pdb (.cif
    # for an mmCIF input) inside it; a file that cannot be written is an error now
    output = Path(args.output)
    if output.is_dir():
        stem = path.name[:-3] if path.name.lower().endswith(".gz") else path.name
        stem, dot, ext = stem.rpartition(".")
        suffix = ".cif" if dot and ext.lower() in ("cif", "mmcif") else ".pdb"
        output = output / f"{stem or ext}_refined{suffix}"
    fileio.check_output_file(output)
    if args.report:
        fileio.check_output_file(args.report)
    if args.chain:
        chains: Sequence = [read_structure(path, chain=args.chain)]
    else:
        chains = read_structure_chains(path)
    if not chains:
        raise InputError(f"{path}: no protein chain found")
    plddt = None
    if args.plddt_from_bfactors:
        plddt = [np.asarray(c.b_factors)[:, _CA] for c in chains]
    refined, report = refine(list(chains), plddt, config=config, source=str(path))
    write_structure(refined, output)
    if args.report:
        fileio.write_json(args.report, report.to_dict())
    mb, ma = report.metrics_before, report.metrics_after
    print(f"refined {report.num_residues} residues ({report.num_atoms} atoms) in "
          f"{report.time_s:.1f} s, {report.steps} steps: violations {mb['violations']} -> "
          f"{ma['violations']}, clashes {mb['clashes']} -> {ma['clashes']}, bond RMSZ "
          f"{mb['bond_rmsz']:.2f} -> {ma['bond_rmsz']:.2f}, angle RMSZ {mb['angle_rmsz']:.2f} -> "
          f"{ma['angle_rmsz']:.2f}, CA RMSD moved {report.ca_rmsd:.2f} A -> {output}")
    if report.nonstandard_residues:
        shown = ", ".join(report.nonstandard_residues[:10])
        more = (f" and {len(report.nonstandard_residues) - 10} more"
                if len(report.nonstandard_residues) > 10 else "")
        print(f"note: {len(report.nonstandard_residues)} non-standard residue(s) refined as "
              f"backbone only (N, CA, C, O): {shown}{more}")
    if ma["violations"]:
        print(f"warning: {ma['violations']} violation(s) remain ({ma['bond_violations']} bond, "
              f"{ma['angle_violations']} angle, {ma['clash_violations']} clash; AlphaFold2's "
              f"definitions): the input may be too distorted (e.g. a collapsed model)",
              file=sys.stderr)
    if report.pair_list_truncated:
        print("warning: the input is so overcrowded that some atom pairs were left out of the "
              "neighbour lists; the figures after refinement are lower bounds", file=sys.stderr)
    return 0
