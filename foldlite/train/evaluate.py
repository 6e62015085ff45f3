"""``foldlite evaluate``: score predictions against real structures, next to trivial baselines.

    foldlite evaluate --weights W --split test [--dataset DIR] [--no-profile] [--max-chains N]
    foldlite evaluate --weights W --structures DIR

For every chain: predict the CA trace from the sequence (and the profile, unless
``--no-profile`` or the chain has none) and compute lDDT-CA, TM-score, GDT_TS and RMSD against
the true structure (``foldlite.metrics``). Two baselines are scored on the same chains in the
same run: an ideal alpha helix and a random chain walk (3.8 A steps), which give the floor that
a model must clear. The Pearson correlation of the predicted pLDDT with the true lDDT-CA is
reported per residue (pooled over chains) and per chain (chain means).

Writes ``evaluation.json`` (per-chain and mean values, settings) and ``evaluation.csv`` (one row
per chain and method) into ``--out`` and prints a summary table.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import os
import sys
import time
import zlib
from pathlib import Path
from typing import Any, Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from foldlite import constants as rc
from foldlite import fileio
from foldlite import metrics
from foldlite.data.features import Features, length_bucket, make_features
from foldlite.errors import InputError

METRIC_NAMES = ("lddt_ca", "tm_score", "gdt_ts", "rmsd")
METHODS = ("model", "helix", "random_walk")


# --------------------------------------------------------------------------------------------
# Examples and baselines
# --------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class EvalExample:
    """One chain to predict and score.

    Attributes:
      chain_id: name in reports.
      features: unpadded ``Features`` [L] (profile or one-hot).
      true_ca: [L, 3] true CA positions; ``ca_mask`` [L] where they exist.
    """

    chain_id: str
    features: Features
    true_ca: np.ndarray
    ca_mask: np.ndarray

    @property
    def length(self) -> int:
        return int(self.true_ca.shape[0])


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
# Prediction
# --------------------------------------------------------------------------------------------

_PREDICT_FNS: dict[Any, Any] = {}


def _predict_fn(model_cfg: Any) -> Any:
    """Jitted ``(params, features, num_recycles) -> outputs`` for a model config (cached)."""
    from foldlite.train.trainer import compiler_options

    opts = compiler_options()
    key = (model_cfg, tuple(sorted((opts or {}).items())))
    if key not in _PREDICT_FNS:
        from foldlite.model import make_model
        from foldlite.model.heads import plddt_from_logits, ptm_from_logits

        model = make_model(model_cfg)

        def fn(params, features, num_recycles):
            out = model.apply(params, None, features, num_recycles, is_training=False)
            return {"ca": out.frames.trans, "atom37": out.atom37, "atom37_mask": out.atom37_mask,
                    "plddt": plddt_from_logits(out.plddt_logits),
                    "ptm": ptm_from_logits(out.pae_logits, features.mask)}

        _PREDICT_FNS[key] = jax.jit(fn, compiler_options=opts)
    return _PREDICT_FNS[key]


class Predictor:
    """Runs a model on unbatched examples padded to length buckets (one compilation per bucket
    and model config in a process).

    Args:
      model_cfg: the ``ModelConfig``.
      params: its parameters.
      num_recycles: recycles at inference.
      buckets: the padded lengths (default: ``length_bucket``'s); one bucket, e.g. ``(256,)``,
        compiles the model once for every chain up to that length.
    """

    def __init__(self, model_cfg: Any, params: Any, num_recycles: int = 3,
                 buckets: tuple[int, ...] | None = None):
        self.params = jax.device_put(params)
        self.num_recycles = int(num_recycles)
        self.buckets = tuple(buckets) if buckets else None
        self._fn = _predict_fn(model_cfg)

    def __call__(self, features: Features) -> dict[str, np.ndarray]:
        """Predict one chain (``Features`` [L], unpadded). Returns numpy arrays cut to ``L``:
        ``ca`` [L, 3], ``atom37`` [L, 37, 3], ``atom37_mask`` [L, 37], ``plddt`` [L] (0-100),
        ``ptm`` []."""
        L = int(np.asarray(features.aatype).shape[0])
        n = length_bucket(L, self.buckets) if self.buckets else length_bucket(L)
        padded = _pad_features(features, n)
        out = jax.device_get(self._fn(self.params, padded, jnp.int32(self.num_recycles)))
        return {k: (np.asarray(v)[:L] if np.ndim(v) else np.asarray(v)) for k, v in out.items()}


def _pad_features(f: Features, n: int) -> Features:
    L = int(np.asarray(f.aatype).shape[0])
    if n == L:
        return jax.tree_util.tree_map(np.asarray, f)
    prof = np.asarray(f.profile) if float(np.asarray(f.has_profile)) > 0 else None
    return make_features(np.asarray(f.aatype), prof, np.asarray(f.residue_index), pad_to=n)


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


def evaluate_examples(predictor: Predictor, examples: Iterable[EvalExample], *,
                      baselines: bool = True, seed: int = 0, progress: bool = False,
                      workers: int = 0) -> dict[str, Any]:
    """Predict and score every example; baselines on the same chains.

    Args:
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
        from tqdm import tqdm
        it = tqdm(examples, desc="evaluate", dynamic_ncols=True)
    pool = None
    if workers > 0:
        import concurrent.futures
        import multiprocessing
        pool = concurrent.futures.ProcessPoolExecutor(
            max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
    scores = []
    try:
        for ex in it:
            t0 = time.time()
            out = predictor(ex.features)
            dt = time.time() - t0
            mask = np.asarray(ex.ca_mask, np.float32)
            args = (out["ca"], ex.true_ca, mask, ex.chain_id, baselines, seed)
            scores.append(pool.submit(score_chain, *args) if pool else score_chain(*args))
            rec: dict[str, Any] = {"chain_id": ex.chain_id, "length": ex.length,
                                   "has_profile": bool(float(np.asarray(
                                       ex.features.has_profile)))}
            per_res = np.asarray(metrics.lddt_ca(out["ca"], ex.true_ca, mask, per_residue=True))
            plddt = np.asarray(out["plddt"], np.float64) / 100.0
            sel = (mask > 0) & np.isfinite(per_res)
            res_plddt.extend(plddt[sel].tolist())
            res_lddt.extend(per_res[sel].tolist())
            rec["mean_plddt"] = float(np.mean(plddt[mask > 0])) * 100.0
            rec["ptm"] = float(out["ptm"])
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
    from foldlite.data.dataset import Dataset
    from foldlite.train.batches import resolve_path, split_chain_indices

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


def example_from_record(rec: Any, use_profile: bool = True) -> EvalExample:
    """``EvalExample`` of a dataset ``ChainRecord``."""
    profile = rec.profile if (use_profile and rec.profile is not None) else None
    ca = rc.atom_order["CA"]
    feats = make_features(rec.aatype, profile, rec.residue_index)
    return EvalExample(rec.chain_id, feats, np.asarray(rec.atom_positions[:, ca], np.float32),
                       np.asarray(rec.atom_mask[:, ca], np.float32))


def examples_from_structures(directory: str | Path, max_chains: int | None = None
                             ) -> list[EvalExample]:
    """One example per protein chain of every mmCIF/PDB file below ``directory`` (sorted),
    predicted from the sequence alone."""
    from foldlite.data.structures import entry_name, find_structure_files
    from foldlite.protein import read_structure_chains

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


# --------------------------------------------------------------------------------------------
# Reports
# --------------------------------------------------------------------------------------------

def to_csv(summary: dict) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["chain_id", "length", "has_profile", "method", *METRIC_NAMES, "mean_plddt",
                "ptm"])
    for r in summary["chains"]:
        for m in METHODS:
            if m not in r:
                continue
            extra = ([f"{r['mean_plddt']:.2f}", f"{r['ptm']:.4f}"] if m == "model" else ["", ""])
            w.writerow([r["chain_id"], r["length"], int(r["has_profile"]), m,
                        *(f"{r[m][k]:.4f}" for k in METRIC_NAMES), *extra])
    return buf.getvalue()


def format_table(summary: dict) -> str:
    lines = [f"{summary['num_chains']} chains",
             f"{'method':<12}" + "".join(f"{k:>10}" for k in METRIC_NAMES)]
    for m, vals in summary["mean"].items():
        lines.append(f"{m:<12}" + "".join(f"{vals[k]:>10.3f}" for k in METRIC_NAMES))
    pr, pc = summary["plddt_pearson_residue"], summary["plddt_pearson_chain"]
    lines.append("pLDDT vs lDDT-CA Pearson r: per residue "
                 f"{'n/a' if pr is None else f'{pr:.3f}'}, per chain "
                 f"{'n/a' if pc is None else f'{pc:.3f}'}")
    return "\n".join(lines)


def default_weights_path() -> Path:
    """The weights shipped inside the package (``foldlite/weights/*.npz``)."""
    import foldlite
    wdir = Path(foldlite.__file__).resolve().parent / "weights"
    found = sorted(wdir.glob("*.npz"))
    if not found:
        raise InputError(f"no --weights given and no shipped weights in {wdir}")
    return found[0]


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", default=None,
                        help="weights .npz (default: the weights shipped with foldlite)")
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--split", help="evaluate the chains of this dataset split (e.g. test)")
    src.add_argument("--structures", metavar="DIR",
                     help="evaluate every mmCIF/PDB chain below DIR (sequence only)")
    parser.add_argument("--dataset", default=None,
                        help="dataset folder for --split (default: the one the weights were "
                             "trained on, from their metadata)")
    parser.add_argument("--splits", default=None, metavar="PREFIX",
                        help="split files prefix ({PREFIX}_test.txt; default: the training "
                             "config's, from the weights' metadata)")
    parser.add_argument("--no-profile", action="store_true",
                        help="predict from the sequence alone (ignore dataset profiles)")
    parser.add_argument("--max-chains", type=int, default=None, help="evaluate at most N chains")
    parser.add_argument("--min-length", type=int, default=50,
                        help="skip chains shorter than this (default 50)")
    parser.add_argument("--max-length", type=int, default=400,
                        help="skip chains longer than this (default 400)")
    parser.add_argument("--recycles", type=int, default=None,
                        help="recycles (default: the model config's)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random-walk baseline")
    parser.add_argument("--out", default=None,
                        help="folder for evaluation.json and evaluation.csv (default: print only)")
    parser.add_argument("--workers", type=int, default=None,
                        help="processes that compute the scores while the model predicts "
                             "(default: the number of CPUs, at most 4; 0: none)")
    parser.add_argument("--progress", action="store_true", help="show a progress bar")


