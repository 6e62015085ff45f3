#!/usr/bin/env python
"""Measure training throughput: optimiser steps per second and residues per second.

    python scripts/benchmark_train.py --config tiny
    python scripts/benchmark_train.py --config small --steps 5 --recycles 0
    python scripts/benchmark_train.py --config campaign --set data.crop_size=64 \
        --set execution.compute_dtype=model --set execution.scan_trunk=false \
        --variant bf16:execution.compute_dtype=bfloat16 --variant scan:execution.scan_trunk=true

Runs the real training step of ``foldlite.train.trainer`` (forward, all losses, backward,
AdamW, EMA; data parallel over every local device) on batches of the config's training data (or,
with ``--synthetic`` or when the dataset is missing, on chains cut from ``tests/data/1A8O.pdb``
repeated to the crop size), after one warm-up step that compiles. Residues per second counts
real (unpadded) residues of the batches; times are medians over the timed steps. FLOPs per step
come from XLA's cost analysis of the lowered step, which counts the body of a loop once: exact
for an unrolled trunk with ``--recycles 0``, a lower bound with a scanned trunk or recycling.
Divide the achieved FLOP/s by the device's peak for its utilisation. Prints one JSON line per variant and,
for several variants, a table.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def synthetic_dataset(out: Path, length: int, n: int = 8) -> Path:
    """Chains of ``length`` residues: 1A8O (70 residues, full atom) repeated with a 3.8 A shift
    per copy, so the crop is full and the geometry is protein-like."""
    import numpy as np

    from foldlite.data.dataset import ChainRecord, write_dataset
    from foldlite.protein import read_structure

    p = read_structure(REPO / "tests" / "data" / "1A8O.pdb")
    reps = -(-length // p.length)
    rng = np.random.default_rng(0)
    recs = []
    for k in range(n):
        pos = np.concatenate([p.atom_positions + 40.0 * r for r in range(reps)])[:length]
        recs.append(ChainRecord(
            chain_id=f"S{k}_A", aatype=np.tile(p.aatype, reps)[:length],
            atom_positions=pos, atom_mask=np.tile(p.atom_mask, (reps, 1))[:length],
            residue_index=np.arange(length, dtype=np.int32),
            insertion_code=np.array([""] * length),
            dssp=np.full(length, ord("H"), np.uint8),
            profile=rng.dirichlet(np.ones(20), length).astype(np.float32)))
    ds = write_dataset(out / "ds", recs, source="benchmark")
    (out / "bench_train.txt").write_text("".join(f"S{k}_A\n" for k in range(n)))
    (out / "bench_valid.txt").write_text("S0_A\n")
    return ds


def measure(args, overrides: list[str], name: str) -> dict:
    """Compile and time the training step of the config with ``overrides``; its FLOPs from
    XLA's cost analysis of the lowered step."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from foldlite.train.config import load_train_config
    from foldlite.train.devices import replicate
    from foldlite.train.step import num_recycles_for_step
    from foldlite.train.trainer import Trainer

    tmp = Path(tempfile.mkdtemp(prefix="foldlite-bench-"))
    cfg = load_train_config(args.config, [*overrides, f"log_dir={tmp / 'run'}"])
    ds_path = Path(cfg.data.path).expanduser()
    if args.synthetic or not (ds_path / "manifest.json").is_file():
        ds = synthetic_dataset(tmp, cfg.data.crop_size)
        cfg = load_train_config(args.config, [*overrides, f"log_dir={tmp / 'run'}",
                                              f"data.path={ds}", f"data.splits={tmp / 'bench'}",
                                              "data.min_length=1"])
        source = "synthetic"
    else:
        source = str(ds_path)
    trainer = Trainer(cfg, progress=False)
    t0 = time.time()
    state = replicate(trainer.initial_state(), trainer.replicated)
    init_s = time.time() - t0

    def args_of(s):
        r = num_recycles_for_step(cfg, s) if args.recycles is None else args.recycles
        return (trainer.global_batch(s), cfg.loss.weights_at(s), jnp.int32(r),
                jnp.float32(1e-4)), r

    step_args, _ = args_of(0)
    cost = trainer._step_fn.lower(state, *step_args).cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    flops = float(cost.get("flops", float("nan"))) if cost else float("nan")

    def step(state, s):
        a, r = args_of(s)
        state, metrics = trainer._step_fn(state, *a)
        return state, jax.device_get(metrics), r

    t0 = time.time()
    state, m, _ = step(state, 0)
    compile_s = time.time() - t0
    times, residues, recycles = [], [], []
    for s in range(1, args.steps + 1):
        t0 = time.time()
        state, m, r = step(state, s)
        times.append(time.time() - t0)
        residues.append(float(m["residues"]))
        recycles.append(r)
    med = float(np.median(times))
    return {
        "variant": name, "config": cfg.name, "model": cfg.model,
        "crop_size": cfg.data.crop_size, "batch_size": cfg.data.batch_size, "data": source,
        "compute_dtype": trainer.step_model_cfg.dtype,
        "scan_trunk": not trainer.step_model_cfg.trunk.unroll_training,
        "recycles": args.recycles if args.recycles is not None else
        f"sampled 0..{cfg.max_recycles} (mean here {np.mean(recycles):.2f})",
        "devices": jax.device_count(), "platform": jax.devices()[0].platform,
        "device_kind": jax.devices()[0].device_kind, "cpu": platform.processor() or
        platform.machine(), "timed_steps": args.steps,
        "init_seconds": round(init_s, 2), "first_step_seconds": round(compile_s, 2),
        "median_seconds_per_step": round(med, 4),
        "steps_per_second": round(1.0 / med, 4),
        "residues_per_second": round(float(np.mean(residues)) / med, 2),
        "gflop_per_step": round(flops / 1e9, 2),
        "achieved_gflop_per_second": round(flops / 1e9 / med, 2),
        "last_loss": float(m["loss"])}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="tiny", help="training config (tiny, small or a path)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME:KEY=VALUE,...",
                    help="measure this variant too (overrides on top of --set), e.g. "
                         "'bf16-scan:execution.compute_dtype=bfloat16,execution.scan_trunk=true'; "
                         "repeatable; variants run one after another in this process")
    ap.add_argument("--steps", type=int, default=5, help="timed steps (after one warm-up)")
    ap.add_argument("--recycles", type=int, default=None,
                    help="fixed recycles per step (default: sampled as in training)")
    ap.add_argument("--synthetic", action="store_true",
                    help="use synthetic chains instead of the config's dataset")
    args = ap.parse_args()
    variants = [("base", [])]
    for v in args.variant:
        name, _, sets = v.partition(":")
        variants.append((name, [x for x in sets.split(",") if x]))
    rows = []
    for name, extra in variants:
        rows.append(measure(args, [*args.set, *extra], name))
        print(json.dumps(rows[-1]), flush=True)
    if len(rows) > 1:
        print(f"{'variant':<16}{'first step s':>14}{'median s/step':>15}{'residues/s':>12}"
              f"{'GFLOP/step':>12}{'GFLOP/s':>10}")
        for r in rows:
            print(f"{r['variant']:<16}{r['first_step_seconds']:>14}"
                  f"{r['median_seconds_per_step']:>15}{r['residues_per_second']:>12}"
                  f"{r['gflop_per_step']:>12}{r['achieved_gflop_per_second']:>10}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
