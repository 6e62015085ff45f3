"""The ProMod3 structure database file (``structure_db.dat``): its binary layout and a
validating, memory-mapped reader.

ProMod3's ``structure_db.dat`` holds PDB chains with backbone N, CA, C, O, sequence, DSSP,
phi/psi, accessibility, depth and two amino-acid profiles (one from a multiple sequence alignment
of homologs, one from structure). Its binary layout (little-endian; documented in
``shared/docs/promod3-structure-db.md``):

  header        77 bytes, starting with int32 1234 and int32 2
  uint64        n_chains, then per chain: uint32 n + n bytes PDB id, uint32 n + n bytes chain
                name, uint32 residue offset, uint16 length, int16 start residue number,
                3 x float32 shift
  uint64        n_res, then n_res bytes: one-letter sequence of all chains
  8 arrays      each preceded by uint64 == n_res:
                int16 [n_res, 4, 3] N CA C O (A = value * 0.01 - shift of the chain),
                int16 [n_res, 2] phi/psi (milliradians), uint16 [n_res] accessibility,
                uint16 [n_res] depth, uint8 [n_res] DSSP letter,
                uint16 [n_res, 20] alignment profile (x 10000, columns ACDEFGHIKLMNPQRSTVWY),
                uint16 [n_res, 20] structure profile (same encoding)
  end of file   exactly after the last array

``read_structure_db`` validates every count and offset and raises ``InputError`` naming the
problem for a truncated or foreign file.
"""

from __future__ import annotations

import dataclasses
import os
import struct
from pathlib import Path
from typing import Any, Callable

import numpy as np

from foldlite import constants as rc
from foldlite.errors import InputError

HEADER_SIZE = 77
MAGIC = (1234, 2)
COORD_SCALE = 0.01  # Angstrom per int16 unit
#: atom37 indices of ProMod3's four backbone atoms, in file order (N, CA, C, O).
BACKBONE_ATOM37 = tuple(rc.atom_order[a] for a in ("N", "CA", "C", "O"))
#: Per-residue arrays after the sequence: (name, dtype, trailing shape).
RESIDUE_ARRAYS: tuple[tuple[str, str, tuple[int, ...]], ...] = (
    ("coords", "<i2", (4, 3)),
    ("phi_psi", "<i2", (2,)),
    ("accessibility", "<u2", ()),
    ("depth", "<u2", ()),
    ("dssp", "u1", ()),
    ("aln_profile", "<u2", (20,)),
    ("struct_profile", "<u2", (20,)),
)
#: DSSP letters accepted in the file (8 states; ' ' and '-' are other writers' coil).
DSSP_LETTERS = b"HECTSGBI -"
#: Fixed part of a chain entry: residue offset, length, start number, shift.
CHAIN_FIXED = struct.Struct("<IHh3f")


@dataclasses.dataclass(frozen=True)
class StructureDB:
    """A validated, memory-mapped ``structure_db.dat`` (``C`` chains, ``R`` residues).

    Attributes:
      path: the file.
      pdb_ids, chain_names: [C] str.
      offsets: int64 [C] first residue of each chain; lengths: int64 [C].
      start_numbers: int32 [C] residue number of each chain's first residue.
      shifts: float32 [C, 3] per-chain coordinate shift (A).
      sequence: uint8 [R] ASCII one-letter codes.
      coords: int16 [R, 4, 3] (N, CA, C, O) fixed point; ``chain_backbone`` gives Angstrom.
      phi_psi: int16 [R, 2] milliradians; accessibility, depth: uint16 [R]; dssp: uint8 [R].
      aln_profile, struct_profile: uint16 [R, 20] x 10000 in ``profile_alphabet`` order.
    """

    path: Path
    file_size: int
    pdb_ids: list[str]
    chain_names: list[str]
    offsets: np.ndarray
    lengths: np.ndarray
    start_numbers: np.ndarray
    shifts: np.ndarray
    sequence: np.ndarray
    coords: np.ndarray
    phi_psi: np.ndarray
    accessibility: np.ndarray
    depth: np.ndarray
    dssp: np.ndarray
    aln_profile: np.ndarray
    struct_profile: np.ndarray

    @property
    def num_chains(self) -> int:
        return len(self.pdb_ids)

    @property
    def num_residues(self) -> int:
        return int(self.sequence.shape[0])

    def chain_id(self, i: int) -> str:
        return f"{self.pdb_ids[i]}_{self.chain_names[i]}"

    def chain_sequence(self, i: int) -> str:
        o, n = int(self.offsets[i]), int(self.lengths[i])
        return bytes(self.sequence[o:o + n]).decode("ascii")

    def chain_backbone(self, i: int) -> np.ndarray:
        """float32 [L, 4, 3] N, CA, C, O of chain ``i`` in Angstrom."""
        o, n = int(self.offsets[i]), int(self.lengths[i])
        xyz = self.coords[o:o + n].astype(np.float64) * COORD_SCALE - self.shifts[i]
        return xyz.astype(np.float32)