def run(args: argparse.Namespace) -> int:
    from foldlite.train.checkpoint import load_weights

    weights = Path(args.weights) if args.weights else default_weights_path()
    params, model_cfg, meta = load_weights(weights)
    if args.structures:
        examples = examples_from_structures(args.structures, args.max_chains)
        source = {"structures": str(args.structures)}
    else:
        # The dataset and splits the weights are evaluated on: recorded as ``evaluation_data``
        # when they were trained on a derived subset (fine-tuning), else the training data.
        data_cfg = meta.get("evaluation_data") or meta.get("train_config", {}).get("data", {})
        dataset = args.dataset or data_cfg.get("path")
        splits = args.splits or data_cfg.get("splits")
        if not dataset:
            raise InputError(f"{weights}: no dataset recorded in the weights; pass --dataset")
        examples = examples_from_dataset(dataset, args.split, splits=splits,
                                         use_profile=not args.no_profile,
                                         max_chains=args.max_chains, min_length=args.min_length,
                                         max_length=args.max_length)
        source = {"dataset": str(dataset), "split": args.split, "splits": splits,
                  "profile": not args.no_profile,
                  "min_length": args.min_length, "max_length": args.max_length}
    if not examples:
        raise InputError("no chains to evaluate (check the split and the length limits)")
    recycles = model_cfg.recycle.num_recycles if args.recycles is None else args.recycles
    predictor = Predictor(model_cfg, params, num_recycles=recycles)
    t0 = time.time()
    workers = min(4, os.cpu_count() or 1) if args.workers is None else max(0, args.workers)
    if len(examples) < 4:
        workers = 0  # starting worker processes costs more than it saves
    summary = evaluate_examples(predictor, examples, seed=args.seed, progress=args.progress,
                                workers=workers)
    summary = {"weights": str(weights), "weights_sha256": fileio.sha256_file(weights),
               "num_recycles": recycles, "seconds": time.time() - t0, **source, **summary}
    print(format_table(summary))
    if args.out:
        out = Path(args.out)
        fileio.write_json(out / "evaluation.json", summary)
        fileio.write_text(out / "evaluation.csv", to_csv(summary))
        print(f"wrote {out / 'evaluation.json'} and {out / 'evaluation.csv'}", file=sys.stderr)
    return 0
