"""The foldlite dataset: one on-disk format for every source of training structures.

A dataset is a directory of memory-mappable ``.npy`` arrays, an index of chains and a manifest.
Residues of all chains are concatenated along one residue axis ``R``; atoms present in those
residues are concatenated along one atom axis ``A`` (a sparse atom37 layout: a ProMod3 backbone
costs 4 atoms per residue, an mmCIF chain only the atoms it really has). Nothing is rounded
beyond the source: coordinates are float32 Angstrom (exact for the 0.01 A fixed point of ProMod3
and for the 0.001 A of PDB/mmCIF files at any coordinate magnitude; float16 or int16 fixed point
would lose precision or overflow beyond +-327 A).

Files (format version 1):

  manifest.json          format, source, source version and sha256, counts, foldlite version,
                         the command that built it, the arrays present with dtype and shape
  chains.tsv             one row per chain: chain_id, entry, chain, offset, length, has_profile,
                         has_dssp (``offset``/``length`` index the residue axis)
  aatype.npy             uint8   [R]      residue type 0..20 (``constants.restypes_with_x``)
  residue_index.npy      int32   [R]      residue numbers (author/SEQRES numbering of the source)
  insertion_code.npy     uint8   [R]      ASCII insertion code, 32 (space) when none
  atom_mask.npy          uint8   [R, 5]   atom37 presence bits, ``np.packbits(mask37, axis=-1,
                                          bitorder='little')``
  atom_offset.npy        int64   [R + 1]  first atom of each residue on the atom axis
  atom_positions.npy     float32 [A, 3]   Angstrom; a residue's atoms in atom37 order
  dssp.npy               uint8   [R]      8-state DSSP letter (ASCII H E C T S G B I ...);
                                          0 where unknown
  profile.npy            uint16  [R, 20]  optional: amino-acid frequencies x 10000 in
                                          ``constants.restypes`` order; zero rows where a chain
                                          has none (``has_profile`` 0)
  atom_b_factors.npy     float32 [A]      optional: per-atom B-factors (structure files)
  extra_*.npy            optional source-specific per-residue arrays (ProMod3: phi/psi,
                                          accessibility, depth, structure profile)

``Dataset(path)`` opens a dataset (memory-mapped: it loads in well under a second whatever the
size) and gives random access to chains: ``dataset[i]`` or ``dataset['12AS_A']`` ->
``ChainRecord``. ``write_dataset`` and ``DatasetBuilder`` write one atomically (into a temporary
sibling directory renamed at the end).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from foldlite import constants as rc
from foldlite.errors import InputError
from foldlite.fileio import write_json, write_text
from foldlite.protein import Protein
from foldlite.version import __version__

FORMAT = "foldlite-dataset"
FORMAT_VERSION = 1
ATOM_MASK_BYTES = 5  # ceil(37 / 8)
PROFILE_SCALE = 10000.0
CHAIN_COLUMNS = ("chain_id", "entry", "chain", "offset", "length", "has_profile", "has_dssp")

#: Required arrays: name -> (dtype, trailing shape, axis: "res", "res+1" or "atom").
CORE_ARRAYS: dict[str, tuple[str, tuple[int, ...], str]] = {
    "aatype": ("uint8", (), "res"),
    "residue_index": ("int32", (), "res"),
    "insertion_code": ("uint8", (), "res"),
    "atom_mask": ("uint8", (ATOM_MASK_BYTES,), "res"),
    "atom_offset": ("int64", (), "res+1"),
    "atom_positions": ("float32", (3,), "atom"),
    "dssp": ("uint8", (), "res"),
}
#: Optional arrays with a fixed meaning.
OPTIONAL_ARRAYS: dict[str, tuple[str, tuple[int, ...], str]] = {
    "profile": ("uint16", (rc.restype_num,), "res"),
    "atom_b_factors": ("float32", (), "atom"),
}


def pack_atom_mask(mask37: np.ndarray) -> np.ndarray:
    """[..., 37] bool/float -> [..., 5] uint8 bit-packed (little bit order)."""
    return np.packbits(np.asarray(mask37) > 0, axis=-1, bitorder="little")


def unpack_atom_mask(packed: np.ndarray) -> np.ndarray:
    """[..., 5] uint8 -> [..., 37] bool."""
    return np.unpackbits(np.asarray(packed), axis=-1, count=rc.atom_type_num,
                         bitorder="little").astype(bool)


def dssp_to_3state(dssp: np.ndarray) -> np.ndarray:
    """[L] uint8 DSSP letters -> [L] int32: 0 helix (H G I), 1 strand (E B), 2 other, -1 unknown."""
    return _DSSP3_LUT[np.asarray(dssp, np.uint8)]


def _dssp3_lut() -> np.ndarray:
    lut = np.full(256, 2, np.int32)
    lut[0] = -1
    for c in "HGI":
        lut[ord(c)] = 0
    for c in "EB":
        lut[ord(c)] = 1
    return lut


_DSSP3_LUT = _dssp3_lut()


@dataclasses.dataclass(frozen=True)
class ChainRecord:
    """One chain as stored (``L`` residues).

    Attributes:
      chain_id: unique id in the dataset, e.g. ``12AS_A``.
      aatype: int32 [L] residue types 0..20.
      atom_positions: float32 [L, 37, 3] Angstrom; zero where absent.
      atom_mask: float32 [L, 37] 1 where the atom is present.
      residue_index: int32 [L].
      insertion_code: [L] str ('' when none).
      dssp: uint8 [L] DSSP letters (ASCII), 0 where unknown.
      profile: float32 [L, 20] frequencies in ``restypes`` order, or None.
      b_factors: float32 [L, 37] or None.
    """

    chain_id: str
    aatype: np.ndarray
    atom_positions: np.ndarray
    atom_mask: np.ndarray
    residue_index: np.ndarray
    insertion_code: np.ndarray
    dssp: np.ndarray
    profile: np.ndarray | None = None
    b_factors: np.ndarray | None = None

    @property
    def length(self) -> int:
        return int(self.aatype.shape[0])

    @property
    def sequence(self) -> str:
        return "".join(rc.restypes_with_x[int(a)] for a in self.aatype)

    @property
    def dssp_string(self) -> str:
        return "".join(chr(c) if c else "?" for c in self.dssp)

    def to_protein(self):
        """This chain as a ``foldlite.protein.Protein``."""
        chain = self.chain_id.rsplit("_", 1)[-1].split(".")[0] if "_" in self.chain_id else "A"
        b = self.b_factors if self.b_factors is not None else np.zeros_like(self.atom_mask)
        return Protein(aatype=self.aatype.astype(np.int32),
                       atom_positions=self.atom_positions.astype(np.float32),
                       atom_mask=self.atom_mask.astype(np.float32),
                       residue_index=self.residue_index.astype(np.int32),
                       chain_id=chain, b_factors=b.astype(np.float32),
                       insertion_code=self.insertion_code)


def _dataset_error(path: Path, msg: str) -> InputError:
    return InputError(f"{path}: not a valid foldlite dataset: {msg}")


class Dataset:
    """A foldlite dataset directory opened for random access (arrays memory-mapped).

    ``len(ds)`` chains; ``ds[i]`` / ``ds['12AS_A']`` -> ``ChainRecord``; ``ds.chain_ids``,
    ``ds.lengths`` [C], ``ds.offsets`` [C]; ``ds.manifest`` (dict).
    """

    def __init__(self, path: str | os.PathLike, mmap: bool = True):
        self.path = Path(path)
        mpath = self.path / "manifest.json"
        if not self.path.is_dir():
            raise InputError(f"{self.path}: dataset directory not found")
        if not mpath.is_file():
            raise _dataset_error(self.path, "manifest.json is missing")
        try:
            self.manifest: dict[str, Any] = json.loads(mpath.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise _dataset_error(self.path, f"manifest.json is not JSON ({e})") from None
        if self.manifest.get("format") != FORMAT:
            raise _dataset_error(self.path, f"manifest format is {self.manifest.get('format')!r}")
        if self.manifest.get("format_version") != FORMAT_VERSION:
            version = self.manifest.get("format_version")
            raise _dataset_error(self.path, f"format_version {version!r} is not supported (this "
                                 f"foldlite reads {FORMAT_VERSION})")
        self._read_chains()
        self.arrays: dict[str, np.ndarray] = {}
        mode = "r" if mmap else None
        counts = self.manifest.get("counts", {})
        self.num_residues = int(counts.get("residues", -1))
        self.num_atoms = int(counts.get("atoms", -1))
        listed = self.manifest.get("arrays", {})
        for name in CORE_ARRAYS:
            if name not in listed:
                raise _dataset_error(self.path, f"manifest does not list the array {name!r}")
        for name, spec in listed.items():
            f = self.path / f"{name}.npy"
            if not f.is_file():
                raise _dataset_error(self.path, f"{f.name} is missing")
            try:
                arr = np.load(f, mmap_mode=mode, allow_pickle=False)
            except ValueError as e:
                raise _dataset_error(self.path, f"{f.name}: {e}") from None
            if str(arr.dtype) != spec["dtype"] or list(arr.shape) != list(spec["shape"]):
                raise _dataset_error(self.path, f"{f.name} has {arr.dtype} {list(arr.shape)}, the "
                                     f"manifest says {spec['dtype']} {spec['shape']}")
            # a plain ndarray view of the map: same memory, without np.memmap's per-slice cost
            self.arrays[name] = np.asarray(arr)
        R, A = self.num_residues, self.num_atoms
        for name, (dt, trail, axis) in {**CORE_ARRAYS, **OPTIONAL_ARRAYS}.items():
            if name not in self.arrays:
                continue
            lead = {"res": R, "res+1": R + 1, "atom": A}[axis]
            if self.arrays[name].shape != (lead,) + trail or str(self.arrays[name].dtype) != dt:
                raise _dataset_error(self.path, f"{name}.npy has {self.arrays[name].dtype} "
                                     f"{self.arrays[name].shape}, expected {dt} {(lead,) + trail}")
        for name, arr in self.arrays.items():
            if name.startswith("extra_") and (arr.ndim == 0 or arr.shape[0] != R):
                raise _dataset_error(self.path, f"{name}.npy does not have {R} residue rows")
        if len(self.offsets) and int((self.offsets + self.lengths).max()) > R:
            raise _dataset_error(self.path, "a chain in chains.tsv reaches past the residue arrays")
        off = self.arrays["atom_offset"]
        if R >= 0 and (int(off[0]) != 0 or int(off[-1]) != A):
            raise _dataset_error(self.path, "atom_offset does not span the atom arrays")

    def _read_chains(self) -> None:
        cpath = self.path / "chains.tsv"
        if not cpath.is_file():
            raise _dataset_error(self.path, "chains.tsv is missing")
        lines = cpath.read_text(encoding="utf-8").splitlines()
        if not lines or tuple(lines[0].split("\t")) != CHAIN_COLUMNS:
            raise _dataset_error(self.path, f"chains.tsv must start with the header "
                                 f"{' '.join(CHAIN_COLUMNS)}")
        ids, entries, chains, offs, lens, prof, dssp = [], [], [], [], [], [], []
        for n, line in enumerate(lines[1:], start=2):
            parts = line.split("\t")
            if len(parts) != len(CHAIN_COLUMNS):
                raise _dataset_error(self.path, f"chains.tsv line {n}: expected "
                                     f"{len(CHAIN_COLUMNS)} columns, found {len(parts)}")
            try:
                o, ln, p, d = int(parts[3]), int(parts[4]), int(parts[5]), int(parts[6])
            except ValueError:
                raise _dataset_error(self.path, f"chains.tsv line {n}: non-integer field") from None
            if o < 0 or ln < 1:
                raise _dataset_error(self.path, f"chains.tsv line {n}: bad offset/length")
            ids.append(parts[0])
            entries.append(parts[1])
            chains.append(parts[2])
            offs.append(o)
            lens.append(ln)
            prof.append(p)
            dssp.append(d)
        self.chain_ids: list[str] = ids
        self.entries: list[str] = entries
        self.chain_names: list[str] = chains
        self.offsets = np.asarray(offs, np.int64)
        self.lengths = np.asarray(lens, np.int64)
        self.has_profile = np.asarray(prof, bool)
        self.has_dssp = np.asarray(dssp, bool)
        self._index = {cid: i for i, cid in enumerate(ids)}
        if len(self._index) != len(ids):
            raise _dataset_error(self.path, "chains.tsv has duplicate chain ids")

    # ------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.chain_ids)

    def __repr__(self) -> str:
        return (f"Dataset({str(self.path)!r}, source={self.manifest.get('source')!r}, "
                f"chains={len(self)}, residues={self.num_residues})")

    def index(self, chain_id: str) -> int:
        """Position of ``chain_id``; ``InputError`` when the dataset has no such chain."""
        try:
            return self._index[chain_id]
        except KeyError:
            raise InputError(f"{self.path}: no chain {chain_id!r} in this dataset") from None

    def __contains__(self, chain_id: str) -> bool:
        return chain_id in self._index

    def __getitem__(self, key: int | str) -> ChainRecord:
        i = self.index(key) if isinstance(key, str) else int(key)
        return self.chain(i)

    def _span(self, i: int, start: int | None, stop: int | None) -> tuple[int, int]:
        n = len(self.chain_ids)
        if not -n <= i < n:
            raise IndexError(f"chain {i} out of range ({n} chains)")
        i = i % n
        L = int(self.lengths[i])
        s, e, _ = slice(start, stop).indices(L)
        o = int(self.offsets[i])
        return o + s, o + max(e, s)

    def atoms(self, i: int, start: int | None = None, stop: int | None = None,
              residues: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Dense atom37 of chain ``i`` (residues ``start:stop`` or the chain positions
        ``residues``): (positions float32 [L, 37, 3], mask bool [L, 37])."""
        a, b = self._span(i, start, stop)
        mask = unpack_atom_mask(self.arrays["atom_mask"][a:b])
        off = self.arrays["atom_offset"]
        pos = np.asarray(self.arrays["atom_positions"][int(off[a]):int(off[b])], np.float32)
        dense = np.zeros(mask.shape + (3,), np.float32)
        dense[mask] = pos
        if residues is not None:
            return dense[residues], mask[residues]
        return dense, mask

    def ca_positions(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """CA atoms of chain ``i``: (float32 [L, 3], bool mask [L])."""
        pos, mask = self.atoms(i)
        ca = rc.atom_order["CA"]
        return pos[:, ca], mask[:, ca]

    def chain(self, i: int, start: int | None = None, stop: int | None = None) -> ChainRecord:
        """Chain ``i`` (optionally only residues ``start:stop``) as a ``ChainRecord``."""
        a, b = self._span(i, start, stop)
        i = i % len(self)
        pos, mask = self.atoms(i, start, stop)
        arr = self.arrays
        profile = None
        if "profile" in arr and self.has_profile[i]:
            profile = np.asarray(arr["profile"][a:b], np.float32) / PROFILE_SCALE
        bf = None
        if "atom_b_factors" in arr:
            off = arr["atom_offset"]
            bf = np.zeros(mask.shape, np.float32)
            bf[mask] = arr["atom_b_factors"][int(off[a]):int(off[b])]
        ins = np.array(arr["insertion_code"][a:b], np.uint8)
        ins[ins == 32] = 0
        ins_str = ins.view("S1").astype("<U1")  # b'\x00' -> ''; other codes -> their letter
        return ChainRecord(
            chain_id=self.chain_ids[i],
            aatype=np.asarray(arr["aatype"][a:b], np.int32),
            atom_positions=pos,
            atom_mask=mask.astype(np.float32),
            residue_index=np.asarray(arr["residue_index"][a:b], np.int32),
            insertion_code=ins_str,
            dssp=np.array(arr["dssp"][a:b], np.uint8),
            profile=profile,
            b_factors=bf,
        )

    def sequence(self, i: int) -> str:
        a, b = self._span(i, None, None)
        lut = np.frombuffer("".join(rc.restypes_with_x).encode(), np.uint8)
        return lut[np.asarray(self.arrays["aatype"][a:b])].tobytes().decode()

    def sequences(self) -> dict[str, str]:
        """chain_id -> one-letter sequence for every chain (vectorised)."""
        lut = np.frombuffer("".join(rc.restypes_with_x).encode(), np.uint8)
        letters = lut[np.asarray(self.arrays["aatype"])].tobytes().decode()
        return {cid: letters[o:o + n] for cid, o, n in
                zip(self.chain_ids, self.offsets.tolist(), self.lengths.tolist())}


# ----------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------

@dataclasses.dataclass
class ChainEntry:
    """A row of chains.tsv."""

    chain_id: str
    entry: str
    chain: str
    offset: int
    length: int
    has_profile: bool
    has_dssp: bool


def _check_field(value: str, what: str) -> str:
    if any(c in value for c in "\t\r\n") or not value:
        raise InputError(f"{what} {value!r} is empty or contains a tab or newline")
    return value


def check_output_dir(out_dir: str | os.PathLike, overwrite: bool = False) -> None:
    """Raise ``InputError`` unless a dataset may be written at ``out_dir``: absent, empty, or an
    existing dataset with ``overwrite``."""
    out_dir = Path(out_dir)
    if out_dir.exists():
        if not out_dir.is_dir():
            raise InputError(f"{out_dir}: exists and is not a directory")
        if any(out_dir.iterdir()):
            if not (out_dir / "manifest.json").is_file():
                raise InputError(f"{out_dir}: directory exists, is not empty and is not a "
                                 "foldlite dataset; choose another --out")
            if not overwrite:
                raise InputError(f"{out_dir}: a dataset exists already; pass --overwrite to "
                                 "replace it")


class DatasetBuilder:
    """Writes a dataset directory atomically.

    Arrays are created with ``array(name, dtype, shape)`` (a writable memory map that the caller
    fills); ``finish(chains, manifest_extra)`` writes chains.tsv and manifest.json, validates, and
    renames the temporary directory to ``out_dir``. An existing dataset at ``out_dir`` is only
    replaced with ``overwrite=True``; any other existing non-empty directory is an error.
    """

    def __init__(self, out_dir: str | os.PathLike, overwrite: bool = False):
        self.out_dir = Path(out_dir)
        check_output_dir(self.out_dir, overwrite)
        self.out_dir.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.out_dir.name}.", suffix=".partial",
                                         dir=self.out_dir.parent))
        self._arrays: dict[str, np.memmap] = {}

    def array(self, name: str, dtype: Any, shape: tuple[int, ...]) -> np.ndarray:
        arr = np.lib.format.open_memmap(self.tmp / f"{name}.npy", mode="w+", dtype=np.dtype(dtype),
                                        shape=tuple(int(s) for s in shape))
        self._arrays[name] = arr
        return arr

    def save(self, name: str, value: np.ndarray) -> None:
        value = np.ascontiguousarray(value)
        self.array(name, value.dtype, value.shape)[...] = value

    def abort(self) -> None:
        self._arrays.clear()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def finish(self, chains: Sequence[ChainEntry], manifest: dict[str, Any]) -> Path:
        try:
            R = int(self._arrays["aatype"].shape[0])
            A = int(self._arrays["atom_positions"].shape[0])
            arrays = {}
            for name, arr in self._arrays.items():
                arr.flush()
                arrays[name] = {"dtype": str(arr.dtype), "shape": list(arr.shape)}
            self._arrays.clear()
            rows = ["\t".join(CHAIN_COLUMNS)]
            for c in chains:
                rows.append("\t".join([_check_field(c.chain_id, "chain id"),
                                       _check_field(c.entry, "entry"),
                                       _check_field(c.chain, "chain name"), str(int(c.offset)),
                                       str(int(c.length)), str(int(bool(c.has_profile))),
                                       str(int(bool(c.has_dssp)))]))
            write_text(self.tmp / "chains.tsv", "\n".join(rows) + "\n")
            full = {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                **manifest,
                "counts": {"chains": len(chains), "residues": R, "atoms": A,
                           **manifest.get("counts", {})},
                "arrays": arrays,
                "coordinates": "float32 Angstrom, sparse atom37 (see foldlite.data.dataset)",
                "foldlite_version": __version__,
                "command": manifest.get("command", command_line()),
                "created": datetime.datetime.now(datetime.timezone.utc).isoformat(
                    timespec="seconds"),
            }
            write_json(self.tmp / "manifest.json", full)
            _set_permissions(self.tmp)
            Dataset(self.tmp)  # validate what was written
            old = None
            if self.out_dir.exists():
                old = self.out_dir.with_name(f".{self.out_dir.name}.old-{os.getpid()}")
                os.replace(self.out_dir, old)
            os.replace(self.tmp, self.out_dir)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
            return self.out_dir
        except BaseException:
            self.abort()
            raise


