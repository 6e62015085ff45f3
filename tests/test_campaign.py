"""The training campaign: data packs, the accelerator job script run end to end on the CPU with
the tiny config, adopting a job's state, and a second job that continues the first."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
from pathlib import Path

import jax
import numpy as np
import pytest

from foldlite.data import pack
from foldlite.data.dataset import Dataset
from foldlite.errors import InputError
from foldlite.train import campaign
from foldlite.model import weights_io
from foldlite.train import checkpoint as ck

from conftest import REPO, write_tiny_dataset

#: Job settings for the tiny config on a CPU (the campaign config's bf16/scan are for GPUs).
JOB_SET = ["optimizer.schedule=constant", "optimizer.warmup_steps=2", "log_interval=2",
           "execution.compute_dtype=bfloat16", "execution.scan_trunk=true"]


pytestmark = pytest.mark.usefixtures("fast_compile")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_tiny_dataset(tmp_path_factory.mktemp("data"))


def test_pack_round_trip(dataset, tmp_path):
    """A pack keeps what training reads: coordinates to 0.005 A (0.01 A fixed point), residue
    types, numbering, DSSP and masks exactly, profiles to 1/510, absent profiles absent."""
    ds = Dataset(dataset[0])
    recs = [ds[i] for i in range(len(ds))]
    # an absent O atom in the middle of a chain, and a gap in the numbering
    m = recs[1].atom_mask.copy()
    m[5, 3] = 0
    ri = recs[1].residue_index.copy()
    ri[10:] += 7
    recs[1] = dataclasses.replace(recs[1], atom_mask=m, residue_index=ri)
    stats = pack.write_pack(tmp_path / "a.fldpack", recs, split="train", meta={"job": 3})
    assert stats["chains"] == len(recs) and stats["bytes"] == (tmp_path / "a.fldpack").stat().st_size
    back, meta = pack.read_pack(tmp_path / "a.fldpack")
    assert meta["split"] == "train" and meta["job"] == 3
    for a, b in zip(recs, back):
        assert a.chain_id == b.chain_id
        np.testing.assert_array_equal(a.aatype, b.aatype)
        np.testing.assert_array_equal(a.residue_index, b.residue_index)
        np.testing.assert_array_equal(a.dssp, b.dssp)
        np.testing.assert_array_equal(a.atom_mask[:, :4], b.atom_mask[:, :4])
        assert b.atom_mask[:, 4:].sum() == 0  # backbone only
        keep = a.atom_mask[:, :4] > 0
        err = np.abs(a.atom_positions[:, :4] - b.atom_positions[:, :4])[keep]
        assert err.max() <= 0.0051
        assert (b.atom_positions[:, :4][~keep] == 0).all()
        if a.profile is None:
            assert b.profile is None
        else:
            assert np.abs(a.profile - b.profile).max() <= 1 / 510 + 1e-6
    # unpack: one dataset, a split file per pack
    pack.write_pack(tmp_path / "v.fldpack", recs[:1], split="valid")
    with pytest.raises(InputError, match="more than one pack"):
        pack.unpack([tmp_path / "a.fldpack", tmp_path / "v.fldpack"], tmp_path / "bad")
    pack.write_pack(tmp_path / "v.fldpack", [dataclasses.replace(recs[0], chain_id="V_A")],
                    split="valid")
    out = pack.unpack([tmp_path / "a.fldpack", tmp_path / "v.fldpack"], tmp_path / "ds")
    assert (out / "splits" / "valid.txt").read_text() == "V_A\n"
    assert len(Dataset(out)) == len(recs) + 1


def test_pack_refuses_bad_input(dataset, tmp_path):
    ds = Dataset(dataset[0])
    r = ds[0]
    m = r.atom_mask.copy()
    m[3, 1] = 0  # no CA
    with pytest.raises(InputError, match=r"T0_A: residue 4 lacks a backbone atom"):
        pack.write_pack(tmp_path / "x.fldpack", [dataclasses.replace(r, atom_mask=m)],
                        split="train")
    (tmp_path / "junk.fldpack").write_bytes(b"not a pack")
    with pytest.raises(InputError, match="junk.fldpack: not a foldlite pack"):
        pack.read_pack(tmp_path / "junk.fldpack")


def test_state_parts_round_trip(dataset, tmp_path):
    """The split state files give back the training state exactly."""
    from foldlite.train.config import load_train_config
    from foldlite.train.trainer import Trainer

    ds, prefix = dataset
    cfg = load_train_config("tiny", [f"data.path={ds}", f"data.splits={prefix}",
                                     f"log_dir={tmp_path / 'run'}"])
    tr = Trainer(cfg, progress=False)
    state = tr.initial_state()
    state = dataclasses.replace(state, step=np.asarray(17, np.int32))
    files = ck.save_state_parts(tmp_path / "s", state, extra={"jobs": 2})
    assert sorted(p.name for p in files) == ["ema_params.npz", "opt_state.npz", "params.npz",
                                             "state.json"]
    back, extra = ck.load_state_parts(tmp_path / "s", tr.state_template())
    assert extra == {"jobs": 2} and int(back.step) == 17
    assert tr.evaluate(state, deadline=0.0) == {}  # no chain starts after the deadline
    for a, b in zip(jax.tree_util.tree_leaves(state), jax.tree_util.tree_leaves(back)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def _campaign(tmp_path: Path, dataset) -> Path:
    ds, prefix = dataset
    d = tmp_path / "campaign"
    d.mkdir()
    # the tiny dataset's clusters: T0/T1 one cluster, T2, T3 their own
    Path(f"{prefix}_clusters.tsv").write_text("T0_A\tT0_A\nT0_A\tT1_A\nT2_A\tT2_A\nT3_A\tT3_A\n")
    (d / "campaign.yaml").write_text(
        "name: tiny-test\ntrain_config: tiny\ninit_weights: null\n"
        f"dataset: {ds}\nsplits: {prefix}\nshards: 2\nseed: 0\nmin_length: 10\n"
        f"max_length: 1000\nvalid_chains: 2\nvalid_max_length: 400\nreserve_seconds: 20\n")
    return d


def test_shards_cover_every_cluster_and_rotate_members(dataset, tmp_path):
    d = _campaign(tmp_path, dataset)
    ccfg = campaign.load_campaign(d)
    ds = Dataset(ccfg.dataset)
    shards = [campaign.shard_chains(ccfg, ds, j) for j in range(4)]
    clusters = {"T0_A": "T0_A", "T1_A": "T0_A", "T2_A": "T2_A", "T3_A": "T3_A"}
    # jobs 0 and 1 together cover each cluster once; jobs 2 and 3 (the next round) too
    for a, b in [(shards[0], shards[1]), (shards[2], shards[3])]:
        assert sorted(clusters[c] for c in a + b) == ["T0_A", "T2_A", "T3_A"]
    assert campaign.valid_chains(ccfg, ds) == ["T4_A", "T5_A"]
    stats = campaign.make_packs(d, 1, tmp_path / "carry")
    assert stats["valid"]["chains"] == 2
    assert sorted(p.name for p in (tmp_path / "carry").iterdir()) == ["train-job1.fldpack",
                                                                      "valid.fldpack"]


@pytest.mark.slow
def test_accelerator_job_end_to_end_then_continue(dataset, tmp_path):
    """scripts/accelerator_job.sh on the CPU with a budget of seconds: it trains, writes the
    state, weights, log, record and report; `adopt` makes it the campaign's state; a second job
    continues from that step with the moments and EMA it left."""
    d = _campaign(tmp_path, dataset)
    campaign.make_packs(d, 0, tmp_path / "carry")
    out = tmp_path / "out0"
    env = dict(os.environ, FOLDLITE_CAMPAIGN=str(d), FOLDLITE_JOB_PACKS=str(tmp_path / "carry"),
               FOLDLITE_JOB_WHEELS=str(tmp_path / "no-wheels"),
               FOLDLITE_JOB_SET=" ".join(f"--set {s}" for s in JOB_SET),
               FOLDLITE_FAST_COMPILE="1", JAX_PLATFORMS="cpu")
    proc = subprocess.run(["bash", str(REPO / "scripts" / "accelerator_job.sh"), str(out), "60"],
                          env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Campaign tiny-test: job 0" in proc.stdout
    record = json.loads((out / "job.json").read_text())
    assert record["step_from"] == 0 and record["steps"] > 2 and record["stopped"] == "time"
    assert record["seconds"]["total"] < 60 + 5
    assert record["valid"]["num_chains"] == 2 and 0 <= record["valid"]["lddt_ca"] <= 1
    assert record["compute_dtype"] == "bfloat16"
    assert record["residues_per_second"] > 0 and 0 <= record["data_wait_fraction"] <= 1
    assert sorted(p.name for p in (out / "state").iterdir()) == [
        "ema_params.npz", "opt_state.npz", "params.npz", "state.json"]
    params, model_cfg, meta = weights_io.load_weights(out / "weights.npz")
    assert meta["job"] == 0 and meta["step"] == record["step_to"]
    assert model_cfg.dtype == "float32"  # weights keep the model's own config
    assert (out / "report.md").read_text().startswith("# Campaign tiny-test: job 0")

    campaign.adopt(d, out)
    assert [r["job"] for r in campaign.read_jobs(d)] == [0]
    with pytest.raises(InputError, match="does not continue"):
        campaign.adopt(d, out)  # the same job twice
    assert "| 0 |" in campaign.status_table(d)

    # job 1, in this process, continues from the adopted state
    campaign.make_packs(d, 1, tmp_path / "carry")
    out1 = tmp_path / "out1"
    rec1 = campaign.run_job(d, sorted((tmp_path / "carry").glob("*.fldpack")), out1, 45,
                            overrides=JOB_SET, progress=False)
    assert rec1["job"] == 1 and rec1["step_from"] == record["step_to"]
    assert rec1["step_to"] > rec1["step_from"]
    assert rec1["packs"][0]["job"] == 1
    campaign.adopt(d, out1)
    state = json.loads((d / "state" / "state.json").read_text())
    assert state["step"] == rec1["step_to"] and state["extra"]["jobs"] == 2

    # the shipping rule: strictly better on lDDT-CA and TM in both settings
    ds, prefix = dataset
    c = campaign.compare_weights(out1 / "weights.npz", out1 / "weights.npz", dataset=ds,
                                 splits=prefix, protocol={"max_chains": 2, "min_length": 10})
    assert c["better"] is False and c["scores"]["candidate"]["profile"]["num_chains"] == 2
    assert c["scores"]["candidate"] == c["scores"]["current"]
    assert "keep the current weights" in campaign.format_comparison(c)
    _, _, meta = weights_io.load_weights(out1 / "weights.npz")
    assert meta["evaluation_data"]["path"] == str(ds)  # evaluate finds the real dataset


def test_job_refuses_a_cosine_schedule(dataset, tmp_path):
    d = _campaign(tmp_path, dataset)
    campaign.make_packs(d, 0, tmp_path / "carry")
    with pytest.raises(Exception, match="schedule: constant"):
        campaign.run_job(d, sorted((tmp_path / "carry").glob("*.fldpack")), tmp_path / "o", 30,
                         progress=False)


def test_batch_size_suggestion():
    """The batch doubles while the scaled peak stays under 70% of the device; a batch that
    overfills is halved; no memory figures, no suggestion."""
    assert campaign.suggest_batch_size(8, {"peak_bytes_in_use": 10.0, "bytes_limit": 80.0},
                                       64) == 32
    assert campaign.suggest_batch_size(8, {"peak_bytes_in_use": 10.0, "bytes_limit": 80.0},
                                       16) == 16
    assert campaign.suggest_batch_size(8, {"peak_bytes_in_use": 79.0, "bytes_limit": 80.0},
                                       64) == 4
    assert campaign.suggest_batch_size(8, {}, 64) is None
    jobs = [{"hardware": {"device_kind": "NVIDIA H100 80GB HBM3"}, "suggested_batch_size": 32},
            {"hardware": {"device_kind": "NVIDIA H200"}, "suggested_batch_size": 16}]
    assert campaign._batch_for(jobs, "NVIDIA H100 80GB HBM3") == 32
    assert campaign._batch_for(jobs, "cpu") is None
