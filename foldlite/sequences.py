"""Sequence input: FASTA queries, A3M alignments, alignment profiles and safe output names.

Letters policy (``parse_sequence``, ``read_fasta``; ``read_a3m`` maps letters the same way but
does not warn):

* the 20 standard one-letter codes, upper or lower case;
* ``U`` (selenocysteine) is read as ``C`` and ``O`` (pyrrolysine) as ``K``, their closest standard
  amino acids;
* ``B`` (D or N), ``Z`` (E or Q), ``J`` (I or L) and ``X`` (any) are read as unknown (index 20,
  ``X``);
* each of these six letters gives a ``SequenceWarning`` naming the record and the 1-based
  positions;
* one ``*`` (stop) at the very end of a sequence is dropped; anything else (digits, gaps
  ``-``/``.``, other symbols, a ``*`` inside) is an ``InputError`` naming the file, the record
  and the position.

``SequenceRecord.sequence`` is the normalised one-letter sequence (upper case, with the policy
applied, so ``sequence[i] == constants.restypes_with_x[aatype[i]]``).
"""

from __future__ import annotations

import dataclasses
import os
import re
import unicodedata
import warnings
from pathlib import Path

import numpy as np

from foldlite import constants as rc
from foldlite.errors import InputError

__all__ = [
    "SequenceRecord",
    "SequenceWarning",
    "Msa",
    "GAP",
    "read_fasta",
    "read_fasta_entries",
    "FastaEntry",
    "parse_sequence",
    "read_a3m",
    "msa_profile",
    "sequence_weights",
    "safe_name",
]

#: Index of a gap in MSA matrices (20 is the unknown residue).
GAP: int = 21
#: Letters read as another amino acid (policy above).
SUBSTITUTIONS: dict[str, str] = {"U": "C", "O": "K", "B": "X", "Z": "X", "J": "X"}
_AMBIGUOUS = frozenset(SUBSTITUTIONS) | {"X"}
_MAX_LISTED = 10

# Letter -> index lookup table over bytes (255 = not allowed).
_LOOKUP = np.full(256, 255, np.uint8)
for _i, _r in enumerate(rc.restypes_with_x):
    _LOOKUP[ord(_r)] = _i
for _k, _v in SUBSTITUTIONS.items():
    _LOOKUP[ord(_k)] = rc.restype_order_with_x[_v]
_MSA_LOOKUP = _LOOKUP.copy()
_ASCII_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_MSA_LOOKUP[ord("-")] = GAP


class SequenceWarning(UserWarning):
    """A sequence letter was read by the substitution policy (U, O, B, Z, J, X)."""


@dataclasses.dataclass(frozen=True)
class SequenceRecord:
    """One query sequence.

    Attributes:
      id: the record id (first word of the FASTA header).
      description: the full header line without '>'.
      sequence: the normalised one-letter sequence (see the module docstring).
      aatype: int32 [L] residue types 0..20 (``constants.restypes_with_x``).
    """

    id: str
    description: str
    sequence: str
    aatype: np.ndarray

    @property
    def length(self) -> int:
        return len(self.sequence)

    def __len__(self) -> int:
        return len(self.sequence)


@dataclasses.dataclass(frozen=True)
class Msa:
    """A multiple sequence alignment in query columns.

    Attributes:
      sequences: int32 [M, L] residue types 0..20 and ``GAP`` (21); row 0 is the query.
      deletions: int32 [M, L] number of residues deleted (lower-case insertions) before each
        column in each row.
      names: the M record ids.
    """

    sequences: np.ndarray
    deletions: np.ndarray
    names: tuple[str, ...] = ()

    @property
    def num_sequences(self) -> int:
        return int(self.sequences.shape[0])

    @property
    def length(self) -> int:
        return int(self.sequences.shape[1])


# --------------------------------------------------------------------------------------------
# Letters
# --------------------------------------------------------------------------------------------

def _where(path: str | None, record: str) -> str:
    return f"{path}: record {record!r}" if path else f"record {record!r}"


