"""The training loop (``Trainer``): data parallel over devices and processes, resumable,
with checkpoints, logs and validation. The command line is ``foldlite.commands.train``.

One code path from one CPU to many accelerators: the state is replicated and each global batch
sharded over a 1-D device mesh (``foldlite.train.devices``). With ``jax.distributed`` (``foldlite
train --coordinator HOST:PORT --num-processes P --process-id I``, or the environment variables
``FOLDLITE_COORDINATOR``, ``FOLDLITE_NUM_PROCESSES``, ``FOLDLITE_PROCESS_ID``) every process
reads the same config, builds the same global batch indices and loads only its own ``B / P``
examples; process 0 writes checkpoints, logs and evaluations. On CPU the collectives go through
gloo. ``python scripts/train.py --local-processes 2 ...`` runs such a job on one machine;
``tests/test_trainer.py`` checks that it trains like one device (with
``FOLDLITE_TEST_MULTIPROCESS=1``; 2 forced CPU devices in one process are checked on every run).

Every step ``s`` is a pure function of the config, the state and ``s``
(``foldlite.train.step``): the examples come from ``foldlite.data.loader.Loader.batch(s)``
(cluster-weighted sampling, crops and profile dropout seeded by ``(seed, s)``), the number of
recycles from a generator seeded by ``(seed, s)``, and every random key inside the step from
``fold_in(rng, s)``. That is what makes ``--resume`` continue exactly, and what makes 1 device
and N devices agree.

A step whose loss or gradient is not finite leaves params, optimiser state and EMA untouched,
is logged, and ``max_nonfinite`` consecutive ones stop the run. Checkpoints are written every
``checkpoint.interval`` steps, at the end, and on Ctrl-C / SIGTERM (after the current step).
The run folder (``log_dir``, default ``~/.cache/foldlite/runs/<name>``) holds ``config.yaml``,
``metrics.jsonl`` (one JSON record per line), ``checkpoints/`` and, at the end,
``weights.npz`` (the EMA weights in the format of ``foldlite.model.weights_io.save_weights``).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import yaml
from tqdm import tqdm

from foldlite import fileio
from foldlite.config import to_dict
from foldlite.data.features import Features
from foldlite.errors import ConfigError, FoldliteError
from foldlite.model import make_model
from foldlite.model.config import load_model_config
from foldlite.model.inference import Predictor, compiler_options
from foldlite.model.weights_io import load_weights, save_weights
from foldlite.train.batches import TrainingData
from foldlite.train.checkpoint import CheckpointManager, TrainState
from foldlite.train.config import LossStage, TrainConfig
from foldlite.train.evaluate import evaluate_examples
from foldlite.train.devices import DataParallel, to_host
from foldlite.train.metric_window import MetricWindow
from foldlite.train.prefetch import Prefetcher
from foldlite.train.step import (BATCH_ARRAY_KEYS, execution_model_config, init_state,
                                 learning_rate_at, make_optimizer, make_train_step,
                                 num_recycles_for_step, step_cache_key)


class TrainingError(FoldliteError):
    """Training cannot go on (e.g. repeated non-finite losses)."""

    exit_code = 1


#: Jitted functions shared by trainers of the same model and training settings in one process
#: (tests and notebooks build several trainers; compiling the step is what takes time).
_JIT_CACHE: dict[Any, Any] = {}


@dataclasses.dataclass
class TrainResult:
    """What a call of ``Trainer.train`` did."""

    step: int                      # step reached
    stopped: str                   # "done", "until", "time", "signal", "nonfinite"
    last_metrics: dict
    run_dir: Path
    weights_path: Path | None
    steps_per_second: float
    residues_per_second: float


@dataclasses.dataclass
class _Loop:
    """The state of one ``Trainer.train`` loop."""

    start: int                 # step at the start of the call
    end: int                   # step to stop at
    step: int                  # steps done
    stopped: str               # why it stops: "done", "until", "time", "signal", "nonfinite"
    planned: bool              # the run's length is final (no time budget, or fitted to it)
    t0: float                  # wall time at the start of the loop
    window: MetricWindow
    batches: Prefetcher
    bar: Any                   # tqdm progress bar


class _StopFlag:
    """Turns the first SIGINT/SIGTERM into a request to stop after the current step."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> "_StopFlag":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.signal is not None:  # a second Ctrl-C: stop now
            signal.signal(signum, self._old.get(signum, signal.SIG_DFL))
            raise KeyboardInterrupt
        self.signal = signum
        print(f"\nfoldlite train: {signal.Signals(signum).name} received; stopping after this "
              "step and writing a checkpoint (again to abort now)", file=sys.stderr)

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


