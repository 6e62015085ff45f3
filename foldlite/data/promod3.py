"""The ProMod3 structure database (Debian package ``promod3-data``) as a foldlite dataset.

ProMod3's ``structure_db.dat`` holds 21,119 PDB chains with backbone N, CA, C, O, sequence, DSSP,
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
problem for a truncated or foreign file. ``extract_structure_db`` takes the file out of the .deb
(an ``ar`` archive holding ``data.tar.xz``) without dpkg. ``convert`` writes a
``foldlite.data.dataset`` directory (vectorised over memory maps: the whole database converts in
well under a minute of CPU).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import shutil
import struct
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from foldlite import constants as rc
from foldlite.data import dataset as ds
from foldlite.errors import InputError

PACKAGE = "promod3-data"
#: The package version whose contents were measured (Debian bookworm).
KNOWN_VERSION = "3.2.1+ds-6"
KNOWN_DEB_SHA256 = "7d1011a2686ea92e263f3daf9940f787351ff94f19eb47646c624754d80b8f56"
KNOWN_DB_SHA256 = "0f1c6e35a3f248fddd0c2c0da2c0d1145b502d4663fe8adb7239f27adad3301a"
KNOWN_DB_SIZE = 520_676_726
KNOWN_NUM_CHAINS = 21_119
KNOWN_NUM_RESIDUES = 4_561_225
#: Path of the database inside the package's data archive.
DB_MEMBER = "usr/share/promod3/loop_data/structure_db.dat"

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
_CHAIN_FIXED = struct.Struct("<IHh3f")  # offset, length, start, shift


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
        (n,) = self.unpack(_U32, f"{what} length")
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


_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_MAGIC = struct.Struct("<ii")


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
    magic = cur.unpack(_MAGIC, "header")
    if magic != MAGIC:
        raise InputError(f"{path}: not a ProMod3 structure database: the header starts with "
                         f"{magic}, expected {MAGIC}")
    cur.pos = HEADER_SIZE
    (n_chains,) = cur.unpack(_U64, "n_chains")
    min_entry = 4 + 1 + 4 + 1 + _CHAIN_FIXED.size
    if n_chains == 0 or n_chains * min_entry > size - cur.pos:
        raise InputError(f"{path}: corrupt or not a ProMod3 structure database: n_chains = "
                         f"{n_chains:,} cannot fit in a file of {size:,} bytes")
    pdb_ids, names = [], []
    fixed = np.empty((n_chains, 6), np.float64)
    for i in range(n_chains):
        where = f"chain {i + 1:,} of {n_chains:,}"
        pdb_ids.append(cur.string(f"{where}: PDB id"))
        names.append(cur.string(f"{where}: chain name"))
        fixed[i] = cur.unpack(_CHAIN_FIXED, f"{where}: offset/length/shift")
    (n_res,) = cur.unpack(_U64, "n_res")
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
            (count,) = _U64.unpack_from(raw, count_at)
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


# ----------------------------------------------------------------------------------------------
# The Debian package
# ----------------------------------------------------------------------------------------------

class _Window(io.RawIOBase):
    """A read-only window ``[start, start + size)`` of a binary file."""

    def __init__(self, fh: io.BufferedReader, start: int, size: int):
        self.fh, self.start, self.size, self.pos = fh, start, size, 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        n = min(len(b), self.size - self.pos)
        if n <= 0:
            return 0
        self.fh.seek(self.start + self.pos)
        data = self.fh.read(n)
        b[:len(data)] = data
        self.pos += len(data)
        return len(data)


def ar_members(path: str | os.PathLike) -> list[tuple[str, int, int]]:
    """Members of an ``ar`` archive (a .deb): [(name, data offset, size)]."""
    path = Path(path)
    size = path.stat().st_size
    out = []
    with open(path, "rb") as fh:
        if fh.read(8) != b"!<arch>\n":
            raise InputError(f"{path}: not a Debian package (no 'ar' archive signature)")
        pos = 8
        while pos < size:
            fh.seek(pos)
            head = fh.read(60)
            if len(head) < 60 or head[58:60] != b"`\n":
                raise InputError(f"{path}: truncated or corrupt Debian package (bad member header "
                                 f"at byte {pos + 1:,})")
            name = head[:16].decode("ascii", "replace").strip().rstrip("/")
            try:
                msize = int(head[48:58].decode("ascii").strip())
            except ValueError:
                raise InputError(f"{path}: corrupt Debian package (member size at byte "
                                 f"{pos + 49:,})") from None
            if pos + 60 + msize > size:
                raise InputError(f"{path}: truncated Debian package: member {name} needs "
                                 f"{pos + 60 + msize:,} bytes, the file has {size:,}")
            out.append((name, pos + 60, msize))
            pos += 60 + msize + (msize & 1)
    return out


def extract_structure_db(deb: str | os.PathLike, dest: str | os.PathLike,
                         member: str = DB_MEMBER) -> tuple[int, str]:
    """Extract ``structure_db.dat`` from the .deb to ``dest`` (atomically).

    Returns (size in bytes, sha256). Reads the ``ar`` archive and the ``data.tar.*`` inside it
    with the standard library (``zstd``/``dpkg-deb`` are used only for a ``data.tar.zst``).
    """
    deb, dest = Path(deb), Path(dest)
    if not deb.is_file():
        raise InputError(f"{deb}: Debian package not found")
    members = ar_members(deb)
    data = [m for m in members if m[0].startswith("data.tar")]
    if not data:
        raise InputError(f"{deb}: no data.tar.* member; members are {[m[0] for m in members]}")
    name, start, msize = data[0]
    comp = name.rsplit(".", 1)[-1] if name != "data.tar" else ""
    proc = None
    with open(deb, "rb") as fh:
        if comp in ("xz", "gz", "bz2", ""):
            stream: Any = io.BufferedReader(_Window(fh, start, msize), 1 << 20)
            mode = f"r|{comp}" if comp else "r|"
        elif comp == "zst":
            if shutil.which("zstd"):
                cmd = ["zstd", "-dc"]
                proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
                _feed_async(proc, fh, start, msize)
            elif shutil.which("dpkg-deb"):
                proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)],
                                        stdout=subprocess.PIPE)
            else:
                raise InputError(f"{deb}: {name} is zstd-compressed; install zstd or dpkg")
            stream, mode = proc.stdout, "r|"
        else:
            raise InputError(f"{deb}: unsupported data member {name}")
        try:
            with tarfile.open(fileobj=stream, mode=mode) as tar:
                for info in tar:
                    if info.name.lstrip("./") == member and info.isfile():
                        src = tar.extractfile(info)
                        return _copy_hashed(src, dest, info.size, deb)
        except (tarfile.TarError, EOFError, OSError) as e:
            raise InputError(f"{deb}: corrupt data archive {name}: {e}") from None
        finally:
            if proc is not None:
                proc.kill()
                proc.wait()
    raise InputError(f"{deb}: the package has no {member}; is it {PACKAGE}?")


def _feed_async(proc: subprocess.Popen, fh: Any, start: int, size: int) -> None:
    import threading

    data = _Window(fh, start, size)

    def feed() -> None:
        try:
            while chunk := data.read(1 << 20):
                proc.stdin.write(chunk)
        except (BrokenPipeError, ValueError):
            pass
        finally:
            try:
                proc.stdin.close()
            except OSError:
                pass

    threading.Thread(target=feed, daemon=True).start()


def _copy_hashed(src: Any, dest: Path, size: int, deb: Path) -> tuple[int, str]:
    from foldlite.fileio import atomic_open

    h = hashlib.sha256()
    n = 0
    with atomic_open(dest, "wb") as out:
        while chunk := src.read(1 << 22):
            h.update(chunk)
            out.write(chunk)
            n += len(chunk)
        if n != size:
            raise InputError(f"{deb}: truncated package: {DB_MEMBER} has {n:,} of {size:,} bytes")
    return n, h.hexdigest()


def download_deb(dest_dir: str | os.PathLike) -> Path:
    """``apt-get download promod3-data`` into ``dest_dir``; returns the .deb."""
    dest_dir = Path(dest_dir)
    if not shutil.which("apt-get"):
        raise InputError("apt-get is not available to download the promod3-data package; "
                         "download promod3-data_*.deb on a Debian/Ubuntu machine (apt-get "
                         "download promod3-data) and pass --deb PATH, or pass --db "
                         "structure_db.dat")
    proc = subprocess.run(["apt-get", "download", PACKAGE], cwd=dest_dir, capture_output=True,
                          text=True)
    debs = sorted(dest_dir.glob(f"{PACKAGE}_*.deb"))
    if proc.returncode != 0 or not debs:
        msg = (proc.stderr or proc.stdout).strip().splitlines()
        raise InputError(f"apt-get download {PACKAGE} failed ({msg[-1] if msg else 'no output'});"
                         " run 'apt-get update' first if the package is unknown, or pass --deb "
                         "PATH / --db PATH")
    return debs[0]


# ----------------------------------------------------------------------------------------------
# Conversion
# ----------------------------------------------------------------------------------------------

@dataclasses.dataclass
class ConversionReport:
    """What ``convert`` wrote."""

    out_dir: Path
    num_chains: int
    num_residues: int
    num_atoms: int
    unknown_residues: int
    uncovered_residues: int
    seconds: float
    first_chain: str
    first_sequence: str
    first_n_atom: tuple[float, float, float]
    bond_lengths: dict[str, tuple[float, float]]  # name -> (mean, std) in Angstrom
    total_seconds: float | None = None  # with download/extraction (convert_from_deb_or_db)

    def lines(self) -> list[str]:
        x, y, z = self.first_n_atom
        out = [f"wrote {self.out_dir}",
               f"  chains: {self.num_chains:,}  residues: {self.num_residues:,}  atoms: "
               f"{self.num_atoms:,}  (converted in {self.seconds:.1f} s"
               + (f", {self.total_seconds:.1f} s in all)" if self.total_seconds else ")"),
               f"  first chain {self.first_chain}: {self.first_sequence[:25]}..., first N atom "
               f"({x:.2f}, {y:.2f}, {z:.2f})"]
        out.append("  backbone bonds (mean +- sd, A): " + ", ".join(
            f"{k} {m:.3f} +- {s:.3f}" for k, (m, s) in self.bond_lengths.items()))
        if self.unknown_residues:
            out.append(f"  residues outside the 20 standard amino acids (stored as X): "
                       f"{self.unknown_residues:,}")
        if self.uncovered_residues:
            out.append(f"  residues not in any chain (dropped): {self.uncovered_residues:,}")
        return out


def _aatype_lut() -> np.ndarray:
    lut = np.full(256, rc.unk_restype_index, np.uint8)
    for i, r in enumerate(rc.restypes):
        lut[ord(r)] = i
    return lut


def convert(db: StructureDB, out_dir: str | os.PathLike, *, source: dict[str, Any] | None = None,
            overwrite: bool = False, chunk: int = 1 << 18) -> ConversionReport:
    """Write ``db`` as a foldlite dataset at ``out_dir``.

    Chains keep the file's order and get ids ``{PDB id}_{chain}`` (a repeated id gets ``.2``,
    ``.3``... appended). Positions: the four backbone atoms (N, CA, C, O) in atom37 slots, in
    Angstrom; side chains absent (masked). Residue numbers: the chain's start number + 0..L-1.
    The alignment profile becomes ``profile`` (restypes order); phi/psi, accessibility, depth
    and the structure profile are kept as ``extra_*`` arrays.
    """
    t0 = time.perf_counter()
    C = db.num_chains
    lengths = db.lengths
    R = int(lengths.sum())
    out_offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    chain_of = np.repeat(np.arange(C), lengths)
    within = np.arange(R, dtype=np.int64) - out_offsets[chain_of]
    gather = db.offsets[chain_of] + within  # source residue of each output residue
    identity = bool(np.array_equal(db.offsets, out_offsets)) and R == db.num_residues
    covered = np.zeros(db.num_residues, bool)
    covered[gather] = True
    uncovered = int((~covered).sum())
    del covered

    b = ds.DatasetBuilder(out_dir, overwrite=overwrite)
    try:
        lut = _aatype_lut()
        aatype = b.array("aatype", np.uint8, (R,))
        ridx = b.array("residue_index", np.int32, (R,))
        b.save("insertion_code", np.full(R, 32, np.uint8))
        mask37 = np.zeros(rc.atom_type_num, bool)
        mask37[list(BACKBONE_ATOM37)] = True
        b.save("atom_mask", np.broadcast_to(ds.pack_atom_mask(mask37), (R, ds.ATOM_MASK_BYTES)))
        b.save("atom_offset", np.arange(R + 1, dtype=np.int64) * 4)
        pos = b.array("atom_positions", np.float32, (4 * R, 3))
        dssp = b.array("dssp", np.uint8, (R,))
        prof = b.array("profile", np.uint16, (R, rc.restype_num))
        phipsi = b.array("extra_phi_psi_mrad", np.int16, (R, 2))
        acc = b.array("extra_solvent_accessibility", np.uint16, (R,))
        depth = b.array("extra_residue_depth", np.uint16, (R,))
        sprof = b.array("extra_structure_profile", np.uint16, (R, rc.restype_num))
        perm = rc.profile_to_restype_perm
        unknown = 0
        for s in range(0, R, chunk):
            e = min(R, s + chunk)
            src = slice(s, e) if identity else gather[s:e]
            a = lut[np.asarray(db.sequence[src])]
            unknown += int((a == rc.unk_restype_index).sum())
            aatype[s:e] = a
            ridx[s:e] = db.start_numbers[chain_of[s:e]] + within[s:e]
            xyz = np.asarray(db.coords[src], np.float64) * COORD_SCALE
            xyz -= db.shifts[chain_of[s:e]].astype(np.float64)[:, None, :]
            pos[4 * s:4 * e] = xyz.reshape(-1, 3).astype(np.float32)
            dssp[s:e] = db.dssp[src]
            prof[s:e] = np.asarray(db.aln_profile[src])[:, perm]
            phipsi[s:e] = db.phi_psi[src]
            acc[s:e] = db.accessibility[src]
            depth[s:e] = db.depth[src]
            sprof[s:e] = np.asarray(db.struct_profile[src])[:, perm]
        bonds = _backbone_bond_stats(pos, out_offsets, lengths, chunk)
        first_n = tuple(float(v) for v in pos[0])
        seen: dict[str, int] = {}
        chains = []
        for i in range(C):
            cid = db.chain_id(i)
            seen[cid] = seen.get(cid, 0) + 1
            if seen[cid] > 1:
                cid = f"{cid}.{seen[cid]}"
            chains.append(ds.ChainEntry(cid, db.pdb_ids[i], db.chain_names[i],
                                        int(out_offsets[i]), int(lengths[i]), True, True))
        manifest = {
            "source": "promod3",
            **(source or {}),
            "counts": {"unknown_residues": unknown, "uncovered_residues": uncovered},
            "spot_checks": {"first_chain": chains[0].chain_id, "first_n_atom": first_n,
                            "backbone_bond_lengths": bonds},
            "notes": "ProMod3 StructureDB: backbone N, CA, C, O only (side chains masked). "
                     "profile = alignment-derived profile (restypes order, x 10000). extra_*: "
                     "phi/psi (milliradians), solvent accessibility, residue depth, "
                     "structure-derived profile (restypes order, x 10000) as in ProMod3.",
        }
    except BaseException:
        b.abort()
        raise
    out = b.finish(chains, manifest)
    return ConversionReport(
        out_dir=out, num_chains=C, num_residues=R, num_atoms=4 * R, unknown_residues=unknown,
        uncovered_residues=uncovered, seconds=time.perf_counter() - t0,
        first_chain=chains[0].chain_id, first_sequence=db.chain_sequence(0),
        first_n_atom=first_n, bond_lengths=bonds)


def _backbone_bond_stats(pos: np.ndarray, offsets: np.ndarray, lengths: np.ndarray,
                         chunk: int) -> dict[str, tuple[float, float]]:
    """Mean and sd of N-CA, CA-C, C-O and peptide C-N bonds over all residues ([4R, 3] input)."""
    R = int(lengths.sum())
    sums = {k: np.zeros(2) for k in ("N-CA", "CA-C", "C-O", "C-N")}
    counts = dict.fromkeys(sums, 0)
    last = np.zeros(R, bool)
    last[offsets + lengths - 1] = True  # no peptide bond after a chain's last residue
    for s in range(0, R, chunk):
        n = min(chunk, R - s)
        bb = np.asarray(pos[4 * s:4 * min(R, s + n + 1)], np.float64).reshape(-1, 4, 3)
        cn = np.linalg.norm(bb[1:, 0] - bb[:-1, 2], axis=-1)  # C(r) - N(r + 1)
        d = {"N-CA": np.linalg.norm(bb[:n, 1] - bb[:n, 0], axis=-1),
             "CA-C": np.linalg.norm(bb[:n, 2] - bb[:n, 1], axis=-1),
             "C-O": np.linalg.norm(bb[:n, 3] - bb[:n, 2], axis=-1),
             "C-N": cn[~last[s:s + len(cn)]]}
        for k, v in d.items():
            sums[k] += (v.sum(), (v * v).sum())
            counts[k] += v.size
    out = {}
    for k, (s1, s2) in sums.items():
        c = max(counts[k], 1)
        m = s1 / c
        out[k] = (round(float(m), 4), round(float(np.sqrt(max(s2 / c - m * m, 0.0))), 4))
    return out


def convert_from_deb_or_db(out_dir: str | os.PathLike, *, deb: str | os.PathLike | None = None,
                           db: str | os.PathLike | None = None, overwrite: bool = False,
                           keep_db: str | os.PathLike | None = None,
                           log: Callable[[str], None] = print,
                           command: str | None = None) -> ConversionReport:
    """The whole ``foldlite data promod3`` flow: obtain the package or file, check, convert.

    ``deb``: a downloaded ``promod3-data_*.deb``; ``db``: an extracted ``structure_db.dat``;
    neither: ``apt-get download``. ``keep_db``: where to keep the extracted database (default:
    a temporary file, removed).
    """
    from foldlite.fileio import sha256_file

    out_dir = Path(out_dir)
    ds.check_output_dir(out_dir, overwrite)  # before minutes of download and extraction
    source: dict[str, Any] = {"package": PACKAGE}
    if command:
        source["command"] = command
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    clock = [t_start]

    def took() -> str:
        now = time.perf_counter()
        dt, clock[0] = now - clock[0], now
        return f"({dt:.1f} s)"

    with tempfile.TemporaryDirectory(prefix=".foldlite-promod3-", dir=out_dir.parent) as tmp:
        if db is None:
            if deb is None:
                log(f"downloading {PACKAGE} with apt-get ...")
                deb = download_deb(tmp)
                log(f"downloaded {Path(deb).name} {took()}")
            deb = Path(deb)
            log(f"checking {deb} ...")
            deb_sha = sha256_file(deb)
            source.update(deb=str(deb.name), deb_sha256=deb_sha,
                          version=_version_from_name(deb.name))
            if deb_sha != KNOWN_DEB_SHA256:
                log(f"note: {deb.name} has sha256 {deb_sha}, not that of the measured "
                    f"{KNOWN_VERSION} package; its structure is validated instead {took()}")
            else:
                log(f"{deb.name}: sha256 matches {PACKAGE} {KNOWN_VERSION} {took()}")
            db_path = Path(keep_db) if keep_db else Path(tmp) / "structure_db.dat"
            log(f"extracting {DB_MEMBER} ...")
            size, db_sha = extract_structure_db(deb, db_path)
            log(f"extracted {took()}")
        else:
            db_path = Path(db)
            if not db_path.is_file():
                raise InputError(f"{db_path}: ProMod3 structure database not found")
            size, db_sha = db_path.stat().st_size, sha256_file(db_path)
            source.update(version=KNOWN_VERSION if db_sha == KNOWN_DB_SHA256 else "unknown")
        source.update(db_size=size, db_sha256=db_sha)
        if db_sha == KNOWN_DB_SHA256 and size == KNOWN_DB_SIZE:
            log(f"structure_db.dat: {size:,} bytes, sha256 matches {PACKAGE} {KNOWN_VERSION}")
        else:
            log(f"structure_db.dat: {size:,} bytes, sha256 {db_sha} (not the measured "
                f"{KNOWN_VERSION} file: validating its layout)")
        sdb = read_structure_db(db_path)
        log(f"read and validated {sdb.num_chains:,} chains, {sdb.num_residues:,} residues "
            f"{took()}; converting ...")
        rep = convert(sdb, out_dir, source=source, overwrite=overwrite)
        rep.total_seconds = time.perf_counter() - t_start
        return rep


def _version_from_name(name: str) -> str:
    parts = name.split("_")
    return parts[1] if len(parts) >= 3 else "unknown"


# ----------------------------------------------------------------------------------------------
# Writing (the inverse of read_structure_db: for tests and for exporting subsets)
# ----------------------------------------------------------------------------------------------

@dataclasses.dataclass
class DBChain:
    """One chain to write with ``write_structure_db`` (``L`` residues).

    backbone: [L, 4, 3] N, CA, C, O in Angstrom; profiles [L, 20] in ``profile_alphabet`` order
    as frequencies (0..1); phi_psi [L, 2] radians.
    """

    pdb_id: str
    chain: str
    sequence: str
    backbone: np.ndarray
    dssp: str
    start: int = 1
    aln_profile: np.ndarray | None = None
    struct_profile: np.ndarray | None = None
    phi_psi: np.ndarray | None = None
    accessibility: np.ndarray | None = None
    depth: np.ndarray | None = None


def encode_structure_db(chains: list[DBChain]) -> bytes:
    """The bytes of a ``structure_db.dat`` holding ``chains`` (ProMod3's layout)."""
    header = _MAGIC.pack(*MAGIC) + bytes(HEADER_SIZE - _MAGIC.size)
    table = [_U64.pack(len(chains))]
    parts: dict[str, list[np.ndarray]] = {name: [] for name, _, _ in RESIDUE_ARRAYS}
    seq = []
    offset = 0
    for c in chains:
        L = len(c.sequence)
        bb = np.asarray(c.backbone, np.float64).reshape(L, 4, 3)
        shift = -np.round(bb.reshape(-1, 3).mean(0), 2) if L else np.zeros(3)
        for s in (c.pdb_id, c.chain):
            table.append(_U32.pack(len(s)) + s.encode("ascii"))
        table.append(_CHAIN_FIXED.pack(offset, L, c.start, *shift.astype(np.float32)))
        offset += L
        seq.append(c.sequence.encode("ascii"))
        xyz = np.rint((bb + shift.astype(np.float32)) / COORD_SCALE)
        if np.abs(xyz).max(initial=0) > 32767:
            raise ValueError(f"chain {c.pdb_id} {c.chain} spans more than +-327 A")
        parts["coords"].append(xyz.astype("<i2"))
        zeros = np.zeros((L, 20))
        prof = [(c.aln_profile, "aln_profile"), (c.struct_profile, "struct_profile")]
        for p, name in prof:
            p = zeros if p is None else np.asarray(p, np.float64)
            parts[name].append(np.rint(p * 10000).astype("<u2"))
        pp = np.zeros((L, 2)) if c.phi_psi is None else np.asarray(c.phi_psi)
        parts["phi_psi"].append(np.rint(pp * 1000).astype("<i2"))
        for v, name in ((c.accessibility, "accessibility"), (c.depth, "depth")):
            parts[name].append(np.zeros(L, "<u2") if v is None else np.asarray(v, "<u2"))
        if len(c.dssp) != L:
            raise ValueError(f"chain {c.pdb_id} {c.chain}: DSSP string length != sequence")
        parts["dssp"].append(np.frombuffer(c.dssp.encode("ascii"), np.uint8))
    n_res = offset
    body = [_U64.pack(n_res), b"".join(seq)]
    for name, dt, trail in RESIDUE_ARRAYS:
        arr = np.concatenate(parts[name]) if parts[name] else np.zeros((0,) + trail, dt)
        body.append(_U64.pack(n_res) + np.ascontiguousarray(arr, dtype=dt).tobytes())
    return header + b"".join(table) + b"".join(body)


def write_structure_db(path: str | os.PathLike, chains: list[DBChain]) -> Path:
    """Write ``chains`` as a ``structure_db.dat`` at ``path`` (atomically)."""
    from foldlite.fileio import write_bytes

    write_bytes(path, encode_structure_db(chains))
    return Path(path)