def _positions(idx) -> str:
    idx = [int(i) + 1 for i in idx]
    text = ", ".join(str(i) for i in idx[:_MAX_LISTED])
    if len(idx) > _MAX_LISTED:
        text += f", ... ({len(idx)} in all)"
    return text


def _describe_char(ch: str) -> str:
    """A letter for a message: quoted when printable ASCII, else its code and Unicode name (an
    undecodable byte, read with ``surrogateescape``, as that byte)."""
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:
        return f"byte 0x{code - 0xDC00:02x} (not UTF-8 text; is the file in another encoding?)"
    if ch.isascii() and ch.isprintable():
        return repr(ch)
    name = unicodedata.name(ch, "")
    return f"{ch!r} (U+{code:04X}{' ' + name if name else ''})"


def _encode(raw: str, record: str, path: str | None, max_length: int | None
            ) -> tuple[str, np.ndarray]:
    """Normalise and encode a sequence; return (sequence, aatype). Raises InputError."""
    original = "".join(raw.split())
    if original.endswith("*"):
        original = original[:-1]
    seq = original.translate(_ASCII_UPPER)  # str.upper() may change the length ('ß' -> 'SS')
    if not seq:
        raise InputError(f"{_where(path, record)}: empty sequence")
    codes = np.fromiter((min(ord(ch), 255) for ch in seq), dtype=np.int64, count=len(seq))
    aatype = _LOOKUP[codes]
    bad = np.nonzero((aatype == 255) | (codes > 127))[0]
    if bad.size:
        i = int(bad[0])
        hint = ""
        if seq[i] in "-.":
            hint = " (gaps are not allowed in a query sequence; alignments go in an A3M file)"
        elif seq[i] == "*":
            hint = " (a stop '*' is allowed only at the end)"
        more = f"; {bad.size} bad letters in all" if bad.size > 1 else ""
        raise InputError(f"{_where(path, record)}: position {i + 1}: {_describe_char(original[i])}"
                         f" is not an amino-acid letter{hint}{more}")
    if max_length is not None and len(seq) > max_length:
        raise InputError(f"{_where(path, record)}: {len(seq)} residues, more than the length "
                         f"limit max_length={max_length}")
    ambiguous = [i for i, ch in enumerate(seq) if ch in _AMBIGUOUS]
    if ambiguous:
        parts = []
        for letter in sorted({seq[i] for i in ambiguous}):
            rule = f"{letter} as {SUBSTITUTIONS[letter]}" if letter in SUBSTITUTIONS else letter
            where = _positions([i for i in ambiguous if seq[i] == letter])
            parts.append(f"{rule} at position(s) {where}")
        warnings.warn(f"{_where(path, record)}: read {'; '.join(parts)} (X is the unknown "
                      "residue type 20)", SequenceWarning, stacklevel=3)
    normalised = "".join(rc.restypes_with_x[a] for a in aatype)
    return normalised, aatype.astype(np.int32)


def parse_sequence(seq: str, name: str = "query", max_length: int | None = None
                   ) -> SequenceRecord:
    """A SequenceRecord from a plain one-letter sequence string (whitespace ignored).

    Raises:
      InputError: for an empty sequence, a letter that is not an amino acid (names the record and
        the 1-based position) or a sequence longer than ``max_length``.
    """
    if seq.lstrip().startswith(">"):
        raise InputError(f"record {name!r}: looks like FASTA text (starts with '>'); pass a "
                         "file to read_fasta or the bare sequence")
    normalised, aatype = _encode(seq, name, None, max_length)
    return SequenceRecord(id=name, description=name, sequence=normalised, aatype=aatype)


# --------------------------------------------------------------------------------------------
# FASTA
# --------------------------------------------------------------------------------------------

