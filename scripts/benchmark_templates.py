"""Templates on the test split (issue 17, item 5): the network alone, the network with
templates, and the template's own backbone, in the remote and relatives settings.

    PYTHONPATH=. python3 scripts/benchmark_templates.py [--settings remote relatives]
        [--max-chains 48] [--max-templates 4] [--no-profile] [--json OUT.json]
        [--network-cache DIR]

Chains: the model card's test protocol (``foldlite.train.campaign.TEST_PROTOCOL``: the first 48
test chains of 50-400 residues, 3 recycles), the shipped weights, the chain's profile as input
(the stand-in for an MSA, as ``foldlite evaluate``) unless ``--no-profile``. The library is the
ProMod3 dataset and its template index (``foldlite templates index``). Prints one line per
chain and setting, then the table of ``template_benchmark.format_table`` (medians, means in
parentheses). ``--network-cache`` keeps each chain's network output (keyed by weights, chain,
profile, recycles) so that a rerun with other template settings does not predict again.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

from foldlite.data.dataset import Dataset
from foldlite.data.splits import read_split, resolve_splits_prefix
from foldlite.fileio import write_json
from foldlite.model.inference import load_predictor
from foldlite.search import template_benchmark as tb
from foldlite.search.template_model import TemplateModelConfig
from foldlite.search.templates import DEFAULT_LIBRARY, open_index
from foldlite.train.campaign import TEST_PROTOCOL


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--library", default=str(DEFAULT_LIBRARY),
                    help="the template library (a dataset folder; default the ProMod3 dataset)")
    ap.add_argument("--splits", default="promod3",
                    help="split set: a shipped name (promod3) or a path prefix")
    ap.add_argument("--weights", default=None, help="default: the shipped weights")
    ap.add_argument("--settings", nargs="+", default=list(tb.SETTINGS), choices=tb.SETTINGS)
    ap.add_argument("--max-chains", type=int, default=TEST_PROTOCOL["max_chains"])
    ap.add_argument("--skip", type=int, default=0, help="skip the first N protocol chains")
    ap.add_argument("--max-templates", type=int, default=TemplateModelConfig.max_templates)
    ap.add_argument("--no-profile", action="store_true")
    ap.add_argument("--json", default=None, help="write every row and the summary here")
    ap.add_argument("--network-cache", type=Path, default=None)
    args = ap.parse_args()

    index = open_index(args.library)
    ds = Dataset(index.dataset)
    splits = resolve_splits_prefix(args.splits)
    test_ids = read_split(f"{splits}_test.txt")
    train_ids = read_split(f"{splits}_train.txt")
    records = tb.protocol_records(ds, test_ids, max_chains=args.max_chains + args.skip,
                                  min_length=TEST_PROTOCOL["min_length"],
                                  max_length=TEST_PROTOCOL["max_length"])[args.skip:]
    predictor = load_predictor(args.weights)
    network = tb.predictor_network(predictor, use_profile=not args.no_profile,
                                   num_recycles=TEST_PROTOCOL["recycles"],
                                   cache=args.network_cache)
    config = tb.BenchmarkConfig(settings=tuple(args.settings), max_hits=args.max_templates,
                                model=dataclasses.replace(TemplateModelConfig(),
                                                          max_templates=args.max_templates))
    t0 = time.perf_counter()

    def progress(r: dict) -> None:
        b = r["best"]
        tmpl = (f"{b['chain_id']} id {b['identity']:.2f} cov {b['coverage']:.2f}"
                if b else "no template")
        rep = r["report"].get("refine", {})
        print(f"{r['chain_id']:>8} {r['length']:>4} {r['setting']:<9} {tmpl:<28} "
              f"lDDT-CA net {r['network']['lddt_ca']:.3f} tmpl-model "
              f"{r['templates']['lddt_ca']:.3f} tmpl-only {r['template_only']['lddt_ca']:.3f} | "
              f"TM {r['network']['tm_score']:.3f} {r['templates']['tm_score']:.3f} "
              f"{r['template_only']['tm_score']:.3f} | viol {rep.get('violations_after', '-')} "
              f"| {sum(r['seconds'].values()):.0f} s", flush=True)

    result = tb.benchmark_templates(records, network, index, train_ids, config, progress)
    print(f"\n{len(records)} chains, {time.perf_counter() - t0:.0f} s; weights "
          f"{args.weights or 'shipped'}, profile {'off' if args.no_profile else 'on'}, "
          f"max templates {args.max_templates}\n")
    print(tb.format_table(result["summary"]))
    if args.json:
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
