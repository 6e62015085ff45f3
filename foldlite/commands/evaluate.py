"""``foldlite evaluate``: score predictions against real structures, next to trivial baselines.

    foldlite evaluate --weights W --split test [--dataset DIR] [--no-profile] [--max-chains N]
    foldlite evaluate --weights W --structures DIR
    foldlite evaluate --split test --templates [remote] [relatives] [--library DIR]

The chains of a dataset split (predicted from the sequence and the profile, unless
``--no-profile`` or the chain has none) or of structure files (sequence only), scored by
``foldlite.train.evaluate`` with the weights' ``Predictor`` (``foldlite.model.inference``).
Writes ``evaluation.json`` (per-chain and mean values, settings) and ``evaluation.csv`` (one row
per chain and method) into ``--out`` and prints a summary table.

With ``--templates``: the split's chains modelled from templates of the library
(``foldlite.search.template_benchmark``) in the remote setting (training-split templates only)
and/or the relatives setting (any library chain but the chain itself and chains >= 95% identical
to it), scored with lDDT-CA, TM-score and GDT_TS next to the network alone and the best
template's own aligned backbone; writes ``templates.json`` into ``--out`` and prints a Markdown
table of medians (means in parentheses), overall and on the chains with a template of >= 30%
identity and >= 70% coverage.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import os
import sys
import time
from pathlib import Path

from foldlite import fileio
from foldlite.data.dataset import Dataset
from foldlite.data.splits import read_split, resolve_splits_prefix
from foldlite.errors import InputError
from foldlite.model.inference import Predictor
from foldlite.model.weights_io import default_weights_path, load_weights
from foldlite.search import template_benchmark as tb
from foldlite.search.template_model import TemplateModelConfig
from foldlite.search.templates import DEFAULT_LIBRARY, open_index
from foldlite.train.evaluate import (METHODS, METRIC_NAMES, evaluate_examples,
                                     examples_from_dataset, examples_from_structures)


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
    parser.add_argument("--templates", nargs="*", choices=tb.SETTINGS, metavar="SETTING",
                        help="with --split: evaluate template models in these settings (remote: "
                             "training-split templates only; relatives: any library chain but "
                             "the chain itself and chains >= 95%% identical; default both)")
    parser.add_argument("--library", default=str(DEFAULT_LIBRARY), metavar="DIR",
                        help=f"template library for --templates (default {DEFAULT_LIBRARY}, "
                             "the ProMod3 dataset)")
    parser.add_argument("--max-templates", type=int, default=TemplateModelConfig.max_templates,
                        help="templates combined per chain with --templates (default "
                             f"{TemplateModelConfig.max_templates})")


def _dataset_and_splits(args: argparse.Namespace, weights: Path, meta: dict
                        ) -> tuple[str, str | None]:
    """The dataset and split set of ``--split``: given, else the weights' (recorded as
    ``evaluation_data`` when they were trained on a derived subset, else the training data)."""
    data_cfg = meta.get("evaluation_data") or meta.get("train_config", {}).get("data", {})
    dataset = args.dataset or data_cfg.get("path")
    if not dataset:
        raise InputError(f"{weights}: no dataset recorded in the weights; pass --dataset")
    return dataset, args.splits or data_cfg.get("splits")


def run_templates(args: argparse.Namespace, weights: Path, predictor: Predictor, meta: dict
                  ) -> int:
    """``--templates``: the template benchmark on the split's chains (module docstring)."""
    if args.structures or not args.split:
        raise InputError("--templates needs --split (the remote setting needs the training "
                         "split)")
    if args.max_templates < 1:
        raise InputError("--max-templates must be at least 1")
    dataset, splits = _dataset_and_splits(args, weights, meta)
    prefix = resolve_splits_prefix(splits or "promod3")
    index = open_index(args.library)
    ids = read_split(f"{prefix}_{args.split}.txt")
    train_ids = read_split(f"{prefix}_train.txt")
    records = tb.protocol_records(Dataset(Path(dataset).expanduser()), ids,
                                  max_chains=args.max_chains,
                                  min_length=args.min_length, max_length=args.max_length)
    if not records:
        raise InputError("no chains to evaluate (check the split and the length limits)")
    config = tb.BenchmarkConfig(
        settings=tuple(args.templates or tb.SETTINGS), max_hits=args.max_templates,
        model=dataclasses.replace(TemplateModelConfig(), max_templates=args.max_templates))
    network = tb.predictor_network(predictor, use_profile=not args.no_profile)

    def progress(row: dict) -> None:
        if args.progress:
            b = row["best"]
            best = f"{b['chain_id']} ({100 * b['identity']:.0f}% id)" if b else "no template"
            print(f"{row['chain_id']} {row['setting']}: {best}, TM network "
                  f"{row['network']['tm_score']:.3f}, with templates "
                  f"{row['templates']['tm_score']:.3f}", file=sys.stderr)

    t0 = time.time()
    result = tb.benchmark_templates(records, network, index, train_ids, config, progress)
    result = {"weights": str(weights), "weights_sha256": predictor.sha256,
              "num_recycles": predictor.num_recycles, "dataset": str(dataset),
              "split": args.split, "splits": str(prefix), "library": str(index.dataset),
              "profile": not args.no_profile, "seconds": time.time() - t0, **result}
    print(tb.format_table(result["summary"]))
    if args.out:
        out = Path(args.out)
        fileio.write_json(out / "templates.json", result)
        print(f"wrote {out / 'templates.json'}", file=sys.stderr)
    return 0


def run(args: argparse.Namespace) -> int:
    weights = Path(args.weights) if args.weights else default_weights_path()
    params, model_cfg, meta = load_weights(weights)
    recycles = model_cfg.recycle.num_recycles if args.recycles is None else args.recycles
    predictor = Predictor(model_cfg, params, num_recycles=recycles, name=weights.name,
                          path=weights, sha256=fileio.sha256_file(weights), meta=meta)
    if args.templates is not None:
        return run_templates(args, weights, predictor, meta)
    if args.structures:
        examples = examples_from_structures(args.structures, args.max_chains)
        source = {"structures": str(args.structures)}
    else:
        dataset, splits = _dataset_and_splits(args, weights, meta)
        examples = examples_from_dataset(dataset, args.split, splits=splits,
                                         use_profile=not args.no_profile,
                                         max_chains=args.max_chains, min_length=args.min_length,
                                         max_length=args.max_length)
        source = {"dataset": str(dataset), "split": args.split, "splits": splits,
                  "profile": not args.no_profile,
                  "min_length": args.min_length, "max_length": args.max_length}
    if not examples:
        raise InputError("no chains to evaluate (check the split and the length limits)")
    t0 = time.time()
    workers = min(4, os.cpu_count() or 1) if args.workers is None else max(0, args.workers)
    if len(examples) < 4:
        workers = 0  # starting worker processes costs more than it saves
    summary = evaluate_examples(predictor, examples, seed=args.seed, progress=args.progress,
                                workers=workers)
    summary = {"weights": str(weights), "weights_sha256": predictor.sha256,
               "num_recycles": recycles, "seconds": time.time() - t0, **source, **summary}
    print(format_table(summary))
    if args.out:
        out = Path(args.out)
        fileio.write_json(out / "evaluation.json", summary)
        fileio.write_text(out / "evaluation.csv", to_csv(summary))
        print(f"wrote {out / 'evaluation.json'} and {out / 'evaluation.csv'}", file=sys.stderr)
    return 0