def _read_bytes_checked(path: Path, kind: str) -> bytes:
    """The bytes of ``path``; a missing file, a folder or an empty file is an ``InputError``."""
    if not path.exists():
        raise InputError(f"{path}: {kind} file not found")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not a {kind} file")
    raw = path.read_bytes()
    if not raw.strip():
        raise InputError(f"{path}: {kind} file is empty")
    return raw


def _read_checked(path: Path, kind: str) -> str:
    raw = _read_bytes_checked(path, kind)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not a text {kind} file (byte {exc.start + 1} is not "
                         "UTF-8)") from None


@dataclasses.dataclass(frozen=True)
class FastaEntry:
    """One record of a FASTA file, validated on its own.

    Attributes:
      number: 1-based position of the record in the file.
      id: the record id (first word of the header; not yet made safe for a file name).
      record: the valid ``SequenceRecord``, or None.
      error: why the record is refused (names the file, the record and the position), or None.
      notes: one line per record on letters read by the substitution policy (U, O, B, Z, J, X).
    """

    number: int
    id: str
    record: SequenceRecord | None
    error: str | None
    notes: tuple[str, ...] = ()


def _split_fasta(raw: bytes) -> list[tuple[str, bytes]]:
    """(header without '>', sequence bytes without whitespace) of each record.

    Bytes, not text: a byte that is not UTF-8 in one record (a Latin-1 letter, a pasted binary
    fragment) is that record's error, found when its letters are checked, not the file's."""
    records: list[tuple[str, list[bytes]]] = []
    for line in raw.splitlines():
        if line.lstrip().startswith(b">"):
            header = line.lstrip()[1:].decode("utf-8", errors="replace").strip()
            records.append((header, []))
        elif records:
            records[-1][1].append(b"".join(line.split()))
    return [(h, b"".join(parts)) for h, parts in records]


def read_fasta_entries(path: str | os.PathLike, max_length: int | None = None
                       ) -> list[FastaEntry]:
    """Every record of a FASTA file, each validated on its own (what a batch predicts from).

    Raises:
      InputError: for problems of the whole file: missing, a folder, empty, not text, no '>'
        header before the sequence, no records.
    Returns:
      One ``FastaEntry`` per record, in file order; a record with an empty id, a duplicate id,
      an empty sequence, a character that is not an amino-acid letter (an undecodable byte
      included) or more than ``max_length`` residues has an ``error`` naming the file, the
      record and the 1-based position.
    """
    path = Path(path)
    raw = _read_bytes_checked(path, "FASTA")
    first = next((ln for ln in raw.splitlines() if ln.strip()), b"")
    if not first.lstrip().startswith(b">"):
        try:
            shown = first.decode("utf-8").strip()[:30]
        except UnicodeDecodeError:
            raise InputError(f"{path}: not a text FASTA file (its first line is not UTF-8 "
                             "text)") from None
        raise InputError(f"{path}: no FASTA records (a record starts with a '>' header line; the "
                         f"file starts with {shown!r})")
    entries: list[FastaEntry] = []
    seen: dict[str, int] = {}
    for n, (header, letters) in enumerate(_split_fasta(raw), start=1):
        rid = header.split(maxsplit=1)[0] if header else ""
        if not rid:
            entries.append(FastaEntry(n, f"record_{n}", None,
                                      f"{path}: record {n} has an empty name after '>'"))
            continue
        if rid in seen:
            entries.append(FastaEntry(n, rid, None, f"{path}: duplicate record id {rid!r} "
                                                    f"(records {seen[rid]} and {n})"))
            continue
        seen[rid] = n
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", SequenceWarning)
                normalised, aatype = _encode(letters.decode("utf-8", errors="surrogateescape"),
                                             rid, str(path), max_length)
        except InputError as e:
            entries.append(FastaEntry(n, rid, None, str(e)))
            continue
        notes = tuple(str(w.message) for w in caught if issubclass(w.category, SequenceWarning))
        entries.append(FastaEntry(n, rid, SequenceRecord(id=rid, description=header,
                                                         sequence=normalised, aatype=aatype),
                                  None, notes))
    if not entries:
        raise InputError(f"{path}: no FASTA records")
    return entries


