"""Refinement settings: ``RefineConfig`` (``foldlite.physics.refine``; load from YAML with
``foldlite.config.from_dict``)."""

from __future__ import annotations

import dataclasses
from typing import Literal

from foldlite.errors import ConfigError
from foldlite.physics import energy as E
from foldlite.physics.coarse import CoarseConfig
from foldlite.physics.sidechains import PackConfig


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
        atoms in overlaps for hundreds of extra steps.
      coarse: the CA-level pre-relaxation of a collapsed start (``coarse.CoarseConfig``;
        ``max_steps`` 0 turns it off): the trace is opened up (virtual bonds, excluded volume)
        and every atom moved with its residue's CA before the all-atom rounds, which are then
        restrained to that opened start.
      clash_ramp: repulsion scales of extra rounds run first on a collapsed start (AlphaFold2
        clash violations on more than ``rounds.CROWDED_CLASH_FRACTION`` of the atoms), before the
        ``max_rounds`` rounds at full strength; () turns the ramp off.
      clash_ramp_steps: step budget of each softened (``clash_ramp``) round, at most
        ``max_steps``; 0 = ``max_steps``.
        The softened rounds only untangle a collapsed start for the full-strength rounds, and
        most of that happens in their first ~200 steps.
      check_every: steps between checks of a round's progress (violations, clashes, energy),
        and of the neighbour-list capacities while they are above the defaults (crowded
        structures: the lists shrink as the structure opens up). The optimiser carries its
        state across checks. 0 = no checks (each round runs until it converges or
        ``max_steps``; crowded lists are then re-sized every ``rounds.CROWDED_CHUNK`` steps).
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

    def energy_weights(self) -> E.EnergyWeights:
        """The energy weights, with ``restraint_flat_bottom`` when it is set."""
        if self.restraint_flat_bottom:
            return dataclasses.replace(self.energy,
                                       restraint_flat_bottom=self.restraint_flat_bottom)
        return self.energy
