"""The training step: optimiser, learning rate, recycles, loss and update, as pure functions of
the config (``foldlite.train.trainer.Trainer`` jits them; ``foldlite.train.ablation`` reuses
them).

Every random key inside the step comes from ``fold_in(rng, step)`` and the number of recycles
from a generator seeded by ``(seed, step)``, so a step is a pure function of the config, the
state and its number.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from foldlite.data.features import Features
from foldlite.train.checkpoint import TrainState
from foldlite.train.config import (CheckpointConfig, EvalConfig, ExecutionConfig, LossWeights,
                                   TrainConfig)
from foldlite.train.losses import compute_losses, make_targets

#: Keys of a batch that go into the jitted step (the rest, like chain ids, stay on the host).
BATCH_ARRAY_KEYS = ("features", "atom37", "atom37_mask", "dssp3")


def make_optimizer(cfg: TrainConfig) -> optax.GradientTransformation:
    """Gradient clipping by global norm, then AdamW *without* its learning rate: the step
    multiplies the update by ``-lr``, with ``lr`` from ``learning_rate_at`` computed on the
    host and passed in. The schedule is thus not compiled into the step, so a run can change
    its length (``--time-budget``) without recompiling. Same update as ``optax.adamw``:
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


def step_cache_key(cfg: TrainConfig) -> TrainConfig:
    """The part of ``cfg`` that the compiled step depends on (not the length of the run, the
    schedule or the loss stages: learning rate and loss weights are arguments of the step)."""
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
# The loop
# --------------------------------------------------------------------------------------------
