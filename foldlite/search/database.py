"""A FASTA sequence database (UniRef90, UniRef50, a proteome; plain or gzipped) read into
HMMER's digital form, with clear errors for a missing, empty or non-FASTA file.

Letters: anything in HMMER's amino-acid alphabet (the 20 amino acids, ``BJZOUX``, ``*`` and
gaps ``-`` which are dropped) is accepted; another character is an ``InputError`` naming the file,
the record and the position. The whole database is held in memory: about 4 times the FASTA
file's size for the ProMod3 sequences (21,119 sequences of 216 residues on average: 19.7 MB for a
4.75 MB file; 1 byte per residue plus ~700 bytes per sequence). ``check_database_memory``
refuses, before reading, a database that cannot fit in the available RAM even at 1 byte per
residue.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import os
from pathlib import Path

from foldlite.cache import cache_dir
from foldlite.errors import InputError
from foldlite.fileio import write_json
from foldlite.system import available_ram

_ALLOWED = frozenset(b"ACDEFGHIKLMNPQRSTVWYBJZOUXacdefghiklmnpqrstvwybjzouxX*")


@dataclasses.dataclass
class SequenceDatabase:
    """A loaded database: ``block`` (pyhmmer ``DigitalSequenceBlock``), its path, the number of
    sequences and residues, and ``digest`` (sha256 of the file's bytes, for caches)."""

    path: Path
    block: object
    num_sequences: int
    num_residues: int
    digest: str

    _positions: dict | None = dataclasses.field(default=None, repr=False)

    @property
    def names(self) -> list[str]:
        return [_text(s.name) for s in self.block]

    def sequence(self, name: str) -> str:
        """The one-letter sequence of the record ``name`` (a name -> position map is built on
        the first call)."""
        if self._positions is None:
            self._positions = {_text(s.name): i for i, s in enumerate(self.block)}
        return self.block[self._positions[name]].textize().sequence


def _text(name) -> str:
    return name.decode() if isinstance(name, bytes) else str(name)


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def _open(path: Path):
    return gzip.open(path, "rb") if _is_gzip(path) else open(path, "rb")


def check_database_file(path: str | os.PathLike) -> Path:
    """``path`` as a Path; InputError when missing, a directory or empty."""
    path = Path(path).expanduser()
    if not path.exists():
        raise InputError(f"{path}: sequence database not found")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not a FASTA sequence database")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: sequence database is empty")
    return path


#: Lower bounds of a database's residues per byte of its file: plain FASTA (headers and line
#: ends take the rest), and gzipped (protein FASTA compresses at least 1.5-fold; 1.7-fold for
#: the ProMod3 sequences).
_RESIDUES_PER_BYTE = {"plain": 0.8, "gzip": 1.2}


def check_database_memory(path: str | os.PathLike, available: int | None = None) -> None:
    """``InputError`` before reading when ``path`` (FASTA, plain or gzipped) cannot fit in
    ``available`` bytes (default: the available RAM) even at 1 byte per residue, its lower
    bound; the message names the estimate and the way out (MMseqs2 searches from disk)."""
    path = Path(path)
    kind = "gzip" if _is_gzip(path) else "plain"
    need = int(path.stat().st_size * _RESIDUES_PER_BYTE[kind])
    if available is None:
        available = available_ram()
    if available is not None and need > available:
        raise InputError(
            f"{path}: jackhmmer holds the whole database in memory, at least "
            f"{need / 2**30:.1f} GiB for this file, more than the {available / 2**30:.1f} GiB of "
            "available RAM; use --engine mmseqs (MMseqs2 searches its database from disk) or a "
            "smaller database")


def file_digest(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes, remembered in the cache folder under (path, size, mtime) so a
    large database is hashed once."""
    path = Path(path).resolve()
    st = path.stat()
    key = hashlib.sha256(f"{path}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()[:32]
    memo = cache_dir() / "search" / "digests" / f"{key}.json"
    try:
        return json.loads(memo.read_text())["sha256"]
    except (OSError, ValueError, KeyError):
        pass
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    digest = h.hexdigest()
    try:
        write_json(memo, {"path": str(path), "size": st.st_size, "sha256": digest})
    except OSError:
        pass  # a read-only cache folder: hashed again next time
    return digest


def read_database(path: str | os.PathLike, digest: bool = True) -> SequenceDatabase:
    """Read a FASTA (optionally gzipped) protein database into a ``SequenceDatabase``.

    Raises:
      InputError: for a missing, empty, non-FASTA or non-protein file, naming the file and the
        record (and 1-based position) at fault.
    """
    import pyhmmer  # deferred: the HMMER bindings are only needed for searches

    path = check_database_file(path)
    alphabet = pyhmmer.easel.Alphabet.amino()
    seqs = []
    residues = 0
    name, parts, lineno0 = None, [], 0

    def flush():
        nonlocal residues
        raw = b"".join(parts).replace(b"-", b"").replace(b".", b"")
        if not raw:
            raise InputError(f"{path}: record {name!r} (line {lineno0}): empty sequence")
        bad = raw.translate(None, bytes(_ALLOWED))
        if bad:
            pos = next(i for i, c in enumerate(raw) if c not in _ALLOWED)
            raise InputError(f"{path}: record {name!r}: position {pos + 1}: "
                             f"{chr(raw[pos])!r} is not an amino-acid letter")
        text = pyhmmer.easel.TextSequence(name=name.encode(), sequence=raw.decode().upper())
        seqs.append(text.digitize(alphabet))
        residues += len(raw)

    try:
        with _open(path) as fh:
            for lineno, line in enumerate(fh, start=1):
                line = line.strip()
                if not line:
                    continue
                if line.startswith(b">"):
                    if name is not None:
                        flush()
                    header = line[1:].split(maxsplit=1)
                    if not header:
                        raise InputError(f"{path}: line {lineno}: record without a name "
                                         "after '>'")
                    name = header[0].decode("utf-8", errors="replace")
                    parts, lineno0 = [], lineno
                elif name is None:
                    if line.startswith(b";") or line.startswith(b"#"):
                        continue
                    raise InputError(f"{path}: not a FASTA sequence database (line {lineno} "
                                     f"comes before any '>' header: "
                                     f"{line[:30].decode('utf-8', errors='replace')!r})")
                else:
                    parts.append(line)
            if name is not None:
                flush()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise InputError(f"{path}: cannot read the sequence database ({exc})") from None
    if not seqs:
        raise InputError(f"{path}: no FASTA records in the sequence database")
    block = pyhmmer.easel.DigitalSequenceBlock(alphabet, seqs)
    return SequenceDatabase(path=path, block=block, num_sequences=len(seqs),
                            num_residues=residues, digest=file_digest(path) if digest else "")