def read_fasta(path: str | os.PathLike, max_length: int | None = None) -> list[SequenceRecord]:
    """Read one or many protein sequences from a FASTA file.

    Args:
      path: the FASTA file.
      max_length: the longest sequence accepted (None: no limit).
    Returns:
      The records in file order.
    Raises:
      InputError: naming the file (and the record and 1-based position where they apply) for a
        missing or empty file, no records, an empty sequence, a record without an id, duplicate
        ids, a letter that is not an amino acid, or a sequence longer than ``max_length``
        (the first such problem; ``read_fasta_entries`` reports every record on its own).
    """
    entries = read_fasta_entries(path, max_length)
    for e in entries:
        if e.error is not None:
            raise InputError(e.error)
    for e in entries:
        for note in e.notes:
            warnings.warn(note, SequenceWarning, stacklevel=2)
    return [e.record for e in entries]


# --------------------------------------------------------------------------------------------
# A3M
# --------------------------------------------------------------------------------------------

def _a3m_records(text: str, path: str | os.PathLike) -> list[tuple[str, str, int]]:
    """(name, sequence, line number) of each A3M record; '#' lines before the first are skipped."""
    records: list[list] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        s = line.strip()
        if not s:
            continue
        if s.startswith(">"):
            name = s[1:].split(maxsplit=1)[0] if s[1:].strip() else f"row{len(records) + 1}"
            records.append([name, [], lineno])
        elif not records:
            if s.startswith("#"):
                continue
            raise InputError(f"{path}: line {lineno}: text before the first '>' header")
        else:
            records[-1][1].append(s)
    return [(name, "".join(parts), ln) for name, parts, ln in records]


def read_a3m(path: str | os.PathLike, query: str | SequenceRecord | None = None) -> Msa:
    """Read an A3M alignment (HHblits/ColabFold/MMseqs2 style).

    Upper-case letters and '-' are match columns; lower-case letters are insertions relative to
    the query and are removed, their count stored in ``deletions`` for the next column; '.' (gap
    in an insertion column, A2M) is removed. Letters follow the module's policy (U->C, O->K,
    B/Z/J/X -> unknown), without warnings for alignment rows.

    Args:
      path: the A3M file.
      query: optional query (string or SequenceRecord); row 1 must equal it.
    Returns:
      Msa with sequences [M, L] (gap = 21) and deletions [M, L].
    Raises:
      InputError: naming the file and the 1-based row (and position) for a missing/empty file, no
        records, a row whose match columns differ in number from the query's, a letter that is
        not an amino acid, or a first row that does not match ``query``.
    """
    path = Path(path)
    return parse_a3m(_read_checked(path, "A3M"), query, source=path)


