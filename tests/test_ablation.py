"""The ablation harness end to end: variants of the tiny config on a tiny dataset (scored on
validation chains), and the single-chain overfit mode on tests/data/1A8O.pdb."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from foldlite.errors import ConfigError
from foldlite.train import ablation

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / "data"


@pytest.fixture(autouse=True, scope="module")
def _fast_compile():
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FOLDLITE_FAST_COMPILE", "1")
        yield


def test_parse_variants(tmp_path):
    v = ablation.parse_variant("lr: optimizer.learning_rate=3.0e-4 model.structure.dropout=0.0")
    assert v.name == "lr" and v.overrides == ("optimizer.learning_rate=3.0e-4",
                                               "model.structure.dropout=0.0")
    assert ablation.parse_variant("base:") == ablation.Variant("base")
    with pytest.raises(ConfigError):
        ablation.parse_variant("no colon")
    train, model, opts = ablation.split_overrides(
        ["steps=3", "model.c_s=16", "harness.structure_lr_scale=3"])
    assert train == ["steps=3"] and model == ["c_s=16"] and opts.structure_lr_scale == 3.0
    with pytest.raises(ConfigError, match="harness option"):
        ablation.split_overrides(["harness.bogus=1"])
    (tmp_path / "v.yaml").write_text("a: []\nb: [data.crop_size=12]\n")
    assert [x.name for x in ablation.load_variants(tmp_path / "v.yaml")] == ["a", "b"]


def test_ablation_end_to_end(tmp_path):
    """One variant with a model override and a structure-module learning-rate scale x 2 steps
    of the tiny config, scored on a validation chain; the record and the table."""
    from test_trainer import write_tiny_dataset

    ds, prefix = write_tiny_dataset(tmp_path / "data")
    variants = [ablation.Variant("sm", ("model.structure.num_iterations=3",
                                        "harness.structure_lr_scale=2.0"))]
    recs = ablation.run_ablation("tiny", [f"data.path={ds}", f"data.splits={prefix}"], variants,
                                 steps=2, out_dir=tmp_path / "out", eval_chains=1)
    (r,) = recs
    assert r["variant"] == "sm" and r["steps"] == 2 and np.isfinite(r["train"]["fape"])
    assert r["valid"]["num_chains"] == 1 and 0.0 <= r["valid"]["lddt_ca"] <= 1.0
    assert (tmp_path / "out" / "sm" / "model.yaml").is_file()
    line = (tmp_path / "out" / "ablation.jsonl").read_text().splitlines()[0]
    assert json.loads(line)["overrides"] == list(variants[0].overrides)
    table = ablation.format_table(recs)
    assert "val_lddt_ca" in table and len(table.splitlines()) == 2


def test_overfit_mode(tmp_path, capsys):
    """The command line's --overfit on 1A8O with the tiny config (cropped to 16 residues): a
    few steps, the table, the curve and the goal column (not reached in 2 steps)."""
    assert ablation.main(["--config", "tiny", "--overfit", str(DATA / "1A8O.pdb"),
                          "--steps", "2", "--curve-every", "1", "--out", str(tmp_path),
                          "--set", "data.crop_size=16", "--set", "max_recycles=0"]) == 0
    out = capsys.readouterr().out
    assert "goal_step" in out and "base: 1: fape" in out
    rec = json.loads((tmp_path / "ablation.jsonl").read_text().splitlines()[0])
    assert rec["steps"] == 2 and rec["goal_step"] is None and len(rec["curve"]) == 2
    assert rec["overfit"].endswith("1A8O.pdb")
