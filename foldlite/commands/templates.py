"""``foldlite templates``: the template library's index and template search
(``foldlite.search.templates``).

    foldlite templates index [LIBRARY] [-o INDEX]     # default: the ProMod3 dataset
    foldlite templates search QUERY.fasta [--library LIBRARY|INDEX] [--msa A3M|DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from foldlite.errors import InputError
from foldlite.search import templates as tpl
from foldlite.sequences import read_a3m, read_fasta, safe_name


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = sub.add_parser("index", help="build the search index of a template library")
    p.add_argument("library", nargs="?", default=str(tpl.DEFAULT_LIBRARY),
                   help="a foldlite dataset folder or a folder of mmCIF/PDB files (default "
                        f"{tpl.DEFAULT_LIBRARY}, the ProMod3 dataset)")
    p.add_argument("-o", "--out", default=None, metavar="INDEX",
                   help="index folder (default: under the foldlite cache folder)")
    p = sub.add_parser("search", help="find templates for FASTA queries")
    p.add_argument("query", help="FASTA file of one or more protein sequences")
    p.add_argument("--library", default=None, metavar="LIBRARY|INDEX",
                   help="a template library (indexed first when needed) or an index folder "
                        f"(default {tpl.DEFAULT_LIBRARY})")
    p.add_argument("--msa", default=None, metavar="A3M|DIR",
                   help="the query's MSA (an A3M file, or a folder of <record>.a3m as written "
                        "by 'foldlite search'): profile search; default: sequence search")
    p.add_argument("--max-hits", type=int, default=4, help="templates kept per query (4)")
    p.add_argument("--evalue", type=float, default=1e-3, help="largest E-value (1e-3)")
    p.add_argument("--min-coverage", type=float, default=0.1,
                   help="smallest fraction of the query aligned (0.1)")
    p.add_argument("--json", action="store_true", help="print the hits as JSON lines")


def run(args: argparse.Namespace) -> int:
    if args.action == "index":
        t = time.perf_counter()
        path = tpl.build_index(args.library, args.out)
        meta = json.loads((path / "index.json").read_text())
        print(f"template index of {meta['chains']} chains ({meta['residues']} residues) -> "
              f"{path} ({time.perf_counter() - t:.1f} s)")
        return 0
    if args.max_hits < 1:
        raise InputError("--max-hits must be at least 1")
    records = read_fasta(args.query)
    index = tpl.open_index(args.library)
    taken: set[str] = set()
    for rec in records:
        msa = None
        if args.msa is not None:
            m = Path(args.msa)
            path = m / f"{safe_name(rec.id, taken)}.a3m" if m.is_dir() else m
            if not path.is_file():
                raise InputError(f"{path}: MSA for record {rec.id!r} not found")
            msa = read_a3m(path, rec)
        t = time.perf_counter()
        hits = tpl.search_templates(rec, index, msa=msa, max_hits=args.max_hits,
                                    evalue=args.evalue, min_coverage=args.min_coverage)
        secs = time.perf_counter() - t
        if args.json:
            print(json.dumps({"query": rec.id, "seconds": round(secs, 3),
                              "hits": [h.as_dict() for h in hits]}))
        else:
            print(tpl.format_hits(rec, hits) + f"  [{secs:.2f} s]")
    return 0
