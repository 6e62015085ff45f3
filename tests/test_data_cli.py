"""``foldlite data`` end to end on synthetic files (and tests/data structures when present)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from datagen import DBChain, make_deb, mutate, random_backbone, random_sequence, write_structure_db
from foldlite.cli import main
from foldlite.data.dataset import Dataset
from foldlite.data.splits import read_split

TEST_DATA = Path(__file__).resolve().parent / "data"


def synthetic_db(path: Path, n_fam: int = 8, per: int = 3) -> Path:
    rng = np.random.default_rng(0)
    chains = []
    for f in range(n_fam):
        base = random_sequence(int(rng.integers(60, 160)), rng)
        for k in range(per):
            seq = mutate(base, 0.1, rng) if k else base
            L = len(seq)
            prof = rng.random((L, 20))
            chains.append(DBChain(
                pdb_id=f"{f + 1}X{k}Y", chain="A", sequence=seq,
                backbone=random_backbone(L, rng), dssp="".join(rng.choice(list("HEC"), L)),
                aln_profile=prof / prof.sum(-1, keepdims=True)))
    return write_structure_db(path, chains)


def test_promod3_info_split(tmp_path, capsys):
    db = synthetic_db(tmp_path / "structure_db.dat")
    out = tmp_path / "ds"
    assert main(["data", "promod3", "--db", str(db), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "chains: 24" in text and f"wrote {out}" in text and "first chain 1X0Y_A" in text
    d = Dataset(out)
    assert len(d) == 24
    assert d.manifest["command"].startswith("foldlite") or d.manifest["command"]
    # a second run refuses to overwrite without --overwrite (exit 2, message, no traceback)
    assert main(["data", "promod3", "--db", str(db), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--overwrite" in err and "Traceback" not in err
    assert main(["data", "promod3", "--db", str(db), "--out", str(out), "--overwrite"]) == 0
    capsys.readouterr()

    assert main(["data", "info", str(out)]) == 0
    assert "residues" in capsys.readouterr().out

    prefix = tmp_path / "splits" / "syn"
    assert main(["data", "split", "--dataset", str(out), "--prefix", str(prefix), "--method",
                 "kmer", "--test-fraction", "0.3", "--valid-fraction", "0.3"]) == 0
    text = capsys.readouterr().out
    assert "k-mer fallback" in text and "test" in text
    ids = {s: read_split(f"{prefix}_{s}.txt") for s in ("train", "valid", "test")}
    assert sum(len(v) for v in ids.values()) <= 24
    fams = {s: {c[0] for c in v} for s, v in ids.items()}  # family = first character of id
    assert not (fams["train"] & fams["test"]) and not (fams["train"] & fams["valid"])


def test_promod3_bad_inputs(tmp_path, capsys):
    db = synthetic_db(tmp_path / "structure_db.dat", n_fam=2, per=1)
    cut = tmp_path / "cut.dat"
    cut.write_bytes(db.read_bytes()[:-7])
    assert main(["data", "promod3", "--db", str(cut), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "truncated" in err and "Traceback" not in err and not (tmp_path / "o").exists()
    assert main(["data", "promod3", "--db", str(tmp_path / "none.dat"), "--out",
                 str(tmp_path / "o")]) == 2
    assert "not found" in capsys.readouterr().err
    deb = tmp_path / "fake.deb"
    deb.write_bytes(b"!<arch>\nnonsense")
    assert main(["data", "promod3", "--deb", str(deb), "--out", str(tmp_path / "o")]) == 2
    assert "corrupt Debian package" in capsys.readouterr().err


def test_promod3_from_deb(tmp_path, capsys):
    db = synthetic_db(tmp_path / "structure_db.dat", n_fam=2, per=2)
    deb = make_deb(tmp_path / "promod3-data_1.0_all.deb", db.read_bytes())
    keep = tmp_path / "kept.dat"
    assert main(["data", "promod3", "--deb", str(deb), "--out", str(tmp_path / "o"),
                 "--keep-db", str(keep)]) == 0
    assert "chains: 4" in capsys.readouterr().out
    assert keep.read_bytes() == db.read_bytes()


def test_structures_cli(tmp_path, capsys):
    pytest.importorskip("foldlite.protein")
    files = sorted(p for p in TEST_DATA.glob("*") if ".pdb" in p.name or ".cif" in p.name)
    if not files:
        pytest.skip(f"no structure files in {TEST_DATA}")
    src = tmp_path / "in"
    src.mkdir()
    for f in files:
        shutil.copy(f, src)
    (src / "broken.cif").write_text("data_broken\nloop_\n_atom_site.id\n1 2 3\n")
    out = tmp_path / "out"
    assert main(["data", "structures", "--in", str(src), "--out", str(out), "--chains", "all",
                 "--min-length", "5"]) == 0
    text = capsys.readouterr().out
    assert "skipped file broken.cif" in text
    d = Dataset(out)
    assert len(d) >= 1 and d.manifest["options"]["chains"] == "all"
    # offline download: a clear message, exit 2
    from foldlite.data import structures as st

    ids = tmp_path / "ids.txt"
    ids.write_text("9ZZZ\n")
    orig = st.rcsb_reachable
    st.rcsb_reachable = lambda timeout=5.0: False
    try:
        assert main(["data", "structures", "--in", str(tmp_path / "dl"), "--out",
                     str(tmp_path / "o2"), "--pdb-ids", str(ids)]) == 2
    finally:
        st.rcsb_reachable = orig
    err = capsys.readouterr().err
    assert "offline" in err and "Traceback" not in err


def test_data_without_source(capsys):
    assert main(["data"]) == 2
    assert "promod3" in capsys.readouterr().out
