"""Evaluation: baselines, scores, pLDDT correlation, the report files and `foldlite evaluate
--structures` end to end."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import jax
import numpy as np
import pytest

from foldlite.train import evaluate as ev

DATA = Path(__file__).parent / "data"


pytestmark = pytest.mark.usefixtures("fast_compile")


def test_baselines_geometry():
    helix = ev.ideal_helix_ca(50)
    d = np.linalg.norm(np.diff(helix, axis=0), axis=-1)
    np.testing.assert_allclose(d, 3.8, atol=0.05)
    # i, i+3 and i, i+4 CA distances of an alpha helix: about 5.0-5.4 and 6.2 A
    assert 4.8 < np.linalg.norm(helix[3] - helix[0]) < 5.6
    assert 5.8 < np.linalg.norm(helix[4] - helix[0]) < 6.6
    walk = ev.random_walk_ca(200, seed=1)
    steps = np.diff(walk, axis=0)
    np.testing.assert_allclose(np.linalg.norm(steps, axis=-1), 3.8, atol=1e-4)
    assert np.all(np.sum(steps[1:] * steps[:-1], -1) > 0)  # never turns back
    np.testing.assert_array_equal(walk, ev.random_walk_ca(200, seed=1))


def test_scores_and_baselines_on_a_real_chain():
    from foldlite.protein import read_structure
    p = read_structure(DATA / "1A8O.pdb")
    ca, mask = p.ca_positions, p.ca_mask
    perfect = ev.score_ca(ca + 5.0, ca, mask)
    assert perfect["lddt_ca"] == pytest.approx(1.0) and perfect["tm_score"] == pytest.approx(1.0)
    assert perfect["gdt_ts"] == pytest.approx(1.0) and perfect["rmsd"] < 1e-3
    helix = ev.score_ca(ev.ideal_helix_ca(p.length), ca, mask)
    walk = ev.score_ca(ev.random_walk_ca(p.length, 0), ca, mask)
    for s in (helix, walk):
        assert 0.0 < s["lddt_ca"] < 0.6 and 0.0 < s["tm_score"] < 0.5 and s["rmsd"] > 4.0


def test_pearson():
    x = np.arange(10.0)
    assert ev._pearson(x, 2 * x + 1) == pytest.approx(1.0)
    assert ev._pearson(x, -x) == pytest.approx(-1.0)
    assert ev._pearson([1, 1, 1], [1, 2, 3]) is None
    assert ev._pearson([1.0, np.nan, 2.0, 3.0], [1.0, 5.0, 2.0, 3.0]) == pytest.approx(1.0)


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    """Random tiny-model weights in the shipped format (shapes from ``eval_shape`` of the
    model's init, values N(0, 0.05): untrained, and no compilation needed to make them)."""
    from foldlite.data.features import make_features
    from foldlite.model import load_model_config, make_model
    from foldlite.model.weights_io import save_weights

    cfg = load_model_config("tiny")
    model = make_model(cfg)
    f = make_features(np.zeros(16, np.int32))
    shapes = jax.eval_shape(lambda k, f: model.init(k, f, num_recycles=0),
                            jax.random.PRNGKey(0), f)
    rng = np.random.default_rng(0)
    params = jax.tree_util.tree_map(
        lambda s: rng.normal(0.0, 0.05, s.shape).astype(s.dtype), shapes)
    path = tmp_path_factory.mktemp("w") / "tiny.npz"
    save_weights(path, params, cfg, {"note": "untrained"})
    return path


def test_evaluate_structures_cli(tiny_weights, tmp_path, capsys):
    from foldlite.cli import main
    from foldlite.protein import read_structure, write_pdb

    p = read_structure(DATA / "1A8O.pdb")
    sdir = tmp_path / "structures"
    sdir.mkdir()
    sub = p.replace(aatype=p.aatype[:40], atom_positions=p.atom_positions[:40],
                    atom_mask=p.atom_mask[:40], residue_index=p.residue_index[:40],
                    b_factors=p.b_factors[:40], insertion_code=p.insertion_code[:40])
    write_pdb(sub, sdir / "small.pdb")
    (sdir / "notes.txt").write_text("not a structure")
    out = tmp_path / "out"
    assert main(["evaluate", "--weights", str(tiny_weights), "--structures", str(sdir),
                 "--recycles", "0", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "helix" in printed and "random_walk" in printed and "Pearson" in printed
    summary = json.loads((out / "evaluation.json").read_text())
    assert summary["num_chains"] == 1
    chain = summary["chains"][0]
    assert chain["chain_id"] == "small_A" and chain["length"] == 40
    assert not chain["has_profile"]
    for method in ("model", "helix", "random_walk"):
        for k in ("lddt_ca", "tm_score", "gdt_ts", "rmsd"):
            assert np.isfinite(chain[method][k])
    assert 0 <= chain["mean_plddt"] <= 100 and 0 <= chain["ptm"] <= 1
    csv_rows = (out / "evaluation.csv").read_text().splitlines()
    assert csv_rows[0].startswith("chain_id,length,has_profile,method,lddt_ca")
    assert len(csv_rows) == 4
    # user errors: exit 2 with a message, no traceback
    assert main(["evaluate", "--weights", str(tmp_path / "missing.npz"), "--structures",
                 str(sdir)]) == 2
    assert "not found" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["evaluate", "--weights", str(tiny_weights), "--structures", str(empty)]) == 2


def test_evaluate_examples_with_score_workers():
    """Scores computed in worker processes equal those computed in place; pLDDT correlation."""
    from foldlite.data.features import make_features
    from foldlite.protein import read_structure

    p = read_structure(DATA / "1A8O.pdb")
    rng = np.random.default_rng(0)
    examples = []
    for k in range(4):
        s = slice(k * 10, k * 10 + 30)
        examples.append(ev.EvalExample(f"c{k}", make_features(p.aatype[s]), p.ca_positions[s],
                                       p.ca_mask[s]))

    def predictor(features):  # noise that grows along the chain; pLDDT that says so
        n = len(features.aatype)
        noise = np.linspace(0.1, 6.0, n)[:, None] * rng.normal(size=(n, 3))
        i = next(j for j, e in enumerate(examples) if e.features is features)
        return SimpleNamespace(ca=examples[i].true_ca + noise, plddt=np.linspace(95, 20, n),
                               ptm=np.float32(0.5))

    a = ev.evaluate_examples(predictor, examples, workers=0, seed=3)
    rng = np.random.default_rng(0)
    b = ev.evaluate_examples(predictor, examples, workers=1, seed=3)
    assert a["num_chains"] == 4 and a["mean"] == b["mean"]
    assert set(a["mean"]) == {"model", "helix", "random_walk"}
    assert 0.0 < a["mean"]["model"]["lddt_ca"] < 1.0
    assert a["plddt_pearson_residue"] > 0.5
