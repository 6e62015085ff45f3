"""What a prediction returns: ``Prediction`` (one sequence's result) and ``SeedPrediction`` (one
seed's network output, before refinement, as ranked by mean pLDDT).

``foldlite.pipeline.predict`` makes them; ``foldlite.outputs`` writes them into a record folder.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np

from foldlite.outputs import write_record
from foldlite.protein import Protein, to_pdb_string
from foldlite.sequences import Msa


@dataclasses.dataclass(frozen=True)
class SeedPrediction:
    """One seed's network output (unrefined), for ranking.

    protein: the model, pLDDT in the B-factors; plddt [L] (0-100); pae [L, L] (Angstrom); ptm.
    """

    seed: int
    protein: Protein
    plddt: np.ndarray       # [L]
    pae: np.ndarray | None  # [L, L]
    ptm: float | None

    @property
    def mean_plddt(self) -> float:
        return float(np.mean(self.plddt))


@dataclasses.dataclass(frozen=True)
class Prediction:
    """The result for one sequence.

    protein: the final model (refined unless refinement was off), ``plddt`` in the B-factors;
    unrefined: the best seed's network output; plddt [L] (0-100): the network's pLDDT of the
    best seed, or with templates the template model's confidence (``network_plddt`` then keeps
    the network's); pae [L, L] (Angstrom) and ptm of the best seed; ranked: every seed's
    ``SeedPrediction``, best first; refine_report: the ``RefineReport`` (None without
    refinement); trajectory: the refinement trajectory when asked for; timings: seconds per
    stage; info: weights, versions, device, settings, the MSA and the templates.
    msa: the alignment the profile came from (None without one); msa_a3m: its A3M text when it
    was searched (written as msa.a3m); template_maps: the templates used, {chain id:
    (query_to_template int [L], -1 unaligned; identity 0-1)} (the coverage plot).
    """

    id: str
    name: str
    description: str
    sequence: str
    protein: Protein
    unrefined: Protein
    plddt: np.ndarray
    pae: np.ndarray | None
    ptm: float | None
    seed: int
    ranked: tuple[SeedPrediction, ...]
    refine_report: Any
    timings: dict[str, float]
    info: dict[str, Any]
    trajectory: Any = None
    network_plddt: np.ndarray | None = None
    msa: Msa | None = None
    msa_a3m: str | None = None
    template_maps: dict[str, tuple[np.ndarray, float]] = dataclasses.field(default_factory=dict)

    @property
    def mean_plddt(self) -> float:
        return float(np.mean(self.plddt))

    @property
    def length(self) -> int:
        return len(self.sequence)

    def to_pdb(self) -> str:
        return to_pdb_string(self.protein)

    def save(self, outdir: str | os.PathLike, **kwargs: Any) -> Path:
        """Write every output into ``outdir/<name>`` (see ``foldlite.outputs.write_record``)."""
        return write_record(outdir, self, **kwargs)
