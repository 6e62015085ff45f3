"""Ablation harness: train recipe variants for a fixed number of steps and compare them.

    python scripts/ablate.py --config small --steps 300 --eval-chains 8 \\
        --set data.crop_size=64 --set data.batch_size=2 \\
        --variant "base:" --variant "lr3e-4: optimizer.learning_rate=3.0e-4"
    python scripts/ablate.py --config small --overfit tests/data/1A8O.pdb --steps 1000

Every variant is the base training config plus its own ``--set``-style overrides, trained from
the same seed on the same batches (``Loader.batch(step)`` is a pure function of the seed and the
step) for ``steps`` steps, then scored (EMA or raw parameters) on the first ``eval_chains``
validation chains with the trainer's own evaluation. Override keys:

* ``a.b=value``: the training config (``foldlite.train.config.TrainConfig``), as ``--set``;
* ``model.a.b=value``: the model config (``foldlite.model.config.ModelConfig``; written to
  ``<out>/<variant>/model.yaml`` and used as the run's model);
* ``harness.structure_lr_scale=x``: the optimiser's updates of the structure-module parameters
  are multiplied by ``x`` (a per-module learning rate, without changing the trainer).

The single-chain overfit (``overfit``): a one-chain dataset is built from a PDB/mmCIF file with
``foldlite.data.structures.build_from_structures`` (the ``foldlite data structures`` code path),
cropped to ``crop_size`` (72 covers a 70-residue chain whole), batch 1, no profile dropout. Each
step's training metrics are kept; the goal is reached at the first step where the mean over the
last ``GOAL_WINDOW`` steps has backbone FAPE < ``fape_goal`` and lDDT-CA > ``lddt_goal``, and
the run stops there.

One record per variant goes to ``<out>/ablation.jsonl``; ``format_table`` prints the table.
The loop calls the trainer's public pieces (``Trainer.global_batch``, ``make_train_step``,
``init_state``, ``learning_rate_at``, ``num_recycles_for_step``, ``Trainer.evaluate``) and
writes no checkpoints.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import jax
import numpy as np
import optax
import yaml

from foldlite import fileio
from foldlite.config import to_dict
from foldlite.data.structures import build_from_structures
from foldlite.errors import ConfigError
from foldlite.model.config import load_model_config
from foldlite.model.inference import compiler_options
from foldlite.train.config import TrainConfig, load_train_config
from foldlite.train.devices import to_host
from foldlite.train.step import (init_state, learning_rate_at, make_optimizer, make_train_step,
                                 num_recycles_for_step)
from foldlite.train.trainer import Trainer

#: the steps whose mean metrics decide whether the overfit goal is reached
GOAL_WINDOW = 10

#: training metrics reported per variant (means over the last steps of the run)
TRAIN_METRICS = ("loss", "fape", "fape_final", "distogram", "lddt_ca")

#: overrides of the single-chain overfit (on top of the base config)
OVERFIT_OVERRIDES = ("data.splits=null", "data.train_split=all", "data.valid_split=all",
                     "data.profile_dropout=0.0", "data.crop_size=72", "data.batch_size=1",
                     "data.min_length=10", "data.cluster_weighting=false",
                     "evaluation.interval=0", "evaluation.num_chains=0")


@dataclasses.dataclass(frozen=True)
class Variant:
    """A named recipe: ``overrides`` on top of the base config (see the module docstring)."""

    name: str
    overrides: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class HarnessOptions:
    """Settings of a variant that are not in the training or model config."""

    structure_lr_scale: float = 1.0


def parse_variant(spec: str) -> Variant:
    """``"name: key=value key=value"`` -> ``Variant`` (``"base:"``: no overrides)."""
    name, sep, rest = spec.partition(":")
    name = name.strip()
    if not sep or not name:
        raise ConfigError(f"--variant {spec!r}: expected 'NAME: key=value ...'")
    over = tuple(rest.split())
    for o in over:
        if "=" not in o:
            raise ConfigError(f"--variant {name}: override {o!r} is not key=value")
    return Variant(name, over)


def load_variants(path: str | Path) -> list[Variant]:
    """Variants from a YAML file: a mapping ``name: [key=value, ...]`` (in file order)."""
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of variant names to override lists")
    out = []
    for name, over in data.items():
        over = over or []
        if isinstance(over, str) or not all(isinstance(o, str) and "=" in o for o in over):
            raise ConfigError(f"{path}: variant {name!r}: expected a list of 'key=value' strings")
        out.append(Variant(str(name), tuple(over)))
    return out


def split_overrides(overrides: Sequence[str]) -> tuple[list[str], list[str], HarnessOptions]:
    """-> (training-config overrides, model-config overrides, harness options)."""
    train, model, harness = [], [], {}
    fields = {f.name: f.type for f in dataclasses.fields(HarnessOptions)}
    for o in overrides:
        key, _, value = o.partition("=")
        if key.startswith("model."):
            model.append(o[len("model."):])
        elif key.startswith("harness."):
            name = key[len("harness."):]
            if name not in fields:
                raise ConfigError(f"{o}: unknown harness option (known: {sorted(fields)})")
            harness[name] = float(yaml.safe_load(value))
        else:
            train.append(o)
    return train, model, HarnessOptions(**harness)


def variant_config(base: str, base_overrides: Sequence[str], variant: Variant, steps: int,
                   run_dir: Path) -> tuple[TrainConfig, HarnessOptions]:
    """The training config of ``variant`` (``steps`` steps, logs in ``run_dir``); a model
    override writes ``run_dir/model.yaml`` and points the config at it."""

    train, model, opts = split_overrides(list(base_overrides) + list(variant.overrides))
    cfg = load_train_config(base, train + [f"steps={steps}", f"log_dir={run_dir}",
                                           f"name={variant.name}"])
    if model:
        mcfg = load_model_config(cfg.model, model)
        run_dir.mkdir(parents=True, exist_ok=True)
        path = run_dir / "model.yaml"
        fileio.write_text(path, yaml.safe_dump(to_dict(mcfg), sort_keys=False))
        cfg = dataclasses.replace(cfg, model=str(path))
    return cfg, opts


def scale_module_updates(substring: str, factor: float) -> optax.GradientTransformation:
    """Multiply the updates of the parameters whose Haiku module name contains ``substring``
    by ``factor`` (a per-module learning rate when chained after the optimiser)."""

    def init(params):
        return optax.EmptyState()

    def update(updates, state, params=None):
        def scale(path, u):
            return u * factor if substring in str(path[0].key) else u
        return jax.tree_util.tree_map_with_path(scale, updates), state

    return optax.GradientTransformation(init, update)


def _jit_step(trainer: Any, cfg: TrainConfig, opts: HarnessOptions) -> tuple[Callable, Callable]:
    """(jitted step, jitted init) for ``trainer``'s model with the harness options."""

    optimizer = make_optimizer(cfg)
    if opts.structure_lr_scale != 1.0:
        optimizer = optax.chain(optimizer,
                                scale_module_updates("structure_module", opts.structure_lr_scale))
    model = trainer.model
    step = jax.jit(make_train_step(model, cfg, optimizer), static_argnums=(2,),
                   donate_argnums=(0,), compiler_options=compiler_options())
    init = jax.jit(lambda ex: init_state(model, cfg, ex, optimizer),
                   compiler_options=compiler_options())
    return step, init