class _Cursor:
    """Bounds-checked little-endian reads from a byte buffer, for clear truncation errors."""

    def __init__(self, buf: Any, size: int, path: Path):
        self.buf, self.size, self.path, self.pos = buf, size, path, 0

    def need(self, n: int, what: str) -> None:
        if self.pos + n > self.size:
            raise InputError(f"{self.path}: truncated or not a ProMod3 structure database: "
                             f"{what} needs bytes {self.pos + 1}..{self.pos + n} but the file "
                             f"has {self.size:,} bytes")

    def unpack(self, st: struct.Struct, what: str) -> tuple:
        self.need(st.size, what)
        out = st.unpack_from(self.buf, self.pos)
        self.pos += st.size
        return out

    def string(self, what: str, max_len: int = 64) -> str:
        (n,) = self.unpack(U32, f"{what} length")
        if n == 0 or n > max_len:
            raise InputError(f"{self.path}: corrupt or not a ProMod3 structure database: {what} "
                             f"has length {n} at byte {self.pos - 3} (expected 1..{max_len})")
        self.need(n, what)
        raw = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        if not all(33 <= c < 127 for c in raw):
            raise InputError(f"{self.path}: corrupt or not a ProMod3 structure database: {what} "
                             f"{raw!r} at byte {self.pos - n + 1} is not printable ASCII")
        return raw.decode("ascii")


#: Counts and string lengths, and the two header numbers of ``MAGIC``.
U32 = struct.Struct("<I")
U64 = struct.Struct("<Q")
MAGIC_FORMAT = struct.Struct("<ii")


