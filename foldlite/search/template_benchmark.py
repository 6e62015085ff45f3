"""Templates on the test split: the network alone, the network with templates, and the
templates' own backbones, scored against the true structures in the two settings of issue 17.

Settings (``SETTINGS``), which library chains a query may use as templates:

* ``remote``: training-split chains only (the split keeps test chains out of the training
  clusters at 30% identity over 80% coverage).
* ``relatives``: every library chain except the query itself and any chain whose hit is at
  least ``MAX_IDENTITY`` (95%) identical to it over the aligned residues (cluster-mates at
  30-95% identity may be used): the usual case for a user.

For each chain (``benchmark_templates``): the network predicts once (``network``: a callable
``ChainRecord -> (Protein, pLDDT [L])``; ``predictor_network`` makes one of a ``Predictor``,
with an optional cache of its outputs on disk); for each
setting the library is searched (``search_templates``, sequence search), the hits allowed by the
setting are kept (best ``max_hits``), ``model_from_templates`` builds the model, and three CA
traces are scored against the truth with lDDT-CA, TM-score and GDT_TS (``foldlite.metrics``):

* ``network``: the network's (unrefined) prediction;
* ``templates``: the template model (the network's prediction where no template was usable);
* ``template_only``: the best allowed template's aligned backbone, unaligned residues counted as
  missing (lDDT pairs with a missing residue are not preserved; TM and GDT normalised by the
  true chain's length); a chain with no allowed template scores 0.

``summarize`` gives medians and means over all chains and over the chains with a template of at
least ``good_identity`` identity and ``good_coverage`` coverage (the issue's goals are set on
that subset); ``format_table`` prints them.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from foldlite import constants as rc
from foldlite import metrics
from foldlite.data.dataset import ChainRecord, Dataset
from foldlite.data.features import make_features
from foldlite.errors import InputError
from foldlite.model.inference import Predictor
from foldlite.protein import Protein
from foldlite.search.template_coords import template_coords
from foldlite.search.template_model import (TemplateModelConfig, TemplateWarning,
                                            model_from_templates)
from foldlite.search.templates import TemplateHit, TemplateIndex, search_templates
from foldlite.sequences import parse_sequence

SETTINGS = ("remote", "relatives")
#: In the ``relatives`` setting, hits at least this identical to the query are never used.
MAX_IDENTITY = 0.95
METHODS = ("network", "templates", "template_only")
METRICS = ("lddt_ca", "tm_score", "gdt_ts")
_CA = rc.atom_order["CA"]

#: ``ChainRecord -> (Protein [L], pLDDT [L] 0-100)``: the network's prediction of a chain.
Network = Callable[[ChainRecord], "tuple[Protein, np.ndarray]"]


def predictor_network(predictor: Predictor, *, use_profile: bool = True,
                      num_recycles: int | None = None, cache: Path | None = None) -> Network:
    """``predictor`` as a ``Network``: the chain's sequence (and its dataset profile, the
    stand-in for an MSA, when ``use_profile`` and the chain has one) -> the unrefined atoms and
    pLDDT. ``cache``: a folder where each chain's output is kept (keyed by the weights' digest,
    the chain, the profile and the recycles), so that a rerun with other template settings does
    not predict again."""
    recycles = predictor.num_recycles if num_recycles is None else int(num_recycles)

    def network(rec: ChainRecord) -> tuple[Protein, np.ndarray]:
        profile = rec.profile if use_profile else None
        residue_index = np.arange(1, rec.length + 1)
        path = None
        if cache is not None:
            tag = f"{(predictor.sha256 or predictor.name)[:12]}-{int(profile is not None)}"
            path = Path(cache) / f"{rec.chain_id}-{tag}-{recycles}.npz"
            if path.is_file():
                with np.load(path, allow_pickle=False) as z:
                    return Protein(aatype=rec.aatype, atom_positions=z["pos"],
                                   atom_mask=z["mask"], residue_index=residue_index), z["plddt"]
        out = predictor(make_features(rec.aatype, profile), num_recycles=recycles)
        mask = out.atom37_mask.astype(np.float32)
        pos = out.atom37.astype(np.float32) * mask[..., None]
        plddt = out.plddt.astype(np.float64)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            np.savez(path, pos=pos, mask=mask, plddt=plddt)
        return Protein(aatype=rec.aatype, atom_positions=pos, atom_mask=mask,
                       residue_index=residue_index), plddt
    return network


@dataclasses.dataclass(frozen=True)
class BenchmarkConfig:
    """Settings of ``benchmark_templates``.

    Attributes:
      settings: which of ``SETTINGS`` to run.
      max_hits: templates passed to ``model_from_templates`` per query (after the setting's
        filter; the ``good`` subset looks at every allowed hit).
      candidates: hits searched and aligned before the filter (identical chains first: enough
        to reach the 30-95% ones behind them).
      evalue: the search's E-value threshold.
      good_identity, good_coverage: the subset of the goals (a template at least this good).
      model: the ``TemplateModelConfig``.
    """

    settings: tuple[str, ...] = SETTINGS
    max_hits: int = 4
    candidates: int = 500
    evalue: float = 1e-3
    good_identity: float = 0.30
    good_coverage: float = 0.70
    model: TemplateModelConfig = TemplateModelConfig()

    def __post_init__(self) -> None:
        bad = [s for s in self.settings if s not in SETTINGS]
        if bad or not self.settings:
            raise InputError(f"template benchmark: settings {bad or '()'}; choose from "
                             f"{', '.join(SETTINGS)}")


def allowed(hit: TemplateHit, setting: str, query_id: str, train_ids: frozenset[str]) -> bool:
    """May ``hit`` serve as a template for chain ``query_id`` in ``setting``?"""
    if hit.chain_id == query_id:
        return False
    if setting == "remote":
        return hit.chain_id in train_ids
    if setting == "relatives":
        return hit.identity < MAX_IDENTITY
    raise InputError(f"unknown template setting {setting!r} (choose from {', '.join(SETTINGS)})")


def allowed_hits(query: ChainRecord, index: TemplateIndex, setting: str,
                 train_ids: frozenset[str], config: BenchmarkConfig = BenchmarkConfig()
                 ) -> tuple[list[TemplateHit], int]:
    """Every hit ``query`` may use in ``setting`` (in the search's order: best first) and
    how many hits the setting excluded."""
    hits = search_templates(parse_sequence(query.sequence, name=query.chain_id), index,
                            max_hits=config.candidates, evalue=config.evalue, min_coverage=0.0,
                            candidates=config.candidates)
    ok = [h for h in hits if allowed(h, setting, query.chain_id, train_ids)]
    return ok, len(hits) - len(ok)


def score_ca(pred_ca: np.ndarray, true_ca: np.ndarray, true_mask: np.ndarray,
             pred_mask: np.ndarray | None = None) -> dict[str, float]:
    """lDDT-CA, TM-score and GDT_TS of a CA trace [L, 3] against the truth [L, 3]; residues
    outside ``pred_mask`` [L] count as missing (scores normalised by the true residues)."""
    tm = np.asarray(true_mask) > 0
    pm = tm if pred_mask is None else (np.asarray(pred_mask) > 0)
    both = tm & pm
    if both.sum() < 3:
        return {k: 0.0 for k in METRICS}
    n_true = int(tm.sum())
    pred = np.where(pm[:, None], pred_ca, 0.0)
    return {
        "lddt_ca": float(metrics.lddt_ca(pred, true_ca, tm.astype(np.float32),
                                         pred_mask=pm.astype(np.float32))),
        "tm_score": float(metrics.tm_score(pred, true_ca, both, reference_length=n_true)),
        "gdt_ts": float(metrics.gdt_ts(pred, true_ca, both, reference_length=n_true)),
    }


def protocol_records(dataset: Dataset, test_ids: Sequence[str], *, max_chains: int | None,
                     min_length: int, max_length: int) -> list[ChainRecord]:
    """The first ``max_chains`` chains of ``test_ids`` (in order) of ``min_length`` to
    ``max_length`` residues (the model card's test protocol)."""
    out = []
    for cid in test_ids:
        L = int(dataset.lengths[dataset.index(cid)])
        if min_length <= L <= max_length:
            out.append(dataset[cid])
            if max_chains is not None and len(out) >= max_chains:
                break
    return out


def benchmark_chain(rec: ChainRecord, network_out: tuple[Protein, np.ndarray],
                    index: TemplateIndex, library: Dataset, train_ids: frozenset[str],
                    setting: str, config: BenchmarkConfig = BenchmarkConfig()) -> dict[str, Any]:
    """One chain in one setting: search, filter, model, score (see the module docstring)."""
    pred, plddt = network_out
    true_ca = np.asarray(rec.atom_positions[:, _CA], np.float64)
    true_mask = np.asarray(rec.atom_mask[:, _CA]) > 0
    t0 = time.perf_counter()
    ok, excluded = allowed_hits(rec, index, setting, train_ids, config)
    kept = ok[:config.max_hits]
    t_search = time.perf_counter() - t0
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TemplateWarning)  # the fallback is in the row
        built = model_from_templates(pred, plddt, kept, library, config=config.model)
    t_model = time.perf_counter() - t0
    row: dict[str, Any] = {
        "chain_id": rec.chain_id, "length": rec.length, "setting": setting,
        "hits": len(ok), "excluded": excluded,
        "best": kept[0].as_dict() if kept else None,
        "good_template": any(h.identity >= config.good_identity
                             and h.coverage >= config.good_coverage for h in ok),
        "used": built.used, "report": built.report,
        "mean_confidence": float(np.mean(built.confidence)),
        "seconds": {"search": round(t_search, 2), "model": round(t_model, 2)},
        "network": score_ca(pred.ca_positions, true_ca, true_mask),
        "templates": score_ca(built.protein.ca_positions, true_ca, true_mask),
    }
    if kept:
        tc = template_coords(kept[0], library)
        row["template_only"] = score_ca(tc.ca, true_ca, true_mask, tc.mask)
    else:
        row["template_only"] = {k: 0.0 for k in METRICS}
    return row


def benchmark_templates(records: Iterable[ChainRecord], network: Network, index: TemplateIndex,
                        train_ids: Iterable[str], config: BenchmarkConfig = BenchmarkConfig(),
                        progress: Callable[[dict], None] | None = None) -> dict[str, Any]:
    """Every chain of ``records`` in every setting of ``config``: the network predicts each
    chain once. Returns ``{"config": ..., "rows": [...], "summary": summarize(rows)}``;
    ``progress`` is called with each row as it is done."""
    library = Dataset(index.dataset)
    train = frozenset(train_ids)
    rows = []
    for rec in records:
        t0 = time.perf_counter()
        out = network(rec)
        t_net = time.perf_counter() - t0
        for setting in config.settings:
            row = benchmark_chain(rec, out, index, library, train, setting, config)
            row["seconds"]["network"] = round(t_net, 2)
            rows.append(row)
            if progress is not None:
                progress(row)
    return {"config": dataclasses.asdict(config), "rows": rows, "summary": summarize(rows)}


def summarize(rows: Sequence[dict]) -> dict[str, Any]:
    """Per setting and subset (``all``, ``good``: a template of the goals' quality): the
    number of chains, the median and mean of every metric of every method, the chains whose
    template model scores below the network alone (per metric) and the violations left."""
    out: dict[str, Any] = {}
    for setting in sorted({r["setting"] for r in rows}, key=SETTINGS.index):
        mine = [r for r in rows if r["setting"] == setting]
        out[setting] = {}
        for subset, sel in (("all", mine), ("good", [r for r in mine if r["good_template"]])):
            s: dict[str, Any] = {"chains": len(sel), "templated": sum(r["used"] for r in sel)}
            for m in METHODS:
                for k in METRICS:
                    vals = [r[m][k] for r in sel]
                    s[f"{m}.{k}.median"] = float(np.median(vals)) if vals else None
                    s[f"{m}.{k}.mean"] = float(np.mean(vals)) if vals else None
            for k in METRICS:  # chains where the templates made the model worse
                s[f"worse_than_network.{k}"] = sum(r["templates"][k] < r["network"][k]
                                                   for r in sel)
            s["violations_after"] = sum(r["report"].get("refine", {}).get("violations_after", 0)
                                        for r in sel if r["used"])
            out[setting][subset] = s
    return out


def format_table(summary: dict[str, Any]) -> str:
    """A Markdown table of ``summarize``'s medians (means in parentheses)."""
    lines = ["| setting | chains | templated | method | lDDT-CA | TM | GDT_TS |",
             "|---|---|---|---|---|---|---|"]
    for setting, subsets in summary.items():
        for subset, s in subsets.items():
            name = f"{setting} ({'all' if subset == 'all' else 'template >= 30% id, 70% cov'})"
            for m in METHODS:
                cells = []
                for k in METRICS:
                    med, mean = s[f"{m}.{k}.median"], s[f"{m}.{k}.mean"]
                    cells.append("-" if med is None else f"{med:.3f} ({mean:.3f})")
                lines.append(f"| {name} | {s['chains']} | {s['templated']} | {m} | "
                             + " | ".join(cells) + " |")
    notes = []
    for setting, subsets in summary.items():
        s = subsets["all"]
        worse = ", ".join(f"{k} {s[f'worse_than_network.{k}']}" for k in METRICS)
        notes.append(f"{setting}: chains where the template model scores below the network "
                     f"alone: {worse}; violations left in template models: "
                     f"{s['violations_after']}")
    return "\n".join(lines + [""] + notes)