class Trainer:
    """A training run of ``cfg``: model, data, sharded jitted step, checkpoints, logs.

    Args:
      cfg: the training config.
      resume: continue from the newest checkpoint in the run folder (error if there is none).
      progress: show a tqdm progress bar (process 0 only).
      data: a ``TrainingData`` (default: built from ``cfg.data``); tests may pass their own.
      init_weights: a weights ``.npz`` (``save_weights`` format, e.g. the shipped model) that a
        new run starts from: params and EMA from the file, a fresh optimiser, step 0 (fine-tuning).
        Ignored when resuming from a checkpoint.
      start_state: a complete training state (host arrays; e.g. a campaign's, see
        ``foldlite.train.campaign``) that a new run continues from: params, optimiser moments,
        EMA, step and PRNG key as they are. Ignored when resuming from a checkpoint.
    """

    def __init__(self, cfg: TrainConfig, *, resume: bool = False, progress: bool = True,
                 data: Any = None, init_weights: str | os.PathLike | None = None,
                 start_state: TrainState | None = None):
        self.cfg = cfg
        self.resume = resume
        self.progress = progress
        self.init_weights = init_weights
        self.start_state = start_state
        self.is_main = jax.process_index() == 0
        self.run_dir = cfg.run_dir()
        self.model_cfg = load_model_config(cfg.model)
        # The step runs the model as cfg.execution says (compute dtype, scanned trunk); the
        # parameters are the same, and weights files keep the model's own config.
        self.step_model_cfg = execution_model_config(self.model_cfg, cfg.execution)
        self.model = make_model(self.step_model_cfg)
        self.data = data if data is not None else TrainingData(cfg)
        self.parallel = DataParallel.create(cfg.data.batch_size)
        self.mesh = self.parallel.mesh
        self.replicated = self.parallel.replicated
        self.optimizer = make_optimizer(cfg)
        devices = self.parallel.device_ids
        opts = compiler_options()
        frozen_opts = tuple(sorted((opts or {}).items()))
        key = ("step", self.step_model_cfg, step_cache_key(cfg), devices, frozen_opts)
        if key not in _JIT_CACHE:
            _JIT_CACHE[key] = jax.jit(
                make_train_step(self.model, cfg, self.optimizer),
                static_argnums=(2,), donate_argnums=(0,),
                out_shardings=(self.replicated, self.replicated), compiler_options=opts)
        self._step_fn = _JIT_CACHE[key]
        key = ("init", self.step_model_cfg, step_cache_key(cfg), frozen_opts)
        if key not in _JIT_CACHE:
            model, optimizer = self.model, self.optimizer
            _JIT_CACHE[key] = jax.jit(lambda ex: init_state(model, cfg, ex, optimizer),
                                      compiler_options=opts)
        self._init_fn = _JIT_CACHE[key]
        self.checkpoints = CheckpointManager(self.run_dir / "checkpoints", cfg.checkpoint.keep)
        self._seconds_before = 0.0
        self._run_start: float | None = None
        self.log_path = self.run_dir / "metrics.jsonl"

    # ---------------------------------------------------------------- state
    def _example(self) -> Features:
        return jax.tree_util.tree_map(lambda x: x[0], self.data.example_features())

    def initial_state(self) -> TrainState:
        """Freshly initialised state (host numpy)."""
        return to_host(self._init_fn(self._example()))

    def state_template(self) -> TrainState:
        """Shapes and dtypes of the state (``jax.ShapeDtypeStruct`` leaves; nothing computed)."""
        return jax.eval_shape(self._init_fn, self._example())

    def _from_weights(self, path: str | os.PathLike) -> TrainState:
        """A fresh state whose params and EMA come from the weights file ``path``."""

        params, model_cfg, meta = load_weights(path)
        if model_cfg != self.model_cfg:
            raise ConfigError(f"{path}: the weights are for a different model config than "
                              f"{self.cfg.model!r}")
        state = self.state_template()  # shapes only: the model's init is not compiled
        want = jax.tree_util.tree_structure(state.params)
        if jax.tree_util.tree_structure(params) != want or any(
                np.shape(a) != np.shape(b) for a, b in zip(jax.tree_util.tree_leaves(params),
                                                          jax.tree_util.tree_leaves(state.params))):
            raise ConfigError(f"{path}: parameter names or shapes differ from model "
                              f"{self.cfg.model!r}")
        params = jax.tree_util.tree_map(lambda x: np.asarray(x, np.float32), params)
        run_key = jax.random.split(jax.random.PRNGKey(self.cfg.seed))[1]  # as init_state
        state = TrainState(params=params, opt_state=to_host(self.optimizer.init(params)),
                           ema_params=jax.tree_util.tree_map(np.copy, params),
                           step=np.zeros((), np.int32), rng=np.asarray(run_key))
        if self.is_main:
            print(f"foldlite train: initialised from {path} (trained {meta.get('step', '?')} "
                  f"steps); fresh optimiser, step 0", file=sys.stderr)
        return state

    def _load_or_init(self) -> TrainState:
        if not self.resume:
            if self.start_state is not None:
                return self.start_state
            if self.init_weights is not None:
                return self._from_weights(self.init_weights)
            return self.initial_state()
        latest, state, extra = self.checkpoints.load_latest(self.state_template())
        self._seconds_before = float(extra.get("train_seconds", 0.0))
        saved = extra.get("config")
        if saved is not None:
            mine = to_dict(self.cfg)
            differ = sorted(k for k in set(saved) | set(mine)
                            if k not in ("steps", "evaluation", "checkpoint", "log_interval",
                                         "log_dir") and saved.get(k) != mine.get(k))
            if differ and self.is_main:
                print(f"foldlite train: note: the config differs from the checkpoint's in "
                      f"{differ}", file=sys.stderr)
        if self.is_main:
            print(f"foldlite train: resumed from {latest} (step {int(state.step)})",
                  file=sys.stderr)
        return state

    # ---------------------------------------------------------------- batches
    def global_batch(self, step: int) -> dict:
        """The sharded global batch of ``step`` (this process loads its own examples)."""
        local = self.data.batch(step, jax.process_index(), jax.process_count())
        return self.parallel.shard_batch({k: local[k] for k in BATCH_ARRAY_KEYS})

    def train_step(self, state: TrainState, step: int) -> tuple[TrainState, dict]:
        """One optimiser step on the batch of ``step`` (for tests and benchmarks)."""
        batch = self.global_batch(step)
        return self.step_on(state, step, batch)

    def step_on(self, state: TrainState, step: int, batch: dict) -> tuple[TrainState, dict]:
        """One optimiser step on a global batch made by ``global_batch(step)``."""
        weights = self.cfg.loss.weights_at(step)
        recycles = jnp.asarray(num_recycles_for_step(self.cfg, step), jnp.int32)
        lr = jnp.asarray(learning_rate_at(self.cfg, step), jnp.float32)
        return self._step_fn(state, batch, weights, recycles, lr)

    # ---------------------------------------------------------------- logging
    def _log(self, record: dict) -> None:
        if not self.is_main:
            return
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, default=fileio._json_default) + "\n")

    def train_seconds(self) -> float:
        """Wall time of training so far, over every run of this run folder."""
        return self._seconds_before + (time.time() - self._run_start if self._run_start else 0)

    def hardware(self) -> dict:
        d = jax.devices()[0]
        return {"platform": d.platform, "device_kind": d.device_kind,
                "devices": jax.device_count(), "processes": jax.process_count(),
                "cpu_count": os.cpu_count()}

    def _save(self, state: TrainState) -> Path | None:
        host = to_host(state)
        if not self.is_main:
            return None
        return self.checkpoints.save(host, extra={"config": to_dict(self.cfg),
                                                  "model": to_dict(self.model_cfg),
                                                  "train_seconds": self.train_seconds(),
                                                  "hardware": self.hardware()})

    def _write_weights(self, state: TrainState, metrics: dict) -> Path | None:
        host = to_host(state.ema_params)
        if not self.is_main:
            return None
        path = self.run_dir / "weights.npz"
        meta = {"train_config": to_dict(self.cfg), "step": int(to_host(state.step)),
                "ema_decay": self.cfg.ema_decay, "train_seconds": round(self.train_seconds(), 1),
                "hardware": self.hardware(), "last_metrics": metrics}
        save_weights(path, host, self.model_cfg, meta)
        return path

    def evaluate(self, state: TrainState, deadline: float | None = None) -> dict:
        """Validation metrics on the fixed validation subset (process 0; others get {}).

        ``deadline`` (``time.time()`` value): no chain is started after it, so the metrics may
        cover fewer chains (``num_chains`` says how many)."""

        ev = self.cfg.evaluation
        params = to_host(state.ema_params if ev.use_ema else state.params)
        if not self.is_main:
            return {}
        examples = self.data.validation_examples()
        if not examples:
            return {}
        predictor = Predictor(self.model_cfg, params, num_recycles=ev.num_recycles,
                              buckets=ev.buckets)
        if deadline is not None:
            examples = itertools.takewhile(lambda _: time.time() < deadline, examples)
        summary = evaluate_examples(predictor, examples, baselines=False)
        if not summary["num_chains"]:
            return {}
        out = dict(summary["mean"]["model"], num_chains=summary["num_chains"])
        if summary["plddt_pearson_residue"] is not None:
            out["plddt_pearson"] = summary["plddt_pearson_residue"]
        return out

    # ---------------------------------------------------------------- loop
    def plan_budget(self, step: int, total: int) -> None:
        """Make the run end at ``total`` steps (``--time-budget``): the schedule and the loss
        stages yet to come are rescaled from ``cfg.steps`` to ``total`` (no recompilation: the
        learning rate is an argument of the step)."""

        cfg = self.cfg
        total = max(int(total), step + 1)
        scale = total / max(cfg.steps, 1)
        stages = tuple(s if s.start_step <= step else
                       LossStage(max(step + 1, int(round(s.start_step * scale))), s.weights)
                       for s in cfg.loss.stages)
        self.cfg = dataclasses.replace(cfg, steps=total,
                                       loss=dataclasses.replace(cfg.loss, stages=stages))

    def train(self, until_step: int | None = None, time_limit: float | None = None,
              time_budget: float | None = None) -> TrainResult:
        """Train to ``cfg.steps`` (or ``until_step``, or for ``time_limit`` seconds).

        ``time_budget``: train for about this many seconds with a complete schedule: after the
        first timed steps the run's length is set from the measured speed (``plan_budget``), so
        warm-up, cosine decay and the loss stages fit the time; the run stops at the budget in
        any case and then writes its weights.

        The host never waits for a step inside the loop: batches are prepared and put on the
        devices ``execution.prefetch`` steps ahead on threads (``Prefetcher``), the step's
        metrics stay on the device, and the host reads them only at the steps where it logs,
        checkpoints or evaluates (``MetricWindow``).
        """
        if time_budget is not None:
            time_limit = time_budget if time_limit is None else min(time_limit, time_budget)
        state, loop = self._begin(until_step, time_budget)
        with _StopFlag() as stop:
            # the batch threads start once the handler is in place (a batch read may signal);
            # a signal stops the run after the step in progress, and the first step is always
            # taken, so one that came during set-up stops it after that step
            loop.batches.schedule(loop.step, loop.end)
            while loop.step < loop.end:
                if stop.signal is not None and loop.step > loop.start:
                    loop.stopped = "signal"
                    break
                if time_limit is not None and time.time() - loop.t0 > time_limit:
                    loop.stopped = "time"
                    break
                state = self._advance(state, loop)
                if not self._read_due(loop):
                    continue
                if not self._read_metrics(loop):
                    break
                if not loop.planned and loop.window.speed_measured():
                    self._plan_from_speed(loop, time_budget, until_step)
                self._checkpoint_and_evaluate(state, loop.step)
        return self._finish(state, loop, time_budget)

    def _begin(self, until_step: int | None, time_budget: float | None
               ) -> tuple[TrainState, _Loop]:
        """Write the run folder's config, load or initialise the state on the devices, and
        set up the loop at its step (no batch is in the making yet)."""
        cfg = self.cfg
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            fileio.write_text(self.run_dir / "config.yaml",
                              yaml.safe_dump(to_dict(cfg), sort_keys=False))
        self._run_start = time.time()
        state = self.parallel.replicate(self._load_or_init())
        start = int(to_host(state.step))
        end = cfg.steps if until_step is None else min(cfg.steps, int(until_step))
        self._log({"kind": "start", "step": start, "end": end, "time": time.time(),
                   "devices": self.parallel.num_devices, "processes": jax.process_count(),
                   "platform": jax.devices()[0].platform, "resumed": self.resume,
                   "init_weights": str(self.init_weights) if self.init_weights else None,
                   "time_budget": time_budget})
        bar = tqdm(total=end, initial=start, disable=not (self.progress and self.is_main),
                   dynamic_ncols=True, desc=cfg.name)
        loop = _Loop(start=start, end=end, step=start,
                     stopped="done" if end == cfg.steps else "until",
                     planned=time_budget is None, t0=time.time(), window=MetricWindow(start),
                     batches=Prefetcher(self.global_batch, cfg.execution.prefetch), bar=bar)
        return state, loop

    def _advance(self, state: TrainState, loop: _Loop) -> TrainState:
        """One step on the prefetched batch; its metrics stay on the device."""
        batch = loop.batches.get(loop.step)
        state, metrics = self.step_on(state, loop.step, batch)
        loop.step += 1
        loop.batches.schedule(loop.step, loop.end)
        loop.window.add(metrics)
        loop.bar.update(1)
        return state

    def _read_due(self, loop: _Loop) -> bool:
        """Whether the host reads the metrics after this step: at the first step, log,
        checkpoint and evaluation steps, the end, and every step while the speed is being
        measured for a time budget (checkpoints and evaluations happen at read steps only)."""
        cfg, step = self.cfg, loop.step
        ev_int = cfg.evaluation.interval
        return bool(step == loop.start + 1 or step % cfg.log_interval == 0 or step == loop.end
                    or not loop.planned or step % cfg.checkpoint.interval == 0
                    or (ev_int and step % ev_int == 0))

    def _read_metrics(self, loop: _Loop) -> bool:
        """Read the steps since the last read: log them, report non-finite steps; False when
        ``max_nonfinite`` consecutive ones stop the run."""
        cfg, step, window = self.cfg, loop.step, loop.window
        done = window.flush(data_wait=loop.batches.take_wait())
        if step == loop.start + 1:
            self._log({"kind": "first_step", "step": step, "time": time.time(),
                       "seconds": time.time() - loop.t0})  # compilation included
        for rec in done.nonfinite:
            self._log({"kind": "nonfinite", "time": time.time(), **rec})
            if self.is_main:
                tqdm.write(f"foldlite train: step {rec['step']}: non-finite "
                           f"loss/gradient (loss={rec['loss']}); update skipped "
                           f"({window.nonfinite_run}/{cfg.max_nonfinite})")
        if window.nonfinite_run >= cfg.max_nonfinite:
            loop.stopped = "nonfinite"
            return False
        if done.means:
            loop.bar.set_postfix(loss=f"{done.means['loss']:.3f}",
                                 lddt=f"{done.means['lddt_ca']:.3f}",
                                 sps=f"{window.steps_per_second():.2f}")
            if step % cfg.log_interval == 0 or step == loop.end:
                self._log({"kind": "train", "step": step, "time": time.time(),
                           **window.rates(), **window.take_log()})
        return True

    def _plan_from_speed(self, loop: _Loop, time_budget: float, until_step: int | None
                         ) -> None:
        """Fit the schedule to the time budget from the measured speed; 5% of the time left is
        held back for a loss stage's compilation."""
        window = loop.window
        loop.planned = True
        left = time_budget - (time.time() - loop.t0)
        total = loop.step + int(0.95 * left * window.steps_per_second())
        if until_step is not None:
            total = min(total, int(until_step))
        self.plan_budget(loop.step, total)
        cfg = self.cfg
        loop.end = cfg.steps
        loop.stopped = "done"
        loop.bar.total = loop.end
        loop.bar.refresh()
        stages = [s.start_step for s in cfg.loss.stages]
        self._log({"kind": "plan", "step": loop.step, "steps": loop.end, "time": time.time(),
                   "seconds_per_step": 1.0 / window.steps_per_second(), "stages": stages})
        if self.is_main:
            tqdm.write(f"foldlite train: {1.0 / window.steps_per_second():.3f} s/step; "
                       f"schedule set to {loop.end} steps to fit the time budget (loss stages "
                       f"start at {stages})")
        loop.batches.schedule(loop.step, loop.end)

    def _checkpoint_and_evaluate(self, state: TrainState, step: int) -> None:
        """A checkpoint and a validation at their intervals."""
        cfg = self.cfg
        if step % cfg.checkpoint.interval == 0:
            self._save(state)
        if cfg.evaluation.interval and step % cfg.evaluation.interval == 0:
            ev = self.evaluate(state)
            if ev:
                self._log({"kind": "eval", "step": step, "time": time.time(), **ev})
                tqdm.write(f"step {step}: validation " + " ".join(
                    f"{k}={v:.3f}" for k, v in ev.items() if isinstance(v, float)))

    def _finish(self, state: TrainState, loop: _Loop, time_budget: float | None
                ) -> TrainResult:
        """Log the last steps, write the final checkpoint, evaluation and weights."""
        step, start, stopped, window = loop.step, loop.start, loop.stopped, loop.window
        done = window.flush(data_wait=loop.batches.take_wait())
        for rec in done.nonfinite:
            self._log({"kind": "nonfinite", "time": time.time(), **rec})
        if window.has_log():
            self._log({"kind": "train", "step": step, "time": time.time(), **window.rates(),
                       **window.take_log()})
        loop.batches.close()
        loop.bar.close()
        if step > start or stopped in ("signal", "time"):
            self._save(state)
        ev_int = self.cfg.evaluation.interval
        finished = stopped == "done" or (stopped == "time" and time_budget is not None)
        if finished and step > start and not (ev_int and step % ev_int == 0):
            ev = self.evaluate(state)  # the final model is always evaluated
            if ev:
                self._log({"kind": "eval", "step": step, "time": time.time(), **ev})
        weights = self._write_weights(state, window.last) if finished else None
        self._log({"kind": "stop", "step": step, "reason": stopped, "time": time.time(),
                   **window.rates()})
        self.state = state
        if stopped == "nonfinite":
            raise TrainingError(f"stopped at step {step}: {self.cfg.max_nonfinite} consecutive "
                                f"non-finite losses; the last good state is in "
                                f"{self.checkpoints.directory}")
        return TrainResult(step=step, stopped=stopped, last_metrics=window.last,
                           run_dir=self.run_dir, weights_path=weights,
                           steps_per_second=window.steps_per_second(),
                           residues_per_second=window.residues_per_second())
