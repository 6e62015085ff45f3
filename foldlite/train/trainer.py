"""``foldlite train``: the training loop (data parallel over devices and processes).

    foldlite train --config tiny [--set key=value ...] [--resume]
                   [--until-step N] [--time-limit SECONDS]

One code path from one CPU to many accelerators:

* **Data parallel with ``jax.sharding``**: a 1-D device mesh with axis ``'data'`` spans every
  device of every process. Each global batch ``[B, ...]`` is sharded along ``'data'``; the
  training state (params, optimiser state, EMA) is replicated. ``jax.jit`` of the step function
  then computes each example's gradient on the device that holds it and inserts the cross-device
  mean of the gradients. ``B`` must be a multiple of the number of devices.
* **Multi-host with ``jax.distributed``**: start one process per host (or per group of devices)
  with ``--coordinator HOST:PORT --num-processes P --process-id I`` (or the environment variables
  ``FOLDLITE_COORDINATOR``, ``FOLDLITE_NUM_PROCESSES``, ``FOLDLITE_PROCESS_ID``). Every process
  reads the same config, builds the same global batch indices and loads only its own
  ``B / P`` examples (``jax.make_array_from_process_local_data``); process 0 writes checkpoints,
  logs and evaluations. On CPU the collectives go through gloo
  (``jax_cpu_collectives_implementation``). ``python scripts/train.py --local-processes 2 ...``
  runs such a job on one machine; ``tests/test_trainer.py`` checks that it trains like one
  device (with ``FOLDLITE_TEST_MULTIPROCESS=1``; 2 forced CPU devices in one process are
  checked on every run).

Every step ``s`` is a pure function of the config, the state and ``s``: the examples come from
``foldlite.data.loader.Loader.batch(s)`` (cluster-weighted sampling, crops and profile dropout
seeded by ``(seed, s)``), the number of recycles from a generator seeded by ``(seed, s)``, and
every random key inside the step from ``fold_in(rng, s)``. That is what
makes ``--resume`` continue exactly, and what makes 1 device and N devices agree.

A step whose loss or gradient is not finite leaves params, optimiser state and EMA untouched,
is logged, and ``max_nonfinite`` consecutive ones stop the run. Checkpoints are written every
``checkpoint.interval`` steps, at the end, and on Ctrl-C / SIGTERM (after the current step).
The run folder (``log_dir``, default ``~/.cache/foldlite/runs/<name>``) holds ``config.yaml``,
``metrics.jsonl`` (one JSON record per line), ``checkpoints/`` and, at the end,
``weights.npz`` (the EMA weights in the format of ``foldlite.model.weights_io.save_weights``).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
import yaml

from foldlite import fileio
from foldlite.config import to_dict
from foldlite.data.features import Features
from foldlite.errors import ConfigError, FoldliteError
from foldlite.model.inference import Predictor, compiler_options
from foldlite.model.weights_io import load_weights, save_weights
from foldlite.train.checkpoint import CheckpointManager, TrainState
from foldlite.train.config import ExecutionConfig, LossWeights, TrainConfig, load_train_config
from foldlite.train.evaluate import evaluate_examples
from foldlite.train.losses import compute_losses, make_targets

#: Keys of a batch that go into the jitted step (the rest, like chain ids, stay on the host).
BATCH_ARRAY_KEYS = ("features", "atom37", "atom37_mask", "dssp3")


class TrainingError(FoldliteError):
    """Training cannot go on (e.g. repeated non-finite losses)."""

    exit_code = 1


# --------------------------------------------------------------------------------------------
# Optimiser, state and step
# --------------------------------------------------------------------------------------------

def make_optimizer(cfg: TrainConfig) -> optax.GradientTransformation:
    """Gradient clipping by global norm, then AdamW *without* its learning rate: the step
    multiplies the update by ``-lr``, with ``lr`` from ``make_schedule`` computed on the host
    and passed in (``learning_rate_at``). The schedule is thus not compiled into the step, so a
    run can change its length (``--time-budget``) without recompiling. Same update as ``optax.adamw``:
    ``-lr * (adam(g) + weight_decay * p)``."""
    o = cfg.optimizer
    return optax.chain(
        optax.clip_by_global_norm(o.grad_clip_norm),
        optax.scale_by_adam(b1=o.b1, b2=o.b2, eps=o.eps),
        optax.add_decayed_weights(o.weight_decay),
    )


def learning_rate_at(cfg: TrainConfig, step: int) -> float:
    """The learning rate of step ``step`` (computed on the host every step and passed to the
    step function). Linear warm-up from 0 to the peak over ``warmup_steps``, then either constant
    (``schedule: constant``) or a cosine decay to ``end_lr_fraction * peak`` at ``cfg.steps``
    (the same values as ``optax.warmup_cosine_decay_schedule``)."""
    o = cfg.optimizer
    peak, end = o.learning_rate, o.learning_rate * o.end_lr_fraction
    if o.schedule == "constant":
        return peak * step / o.warmup_steps if step < o.warmup_steps else peak
    warmup = min(o.warmup_steps, max(cfg.steps - 1, 0))
    decay_steps = max(cfg.steps, warmup + 1)
    if step < warmup:
        return peak * step / warmup
    t = min(max(step - warmup, 0), decay_steps - warmup) / (decay_steps - warmup)
    return end + (peak - end) * 0.5 * (1.0 + math.cos(math.pi * t))


def num_recycles_for_step(cfg: TrainConfig, step: int) -> int:
    """Recycles for step ``step``: uniform in ``[0, max_recycles]`` (Suppl. 1.10), seeded by
    ``(seed, step)``."""
    if cfg.max_recycles == 0:
        return 0
    return int(np.random.default_rng([cfg.seed, step, 7]).integers(0, cfg.max_recycles + 1))


def make_loss_fn(model: Any, cfg: TrainConfig) -> Callable:
    """``loss_fn(params, batch, key, weights, num_recycles) -> (loss, metrics)``: the mean over
    the batch of the per-example losses (``vmap`` over the leading axis)."""

    def per_example(params, example, key, weights, num_recycles):
        k_model, k_clamp = jax.random.split(key)
        features = example["features"]  # profile dropout is done by the loader
        output = model.apply(params, k_model, features, num_recycles=num_recycles,
                             is_training=True)
        targets = make_targets(example["atom37"], example["atom37_mask"], features.aatype,
                               features.mask, features.residue_index, example["dssp3"])
        clamp = jax.random.uniform(k_clamp) >= cfg.loss.unclamped_fape_fraction
        total, terms = compute_losses(output, targets, weights, cfg.loss, clamp)
        terms["residues"] = jnp.sum(features.mask)
        return total, terms

    def loss_fn(params, batch, key, weights, num_recycles):
        b = batch["atom37"].shape[0]
        keys = jax.random.split(key, b)
        totals, terms = jax.vmap(per_example, in_axes=(None, 0, 0, None, None))(
            params, batch, keys, weights, num_recycles)
        metrics = {k: jnp.mean(v) for k, v in terms.items()}
        metrics["residues"] = jnp.sum(terms["residues"])
        return jnp.mean(totals), metrics

    return loss_fn


def make_train_step(model: Any, cfg: TrainConfig, optimizer: optax.GradientTransformation
                    ) -> Callable:
    """``step(state, batch, weights, num_recycles, lr) -> (state, metrics)`` (not yet jitted;
    ``lr`` is this step's learning rate, see ``make_optimizer``).

    A non-finite loss or gradient leaves params, optimiser state and EMA unchanged
    (``metrics['finite'] == 0``); the step counter advances either way.
    """
    loss_fn = make_loss_fn(model, cfg)
    decay = cfg.ema_decay

    def step(state: TrainState, batch: dict, weights: LossWeights, num_recycles: int,
             lr: jax.Array):
        key = jax.random.fold_in(state.rng, state.step)
        (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params, batch, key, weights, num_recycles)
        grad_norm = optax.tree.norm(grads)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        # Zero the gradient of a bad step before the optimiser sees it, then keep the old state.
        grads = jax.tree_util.tree_map(lambda g: jnp.where(finite, g, 0.0), grads)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        lr = jnp.asarray(lr, jnp.float32)
        updates = jax.tree_util.tree_map(lambda u: -lr * u, updates)
        params = optax.apply_updates(state.params, updates)
        # EMA with a warm-up (decay min(d, (1 + t) / (10 + t)) at step t): a plain decay of 0.999
        # still weighs the random initialisation by 0.999^1000 = 0.37 after 1,000 steps, which
        # made the EMA model of a 1,000-step run score lDDT-CA 0.02 against 0.11 for the raw one.
        t = state.step.astype(jnp.float32)
        d = jnp.minimum(decay, (1.0 + t) / (10.0 + t))
        ema = jax.tree_util.tree_map(lambda e, p: d * e + (1.0 - d) * p,
                                     state.ema_params, params)

        def keep(new, old):
            return jax.tree_util.tree_map(lambda a, b: jnp.where(finite, a, b), new, old)

        new_state = TrainState(params=keep(params, state.params),
                               opt_state=keep(opt_state, state.opt_state),
                               ema_params=keep(ema, state.ema_params),
                               step=state.step + 1, rng=state.rng)
        metrics = dict(metrics, loss=loss, grad_norm=grad_norm,
                       finite=finite.astype(jnp.float32), lr=lr)
        return new_state, metrics

    return step


def init_state(model: Any, cfg: TrainConfig, example: Features,
               optimizer: optax.GradientTransformation) -> TrainState:
    """Fresh parameters (seeded by ``cfg.seed``), optimiser state and EMA (= params).

    Pure function of its arguments: under ``jax.eval_shape`` it gives the state's structure
    without computing anything (the template a checkpoint is loaded into).
    """
    rng = jax.random.PRNGKey(cfg.seed)
    init_key, run_key = jax.random.split(rng)
    params = model.init(init_key, example, num_recycles=0, is_training=False)
    params = jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float32), params)
    return TrainState(params=params, opt_state=optimizer.init(params),
                      ema_params=jax.tree_util.tree_map(jnp.array, params),
                      step=jnp.zeros((), jnp.int32), rng=run_key)


def execution_model_config(model_cfg: Any, execution: ExecutionConfig) -> Any:
    """The model config the training step runs: ``model_cfg`` with the compute dtype and the
    trunk's execution (scan or unrolled) of ``execution``; same parameters as ``model_cfg``."""
    dtype = model_cfg.dtype if execution.compute_dtype == "model" else execution.compute_dtype
    trunk = dataclasses.replace(model_cfg.trunk,
                                unroll_training=model_cfg.trunk.unroll_training
                                and not execution.scan_trunk)
    return dataclasses.replace(model_cfg, dtype=dtype, trunk=trunk)


#: Jitted functions shared by trainers of the same model and training settings in one process
#: (tests and notebooks build several trainers; compiling the step is what takes time).
_JIT_CACHE: dict[Any, Any] = {}


def _step_cache_key(cfg: TrainConfig) -> TrainConfig:
    """The part of ``cfg`` that the compiled step depends on (not the length of the run, the
    schedule or the loss stages: learning rate and loss weights are arguments of the step)."""
    from foldlite.train.config import CheckpointConfig, EvalConfig
    o = cfg.optimizer
    return dataclasses.replace(cfg, name="", log_dir=None, evaluation=EvalConfig(),
                               checkpoint=CheckpointConfig(), log_interval=1, max_nonfinite=1,
                               steps=0,
                               optimizer=dataclasses.replace(o, learning_rate=0.0, warmup_steps=0,
                                                             end_lr_fraction=0.0,
                                                             schedule="cosine"),
                               execution=dataclasses.replace(cfg.execution, prefetch=1),
                               loss=dataclasses.replace(cfg.loss, stages=()),
                               data=dataclasses.replace(cfg.data, path="", splits=None))


# --------------------------------------------------------------------------------------------
# Devices
# --------------------------------------------------------------------------------------------

def initialize_distributed(coordinator: str | None, num_processes: int | None,
                           process_id: int | None) -> None:
    """Join a multi-process run through ``jax.distributed`` (no-op for a single process).

    On CPU the collectives use gloo. Must run before anything touches a device.
    """
    coordinator = coordinator or os.environ.get("FOLDLITE_COORDINATOR")
    if not coordinator:
        return
    num_processes = int(num_processes or os.environ.get("FOLDLITE_NUM_PROCESSES", 1))
    process_id = int(process_id if process_id is not None
                     else os.environ.get("FOLDLITE_PROCESS_ID", 0))
    if jax.config.jax_platforms in (None, "", "cpu") or os.environ.get("JAX_PLATFORMS") == "cpu":
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                               process_id=process_id)


