"""The prediction pipeline: sequence -> features -> network -> atoms -> refinement -> result.

Python API:

* ``load_predictor(weights=None, device=None, chunk_size=None) -> Predictor`` (from
  ``foldlite.model.inference``): weights written by ``foldlite.model.weights_io.save_weights``
  (default: the shipped ``foldlite/weights/default.npz``), placed on a device, with one
  compiled executable per length bucket kept in memory.
* ``predict(query, ...) -> Prediction``: one sequence (string, ``SequenceRecord`` or a one-record
  FASTA file) end to end: features (optionally an MSA profile), the network for every seed
  (``SeedPrediction``s ranked by mean pLDDT), then refinement of the best one; with templates
  (``foldlite.homology.FoundTemplates``), the model built from the templates and the best
  seed instead (``search.template_model.model_from_templates``: copy, fill, close, refine).
* ``check_memory`` / ``memory_estimate``: a record's estimated memory (network and refinement)
  against the device's, checked before it runs.

Compilation: sequences are padded to a few length buckets (``features.length_bucket``) so a batch
of varied lengths compiles a few executables, and JAX's persistent compilation cache lives in a
user cache folder (``$FOLDLITE_CACHE_DIR``, else ``$XDG_CACHE_HOME/foldlite``, else
``~/.cache/foldlite``; subfolder ``jax``) so that a second run does not recompile.
``FOLDLITE_NO_COMPILATION_CACHE=1`` turns the cache off.

The command line (``foldlite predict``: batches of FASTA records into output folders) is
``foldlite.commands.predict``.
"""

from __future__ import annotations

import dataclasses
import os
import time
import warnings
from typing import Any

import numpy as np

from foldlite.config import to_dict
from foldlite.data.features import make_features
from foldlite.device import describe_device, device_memory_limit, versions
from foldlite.errors import FoldliteError, InputError
from foldlite.homology import FoundMsa, FoundTemplates
from foldlite.model.inference import Predictor, load_predictor
from foldlite.model.memory import best_chunk_size, longest_length, network_bytes
from foldlite.physics.neighbors import list_bytes
from foldlite.physics.refine import RefineConfig
from foldlite.physics.refine import refine as run_refine
from foldlite.protein import Protein
from foldlite.results import Prediction, SeedPrediction
from foldlite.search.template_model import (TemplateModel, TemplateModelConfig, TemplateWarning,
                                            model_from_templates)
from foldlite.sequences import (Msa, SequenceRecord, msa_profile, parse_sequence, read_a3m,
                                read_fasta, safe_name)


# ---------------------------------------------------------------------------------------------
# Memory
# ---------------------------------------------------------------------------------------------

#: atoms per residue the refinement's memory estimate assumes (atom14)
_ATOMS_PER_RESIDUE = 14


def memory_estimate(predictor: Predictor, length: int, refine: bool = True) -> dict[str, int]:
    """Estimated peak bytes of predicting ``length`` residues with ``predictor``: the network at
    the padded length (``foldlite.model.memory``) and, with ``refine``, the refinement
    (neighbour lists at their largest capacities)."""
    out = {"network": network_bytes(predictor.config, predictor.bucket(length))}
    if refine:
        out["refine"] = 2 * list_bytes(length * _ATOMS_PER_RESIDUE)
    return out


