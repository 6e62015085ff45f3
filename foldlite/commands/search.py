"""``foldlite search``: MSAs for FASTA queries from a local sequence database
(``foldlite.search.msa``).

    foldlite search QUERY.fasta --db uniref90.fasta.gz -o msas/   # msas/<record>.a3m
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from foldlite.errors import InputError
from foldlite.search import msa as msa_search
from foldlite.search.database import check_database_file
from foldlite.sequences import read_fasta


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = msa_search.MsaSettings()
    parser.add_argument("query", help="FASTA file of one or more protein sequences")
    parser.add_argument("--db", required=True, metavar="SEQS.fasta",
                        help="sequence database: any protein FASTA (UniRef90, UniRef50, a "
                             "proteome), optionally gzipped")
    parser.add_argument("-o", "--out", required=True, metavar="DIR",
                        help="output folder: one <record>.a3m per query record")
    parser.add_argument("--iterations", type=int, default=d.iterations,
                        help=f"jackhmmer iterations (-N; default {d.iterations}, as AlphaFold2)")
    parser.add_argument("--evalue", type=float, default=d.evalue,
                        help=f"reporting E-value (-E; default {d.evalue:g})")
    parser.add_argument("--inclusion-evalue", type=float, default=d.inclusion_evalue,
                        help=f"inclusion E-value (--incE; default {d.inclusion_evalue:g})")
    parser.add_argument("--max-sequences", type=int, default=d.max_sequences,
                        help=f"most hit rows per A3M (default {d.max_sequences})")
    parser.add_argument("--cpus", type=int, default=2,
                        help="queries searched at once, one thread each (default 2)")
    parser.add_argument("--no-cache", action="store_true",
                        help="search again even when the cache has this query and database")
    parser.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    if args.iterations < 1:
        raise InputError("--iterations must be at least 1")
    if args.max_sequences < 0:
        raise InputError("--max-sequences must be 0 or more")
    if args.cpus < 1:
        raise InputError("--cpus must be at least 1")
    records = read_fasta(args.query)
    db_path = check_database_file(args.db)
    settings = msa_search.MsaSettings(iterations=args.iterations, evalue=args.evalue,
                                      inclusion_evalue=args.inclusion_evalue,
                                      max_sequences=args.max_sequences)
    t = time.perf_counter()
    results = msa_search.search_msas(records, db_path, settings, cpus=args.cpus,
                                     use_cache=not args.no_cache,
                                     progress=not args.no_progress)
    paths = msa_search.write_msas(results, args.out)
    seconds = time.perf_counter() - t
    searched = [(r, rec) for r, rec in zip(results, records) if not r.cached]
    for r, rec, path in zip(results, records, paths):
        note = "cached" if r.cached else f"{r.seconds:.1f} s, {r.iterations} iteration(s)"
        hits = f"{r.num_hits} hit rows" if r.num_hits else "no hits (the A3M holds the query only)"
        print(f"{rec.id}: {rec.length} residues, {hits} -> {path} ({note})")
    summary = {"records": len(records), "searched": len(searched), "seconds": round(seconds, 2),
               "database": str(db_path)}
    if searched:
        residues = sum(rec.length for _, rec in searched)
        busy = sum(r.seconds for r, _ in searched)
        gres = searched[0][0].db_residues / 1e9  # 1e9 residues: about 1 GB of sequence letters
        summary["database_residues"] = searched[0][0].db_residues
        # seconds of one thread per 1,000 query residues per 1e9 database residues
        summary["s_per_1000_residues_per_gres"] = round(busy / (residues / 1000) / gres, 1)
    print(json.dumps(summary), file=sys.stderr)
    return 0