def make_mesh() -> jax.sharding.Mesh:
    """A 1-D mesh ``('data',)`` over every device of every process."""
    return jax.sharding.Mesh(np.asarray(jax.devices()), ("data",))


def _replicate(tree: Any, sharding: jax.sharding.Sharding) -> Any:
    """Host values -> global arrays replicated on every device (same value on every process)."""
    def put(x):
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])
    return jax.tree_util.tree_map(put, jax.device_get(tree))


def _shard_batch(local: dict, sharding: jax.sharding.Sharding, global_batch: int) -> dict:
    """This process's examples ``[B / P, ...]`` -> global arrays ``[B, ...]`` over ``'data'``."""
    def put(x):
        x = np.asarray(x)
        return jax.make_array_from_process_local_data(sharding, x,
                                                      (global_batch,) + x.shape[1:])
    return jax.tree_util.tree_map(put, local)


def to_host(tree: Any) -> Any:
    """Replicated global arrays -> numpy (works when other processes hold devices too)."""
    def get(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            return np.asarray(x.addressable_data(0))
        return np.asarray(jax.device_get(x))
    return jax.tree_util.tree_map(get, tree)


# --------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------

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


class _StopFlag:
    """Turns the first SIGINT/SIGTERM into a request to stop after the current step."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> "_StopFlag":
        import threading
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
        from foldlite.model import make_model
        from foldlite.model.config import load_model_config
        from foldlite.train.batches import TrainingData

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
        self.mesh = make_mesh()
        n_dev = self.mesh.devices.size
        if cfg.data.batch_size % n_dev:
            raise ConfigError(f"data.batch_size={cfg.data.batch_size} is not a multiple of the "
                              f"{n_dev} devices; use a multiple")
        if cfg.data.batch_size % jax.process_count():
            raise ConfigError(f"data.batch_size={cfg.data.batch_size} is not a multiple of the "
                              f"{jax.process_count()} processes")
        P = jax.sharding.PartitionSpec
        self.replicated = jax.sharding.NamedSharding(self.mesh, P())
        self.batch_sharding = jax.sharding.NamedSharding(self.mesh, P("data"))
        self.optimizer = make_optimizer(cfg)
        devices = tuple(d.id for d in self.mesh.devices.flat)
        opts = compiler_options()
        frozen_opts = tuple(sorted((opts or {}).items()))
        key = ("step", self.step_model_cfg, _step_cache_key(cfg), devices, frozen_opts)
        if key not in _JIT_CACHE:
            _JIT_CACHE[key] = jax.jit(
                make_train_step(self.model, cfg, self.optimizer),
                static_argnums=(2,), donate_argnums=(0,),
                out_shardings=(self.replicated, self.replicated), compiler_options=opts)
        self._step_fn = _JIT_CACHE[key]
        key = ("init", self.step_model_cfg, _step_cache_key(cfg), frozen_opts)
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
        arrays = {k: local[k] for k in BATCH_ARRAY_KEYS}
        return _shard_batch(arrays, self.batch_sharding, self.cfg.data.batch_size)

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
        from foldlite.train.config import LossStage

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
        devices ``execution.prefetch`` steps ahead on threads, the step's metrics stay on the
        device, and the host reads them once every ``log_interval`` steps (``_MetricWindow``).
        """
        from tqdm import tqdm

        cfg = self.cfg
        if time_budget is not None:
            time_limit = time_budget if time_limit is None else min(time_limit, time_budget)
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            fileio.write_text(self.run_dir / "config.yaml",
                              yaml.safe_dump(to_dict(cfg), sort_keys=False))
        self._run_start = time.time()
        state = self._load_or_init()
        state = _replicate(state, self.replicated)
        start = int(to_host(state.step))
        end = cfg.steps if until_step is None else min(cfg.steps, int(until_step))
        self._log({"kind": "start", "step": start, "end": end, "time": time.time(),
                   "devices": int(self.mesh.devices.size), "processes": jax.process_count(),
                   "platform": jax.devices()[0].platform, "resumed": self.resume,
                   "init_weights": str(self.init_weights) if self.init_weights else None,
                   "time_budget": time_budget})
        bar = tqdm(total=end, initial=start, disable=not (self.progress and self.is_main),
                   dynamic_ncols=True, desc=cfg.name)
        t0 = time.time()
        window = _MetricWindow(start)
        stopped = "done" if end == cfg.steps else "until"
        planned = time_budget is None
        step = start
        batches = _Prefetcher(self.global_batch, cfg.execution.prefetch)
        batches.schedule(step, end)
        with _StopFlag() as stop:
            while step < end:
                if stop.signal is not None:
                    stopped = "signal"
                    break
                if time_limit is not None and time.time() - t0 > time_limit:
                    stopped = "time"
                    break
                batch = batches.get(step)
                state, metrics = self.step_on(state, step, batch)
                step += 1
                batches.schedule(step, end)
                window.add(metrics)
                bar.update(1)
                # Every step is read while the speed is being measured for the time budget;
                # checkpoints and evaluations happen at read steps only.
                ev_int = cfg.evaluation.interval
                sync = (step == start + 1 or step % cfg.log_interval == 0 or step == end
                        or not planned or step % cfg.checkpoint.interval == 0
                        or (ev_int and step % ev_int == 0))
                if not sync:
                    continue
                done = window.flush(data_wait=batches.take_wait())
                if step == start + 1:
                    self._log({"kind": "first_step", "step": step, "time": time.time(),
                               "seconds": time.time() - t0})  # compilation included
                for rec in done.nonfinite:
                    self._log({"kind": "nonfinite", "time": time.time(), **rec})
                    if self.is_main:
                        tqdm.write(f"foldlite train: step {rec['step']}: non-finite "
                                   f"loss/gradient (loss={rec['loss']}); update skipped "
                                   f"({window.nonfinite_run}/{cfg.max_nonfinite})")
                if window.nonfinite_run >= cfg.max_nonfinite:
                    stopped = "nonfinite"
                    break
                if done.means:
                    bar.set_postfix(loss=f"{done.means['loss']:.3f}",
                                    lddt=f"{done.means['lddt_ca']:.3f}",
                                    sps=f"{window.steps_per_second():.2f}")
                    if step % cfg.log_interval == 0 or step == end:
                        self._log({"kind": "train", "step": step, "time": time.time(),
                                   **window.rates(), **window.take_log()})
                if not planned and (window.timed_steps >= 20 or (window.timed_steps >= 3
                                                                 and window.timed_time > 30)):
                    # Fit the schedule to the budget; 5% held back for a stage's compilation.
                    planned = True
                    left = time_budget - (time.time() - t0)
                    total = step + int(0.95 * left * window.steps_per_second())
                    if until_step is not None:
                        total = min(total, int(until_step))
                    self.plan_budget(step, total)
                    cfg = self.cfg
                    end = cfg.steps
                    stopped = "done"
                    bar.total = end
                    bar.refresh()
                    self._log({"kind": "plan", "step": step, "steps": end, "time": time.time(),
                               "seconds_per_step": 1.0 / window.steps_per_second(),
                               "stages": [s.start_step for s in cfg.loss.stages]})
                    if self.is_main:
                        tqdm.write(f"foldlite train: {1.0 / window.steps_per_second():.3f} "
                                   f"s/step; schedule set to {end} steps to fit the time budget "
                                   f"(loss stages start at "
                                   f"{[s.start_step for s in cfg.loss.stages]})")
                    batches.schedule(step, end)
                if step % cfg.checkpoint.interval == 0:
                    self._save(state)
                if cfg.evaluation.interval and step % cfg.evaluation.interval == 0:
                    ev = self.evaluate(state)
                    if ev:
                        self._log({"kind": "eval", "step": step, "time": time.time(), **ev})
                        tqdm.write(f"step {step}: validation " + " ".join(
                            f"{k}={v:.3f}" for k, v in ev.items() if isinstance(v, float)))
        done = window.flush(data_wait=batches.take_wait())
        for rec in done.nonfinite:
            self._log({"kind": "nonfinite", "time": time.time(), **rec})
        if window.has_log():
            self._log({"kind": "train", "step": step, "time": time.time(), **window.rates(),
                       **window.take_log()})
        batches.close()
        bar.close()
        if step > start or stopped in ("signal", "time"):
            self._save(state)
        ev_int = self.cfg.evaluation.interval
        finished = stopped == "done" or (stopped == "time" and time_budget is not None)
        if finished and step > start and not (ev_int and step % ev_int == 0):
            ev = self.evaluate(state)  # the final model is always evaluated
            if ev:
                self._log({"kind": "eval", "step": step, "time": time.time(), **ev})
        weights = self._write_weights(state, window.last) if finished else None
        sps, rps = window.steps_per_second(), window.residues_per_second()
        self._log({"kind": "stop", "step": step, "reason": stopped, "time": time.time(),
                   **window.rates()})
        self.state = state
        if stopped == "nonfinite":
            raise TrainingError(f"stopped at step {step}: {cfg.max_nonfinite} consecutive "
                                f"non-finite losses; the last good state is in "
                                f"{self.checkpoints.directory}")
        return TrainResult(step=step, stopped=stopped, last_metrics=window.last,
                           run_dir=self.run_dir, weights_path=weights, steps_per_second=sps,
                           residues_per_second=rps)


class _Prefetcher:
    """Global batches of the coming steps, made (read, cropped, put on the devices) on host
    threads ahead of the step that needs them; measures how long the loop waited for data."""

    def __init__(self, make: Callable[[int], dict], depth: int):
        from concurrent.futures import ThreadPoolExecutor

        self._make = make
        self._depth = depth
        self._pool = ThreadPoolExecutor(depth, thread_name_prefix="foldlite-batch")
        self._futures: dict[int, Any] = {}
        self._wait = 0.0

    def schedule(self, step: int, end: int) -> None:
        """Have the batches of steps ``step .. step + depth - 1`` (below ``end``) in the making;
        forget those at or after ``end``."""
        for s in [s for s in self._futures if s >= end]:
            self._futures.pop(s).cancel()
        for s in range(step, min(step + self._depth, end)):
            if s not in self._futures:
                self._futures[s] = self._pool.submit(self._make, s)

    def get(self, step: int) -> dict:
        if step not in self._futures:
            self._futures[step] = self._pool.submit(self._make, step)
        t = time.perf_counter()
        batch = self._futures.pop(step).result()
        self._wait += time.perf_counter() - t
        return batch

    def take_wait(self) -> float:
        """Seconds the loop waited for batches since the last call."""
        w, self._wait = self._wait, 0.0
        return w

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


@dataclasses.dataclass
class _Flushed:
    means: dict            # mean of each metric over the finite steps read (empty if none)
    nonfinite: list        # {step, loss, grad_norm} of each non-finite step read


class _MetricWindow:
    """The steps' metrics, kept on the device until ``flush`` reads them all at once (one host
    round trip per ``log_interval`` steps instead of one per step), and the timing of the run:
    the first flushed window holds the compilation and is not timed."""

    def __init__(self, start: int):
        self._pending: list[tuple[int, dict]] = []
        self._log: dict[str, list[float]] = {}
        self._next_step = start
        self._last_sync: float | None = None
        self.timed_steps = 0
        self.timed_time = 0.0
        self.timed_residues = 0.0
        self.data_wait = 0.0
        self.nonfinite_run = 0
        self.last: dict = {}

    def add(self, metrics: dict) -> None:
        self._pending.append((self._next_step, metrics))
        self._next_step += 1

    def flush(self, data_wait: float = 0.0) -> _Flushed:
        """Read every pending step's metrics (waits for the device to finish them)."""
        host = jax.device_get([m for _, m in self._pending])
        now = time.time()
        steps = [s for s, _ in self._pending]
        self._pending = []
        means: dict[str, list[float]] = {}
        bad = []
        residues = 0.0
        for s, m in zip(steps, host):
            m = {k: float(np.asarray(v)) for k, v in m.items()}
            residues += m["residues"]
            if m["finite"] < 1.0:
                self.nonfinite_run += 1
                bad.append({"step": s + 1, "loss": m["loss"], "grad_norm": m["grad_norm"]})
                continue
            self.nonfinite_run = 0
            self.last = m
            for k, v in m.items():
                means.setdefault(k, []).append(v)
                self._log.setdefault(k, []).append(v)
        if steps and self._last_sync is not None:
            self.timed_steps += len(steps)
            self.timed_time += now - self._last_sync
            self.timed_residues += residues
            self.data_wait += data_wait
        if steps:
            self._last_sync = now
        return _Flushed({k: float(np.mean(v)) for k, v in means.items()}, bad)

    def has_log(self) -> bool:
        return bool(self._log)

    def take_log(self) -> dict:
        """Means of the finite steps since the last call (``residues``: their sum)."""
        rec = {k: float(np.mean(v)) for k, v in self._log.items()}
        if "residues" in self._log:
            rec["residues"] = float(np.sum(self._log["residues"]))
        self._log = {}
        return rec

    def steps_per_second(self) -> float:
        return self.timed_steps / self.timed_time if self.timed_time > 0 else float("nan")

    def residues_per_second(self) -> float:
        return self.timed_residues / self.timed_time if self.timed_time > 0 else float("nan")

    def rates(self) -> dict:
        """Throughput after compilation, and the fraction of that time the loop waited for
        batches (the rest is the devices' step time and dispatch)."""
        return {"steps_per_second": self.steps_per_second(),
                "residues_per_second": self.residues_per_second(),
                "data_wait_fraction": self.data_wait / self.timed_time
                if self.timed_time > 0 else float("nan")}


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True,
                        help="training config: a YAML path or a name in foldlite/configs/train/ "
                             "(tiny, small)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value (dotted key, YAML value); repeatable, "
                             "e.g. --set optimizer.learning_rate=3.0e-4 --set steps=2000 "
                             "(YAML: write floats with a dot, 3.0e-4, not 3e-4)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the newest checkpoint of the run folder")
    parser.add_argument("--until-step", type=int, default=None, metavar="N",
                        help="stop (with a checkpoint) at step N instead of the config's steps; "
                             "the schedule still spans the config's steps")
    parser.add_argument("--time-limit", type=float, default=None, metavar="SECONDS",
                        help="stop (with a checkpoint) after this much wall time")
    parser.add_argument("--time-budget", type=float, default=None, metavar="SECONDS",
                        help="train for about this long with a complete schedule: the number of "
                             "steps (and the loss stages) is set from the measured speed after "
                             "the first steps; weights are written at the end")
    parser.add_argument("--init-weights", default=None, metavar="FILE.npz",
                        help="start a new run from these weights (e.g. the shipped "
                             "foldlite/weights/default.npz) with a fresh optimiser: fine-tuning")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    dist = parser.add_argument_group("multi-process (jax.distributed)")
    dist.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                      help="address of process 0 (env FOLDLITE_COORDINATOR)")
    dist.add_argument("--num-processes", type=int, default=None,
                      help="number of processes (env FOLDLITE_NUM_PROCESSES)")
    dist.add_argument("--process-id", type=int, default=None,
                      help="this process's index (env FOLDLITE_PROCESS_ID)")


def run(args: argparse.Namespace) -> int:
    initialize_distributed(args.coordinator, args.num_processes, args.process_id)
    cfg = load_train_config(args.config, args.set)
    trainer = Trainer(cfg, resume=args.resume, progress=not args.no_progress,
                      init_weights=args.init_weights)
    result = trainer.train(until_step=args.until_step, time_limit=args.time_limit,
                           time_budget=args.time_budget)
    if jax.process_index() == 0:
        msg = {"step": result.step, "stopped": result.stopped, "run_dir": str(result.run_dir),
               "weights": str(result.weights_path) if result.weights_path else None,
               "steps_per_second": round(result.steps_per_second, 4)
               if math.isfinite(result.steps_per_second) else None,
               "residues_per_second": round(result.residues_per_second, 2)
               if math.isfinite(result.residues_per_second) else None}
        print(json.dumps(msg))
        if result.stopped in ("signal", "time", "until"):
            print(f"foldlite train: stopped at step {result.step} ({result.stopped}); continue "
                  f"with --resume", file=sys.stderr)
    if result.stopped == "signal":
        return 130
    return 0
