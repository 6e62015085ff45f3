#!/usr/bin/env python
"""Measure training throughput: optimiser steps per second and residues per second.

    python scripts/benchmark_train.py --config tiny
    python scripts/benchmark_train.py --config small --steps 5 --recycles 0

Runs the real training step of ``foldlite.train.trainer`` (forward, all losses, backward,
AdamW, EMA; data parallel over every local device) on batches of the config's training data (or,
with ``--synthetic`` or when the dataset is missing, on chains cut from ``tests/data/1A8O.pdb``
repeated to the crop size), after one warm-up step that compiles. Residues per second counts
real (unpadded) residues of the batches. Prints one JSON line per measurement.
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="tiny", help="training config (tiny, small or a path)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--steps", type=int, default=5, help="timed steps (after one warm-up)")
    ap.add_argument("--recycles", type=int, default=None,
                    help="fixed recycles per step (default: sampled as in training)")
    ap.add_argument("--synthetic", action="store_true",
                    help="use synthetic chains instead of the config's dataset")
    args = ap.parse_args()

    import jax
    import jax.numpy as jnp
    import numpy as np

    from foldlite.train.config import load_train_config
    from foldlite.train.trainer import Trainer, _replicate, num_recycles_for_step

    tmp = Path(tempfile.mkdtemp(prefix="foldlite-bench-"))
    cfg = load_train_config(args.config, [*args.set, f"log_dir={tmp / 'run'}"])
    ds_path = Path(cfg.data.path).expanduser()
    if args.synthetic or not (ds_path / "manifest.json").is_file():
        ds = synthetic_dataset(tmp, cfg.data.crop_size)
        cfg = load_train_config(args.config, [*args.set, f"log_dir={tmp / 'run'}",
                                              f"data.path={ds}", f"data.splits={tmp / 'bench'}",
                                              "data.min_length=1"])
        source = "synthetic"
    else:
        source = str(ds_path)
    trainer = Trainer(cfg, progress=False)
    t0 = time.time()
    state = _replicate(trainer.initial_state(), trainer.replicated)
    init_s = time.time() - t0

    def step(state, s):
        batch = trainer.global_batch(s)
        r = num_recycles_for_step(cfg, s) if args.recycles is None else args.recycles
        weights = cfg.loss.weights_at(s)
        state, metrics = trainer._step_fn(state, batch, weights, jnp.int32(r), jnp.float32(1e-4))
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
    total = sum(times)
    print(json.dumps({
        "config": cfg.name, "model": cfg.model, "crop_size": cfg.data.crop_size,
        "batch_size": cfg.data.batch_size, "data": source,
        "recycles": args.recycles if args.recycles is not None else
        f"sampled 0..{cfg.max_recycles} (mean here {np.mean(recycles):.2f})",
        "devices": jax.device_count(), "platform": jax.devices()[0].platform,
        "device_kind": jax.devices()[0].device_kind, "cpu": platform.processor() or
        platform.machine(), "timed_steps": args.steps,
        "init_seconds": round(init_s, 2), "first_step_seconds": round(compile_s, 2),
        "seconds_per_step": round(total / args.steps, 4),
        "steps_per_second": round(args.steps / total, 4),
        "residues_per_second": round(sum(residues) / total, 2),
        "last_loss": float(m["loss"])}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
