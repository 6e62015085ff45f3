"""Synthetic chains for the data tests (foldlite.data): ideal backbones built from phi/psi, and
ProMod3 structure databases and Debian packages holding them (``write_structure_db``, the
inverse of ``foldlite.data.promod3_db.read_structure_db``; ``make_deb``)."""

from __future__ import annotations

import dataclasses
import io
import os
import tarfile
from pathlib import Path

import numpy as np

from foldlite import constants as rc
from foldlite.data.promod3_db import (CHAIN_FIXED, COORD_SCALE, HEADER_SIZE, MAGIC,
                                      MAGIC_FORMAT, RESIDUE_ARRAYS, U32, U64)
from foldlite.data.promod3_deb import DB_MEMBER
from foldlite.fileio import write_bytes

# Engh & Huber (1991) backbone bond lengths (A) and angles (degrees).
N_CA, CA_C, C_N, C_O = 1.458, 1.525, 1.329, 1.231
ANG_N_CA_C, ANG_CA_C_N, ANG_C_N_CA, ANG_CA_C_O = 111.2, 116.2, 121.7, 120.5


def place(a: np.ndarray, b: np.ndarray, c: np.ndarray, bond: float, angle: float,
          torsion: float) -> np.ndarray:
    """Atom d with |cd| = bond, angle(b, c, d) = angle, dihedral(a, b, c, d) = torsion (deg)."""
    angle, torsion = np.deg2rad(angle), np.deg2rad(torsion)
    bc = c - b
    bc /= np.linalg.norm(bc)
    n = np.cross(b - a, bc)
    n /= np.linalg.norm(n)
    m = np.cross(n, bc)
    d2 = np.array([-bond * np.cos(angle), bond * np.sin(angle) * np.cos(torsion),
                   bond * np.sin(angle) * np.sin(torsion)])
    return c + d2[0] * bc + d2[1] * m + d2[2] * n


def ideal_backbone(phi: np.ndarray, psi: np.ndarray, omega: float = 180.0,
                   origin: np.ndarray | None = None) -> np.ndarray:
    """[L, 4, 3] N, CA, C, O from torsions (degrees)."""
    L = len(phi)
    bb = np.zeros((L, 4, 3))
    bb[0, 0] = [0.0, 0.0, 0.0]
    bb[0, 1] = [N_CA, 0.0, 0.0]
    ang = np.deg2rad(180.0 - ANG_N_CA_C)
    bb[0, 2] = bb[0, 1] + CA_C * np.array([np.cos(ang), np.sin(ang), 0.0])
    for i in range(L - 1):
        bb[i + 1, 0] = place(bb[i, 0], bb[i, 1], bb[i, 2], C_N, ANG_CA_C_N, psi[i])
        bb[i + 1, 1] = place(bb[i, 1], bb[i, 2], bb[i + 1, 0], N_CA, ANG_C_N_CA, omega)
        bb[i + 1, 2] = place(bb[i, 2], bb[i + 1, 0], bb[i + 1, 1], CA_C, ANG_N_CA_C, phi[i + 1])
    for i in range(L):
        bb[i, 3] = place(bb[i, 0], bb[i, 1], bb[i, 2], C_O, ANG_CA_C_O, psi[i] + 180.0)
    if origin is not None:
        bb += origin
    return bb


def random_backbone(L: int, rng: np.random.Generator, origin=None) -> np.ndarray:
    """A compact-ish random backbone: helix and strand torsions in random segments."""
    phi = np.empty(L)
    psi = np.empty(L)
    i = 0
    while i < L:
        n = int(rng.integers(4, 12))
        if rng.random() < 0.5:
            phi[i:i + n], psi[i:i + n] = -57.0, -47.0
        else:
            phi[i:i + n], psi[i:i + n] = -120.0, 130.0
        i += n
    phi += rng.normal(0, 5, L)
    psi += rng.normal(0, 5, L)
    return ideal_backbone(phi, psi, origin=origin)


def random_sequence(L: int, rng: np.random.Generator) -> str:
    return "".join(rng.choice(list(rc.restypes), L))


def mutate(seq: str, fraction: float, rng: np.random.Generator) -> str:
    s = list(seq)
    for i in rng.choice(len(s), int(round(fraction * len(s))), replace=False):
        s[i] = rc.restypes[int(rng.integers(20))]
    return "".join(s)


def _ar(members: list[tuple[str, bytes]]) -> bytes:
    out = [b"!<arch>\n"]
    for name, data in members:
        head = f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}".encode() + b"`\n"
        out.append(head + data + (b"\n" if len(data) % 2 else b""))
    return b"".join(out)


def make_deb(path: Path, db_bytes: bytes | None, member: str = DB_MEMBER) -> Path:
    """A minimal Debian package (ar archive with data.tar.xz) holding ``db_bytes`` at ``member``."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:xz") as tar:
        other = b"not the db"
        ti = tarfile.TarInfo("./usr/share/promod3/loop_data/torsion_sampler.dat")
        ti.size = len(other)
        tar.addfile(ti, io.BytesIO(other))
        if db_bytes is not None:
            ti = tarfile.TarInfo("./" + member)
            ti.size = len(db_bytes)
            tar.addfile(ti, io.BytesIO(db_bytes))
    path.write_bytes(_ar([("debian-binary", b"2.0\n"), ("control.tar.xz", b"x"),
                          ("data.tar.xz", buf.getvalue())]))
    return path


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
    header = MAGIC_FORMAT.pack(*MAGIC) + bytes(HEADER_SIZE - MAGIC_FORMAT.size)
    table = [U64.pack(len(chains))]
    parts: dict[str, list[np.ndarray]] = {name: [] for name, _, _ in RESIDUE_ARRAYS}
    seq = []
    offset = 0
    for c in chains:
        L = len(c.sequence)
        bb = np.asarray(c.backbone, np.float64).reshape(L, 4, 3)
        shift = -np.round(bb.reshape(-1, 3).mean(0), 2) if L else np.zeros(3)
        for s in (c.pdb_id, c.chain):
            table.append(U32.pack(len(s)) + s.encode("ascii"))
        table.append(CHAIN_FIXED.pack(offset, L, c.start, *shift.astype(np.float32)))
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
    body = [U64.pack(n_res), b"".join(seq)]
    for name, dt, trail in RESIDUE_ARRAYS:
        arr = np.concatenate(parts[name]) if parts[name] else np.zeros((0,) + trail, dt)
        body.append(U64.pack(n_res) + np.ascontiguousarray(arr, dtype=dt).tobytes())
    return header + b"".join(table) + b"".join(body)


def write_structure_db(path: str | os.PathLike, chains: list[DBChain]) -> Path:
    """Write ``chains`` as a ``structure_db.dat`` at ``path`` (atomically)."""
    write_bytes(path, encode_structure_db(chains))
    return Path(path)
