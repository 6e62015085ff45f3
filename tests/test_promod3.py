"""ProMod3 StructureDB: reader validation, .deb extraction, conversion (synthetic and real)."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import pytest

from datagen import DBChain, make_deb, random_backbone, random_sequence, write_structure_db
from foldlite import constants as rc
from foldlite.data import promod3 as pm
from foldlite.data import promod3_db as pmdb
from foldlite.data import promod3_deb as pmdeb
from foldlite.data.dataset import Dataset
from foldlite.errors import InputError

CACHE = Path(os.environ.get("FOLDLITE_CACHE", "~/.cache/foldlite")).expanduser()
REAL_DEB_DIRS = [CACHE, Path("/root/promod3")]


def synthetic_chains(rng: np.random.Generator, lengths=(12, 30, 7)) -> list[DBChain]:
    chains = []
    for k, L in enumerate(lengths):
        prof = rng.random((L, 20))
        prof /= prof.sum(-1, keepdims=True)
        chains.append(DBChain(
            pdb_id=f"{k + 1}ABC", chain="AB"[k % 2], sequence=random_sequence(L, rng),
            backbone=random_backbone(L, rng, origin=rng.normal(0, 150, 3)),
            dssp="".join(rng.choice(list("HECTSGBI"), L)), start=int(rng.integers(-5, 300)),
            aln_profile=prof, struct_profile=prof[:, ::-1], phi_psi=rng.uniform(-3, 3, (L, 2)),
            accessibility=rng.integers(0, 200, L), depth=rng.integers(0, 2000, L)))
    return chains


@pytest.fixture
def synth(tmp_path):
    rng = np.random.default_rng(0)
    chains = synthetic_chains(rng)
    path = write_structure_db(tmp_path / "structure_db.dat", chains)
    return path, chains


def test_read_synthetic(synth):
    path, chains = synth
    db = pmdb.read_structure_db(path)
    assert db.num_chains == 3 and db.num_residues == sum(len(c.sequence) for c in chains)
    for i, c in enumerate(chains):
        assert db.chain_id(i) == f"{c.pdb_id}_{c.chain}"
        assert db.chain_sequence(i) == c.sequence
        np.testing.assert_allclose(db.chain_backbone(i), c.backbone, atol=0.006)
        assert int(db.start_numbers[i]) == c.start
    assert bytes(db.dssp).decode() == "".join(c.dssp for c in chains)


def test_convert_synthetic(synth, tmp_path):
    path, chains = synth
    rep = pm.convert(pmdb.read_structure_db(path), tmp_path / "ds")
    assert (rep.num_chains, rep.num_residues) == (3, 49)
    d = Dataset(tmp_path / "ds")
    assert d.chain_ids == ["1ABC_A", "2ABC_B", "3ABC_A"]
    assert d.manifest["source"] == "promod3" and d.manifest["counts"]["residues"] == 49
    bb_idx = [rc.atom_order[a] for a in ("N", "CA", "C", "O")]
    for i, c in enumerate(chains):
        r = d[i]
        assert r.sequence == c.sequence
        np.testing.assert_allclose(r.atom_positions[:, bb_idx], c.backbone, atol=0.006)
        expected_mask = np.zeros(37)
        expected_mask[bb_idx] = 1
        assert np.all(r.atom_mask == expected_mask)
        assert np.all(r.atom_positions[:, [k for k in range(37) if k not in bb_idx]] == 0)
        np.testing.assert_array_equal(r.residue_index, c.start + np.arange(len(c.sequence)))
        assert r.dssp_string == c.dssp
        # profile columns permuted from ACDEF... order to restypes order
        want = c.aln_profile[:, rc.profile_to_restype_perm]
        np.testing.assert_allclose(r.profile, want, atol=1e-4)
        assert np.argmax(r.profile[0]) == rc.restype_order[rc.profile_alphabet[
            int(np.argmax(c.aln_profile[0]))]]
    o = d.offsets[1]
    np.testing.assert_array_equal(d.arrays["extra_residue_depth"][o:o + 30], chains[1].depth)
    sp = d.arrays["extra_structure_profile"][o] / 1e4
    np.testing.assert_allclose(sp, chains[1].struct_profile[0][rc.profile_to_restype_perm],
                               atol=1e-4)


def _expect(path: Path, data: bytes, match: str) -> None:
    path.write_bytes(data)
    with pytest.raises(InputError, match=match) as e:
        pmdb.read_structure_db(path)
    assert str(path) in str(e.value)


def test_truncated_files(synth, tmp_path):
    path, _ = synth
    raw = path.read_bytes()
    bad = tmp_path / "bad.dat"
    n_res_pos = raw.index(struct.pack("<Q", 49))
    for cut in (10, pmdb.HEADER_SIZE + 4, pmdb.HEADER_SIZE + 20, n_res_pos + 20, len(raw) - 1000,
                len(raw) - 1):
        _expect(bad, raw[:cut], "truncated|shorter")


def test_corrupted_files(synth, tmp_path):
    path, _ = synth
    raw = bytearray(path.read_bytes())
    bad = tmp_path / "bad.dat"
    _expect(bad, b"PK\x03\x04" + bytes(raw[4:]), "not a ProMod3 structure database")
    _expect(bad, bytes(raw) + b"\0\0", "follow the last array")
    # chain count far beyond the file
    r = bytearray(raw)
    r[pmdb.HEADER_SIZE:pmdb.HEADER_SIZE + 8] = struct.pack("<Q", 10 ** 9)
    _expect(bad, bytes(r), "n_chains")
    # first chain's PDB id length absurd
    r = bytearray(raw)
    r[pmdb.HEADER_SIZE + 8:pmdb.HEADER_SIZE + 12] = struct.pack("<I", 5000)
    _expect(bad, bytes(r), "PDB id has length 5000")
    # first chain's residue offset beyond n_res
    at = pmdb.HEADER_SIZE + 8 + 4 + 4 + 4 + 1
    r = bytearray(raw)
    r[at:at + 4] = struct.pack("<I", 45)
    _expect(bad, bytes(r), "outside the 49 residues")
    # an array's count differs from n_res
    n_res_pos = raw.index(struct.pack("<Q", 49))
    coords_count = n_res_pos + 8 + 49
    r = bytearray(raw)
    r[coords_count:coords_count + 8] = struct.pack("<Q", 48)
    _expect(bad, bytes(r), "coords array .* declares 48")
    # non-letter in the sequence
    r = bytearray(raw)
    r[n_res_pos + 8 + 13] = 0
    _expect(bad, bytes(r), r"sequence byte 0 at chain 2 \(2ABC B\) residue 2")
    _expect(bad, b"", "shorter than")


def test_deb_extraction(synth, tmp_path):
    path, _ = synth
    deb = make_deb(tmp_path / "promod3-data_9.9_all.deb", path.read_bytes())
    names = [m[0] for m in pmdeb.ar_members(deb)]
    assert names == ["debian-binary", "control.tar.xz", "data.tar.xz"]
    size, sha = pmdeb.extract_structure_db(deb, tmp_path / "out.dat")
    assert (tmp_path / "out.dat").read_bytes() == path.read_bytes() and size == path.stat().st_size
    logs: list[str] = []
    rep = pm.convert_from_deb_or_db(tmp_path / "ds", deb=deb, log=logs.append)
    assert rep.num_chains == 3
    assert any("not that of the measured" in m for m in logs)
    m = Dataset(tmp_path / "ds").manifest
    assert m["deb_sha256"] and m["db_sha256"] == sha and m["version"] == "9.9"


def test_bad_debs(synth, tmp_path):
    path, _ = synth
    not_deb = tmp_path / "x.deb"
    not_deb.write_bytes(b"hello world")
    with pytest.raises(InputError, match="not a Debian package"):
        pmdeb.extract_structure_db(not_deb, tmp_path / "o.dat")
    no_db = make_deb(tmp_path / "y.deb", None)
    with pytest.raises(InputError, match="has no usr/share/promod3"):
        pmdeb.extract_structure_db(no_db, tmp_path / "o.dat")
    full = make_deb(tmp_path / "z.deb", path.read_bytes())
    cut = tmp_path / "cut.deb"
    cut.write_bytes(full.read_bytes()[:-500])
    with pytest.raises(InputError, match="truncated"):
        pmdeb.extract_structure_db(cut, tmp_path / "o.dat")
    assert not (tmp_path / "o.dat").exists()


def test_download_without_apt(monkeypatch, tmp_path):
    monkeypatch.setattr(pmdeb.shutil, "which", lambda name: None)
    with pytest.raises(InputError, match="apt-get is not available.*--deb"):
        pmdeb.download_deb(tmp_path)


def test_download_failure_message(monkeypatch, tmp_path):
    class Done:
        returncode, stdout, stderr = 100, "", "E: Unable to locate package promod3-data\n"

    monkeypatch.setattr(pmdeb.shutil, "which", lambda name: "/usr/bin/apt-get")
    monkeypatch.setattr(pmdeb.subprocess, "run", lambda *a, **k: Done())
    with pytest.raises(InputError, match="Unable to locate package.*apt-get update"):
        pmdeb.download_deb(tmp_path)


# ------------------------------------------------------------------------------------------
# Real files (skipped when the package has not been downloaded / converted here)
# ------------------------------------------------------------------------------------------

def _real_deb() -> Path:
    for d in REAL_DEB_DIRS:
        debs = sorted(d.glob("promod3-data_*.deb")) if d.is_dir() else []
        if debs:
            return debs[0]
    pytest.skip(f"no promod3-data_*.deb in {', '.join(map(str, REAL_DEB_DIRS))} "
                "(apt-get download promod3-data)")


def _real_db() -> Path:
    p = CACHE / "structure_db.dat"
    if not p.is_file():
        pytest.skip(f"{p} absent (foldlite data promod3 --keep-db {p})")
    return p


def _real_dataset() -> Dataset:
    p = CACHE / "promod3"
    if not (p / "manifest.json").is_file():
        pytest.skip(f"{p} absent (run: foldlite data promod3)")
    return Dataset(p)


def test_real_deb_members():
    deb = _real_deb()
    members = dict((n, s) for n, _, s in pmdeb.ar_members(deb))
    assert "data.tar.xz" in members
    if deb.name == "promod3-data_3.2.1+ds-6_all.deb":
        assert members["data.tar.xz"] == 371_346_856


def test_real_db_header_and_first_chains():
    db = pmdb.read_structure_db(_real_db())
    assert db.file_size == pm.KNOWN_DB_SIZE
    assert (db.num_chains, db.num_residues) == (pm.KNOWN_NUM_CHAINS, pm.KNOWN_NUM_RESIDUES)
    assert (db.pdb_ids[0], db.chain_names[0], int(db.lengths[0])) == ("12AS", "A", 327)
    assert db.chain_sequence(0).startswith("AYIAKQRQISFVKSHFSRQLEERLG")
    bb = db.chain_backbone(0)
    np.testing.assert_allclose(bb[0, 0], [11.75, 37.85, 29.02], atol=0.01)
    for i in (0, 1, 5000, db.num_chains - 1):
        bb = db.chain_backbone(i).astype(np.float64)
        n_ca = np.linalg.norm(bb[:, 1] - bb[:, 0], axis=-1).mean()
        ca_c = np.linalg.norm(bb[:, 2] - bb[:, 1], axis=-1).mean()
        c_n = np.linalg.norm(bb[1:, 0] - bb[:-1, 2], axis=-1).mean()
        assert abs(n_ca - 1.46) < 0.03 and abs(ca_c - 1.52) < 0.03 and abs(c_n - 1.33) < 0.03


def test_real_dataset():
    d = _real_dataset()
    m = d.manifest
    assert len(d) == pm.KNOWN_NUM_CHAINS and d.num_residues == pm.KNOWN_NUM_RESIDUES
    assert m["db_sha256"] == pm.KNOWN_DB_SHA256
    r = d["12AS_A"]
    assert r.length == 327 and r.sequence.startswith("AYIAKQRQIS")
    np.testing.assert_allclose(r.atom_positions[0, 0], [11.75, 37.85, 29.02], atol=0.01)
    bonds = m["spot_checks"]["backbone_bond_lengths"]
    for name, ref in (("N-CA", 1.46), ("CA-C", 1.52), ("C-N", 1.33)):
        assert abs(bonds[name][0] - ref) < 0.01, (name, bonds[name])
    assert np.all((d.lengths >= 2) & (d.lengths <= 1754))