def _gib_text(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"


def check_memory(predictor: Predictor, length: int, *, refine: bool = True,
                 limit: int | None = None, record: str = "query") -> None:
    """Refuse, before it runs, a record whose estimated memory exceeds ``limit`` (default: the
    device's, ``device_memory_limit``): ``FoldliteError`` naming the length, the estimate, the
    limit and what to do."""
    if limit is None:
        limit = device_memory_limit(predictor.device)
        where = ("available RAM" if getattr(predictor.device, "platform", "cpu") == "cpu"
                 else f"memory of {describe_device(predictor.device)}")
    else:
        where = "--memory-limit"
    if limit is None:
        return
    need = memory_estimate(predictor, length, refine)
    stage, worst = max(need.items(), key=lambda kv: kv[1])
    if worst <= limit:
        return
    chunk = int(predictor.config.chunk_size)
    bucket = predictor.bucket(length)
    hints = []
    if stage == "network":
        best, with_chunk = best_chunk_size(predictor.config, bucket)
        if best != chunk and with_chunk < worst:
            hints.append(f"--chunk-size {best} (estimate {_gib_text(with_chunk)})")
        longest = longest_length(predictor.config, limit)
        hints.append(f"--max-length {longest}" if longest else "--max-length")
    else:
        hints.append("--no-refine")
    hints.append("a device with more memory")
    raise FoldliteError(
        f"record {record!r}: {length} residues (padded to {bucket}) need an estimated "
        f"{_gib_text(worst)} for the {stage}"
        + (f" (chunk size {chunk})" if stage == "network" else "")
        + f", more than the {_gib_text(limit)} of {where}; refused before running. Try "
        + ", or ".join(hints))


# ---------------------------------------------------------------------------------------------
# One prediction
# ---------------------------------------------------------------------------------------------

def _as_record(query: Any, max_length: int | None):
    if isinstance(query, SequenceRecord):
        if max_length is not None and query.length > max_length:
            raise InputError(f"record {query.id!r}: {query.length} residues, more than "
                             f"--max-length {max_length}")
        return query
    if isinstance(query, os.PathLike) or (isinstance(query, str) and _looks_like_path(query)):
        records = read_fasta(query, max_length=max_length)
        if len(records) != 1:
            raise InputError(f"{query}: holds {len(records)} records; predict() takes one "
                             "(foldlite.commands.predict.predict_batch takes many)")
        return records[0]
    if isinstance(query, str):
        return parse_sequence(query, name="query", max_length=max_length)
    raise TypeError(f"cannot predict a {type(query).__name__}: give a sequence, a "
                    "SequenceRecord or a FASTA path")


def _looks_like_path(text: str) -> bool:
    return os.path.exists(text) or any(c in text for c in "/\\.") or text.endswith(
        (".fasta", ".fa", ".faa"))


def read_msa(msa: Any, record: SequenceRecord) -> tuple[Msa | None, dict | None]:
    """The ``Msa`` of ``msa`` (an A3M path, an ``Msa`` or a searched ``FoundMsa``) and what
    scores.json records about it."""
    if msa is None:
        return None, None
    if isinstance(msa, FoundMsa):
        m, info = msa.msa, dict(msa.info)
    elif isinstance(msa, Msa):
        m, info = msa, {"source": "given", "path": None}
    else:
        m, info = read_a3m(msa, query=record), {"source": "file", "path": str(msa)}
    if m.length != record.length:
        raise InputError(f"{info.get('path') or 'MSA'}: {m.length} columns for a query of "
                         f"{record.length} residues")
    info["num_sequences"] = m.num_sequences
    return m, info


#: ``max_peptide_bond`` of a prediction's refinement: any gap (finite, for strict JSON readers
#: of scores.json's ``refine_config``).
_ANY_GAP = 1e9


def _refine_config(steps: int | None):
    """The refinement settings: the defaults, with ``max_steps`` (per round) = ``steps``, and
    every pair of consecutive residues bonded.

    A predicted chain is one unbroken sequence: a C(i)-N(i+1) gap in the network's model (a
    weakly trained network leaves some, up to ~17 A) is its error, to be closed, not a chain
    break as in a crystal structure, which is what ``max_peptide_bond`` tells apart otherwise.
    """
    if steps is not None and steps < 0:
        raise InputError(f"--refine-steps {steps}: must be >= 0")
    config = RefineConfig(max_peptide_bond=_ANY_GAP)
    return config if steps is None else dataclasses.replace(config, max_steps=int(steps))


def _template_config(steps: int | None) -> TemplateModelConfig:
    """The template model's settings: the defaults, with its refinement's ``max_steps`` (per
    round) = ``steps``."""
    config = TemplateModelConfig()
    if steps is None:
        return config
    return dataclasses.replace(config, refine=dataclasses.replace(config.refine,
                                                                  max_steps=int(steps)))


def _template_model(best: SeedPrediction, templates: FoundTemplates,
                    config: TemplateModelConfig, record_id: str
                    ) -> tuple[TemplateModel, str | None]:
    """The model from ``templates`` and the best seed, and why no template was used (None when
    one was; the ``TemplateWarning`` is issued again for the caller)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", TemplateWarning)
        try:
            built = model_from_templates(best.protein, best.plddt, templates.hits,
                                         templates.library, config=config)
        except FoldliteError:
            raise
        except Exception as e:  # noqa: BLE001 - reported as this record's failure
            raise FoldliteError(f"record {record_id!r}: the model from templates failed "
                                f"({type(e).__name__}: {e})") from e
    reason = None
    for w in caught:
        if issubclass(w.category, TemplateWarning):
            reason = str(w.message)
            warnings.warn(f"record {record_id!r}: {reason}", TemplateWarning, stacklevel=3)
    return built, reason


def predict(query: Any, *, predictor: Predictor | None = None,
            weights: str | os.PathLike | None = None, msa: Any = None,
            templates: FoundTemplates | None = None,
            num_recycles: int | None = None, num_seeds: int = 1, seed: int = 0,
            refine: bool = True, refine_steps: int | None = None, max_length: int | None = None,
            chunk_size: int | None = None, device: Any = None, record_trajectory: bool = False,
            name: str | None = None) -> Prediction:
    """Predict the structure of one sequence.

    Args:
      query: a one-letter sequence, a ``SequenceRecord`` or a FASTA file with one record.
      predictor: a loaded ``Predictor`` (default: ``load_predictor(weights, device=...,
        chunk_size=...)``).
      msa: an A3M path, ``Msa`` or searched ``homology.FoundMsa`` whose first row is the
        query: profile features (with sequence weighting) instead of the one-hot sequence.
      templates: the query's templates (``homology.Homology.templates``): the model is built
        from them and the best seed (copy, fill, close and refine; always refined, whatever
        ``refine`` says, since closing the junctions is part of building it), its confidence
        (a prior from each template's identity where residues were copied, the network's pLDDT
        elsewhere) in ``plddt``; with no usable template, a ``TemplateWarning`` and the
        prediction without templates.
      num_recycles: recycling passes (default: the model config's).
      num_seeds: 1 (default): the deterministic prediction. More: sample ``num_seeds`` models
        with the network's dropout on, seeded ``seed .. seed+num_seeds-1`` (as ColabFold's
        dropout sampling), and keep the one with the highest mean pLDDT (all are in
        ``Prediction.ranked``).
      refine, refine_steps: refine the best model (``foldlite.physics.refine``) and how far.
      max_length: refuse longer sequences (``InputError``).
      record_trajectory: keep the refinement trajectory (``Prediction.trajectory``).
      name: output folder name (default: a safe form of the record id).
    """
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    if num_seeds < 1:
        raise InputError(f"--num-seeds {num_seeds}: must be >= 1")
    record = _as_record(query, max_length)
    alignment, msa_info = read_msa(msa, record)
    profile = None if alignment is None else msa_profile(alignment, weighting=True)
    n_res = record.length
    features = make_features(record.aatype, profile=profile)
    timings["features"] = time.perf_counter() - t_start

    if predictor is None:
        t0 = time.perf_counter()
        predictor = load_predictor(weights, device=device, chunk_size=chunk_size)
        timings["load_model"] = time.perf_counter() - t0
    elif weights is not None or device is not None or chunk_size is not None:
        raise ValueError("predict: give either a loaded predictor or weights/device/chunk_size "
                         "to load one, not both")
    if num_recycles is None:
        num_recycles = predictor.num_recycles
    if num_recycles < 0:
        raise InputError(f"--num-recycles {num_recycles}: must be >= 0")

    ranked: list[SeedPrediction] = []
    timings["compile"] = 0.0
    timings["model"] = 0.0
    residue_index = np.arange(1, n_res + 1, dtype=np.int32)
    for i in range(num_seeds):
        s = int(seed) + i
        out = predictor(features, seed=s, num_recycles=num_recycles, sample=num_seeds > 1)
        timings["compile"] += out.timings["compile"]
        timings["model"] += out.timings["model"]
        pos = out.atom37.astype(np.float32)
        mask = out.atom37_mask.astype(np.float32)
        plddt = out.plddt.astype(np.float64)
        pae = out.pae.astype(np.float64)
        if not (np.all(np.isfinite(pos[mask > 0])) and np.all(np.isfinite(plddt))):
            raise FoldliteError(f"record {record.id!r}: the network produced non-finite "
                                f"coordinates or pLDDT (seed {s}); are the weights sound?")
        prot = Protein(aatype=record.aatype, atom_positions=pos * mask[..., None], atom_mask=mask,
                       residue_index=residue_index, chain_id="A").with_plddt(plddt)
        ranked.append(SeedPrediction(seed=s, protein=prot, plddt=plddt, pae=pae, ptm=out.ptm))
    ranked.sort(key=lambda m: -m.mean_plddt)  # stable: ties keep seed order
    best = ranked[0]

    report = trajectory = None
    final, plddt = best.protein, best.plddt
    template_info: dict | None = None
    template_maps: dict[str, tuple[np.ndarray, float]] = {}
    built = None
    used_templates = False
    if templates is not None:
        t0 = time.perf_counter()
        built, reason = _template_model(best, templates, _template_config(refine_steps),
                                        record.id)
        template_info = dict(templates.info, used=built.used, fallback=reason,
                             model=built.report)
        timings["templates"] = time.perf_counter() - t0
        used_templates = built.used
    if used_templates:
        final, plddt, report = built.protein, built.confidence, built.refine_report
        hits = {h.chain_id: h for h in templates.hits}
        for t in built.report["templates"]:
            h = hits[t["chain_id"]]
            template_maps[h.chain_id] = (np.asarray(h.query_to_template), float(h.identity))
    elif refine:
        t0 = time.perf_counter()
        cfg = _refine_config(refine_steps)
        try:
            refined, report = run_refine(best.protein, best.plddt, config=cfg,
                                         record_trajectory=record_trajectory)
        except FoldliteError:
            raise
        except Exception as e:  # noqa: BLE001 - reported as this record's failure
            raise FoldliteError(f"record {record.id!r}: refinement failed ({type(e).__name__}: "
                                f"{e}); --no-refine skips it") from e
        final = refined.with_plddt(best.plddt)
        trajectory = getattr(report, "trajectory", None) if record_trajectory else None
        timings["refine"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_start

    info = {
        "weights": {"name": predictor.name, "sha256": predictor.sha256,
                    "path": None if predictor.path is None else str(predictor.path)},
        "num_recycles": int(num_recycles),
        "num_seeds": int(num_seeds),
        "dropout_sampling": bool(num_seeds > 1),
        "padded_length": int(predictor.bucket(n_res)),
        "chunk_size": int(predictor.config.chunk_size),
        "msa": msa_info,
        "templates": template_info,
        "refine_config": (to_dict(_template_config(refine_steps).refine) if used_templates
                          else to_dict(_refine_config(refine_steps)) if refine else None),
        "versions": versions(),
        "device": describe_device(predictor.device),
    }
    return Prediction(id=record.id, name=name or safe_name(record.id),
                      description=record.description, sequence=record.sequence, protein=final,
                      unrefined=best.protein, plddt=plddt, pae=best.pae, ptm=best.ptm,
                      seed=best.seed, ranked=tuple(ranked), refine_report=report,
                      timings=timings, info=info, trajectory=trajectory,
                      network_plddt=best.plddt if used_templates else None,
                      msa=alignment, msa_a3m=msa.a3m if isinstance(msa, FoundMsa) else None,
                      template_maps=template_maps)


__all__ = ["Prediction", "Predictor", "SeedPrediction", "check_memory", "load_predictor",
           "memory_estimate", "predict", "read_msa"]
