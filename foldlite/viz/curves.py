"""Learning curves from a training log (``metrics.jsonl`` of ``foldlite train``)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from foldlite.errors import InputError
from foldlite.viz.plots import new_figure

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure


def read_training_log(path: str | os.PathLike) -> list[dict]:
    """Records of a training log (``metrics.jsonl`` of ``foldlite train``: one JSON per line)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: training log not found")
    records = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError as e:
                raise InputError(f"{path}: line {lineno}: not JSON ({e})") from None
            if not isinstance(rec, dict):
                raise InputError(f"{path}: line {lineno}: expected a JSON object")
            records.append(rec)
    return records


def plot_training_curves(log: str | os.PathLike | Sequence[dict],
                         keys: Sequence[str] | None = None, *, title: str | None = None
                         ) -> "Figure":
    """Learning curves from a training log: one panel per metric, against the step.

    Training records (``kind: train``) are lines; validation records (``kind: eval``) are
    markers on the panel of the same metric. ``keys`` defaults to the loss, FAPE and lDDT-CA
    (those present), plus validation TM-score / GDT-TS when logged.
    """
    records = read_training_log(log) if isinstance(log, (str, os.PathLike)) else list(log)
    train = [r for r in records if r.get("kind") == "train" and "step" in r]
    evals = [r for r in records if r.get("kind") == "eval" and "step" in r]
    if not train and not evals:
        raise ValueError("the training log has no train or eval records")

    def present(k: str, recs: list[dict]) -> bool:
        return any(isinstance(r.get(k), (int, float)) for r in recs)

    if keys is None:
        keys = [k for k in ("loss", "fape", "lddt_ca") if present(k, train) or present(k, evals)]
        keys += [k for k in ("tm_score", "gdt_ts") if present(k, evals) and k not in keys]
    keys = [k for k in keys if present(k, train) or present(k, evals)]
    if not keys:
        raise ValueError("none of the requested metrics is in the training log")
    n = len(keys)
    cols = min(n, 3)
    rows = (n + cols - 1) // cols
    fig = new_figure(figsize=(4.2 * cols, 3.2 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).reshape(-1)
    for ax, key in zip(axes, keys):
        for recs, label, kw in ((train, "train", {"lw": 1.2}),
                                (evals, "validation", {"marker": "o", "ls": "--", "ms": 4})):
            pts = [(r["step"], r[key]) for r in recs if isinstance(r.get(key), (int, float))
                   and np.isfinite(r[key])]
            if pts:
                x, y = zip(*pts)
                ax.plot(x, y, label=label, **kw)
        ax.set_xlabel("step")
        ax.set_ylabel(key)
        ax.set_title(key)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in axes[n:]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title)
    return fig
