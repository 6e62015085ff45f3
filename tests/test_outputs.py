"""foldlite.outputs: the files of one record (complete or absent, never half), summary.tsv."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pytest

from foldlite import outputs
from foldlite.results import Prediction, SeedPrediction
from foldlite.protein import read_structure

DATA = Path(__file__).parent / "data"


@dataclasses.dataclass(frozen=True)
class FakeReport:
    """Stands in for a RefineReport: a dataclass with numbers and a trajectory to drop."""
    energy_before: float
    energy_after: float
    steps: int
    clashes: np.ndarray
    trajectory: object = None


def make_prediction(prot=None, name="rec", num_seeds=2, refined=True, seed=0) -> Prediction:
    """A Prediction built from a real structure, with made-up confidences."""
    prot = read_structure(DATA / "1A8O.pdb") if prot is None else prot
    rng = np.random.default_rng(seed)
    n = prot.length
    ranked = []
    for s in range(num_seeds):
        plddt = np.clip(np.linspace(30, 95, n) - 5 * s + rng.normal(0, 2, n), 0, 100)
        pae = rng.uniform(0, 31.75, (n, n))
        ranked.append(SeedPrediction(seed=s, protein=prot.with_plddt(plddt), plddt=plddt, pae=pae,
                                  ptm=0.7 - 0.1 * s))
    best = ranked[0]
    report = FakeReport(10.0, 1.0, 5, np.array([1, 2]), trajectory=[prot]) if refined else None
    return Prediction(id=f"{name} id", name=name, description=f"{name} description",
                      sequence=prot.sequence, protein=prot, unrefined=best.protein,
                      plddt=best.plddt, pae=best.pae, ptm=best.ptm, seed=best.seed,
                      ranked=tuple(ranked), refine_report=report,
                      timings={"model": 0.5, "total": 1.25},
                      info={"weights": {"name": "w", "sha256": "ab" * 32},
                            "versions": {"foldlite": "0"}, "device": "cpu:0",
                            "nan_value": float("nan")})


def test_record_files_exist_and_parse(tmp_path):
    from Bio.PDB import MMCIFParser, PDBParser

    pred = make_prediction()
    d = outputs.write_record(tmp_path, pred)
    assert d == tmp_path / "rec"
    names = {p.name for p in d.iterdir()}
    assert names == {"model.pdb", "model.cif", "unrefined.pdb", "ranked_0.pdb", "ranked_1.pdb",
                     "scores.json", "plddt.png", "pae.png", "view.html", ".complete"}
    assert outputs.is_complete(d)
    s = PDBParser(QUIET=True).get_structure("m", d / "model.pdb")
    atoms = list(s.get_atoms())
    assert len(list(s.get_residues())) == pred.length
    # pLDDT in the B-factor column of every atom, per residue
    for res, p in zip(s.get_residues(), pred.plddt):
        assert all(a.get_bfactor() == pytest.approx(p, abs=0.01) for a in res)
    c = MMCIFParser(QUIET=True).get_structure("m", str(d / "model.cif"))
    assert len(list(c.get_atoms())) == len(atoms)
    for png in ("plddt.png", "pae.png"):
        assert (d / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    scores = json.loads((d / "scores.json").read_text())
    assert scores["id"] == "rec id" and scores["length"] == pred.length
    assert scores["mean_plddt"] == pytest.approx(pred.mean_plddt, abs=1e-3)
    assert len(scores["plddt"]) == pred.length and np.shape(scores["pae"]) == (pred.length,) * 2
    assert scores["ptm"] == pytest.approx(0.7)
    assert [r["seed"] for r in scores["ranking"]] == [0, 1]
    assert scores["ranking"][1]["file"] == "ranked_1.pdb"
    assert scores["refinement"] == {"energy_before": 10.0, "energy_after": 1.0, "steps": 5,
                                    "clashes": [1, 2]}  # the trajectory is not stored
    assert scores["weights"]["sha256"] == "ab" * 32 and scores["nan_value"] is None
    assert scores["timings"]["outputs"] > 0 and scores["timings"]["model"] == 0.5
    html = (d / "view.html").read_text()
    assert "rec id" in html and "#0053D6" in html


def test_single_seed_unrefined_record(tmp_path):
    d = outputs.write_record(tmp_path, make_prediction(num_seeds=1, refined=False))
    names = {p.name for p in d.iterdir()}
    assert "unrefined.pdb" not in names and not any(n.startswith("ranked") for n in names)
    assert json.loads((d / "scores.json").read_text())["refinement"] is None


def test_incomplete_records_are_detected(tmp_path):
    d = outputs.write_record(tmp_path, make_prediction())
    assert outputs.is_complete(d)
    with open(d / "pae.png", "ab") as fh:
        fh.write(b"x")
    assert not outputs.is_complete(d)  # size changed
    d = outputs.write_record(tmp_path, make_prediction())
    (d / "model.cif").unlink()
    assert not outputs.is_complete(d)
    d = outputs.write_record(tmp_path, make_prediction())
    (d / outputs.COMPLETE_MARKER).write_text("{not json")
    assert not outputs.is_complete(d)
    assert not outputs.is_complete(tmp_path / "absent")


def test_a_crash_leaves_no_half_record(tmp_path, monkeypatch):
    from foldlite import viz

    good = outputs.write_record(tmp_path, make_prediction(seed=0))
    before = (good / "scores.json").read_text()

    def boom(*a, **k):
        raise RuntimeError("killed while writing view.html")

    monkeypatch.setattr(viz, "write_html", boom)
    with pytest.raises(RuntimeError, match="killed"):
        outputs.write_record(tmp_path, make_prediction(seed=1))
    # the earlier complete record is untouched and no temporary folder is left
    assert (good / "scores.json").read_text() == before and outputs.is_complete(good)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rec"]
    with pytest.raises(RuntimeError):
        outputs.write_record(tmp_path, make_prediction(name="new"))
    assert not (tmp_path / "new").exists()
    # a stale folder from a killed process is cleaned up by the next write of that record
    (tmp_path / ".new.abc123.partial").mkdir()
    monkeypatch.undo()
    outputs.write_record(tmp_path, make_prediction(name="new"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new", "rec"]


def test_rewrite_replaces_the_folder(tmp_path):
    d = outputs.write_record(tmp_path, make_prediction(num_seeds=3))
    assert (d / "ranked_2.pdb").exists()
    d = outputs.write_record(tmp_path, make_prediction(num_seeds=1))
    assert not (d / "ranked_2.pdb").exists() and outputs.is_complete(d)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rec"]


def test_unsafe_names_are_refused(tmp_path):
    for bad in ("..", "a/b", "", "summary.tsv"):
        with pytest.raises(ValueError, match="unsafe"):
            outputs.write_record(tmp_path, make_prediction(name=bad))


def test_summary_rows_and_merge(tmp_path):
    d = outputs.write_record(tmp_path, make_prediction(name="a"))
    rows = [outputs.SummaryRow("a id", "a", 70, 61.234, 0.7, "ok", 1.5),
            outputs.SummaryRow("b\tid", "b", None, None, None, "failed", None,
                               "bad letter\nat position 3")]
    path = outputs.write_summary(tmp_path, rows)
    lines = path.read_text().splitlines()
    assert lines[0].split("\t") == list(outputs.SUMMARY_COLUMNS)
    assert len(lines) == 3
    assert all(len(l.split("\t")) == len(outputs.SUMMARY_COLUMNS) for l in lines)
    got = outputs.read_summary(tmp_path)
    assert got[0]["mean_plddt"] == "61.23" and got[1]["status"] == "failed"
    assert got[1]["message"] == "bad letter at position 3"
    # a later run over other records keeps earlier rows of records that still exist
    outputs.write_summary(tmp_path, [outputs.SummaryRow("c", "c", 5, 50.0, 0.2, "failed", 0.1)])
    assert [r["dir"] for r in outputs.read_summary(tmp_path)] == ["c", "a"]
    cached = outputs.SummaryRow.from_scores(d)
    assert cached.status == "cached" and cached.length == 70 and cached.id == "a id"
    info = outputs.summary_info(outputs.read_scores(d))
    assert info["Length"] == "70" and "w (sha256 abababababab)" == info["Weights"]
    assert os.path.basename(outputs.find_model_file(d)) == "model.pdb"
