"""Evaluation: score predictions against real structures, next to trivial baselines.

For every chain (``EvalExample``): predict the CA trace from the sequence (and the profile, when
the example has one) with a ``foldlite.model.inference.Predictor`` and compute lDDT-CA,
TM-score, GDT_TS and RMSD against the true structure (``foldlite.metrics``). Two baselines are
scored on the same chains in the same run: an ideal alpha helix and a random chain walk (3.8 A
steps), which give the floor that a model must clear. The Pearson correlation of the predicted
pLDDT with the true lDDT-CA is reported per residue (pooled over chains) and per chain (chain
means).

``foldlite evaluate`` (``foldlite.commands.evaluate``) and the trainer's validation run
``evaluate_examples``; the examples come from a dataset split (``examples_from_dataset``) or
from structure files (``examples_from_structures``).
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import time
import zlib
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
from tqdm import tqdm

from foldlite import metrics
from foldlite.data.dataset import Dataset
from foldlite.data.features import make_features
from foldlite.data.structures import entry_name, find_structure_files
from foldlite.errors import InputError
from foldlite.protein import read_structure_chains
from foldlite.train.batches import (EvalExample, example_from_record, resolve_path,
                                    split_chain_indices)

METRIC_NAMES = ("lddt_ca", "tm_score", "gdt_ts", "rmsd")
METHODS = ("model", "helix", "random_walk")


# --------------------------------------------------------------------------------------------
# Baselines and scores
# --------------------------------------------------------------------------------------------

def ideal_helix_ca(length: int) -> np.ndarray:
    """[L, 3] CA trace of an ideal alpha helix: radius 2.3 A, rise 1.5 A and 100 degrees per
    residue (3.6 residues per turn; consecutive CA 3.8 A apart)."""
    i = np.arange(length, dtype=np.float64)
    t = np.deg2rad(100.0) * i
    return np.stack([2.3 * np.cos(t), 2.3 * np.sin(t), 1.5 * i], -1).astype(np.float32)


def random_walk_ca(length: int, seed: int) -> np.ndarray:
    """[L, 3] random chain walk: 3.8 A steps in directions uniform on the sphere, except that a
    step never turns back by more than 90 degrees from the previous one (no chain reversal)."""
    rng = np.random.default_rng(seed)
    pos = np.zeros((length, 3))
    prev = None
    for k in range(1, length):
        while True:
            d = rng.normal(size=3)
            d /= np.linalg.norm(d)
            if prev is None or d @ prev > 0.0:
                break
        pos[k] = pos[k - 1] + 3.8 * d
        prev = d
    return pos.astype(np.float32)


def score_ca(pred_ca: np.ndarray, true_ca: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """lDDT-CA, TM-score, GDT_TS and RMSD (after superposition) of a CA trace over ``mask``."""
    mask = np.asarray(mask, np.float32)
    return {
        "lddt_ca": float(metrics.lddt_ca(pred_ca, true_ca, mask)),
        "tm_score": float(metrics.tm_score(pred_ca, true_ca, mask)),
        "gdt_ts": float(metrics.gdt_ts(pred_ca, true_ca, mask)),
        "rmsd": float(metrics.rmsd(pred_ca, true_ca, mask)),
    }


def _pearson(x: Sequence[float], y: Sequence[float]) -> float | None:
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) < 3 or x.std() == 0 or y.std() == 0:
        return None
    return float(np.corrcoef(x, y)[0, 1])


# --------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------

def score_chain(pred_ca: np.ndarray, true_ca: np.ndarray, mask: np.ndarray, chain_id: str,
                baselines: bool = True, seed: int = 0) -> dict[str, dict[str, float]]:
    """Scores of a predicted CA trace and, with ``baselines``, of the ideal helix and the random
    walk (seeded by ``seed`` and the chain id) on the same chain: ``{method: metrics}``."""
    out = {"model": score_ca(pred_ca, true_ca, mask)}
    if baselines:
        n = len(true_ca)
        out["helix"] = score_ca(ideal_helix_ca(n), true_ca, mask)
        walk_seed = zlib.crc32(f"{seed}:{chain_id}".encode())
        out["random_walk"] = score_ca(random_walk_ca(n, walk_seed), true_ca, mask)
    return out


def evaluate_examples(predictor: Callable, examples: Iterable[EvalExample], *,
                      baselines: bool = True, seed: int = 0, progress: bool = False,
                      workers: int = 0) -> dict[str, Any]:
    """Predict and score every example; baselines on the same chains.

    Args:
      predictor: ``features [L] -> result`` with ``ca`` [L, 3], ``plddt`` [L] (0-100) and
        ``ptm`` (a ``foldlite.model.inference.Predictor``).
      workers: score in this many worker processes while the model predicts the next chains
        (0: score in this process). TM-score and GDT searches dominate the time on CPU.

    Returns a dict with ``chains`` (one record per chain: id, length, has_profile, ``model``,
    ``helix``, ``random_walk`` metric dicts, mean pLDDT, pTM, seconds), ``mean`` (per method, the
    mean of every metric over chains), ``plddt_pearson_residue`` and ``plddt_pearson_chain``.
    """
    examples = list(examples)
    rows = []
    res_plddt: list[float] = []
    res_lddt: list[float] = []
    it = examples
    if progress:
        it = tqdm(examples, desc="evaluate", dynamic_ncols=True)
    pool = None
    if workers > 0:
        pool = concurrent.futures.ProcessPoolExecutor(
            max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
    scores = []
    try:
        for ex in it:
            t0 = time.time()
            out = predictor(ex.features)
            dt = time.time() - t0
            mask = np.asarray(ex.ca_mask, np.float32)
            args = (out.ca, ex.true_ca, mask, ex.chain_id, baselines, seed)
            scores.append(pool.submit(score_chain, *args) if pool else score_chain(*args))
            rec: dict[str, Any] = {"chain_id": ex.chain_id, "length": ex.length,
                                   "has_profile": bool(float(np.asarray(
                                       ex.features.has_profile)))}
            per_res = np.asarray(metrics.lddt_ca(out.ca, ex.true_ca, mask, per_residue=True))
            plddt = np.asarray(out.plddt, np.float64) / 100.0
            sel = (mask > 0) & np.isfinite(per_res)
            res_plddt.extend(plddt[sel].tolist())
            res_lddt.extend(per_res[sel].tolist())
            rec["mean_plddt"] = float(np.mean(plddt[mask > 0])) * 100.0
            rec["ptm"] = float(out.ptm)
            rec["seconds"] = dt
            rows.append(rec)
        for rec, sc in zip(rows, scores):
            rec.update(sc.result() if pool else sc)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    methods = [m for m in METHODS if rows and m in rows[0]]
    mean = {m: {k: float(np.mean([r[m][k] for r in rows])) for k in METRIC_NAMES}
            for m in methods}
    if rows:
        mean["model"]["mean_plddt"] = float(np.mean([r["mean_plddt"] for r in rows]))
        mean["model"]["ptm"] = float(np.mean([r["ptm"] for r in rows]))
    return {
        "num_chains": len(rows),
        "mean": mean,
        "plddt_pearson_residue": _pearson(res_plddt, res_lddt),
        "plddt_pearson_chain": _pearson([r["mean_plddt"] for r in rows],
                                        [r["model"]["lddt_ca"] for r in rows]),
        "chains": rows,
    }


def examples_from_dataset(path: str | Path, split: str, *, splits: str | None = None,
                          use_profile: bool = True, max_chains: int | None = None,
                          min_length: int = 1, max_length: int | None = None
                          ) -> list[EvalExample]:
    """Chains of ``split`` of the dataset at ``path`` (in split order), filtered by length.

    ``split``/``splits``: as in ``foldlite.train.batches.split_chain_indices``."""
    ds = Dataset(resolve_path(path))
    out = []
    for i in split_chain_indices(ds, split, splits):
        L = int(ds.lengths[i])
        if L < min_length or (max_length is not None and L > max_length):
            continue
        out.append(example_from_record(ds[int(i)], use_profile))
        if max_chains is not None and len(out) >= max_chains:
            break
    return out


def examples_from_structures(directory: str | Path, max_chains: int | None = None
                             ) -> list[EvalExample]:
    """One example per protein chain of every mmCIF/PDB file below ``directory`` (sorted),
    predicted from the sequence alone."""
    files = find_structure_files(directory)
    if not files:
        raise InputError(f"{directory}: no .cif/.pdb files found")
    out = []
    for path in files:
        for prot in read_structure_chains(path):
            if prot.length < 2 or prot.ca_mask.sum() < 2:
                continue
            feats = make_features(prot.aatype, None, prot.residue_index)
            out.append(EvalExample(f"{entry_name(path)}_{prot.chain_id}", feats,
                                   prot.ca_positions.astype(np.float32),
                                   prot.ca_mask.astype(np.float32)))
            if max_chains is not None and len(out) >= max_chains:
                return out
    return out
