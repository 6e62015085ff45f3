"""``foldlite train``: train a model from a YAML config (``foldlite.train.trainer``).

    foldlite train --config tiny [--set key=value ...] [--resume]
                   [--until-step N] [--time-limit SECONDS] [--time-budget SECONDS]
                   [--init-weights FILE.npz]
                   [--coordinator HOST:PORT --num-processes P --process-id I]

Prints one JSON line (step reached, why it stopped, run folder, weights, speed) from process 0.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

import jax

from foldlite.train.config import load_train_config
from foldlite.train.devices import initialize_distributed
from foldlite.train.trainer import Trainer


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
