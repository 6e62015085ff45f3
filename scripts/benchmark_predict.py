#!/usr/bin/env python3
"""Benchmark `foldlite predict`: time per stage and peak memory for several sequence lengths.

Each length runs in its own process (so the peak memory is that length's), which predicts one
record end to end twice with ``predict_batch`` -- parse, features, model, refinement, outputs:

* ``first``: the first run in a fresh process. The executable comes from JAX's persistent
  compilation cache when an earlier run filled it (run the script twice to see that case), else
  it is compiled;
* ``warm``: the same record again in the same process (compiled code in memory);
* ``cli`` (with ``--cli`` and ``--weights``): ``python -m foldlite predict`` of the sequence in
  a new process once the runs above have filled the caches: the wall time a user sees, with
  Python's and the libraries' imports.

Printed per length: padded length (bucket), compile time of the first run, warm stage times
(features, model, refine, outputs), warm and first end-to-end times, and the peak resident
memory of the process (plus peak device memory on accelerators that report it). With
refinement on, a second table gives what the refinement did in the warm run (from
scores.json's report): steps and rounds (with the softened-clash rounds of a collapsed start),
violations and clashes before and after, CA RMSD moved, and each round's steps and end.

The network's timings do not depend on the values of its weights, so without ``--weights`` the
script uses a randomly initialised network of ``--config`` (default ``small``, the CPU model).
Refinement, however, does depend on them: the output of a random network is a collapsed tangle
that takes the minimiser far longer than a real prediction (or overflows its neighbour list),
so with random weights refinement is off unless ``--refine on`` asks for it.

    python scripts/benchmark_predict.py                      # 50 100 200 400 1000, small model
    python scripts/benchmark_predict.py --lengths 100 --repeat-cached
    python scripts/benchmark_predict.py --device gpu --config base
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Real sequences, repeated to reach the requested length (ubiquitin, GB1, villin HP35).
_SOURCE = ("MQIFVKTLTGKTITLEVEPSDTIENVKAKIQDKEGIPPDQQRLIFAGKQLEDGRTLSDYNIQKESTLHLVLRLRGG"
           "MTYKLILNGKTLKGETTTEAVDAATAEKVFKQYANDNGVDGEWTYDDATKTFTVTE"
           "LSDEDFKAVFGMTRSAFANLPLWKQQNLKKEKGLF")


def sequence_of_length(n: int) -> str:
    return (_SOURCE * (n // len(_SOURCE) + 1))[:n]


def _peak_rss_mib() -> float:
    # Linux reports ru_maxrss in KiB.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def worker(args: argparse.Namespace) -> dict:
    from foldlite import outputs
    from foldlite.commands.predict import predict_batch
    from foldlite.model.inference import init_params
    from foldlite.model.weights_io import save_weights

    work = Path(tempfile.mkdtemp(prefix="foldlite-bench-"))
    weights = args.weights
    t0 = time.perf_counter()
    if weights is None:
        params, cfg = init_params(args.config, seed=0)
        weights = work / f"untrained-{args.config}.npz"
        save_weights(weights, params, cfg, {"name": f"untrained-{args.config}"})
    t_init = time.perf_counter() - t0
    fasta = work / "query.fasta"
    fasta.write_text(f">bench{args.worker}\n{sequence_of_length(args.worker)}\n")
    common = dict(weights=weights, device=args.device, chunk_size=args.chunk_size,
                  num_recycles=args.num_recycles, refine=args.refine == "on",
                  refine_steps=args.refine_steps, quiet=True)
    runs = []
    for i in range(2):
        t = time.perf_counter()
        res = predict_batch(fasta, work / "out", overwrite=True, **common)
        wall = time.perf_counter() - t
        if not res.ok:
            raise SystemExit(f"prediction failed: {res.rows[0].message}")
        scores = outputs.read_scores(work / "out" / res.rows[0].dir)
        runs.append({"wall": wall, "timings": scores["timings"],
                     "refinement": scores.get("refinement")})
    out = {
        "length": args.worker, "padded": scores["padded_length"],
        "device": scores["device"], "chunk_size": scores["chunk_size"],
        "num_recycles": scores["num_recycles"], "init_weights_s": t_init,
        "first_compile_s": runs[0]["timings"].get("compile", 0.0),
        "first_e2e_s": runs[0]["wall"], "warm_e2e_s": runs[1]["wall"],
        "warm": runs[1]["timings"], "peak_rss_mib": _peak_rss_mib(),
        "refinement": _refine_summary(runs[1]["refinement"]),
    }
    try:
        import jax
        stats = jax.devices(args.device)[0].memory_stats() if args.device else \
            jax.devices()[0].memory_stats()
        if stats and "peak_bytes_in_use" in stats:
            out["peak_device_mib"] = stats["peak_bytes_in_use"] / 2**20
    except Exception:  # noqa: BLE001 - not every backend reports memory
        pass
    return out


def _refine_summary(rep: dict | None) -> dict | None:
    """The figures of a refinement report (scores.json) that say where its time went."""
    if not rep:
        return None
    keys = ("steps", "rounds", "time_s", "violations_before", "violations_after",
            "clashes_before", "clashes_after", "ca_rmsd", "collapsed_start",
            "pair_list_truncated")
    out = {k: rep.get(k) for k in keys}
    out["round_log"] = [{k: r.get(k) for k in ("repulsion_scale", "steps", "end", "time_s")}
                        for r in rep.get("round_log") or []]
    return out


def _passed_on(args: argparse.Namespace) -> list[str]:
    """The options that the worker and ``foldlite predict`` take as they are."""
    out = []
    for flag, value in (("--weights", args.weights), ("--device", args.device),
                        ("--chunk-size", args.chunk_size), ("--num-recycles", args.num_recycles),
                        ("--refine-steps", args.refine_steps)):
        if value is not None:
            out += [flag, str(value)]
    return out


def run_length(n: int, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", str(n), "--config", args.config]
    cmd += _passed_on(args) + ["--refine", args.refine]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    if r.returncode != 0:
        return {"length": n, "error": (r.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(r.stdout.strip().splitlines()[-1])


def run_cli(n: int, args: argparse.Namespace) -> float | None:
    """Wall time of one ``python -m foldlite predict`` of an ``n``-residue sequence in a new
    process (imports, weights, cached programs, prediction, refinement, outputs), or None when
    it fails."""
    work = Path(tempfile.mkdtemp(prefix="foldlite-bench-cli-"))
    cmd = [sys.executable, "-m", "foldlite", "predict", sequence_of_length(n), "-o",
           str(work / "out"), "--quiet"] + _passed_on(args)
    if args.refine == "off":
        cmd.append("--no-refine")
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    wall = time.perf_counter() - t
    return wall if r.returncode == 0 else None


def _fmt(v, f="{:.2f}") -> str:
    return "-" if v is None else f.format(v)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lengths", type=int, nargs="+", default=[50, 100, 200, 400, 1000])
    p.add_argument("--config", default="small", help="model config for random weights")
    p.add_argument("--weights", help="real weights instead of a random network")
    p.add_argument("--device", choices=("cpu", "gpu", "tpu"))
    p.add_argument("--chunk-size", type=int, help="attention chunk size (default: the model's)")
    p.add_argument("--num-recycles", type=int, help="default: the model's")
    p.add_argument("--refine-steps", type=int, help="default: the refinement's")
    p.add_argument("--refine", choices=("auto", "on", "off"), default="auto",
                   help="refinement stage (auto: on with --weights, off with random weights)")
    p.add_argument("--repeat-cached", action="store_true",
                   help="run every length twice; report the second (persistent cache filled)")
    p.add_argument("--cli", action="store_true",
                   help="also time `python -m foldlite predict` in a new process after the "
                        "in-process runs (caches filled): the wall time a user sees (cli_s)")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds per length")
    p.add_argument("--json", help="also write the results to this JSON file")
    p.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.refine == "auto":
        args.refine = "on" if args.weights else "off"
    if args.worker is not None:
        print(json.dumps(worker(args)))
        return

    import platform
    print(f"# foldlite predict benchmark: config={args.config} weights={args.weights or 'random'} "
          f"device={args.device or 'default'} chunk={args.chunk_size} "
          f"recycles={args.num_recycles} refine={args.refine} refine_steps={args.refine_steps}")
    print(f"# {platform.node()} {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, python {platform.python_version()}")
    header = ("length", "padded", "compile1", "features", "model", "refine", "outputs",
              "e2e_warm", "e2e_first", "cli_s", "peak_MiB", "peak_dev_MiB")
    print("\t".join(header))
    results = []
    for n in args.lengths:
        if args.repeat_cached:
            run_length(n, args)
        r = run_length(n, args)
        results.append(r)
        if "error" in r:
            print(f"{n}\terror: {r['error']}")
            continue
        if args.cli:
            if args.weights is None:
                r["cli_s"] = None  # the command needs a weights file; random ones are not kept
            else:
                r["cli_s"] = run_cli(n, args)
        w = r["warm"]
        print("\t".join([str(n), str(r["padded"]), _fmt(r["first_compile_s"]),
                         _fmt(w.get("features"), "{:.4f}"), _fmt(w.get("model")),
                         _fmt(w.get("refine")), _fmt(w.get("outputs")), _fmt(r["warm_e2e_s"]),
                         _fmt(r["first_e2e_s"]), _fmt(r.get("cli_s")),
                         _fmt(r["peak_rss_mib"], "{:.0f}"),
                         _fmt(r.get("peak_device_mib"), "{:.0f}")]), flush=True)
    refined = [r for r in results if r.get("refinement")]
    if refined:
        print("\n# refinement (warm run): steps, rounds, violations and clashes before -> after,"
              " CA RMSD moved (A); rounds: repulsion scale/steps/end")
        print("\t".join(("length", "refine_s", "steps", "rounds", "collapsed", "violations",
                         "clashes", "ca_moved", "rounds_detail")))
        for r in refined:
            f = r["refinement"]
            detail = " ".join(f"{x['repulsion_scale']:g}/{x['steps']}/{x['end']}"
                              for x in f["round_log"]) or "-"
            print("\t".join([str(r["length"]), _fmt(f["time_s"]), str(f["steps"]),
                             str(f["rounds"]), str(f["collapsed_start"]),
                             f"{f['violations_before']}->{f['violations_after']}",
                             f"{f['clashes_before']}->{f['clashes_after']}",
                             _fmt(f["ca_rmsd"]), detail]), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
