"""Homology for a prediction: the MSA searched for each query in a local sequence database, and
the templates found for it in a template library, with what the outputs record about them.

``Homology(config)`` checks the database and opens (on first use: builds) the template index
before any search, so a wrong path fails at once, not after the first prediction. Then:

- ``msas(records)``: one search for the whole batch (``foldlite.search.msa.search_msas``:
  jackhmmer or MMseqs2, cached per query, database and settings) -> per record a ``FoundMsa``
  (the ``Msa``, its A3M text and an info dict for scores.json);
- ``templates(record, msa)``: the best hits (``foldlite.search.templates.search_templates``:
  profile search from the MSA when it has more than the query, else sequence search), without
  the chains ``exclude`` names and hits at or above ``identity_cutoff`` (evaluation settings) -> a
  ``FoundTemplates`` (hits and info).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Literal, Sequence

from foldlite.search import templates as tpl
from foldlite.search.database import check_database_file, check_database_memory
from foldlite.search.mmseqs import MmseqsSettings, require_binary
from foldlite.search.msa import MsaSettings, search_msas
from foldlite.sequences import Msa, SequenceRecord, parse_a3m

ENGINES = ("jackhmmer", "mmseqs")


@dataclasses.dataclass(frozen=True)
class HomologyConfig:
    """What to search.

    Attributes:
      msa_db: FASTA sequence database for MSA search (None: no search).
      engine: ``jackhmmer`` (HMMER, AlphaFold2's settings) or ``mmseqs`` (MMseqs2, ColabFold's).
      templates: template library (a foldlite dataset folder, e.g. the ProMod3 dataset, or a
        folder of mmCIF/PDB files), or None for no templates.
      max_templates: templates kept per query (best E-value, then coverage).
      template_evalue: E-value cut-off of template hits.
      min_template_coverage: fraction of the query a template must cover.
      exclude: template chain ids never used (e.g. the query's own chain in an evaluation).
      identity_cutoff: hits at least this identical to the query (identical / aligned
        residues) are not used (e.g. 0.95 in an evaluation); None: no limit.
      cpus: search threads.
    """

    msa_db: Path | None = None
    engine: Literal["jackhmmer", "mmseqs"] = "jackhmmer"
    templates: Path | None = None
    max_templates: int = 4
    template_evalue: float = 1e-3
    min_template_coverage: float = 0.1
    exclude: frozenset[str] = frozenset()
    identity_cutoff: float | None = None
    cpus: int = 2

    @property
    def active(self) -> bool:
        return self.msa_db is not None or self.templates is not None

    def msa_settings(self) -> MsaSettings | MmseqsSettings:
        return MmseqsSettings() if self.engine == "mmseqs" else MsaSettings()


@dataclasses.dataclass(frozen=True)
class FoundMsa:
    """One query's searched MSA: the alignment, its A3M text and what scores.json records."""

    msa: Msa
    a3m: str
    info: dict


@dataclasses.dataclass(frozen=True)
class FoundTemplates:
    """One query's templates (best first), what scores.json records, and the library the
    hits index into (a ``TemplateIndex``, for ``search.template_model.model_from_templates``)."""

    hits: tuple[tpl.TemplateHit, ...]
    info: dict
    library: tpl.TemplateIndex


class Homology:
    """Searches for a run of predictions (see the module docstring)."""

    def __init__(self, config: HomologyConfig, progress: bool = True):
        if config.engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, not {config.engine!r}")
        self.config = config
        self.progress = progress
        self.database = None if config.msa_db is None else check_database_file(config.msa_db)
        if self.database is not None and config.engine == "mmseqs":
            require_binary()
        elif self.database is not None:
            check_database_memory(self.database)
        # the library's index (built on first use and when the library changed)
        self.index = None if config.templates is None else tpl.open_index(config.templates)

    def msas(self, records: Sequence[SequenceRecord]) -> list[FoundMsa | None]:
        """The searched MSA of each record (None for all when no database is set)."""
        if self.database is None:
            return [None] * len(records)
        settings = self.config.msa_settings()
        results = search_msas(records, self.database, settings, cpus=self.config.cpus,
                              progress=self.progress)
        found = []
        for rec, r in zip(records, results):
            msa = parse_a3m(r.a3m, rec, source=f"the MSA searched for {rec.id!r}")
            found.append(FoundMsa(msa=msa, a3m=r.a3m, info={
                "source": "search", "database": str(self.database), "engine": self.config.engine,
                "settings": dataclasses.asdict(settings), "num_sequences": msa.num_sequences,
                "cached": r.cached, "search_seconds": round(r.seconds, 3)}))
        return found

    def templates(self, record: SequenceRecord, msa: Msa | None = None) -> FoundTemplates | None:
        """The templates for ``record`` (None when no library is set)."""
        if self.index is None:
            return None
        c = self.config
        t0 = time.perf_counter()
        # more candidates than kept: the exclusions below may drop the best ones
        hits = tpl.search_templates(record, self.index, msa=msa,
                                    max_hits=c.max_templates + 16 + len(c.exclude),
                                    evalue=c.template_evalue, min_coverage=c.min_template_coverage)
        allowed = [h for h in hits if h.chain_id not in c.exclude and
                   (c.identity_cutoff is None or h.identity < c.identity_cutoff)]
        kept = allowed[:c.max_templates]
        info = {"library": str(Path(c.templates).expanduser()),
                "search": "profile" if msa is not None and msa.num_sequences > 1 else "sequence",
                "evalue": c.template_evalue, "min_coverage": c.min_template_coverage,
                "excluded": len(hits) - len(allowed), "hits": [h.as_dict() for h in kept],
                "search_seconds": round(time.perf_counter() - t0, 3)}
        return FoundTemplates(hits=tuple(kept), info=info, library=self.index)
