"""Write a compact training subset of a foldlite dataset: one chain per sequence cluster.

    python scripts/subset_dataset.py --chains 4300 -o /tmp/promod3-sub
    tar cf - -C /tmp promod3-sub | xz -T2 -9 > sub.tar.xz      # 43 MB for 4,300 chains

Used to carry training data to a lent accelerator machine that reaches no network (the whole
working tree that travels is limited to 64 MiB): 4,300 of the 13,784 training clusters of the
ProMod3 dataset, one random member each (seed 0), 40-600 residues, in the same dataset format, so
``foldlite train --set data.path=... --set data.splits=null --set data.train_split=all
--set data.cluster_weighting=false`` reads it directly. The subset holds training-split chains
only; validation and test chains stay out.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runs from a checkout too

from foldlite.data.dataset import Dataset, write_dataset  # noqa: E402
from foldlite.data.splits import read_clusters, read_split, resolve_splits_prefix  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="~/.cache/foldlite/promod3")
    ap.add_argument("--splits", default="promod3",
                    help="split files prefix ({PREFIX}_train.txt, {PREFIX}_clusters.tsv)")
    ap.add_argument("--chains", type=int, default=4300, help="clusters (= chains) to keep")
    ap.add_argument("--min-length", type=int, default=40)
    ap.add_argument("--max-length", type=int, default=600)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("-o", "--out", required=True)
    ap.add_argument("--overwrite", action="store_true")
    args = ap.parse_args()

    ds = Dataset(Path(args.dataset).expanduser())
    prefix = resolve_splits_prefix(args.splits)
    train = read_split(f"{prefix}_train.txt")
    clusters = read_clusters(f"{prefix}_clusters.tsv")
    rng = np.random.default_rng(args.seed)
    members: dict[str, list[str]] = {}
    for cid in train:
        members.setdefault(clusters.get(cid, cid), []).append(cid)
    reps = []
    for key in sorted(members):
        ok = [c for c in members[key]
              if args.min_length <= int(ds.lengths[ds.index(c)]) <= args.max_length]
        if ok:
            reps.append(ok[int(rng.integers(len(ok)))])
    rng.shuffle(reps)
    reps = reps[:args.chains]
    residues = sum(int(ds.lengths[ds.index(c)]) for c in reps)
    note = (f"{len(reps)} training-split chains of {args.dataset}, one random member per "
            f"cluster ({len(members)} clusters), {args.min_length}-{args.max_length} residues, "
            f"seed {args.seed}")
    out = write_dataset(args.out, (ds[c] for c in reps), source="subset",
                        manifest={"note": note}, overwrite=args.overwrite)
    print(f"wrote {out}: {len(reps)} chains, {residues} residues ({note})")


if __name__ == "__main__":
    main()
