"""Training packs: the backbone chains of a dataset in one small file, to carry to a machine
without network (a lent accelerator takes at most 64 MiB of files in all).

A pack holds, per chain, what training reads: residue types, residue numbers, the backbone atoms
N, CA, C, O (atom37 slots 0-3), the DSSP letters and the alignment profile. It is lossless to the
precision of the ProMod3 source (coordinates in 0.01 A fixed point; every other field exact)
except for the profile, stored as ``round(255 * frequency)`` (steps of 0.004; the network sees
frequencies). Side-chain atoms and B-factors are not packed.

Encoding, chosen by measurement for xz: coordinates as int16 differences between consecutive
backbone atoms of a chain (bonded atoms are <= 2.5 A apart; a first atom as int32), multi-byte
arrays split into byte planes (all low bytes, then all high bytes), everything in one
uncompressed ``.npz`` compressed as a whole with LZMA (preset 9, extreme). Read with
``numpy.load(..., allow_pickle=False)``.

    write_pack(path, records, split="train", meta={...}) -> stats
    read_pack(path) -> (list[ChainRecord], meta)
    unpack(packs, out_dir) -> a foldlite dataset folder with ``splits/<split>.txt`` per pack

File: ``<name>.fldpack``, the LZMA stream of an ``.npz`` with arrays ``format`` (str),
``meta_json`` (str), ``chain_ids`` (str [C]), ``lengths`` int32 [C], ``start_xyz`` int32
[C, 3], and byte planes of ``xyz_delta`` int16 [R * 4, 3], ``residue_index`` int32 [R] (as
differences), ``atom_mask4`` uint8 [R], ``aatype`` uint8 [R], ``dssp`` uint8 [R],
``profile`` uint8 [R, 20], ``has_profile`` uint8 [C].
"""

from __future__ import annotations

import io
import json
import lzma
import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from foldlite import fileio
from foldlite.data.dataset import ChainRecord, write_dataset
from foldlite.errors import InputError

FORMAT = "foldlite-pack-v1"
SUFFIX = ".fldpack"
BACKBONE = 4                 # atom37 slots N, CA, C, O
COORD_SCALE = 100.0          # 0.01 A fixed point
PROFILE_LEVELS = 255


def _planes(a: np.ndarray) -> np.ndarray:
    """[...] multi-byte little-endian array -> uint8 [itemsize, size] byte planes."""
    a = np.ascontiguousarray(a)
    b = a.astype(a.dtype.newbyteorder("<"), copy=False).view(np.uint8)
    return b.reshape(-1, a.dtype.itemsize).T.copy()


