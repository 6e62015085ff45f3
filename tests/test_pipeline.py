"""`foldlite predict` end to end with a tiny model whose weights the test makes.

Batch behaviour: bad records among good ones, re-runs that skip complete records, --overwrite,
hostile headers, a killed run, determinism for a fixed seed, length buckets, the persistent
compilation cache across processes, `python -m foldlite predict`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

# Every process of the test session (notebook kernels and subprocesses included) shares one
# persistent compilation cache, so each executable is compiled once per machine.
os.environ.setdefault("FOLDLITE_CACHE_DIR", str(Path(tempfile.gettempdir()) / "foldlite-test-cache"))

from conftest import tiny_weights  # noqa: E402
from foldlite import outputs, pipeline  # noqa: E402
from foldlite.commands import predict as predict_cmd  # noqa: E402
from foldlite.model import weights_io  # noqa: E402
from foldlite.cli import main  # noqa: E402
from foldlite.errors import InputError  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "data" / "examples"
MULTI = EXAMPLES / "multi.fasta"
TRPCAGE = "NLYIQWLKDGGPSSGRPPPS"
HP35 = "LSDEDFKAVFGMTRSAFANLPLWKQQNLKKEKGLF"
REFINE_STEPS = "5"


@pytest.fixture(scope="module")
def weights() -> Path:
    return tiny_weights()


@pytest.fixture(scope="module")
def model(weights):
    return pipeline.load_predictor(weights)


def _parse_pdb(path):
    from Bio.PDB import PDBParser
    return PDBParser(QUIET=True).get_structure("m", str(path))


def test_predict_one_sequence(model):
    from foldlite import constants as rc

    pred = pipeline.predict(HP35, predictor=model, refine=False)
    assert pred.length == 35 and pred.sequence == HP35 and pred.id == "query"
    p = pred.protein
    assert p.length == 35 and p.sequence == HP35
    # atoms present exactly where the residue type has them, all finite
    np.testing.assert_array_equal(p.atom_mask, rc.restype_atom37_mask[p.aatype])
    assert np.all(np.isfinite(p.atom_positions))
    assert pred.plddt.shape == (35,) and np.all((pred.plddt >= 0) & (pred.plddt <= 100))
    assert pred.pae.shape == (35, 35) and np.all(pred.pae >= 0)
    assert 0.0 <= pred.ptm <= 1.0
    np.testing.assert_allclose(p.b_factors[:, 1], pred.plddt, atol=1e-4)  # CA B-factor
    assert pred.refine_report is None and pred.unrefined is pred.ranked[0].protein
    assert pred.info["weights"]["name"] == "tiny-test" and len(pred.info["weights"]["sha256"]) == 64
    assert pred.info["padded_length"] == 64 and pred.info["device"].startswith("cpu")
    assert set(pred.info["versions"]) >= {"foldlite", "jax"}
    assert set(pred.timings) >= {"features", "compile", "model", "total"}


def test_same_seed_same_model_and_one_compile_per_bucket(weights, model):
    a = pipeline.predict(TRPCAGE, predictor=model, seed=3, refine=False)
    b = pipeline.predict(TRPCAGE, weights=weights, seed=3, refine=False)  # cached Predictor
    assert pipeline.load_predictor(weights) is model
    np.testing.assert_array_equal(a.protein.atom_positions, b.protein.atom_positions)
    np.testing.assert_array_equal(a.plddt, b.plddt)
    assert a.to_pdb() == b.to_pdb()
    # 20 and 35 residues share the 64 bucket: one executable
    assert [k for k in model.compiled if k[1] is False] == [(64, False)]
    assert b.timings["compile"] == 0.0


def test_seeds_sample_and_rank(model, tmp_path):
    pred = pipeline.predict(TRPCAGE, predictor=model, num_seeds=2, seed=5, refine=False)
    assert sorted(m.seed for m in pred.ranked) == [5, 6]
    means = [m.mean_plddt for m in pred.ranked]
    assert means == sorted(means, reverse=True) and pred.seed == pred.ranked[0].seed
    assert not np.array_equal(pred.ranked[0].protein.atom_positions,
                              pred.ranked[1].protein.atom_positions)  # dropout sampling
    d = pred.save(tmp_path)
    assert (d / "ranked_0.pdb").is_file() and (d / "ranked_1.pdb").is_file()
    scores = json.loads((d / "scores.json").read_text())
    assert [r["seed"] for r in scores["ranking"]] == [m.seed for m in pred.ranked]
    assert scores["dropout_sampling"] is True


def test_msa_profile_features(model, tmp_path):
    a3m = tmp_path / "trpcage.a3m"
    a3m.write_text(f">query\n{TRPCAGE}\n>h1\nNLYIKWLKDGGPSSGRPPPS\n>h2\n-LYVQWLKDGGPaSSGRPPP-\n"
                   ">h3\nDAYAQWLKDGGPSSGRPPPS\n")
    with_msa = pipeline.predict(TRPCAGE, predictor=model, msa=a3m, refine=False)
    without = pipeline.predict(TRPCAGE, predictor=model, refine=False)
    assert with_msa.info["msa"] == {"source": "file", "path": str(a3m), "num_sequences": 4}
    assert not np.allclose(with_msa.plddt, without.plddt)
    from foldlite.errors import InputError
    with pytest.raises(InputError):
        pipeline.predict(HP35, predictor=model, msa=a3m, refine=False)  # MSA of another query


def test_cli_end_to_end_on_bundled_examples(weights, tmp_path):
    """Every record of data/examples/multi.fasta: every output file exists and parses."""
    from Bio.PDB import MMCIFParser

    from foldlite.fileio import sha256_file
    from foldlite.sequences import read_fasta
    out = tmp_path / "out"
    rc = main(["predict", str(MULTI), "-o", str(out), "--weights", str(weights), "--no-refine",
               "--quiet"])
    assert rc == 0
    records = read_fasta(MULTI)
    rows = outputs.read_summary(out)
    assert [r["id"] for r in rows] == [r.id for r in records]
    assert all(r["status"] == "ok" for r in rows)
    for rec, row in zip(records, rows):
        d = out / row["dir"]
        assert outputs.is_complete(d)
        residues = list(_parse_pdb(d / "model.pdb").get_residues())
        assert len(residues) == rec.length == int(row["length"])
        scores = json.loads((d / "scores.json").read_text())
        for res, p in zip(residues, scores["plddt"]):
            assert res["CA"].get_bfactor() == pytest.approx(p, abs=0.01)
        assert scores["mean_plddt"] == pytest.approx(float(row["mean_plddt"]), abs=0.01)
        assert scores["ptm"] == pytest.approx(float(row["ptm"]), abs=1e-3)
        assert np.shape(scores["pae"]) == (rec.length, rec.length)
        assert scores["refinement"] is None and not (d / "unrefined.pdb").exists()
        assert set(scores["timings"]) >= {"features", "model", "outputs", "total"}
        assert scores["weights"]["sha256"] == sha256_file(weights)
        assert scores["versions"]["jax"] and scores["device"] and scores["seed"] == 0
        cif = MMCIFParser(QUIET=True).get_structure("m", str(d / "model.cif"))
        assert len(list(cif.get_residues())) == rec.length
        for png in ("plddt.png", "pae.png"):
            assert (d / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert "3Dmol" in (d / "view.html").read_text()


def test_cli_refined_record_is_deterministic(weights, tmp_path):
    """Refinement on (a few steps): refined and unrefined models, the report; same seed, same
    files."""
    fasta = tmp_path / "trpcage.fasta"
    fasta.write_text(f">trpcage Trp-cage\n{TRPCAGE}\n")  # as in data/examples/multi.fasta
    out = tmp_path / "out"
    args = ["predict", str(fasta), "-o", str(out), "--weights", str(weights), "--quiet",
            "--refine-steps", REFINE_STEPS, "--seed", "7"]
    assert main(args) == 0
    d = out / "trpcage"
    first = {n: (d / n).read_bytes() for n in ("model.pdb", "model.cif", "unrefined.pdb")}
    scores = json.loads((d / "scores.json").read_text())
    rep = scores["refinement"]
    assert scores["refined"] is True and rep["steps"] >= 1 and "energy_after" in rep
    assert scores["refine_config"]["max_steps"] == int(REFINE_STEPS)
    assert "refine" in scores["timings"] and scores["seed"] == 7
    refined = _parse_pdb(d / "model.pdb")
    unrefined = _parse_pdb(d / "unrefined.pdb")
    a = np.array([at.coord for at in refined.get_atoms()])
    b = np.array([at.coord for at in unrefined.get_atoms()])
    assert a.shape == b.shape and not np.allclose(a, b)  # refinement moved atoms
    for res, p in zip(refined.get_residues(), scores["plddt"]):
        assert res["CA"].get_bfactor() == pytest.approx(p, abs=0.01)
    assert main(args + ["--overwrite"]) == 0
    assert {n: (d / n).read_bytes() for n in first} == first


def _hostile_fasta(path: Path) -> Path:
    path.write_text(
        f">../../x escape attempt\n{TRPCAGE}\n"
        f">a/b\n{TRPCAGE[:15]}\n"
        f">a_b\n{TRPCAGE[:18]}\n"
        f">bad letters\nNLYIQ1LKDGG\n"
        f">too_long\n{HP35}\n"
        f">ok.rec\n{TRPCAGE[:12]}\n")
    return path


def test_batch_failures_hostile_headers_rerun_and_overwrite(weights, tmp_path, monkeypatch,
                                                            capsys):
    work = tmp_path / "work"
    work.mkdir()
    fasta = _hostile_fasta(work / "in.fasta")
    out = work / "out"
    args = ["predict", str(fasta), "-o", str(out), "--weights", str(weights), "--no-refine",
            "--max-length", "30"]
    assert main(args) == 1  # some records failed
    err = capsys.readouterr().err
    assert "position 6" in err and "'1'" in err and "length limit max_length=30" in err
    # nothing escaped OUTDIR; folder names are safe and distinct
    assert sorted(p.name for p in work.iterdir()) == ["in.fasta", "out"]
    rows = {r["id"]: r for r in outputs.read_summary(out)}
    assert [r["status"] for r in rows.values()] == ["ok", "ok", "ok", "failed", "failed", "ok"]
    dirs = [r["dir"] for r in rows.values()]
    assert len(set(d.lower() for d in dirs)) == len(dirs)
    for d in dirs:
        assert "/" not in d and ".." not in d and not d.startswith(".")
    assert rows["a/b"]["dir"] != rows["a_b"]["dir"]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [rows[i]["dir"] for i in rows if rows[i]["status"] == "ok"] + ["summary.tsv"])
    assert "position 6" in rows["bad"]["message"] and "35 residues" in rows["too_long"]["message"]
    done = out / rows["a/b"]["dir"] / "model.pdb"
    mtime = done.stat().st_mtime_ns

    # re-run: complete records are skipped without even loading the model
    def no_model(*a, **k):
        raise AssertionError("the model should not be needed")
    monkeypatch.setattr(predict_cmd, "load_predictor", no_model)
    assert main(args + ["--quiet"]) == 1
    rows2 = outputs.read_summary(out)
    assert [r["status"] for r in rows2] == ["cached", "cached", "cached", "failed", "failed",
                                            "cached"]
    assert [r["mean_plddt"] for r in rows2 if r["status"] == "cached"] == [
        r["mean_plddt"] for r in rows.values() if r["status"] == "ok"]
    assert done.stat().st_mtime_ns == mtime
    monkeypatch.undo()
    # --overwrite redoes them
    assert main(args + ["--quiet", "--overwrite"]) == 1
    assert [r["status"] for r in outputs.read_summary(out)] == ["ok", "ok", "ok", "failed",
                                                                "failed", "ok"]
    assert done.stat().st_mtime_ns != mtime


def test_killed_run_leaves_no_complete_looking_record(weights, tmp_path, monkeypatch):
    fasta = tmp_path / "two.fasta"
    fasta.write_text(f">first\n{TRPCAGE}\n>second\n{TRPCAGE[:16]}\n")
    out = tmp_path / "out"
    real = outputs.write_record

    def dies_on_second(outdir, pred, **kw):
        if pred.id == "second":
            raise KeyboardInterrupt  # the process is stopped while this record is predicted
        return real(outdir, pred, **kw)

    monkeypatch.setattr(outputs, "write_record", dies_on_second)
    rc = main(["predict", str(fasta), "-o", str(out), "--weights", str(weights),
               "--no-refine", "--quiet"])
    assert rc == 130
    monkeypatch.undo()
    assert outputs.is_complete(out / "first") and not (out / "second").exists()
    # what a kill in the middle of writing leaves: a hidden temporary folder, never "second"
    (out / ".second.x1y2z3.partial").mkdir()
    (out / ".second.x1y2z3.partial" / "model.pdb").write_text("half")
    assert main(["predict", str(fasta), "-o", str(out), "--weights", str(weights),
                 "--no-refine", "--quiet"]) == 0
    assert [r["status"] for r in outputs.read_summary(out)] == ["cached", "ok"]
    assert sorted(p.name for p in out.iterdir()) == ["first", "second", "summary.tsv"]


def test_user_errors(tmp_path, monkeypatch, capsys, weights):
    out = str(tmp_path / "o")
    monkeypatch.setattr(weights_io, "DEFAULT_WEIGHTS", tmp_path / "absent" / "default.npz")
    assert main(["predict", TRPCAGE, "-o", out]) == 2
    assert "no shipped model weights" in capsys.readouterr().err
    assert main(["predict", TRPCAGE, "-o", out, "--weights", str(tmp_path / "nope.npz")]) == 2
    assert "weights file not found" in capsys.readouterr().err
    assert main(["predict", str(tmp_path / "missing.fasta"), "-o", out]) == 2
    assert "no such FASTA file" in capsys.readouterr().err
    assert main(["predict", TRPCAGE, "-o", out, "--weights", str(weights), "--device", "gpu"]) in (0, 2)
    assert main(["predict", str(MULTI), "-o", out, "--weights", str(weights),
                 "--msa", str(tmp_path / "x.a3m")]) == 2
    assert "--msa needs a single-record input" in capsys.readouterr().err


def test_python_dash_m_and_persistent_compilation_cache(weights, tmp_path):
    """`python -m foldlite predict` works, and a second run compiles nothing new."""
    cache = Path(os.environ["FOLDLITE_CACHE_DIR"]) / "jax"
    env = dict(os.environ)
    cmd = [sys.executable, "-m", "foldlite", "predict", TRPCAGE[:14], "-o", str(tmp_path / "o"),
           "--weights", str(weights), "--no-refine", "--quiet", "--overwrite"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr
    assert outputs.is_complete(tmp_path / "o" / "query")
    assert r.stdout == "" and r.stderr.strip() == ""  # --quiet
    entries = set(os.listdir(cache))
    assert entries
    programs = cache.parent / "programs"
    traced = {p.name: p.stat().st_mtime_ns for p in programs.iterdir()}
    assert any(name.startswith("model.infer-") for name in traced)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr
    assert set(os.listdir(cache)) == entries  # every executable came from the cache
    # ... and every traced program from the program cache (read, not traced and written again)
    assert {p.name: p.stat().st_mtime_ns for p in programs.iterdir()} == traced
    scores = json.loads((tmp_path / "o" / "query" / "scores.json").read_text())
    assert scores["sequence"] == TRPCAGE[:14]


def test_long_plain_sequence_and_bad_input_are_read_without_os_errors(tmp_path):
    """A plain sequence longer than a file name may be (ENAMETOOLONG) is still a sequence; a
    long string that is no sequence gets the usual one-line error."""
    seq = "MQIFVKTLTGKTITLEVEPSDTIENVKAKIQDKEGIPPDQQRLIFAGKQLEDGRTLSDYNIQKESTLHLVLRLRGG" * 6
    (entry,) = predict_cmd.read_batch_input(seq)
    assert entry.error is None and entry.record.length == len(seq)
    (entry,) = predict_cmd.read_batch_input(seq, max_length=100)
    assert "100" in entry.error
    with pytest.raises(InputError, match="no such FASTA file"):
        predict_cmd.read_batch_input("x/" * 300 + "seq.fasta")
