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

Modules: ``config`` (``RefineConfig``), ``rounds`` (the minimisation rounds of step 4, an
engine with explicit state), this one (steps 1-3 and 5). The command line is
``foldlite.commands.refine``.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from foldlite import constants as rc
from foldlite.cache import enable_compilation_cache
from foldlite.errors import InputError
from foldlite.fileio import jsonable
from foldlite.physics import energy as E
from foldlite.physics.config import RefineConfig
from foldlite.physics.rounds import RefineRounds
from foldlite.physics.sidechains import (SIDECHAIN_MASK37, check_backbone,
                                         incomplete_sidechains, pack_sidechains)
from foldlite.physics.topology import AtomLayout, Topology, build_topology
from foldlite.physics.validation import metrics_from_values

__all__ = ["RefineConfig", "RefineReport", "refine"]

_CA = rc.atom_order["CA"]


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
        return jsonable(out)


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


def _pack_chains(chains: list, config: RefineConfig) -> tuple[list, list[np.ndarray]]:
    """Step 2: each chain with its incomplete side chains (all, unless ``keep_sidechains``)
    built and packed, and the [L] bool mask of residues rebuilt per chain (never UNK)."""
    packed, rebuilt = [], []
    for c in chains:
        need = (np.ones(c.length, bool) if not config.keep_sidechains
                else incomplete_sidechains(c.aatype, c.atom_mask))
        need &= np.asarray(c.aatype) != rc.unk_restype_index
        if need.any():
            c = pack_sidechains(c, residues=need, config=config.pack, weights=config.energy)
        packed.append(c)
        rebuilt.append(need)
    return packed, rebuilt


@dataclasses.dataclass
class _System:
    """The chains as one system (no peptide bonds between chains); L residues, A atoms."""

    aatype: np.ndarray          # [L]
    pos37: np.ndarray           # [L, 37, 3] float32
    mask37: np.ndarray          # [L, 37] bool
    residue_weight: np.ndarray  # [L] restraint scale
    rebuilt: np.ndarray         # [L] bool: side chain built by refinement
    topo: Topology              # numpy arrays; restraints to the start
    layout: AtomLayout


def _build_system(packed: list, plddts: list, rebuilt: list[np.ndarray],
                  config: RefineConfig) -> _System:
    """Step 3: concatenate the chains and build their topology, with restraints scaled per
    residue by pLDDT and none on side-chain atoms built in step 2 (they are guesses)."""
    aatype = np.concatenate([c.aatype for c in packed])
    pos37 = np.concatenate([c.atom_positions for c in packed]).astype(np.float32)
    mask37 = np.concatenate([c.atom_mask for c in packed]) > 0
    ridx = np.concatenate([c.residue_index for c in packed])
    icode = np.concatenate([c.insertion_code for c in packed])
    breaks = np.zeros(len(aatype) - 1, bool) if len(aatype) > 1 else np.zeros(0, bool)
    ends = np.cumsum([c.length for c in packed])[:-1]
    breaks[ends - 1] = True
    rw = np.concatenate([_residue_weights(c, p, config) for c, p in zip(packed, plddts)])
    rebuilt_all = np.concatenate(rebuilt)
    topo, layout = build_topology(aatype, pos37, mask37, ridx, insertion_code=icode,
                                  residue_weight=rw,
                                  restraint_weight=config.restraint_weight / E.KT_KCAL_PER_MOL,
                                  cis_nonproline=config.cis_nonproline,
                                  max_peptide_bond=config.max_peptide_bond, chain_breaks=breaks,
                                  pad=config.pad_shapes)
    built_atoms = rebuilt_all[layout.res] & SIDECHAIN_MASK37[aatype[layout.res], layout.atom37]
    w = np.array(topo.restraint_weight)
    w[: layout.num_atoms][built_atoms] = 0.0
    topo = topo.replace(restraint_weight=w)
    return _System(aatype, pos37, mask37, rw, rebuilt_all, topo, layout)


