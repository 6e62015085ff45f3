"""A full model from templates and the network's prediction (copy, fill, close, refine).

``model_from_templates(prediction, plddt, hits, library)`` is the library entry point that the
prediction pipeline calls after the network (``foldlite predict --templates``). In the spirit of
ProMod3's copy-and-close and of MODELLER's satisfaction of spatial restraints:

1. **Copy**: the best template's backbone (N, CA, C, O) at the query residues its alignment
   covers (``template_coords``). Further templates (up to ``max_templates``, in the hits' order:
   best E-value first) fill runs of query residues still empty: each piece superposed on the
   model over up to ``anchor`` residues on each side that both hold, and copied only when
   that fit is within ``fill_max_rmsd`` (a local fit: homologs often differ by domain motions
   that a global superposition would not follow).
2. **Fill**: every run of residues that no template covers is taken from the network's
   prediction, superposed on the model over up to ``anchor`` template residues on each side of
   the run (``2 * anchor`` on one side for a terminus).
3. **Close**: the CA trace is relaxed (``physics.coarse.relax_ca``: 3.8 A virtual bonds,
   excluded volume) with strong positional restraints on template residues and weak ones on
   network residues, so that junctions and deletions close where the network's residues are
   and the template core stays; residues within ``junction`` of a junction or a deletion (a
   chain break in the copied backbone) get an intermediate weight. Each residue's backbone
   moves with its CA.
4. **Refine**: the all-atom ``physics.refine.refine`` (side chains packed, bonds, clashes) with
   a per-residue pseudo-confidence as its restraint weighting: ``template_confidence(identity)``
   on template residues (lower near junctions), the network's pLDDT elsewhere.

The result (``TemplateModel``) is a refined ``Protein`` (the confidence in its B-factors), the
per-residue confidence [L], which residues came from which template, the ``RefineReport`` and a
JSON-ready report (templates used: id, identity, coverage, E-value, aligned and used residues).
With no usable template (no hits, or every hit covers fewer than ``min_aligned`` residues) it
warns (``TemplateWarning``) and returns the network's prediction unchanged
(``TemplateModel.used`` False), so the caller goes on as without templates.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from typing import Sequence

import numpy as np

from foldlite.data.dataset import Dataset
from foldlite.errors import InputError
from foldlite.metrics import kabsch
from foldlite.physics.coarse import CoarseConfig, relax_ca
from foldlite.physics.refine import RefineConfig, RefineReport, refine
from foldlite.protein import Protein, from_backbone
from foldlite.search.template_coords import (BACKBONE37, TemplateCoords, open_library,
                                             template_coords)
from foldlite.search.templates import TemplateHit, TemplateIndex


class TemplateWarning(UserWarning):
    """Templates were asked for but none could be used: the prediction goes on without."""


@dataclasses.dataclass(frozen=True)
class TemplateModelConfig:
    """Settings of ``model_from_templates`` (see the module docstring). Distances in A.

    Attributes:
      max_templates: templates combined, best first (1: the best template alone).
      min_aligned: a template with fewer aligned residues (with N, CA, C) is not used.
      fill_max_rmsd: a further template fills an empty run only when its CA RMSD to the model
        over the anchors around the run (at least 3) is at most this after superposition.
      anchor: template residues on each side of a network run used to place it.
      junction: residues on each side of a junction (template/network) or of a break in the
        copied backbone (C(i)-N(i+1) over ``break_distance``) that get ``junction_weight``.
      break_distance: a longer C(i)-N(i+1) between two copied residues is a break to close.
      network_weight, junction_weight: CA-relaxation restraint weights of network and junction
        residues relative to template residues (1).
      confidence_base, confidence_slope, confidence_max: the pseudo-confidence (0-100 scale,
        as pLDDT) of a residue copied from a template of sequence identity ``s`` (0-1):
        ``100 * min(confidence_max, confidence_base + confidence_slope * s)``, at least the
        network's pLDDT there; near junctions the mean of that and the network's pLDDT. A prior
        for the refinement's restraint weighting, not a calibrated estimate.
      coarse: the CA relaxation (``coarse.CoarseConfig``): ``ca_min`` below real Calpha
        contacts across beta strands (~4.2 A), a strong ``restraint``.
      refine: the all-atom refinement (``physics.refine.RefineConfig``); every pair of
        consecutive residues is bonded (``max_peptide_bond`` effectively unlimited), as in
        the prediction pipeline. A start with many network residues can count as collapsed
        (clashes on over 10% of the atoms); refine's CA pre-relaxation (5.5 A excluded volume)
        and weakened restraints would then pull the template core apart, so both are off
        here: the CA relaxation above already opened the chain. Measured on the remote test
        chains 12AS_A and 1CQ3_B (templates covering 46% and 55%): lDDT-CA / TM / GDT_TS
        0.293 / 0.467 / 0.338 and 0.312 / 0.422 / 0.298 with refine's defaults, 0.327 /
        0.489 / 0.376 and 0.335 / 0.442 / 0.334 without the pre-relaxation and with the
        restraint weight kept at 10 (more clashes left: 16 and 4 against 0, no violations).
    """

    max_templates: int = 4
    min_aligned: int = 10
    fill_max_rmsd: float = 1.0
    anchor: int = 4
    junction: int = 2
    break_distance: float = 2.0
    network_weight: float = 0.01
    junction_weight: float = 0.1
    confidence_base: float = 0.6
    confidence_slope: float = 0.4
    confidence_max: float = 0.95
    coarse: CoarseConfig = CoarseConfig(ca_min=4.0, restraint=10.0, max_steps=1000)
    refine: RefineConfig = RefineConfig(max_peptide_bond=1e9, coarse=CoarseConfig(max_steps=0),
                                        collapsed_restraint_weight=10.0)

    def __post_init__(self) -> None:
        if self.max_templates < 1 or self.min_aligned < 3 or self.anchor < 1:
            raise InputError("templates: max_templates >= 1, min_aligned >= 3 and anchor >= 1 "
                             "are required")


@dataclasses.dataclass(frozen=True)
class TemplateModel:
    """The result of ``model_from_templates`` for a query of ``L`` residues.

    Attributes:
      protein: the model (refined when ``used``), confidence in the B-factors.
      confidence: float [L] per-residue confidence, 0-100 (network pLDDT where no template).
      template_index: int32 [L] which of ``report['templates']`` each residue was copied from,
        -1 for residues from the network.
      used: at least one template was used (else ``protein`` is the network's prediction).
      report: JSON-ready dict: ``templates`` (per template: chain_id, identity, coverage,
        evalue, score, aligned, used residues), ``skipped`` (ids and why), residues from
        templates and from the network, breaks closed, the CA relaxation, the refinement's
        violations and clashes after, ``fallback`` (why no template was used, or None).
      refine_report: the ``RefineReport`` (None when no template was used).
    """

    protein: Protein
    confidence: np.ndarray
    template_index: np.ndarray
    used: bool
    report: dict
    refine_report: RefineReport | None = None

    @property
    def from_template(self) -> np.ndarray:
        """bool [L]: residues copied from a template."""
        return self.template_index >= 0


def template_confidence(identity: float, config: TemplateModelConfig = TemplateModelConfig()
                        ) -> float:
    """Pseudo-confidence (0-100) of residues copied from a template of ``identity`` (0-1)."""
    return 100.0 * min(config.confidence_max,
                       config.confidence_base + config.confidence_slope * float(identity))


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """Maximal runs [start, stop) of True in a bool [L] array."""
    f = np.concatenate([[False], np.asarray(flags, bool), [False]]).astype(np.int8)
    d = np.diff(f)
    return list(zip(np.nonzero(d == 1)[0].tolist(), np.nonzero(d == -1)[0].tolist()))


def _fallback(prediction: Protein, plddt: np.ndarray, reason: str, skipped: list) -> TemplateModel:
    warnings.warn(f"templates: {reason}; predicting without templates", TemplateWarning,
                  stacklevel=3)
    L = prediction.length
    return TemplateModel(protein=prediction.with_plddt(plddt), confidence=plddt.copy(),
                         template_index=np.full(L, -1, np.int32), used=False,
                         report={"templates": [], "skipped": skipped, "fallback": reason,
                                 "residues_from_templates": 0, "residues_from_network": L})


def _place_network(bb: np.ndarray, filled: np.ndarray, net_bb: np.ndarray, anchor: int
                   ) -> np.ndarray:
    """The network's backbone ``net_bb`` [L, 4, 3] copied into the empty runs of ``bb``
    [L, 4, 3] (``filled`` bool [L]), each run superposed on the template residues around it."""
    out = bb.copy()
    L = len(filled)
    for a, b in _runs(~filled):
        left = [i for i in range(max(0, a - anchor), a) if filled[i]]
        right = [i for i in range(b, min(L, b + anchor)) if filled[i]]
        if not left or not right:  # a terminus: anchors on one side, twice as many
            left = [i for i in range(max(0, a - 2 * anchor), a) if filled[i]]
            right = [i for i in range(b, min(L, b + 2 * anchor)) if filled[i]]
        idx = np.asarray(left + right, np.int64)
        x, y = net_bb[idx, 1], bb[idx, 1]
        if len(idx) >= 3:
            rot, trans = kabsch(x, y)
        else:  # too few anchors for a rotation: a translation
            rot, trans = np.eye(3), (y - x).mean(0)
        out[a:b] = (net_bb[a:b].astype(np.float64) @ rot.T + trans).astype(np.float32)
    return out


def _fill_runs(bb: np.ndarray, filled: np.ndarray, tc: TemplateCoords,
               config: TemplateModelConfig) -> np.ndarray:
    """Copy ``tc``'s backbone into the empty runs of ``bb`` [L, 4, 3] (in place) that it
    covers, each piece superposed on the model over up to ``anchor`` residues on each side that
    both hold, when its CA RMSD there is at most ``fill_max_rmsd``. Returns bool [L]: the
    residues filled."""
    L = len(filled)
    take = np.zeros(L, bool)
    for a, b in _runs(tc.mask & ~filled):
        both = filled & tc.mask
        idx = np.asarray([i for i in range(max(0, a - config.anchor), min(L, b + config.anchor))
                          if both[i]], np.int64)
        if len(idx) < 3:
            continue
        rot, trans = kabsch(tc.ca[idx], bb[idx, 1])
        fit = tc.ca[idx] @ rot.T + trans
        if np.sqrt(np.mean(np.sum((fit - bb[idx, 1]) ** 2, -1))) > config.fill_max_rmsd:
            continue
        bb[a:b] = (tc.backbone[a:b].astype(np.float64) @ rot.T + trans).astype(np.float32)
        take[a:b] = True
    return take


def model_from_templates(prediction: Protein, plddt: np.ndarray, hits: Sequence[TemplateHit],
                         library: Dataset | TemplateIndex | str | os.PathLike, *,
                         config: TemplateModelConfig = TemplateModelConfig()) -> TemplateModel:
    """A refined model of the query from ``hits`` and the network's prediction (see the
    module docstring).

    Args:
      prediction: the network's model of the query (``L`` residues; N, CA, C, O at least).
      plddt: [L] the network's pLDDT (0-100).
      hits: template hits for the query, best first (``search_templates``).
      library: the template library the hits index into (``Dataset``, ``TemplateIndex`` or a
        dataset folder).
      config: ``TemplateModelConfig``.
    """
    plddt = np.asarray(plddt, np.float64).reshape(-1)
    L = prediction.length
    if plddt.shape != (L,):
        raise InputError(f"templates: pLDDT has {plddt.size} values for {L} residues")
    skipped: list[dict] = []
    if not hits:
        return _fallback(prediction, plddt, "no template hits", skipped)
    ds = open_library(library)
    coords: list[TemplateCoords] = []
    for hit in hits:
        if len(coords) >= config.max_templates:
            break
        if np.asarray(hit.query_to_template).shape != (L,):
            raise InputError(f"template {hit.chain_id}: its residue map has "
                             f"{np.size(hit.query_to_template)} positions for a query of {L}")
        tc = template_coords(hit, ds)
        if tc.aligned < config.min_aligned:
            skipped.append({"chain_id": hit.chain_id, "why": f"{tc.aligned} aligned residues "
                            f"(fewer than {config.min_aligned})"})
            continue
        coords.append(tc)
    if not coords:
        what = "; ".join(f"{s['chain_id']}: {s['why']}" for s in skipped)
        return _fallback(prediction, plddt, f"no usable template ({what})", skipped)

    # 1. Copy: the best template, then runs it leaves empty from the others, where they fit.
    bb = np.zeros((L, 4, 3), np.float32)
    bb_mask = np.zeros((L, 4), np.float32)
    source = np.full(L, -1, np.int32)
    used: list[TemplateCoords] = []
    for tc in coords:
        if not used:
            take = tc.mask
            bb[take], bb_mask[take] = tc.backbone[take], tc.atom_mask[take]
        else:
            take = _fill_runs(bb, source >= 0, tc, config)
            if not take.any():
                skipped.append({"chain_id": tc.hit.chain_id, "why": "fits no empty run of the "
                                f"model within {config.fill_max_rmsd} A on its anchors"})
                continue
            bb_mask[take] = tc.atom_mask[take]
        source[take] = len(used)
        used.append(tc)
    filled = source >= 0

    # 2. Fill: the network's residues in the runs no template covers.
    net_bb = np.asarray(prediction.atom_positions[:, BACKBONE37], np.float32)
    net_mask = np.asarray(prediction.atom_mask[:, BACKBONE37], np.float32)
    bb = _place_network(bb, filled, net_bb, config.anchor)
    bb_mask[~filled] = net_mask[~filled]

    # 3. Close: junctions and breaks in the copied backbone, at the CA level.
    cn = np.linalg.norm(bb[1:, 0] - bb[:-1, 2], axis=-1)
    breaks = filled[1:] & filled[:-1] & (cn > config.break_distance)
    junctions = filled[1:] != filled[:-1]
    soft = np.zeros(L, bool)
    for k in np.nonzero(breaks | junctions)[0]:
        soft[max(0, k + 1 - config.junction): k + 1 + config.junction] = True
    soft &= filled
    weight = np.where(filled, 1.0, config.network_weight)
    weight[soft] = config.junction_weight
    relaxed = relax_ca(bb[:, 1], np.ones(L - 1, bool), weight.astype(np.float32),
                       config.coarse)
    bb = bb + (relaxed.ca - bb[:, 1])[:, None, :] * (bb_mask[..., None] > 0)

    # 4. Refine, restrained by the pseudo-confidence.
    conf = plddt.copy()
    for k, tc in enumerate(used):
        sel = source == k
        conf[sel] = np.maximum(template_confidence(tc.hit.identity, config), plddt[sel])
    conf[soft] = 0.5 * (conf[soft] + plddt[soft])
    start = from_backbone(prediction.aatype, bb, bb_mask,
                          residue_index=prediction.residue_index, chain_id=prediction.chain_id)
    refined, rep = refine(start, conf, config=config.refine, source="template model")
    passes = 1
    if rep.violations_after > 0:  # a second pass from where the first stopped
        refined, rep = refine(refined, conf, config=config.refine, source="template model")
        passes = 2

    templates = []
    for k, tc in enumerate(used):
        d = tc.hit.as_dict()
        d["used"] = int((source == k).sum())
        templates.append(d)
    report = {
        "templates": templates, "skipped": skipped, "fallback": None,
        "residues_from_templates": int(filled.sum()), "residues_from_network": int(L -
                                                                                   filled.sum()),
        "breaks_closed": int(breaks.sum()),
        "ca_relax": {"steps": relaxed.steps, "ca_rmsd": round(relaxed.ca_rmsd, 3),
                     "violations_before": relaxed.violations_before,
                     "violations_after": relaxed.violations_after},
        "refine": {"violations_after": rep.violations_after, "clashes_after": rep.clashes_after,
                   "steps": rep.steps, "passes": passes, "collapsed_start": rep.collapsed_start,
                   "time_s": round(rep.time_s, 2)},
    }
    return TemplateModel(protein=refined.with_plddt(conf), confidence=conf,
                         template_index=source, used=True, report=report, refine_report=rep)
