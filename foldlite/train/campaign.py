"""A training campaign: one long run made of short accelerator jobs that continue each other.

Accelerators come to this project as short jobs (one GPU for ~10 minutes, no network, a 64 MiB
upload, at most 8 result files of 16 MiB). A campaign turns a sequence of such jobs into one
training run. It lives in the repository, in one folder (``campaign/``):

    campaign.yaml   the definition (``CampaignConfig``): training config, starting weights,
                    data shards, time reserve
    state/          the full training state after the last job, written by
                    ``checkpoint.save_state_parts`` (params, optimiser moments, EMA: one
                    pickle-free .npz each; ``state.json``: step, PRNG key, campaign progress)
    jobs.jsonl      one record per job: hardware, steps, times, throughput, losses, validation

A job (``foldlite campaign job``, run by ``scripts/accelerator_job.sh``) unpacks the carried
packs into a dataset, continues the state (the first job starts from ``init_weights`` with a
fresh optimiser), trains until its deadline less ``reserve_seconds`` (the training config's
learning rate is a warm-up then constant, so the pieces join into one run and the EMA averages
across them), writes the new state into ``OUT/state`` at once, then evaluates the EMA weights on
the validation chains and writes ``OUT/weights.npz``, ``OUT/metrics.jsonl``, ``OUT/job.json``
and ``OUT/report.md``. Back here, ``foldlite campaign adopt OUT`` checks that OUT continues the
committed state and puts it in ``campaign/state``, appending the job to ``jobs.jsonl``.

Data (``foldlite campaign pack --job N``): the training split's clusters are dealt to
``shards`` shards by a permutation seeded by ``seed``; job N trains on shard ``N mod shards``,
one member of each of its clusters picked by ``(seed, N // shards)``, so every ``shards``
consecutive jobs cover every training cluster and later rounds see other members. The first
``valid_chains`` validation chains go in a separate pack that is only evaluated on; test chains
never leave this machine.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Sequence

import jax
import numpy as np

from foldlite import fileio
from foldlite.config import load_config, to_dict
from foldlite.data import pack as packs
from foldlite.data.dataset import Dataset
from foldlite.data.splits import read_clusters, read_split, resolve_splits_prefix
from foldlite.errors import ConfigError, InputError
from foldlite.model.inference import Predictor
from foldlite.model.weights_io import load_weights, save_weights
from foldlite.train.checkpoint import load_state_parts, save_state_parts
from foldlite.train.config import load_train_config
from foldlite.train.evaluate import evaluate_examples, examples_from_dataset
from foldlite.train.devices import to_host
from foldlite.train.step import learning_rate_at
from foldlite.train.trainer import Trainer

REPO = Path(__file__).resolve().parents[2]


@dataclasses.dataclass(frozen=True)
class CampaignConfig:
    """``campaign.yaml``: what the campaign trains and on which data."""

    name: str
    train_config: str                 # training config: a name or a path (relative: to the repo)
    init_weights: str | None          # weights the first job starts from (relative: to the
    #                                   repo; null: a random initialisation)
    dataset: str = "~/.cache/foldlite/promod3"   # where `pack` reads chains (this machine)
    splits: str = "promod3"           # split set: a shipped name or a prefix (relative: repo)
    shards: int = 5                   # training clusters are dealt to this many job shards
    seed: int = 0
    min_length: int = 40              # training chains packed: min_length..max_length residues
    max_length: int = 600
    valid_chains: int = 32            # validation chains packed (first in split order)
    valid_max_length: int = 256
    reserve_seconds: float = 75.0     # kept at the end of a job for saving and evaluating
    auto_batch: bool = True           # size the batch from the last job's peak memory on the
    #                                   same kind of device (see suggest_batch_size)
    max_batch_size: int = 64


def _repo_path(p: str) -> Path:
    path = Path(os.path.expanduser(p))
    return path if path.is_absolute() else REPO / path


def _splits_prefix(ccfg: CampaignConfig) -> Path:
    """The prefix of the campaign's split files: a shipped split set, or a path (relative: to
    the repo)."""
    prefix = resolve_splits_prefix(ccfg.splits)
    return prefix if prefix.is_absolute() else _repo_path(str(prefix))


def load_campaign(directory: str | os.PathLike) -> CampaignConfig:
    cfg = load_config(CampaignConfig, Path(directory) / "campaign.yaml", ())
    if cfg.shards < 1 or cfg.valid_chains < 1 or cfg.reserve_seconds < 0:
        raise ConfigError(f"{directory}/campaign.yaml: shards and valid_chains must be >= 1, "
                          "reserve_seconds >= 0")
    return cfg


def read_jobs(directory: str | os.PathLike) -> list[dict]:
    path = Path(directory) / "jobs.jsonl"
    if not path.is_file():
        return []
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------

def shard_chains(ccfg: CampaignConfig, dataset: Dataset, job: int) -> list[str]:
    """Chain ids of the training shard of job ``job`` (see the module docstring)."""
    prefix = _splits_prefix(ccfg)
    train = read_split(f"{prefix}_train.txt")
    cpath = Path(f"{prefix}_clusters.tsv")
    clusters = read_clusters(cpath) if cpath.is_file() else {}  # none: a chain is a cluster
    members: dict[str, list[str]] = {}
    for cid in train:
        if cid in dataset and ccfg.min_length <= dataset.lengths[dataset.index(cid)] \
                <= ccfg.max_length:
            members.setdefault(clusters.get(cid, cid), []).append(cid)
    keys = sorted(members)
    order = np.random.default_rng(ccfg.seed).permutation(len(keys))
    mine = sorted(keys[i] for i in order[job % ccfg.shards::ccfg.shards])
    rng = np.random.default_rng([ccfg.seed, job // ccfg.shards])
    return [members[k][int(rng.integers(len(members[k])))] for k in mine]


def valid_chains(ccfg: CampaignConfig, dataset: Dataset) -> list[str]:
    """The validation chains a job evaluates on: the first ``valid_chains`` of the validation
    split with ``min_length..valid_max_length`` residues (the order ``TrainingData`` uses)."""
    out = []
    for cid in read_split(f"{_splits_prefix(ccfg)}_valid.txt"):
        if cid in dataset and ccfg.min_length <= dataset.lengths[dataset.index(cid)] \
                <= ccfg.valid_max_length:
            out.append(cid)
        if len(out) == ccfg.valid_chains:
            break
    return out


def make_packs(campaign_dir: str | os.PathLike, job: int, out_dir: str | os.PathLike) -> dict:
    """Write ``train-job{N}.fldpack`` and ``valid.fldpack`` for job ``job`` into ``out_dir``
    (other packs there are removed, so a carried folder holds one job's data)."""
    ccfg = load_campaign(campaign_dir)
    dataset = Dataset(_repo_path(ccfg.dataset))
    train = shard_chains(ccfg, dataset, job)
    valid = valid_chains(ccfg, dataset)
    prefix = _splits_prefix(ccfg)
    held_out = set(read_split(f"{prefix}_valid.txt")) | set(read_split(f"{prefix}_test.txt"))
    leak = sorted(set(train) & held_out)
    if leak:
        raise InputError(f"training shard of job {job} holds validation/test chains {leak[:5]}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob(f"*{packs.SUFFIX}"):
        old.unlink()
    meta = {"campaign": ccfg.name, "job": job, "shard": job % ccfg.shards,
            "round": job // ccfg.shards, "source": str(dataset.path)}
    stats = {"train": packs.write_pack(out / f"train-job{job}{packs.SUFFIX}",
                                       (dataset[c] for c in train), split="train", meta=meta),
             "valid": packs.write_pack(out / f"valid{packs.SUFFIX}",
                                       (dataset[c] for c in valid), split="valid",
                                       meta={"campaign": ccfg.name})}
    return stats


# --------------------------------------------------------------------------------------------
# A job
# --------------------------------------------------------------------------------------------

def _job_train_config(ccfg: CampaignConfig, data_path: Path, run_dir: Path,
                      overrides: Sequence[str]):
    """The campaign's training config pointed at the unpacked data; no checkpoints or
    evaluations inside the loop (the job saves and evaluates around it)."""
    name = ccfg.train_config
    src = _repo_path(name) if name.endswith((".yaml", ".yml")) else name
    fixed = [f"data.path={data_path}", "data.splits=null", "data.train_split=train",
             "data.valid_split=valid", "data.cluster_weighting=false", f"log_dir={run_dir}",
             "steps=1000000000", "evaluation.interval=0",
             f"evaluation.num_chains={ccfg.valid_chains}",
             f"evaluation.max_length={ccfg.valid_max_length}",
             "checkpoint.interval=1000000000"]
    cfg = load_train_config(src, [*fixed, *overrides])
    if cfg.optimizer.schedule != "constant":
        raise ConfigError(f"{name}: a campaign needs optimizer.schedule: constant (its jobs "
                          "continue one run whose length is not known in advance)")
    return cfg


def _device_memory() -> dict:
    stats = jax.devices()[0].memory_stats() or {}
    return {k: round(stats[k] / 2**30, 2) for k in ("peak_bytes_in_use", "bytes_limit")
            if k in stats}


def suggest_batch_size(batch_size: int, memory_gib: dict, max_batch_size: int,
                       fill: float = 0.7) -> int | None:
    """The batch for the next job on this kind of device: ``batch_size`` doubled while the
    training's peak memory, scaled with the batch, stays under ``fill`` of the device's memory
    (activations dominate and grow with the batch); None where the device reports no memory."""
    peak, limit = memory_gib.get("peak_bytes_in_use"), memory_gib.get("bytes_limit")
    if not peak or not limit:
        return None
    b = batch_size
    while 2 * b <= max_batch_size and peak * 2 * b / batch_size <= fill * limit:
        b *= 2
    while b > 1 and peak * b / batch_size > 0.95 * limit:
        b //= 2
    return b


def _batch_for(jobs: list[dict], device_kind: str) -> int | None:
    """The batch the last job on ``device_kind`` suggested, if any."""
    for r in reversed(jobs):
        if r["hardware"].get("device_kind") == device_kind and r.get("suggested_batch_size"):
            return int(r["suggested_batch_size"])
    return None


def _train_means(log: list[dict], first: bool) -> dict:
    recs = [r for r in log if r.get("kind") == "train"]
    if not recs:
        return {}
    r = recs[0] if first else recs[-1]
    return {k: round(r[k], 4) for k in ("step", "loss", "fape", "distogram", "lddt_ca")
            if k in r}


def run_job(campaign_dir: str | os.PathLike, pack_paths: Sequence[str | os.PathLike],
            out_dir: str | os.PathLike, budget_s: float, *, overrides: Sequence[str] = (),
            progress: bool = True, started: float | None = None) -> dict:
    """Run one job of the campaign in ``campaign_dir`` within ``budget_s`` seconds of
    ``started`` (default: now); results in ``out_dir``. Returns the job record."""
    t0 = time.time() if started is None else started
    deadline = t0 + budget_s
    campaign_dir = Path(campaign_dir)
    ccfg = load_campaign(campaign_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fileio.write_text(out / ".probe", "")
    (out / ".probe").unlink()
    jobs = read_jobs(campaign_dir)
    job = len(jobs)
    work = Path(tempfile.mkdtemp(prefix="foldlite-job-"))
    try:
        data_path = packs.unpack(pack_paths, work / "data")
        pack_meta = [m for m in Dataset(data_path).manifest.get("packs", [])
                     if m.get("split") == "train"]
        auto = _batch_for(jobs, jax.devices()[0].device_kind) if ccfg.auto_batch else None
        overrides = [*([f"data.batch_size={auto}"] if auto else []), *overrides]
        cfg = _job_train_config(ccfg, data_path, work / "run", overrides)
        first = not (campaign_dir / "state").is_dir()
        trainer = Trainer(cfg, progress=progress,
                          init_weights=_repo_path(ccfg.init_weights)
                          if first and ccfg.init_weights else None)
        start_state = None
        if not first:
            start_state, extra = load_state_parts(campaign_dir / "state",
                                                  trainer.state_template())
            if extra.get("campaign") != ccfg.name or extra.get("jobs") != job:
                raise InputError(f"{campaign_dir}/state: belongs to campaign "
                                 f"{extra.get('campaign')!r} after {extra.get('jobs')} jobs, "
                                 f"but campaign.yaml says {ccfg.name!r} and jobs.jsonl has "
                                 f"{job} jobs")
            trainer.start_state = start_state
        step_from = int(start_state.step) if start_state is not None else 0
        t_setup = time.time() - t0
        limit = deadline - ccfg.reserve_seconds - time.time()
        if limit < 10:
            raise ConfigError(f"job budget {budget_s:.0f} s leaves {limit:.0f} s to train after "
                              f"{t_setup:.0f} s of set-up and a reserve of "
                              f"{ccfg.reserve_seconds:.0f} s")
        t_train = time.time()
        result = trainer.train(time_limit=limit)
        t_train = time.time() - t_train
        memory = _device_memory()  # the training's peak, before the evaluation's
        state = to_host(trainer.state)
        progress_rec = {"campaign": ccfg.name, "jobs": job + 1}
        save_state_parts(out / "state", state, extra=progress_rec)
        t_eval = time.time()
        valid = trainer.evaluate(trainer.state, deadline=deadline - 10)
        t_eval = time.time() - t_eval
        log = [json.loads(x) for x in (work / "run" / "metrics.jsonl").read_text().splitlines()]
        first = next((r for r in log if r.get("kind") == "first_step"), {})
        stop = next((r for r in reversed(log) if r.get("kind") == "stop"), {})
        record = {
            "job": job, "campaign": ccfg.name, "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "hardware": trainer.hardware(), "packs": pack_meta,
            "step_from": step_from, "step_to": int(result.step),
            "steps": int(result.step) - step_from, "stopped": result.stopped,
            "batch_size": cfg.data.batch_size, "crop_size": cfg.data.crop_size,
            "learning_rate": learning_rate_at(cfg, int(result.step)),
            "compute_dtype": trainer.step_model_cfg.dtype,
            "seconds": {"setup": round(t_setup, 1),
                        "compile_and_first_step": round(first.get("seconds", float("nan")), 1),
                        "train": round(t_train, 1), "eval": round(t_eval, 1),
                        "total": round(time.time() - t0, 1)},
            "steps_per_second": stop.get("steps_per_second"),
            "residues_per_second": stop.get("residues_per_second"),
            "data_wait_fraction": stop.get("data_wait_fraction"),
            "device_memory_gib": memory,
            "suggested_batch_size": suggest_batch_size(cfg.data.batch_size, memory,
                                                       ccfg.max_batch_size),
            "train_first": _train_means(log, True), "train_last": _train_means(log, False),
            "valid": {k: (round(v, 4) if isinstance(v, float) else v) for k, v in valid.items()},
        }
        save_weights(out / "weights.npz", state.ema_params, trainer.model_cfg,
                     {"campaign": ccfg.name, "job": job, "step": int(result.step),
                      "train_config": to_dict(cfg), "hardware": trainer.hardware(),
                      "valid": record["valid"],
                      # what `foldlite evaluate` reads: the campaign's full dataset, not the
                      # job's unpacked shard
                      "evaluation_data": {"path": ccfg.dataset,
                                          "splits": str(_splits_prefix(ccfg))}})
        shutil.copyfile(work / "run" / "metrics.jsonl", out / "metrics.jsonl")
        fileio.write_json(out / "job.json", record)
        fileio.write_text(out / "report.md", job_report(record))
        return record
    finally:
        shutil.rmtree(work, ignore_errors=True)


def job_report(r: dict) -> str:
    """A short human-readable summary of a job record."""
    s, v, f, la = r["seconds"], r["valid"], r["train_first"], r["train_last"]
    hw = r["hardware"]
    lines = [
        f"# Campaign {r['campaign']}: job {r['job']}",
        "",
        f"- {hw.get('device_kind')} x{hw.get('devices')} ({hw.get('platform')}), {r['date']}",
        f"- steps {r['step_from']} -> {r['step_to']} ({r['steps']}; stopped: {r['stopped']}), "
        f"batch {r['batch_size']} x crop {r['crop_size']}, {r['compute_dtype']} trunk, "
        f"lr {r['learning_rate']:.2e}",
        f"- seconds: set-up {s['setup']}, compile + first step {s['compile_and_first_step']}, "
        f"training {s['train']}, evaluation {s['eval']}, total {s['total']}",
        f"- throughput: {r['steps_per_second'] or float('nan'):.2f} steps/s, "
        f"{r['residues_per_second'] or float('nan'):.0f} residues/s, waiting for data "
        f"{100 * (r['data_wait_fraction'] or 0):.1f}% of the step time",
        f"- device memory (GiB): {r['device_memory_gib'] or 'not reported'}; batch for the "
        f"next job on this device: {r['suggested_batch_size'] or 'unchanged'}",
        f"- training crops, first -> last log window: loss {f.get('loss')} -> {la.get('loss')}, "
        f"FAPE {f.get('fape')} -> {la.get('fape')}, distogram {f.get('distogram')} -> "
        f"{la.get('distogram')}, lDDT-CA {f.get('lddt_ca')} -> {la.get('lddt_ca')}",
        f"- validation ({v.get('num_chains')} chains, EMA): lDDT-CA {v.get('lddt_ca')}, "
        f"TM {v.get('tm_score')}, GDT_TS {v.get('gdt_ts')}",
        "",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Back here
# --------------------------------------------------------------------------------------------

def adopt(campaign_dir: str | os.PathLike, job_out: str | os.PathLike) -> dict:
    """Make a job's output the campaign's state: checks that it continues the committed state
    (same campaign, the next job), replaces ``state/`` and appends the job to ``jobs.jsonl``."""
    campaign_dir, job_out = Path(campaign_dir), Path(job_out)
    ccfg = load_campaign(campaign_dir)
    try:
        record = json.loads((job_out / "job.json").read_text(encoding="utf-8"))
        new = json.loads((job_out / "state" / "state.json").read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError) as e:
        raise InputError(f"{job_out}: not a complete job output ({e})") from None
    jobs = read_jobs(campaign_dir)
    old_step = jobs[-1]["step_to"] if jobs else 0
    if record.get("campaign") != ccfg.name or record.get("job") != len(jobs) \
            or record.get("step_from") != old_step \
            or new.get("extra", {}).get("jobs") != len(jobs) + 1:
        raise InputError(f"{job_out}: job {record.get('job')} of {record.get('campaign')!r} "
                         f"from step {record.get('step_from')} does not continue "
                         f"{ccfg.name!r} after {len(jobs)} jobs at step {old_step}")
    missing = [p for p in ("params.npz", "opt_state.npz", "ema_params.npz")
               if not (job_out / "state" / p).is_file()]
    if missing:
        raise InputError(f"{job_out}/state: missing {missing}")
    tmp = campaign_dir / ".state.new"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(job_out / "state", tmp)
    old = campaign_dir / ".state.old"
    shutil.rmtree(old, ignore_errors=True)
    if (campaign_dir / "state").exists():
        os.replace(campaign_dir / "state", old)
    os.replace(tmp, campaign_dir / "state")
    shutil.rmtree(old, ignore_errors=True)
    with open(campaign_dir / "jobs.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, sort_keys=True) + "\n")
    return record


def status_table(campaign_dir: str | os.PathLike) -> str:
    """One row per job (the model card's campaign table)."""
    rows = ["| job | hardware | steps | seconds (train / total) | residues/s | "
            "FAPE first -> last | valid lDDT-CA | valid TM |", "|---|---|---|---|---|---|---|---|"]
    for r in read_jobs(campaign_dir):
        f, la, v = r["train_first"], r["train_last"], r["valid"]
        rows.append(f"| {r['job']} | {r['hardware'].get('device_kind')} | {r['step_from']}-"
                    f"{r['step_to']} | {r['seconds']['train']} / {r['seconds']['total']} | "
                    f"{(r['residues_per_second'] or 0):.0f} | {f.get('fape')} -> "
                    f"{la.get('fape')} | {v.get('lddt_ca')} | {v.get('tm_score')} |")
    return "\n".join(rows)


#: The test protocol of the model card: the first 48 test chains of 50-400 residues, 3 recycles.
TEST_PROTOCOL = {"split": "test", "max_chains": 48, "min_length": 50, "max_length": 400,
                 "recycles": 3}


def compare_weights(candidate: str | os.PathLike, current: str | os.PathLike, *,
                    dataset: str | os.PathLike, splits: str | os.PathLike,
                    protocol: dict | None = None, workers: int = 0) -> dict:
    """Score ``candidate`` and ``current`` weights on the test chains of the model card's
    protocol, with and without the profile. ``better`` is True only when the candidate has the
    higher lDDT-CA and TM-score in both settings (the rule for shipping campaign weights)."""
    p = dict(TEST_PROTOCOL, **(protocol or {}))
    scores: dict[str, dict[str, dict]] = {}
    for profile in (True, False):
        examples = examples_from_dataset(dataset, p["split"], splits=str(splits),
                                         use_profile=profile, max_chains=p["max_chains"],
                                         min_length=p["min_length"], max_length=p["max_length"])
        if not examples:
            raise InputError(f"{dataset}: no {p['split']} chains within the protocol's limits")
        key = "profile" if profile else "single_sequence"
        for name, path in (("candidate", candidate), ("current", current)):
            params, model_cfg, _ = load_weights(path)
            summary = evaluate_examples(Predictor(model_cfg, params, num_recycles=p["recycles"]),
                                        examples, baselines=False, workers=workers)
            scores.setdefault(name, {})[key] = dict(summary["mean"]["model"],
                                                    num_chains=summary["num_chains"])
    better = all(scores["candidate"][k][m] > scores["current"][k][m]
                 for k in ("profile", "single_sequence") for m in ("lddt_ca", "tm_score"))
    return {"protocol": p, "scores": scores, "better": better,
            "candidate": str(candidate), "current": str(current)}


def format_comparison(c: dict) -> str:
    rows = ["| weights | setting | chains | lDDT-CA | TM | GDT_TS | RMSD |",
            "|---|---|---|---|---|---|---|"]
    for name in ("candidate", "current"):
        for key, v in c["scores"][name].items():
            rows.append(f"| {name} | {key} | {v['num_chains']} | {v['lddt_ca']:.3f} | "
                        f"{v['tm_score']:.3f} | {v['gdt_ts']:.3f} | {v['rmsd']:.1f} |")
    verdict = ("better on lDDT-CA and TM with and without the profile"
               if c["better"] else "not better on every measure: keep the current weights")
    return "\n".join(rows) + f"\n\ncandidate {c['candidate']}: {verdict}"
