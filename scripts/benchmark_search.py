"""Measure foldlite.search on the ProMod3 dataset: template search time per query over the whole
library, and MSA search speed against a database of all its sequences.

    python scripts/benchmark_search.py [--dataset ~/.cache/foldlite/promod3] [--queries 20]
        [--iterations 1 3] [--engines jackhmmer mmseqs] [--seed 0]

Queries are random chains of the dataset mutated at 30% of their positions (so a query is not
simply its own best hit). Prints JSON lines: index build and open times; per query, template
search seconds (sequence search, and profile search from the query's MSA); MSA search seconds
per 1,000 query residues per 1e9 database residues, for each engine and iteration count (one
thread), with the median A3M depth and, for MMseqs2, the fraction of jackhmmer's hit targets it
also found (same iteration count).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from foldlite import constants as rc
from foldlite.data.dataset import Dataset
from foldlite.search import templates as tpl
from foldlite.search.database import read_database
from foldlite.search import mmseqs
from foldlite.search.mmseqs import MmseqsSettings
from foldlite.search.msa import MsaSettings, search_msas
from foldlite.sequences import parse_sequence, read_a3m


def _names(a3m: str) -> list[str]:
    """The hit rows' names of an A3M (the query's row left out)."""
    return [line[1:].split()[0] for line in a3m.splitlines() if line.startswith(">")][1:]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", type=Path, default=Path("~/.cache/foldlite/promod3").expanduser())
    ap.add_argument("--queries", type=int, default=20)
    ap.add_argument("--iterations", type=int, nargs="+", default=[1, 3])
    ap.add_argument("--engines", nargs="+", choices=("jackhmmer", "mmseqs"),
                    default=["jackhmmer", "mmseqs"])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    ds = Dataset(args.dataset)
    seqs = ds.sequences()
    rng = np.random.default_rng(args.seed)
    ids = list(seqs)
    queries = []
    for k, i in enumerate(rng.choice(len(ids), args.queries, replace=False)):
        s = list(seqs[ids[i]])
        for j in rng.choice(len(s), int(0.3 * len(s)), replace=False):
            s[j] = rc.restypes[int(rng.integers(20))]
        queries.append(parse_sequence("".join(s), f"q{k}_{ids[i]}"))
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        idx_dir = tpl.build_index(args.dataset, Path(tmp) / "index")
        t_build = time.perf_counter() - t
        t = time.perf_counter()
        index = tpl.open_index(idx_dir)
        t_open = time.perf_counter() - t
        print(json.dumps({"index_build_s": round(t_build, 2), "index_open_s": round(t_open, 2),
                          "chains": index.num_chains, "residues": index.num_residues}))
        fasta = Path(tmp) / "db.fasta"
        fasta.write_text("".join(f">{k}\n{v}\n" for k, v in seqs.items()))
        db = read_database(fasta)
        found = {}
        for engine in args.engines:
            if engine == "mmseqs" and mmseqs.find_binary() is None:
                print(json.dumps({"engine": "mmseqs", "skipped": "mmseqs not installed"}))
                continue
            for its in args.iterations:
                settings = (MsaSettings(iterations=its) if engine == "jackhmmer"
                            else MmseqsSettings(iterations=its))
                t = time.perf_counter()
                res = search_msas(queries, db, settings, cpus=1, use_cache=False,
                                  progress=False)
                wall = time.perf_counter() - t  # MMseqs2 runs the batch at once: wall time
                busy = sum(r.seconds for r in res) if engine == "jackhmmer" else wall
                residues = sum(q.length for q in queries)
                hits = [{n.split("/")[0] for n in _names(r.a3m)} for r in res]
                found[engine, its] = (res, hits)
                line = {"engine": engine, "msa_iterations": its, "queries": len(queries),
                        "query_residues": residues, "db_residues": db.num_residues,
                        "seconds": round(busy, 2),
                        "s_per_1000_residues_per_gres": round(
                            busy / (residues / 1000) / (db.num_residues / 1e9), 1),
                        "median_hits": statistics.median(r.num_hits for r in res)}
                if engine == "mmseqs" and ("jackhmmer", its) in found:
                    ref = found["jackhmmer", its][1]
                    share = [len(h & r) / len(r) for h, r in zip(hits, ref) if r]
                    line["median_share_of_jackhmmer_targets"] = round(
                        statistics.median(share), 3) if share else None
                print(json.dumps(line))
        res = found.get(("jackhmmer", args.iterations[-1]),
                        next(iter(found.values()), (None,)))[0]
        msas = {}
        for q, r in zip(queries, res or []):
            p = Path(tmp) / f"{q.id}.a3m"
            p.write_text(r.a3m)
            msas[q.id] = read_a3m(p, q)
        for mode in ("sequence", "profile"):
            times = []
            for q in queries:
                t = time.perf_counter()
                tpl.search_templates(q, index, msa=msas.get(q.id) if mode == "profile" else None)
                times.append(time.perf_counter() - t)
            print(json.dumps({"template_search": mode, "queries": len(queries),
                              "median_s": round(statistics.median(times), 3),
                              "max_s": round(max(times), 3),
                              "mean_length": round(np.mean([q.length for q in queries]))}))


if __name__ == "__main__":
    main()
