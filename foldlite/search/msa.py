"""MSAs from a local sequence database by HMMER's iterative search (jackhmmer through
``pyhmmer``), written as A3M in the format ``foldlite.sequences.read_a3m`` reads.

Settings follow AlphaFold2's jackhmmer run on UniRef90 (``-N 1 -E 1e-4 --incE 1e-4 --F1 5e-4
--F2 5e-5 --F3 5e-7``, at most 10,000 sequences); ``iterations`` > 1 turns the search
iterative (each round's hits build the next round's profile). Each query runs in its own thread
(HMMER releases the GIL), ``cpus`` at a time.

The A3M rows are the query, then each included hit's domains by E-value (the envelope of each
domain, aligned with the query to the final profile HMM; ``alignment.align_to_query``). Row
names are ``TARGET/START-END`` (1-based, inclusive).

``MmseqsSettings`` search with MMseqs2 instead (``foldlite.search.mmseqs``), all queries in one
run.

Cache: ``cache_dir()/search/msa/<key>.a3m``, the key a sha256 over the query sequence, the
database's content (sha256 of its bytes) and the settings, so the same query against the same
database is never searched twice.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

from tqdm import tqdm

from foldlite.cache import cache_dir
from foldlite.fileio import write_text
from foldlite.search.alignment import align_to_query
from foldlite.search import mmseqs
from foldlite.search.database import (SequenceDatabase, check_database_file,
                                      check_database_memory, file_digest, read_database)
from foldlite.search.mmseqs import MmseqsSettings
from foldlite.sequences import SequenceRecord, safe_name


@dataclasses.dataclass(frozen=True)
class MsaSettings:
    """Search settings (AlphaFold2's jackhmmer defaults)."""

    iterations: int = 1
    evalue: float = 1e-4        # reporting E-value (-E)
    inclusion_evalue: float = 1e-4  # --incE: hits that build the next profile and the A3M
    max_sequences: int = 10_000  # A3M rows besides the query
    F1: float = 5e-4
    F2: float = 5e-5
    F3: float = 5e-7

    def key(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


@dataclasses.dataclass
class MsaResult:
    """One query's search: the A3M text, hit count, the iterations run and where it came from."""

    record_id: str
    a3m: str
    num_hits: int
    iterations: int
    cached: bool
    seconds: float
    db_residues: int = 0  # residues in the database searched (0 when cached)


def cache_key(sequence: str, db_digest: str, settings: MsaSettings) -> str:
    text = f"foldlite-msa-1\0{sequence}\0{db_digest}\0{settings.key()}"
    return hashlib.sha256(text.encode()).hexdigest()


def _cache_path(key: str) -> Path:
    return cache_dir() / "search" / "msa" / f"{key}.a3m"


def _search_one(record: SequenceRecord, db: SequenceDatabase, settings: MsaSettings,
                on_iteration) -> tuple[str, int, int]:
    import pyhmmer  # deferred: the HMMER bindings are only needed for searches

    alphabet = db.block.alphabet
    query = pyhmmer.easel.TextSequence(name=record.id.encode(),
                                       sequence=record.sequence).digitize(alphabet)
    pipeline = pyhmmer.plan7.Pipeline(alphabet, E=settings.evalue, incE=settings.inclusion_evalue,
                                      domE=settings.evalue, incdomE=settings.inclusion_evalue,
                                      F1=settings.F1, F2=settings.F2, F3=settings.F3)
    result = None
    done = 0
    for result in pipeline.iterate_seq(query, db.block):
        done += 1
        on_iteration()
        if result.converged or done >= settings.iterations:
            break
    for _ in range(settings.iterations - done):
        on_iteration()  # converged early: the remaining iterations count as done
    segments = []
    for hit in result.hits:
        if not hit.included:
            continue
        name = hit.name.decode() if isinstance(hit.name, bytes) else str(hit.name)
        segments += [(dom.i_evalue, name, dom.env_from, dom.env_to)
                     for dom in hit.domains if dom.included]
    segments.sort(key=lambda s: s[0])
    segments = segments[:settings.max_sequences]
    rows = align_to_query(result.hmm, record.sequence,
                          [(f"{n}/{a}-{b}", db.sequence(n)[a - 1:b], a - 1)
                           for _, n, a, b in segments])
    lines = [f">{record.id}", record.sequence]
    for row in rows:
        lines += [f">{row.name}", row.a3m]
    return "\n".join(lines) + "\n", len(rows), done


def search_msas(records: Sequence[SequenceRecord], database: str | os.PathLike | SequenceDatabase,
                settings: MsaSettings | MmseqsSettings = MsaSettings(), cpus: int = 2,
                use_cache: bool = True, progress: bool = True) -> list[MsaResult]:
    """Search each record against ``database`` (a FASTA path or a loaded database) and return
    the A3Ms in record order: jackhmmer for ``MsaSettings``, MMseqs2 for ``MmseqsSettings``
    (``foldlite.search.mmseqs``). Cached results are reused; the database is read only when a
    record is not cached."""
    if isinstance(database, SequenceDatabase):
        db, digest = database, database.digest or file_digest(database.path)
    else:
        db, digest = None, file_digest(check_database_file(database))
    results: dict[int, MsaResult] = {}
    todo = []
    for i, rec in enumerate(records):
        path = _cache_path(cache_key(rec.sequence, digest, settings))
        if use_cache and path.is_file():
            text = path.read_text()
            results[i] = MsaResult(rec.id, _renamed(text, rec.id), text.count(">") - 1,
                                   0, True, 0.0)
        else:
            todo.append(i)
    if todo and isinstance(settings, MmseqsSettings):
        _search_mmseqs(records, todo, database, digest, settings, cpus, use_cache, results,
                       progress)
    elif todo:
        if db is None:
            check_database_memory(database)
            db = read_database(database, digest=False)
        bar = tqdm(total=len(todo) * settings.iterations, unit="iteration",
                   desc="foldlite search", disable=not progress, file=sys.stderr,
                   mininterval=0.5 if sys.stderr.isatty() else 30.0)

        def one(i):
            t = time.perf_counter()
            text, hits, its = _search_one(records[i], db, settings, lambda: bar.update(1))
            return i, text, hits, its, time.perf_counter() - t

        with ThreadPoolExecutor(max_workers=max(1, cpus)) as pool:
            for i, text, hits, its, secs in pool.map(one, todo):
                rec = records[i]
                _store(rec, digest, settings, text, use_cache)
                results[i] = MsaResult(rec.id, text, hits, its, False, secs, db.num_residues)
        bar.close()
    return [results[i] for i in range(len(records))]


def _search_mmseqs(records, todo: list[int], database, digest: str, settings: MmseqsSettings,
                   cpus: int, use_cache: bool, results: dict[int, MsaResult],
                   progress: bool) -> None:
    """Search the records ``todo`` in one MMseqs2 run and put them in ``results``; the run's
    time is shared among them by length."""
    fasta = database.path if isinstance(database, SequenceDatabase) else Path(database)
    if progress:
        print(f"foldlite search: MMseqs2, {len(todo)} quer{'y' if len(todo) == 1 else 'ies'} "
              f"against {fasta}", file=sys.stderr)
    t = time.perf_counter()
    found, db_residues = mmseqs.search_batch([records[i] for i in todo], fasta, digest,
                                             settings, threads=cpus)
    seconds = time.perf_counter() - t
    total = sum(records[i].length for i in todo)
    for i, (text, hits) in zip(todo, found):
        rec = records[i]
        _store(rec, digest, settings, text, use_cache)
        results[i] = MsaResult(rec.id, text, hits, settings.iterations, False,
                               seconds * rec.length / total, db_residues)


def _store(rec: SequenceRecord, digest: str, settings, text: str, use_cache: bool) -> None:
    if use_cache:
        try:
            write_text(_cache_path(cache_key(rec.sequence, digest, settings)), text)
        except OSError:
            pass  # a read-only cache folder: searched again next time


def _renamed(text: str, record_id: str) -> str:
    """A cached A3M with its first header set to this record's id (the cache is keyed by
    sequence, so another record with the same sequence reuses it)."""
    first, _, rest = text.partition("\n")
    return f">{record_id}\n{rest}"


def write_msas(results: Sequence[MsaResult], out_dir: str | os.PathLike) -> list[Path]:
    """Write each result as ``OUT/<safe record id>.a3m`` (atomically); returns the paths."""
    out = Path(out_dir)
    taken: set[str] = set()
    paths = []
    for r in results:
        path = out / f"{safe_name(r.record_id, taken)}.a3m"
        write_text(path, r.a3m)
        paths.append(path)
    return paths
