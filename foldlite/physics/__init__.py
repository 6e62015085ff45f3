"""foldlite.physics: refinement by gradient descent on a differentiable heavy-atom energy.

Modules: ``topology`` (flat atom list, bonded tables), ``energy`` (terms), ``neighbors`` (cell-grid
pair lists), ``minimize`` (optax loop), ``sidechains`` (rotamers, chi refinement),
``validation`` (violations, clashes, RMSZ), ``coarse`` (CA-level opening of a collapsed
start), ``config`` (``RefineConfig``), ``rounds`` (the minimisation rounds, an engine with
explicit state), ``refine`` (the pipeline step; its command line is
``foldlite.commands.refine``).
"""

from foldlite.physics.refine import RefineConfig, RefineReport, refine
from foldlite.physics.sidechains import pack_sidechains

__all__ = ["RefineConfig", "RefineReport", "refine", "pack_sidechains"]
