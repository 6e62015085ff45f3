"""Training checkpoints: the pytrees of a ``TrainState`` in plain ``.npz`` archives, read without
pickle (``numpy.load(..., allow_pickle=False)``).

``save_checkpoint(path, state)`` / ``load_checkpoint(path, template)`` store the params, the
optimiser state and the EMA params one group each (flattened by key path, as weight files are:
``foldlite.model.weights_io``), plus the step and the PRNG key. The tree structure comes from a
template (the freshly initialised state), so optax's named tuples round-trip exactly; a key or
shape that does not match the template is an error, never a silent partial load.

Every file is written atomically (``foldlite.fileio.save_npz``: temporary name, then rename).
``CheckpointManager`` names checkpoints ``ckpt_{step:08d}.npz`` in one folder and keeps the last K.
Weight files (what ``predict`` and ``evaluate`` load) are ``foldlite.model.weights_io``'s.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import jax
import numpy as np

from foldlite import fileio
from foldlite.errors import InputError
from foldlite.model.weights_io import pack_tree, read_npz, read_str, unpack_tree

CHECKPOINT_FORMAT = "foldlite-checkpoint-v1"


# --------------------------------------------------------------------------------------------
# Pytrees rebuilt from a template
# --------------------------------------------------------------------------------------------

def unflatten_like(template: Any, values: dict[str, np.ndarray], where: str = "checkpoint"
                   ) -> Any:
    """Rebuild a pytree with the structure of ``template`` from ``{keystr: array}``.

    Raises ``InputError`` when a key is missing or extra, or a shape or dtype kind differs.
    """
    leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
    want = [jax.tree_util.keystr(kp) for kp, _ in leaves]
    missing = [k for k in want if k not in values]
    extra = sorted(set(values) - set(want))
    if missing or extra:
        raise InputError(f"{where}: parameters do not match the model: missing {missing[:5]}"
                         f"{'...' if len(missing) > 5 else ''}, unexpected {extra[:5]}"
                         f"{'...' if len(extra) > 5 else ''}")
    out = []
    for (kp, ref), k in zip(leaves, want):
        v = values[k]
        ref_shape = np.shape(ref)
        if tuple(v.shape) != tuple(ref_shape):
            raise InputError(f"{where}: {k} has shape {tuple(v.shape)}, the model expects "
                             f"{tuple(ref_shape)}")
        dtype = ref.dtype if hasattr(ref, "dtype") else np.asarray(ref).dtype
        if np.dtype(dtype).kind != np.asarray(v).dtype.kind:
            raise InputError(f"{where}: {k} has dtype {v.dtype}, the model expects {dtype}")
        out.append(np.asarray(v, dtype=dtype))
    return jax.tree_util.tree_unflatten(treedef, out)


# --------------------------------------------------------------------------------------------
# Training checkpoints
# --------------------------------------------------------------------------------------------

@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class TrainState:
    """Everything a training run needs to continue exactly.

    Attributes:
      params: model parameters (Haiku dict).
      opt_state: optax optimiser state.
      ema_params: exponential moving average of ``params``.
      step: int32 [] number of optimiser steps taken (skipped non-finite steps included).
      rng: uint32 [2] base PRNG key; step ``s`` uses ``fold_in(rng, s)``.
    """

    params: Any
    opt_state: Any
    ema_params: Any
    step: Any
    rng: Any


_GROUPS = ("params", "opt_state", "ema_params")


def save_checkpoint(path: str | os.PathLike, state: TrainState, extra: dict | None = None
                    ) -> None:
    """Write ``state`` to ``path`` atomically (``extra``: JSON metadata, e.g. the config)."""
    arrays: dict[str, np.ndarray] = {}
    for g in _GROUPS:
        arrays.update(pack_tree(g, getattr(state, g)))
    arrays["step"] = np.asarray(jax.device_get(state.step), np.int64)
    arrays["rng"] = np.asarray(jax.device_get(state.rng), np.uint32)
    arrays["extra_json"] = np.asarray(json.dumps(extra or {}, default=fileio._json_default),
                                      dtype=np.str_)
    arrays["format"] = np.asarray(CHECKPOINT_FORMAT, dtype=np.str_)
    fileio.save_npz(path, arrays, compress=False)


def load_checkpoint(path: str | os.PathLike, template: TrainState) -> tuple[TrainState, dict]:
    """Read a checkpoint into the structure of ``template``; returns ``(state, extra)``."""
    where = str(path)
    arrays = read_npz(path, "checkpoint")
    fmt = read_str(arrays, "format", where)
    if fmt != CHECKPOINT_FORMAT:
        raise InputError(f"{where}: format {fmt!r}, expected {CHECKPOINT_FORMAT!r}")
    parts = {g: unflatten_like(getattr(template, g), unpack_tree(g, arrays, where),
                               f"{where} [{g}]")
             for g in _GROUPS}
    state = TrainState(step=np.asarray(arrays["step"], np.int32),
                       rng=np.asarray(arrays["rng"], np.uint32), **parts)
    extra = json.loads(read_str(arrays, "extra_json", where) or "{}")
    return state, extra


def save_state_parts(directory: str | os.PathLike, state: TrainState, extra: dict | None = None
                     ) -> list[Path]:
    """Write ``state`` as one file per group (``params.npz``, ``opt_state.npz``,
    ``ema_params.npz``, same arrays as ``save_checkpoint``) and ``state.json`` (step, PRNG key,
    ``extra``), each atomically: smaller files than one checkpoint, for transfers that limit the
    size of a file. ``load_state_parts`` reads them back exactly."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for g in _GROUPS:
        arrays = pack_tree(g, getattr(state, g))
        arrays["format"] = np.asarray(CHECKPOINT_FORMAT, dtype=np.str_)
        fileio.save_npz(directory / f"{g}.npz", arrays, compress=False)
        out.append(directory / f"{g}.npz")
    meta = {"format": CHECKPOINT_FORMAT, "step": int(jax.device_get(state.step)),
            "rng": [int(x) for x in np.asarray(jax.device_get(state.rng), np.uint32)],
            "extra": extra or {}}
    fileio.write_json(directory / "state.json", meta)
    return out + [directory / "state.json"]