def parse_a3m(text: str, query: str | SequenceRecord | None = None, *,
              source: str | os.PathLike = "A3M") -> Msa:
    """An A3M alignment from its text (``read_a3m`` without the file; ``source`` names it in
    messages)."""
    path = source
    records = _a3m_records(text, path)
    if not records:
        raise InputError(f"{path}: no A3M records (a record starts with a '>' header line)")
    length = None
    rows, dels, names = [], [], []
    for r, (name, seq, _lineno) in enumerate(records, start=1):
        seq = "".join(seq.split())
        if not seq:
            raise InputError(f"{path}: row {r} ({name!r}): empty sequence")
        try:
            data = np.frombuffer(seq.encode("ascii"), dtype=np.uint8)
        except UnicodeEncodeError:
            raise InputError(f"{path}: row {r} ({name!r}): non-ASCII character") from None
        is_lower = (data >= ord("a")) & (data <= ord("z"))
        is_dot = data == ord(".")
        keep = ~(is_lower | is_dot)
        matched = _MSA_LOOKUP[data[keep]]
        bad = np.nonzero(matched == 255)[0]
        if bad.size:
            pos = int(np.nonzero(keep)[0][bad[0]])
            raise InputError(f"{path}: row {r} ({name!r}): position {pos + 1}: {seq[pos]!r} is "
                             "not an amino-acid letter or gap")
        lower_letters = data[is_lower] - (ord("a") - ord("A"))
        if lower_letters.size and np.any(_LOOKUP[lower_letters] == 255):
            pos = int(np.nonzero(is_lower)[0][np.nonzero(_LOOKUP[lower_letters] == 255)[0][0]])
            raise InputError(f"{path}: row {r} ({name!r}): position {pos + 1}: {seq[pos]!r} is "
                             "not an amino-acid letter")
        # deletions before each match column = insertions since the previous match column
        at_match = np.cumsum(is_lower)[keep]  # insertions before each match column, cumulative
        deletion = np.diff(np.concatenate([[0], at_match])).astype(np.int32)
        if length is None:
            length = matched.size
        elif matched.size != length:
            raise InputError(f"{path}: row {r} ({name!r}) has {matched.size} match columns, "
                             f"the query (row 1) has {length}")
        rows.append(matched.astype(np.int32))
        dels.append(deletion)
        names.append(name)
    sequences = np.stack(rows)
    if query is not None:
        q = query if isinstance(query, SequenceRecord) else parse_sequence(query, "query")
        first = sequences[0]
        if first.shape[0] != q.aatype.shape[0] or np.any(first != q.aatype):
            if first.shape[0] != q.aatype.shape[0]:
                why = f"row 1 has {first.shape[0]} columns, the query {q.aatype.shape[0]} residues"
            else:
                i = int(np.nonzero(first != q.aatype)[0][0])
                got = "-" if first[i] == GAP else rc.restypes_with_x[first[i]]
                why = (f"position {i + 1}: row 1 has {got!r}, the query "
                       f"{q.sequence[i]!r}")
            raise InputError(f"{path}: row 1 ({names[0]!r}) does not match the query "
                             f"{q.id!r}: {why}")
    return Msa(sequences=sequences, deletions=np.stack(dels), names=tuple(names))


# --------------------------------------------------------------------------------------------
# Profiles
# --------------------------------------------------------------------------------------------

def _one_hot(seqs: np.ndarray) -> np.ndarray:
    """[M, C] symbols 0..21 -> float32 [M, C * 22] one-hot (gap is a symbol)."""
    m, c = seqs.shape
    out = np.zeros((m, c, GAP + 1), np.float32)
    out[np.arange(m)[:, None], np.arange(c)[None, :], np.clip(seqs, 0, GAP)] = 1.0
    return out.reshape(m, c * (GAP + 1))