def _set_permissions(directory: Path) -> None:
    """Temporary files and directories are private (0600/0700); make the dataset readable like
    any other file the user creates (0644/0755 minus the umask)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(directory, 0o755 & ~umask)
    for f in directory.iterdir():
        os.chmod(f, 0o644 & ~umask)


def command_line() -> str:
    """The command that is running, for manifests."""
    prog = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    return " ".join([prog] + sys.argv[1:])


def write_dataset(out_dir: str | os.PathLike, records: Iterable[ChainRecord], *,
                  source: str, manifest: dict[str, Any] | None = None,
                  entries: Sequence[str] | None = None, chain_names: Sequence[str] | None = None,
                  overwrite: bool = False) -> Path:
    """Write ``records`` (``ChainRecord`` with dense atom37) as a dataset at ``out_dir``.

    ``entries`` gives each chain's source entry (file name or PDB id) and ``chain_names`` its
    chain name in that entry; defaults: the parts of the chain id before and after the last
    underscore. Profiles, DSSP and B-factors are written when any
    record has them.
    """
    records = list(records)
    if not records:
        raise InputError(f"{out_dir}: no chains to write")
    lengths = np.array([r.length for r in records], np.int64)
    R = int(lengths.sum())
    masks = np.concatenate([np.asarray(r.atom_mask) > 0 for r in records])
    A = int(masks.sum())
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    builder = DatasetBuilder(out_dir, overwrite=overwrite)
    try:
        builder.save("aatype", np.concatenate([r.aatype for r in records]).astype(np.uint8))
        builder.save("residue_index",
                     np.concatenate([r.residue_index for r in records]).astype(np.int32))
        ins = np.concatenate([np.asarray(r.insertion_code, dtype=str) for r in records])
        ins_b = np.array([ord(c[0]) if len(c) else 32 for c in ins.tolist()], np.uint8)
        builder.save("insertion_code", ins_b.reshape(R))
        builder.save("atom_mask", pack_atom_mask(masks))
        builder.save("atom_offset",
                     np.concatenate([[0], np.cumsum(masks.sum(-1))]).astype(np.int64))
        pos = np.concatenate([np.asarray(r.atom_positions, np.float32) for r in records])
        builder.save("atom_positions", pos[masks].reshape(A, 3))
        builder.save("dssp", np.concatenate([np.asarray(r.dssp, np.uint8) for r in records]))
        if any(r.profile is not None for r in records):
            prof = np.concatenate([
                np.zeros((r.length, rc.restype_num)) if r.profile is None else
                np.asarray(r.profile, np.float64) for r in records])
            builder.save("profile", np.clip(np.rint(prof * PROFILE_SCALE), 0, 65535)
                         .astype(np.uint16))
        if any(r.b_factors is not None for r in records):
            bf = np.concatenate([np.zeros(np.shape(r.atom_mask)) if r.b_factors is None else
                                 np.asarray(r.b_factors) for r in records])
            builder.save("atom_b_factors", bf[masks].astype(np.float32))
        if entries is None:
            entries = [r.chain_id.rsplit("_", 1)[0] for r in records]
        if chain_names is None:
            chain_names = [r.chain_id.rsplit("_", 1)[-1] for r in records]
        chains = [ChainEntry(r.chain_id, e, c, int(o), r.length, r.profile is not None,
                             bool(np.any(np.asarray(r.dssp) != 0)))
                  for r, e, c, o in zip(records, entries, chain_names, offsets)]
    except BaseException:
        builder.abort()
        raise
    return builder.finish(chains, {"source": source, **(manifest or {})})