def _mean_last(history: list[dict], key: str, n: int) -> float:
    vals = [h[key] for h in history[-n:] if key in h]
    return float(np.mean(vals)) if vals else float("nan")


def run_variant(cfg: TrainConfig, opts: HarnessOptions, *, data: Any = None,
                until_step: int | None = None, stop_at_goal: bool = False,
                fape_goal: float = 0.2, lddt_goal: float = 0.9,
                curve_every: int = 100, final_window: int = 20, score: bool = True,
                log: Callable[[str], None] | None = None) -> dict:
    """Train ``cfg`` from scratch for ``cfg.steps`` steps and score it.

    Args:
      data: a ``TrainingData`` (default: built from ``cfg.data``).
      until_step: stop after this many steps (the schedule still spans ``cfg.steps``).
      stop_at_goal: stop at the first step where the mean over the last ``GOAL_WINDOW`` steps
        has ``fape < fape_goal`` and ``lddt_ca > lddt_goal`` (the overfit goal).
      curve_every: record the ``GOAL_WINDOW``-step means every this many steps.
      final_window: the reported training metrics are means over this many last steps.
      score: evaluate on the validation subset of ``cfg.evaluation`` at the end.

    Returns a JSON-able record: ``steps``, ``seconds`` (training, with compilation),
    ``compile_seconds`` (the first step), ``seconds_per_step`` (the others), ``train`` (means
    of ``TRAIN_METRICS``), ``goal_step`` (or None), ``curve``, ``valid`` (metrics or {}).
    """

    trainer = Trainer(cfg, progress=False, data=data)
    step_fn, init_fn = _jit_step(trainer, cfg, opts)
    example = jax.tree_util.tree_map(lambda x: x[0], trainer.data.example_features())
    state = init_fn(example)
    history: list[dict] = []
    curve: list[dict] = []
    goal_step = None
    t0 = time.time()
    compile_s = 0.0
    end = cfg.steps if until_step is None else min(cfg.steps, until_step)
    for step in range(end):
        batch = trainer.global_batch(step)
        state, metrics = step_fn(state, batch, cfg.loss.weights_at(step),
                                 np.int32(num_recycles_for_step(cfg, step)),
                                 np.float32(learning_rate_at(cfg, step)))
        m = {k: float(v) for k, v in to_host(metrics).items()}
        if step == 0:
            compile_s = time.time() - t0
        if m["finite"] < 1.0:
            raise ConfigError(f"variant {cfg.name}: non-finite loss at step {step + 1}")
        history.append(m)
        done = step + 1
        if done % curve_every == 0 or done == end:
            point = {"step": done, **{k: _mean_last(history, k, GOAL_WINDOW)
                                      for k in TRAIN_METRICS},
                     "seconds": round(time.time() - t0, 1)}
            curve.append(point)
            if log:
                log(f"  {cfg.name} step {done}: " + " ".join(
                    f"{k}={v:.3f}" for k, v in point.items() if k != "step"))
        if goal_step is None and len(history) >= GOAL_WINDOW:
            if (_mean_last(history, "fape", GOAL_WINDOW) < fape_goal
                    and _mean_last(history, "lddt_ca", GOAL_WINDOW) > lddt_goal):
                goal_step = done
                if log:
                    log(f"  {cfg.name}: goal reached at step {done}")
                if stop_at_goal:
                    if not curve or curve[-1]["step"] != done:
                        curve.append({"step": done, **{k: _mean_last(history, k, GOAL_WINDOW)
                                                       for k in TRAIN_METRICS},
                                      "seconds": round(time.time() - t0, 1)})
                    break
    seconds = time.time() - t0
    steps = len(history)
    rec = {"variant": cfg.name, "steps": steps, "seconds": round(seconds, 1),
           "compile_seconds": round(compile_s, 1),
           "seconds_per_step": round((seconds - compile_s) / max(steps - 1, 1), 4),
           "train": {k: _mean_last(history, k, min(final_window, steps)) for k in TRAIN_METRICS},
           "goal_step": goal_step, "curve": curve, "valid": {}}
    if score and cfg.evaluation.num_chains > 0:
        t1 = time.time()
        rec["valid"] = trainer.evaluate(jax.device_get(state))
        rec["eval_seconds"] = round(time.time() - t1, 1)
    return rec