def read_structure_db(path: str | os.PathLike) -> StructureDB:
    """Open and validate ``structure_db.dat`` (memory-mapped; takes well under a second).

    Raises ``InputError`` when the header is not ProMod3's, a count or offset is out of range,
    an array's length field differs from ``n_res``, the file is truncated or has trailing bytes,
    or sequence/DSSP bytes are not letters.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: ProMod3 structure database not found")
    size = path.stat().st_size
    if size < HEADER_SIZE + 8:
        raise InputError(f"{path}: truncated or not a ProMod3 structure database: {size} bytes "
                         f"is shorter than the {HEADER_SIZE}-byte header and chain count")
    raw = np.memmap(path, dtype=np.uint8, mode="r")
    cur = _Cursor(raw, size, path)
    magic = cur.unpack(MAGIC_FORMAT, "header")
    if magic != MAGIC:
        raise InputError(f"{path}: not a ProMod3 structure database: the header starts with "
                         f"{magic}, expected {MAGIC}")
    cur.pos = HEADER_SIZE
    (n_chains,) = cur.unpack(U64, "n_chains")
    min_entry = 4 + 1 + 4 + 1 + CHAIN_FIXED.size
    if n_chains == 0 or n_chains * min_entry > size - cur.pos:
        raise InputError(f"{path}: corrupt or not a ProMod3 structure database: n_chains = "
                         f"{n_chains:,} cannot fit in a file of {size:,} bytes")
    pdb_ids, names = [], []
    fixed = np.empty((n_chains, 6), np.float64)
    for i in range(n_chains):
        where = f"chain {i + 1:,} of {n_chains:,}"
        pdb_ids.append(cur.string(f"{where}: PDB id"))
        names.append(cur.string(f"{where}: chain name"))
        fixed[i] = cur.unpack(CHAIN_FIXED, f"{where}: offset/length/shift")
    (n_res,) = cur.unpack(U64, "n_res")
    offsets = fixed[:, 0].astype(np.int64)
    lengths = fixed[:, 1].astype(np.int64)
    starts = fixed[:, 2].astype(np.int32)
    shifts = fixed[:, 3:6].astype(np.float32)
    bad = np.flatnonzero((lengths < 1) | (offsets + lengths > n_res))
    if len(bad):
        i = int(bad[0])
        raise InputError(f"{path}: corrupt ProMod3 structure database: chain {i + 1:,} "
                         f"({pdb_ids[i]} {names[i]}) has offset {offsets[i]:,} and length "
                         f"{lengths[i]:,}, outside the {n_res:,} residues ({len(bad):,} such "
                         "chains)")
    if not np.all(np.isfinite(shifts)):
        i = int(np.flatnonzero(~np.isfinite(shifts).all(-1))[0])
        raise InputError(f"{path}: corrupt ProMod3 structure database: chain {i + 1:,} "
                         f"({pdb_ids[i]} {names[i]}) has a non-finite shift")
    # Layout of the residue arrays; check every length field that lies inside the file, then the
    # total size.
    seq_start = cur.pos
    expected = seq_start + n_res
    spans: dict[str, tuple[int, str, tuple[int, ...]]] = {}
    for name, dt, trail in RESIDUE_ARRAYS:
        count_at = expected
        data_at = count_at + 8
        if count_at + 8 <= size:
            (count,) = U64.unpack_from(raw, count_at)
            if count != n_res:
                raise InputError(f"{path}: corrupt ProMod3 structure database: the {name} array "
                                 f"at byte {count_at + 1:,} declares {count:,} residues, the "
                                 f"header {n_res:,}")
        spans[name] = (data_at, dt, trail)
        expected = data_at + n_res * np.dtype(dt).itemsize * int(np.prod(trail, dtype=np.int64))
    if size < expected:
        raise InputError(f"{path}: truncated ProMod3 structure database: {n_res:,} residues in "
                         f"{n_chains:,} chains need {expected:,} bytes, the file has {size:,}")
    if size > expected:
        raise InputError(f"{path}: not a ProMod3 structure database of the known layout: "
                         f"{size - expected:,} bytes follow the last array (expected the file to"
                         f" end at byte {expected:,})")
    seq = raw[seq_start:seq_start + n_res]
    arrays = {}
    for name, (at, dt, trail) in spans.items():
        nbytes = n_res * np.dtype(dt).itemsize * int(np.prod(trail, dtype=np.int64))
        arrays[name] = raw[at:at + nbytes].view(np.dtype(dt)).reshape((n_res,) + trail)
    _check_letters(path, seq, lambda c: 65 <= c <= 90, "sequence", offsets, lengths, pdb_ids,
                   names)
    allowed = np.zeros(256, bool)
    allowed[np.frombuffer(DSSP_LETTERS, np.uint8)] = True
    _check_letters(path, arrays["dssp"], lambda c: allowed[c], "DSSP", offsets, lengths,
                   pdb_ids, names)
    return StructureDB(path=path, file_size=size, pdb_ids=pdb_ids, chain_names=names,
                       offsets=offsets, lengths=lengths, start_numbers=starts, shifts=shifts,
                       sequence=seq, **arrays)


def _check_letters(path: Path, arr: np.ndarray, ok: Callable[[Any], Any], what: str,
                   offsets: np.ndarray, lengths: np.ndarray, pdb_ids: list[str],
                   names: list[str]) -> None:
    table = np.array([bool(ok(c)) for c in range(256)])
    bad = np.flatnonzero(~table[np.asarray(arr)])
    if len(bad):
        r = int(bad[0])
        hit = np.flatnonzero((offsets <= r) & (r < offsets + lengths))
        where = (f"chain {int(hit[0]) + 1:,} ({pdb_ids[hit[0]]} {names[hit[0]]}) residue "
                 f"{r - int(offsets[hit[0]]) + 1}") if len(hit) else f"residue {r + 1:,}"
        raise InputError(f"{path}: corrupt ProMod3 structure database: {what} byte "
                         f"{int(arr[r])} at {where} is not a valid letter ({len(bad):,} such "
                         "bytes)")
