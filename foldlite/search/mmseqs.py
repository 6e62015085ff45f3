"""MSAs by MMseqs2 (the ``mmseqs`` program, when installed): ColabFold's choice, one to two
orders of magnitude faster than jackhmmer on large databases at similar depth.

The database FASTA (plain or gzipped) is converted once into MMseqs2's database format in
``cache_dir()/search/mmseqs/<sha256 of the FASTA>/`` (``createdb``; the folder is built under a
temporary name and renamed, so an interrupted conversion is never used). A batch of queries is
searched in one ``mmseqs search`` (iterative profile search, ``--num-iterations``) and turned
into A3M by ``result2msa --msa-format-mode 6``, whose rows are in query columns (upper case or
'-' in every query column, lower case insertions), the format ``foldlite.sequences.read_a3m``
reads. Row names are rewritten to jackhmmer's ``TARGET/START-END`` (1-based, inclusive), the
rows stay in MMseqs2's order (by E-value) and are capped at ``max_sequences``.

MMseqs2 streams the target database from disk and splits its prefilter to fit memory, so a
database larger than memory works, which the in-memory HMMER path cannot do.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Sequence

from foldlite.cache import cache_dir
from foldlite.errors import InputError
from foldlite.sequences import SequenceRecord

#: environment variable naming the mmseqs program (else ``mmseqs`` on PATH)
BINARY_ENV = "FOLDLITE_MMSEQS"


@dataclasses.dataclass(frozen=True)
class MmseqsSettings:
    """``mmseqs search`` settings (ColabFold's: sensitivity 8, 3 iterations, E-value 0.1)."""

    sensitivity: float = 8.0      # -s: 1 fast ... 7.5 sensitive
    iterations: int = 3           # --num-iterations (profile search after the first)
    evalue: float = 0.1           # -e: hits reported and used for the next profile
    max_sequences: int = 10_000   # A3M rows besides the query
    prefilter_hits: int = 10_000  # --max-seqs: prefilter hits per query kept for alignment

    def key(self) -> str:
        return json.dumps({"engine": "mmseqs2", **dataclasses.asdict(self)}, sort_keys=True)


def find_binary() -> str | None:
    """The mmseqs program: ``$FOLDLITE_MMSEQS`` or ``mmseqs`` on PATH; None when neither."""
    env = os.environ.get(BINARY_ENV)
    if env:
        return env if os.access(env, os.X_OK) else None
    return shutil.which("mmseqs")


def require_binary() -> str:
    binary = find_binary()
    if binary is None:
        raise InputError("MMseqs2 is not installed: the `mmseqs` program is not on PATH (install "
                         "it, e.g. `apt install mmseqs2` or `conda install -c bioconda mmseqs2`, "
                         f"or set {BINARY_ENV}), or search with --engine jackhmmer")
    return binary


def _run(binary: str, args: list[str], what: str) -> None:
    proc = subprocess.run([binary, *args, "-v", "1"], capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise InputError(f"mmseqs {args[0]} failed ({what}), exit status {proc.returncode}: "
                         + " | ".join(tail))


def _count(index: Path) -> tuple[int, int]:
    """Sequences and residues of an MMseqs2 sequence database from its index (each entry's
    length counts the sequence, its newline and a terminating NUL)."""
    sequences = residues = 0
    with open(index, "rb") as fh:
        for line in fh:
            sequences += 1
            residues += int(line.split(b"\t")[2]) - 2
    return sequences, residues


def target_database(fasta: Path, digest: str, binary: str) -> tuple[Path, int]:
    """MMseqs2's database for ``fasta`` (built on first use, then taken from the cache) and its
    number of residues."""
    folder = cache_dir() / "search" / "mmseqs" / digest
    counts = folder / "counts.json"
    if not counts.is_file():
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{digest[:16]}-", dir=folder.parent))
        try:
            _run(binary, ["createdb", str(fasta), str(tmp / "db")], f"database {fasta}")
            index = tmp / "db.index"
            if not index.is_file() or index.stat().st_size == 0:
                raise InputError(f"{fasta}: no sequences found (is it a protein FASTA file?)")
            sequences, residues = _count(index)
            (tmp / "counts.json").write_text(json.dumps({"sequences": sequences,
                                                         "residues": residues}))
            shutil.rmtree(folder, ignore_errors=True)  # a conversion interrupted before
            try:
                tmp.rename(folder)
            except OSError:  # another process finished the same conversion first
                if not counts.is_file():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return folder / "db", int(json.loads(counts.read_text())["residues"])


def _a3m_from_mmseqs(entry: str, record: SequenceRecord, max_sequences: int) -> tuple[str, int]:
    """One query's ``result2msa`` A3M (format mode 6: hit headers carry the alignment's
    columns) as foldlite A3M text; returns it and the number of hit rows."""
    lines = [line for line in entry.split("\n") if line.strip()]
    rows = []
    for header, seq in zip(lines[2::2], lines[3::2]):
        fields = header[1:].split("\t")
        name = fields[0].split()[0]
        if len(fields) >= 10:  # target, score, seqid, evalue, qstart, qend, qlen, tstart, tend
            name = f"{name}/{int(fields[7]) + 1}-{int(fields[8]) + 1}"
        rows += [f">{name}", seq]
        if len(rows) // 2 >= max_sequences:
            break
    text = "\n".join([f">{record.id}", record.sequence, *rows]) + "\n"
    return text, len(rows) // 2


def search_batch(records: Sequence[SequenceRecord], fasta: Path, digest: str,
                 settings: MmseqsSettings, threads: int = 2
                 ) -> tuple[list[tuple[str, int]], int]:
    """Search ``records`` against the database ``fasta`` in one MMseqs2 run; returns (A3M text,
    hit rows) per record, in order, and the number of residues in the database."""
    binary = require_binary()
    target, db_residues = target_database(fasta, digest, binary)
    with tempfile.TemporaryDirectory(prefix="foldlite-mmseqs-") as work:
        w = Path(work)
        query_fasta = w / "query.fasta"
        # queries are named by position: record ids may hold spaces or repeat
        query_fasta.write_text("".join(f">q{i}\n{r.sequence}\n" for i, r in enumerate(records)))
        common = ["--threads", str(max(1, threads))]
        _run(binary, ["createdb", str(query_fasta), str(w / "qdb")], "queries")
        _run(binary, ["search", str(w / "qdb"), str(target), str(w / "res"), str(w / "tmp"),
                      "-s", str(settings.sensitivity), "--num-iterations", str(settings.iterations),
                      "-e", str(settings.evalue), "--max-seqs", str(settings.prefilter_hits),
                      "-a", *common], f"search against {fasta}")
        _run(binary, ["result2msa", str(w / "qdb"), str(target), str(w / "res"), str(w / "msa"),
                      "--msa-format-mode", "6", *common], "A3M output")
        data = (w / "msa").read_bytes()
        by_name = {}
        lookup = dict(line.split("\t")[:2]
                      for line in (w / "qdb.lookup").read_text().splitlines() if line)
        for line in (w / "msa.index").read_text().splitlines():
            key, offset, length = line.split("\t")[:3]
            start = int(offset)
            by_name[lookup[key]] = data[start:start + int(length)].rstrip(b"\0").decode()
    out = []
    for i, rec in enumerate(records):
        entry = by_name.get(f"q{i}", "")
        out.append(_a3m_from_mmseqs(entry, rec, settings.max_sequences) if entry
                   else (f">{rec.id}\n{rec.sequence}\n", 0))
    return out, db_residues
