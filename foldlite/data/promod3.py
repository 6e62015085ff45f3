"""The ProMod3 structure database (Debian package ``promod3-data``) as a foldlite dataset.

``convert_from_deb_or_db`` is the whole ``foldlite data promod3`` flow: obtain the package
(``promod3_deb``: ``apt-get download``, extraction without dpkg) or an extracted file, check its
checksum against the measured release, read and validate it (``promod3_db``), and ``convert``
it: a ``foldlite.data.dataset`` directory written vectorised over memory maps (the whole
database converts in well under a minute of CPU).
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from foldlite import constants as rc
from foldlite.data import dataset as ds
from foldlite.data.promod3_db import BACKBONE_ATOM37, COORD_SCALE, StructureDB, read_structure_db
from foldlite.data.promod3_deb import (DB_MEMBER, KNOWN_DEB_SHA256, KNOWN_VERSION, PACKAGE,
                                       download_deb, extract_structure_db)
from foldlite.errors import InputError
from foldlite.fileio import sha256_file

#: The measured release's ``structure_db.dat`` (``promod3_deb.KNOWN_VERSION``).
KNOWN_DB_SHA256 = "0f1c6e35a3f248fddd0c2c0da2c0d1145b502d4663fe8adb7239f27adad3301a"
KNOWN_DB_SIZE = 520_676_726
KNOWN_NUM_CHAINS = 21_119
KNOWN_NUM_RESIDUES = 4_561_225


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
    out_dir = Path(out_dir)
    ds.check_output_dir(out_dir, overwrite)  # before minutes of download and extraction
    source: dict[str, Any] = {"package": PACKAGE}
    if command:
        source["command"] = command
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    took = _Laps().lap

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


class _Laps:
    """A stopwatch for the log: ``lap()`` is the time since the previous lap, as "(1.2 s)"."""

    def __init__(self) -> None:
        self.last = time.perf_counter()

    def lap(self) -> str:
        now = time.perf_counter()
        dt, self.last = now - self.last, now
        return f"({dt:.1f} s)"


def _version_from_name(name: str) -> str:
    parts = name.split("_")
    return parts[1] if len(parts) >= 3 else "unknown"
