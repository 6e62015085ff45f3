"""Dataset format round trips and validation; the mmCIF/PDB path; sequence-cluster splits."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from datagen import mutate, random_backbone, random_sequence
from foldlite import constants as rc
from foldlite.data import dataset as ds
from foldlite.data import splits as sp
from foldlite.errors import InputError

TEST_DATA = Path(__file__).resolve().parent / "data"


def random_record(chain_id: str, L: int, rng: np.random.Generator, profile=True,
                  bfactors=True) -> ds.ChainRecord:
    aatype = rng.integers(0, 21, L)
    mask = (rc.restype_atom37_mask[aatype] > 0) & (rng.random((L, 37)) > 0.1)
    pos = rng.normal(0, 300, (L, 37, 3)).astype(np.float32) * mask[..., None]
    bb = random_backbone(L, rng, origin=rng.normal(0, 500, 3))
    pos[:, [0, 1, 2, 4]] = bb
    mask[:, [0, 1, 2, 4]] = True
    prof = rng.random((L, 20))
    prof /= prof.sum(-1, keepdims=True)
    return ds.ChainRecord(
        chain_id=chain_id, aatype=aatype.astype(np.int32), atom_positions=pos * mask[..., None],
        atom_mask=mask.astype(np.float32), residue_index=np.arange(L, dtype=np.int32) * 2 - 5,
        insertion_code=np.array(rng.choice(["", "", "A", "B"], L), dtype="<U1"),
        dssp=np.frombuffer("".join(rng.choice(list("HEC"), L)).encode(), np.uint8).copy(),
        profile=prof.astype(np.float32) if profile else None,
        b_factors=(rng.random((L, 37)) * 100).astype(np.float32) * mask if bfactors else None)


def test_pack_unpack_mask():
    rng = np.random.default_rng(0)
    m = rng.random((50, 37)) > 0.5
    assert ds.pack_atom_mask(m).shape == (50, ds.ATOM_MASK_BYTES)
    np.testing.assert_array_equal(ds.unpack_atom_mask(ds.pack_atom_mask(m)), m)


def test_dssp_to_3state():
    letters = np.frombuffer(b"HGIEBTSC -\0", np.uint8)
    np.testing.assert_array_equal(ds.dssp_to_3state(letters), [0, 0, 0, 1, 1, 2, 2, 2, 2, 2, -1])


def test_write_read_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    recs = [random_record("1ABC_A", 17, rng), random_record("1ABC_B", 5, rng, profile=False),
            random_record("XYZ_Q", 40, rng)]
    out = ds.write_dataset(tmp_path / "d", recs, source="test", manifest={"version": "x"})
    d = ds.Dataset(out)
    assert len(d) == 3 and d.chain_ids == ["1ABC_A", "1ABC_B", "XYZ_Q"]
    assert d.manifest["counts"] == {"chains": 3, "residues": 62,
                                    "atoms": int(sum(r.atom_mask.sum() for r in recs))}
    for r in recs:
        got = d[r.chain_id]
        np.testing.assert_array_equal(got.aatype, r.aatype)
        np.testing.assert_array_equal(got.atom_positions, r.atom_positions)  # float32: exact
        np.testing.assert_array_equal(got.atom_mask, r.atom_mask)
        np.testing.assert_array_equal(got.residue_index, r.residue_index)
        np.testing.assert_array_equal(got.insertion_code, r.insertion_code)
        np.testing.assert_array_equal(got.dssp, r.dssp)
        np.testing.assert_array_equal(got.b_factors, r.b_factors)
        if r.profile is None:
            assert got.profile is None
        else:
            np.testing.assert_allclose(got.profile, r.profile, atol=6e-5)
    sub = d.chain(2, 10, 20)
    np.testing.assert_array_equal(sub.atom_positions, recs[2].atom_positions[10:20])
    assert d.sequences()["XYZ_Q"] == "".join(rc.restypes_with_x[a] for a in recs[2].aatype)
    with pytest.raises(InputError, match="no chain 'nope'"):
        d["nope"]
    with pytest.raises(IndexError):
        d[3]


def test_overwrite_rules(tmp_path):
    rng = np.random.default_rng(2)
    recs = [random_record("A_A", 8, rng)]
    ds.write_dataset(tmp_path / "d", recs, source="t")
    with pytest.raises(InputError, match="--overwrite"):
        ds.write_dataset(tmp_path / "d", recs, source="t")
    ds.write_dataset(tmp_path / "d", [random_record("B_B", 9, rng)], source="t", overwrite=True)
    assert ds.Dataset(tmp_path / "d").chain_ids == ["B_B"]
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.txt").write_text("mine")
    with pytest.raises(InputError, match="not a foldlite dataset"):
        ds.write_dataset(tmp_path / "other", recs, source="t", overwrite=True)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no leftovers


def test_invalid_datasets(tmp_path):
    rng = np.random.default_rng(3)
    good = ds.write_dataset(tmp_path / "good", [random_record("A_A", 8, rng)], source="t")

    def broken(name: str) -> Path:
        p = tmp_path / name
        shutil.copytree(good, p)
        return p

    with pytest.raises(InputError, match="not found"):
        ds.Dataset(tmp_path / "missing")
    p = broken("nomanifest")
    (p / "manifest.json").unlink()
    with pytest.raises(InputError, match="manifest.json is missing"):
        ds.Dataset(p)
    p = broken("noarray")
    (p / "atom_positions.npy").unlink()
    with pytest.raises(InputError, match="atom_positions.npy is missing"):
        ds.Dataset(p)
    p = broken("shape")
    np.save(p / "aatype.npy", np.zeros(7, np.uint8))
    with pytest.raises(InputError, match="aatype.npy has uint8"):
        ds.Dataset(p)
    p = broken("chains")
    (p / "chains.tsv").write_text("\t".join(ds.CHAIN_COLUMNS) + "\nA_A\tA\tA\t0\t99\t1\t1\n")
    with pytest.raises(InputError, match="reaches past"):
        ds.Dataset(p)
    p = broken("version")
    m = json.loads((p / "manifest.json").read_text())
    m["format_version"] = 99
    (p / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(InputError, match="format_version 99"):
        ds.Dataset(p)


def test_to_protein(tmp_path):
    pytest.importorskip("foldlite.protein")
    rng = np.random.default_rng(4)
    rec = random_record("1ABC_B", 12, rng)
    p = rec.to_protein()
    assert p.chain_id == "B" and p.length == 12
    np.testing.assert_array_equal(p.atom_positions, rec.atom_positions)


# ------------------------------------------------------------------------------------------
# mmCIF / PDB files
# ------------------------------------------------------------------------------------------

def _structure_files() -> list[Path]:
    pytest.importorskip("foldlite.protein")
    files = sorted(p for p in TEST_DATA.glob("*") if ".pdb" in p.name or ".cif" in p.name)
    if not files:
        pytest.skip(f"no structure files in {TEST_DATA}")
    return files


def test_structures_path(tmp_path):
    from foldlite.data import structures as st
    from foldlite.protein import read_structure_chains

    files = _structure_files()
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    for f in files:
        shutil.copy(f, src / "sub" / f.name)
    (src / "broken.pdb").write_text("ATOM  garbage\nHETATM\n")
    (src / "empty.cif").write_text("")
    (src / "notes.txt").write_text("ignored")
    rep = st.build_from_structures(src, tmp_path / "out", chains="all", min_length=1)
    assert rep.files == len(files) + 2
    assert {f for f, _ in rep.skipped_files} == {"broken.pdb", "empty.cif"}
    d = ds.Dataset(tmp_path / "out")
    assert d.manifest["source"] == "structures"
    assert d.manifest["report"]["skipped_files"][0]["reason"]
    # every kept chain equals what the reader returns
    first = files[0]
    prots = read_structure_chains(first)
    rec = d[f"{st.entry_name(first)}_{prots[0].chain_id}"]
    np.testing.assert_array_equal(rec.aatype, prots[0].aatype)
    np.testing.assert_allclose(rec.atom_positions, prots[0].atom_positions)
    np.testing.assert_array_equal(rec.atom_mask, prots[0].atom_mask)
    assert d.has_dssp.all() and not d.has_profile.any()
    # min-length filter and --chains first
    rep2 = st.build_from_structures(src, tmp_path / "out2", chains="first", min_length=60)
    assert any("shorter than 60" in r for r in rep2.skipped_chains)
    d2 = ds.Dataset(tmp_path / "out2")
    assert np.all(d2.lengths >= 60)
    assert len(set(d2.entries)) == len(d2.entries) or rep2.renamed


def test_structures_non_protein_chains(tmp_path):
    from foldlite.data import structures as st

    files = [f for f in _structure_files() if f.name.startswith("1LCD")]
    if not files:
        pytest.skip("tests/data/1LCD.pdb.gz (protein-DNA complex) absent")
    shutil.copy(files[0], tmp_path / files[0].name)
    rep = st.build_from_structures(tmp_path, tmp_path / "out", chains="all", min_length=1)
    assert rep.skipped_chains["non-protein chain (nucleic acid, ligands or water only)"] >= 1


def test_structures_errors(tmp_path, monkeypatch):
    pytest.importorskip("foldlite.protein")
    from foldlite.data import structures as st

    with pytest.raises(InputError, match="no structure files"):
        st.build_from_structures(tmp_path, tmp_path / "o")
    (tmp_path / "a.pdb").write_text("nothing\n")
    with pytest.raises(InputError, match="no chain could be used"):
        st.build_from_structures(tmp_path, tmp_path / "o")
    ids = tmp_path / "ids.txt"
    ids.write_text("1abc 2XYZ_A, # comment\n1ABC\n")
    assert st.read_pdb_ids(ids) == ["1ABC", "2XYZ"]
    ids.write_text("hello\n")
    with pytest.raises(InputError, match="line 1: 'hello' is not a PDB id"):
        st.read_pdb_ids(ids)
    monkeypatch.setattr(st, "rcsb_reachable", lambda timeout=5.0: False)
    with pytest.raises(InputError, match="cannot reach files.rcsb.org.*offline"):
        st.download_pdb_entries(["1ABC"], tmp_path / "dl")


def test_entry_names():
    from foldlite.data.structures import entry_name

    assert entry_name(Path("1abc.cif.gz")) == "1ABC"
    assert entry_name(Path("pdb1xyz.ent.gz")) == "1XYZ"
    assert entry_name(Path("my model #2.pdb")) == "my-model--2"


# ------------------------------------------------------------------------------------------
# Splits
# ------------------------------------------------------------------------------------------

def families(rng: np.random.Generator, n_fam: int = 12, per: int = 4, L: int = 120):
    seqs = {}
    for f in range(n_fam):
        base = random_sequence(L + 10 * f, rng)
        for k in range(per):
            seqs[f"F{f:02d}_{k}"] = mutate(base, 0.15, rng) if k else base
    return seqs


def _check_families(clusters: dict[str, str], n_fam: int) -> None:
    for cid, rep in clusters.items():
        assert rep.split("_")[0] == cid.split("_")[0], (cid, rep)
    assert len(set(clusters.values())) == n_fam


def test_kmer_clustering_groups_families():
    seqs = families(np.random.default_rng(5))
    _check_families(sp.cluster_kmer(seqs), 12)


@pytest.mark.slow  # MMseqs2's prefilter has a fixed cost of seconds even for 18 sequences
@pytest.mark.skipif(not sp.mmseqs_available(), reason="mmseqs (MMseqs2) not on PATH")
def test_mmseqs_clustering_groups_families():
    seqs = families(np.random.default_rng(6), n_fam=6, per=3)
    # one prefilter step instead of three: the same wrapper, half the fixed cost
    _check_families(sp.cluster_mmseqs(seqs, threads=1, extra_args=("--cluster-steps", "1")), 6)


def test_assign_splits_by_cluster(tmp_path):
    rng = np.random.default_rng(7)
    ids = [f"C{i:04d}_A" for i in range(3000)]
    clusters = {c: ids[(i // 3) * 3] for i, c in enumerate(ids)}
    lengths = {c: int(rng.integers(20, 600)) for c in ids}
    r = sp.assign_splits(clusters, lengths, seed=3, test_fraction=0.1, valid_fraction=0.1)
    split_of = {c: s for s in ("train", "valid", "test", "excluded") for c in getattr(r, s)}
    assert len(split_of) == 3000
    by_cluster: dict[str, set] = {}
    for c, s in split_of.items():
        by_cluster.setdefault(clusters[c], set()).add("eval" if s == "excluded" else s)
    # a cluster's chains never straddle train and an evaluation split
    for s in by_cluster.values():
        assert not ("train" in s and len(s) > 1)
    assert all(50 <= lengths[c] <= 400 for c in r.test + r.valid)
    assert 0.05 < r.counts["test"]["clusters"] / 1000 < 0.15
    # deterministic, and independent of input order
    r2 = sp.assign_splits(clusters, dict(reversed(list(lengths.items()))), seed=3,
                          test_fraction=0.1, valid_fraction=0.1)
    assert sorted(r2.test) == sorted(r.test)
    r3 = sp.assign_splits(clusters, lengths, seed=4, test_fraction=0.1, valid_fraction=0.1)
    assert sorted(r3.test) != sorted(r.test)
    paths = sp.write_splits(tmp_path / "x", r)
    assert sp.read_split(paths[2]) == r.test
    assert sp.read_clusters(tmp_path / "x_clusters.tsv") == clusters


def test_committed_promod3_splits(repo_root):
    prefix = sp.resolve_splits_prefix("promod3")
    if not Path(f"{prefix}_test.txt").is_file():
        pytest.skip("foldlite/splits/promod3_*.txt not generated yet")
    sets = {s: set(sp.read_split(f"{prefix}_{s}.txt")) for s in sp.SPLITS}
    assert not (sets["train"] & sets["test"]) and not (sets["train"] & sets["valid"])
    assert len(sets["test"]) >= 300 and len(sets["valid"]) >= 300
    clusters = sp.read_clusters(f"{prefix}_clusters.tsv")
    train_reps = {clusters[c] for c in sets["train"]}
    assert not any(clusters[c] in train_reps for c in sets["test"] | sets["valid"])