def single_chain_dataset(chain_file: str | Path, out_dir: Path) -> Path:
    """A one-chain foldlite dataset at ``out_dir`` from a PDB/mmCIF file (the first protein
    chain), built by the ``foldlite data structures`` code path."""

    chain_file = Path(chain_file)
    if not chain_file.is_file():
        raise ConfigError(f"{chain_file}: no such structure file")
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(chain_file, Path(tmp) / chain_file.name)
        build_from_structures(tmp, out_dir, chains="first", min_length=10, overwrite=True)
    return out_dir


def run_ablation(base: str, base_overrides: Sequence[str], variants: Sequence[Variant], *,
                 steps: int, out_dir: Path, until_step: int | None = None,
                 eval_chains: int = 8, use_ema: bool = True,
                 overfit: str | Path | None = None, fape_goal: float = 0.2,
                 lddt_goal: float = 0.9, curve_every: int = 100,
                 log: Callable[[str], None] | None = None) -> list[dict]:
    """Run every variant (one after another) and append its record to
    ``out_dir/ablation.jsonl``. With ``overfit`` (a structure file), the single-chain overfit
    replaces the dataset and the validation set, and a run stops at the goal."""
    out_dir = Path(out_dir).expanduser()
    out_dir.mkdir(parents=True, exist_ok=True)
    base_overrides = list(base_overrides)
    if overfit is not None:
        ds = single_chain_dataset(overfit, out_dir / "overfit_dataset")
        base_overrides = [f"data.path={ds}", *OVERFIT_OVERRIDES, *base_overrides]
    else:
        base_overrides = [f"evaluation.num_chains={eval_chains}", "evaluation.interval=0",
                          f"evaluation.use_ema={'true' if use_ema else 'false'}",
                          *base_overrides]
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise ConfigError(f"variant names must be unique: {names}")
    records = []
    for v in variants:
        run_dir = out_dir / v.name
        cfg, opts = variant_config(base, base_overrides, v, steps, run_dir)
        if log:
            log(f"variant {v.name}: {' '.join(v.overrides) or '(base)'}")
        rec = run_variant(cfg, opts, until_step=until_step,
                          stop_at_goal=overfit is not None, fape_goal=fape_goal,
                          lddt_goal=lddt_goal, curve_every=curve_every,
                          score=overfit is None, log=log)
        rec["overrides"] = list(v.overrides)
        rec["base"] = {"config": base, "overrides": base_overrides}
        rec["score_params"] = "ema" if use_ema else "raw"
        rec["overfit"] = str(overfit) if overfit is not None else None
        rec["time"] = time.time()
        records.append(rec)
        with open(out_dir / "ablation.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(rec, default=fileio._json_default) + "\n")
        if log:
            log(format_table([rec], overfit is not None).splitlines()[-1])
    return records


def _fmt(x: Any, spec: str = ".3f") -> str:
    if x is None:
        return "-"
    if isinstance(x, float) and not math.isfinite(x):
        return "nan"
    return format(x, spec)


def format_table(records: Sequence[dict], overfit: bool = False) -> str:
    """One row per variant: steps, seconds, final train FAPE / distogram / lDDT-CA and the
    validation lDDT-CA and TM-score (overfit: the goal step instead of validation)."""
    if overfit:
        head = ["variant", "steps", "seconds", "s/step", "fape", "distogram", "lddt_ca",
                "goal_step"]
    else:
        head = ["variant", "steps", "seconds", "s/step", "fape", "distogram", "lddt_ca",
                "val_lddt_ca", "val_tm"]
    rows = []
    for r in records:
        t = r["train"]
        row = [r["variant"], str(r["steps"]), _fmt(r["seconds"], ".0f"),
               _fmt(r["seconds_per_step"], ".2f"), _fmt(t["fape"]), _fmt(t["distogram"]),
               _fmt(t["lddt_ca"])]
        if overfit:
            row.append(_fmt(r.get("goal_step"), "d"))
        else:
            v = r.get("valid") or {}
            row += [_fmt(v.get("lddt_ca")), _fmt(v.get("tm_score"))]
        rows.append(row)
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(head)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(lines)


def format_curves(records: Sequence[dict]) -> str:
    """The overfit curves: per variant, FAPE / distogram / lDDT-CA every ``curve_every``
    steps (means over the last ``GOAL_WINDOW`` steps)."""
    lines = []
    for r in records:
        lines.append(f"{r['variant']}: " + "; ".join(
            f"{p['step']}: fape {p['fape']:.3f} (final {p['fape_final']:.3f}) "
            f"dgram {p['distogram']:.3f} lddt {p['lddt_ca']:.3f}" for p in r["curve"]))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line of ``scripts/ablate.py``."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="small", help="base training config (name or YAML)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override of the base config for every variant (repeatable)")
    ap.add_argument("--variant", action="append", default=[], metavar="'NAME: K=V ...'",
                    help="a variant: name, colon, overrides (repeatable)")
    ap.add_argument("--variants", metavar="FILE.yaml",
                    help="variants from a YAML mapping name -> list of overrides")
    ap.add_argument("--steps", type=int, default=300, help="steps per variant")
    ap.add_argument("--until-step", type=int, default=None, metavar="N",
                    help="stop each variant after N steps (the schedule spans --steps)")
    ap.add_argument("--eval-chains", type=int, default=8, help="validation chains scored")
    ap.add_argument("--raw", action="store_true", help="score the raw params, not the EMA")
    ap.add_argument("--out", default="~/.cache/foldlite/ablation", help="output folder")
    ap.add_argument("--overfit", metavar="CHAIN_FILE",
                    help="single-chain overfit on this PDB/mmCIF file (stops at the goal)")
    ap.add_argument("--fape-goal", type=float, default=0.2)
    ap.add_argument("--lddt-goal", type=float, default=0.9)
    ap.add_argument("--curve-every", type=int, default=100)
    args = ap.parse_args(argv)

    variants = [parse_variant(s) for s in args.variant]
    if args.variants:
        variants += load_variants(args.variants)
    if not variants:
        variants = [Variant("base")]

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    records = run_ablation(args.config, args.set, variants, steps=args.steps,
                           out_dir=Path(args.out), until_step=args.until_step,
                           eval_chains=args.eval_chains,
                           use_ema=not args.raw, overfit=args.overfit,
                           fape_goal=args.fape_goal, lddt_goal=args.lddt_goal,
                           curve_every=args.curve_every, log=log)
    print(format_table(records, overfit=args.overfit is not None))
    if args.overfit:
        print(format_curves(records))
    print(f"records: {Path(args.out).expanduser() / 'ablation.jsonl'}")
    return 0
