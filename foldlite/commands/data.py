"""``foldlite data``: build training datasets and splits (``foldlite.data``).

  foldlite data promod3 [--out DIR] [--deb PATH | --db PATH] [--keep-db PATH] [--overwrite]
      the ProMod3 structure database (Debian package promod3-data; downloaded with
      ``apt-get download`` when neither --deb nor --db is given) -> a foldlite dataset
  foldlite data structures --in DIR --out DIR [--chains first|all] [--min-length N]
                           [--pdb-ids FILE] [--no-dssp] [--overwrite]
      a directory of mmCIF/PDB files (optionally downloaded first from the RCSB) -> a dataset
  foldlite data split --dataset DIR --prefix PATH [--method auto|mmseqs|kmer] [--seed N] ...
      cluster the chains by sequence and write train/valid/test chain id lists
  foldlite data info DIR
      print a dataset's manifest summary
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from foldlite.data import structures as st
from foldlite.data.dataset import Dataset
from foldlite.data.promod3 import convert_from_deb_or_db
from foldlite.data.splits import make_splits
from foldlite.errors import InputError

DEFAULT_PROMOD3_DIR = Path("~/.cache/foldlite/promod3")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", metavar="SOURCE")

    p = sub.add_parser("promod3", help="convert the ProMod3 structure database (promod3-data)",
                       description="Convert the ProMod3 StructureDB (21,119 PDB chains: backbone, "
                       "sequence, DSSP, profiles) from the Debian package promod3-data into a "
                       "foldlite dataset. Without --deb/--db the package is fetched with "
                       "'apt-get download promod3-data' (nothing is installed).")
    p.add_argument("--out", type=Path, default=DEFAULT_PROMOD3_DIR,
                   help=f"output dataset directory (default {DEFAULT_PROMOD3_DIR})")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--deb", type=Path, help="a downloaded promod3-data_*.deb")
    src.add_argument("--db", type=Path, help="an extracted structure_db.dat")
    p.add_argument("--keep-db", type=Path, metavar="PATH",
                   help="keep the structure_db.dat extracted from the package at PATH")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset")

    s = sub.add_parser("structures", help="build a dataset from mmCIF/PDB files",
                       description="Read every .cif/.mmcif/.pdb/.ent(.gz) file below --in and "
                       "write a foldlite dataset (all atoms present kept; DSSP assigned from "
                       "the backbone). Unreadable files, non-protein chains and short chains "
                       "are skipped and reported.")
    s.add_argument("--in", dest="in_dir", type=Path, required=True,
                   help="directory of structure files (the download target with --pdb-ids)")
    s.add_argument("--out", type=Path, required=True, help="output dataset directory")
    s.add_argument("--chains", choices=("first", "all"), default="first",
                   help="one chain per entry (first usable protein chain) or all protein chains")
    s.add_argument("--min-length", type=int, default=10,
                   help="minimum residues with a CA atom (default 10)")
    s.add_argument("--pdb-ids", type=Path, metavar="FILE",
                   help="download these PDB entries (mmCIF, RCSB) into --in first")
    s.add_argument("--no-dssp", action="store_true", help="do not assign DSSP")
    s.add_argument("--overwrite", action="store_true", help="replace an existing dataset")

    sp = sub.add_parser("split", help="cluster chains and write train/valid/test id lists",
                        description="Cluster a dataset's sequences (MMseqs2 when on PATH, else a "
                        "k-mer fallback) and split by cluster with a seeded hash.")
    sp.add_argument("--dataset", type=Path, default=DEFAULT_PROMOD3_DIR,
                    help=f"dataset directory (default {DEFAULT_PROMOD3_DIR})")
    sp.add_argument("--prefix", type=Path, required=True,
                    help="output prefix, e.g. splits/mine -> splits/mine_train.txt ...")
    sp.add_argument("--method", choices=("auto", "mmseqs", "kmer"), default="auto")
    sp.add_argument("--min-seq-id", type=float, default=0.3)
    sp.add_argument("--coverage", type=float, default=0.8)
    sp.add_argument("--threads", type=int, default=2)
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--test-fraction", type=float, default=0.05,
                    help="fraction of clusters for test (default 0.05)")
    sp.add_argument("--valid-fraction", type=float, default=0.05,
                    help="fraction of clusters for validation (default 0.05)")
    sp.add_argument("--eval-min-length", type=int, default=50)
    sp.add_argument("--eval-max-length", type=int, default=400)

    i = sub.add_parser("info", help="summarise a dataset")
    i.add_argument("dataset", type=Path)
    parser.set_defaults(_data_parser=parser)


def _command() -> str:
    return " ".join(["foldlite"] + sys.argv[1:]) if sys.argv else "foldlite data"


def run(args: argparse.Namespace) -> int:
    cmd = getattr(args, "data_command", None)
    if cmd is None:
        args._data_parser.print_help()
        return 2
    if cmd == "promod3":
        return _run_promod3(args)
    if cmd == "structures":
        return _run_structures(args)
    if cmd == "split":
        return _run_split(args)
    if cmd == "info":
        return _run_info(args)
    raise InputError(f"unknown data source {cmd!r}")  # pragma: no cover


def _run_promod3(args: argparse.Namespace) -> int:
    out = args.out.expanduser()
    rep = convert_from_deb_or_db(out, deb=args.deb, db=args.db, overwrite=args.overwrite,
                                 keep_db=args.keep_db.expanduser() if args.keep_db else None,
                                 command=_command())
    print("\n".join(rep.lines()))
    return 0


def _run_structures(args: argparse.Namespace) -> int:
    if args.min_length < 1:
        raise InputError("--min-length must be at least 1")
    if args.pdb_ids:
        ids = st.read_pdb_ids(args.pdb_ids)
        print(f"downloading {len(ids)} PDB entries into {args.in_dir} ...")
        st.download_pdb_entries(ids, args.in_dir)
    rep = st.build_from_structures(args.in_dir, args.out, chains=args.chains,
                                   min_length=args.min_length, overwrite=args.overwrite,
                                   assign_dssp=not args.no_dssp, command=_command())
    print("\n".join(rep.lines()))
    return 0


def _run_split(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    result, paths = make_splits(
        args.dataset.expanduser(), args.prefix, method=args.method, min_seq_id=args.min_seq_id,
        coverage=args.coverage, threads=args.threads, seed=args.seed,
        test_fraction=args.test_fraction, valid_fraction=args.valid_fraction,
        eval_min_length=args.eval_min_length, eval_max_length=args.eval_max_length)
    print(f"clustering: {result.params['clustering']} ({time.perf_counter() - t0:.0f} s)")
    print("\n".join(result.lines()))
    for p in paths:
        print(f"wrote {p}")
    return 0


def _run_info(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    d = Dataset(args.dataset.expanduser())
    m = d.manifest
    print(f"{d.path}: {m.get('source')} dataset, format {m.get('format_version')}, "
          f"opened in {time.perf_counter() - t0:.2f} s")
    c = m.get("counts", {})
    print(f"  chains {c.get('chains', 0):,}  residues {c.get('residues', 0):,}  atoms "
          f"{c.get('atoms', 0):,}")
    for k in ("version", "db_sha256", "deb_sha256", "foldlite_version", "command", "created"):
        if m.get(k):
            print(f"  {k}: {m[k]}")
    print(f"  arrays: {', '.join(sorted(m.get('arrays', {})))}")
    return 0
