"""Measure how fast foldlite.data.loader produces training batches.

    python scripts/benchmark_loader.py [--dataset ~/.cache/foldlite/promod3]
        [--splits promod3] [--batch-size 8] [--crop-size 256] [--steps 50]
        [--workers 0 2]

Prints the time to open the dataset and samples per second for each worker count (the first
batches are not timed: page cache warm-up).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from foldlite.data.dataset import Dataset
from foldlite.data.loader import LoaderConfig, make_loader
from foldlite.data.splits import resolve_splits_prefix


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--dataset", type=Path, default=Path("~/.cache/foldlite/promod3"))
    ap.add_argument("--splits", default="promod3",
                    help="split prefix; the train split is sampled when it exists")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--crop-size", type=int, default=256)
    ap.add_argument("--spatial-crop-prob", type=float, default=0.5)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    args = ap.parse_args()

    t0 = time.perf_counter()
    ds = Dataset(args.dataset.expanduser())
    t_open = time.perf_counter() - t0
    print(f"dataset {ds.path}: {len(ds):,} chains, {ds.num_residues:,} residues, opened in "
          f"{t_open:.2f} s")
    cfg = LoaderConfig(batch_size=args.batch_size, crop_size=args.crop_size,
                       spatial_crop_prob=args.spatial_crop_prob)
    splits = resolve_splits_prefix(args.splits)
    split = "train" if Path(f"{splits}_train.txt").is_file() else None
    t0 = time.perf_counter()
    loader = make_loader(ds, split, splits if split else None, cfg)
    print(f"loader over {'the train split' if split else 'all chains'} ({len(loader):,} chains)"
          f" built in {time.perf_counter() - t0:.2f} s; batch {args.batch_size}, crop "
          f"{args.crop_size}, spatial crops {args.spatial_crop_prob:.0%}; {os.cpu_count()} CPUs")
    for workers in args.workers:
        it = loader.iterate(start_step=1000 * (workers + 1), num_workers=workers)
        for _ in range(args.warmup):
            next(it)
        t0 = time.perf_counter()
        n = 0
        for _ in range(args.steps):
            b = next(it)
            n += b["features"].aatype.shape[0]
        dt = time.perf_counter() - t0
        print(f"workers={workers}: {n / dt:8.1f} samples/s ({dt / args.steps * 1e3:.1f} ms per "
              f"batch)")


if __name__ == "__main__":
    main()