def load_state_parts(directory: str | os.PathLike, template: TrainState
                     ) -> tuple[TrainState, dict]:
    """Read a state written by ``save_state_parts`` into the structure of ``template``;
    returns ``(state, extra)``."""
    directory = Path(directory)
    meta_path = directory / "state.json"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{meta_path}: no such file (not a saved training state)") from None
    except json.JSONDecodeError as e:
        raise InputError(f"{meta_path}: not valid JSON ({e})") from None
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise InputError(f"{meta_path}: format {meta.get('format')!r}, expected "
                         f"{CHECKPOINT_FORMAT!r}")
    parts = {}
    for g in _GROUPS:
        where = str(directory / f"{g}.npz")
        parts[g] = unflatten_like(getattr(template, g),
                                  unpack_tree(g, read_npz(where, "state"), where),
                                  f"{where} [{g}]")
    state = TrainState(step=np.asarray(meta["step"], np.int32),
                       rng=np.asarray(meta["rng"], np.uint32), **parts)
    return state, meta.get("extra", {})


class CheckpointManager:
    """``ckpt_{step:08d}.npz`` files in ``directory``; keeps the newest ``keep``."""

    _NAME = re.compile(r"^ckpt_(\d{8,})\.npz$")

    def __init__(self, directory: str | os.PathLike, keep: int = 3):
        self.directory = Path(directory)
        self.keep = max(1, int(keep))

    def steps(self) -> list[int]:
        if not self.directory.is_dir():
            return []
        found = (self._NAME.match(p.name) for p in self.directory.iterdir())
        return sorted(int(m.group(1)) for m in found if m)

    def path(self, step: int) -> Path:
        return self.directory / f"ckpt_{int(step):08d}.npz"

    def latest(self) -> Path | None:
        s = self.steps()
        return self.path(s[-1]) if s else None

    def load_latest(self, template: TrainState) -> tuple[Path, TrainState, dict]:
        """The newest intact checkpoint: ``(path, state, extra)``.

        A checkpoint that cannot be read (damaged, truncated, not matching ``template``) is
        reported on stderr by name and the next older one is tried; ``InputError`` when there
        is none or none is intact (naming every file tried)."""
        steps = self.steps()
        if not steps:
            raise InputError(f"--resume: no checkpoint in {self.directory}")
        refused = []
        for step in reversed(steps):
            path = self.path(step)
            try:
                state, extra = load_checkpoint(path, template)
            except InputError as e:
                refused.append(str(e))
                print(f"foldlite train: warning: skipping a damaged checkpoint: {e}",
                      file=sys.stderr)
                continue
            if refused:
                print(f"foldlite train: resuming from the newest intact checkpoint {path} "
                      f"(step {step}) instead", file=sys.stderr)
            return path, state, extra
        raise InputError(f"--resume: no intact checkpoint in {self.directory}: "
                         + "; ".join(refused))

    def save(self, state: TrainState, extra: dict | None = None) -> Path:
        step = int(jax.device_get(state.step))
        p = self.path(step)
        save_checkpoint(p, state, extra)
        for old in self.steps()[:-self.keep]:
            try:
                self.path(old).unlink()
            except FileNotFoundError:
                pass
        return p
