"""Export the EMA weights of a training checkpoint as a shipped weights file.

    python scripts/export_weights.py RUN_DIR/checkpoints/ckpt_00000300.npz -o foldlite/weights/default.npz

A run stopped by --time-limit or a signal leaves checkpoints but no ``weights.npz`` (that is
written only when the run reaches its configured steps); this turns the newest checkpoint into the
weights format of ``foldlite.model.weights_io.save_weights`` (float32, pickle-free).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runs from a checkout too

from foldlite.data.features import make_features
from foldlite.fileio import load_npz
from foldlite.model import make_model
from foldlite.model.config import model_config_from_dict
from foldlite.model.weights_io import save_weights, unpack_tree
from foldlite.train.checkpoint import unflatten_like


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("-o", "--out", required=True)
    ap.add_argument("--raw", action="store_true", help="export the raw params, not the EMA")
    args = ap.parse_args()
    arrays = load_npz(args.checkpoint)
    extra = json.loads(str(arrays["extra_json"]))
    model_cfg = model_config_from_dict(extra["model"], where=f"{args.checkpoint}: model")
    model = make_model(model_cfg)
    template = model.init(jax.random.PRNGKey(0), make_features(np.zeros(8, np.int32)),
                          num_recycles=0)
    group = "params" if args.raw else "ema_params"
    params = unflatten_like(template, unpack_tree(group, arrays, args.checkpoint),
                            args.checkpoint)
    step = int(arrays["step"])
    meta = {"train_config": extra.get("config"), "step": step,
            "train_seconds": extra.get("train_seconds"), "hardware": extra.get("hardware"),
            "source_checkpoint": args.checkpoint.split("/")[-1], "params": group}
    save_weights(args.out, params, model_cfg, meta)
    n = sum(int(np.size(x)) for x in jax.tree_util.tree_leaves(params))
    print(f"wrote {args.out}: {n} parameters ({group}) from step {step}")


if __name__ == "__main__":
    main()
