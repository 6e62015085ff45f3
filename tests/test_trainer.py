"""The trainer: config, checkpoints, exact resume, non-finite steps, signals, the CLI, and data
parallelism (2 forced CPU devices, and 2 processes through jax.distributed) against 1 device.

Every trainer here uses the same tiny config, so the jitted step compiles once per process."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import optax
import pytest

from foldlite.config import CONFIGS_DIR
from foldlite.errors import ConfigError, InputError
from foldlite.model import weights_io
from foldlite.train import checkpoint as ck
from foldlite.train.config import load_train_config

from conftest import write_tiny_dataset

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / "data"


pytestmark = pytest.mark.usefixtures("fast_compile")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_tiny_dataset(tmp_path_factory.mktemp("data"))


def overrides(dataset, log_dir, *extra):
    ds, prefix = dataset
    return [f"data.path={ds}", f"data.splits={prefix}", f"log_dir={log_dir}", *extra]


def tiny_cfg(dataset, log_dir, *extra):
    return load_train_config("tiny", overrides(dataset, log_dir, *extra))


def params_of(path: Path, template):
    state, _ = ck.load_checkpoint(path, template)
    return state


def read_log(run_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def assert_trees_close(a, b, atol=0.0, rtol=0.0):
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=atol, rtol=rtol)


# --------------------------------------------------------------------------------------------
# Config and checkpoint files

def test_config_errors(dataset, tmp_path):
    with pytest.raises(ConfigError, match="unknown key"):
        tiny_cfg(dataset, tmp_path, "bogus=1")
    with pytest.raises(ConfigError, match="unknown key"):
        tiny_cfg(dataset, tmp_path, "optimizer.lr=1")
    with pytest.raises(ConfigError):
        tiny_cfg(dataset, tmp_path, "data.batch_size=zero")
    with pytest.raises(ConfigError, match="profile_dropout"):
        tiny_cfg(dataset, tmp_path, "data.profile_dropout=2")
    cfg = tiny_cfg(dataset, tmp_path, "optimizer.learning_rate=3.0e-4")
    assert cfg.optimizer.learning_rate == 3e-4 and cfg.run_dir() == tmp_path
    small = load_train_config("small")
    assert small.model == "small" and len(small.loss.stages) >= 2


def test_weights_and_checkpoint_files(tmp_path):
    from foldlite.model.config import load_model_config
    params = {"foldlite/~/trunk/block's": {"w": np.arange(6, dtype=np.float32).reshape(2, 3)},
              "foldlite/heads": {"b": np.ones(4, np.float32), "w": np.zeros((4, 2), np.float32)}}
    mcfg = load_model_config("tiny")
    weights_io.save_weights(tmp_path / "w.npz", params, mcfg, {"steps": 3})
    p2, mcfg2, meta = weights_io.load_weights(tmp_path / "w.npz")
    assert mcfg2 == mcfg and meta == {"steps": 3}
    assert_trees_close(params, p2)
    assert jax.tree_util.tree_structure(params) == jax.tree_util.tree_structure(p2)
    weights_io.save_weights(tmp_path / "h.npz", params, mcfg, dtype=np.float16)
    assert weights_io.load_weights(tmp_path / "h.npz")[0]["foldlite/heads"]["b"].dtype == np.float32
    # a pickled object array is refused
    np.savez(tmp_path / "bad.npz", x=np.array([{"a": 1}], dtype=object))
    with pytest.raises(InputError):
        weights_io.load_weights(tmp_path / "bad.npz")

    opt = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(1e-3))
    state = ck.TrainState(params=params, opt_state=opt.init(params), ema_params=params,
                          step=np.int32(5), rng=np.array([1, 2], np.uint32))
    mgr = ck.CheckpointManager(tmp_path / "ckpt", keep=2)
    for s in (5, 6, 7):
        mgr.save(ck.TrainState(state.params, state.opt_state, state.ema_params,
                               np.int32(s), state.rng))
    assert mgr.steps() == [6, 7] and not list((tmp_path / "ckpt").glob(".*tmp"))
    loaded, _ = ck.load_checkpoint(mgr.latest(), state)
    assert int(loaded.step) == 7
    assert jax.tree_util.tree_structure(loaded.opt_state) == \
        jax.tree_util.tree_structure(state.opt_state)
    bad = dict(params, extra={"w": np.zeros(1, np.float32)})
    bad_state = ck.TrainState(bad, opt.init(bad), bad, np.int32(0), state.rng)
    with pytest.raises(InputError, match="do not match"):
        ck.load_checkpoint(mgr.latest(), bad_state)


# --------------------------------------------------------------------------------------------
# Training in this process

def test_resume_is_exact(dataset, tmp_path):
    """4 steps straight == 2 steps, stop, resume, 2 steps (data order, optimiser, RNG, EMA)."""
    from foldlite.train.trainer import Trainer

    a = Trainer(tiny_cfg(dataset, tmp_path / "a"), progress=False)
    res_a = a.train()
    assert res_a.stopped == "done" and res_a.step == 4
    b_cfg = tiny_cfg(dataset, tmp_path / "b")
    res_b1 = Trainer(b_cfg, progress=False).train(until_step=2)
    assert res_b1.stopped == "until" and res_b1.step == 2
    res_b2 = Trainer(b_cfg, resume=True, progress=False).train()
    assert res_b2.step == 4
    template = a.state_template()
    sa = params_of(tmp_path / "a" / "checkpoints" / "ckpt_00000004.npz", template)
    sb = params_of(tmp_path / "b" / "checkpoints" / "ckpt_00000004.npz", template)
    for field in ("params", "opt_state", "ema_params", "rng"):
        assert_trees_close(getattr(sa, field), getattr(sb, field), atol=1e-7)
    assert not np.allclose(np.asarray(jax.tree_util.tree_leaves(sa.params)[0]),
                           np.asarray(jax.tree_util.tree_leaves(a.initial_state().params)[0]))
    log = read_log(tmp_path / "a")
    train = [r for r in log if r["kind"] == "train"]
    assert [r["step"] for r in train] == [2, 4]
    assert all(np.isfinite(r["loss"]) for r in train)
    for k in ("fape", "sidechain_fape", "chi", "distogram", "plddt", "pae", "ss", "clash",
              "lddt_ca", "grad_norm", "lr", "steps_per_second"):
        assert k in train[-1], k
    evals = [r for r in log if r["kind"] == "eval"]
    assert evals and {"lddt_ca", "tm_score", "gdt_ts", "rmsd"} <= set(evals[-1])
    # final EMA weights, loadable by the predictor
    params, mcfg, meta = weights_io.load_weights(tmp_path / "a" / "weights.npz")
    assert meta["step"] == 4 and mcfg == a.model_cfg
    assert_trees_close(params, sa.ema_params)
    # the EMA warms up: after 4 steps it is nearer the trained parameters than the initial ones
    def dist(x, y):
        return sum(float(np.sum((np.asarray(u) - np.asarray(v)) ** 2)) for u, v in
                   zip(jax.tree_util.tree_leaves(x), jax.tree_util.tree_leaves(y)))
    init = a.initial_state().params
    assert dist(sa.ema_params, sa.params) < dist(sa.ema_params, init)


class _BadData:
    """Wraps TrainingData; NaN coordinates at the given steps; SIGTERM at another."""

    def __init__(self, inner, nan_steps=(), sigterm_step=None):
        self.inner, self.nan_steps, self.sigterm_step = inner, set(nan_steps), sigterm_step

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def batch(self, step, pi=0, pc=1):
        b = self.inner.batch(step, pi, pc)
        if step in self.nan_steps or (self.nan_steps and step >= max(self.nan_steps)):
            b = dict(b, atom37=np.full_like(b["atom37"], np.nan))
        if step == self.sigterm_step:
            os.kill(os.getpid(), signal.SIGTERM)
        return b


def test_nonfinite_steps_are_skipped_then_stop(dataset, tmp_path):
    from foldlite.train.batches import TrainingData
    from foldlite.train.trainer import Trainer, TrainingError

    cfg = tiny_cfg(dataset, tmp_path, "max_nonfinite=2")
    # step 0 bad, step 1 good, steps 2 and 3 bad: 2 in a row stop the run
    data = _BadData(TrainingData(cfg), nan_steps={0, 2})
    tr = Trainer(cfg, progress=False, data=data)
    with pytest.raises(TrainingError, match="non-finite"):
        tr.train()
    log = read_log(tmp_path)
    bad = [r["step"] for r in log if r["kind"] == "nonfinite"]
    assert bad == [1, 3, 4]
    stop = [r for r in log if r["kind"] == "stop"][-1]
    assert stop["reason"] == "nonfinite" and stop["step"] == 4
    state, _ = ck.load_checkpoint(ck.CheckpointManager(tmp_path / "checkpoints").latest(),
                                  tr.state_template())
    assert all(np.all(np.isfinite(x)) for x in jax.tree_util.tree_leaves(state.params))
    assert all(np.all(np.isfinite(x)) for x in jax.tree_util.tree_leaves(state.opt_state))


def test_sigterm_writes_checkpoint(dataset, tmp_path, capsys):
    from foldlite.train.batches import TrainingData
    from foldlite.train.trainer import Trainer

    cfg = tiny_cfg(dataset, tmp_path)
    old = signal.getsignal(signal.SIGTERM)
    tr = Trainer(cfg, progress=False, data=_BadData(TrainingData(cfg), sigterm_step=1))
    res = tr.train()
    # the signal comes while the batch of step 1 is read; that is done on a thread during step 0
    # (prefetch), so the run stops after step 0 or, if the read came late, after step 1
    assert res.stopped == "signal" and res.step in (1, 2)
    assert ck.CheckpointManager(tmp_path / "checkpoints").steps() == [res.step]
    assert signal.getsignal(signal.SIGTERM) is old  # handler restored
    # a newer checkpoint damaged by a crash is skipped, by name (issue 16, item 6)
    damaged = ck.CheckpointManager(tmp_path / "checkpoints").path(res.step + 5)
    damaged.write_bytes(b"PK\x03\x04 truncated")
    capsys.readouterr()
    res2 = Trainer(cfg, resume=True, progress=False).train(until_step=3)
    assert res2.step == 3 and res2.stopped == "until"
    err = capsys.readouterr().err
    assert f"skipping a damaged checkpoint: {damaged}" in err and "Traceback" not in err
    assert f"newest intact checkpoint {damaged.parent / f'ckpt_{res.step:08d}.npz'}" in err


def test_cli_train_then_evaluate(dataset, tmp_path, capsys):
    from foldlite.cli import main

    run_dir = tmp_path / "run"
    argv = ["train", "--config", str(CONFIGS_DIR / "train" / "tiny.yaml"), "--no-progress"]
    for o in overrides(dataset, run_dir):
        argv += ["--set", o]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["step"] == 4 and Path(out["weights"]).is_file()
    assert main(["train", "--config", "tiny", "--set", "nonsense=1"]) == 2
    assert "unknown key" in capsys.readouterr().err

    ev = tmp_path / "eval"
    assert main(["evaluate", "--weights", out["weights"], "--split", "test", "--min-length", "10",
                 "--out", str(ev)]) == 0
    summary = json.loads((ev / "evaluation.json").read_text())
    assert summary["num_chains"] == 2 and summary["dataset"] == str(dataset[0])
    assert [c["chain_id"] for c in summary["chains"]] == ["T5_A", "T4_A"]
    assert set(summary["mean"]) == {"model", "helix", "random_walk"}
    rows = (ev / "evaluation.csv").read_text().splitlines()
    assert len(rows) == 1 + 2 * 3


# --------------------------------------------------------------------------------------------
# Devices and processes

def _child_env(**extra):
    """Environment of a child training process: CPU only."""
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)
    env.update(JAX_PLATFORMS="cpu", FOLDLITE_FAST_COMPILE="1",
               PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""), **extra)
    return env


def _seed_run(src: Path, dst: Path) -> None:
    (dst / "checkpoints").mkdir(parents=True)
    shutil.copy(src / "checkpoints" / "ckpt_00000000.npz", dst / "checkpoints")


def _train_args(dataset, run_dir):
    argv = [sys.executable, "-m", "foldlite", "train", "--config", "tiny", "--resume",
            "--until-step", "2", "--no-progress"]
    for o in overrides(dataset, run_dir, "log_interval=1"):
        argv += ["--set", o]
    return argv


@pytest.fixture(scope="module")
def one_device_reference(dataset, tmp_path_factory):
    """Step-0 checkpoint and the 1-device result of 2 steps from it."""
    from foldlite.train.trainer import Trainer

    root = tmp_path_factory.mktemp("ref")
    cfg = tiny_cfg(dataset, root / "ref", "log_interval=1")
    tr = Trainer(cfg, progress=False)
    ck.CheckpointManager(root / "ref" / "checkpoints").save(tr.initial_state())
    seed = root / "seed"
    _seed_run(root / "ref", seed)
    Trainer(cfg, resume=True, progress=False).train(until_step=2)
    state = params_of(root / "ref" / "checkpoints" / "ckpt_00000002.npz", tr.state_template())
    losses = [r["loss"] for r in read_log(root / "ref") if r["kind"] == "train"]
    return seed, state, losses, tr.state_template()


def _compare_with_reference(run_dir, reference):
    _, ref_state, ref_losses, template = reference
    state = params_of(run_dir / "checkpoints" / "ckpt_00000002.npz", template)
    losses = [r["loss"] for r in read_log(run_dir) if r["kind"] == "train"]
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
    assert_trees_close(state.params, ref_state.params, atol=2e-5, rtol=1e-4)
    assert_trees_close(state.ema_params, ref_state.ema_params, atol=2e-5, rtol=1e-4)


def test_two_devices_match_one(dataset, tmp_path, one_device_reference):
    run_dir = tmp_path / "two"
    _seed_run(one_device_reference[0], run_dir)
    env = _child_env(XLA_FLAGS="--xla_force_host_platform_device_count=2")
    proc = subprocess.run(_train_args(dataset, run_dir), env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    start = [r for r in read_log(run_dir) if r["kind"] == "start"][0]
    assert start["devices"] == 2 and start["processes"] == 1
    _compare_with_reference(run_dir, one_device_reference)


@pytest.mark.skipif(not os.environ.get("FOLDLITE_TEST_MULTIPROCESS"),
                    reason="2-process jax.distributed run (two more compilations, ~1 min on 2 "
                           "cores); set FOLDLITE_TEST_MULTIPROCESS=1 to run it")
def test_two_processes_match_one(dataset, tmp_path, one_device_reference):
    """Multi-host path: ``scripts/train.py --local-processes 2`` (1 CPU device per process,
    jax.distributed with gloo collectives) trains exactly like one device."""
    run_dir = tmp_path / "mp"
    _seed_run(one_device_reference[0], run_dir)
    argv = _train_args(dataset, run_dir)
    argv = [sys.executable, str(REPO / "scripts" / "train.py"), "--local-processes", "2",
            *argv[argv.index("train") + 1:]]
    proc = subprocess.run(argv, env=_child_env(), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    start = [r for r in read_log(run_dir) if r["kind"] == "start"][0]
    assert start["devices"] == 2 and start["processes"] == 2
    _compare_with_reference(run_dir, one_device_reference)


# --------------------------------------------------------------------------------------------
# Schedule, optimiser, time budget and fine-tuning

def test_host_schedule_and_optimizer_match_optax(dataset, tmp_path):
    """The host-side learning rate equals optax's warm-up cosine schedule (and optax's linear
    warm-up then constant for ``schedule: constant``), and the optimiser with the update scaled
    by -lr is AdamW."""
    from foldlite.train.trainer import learning_rate_at, make_optimizer

    cfg = tiny_cfg(dataset, tmp_path, "steps=50", "optimizer.warmup_steps=7")
    o = cfg.optimizer
    sched = optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=o.learning_rate, warmup_steps=7, decay_steps=50,
        end_value=o.learning_rate * o.end_lr_fraction)
    for s in [0, 1, 3, 6, 7, 8, 20, 49, 50, 60]:
        assert learning_rate_at(cfg, s) == pytest.approx(float(sched(s)), rel=1e-5, abs=1e-9)
    const = tiny_cfg(dataset, tmp_path, "steps=50", "optimizer.warmup_steps=7",
                     "optimizer.schedule=constant")
    ref = optax.join_schedules([optax.linear_schedule(0.0, o.learning_rate, 7),
                                optax.constant_schedule(o.learning_rate)], [7])
    for s in [0, 1, 3, 6, 7, 8, 20, 49, 50, 60, 10**6]:
        assert learning_rate_at(const, s) == pytest.approx(float(ref(s)), rel=1e-5, abs=1e-9)
    rng = np.random.default_rng(0)
    params = {"a": rng.normal(size=(3, 4)).astype(np.float32),
              "b": rng.normal(size=5).astype(np.float32)}
    o = cfg.optimizer
    ref = optax.chain(optax.clip_by_global_norm(o.grad_clip_norm),
                      optax.adamw(sched, b1=o.b1, b2=o.b2, eps=o.eps,
                                  weight_decay=o.weight_decay))
    mine = make_optimizer(cfg)
    sr, sm, pr, pm = ref.init(params), mine.init(params), params, params
    for s in range(10):
        g = jax.tree_util.tree_map(lambda x: rng.normal(size=x.shape).astype(np.float32), params)
        ur, sr = ref.update(g, sr, pr)
        um, sm = mine.update(g, sm, pm)
        lr = learning_rate_at(cfg, s)
        pr = optax.apply_updates(pr, ur)
        pm = optax.apply_updates(pm, jax.tree_util.tree_map(lambda u: -lr * u, um))
    assert_trees_close(pr, pm, atol=1e-6)


def test_time_budget_fits_schedule_and_init_weights(dataset, tmp_path):
    """--time-budget sets the run's length from the measured speed so the schedule and the
    loss stages fit; --init-weights starts a fresh optimiser from a weights file."""
    from foldlite.train.config import LossStage
    from foldlite.train.trainer import Trainer, learning_rate_at

    # fine-tuning from the weights of a 4-step run
    a = Trainer(tiny_cfg(dataset, tmp_path / "a"), progress=False)
    a.train()
    w = tmp_path / "a" / "weights.npz"
    params, _, _ = weights_io.load_weights(w)
    cfg = tiny_cfg(dataset, tmp_path / "b", "steps=100000", "checkpoint.interval=100000",
                   "log_interval=1000")
    tr = Trainer(cfg, progress=False, init_weights=w)
    init = tr._load_or_init()
    assert int(init.step) == 0
    assert_trees_close(init.params, params)
    assert_trees_close(init.ema_params, params)
    assert all(float(np.max(np.abs(x))) == 0.0 for x in jax.tree_util.tree_leaves(
        init.opt_state) if np.ndim(x) > 0)  # fresh Adam moments

    # plan_budget rescales the stages still to come
    two = dataclasses.replace(cfg.loss, stages=(cfg.loss.stages[0],
                                                LossStage(80000, cfg.loss.stages[0].weights)))
    tr2 = Trainer(dataclasses.replace(cfg, loss=two), progress=False)
    tr2.plan_budget(30, 200)
    assert tr2.cfg.steps == 200 and [s.start_step for s in tr2.cfg.loss.stages] == [0, 160]

    res = tr.train(time_budget=15.0)
    log = read_log(tmp_path / "b")
    plan = [r for r in log if r["kind"] == "plan"]
    assert len(plan) == 1 and plan[0]["steps"] == tr.cfg.steps < 100000
    assert res.stopped in ("done", "time") and res.weights_path is not None
    assert res.step >= 0.8 * tr.cfg.steps  # the run went (nearly) to the planned end
    if res.stopped == "done":
        assert learning_rate_at(tr.cfg, res.step - 1) < 0.12 * cfg.optimizer.learning_rate
    with pytest.raises(ConfigError, match="different model"):
        Trainer(load_train_config("small", overrides(dataset, tmp_path / "c")),
                progress=False, init_weights=w)._load_or_init()


def test_checkpoints_at_their_interval_whatever_the_log_interval(dataset, tmp_path):
    """The loop reads metrics only every log_interval steps; checkpoints still come at every
    multiple of checkpoint.interval."""
    from foldlite.train.trainer import Trainer

    cfg = tiny_cfg(dataset, tmp_path, "log_interval=3", "checkpoint.interval=2",
                   "checkpoint.keep=5", "steps=4")
    Trainer(cfg, progress=False).train()
    assert ck.CheckpointManager(tmp_path / "checkpoints").steps() == [2, 4]