def sequence_weights(sequences: np.ndarray, identity: float = 0.8,
                     max_bytes: int = 1 << 28) -> np.ndarray:
    """Weights [M] = 1 / (number of rows at >= ``identity`` fraction identity, itself included).

    Identity is the fraction of the L columns where two rows agree (gaps are a symbol), the
    reweighting of direct-coupling analysis (Morcos et al. 2011 PNAS 108:E1293; Ekeberg et al.
    2013 Phys Rev E 87:012707), theta = 1 - identity. Pairwise identities are one-hot matrix
    products: O(M^2 L) time; ``max_bytes`` bounds the one-hot block held in memory.
    """
    seqs = np.asarray(sequences)
    m, length = seqs.shape
    if m == 0:
        return np.zeros((0,), np.float32)
    threshold = identity * length - 1e-6
    cols = max(1, min(length, max_bytes // (m * (GAP + 1) * 4)))
    blocks = [slice(c, c + cols) for c in range(0, length, cols)]
    cached = _one_hot(seqs) if len(blocks) == 1 else None
    rows = max(1, min(m, max_bytes // (8 * m)))
    counts = np.zeros((m,), np.int64)
    for a in range(0, m, rows):
        same = np.zeros((min(rows, m - a), m), np.float32)  # identical columns, exact integers
        for blk in blocks:
            full = cached if cached is not None else _one_hot(seqs[:, blk])
            part = full[a:a + rows]
            same += part @ full.T
        counts[a:a + rows] = (same >= threshold).sum(-1)
    return (1.0 / counts).astype(np.float32)


def msa_profile(msa: Msa | np.ndarray, weighting: bool = True) -> np.ndarray:
    """Amino-acid profile [L, 20] of an alignment in ``constants.restypes`` order.

    Each column's frequencies are the (weighted) counts of the 20 amino acids divided by their sum;
    gaps and unknown residues are excluded. With ``weighting``, rows are weighted by
    ``sequence_weights`` (1 / number of rows within 80% identity). A column with no amino acid at
    all gets the uniform 1/20.

    Args:
      msa: an Msa, or its sequences [M, L] (0..20, gap 21).
    """
    seqs = np.asarray(msa.sequences if isinstance(msa, Msa) else msa)
    m, length = seqs.shape
    w = sequence_weights(seqs) if weighting else np.ones((m,), np.float32)
    prof = np.zeros((length, rc.restype_num), np.float64)
    for a in range(rc.restype_num):
        prof[:, a] = ((seqs == a) * w[:, None]).sum(0)
    total = prof.sum(-1, keepdims=True)
    empty = total[:, 0] <= 0
    prof = np.where(empty[:, None], 1.0 / rc.restype_num, prof / np.where(total > 0, total, 1))
    return prof.astype(np.float32)


# --------------------------------------------------------------------------------------------
# Output names
# --------------------------------------------------------------------------------------------

_UNSAFE = re.compile(r"[^\w.-]+")
_WINDOWS_RESERVED = frozenset(
    ["CON", "PRN", "AUX", "NUL"] + [f"COM{i}" for i in range(1, 10)]
    + [f"LPT{i}" for i in range(1, 10)])


def _file_name_letters(text: str) -> str:
    """Accented Latin letters as their base letter ('é' -> 'e', full-width 'Ａ' -> 'A'); other
    letters and digits (Cyrillic, Greek, CJK, ...) kept; anything else '_'."""
    out = []
    for ch in unicodedata.normalize("NFC", text):
        if ch.isascii():
            out.append(ch)
            continue
        base = unicodedata.normalize("NFKD", ch).encode("ascii", "ignore").decode("ascii")
        out.append(base if base else ch if ch.isalnum() else "_")
    return "".join(out)


def safe_name(record_id: str, taken: set[str] | None = None, max_length: int = 64) -> str:
    """A file-system-safe, unique name for a record id (for output files and folders).

    The result holds only letters, digits and ``._-`` (accented Latin letters become their base
    letter; letters of other scripts are kept, so 'протеин_α' stays readable; anything else
    becomes '_'), has no path separator, no '..', no control characters, does not start with
    '.' or '-', is not a Windows device name, is not empty ('unnamed'), has at most
    ``max_length`` characters, and differs from every name in ``taken`` (also
    case-insensitively from names safe_name put there), by a suffix ``_2``, ``_3``, ... The
    chosen name is added to ``taken`` (with its lower-case form, so names stay distinct on
    case-insensitive file systems).
    """
    if max_length < 8:
        raise ValueError("max_length must be at least 8")
    text = _file_name_letters(str(record_id))
    text = _UNSAFE.sub("_", text)
    text = re.sub(r"\.{2,}", ".", text)
    text = re.sub(r"_{2,}", "_", text)
    text = text.lstrip(".-_").rstrip(". _")
    if not text:
        text = "unnamed"
    if text.split(".")[0].upper() in _WINDOWS_RESERVED:
        text = "_" + text
    base = text[:max_length].rstrip(". ")
    if taken is None:
        return base
    candidate, n = base, 1
    while candidate in taken or candidate.lower() in taken:
        n += 1
        suffix = f"_{n}"
        candidate = base[:max_length - len(suffix)].rstrip(". ") + suffix
    taken.add(candidate)
    taken.add(candidate.lower())
    return candidate