def _from_planes(planes: np.ndarray, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    return np.ascontiguousarray(planes.T).view(np.dtype(dtype).newbyteorder("<")).reshape(
        shape).astype(dtype)


def _deltas(x: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Differences between consecutive rows, restarting at each chain start (the first row of
    a chain keeps its own value)."""
    d = np.diff(x, axis=0, prepend=np.zeros_like(x[:1]))
    d[starts] = x[starts]
    return d


def _cumsum_by_chain(d: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    out = np.empty(d.shape, np.int64)
    for s, n in zip(starts, lengths):
        out[s:s + n] = np.cumsum(d[s:s + n], axis=0)
    return out


def write_pack(path: str | os.PathLike, records: Iterable[ChainRecord], *, split: str,
               meta: dict | None = None) -> dict:
    """Write the chains ``records`` as a pack at ``path`` (atomically).

    ``split`` names what the chains are for (``train``, ``valid``): ``unpack`` lists them in
    ``splits/<split>.txt`` of the dataset it writes. Returns counts and sizes.

    Raises:
      InputError: a chain without its N, CA, C atoms, or coordinates beyond the int32 range.
    """
    ids, lengths, aatype, resi, mask4, xyz, dssp, prof, has_prof = ([] for _ in range(9))
    for r in records:
        m = np.asarray(r.atom_mask)[:, :BACKBONE] > 0
        if not m[:, :3].all():
            bad = int(np.argmin(m[:, :3].all(axis=1)))
            raise InputError(f"{r.chain_id}: residue {bad + 1} lacks a backbone atom (N, CA, C); "
                             "packs hold complete backbones only")
        ids.append(r.chain_id)
        lengths.append(r.length)
        aatype.append(np.asarray(r.aatype, np.uint8))
        resi.append(np.asarray(r.residue_index, np.int32))
        mask4.append(np.packbits(m, axis=-1, bitorder="little")[:, 0])
        # An absent atom (an O, say) takes the position of the atom before it: a zero
        # difference, where zeros would make two jumps of the size of the coordinates.
        flat_m = m.reshape(-1)
        pos = np.asarray(r.atom_positions)[:, :BACKBONE].astype(np.float64).reshape(-1, 3)
        pos = pos[np.maximum.accumulate(np.where(flat_m, np.arange(flat_m.size), 0))]
        xyz.append(np.rint(pos * COORD_SCALE).astype(np.int64))
        dssp.append(np.asarray(r.dssp, np.uint8))
        has_prof.append(r.profile is not None)
        p = np.zeros((r.length, 20)) if r.profile is None else np.asarray(r.profile, np.float64)
        prof.append(np.rint(np.clip(p, 0.0, 1.0) * PROFILE_LEVELS).astype(np.uint8))
    if not ids:
        raise InputError(f"{path}: no chains to pack")
    lengths_a = np.asarray(lengths, np.int64)
    res_starts = np.concatenate([[0], np.cumsum(lengths_a)[:-1]])
    xyz_a = np.concatenate(xyz)
    d = _deltas(xyz_a, res_starts * BACKBONE)
    start_xyz = d[res_starts * BACKBONE].copy()
    d[res_starts * BACKBONE] = 0
    if np.abs(start_xyz).max() >= 2**31 or np.abs(d).max() >= 2**15:
        raise InputError(f"{path}: coordinates too far apart to pack (consecutive backbone atoms "
                         "more than 327 A apart, or beyond the int32 range)")
    resi_a = np.concatenate(resi).astype(np.int64)
    resi_d = _deltas(resi_a, res_starts).astype(np.int32)
    meta = dict(meta or {}, split=split, chains=len(ids), residues=int(lengths_a.sum()))
    arrays = {
        "format": np.asarray(FORMAT), "meta_json": np.asarray(json.dumps(meta, sort_keys=True)),
        "chain_ids": np.asarray(ids, dtype=np.str_), "lengths": lengths_a.astype(np.int32),
        "start_xyz": start_xyz.astype(np.int32),
        "xyz_delta": _planes(d.astype(np.int16)), "residue_index": _planes(resi_d),
        "atom_mask4": np.concatenate(mask4), "aatype": np.concatenate(aatype),
        "dssp": np.concatenate(dssp), "profile": _planes(np.concatenate(prof)),
        "has_profile": np.asarray(has_prof, np.uint8),
    }
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    data = lzma.compress(buf.getvalue(), preset=9 | lzma.PRESET_EXTREME)
    fileio.write_bytes(Path(path), data)
    return {"chains": len(ids), "residues": int(lengths_a.sum()), "bytes": len(data),
            "bytes_per_residue": len(data) / max(int(lengths_a.sum()), 1)}


def read_pack(path: str | os.PathLike) -> tuple[list[ChainRecord], dict]:
    """The chains of a pack (atom37 layout, backbone atoms only) and its metadata."""
    path = Path(path)
    try:
        raw = lzma.decompress(path.read_bytes())
        with np.load(io.BytesIO(raw), allow_pickle=False) as z:
            a = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise InputError(f"{path}: no such pack") from None
    except (lzma.LZMAError, OSError, ValueError) as e:
        raise InputError(f"{path}: not a foldlite pack, or damaged ({e})") from None
    if str(a.get("format", "")) != FORMAT:
        raise InputError(f"{path}: not a foldlite pack (format {a.get('format')!r})")
    meta = json.loads(str(a["meta_json"]))
    lengths = a["lengths"].astype(np.int64)
    R = int(lengths.sum())
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    d = _from_planes(a["xyz_delta"], "int16", (R * BACKBONE, 3)).astype(np.int64)
    d[starts * BACKBONE] = a["start_xyz"]
    xyz = _cumsum_by_chain(d, starts * BACKBONE, lengths * BACKBONE).reshape(R, BACKBONE, 3)
    resi = _cumsum_by_chain(_from_planes(a["residue_index"], "int32", (R,)), starts, lengths)
    prof = _from_planes(a["profile"], "uint8", (R, 20)).astype(np.float32) / PROFILE_LEVELS
    mask4 = np.unpackbits(a["atom_mask4"][:, None], axis=-1, count=BACKBONE, bitorder="little")
    out = []
    for i, (cid, s, n) in enumerate(zip(a["chain_ids"], starts, lengths)):
        pos = np.zeros((n, 37, 3), np.float32)
        mask = np.zeros((n, 37), np.float32)
        mask[:, :BACKBONE] = mask4[s:s + n]
        pos[:, :BACKBONE] = xyz[s:s + n] / COORD_SCALE * mask[:, :BACKBONE, None]
        out.append(ChainRecord(
            chain_id=str(cid), aatype=a["aatype"][s:s + n].astype(np.int32),
            atom_positions=pos, atom_mask=mask,
            residue_index=resi[s:s + n].astype(np.int32),
            insertion_code=np.full(n, "", dtype=object), dssp=a["dssp"][s:s + n].copy(),
            profile=prof[s:s + n] if a["has_profile"][i] else None))
    return out, meta


def unpack(packs: Sequence[str | os.PathLike], out_dir: str | os.PathLike, *,
           overwrite: bool = False) -> Path:
    """Write the chains of ``packs`` as one foldlite dataset at ``out_dir``, with the chain ids
    of each pack's split in ``splits/<split>.txt`` (what ``TrainingData`` reads when
    ``data.splits`` is null). A chain id in two packs is an error."""
    chains: list[ChainRecord] = []
    by_split: dict[str, list[str]] = {}
    sources = []
    for p in packs:
        recs, meta = read_pack(p)
        by_split.setdefault(meta["split"], []).extend(r.chain_id for r in recs)
        chains.extend(recs)
        sources.append({"pack": Path(p).name, **meta})
    seen: set[str] = set()
    for r in chains:
        if r.chain_id in seen:
            raise InputError(f"{r.chain_id}: in more than one pack ({[str(p) for p in packs]})")
        seen.add(r.chain_id)
    out = write_dataset(out_dir, chains, source="pack", manifest={"packs": sources},
                        overwrite=overwrite)
    (out / "splits").mkdir(exist_ok=True)
    for split, ids in by_split.items():
        fileio.write_text(out / "splits" / f"{split}.txt", "".join(f"{c}\n" for c in ids))
    return out