def _ca_rmsd(layout: AtomLayout, x0: np.ndarray, x1: np.ndarray) -> float:
    """CA RMSD (A) between flat positions ``x0`` and ``x1`` [A, 3] (no superposition)."""
    ca_flat = layout.index37[:, _CA]
    ok = ca_flat >= 0
    if not ok.any():
        return 0.0
    d = x1[ca_flat[ok]] - x0[ca_flat[ok]]
    return float(np.sqrt(np.mean(np.sum(d ** 2, axis=-1))))


def _split_chains(packed: list, pos37: np.ndarray, mask37: np.ndarray) -> list:
    """The system's [L, 37, 3] positions and [L, 37] mask back into its chains."""
    out, start = [], 0
    for c in packed:
        sl = slice(start, start + c.length)
        out.append(c.replace(atom_positions=pos37[sl],
                             atom_mask=mask37[sl].astype(np.float32)))
        start += c.length
    return out


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
    unless ``FOLDLITE_NO_COMPILATION_CACHE=1``: a later process refining a protein of an atom
    bucket seen before loads the programs.

    Returns:
      (refined Protein (or list), RefineReport).
    """
    t_start = time.perf_counter()
    enable_compilation_cache()
    timings: dict[str, float] = {}
    many = isinstance(protein, (list, tuple))
    chains: Sequence = list(protein) if many else [protein]
    if not chains:
        raise InputError(f"{source}: no protein chains to refine")
    plddts = list(plddt) if (many and plddt is not None) else [plddt]
    if many and plddt is not None and len(plddts) != len(chains):
        raise InputError("refine: one pLDDT array per chain is needed")
    if plddt is None:
        plddts = [None] * len(chains)
    for c in chains:
        check_backbone(c, source)

    t = time.perf_counter()
    packed, rebuilt = _pack_chains(chains, config)
    timings["sidechains"] = time.perf_counter() - t

    t = time.perf_counter()
    system = _build_system(packed, plddts, rebuilt, config)
    layout = system.layout
    topo_j = jax.tree_util.tree_map(jnp.asarray, system.topo)
    timings["topology"] = time.perf_counter() - t

    t = time.perf_counter()
    rounds = RefineRounds(config, topo_j, system.topo, layout, system.residue_weight,
                          record_trajectory=record_trajectory)
    energy_before, values = rounds.evaluate(topo_j.reference, topo_j)
    metrics_before = metrics_from_values(values, layout.num_atoms)
    timings["validation"] = time.perf_counter() - t

    t = time.perf_counter()
    rounds.run(metrics_before)
    jax.block_until_ready(rounds.x)
    timings["minimize"] = time.perf_counter() - t

    t = time.perf_counter()
    energy_after, values = rounds.evaluate(rounds.x, topo_j)
    metrics_after = metrics_from_values(values, layout.num_atoms)
    timings["validation"] += time.perf_counter() - t

    xf = np.asarray(rounds.x)
    out_chains = _split_chains(packed, layout.to_atom37(xf, system.pos37), system.mask37)
    frames = rounds.trajectory() if record_trajectory else None
    trajectory = (None if frames is None else
                  np.stack([layout.to_atom37(f, system.pos37) for f in frames]))
    nonstandard = [f"{c.chain_id}:{rid}" for c in chains
                   for a, rid in zip(c.aatype, c.residue_ids) if a == rc.unk_restype_index]
    report = RefineReport(
        energy_before=energy_before, energy_after=energy_after,
        metrics_before=metrics_before, metrics_after=metrics_after,
        ca_rmsd=_ca_rmsd(layout, np.asarray(system.topo.reference), xf),
        steps=rounds.steps, rounds=rounds.rounds, converged=rounds.converged,
        time_s=time.perf_counter() - t_start, num_residues=int(len(system.aatype)),
        num_atoms=int(layout.num_atoms), rebuilt_sidechains=int(system.rebuilt.sum()),
        nonstandard_residues=nonstandard, timings=timings,
        pair_list_truncated=bool(rounds.truncated or metrics_after["pair_list_truncated"]),
        collapsed_start=rounds.collapsed, restraint_weight=float(rounds.restraint_weight),
        coarse=rounds.coarse, round_log=rounds.log, trajectory=trajectory)
    return (out_chains if many else out_chains[0]), report
