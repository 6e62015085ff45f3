"""Checkpoints and weight files: pytrees flattened by key path into ``.npz``, read without pickle.

Two file kinds, both plain ``.npz`` archives (``numpy.load(..., allow_pickle=False)`` reads them):

* **Weights** (what ``predict`` and ``evaluate`` load, what the package ships):
  ``save_weights(path, params, model_cfg, meta)`` / ``load_weights(path)``. Arrays:

  - ``params.keys``: str [P], the ``jax.tree_util.keystr`` of each parameter
    (``"['structure_module/ipa']['w']"`` for Haiku's ``{module: {name: array}}`` dicts);
  - ``params.paths``: str [P], each parameter's key path as a JSON list
    (``["structure_module/ipa", "w"]``), from which the nested dicts are rebuilt;
  - ``params.00000`` ... ``params.{P-1:05d}``: the parameter arrays in that order;
  - ``config_yaml``: str [], the model config (``foldlite.config.to_dict``) as YAML;
  - ``meta_json``: str [], free-form metadata (steps, data, metrics) as JSON;
  - ``format``: str [], ``"foldlite-weights-v1"``.

* **Training checkpoints**: ``save_checkpoint(path, state)`` / ``load_checkpoint(path, template)``
  store the pytrees of a ``TrainState`` (params, optimiser state, EMA params) the same way, one
  group each, plus the step and the PRNG key. The tree structure comes from a template (the
  freshly initialised state), so optax's named tuples round-trip exactly; a key or shape that
  does not match the template is an error, never a silent partial load.

Every file is written atomically (``foldlite.fileio.save_npz``: temporary name, then rename).
``CheckpointManager`` names checkpoints ``ckpt_{step:08d}.npz`` in one folder and keeps the last K.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import sys
import zipfile
import zlib
from pathlib import Path
from typing import Any

import jax
import numpy as np
import yaml

from foldlite import fileio
from foldlite.config import to_dict
from foldlite.errors import InputError

WEIGHTS_FORMAT = "foldlite-weights-v1"
CHECKPOINT_FORMAT = "foldlite-checkpoint-v1"


# --------------------------------------------------------------------------------------------
# Flattening pytrees by key path
# --------------------------------------------------------------------------------------------

def flatten_tree(tree: Any) -> tuple[list[str], list[np.ndarray]]:
    """Leaves of ``tree`` as numpy arrays, named by ``jax.tree_util.keystr`` of their key path."""
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    keys = [jax.tree_util.keystr(kp) for kp, _ in leaves]
    if len(set(keys)) != len(keys):
        raise ValueError("pytree has duplicate key paths; cannot flatten it by key")
    return keys, [np.asarray(jax.device_get(v)) for _, v in leaves]


def _pack(prefix: str, tree: Any) -> dict[str, np.ndarray]:
    keys, values = flatten_tree(tree)
    out: dict[str, np.ndarray] = {f"{prefix}.keys": np.asarray(keys, dtype=np.str_)}
    for i, v in enumerate(values):
        out[f"{prefix}.{i:05d}"] = v
    return out


def _unpack(prefix: str, arrays: dict[str, np.ndarray], where: str) -> dict[str, np.ndarray]:
    if f"{prefix}.keys" not in arrays:
        raise InputError(f"{where}: no '{prefix}' group (not a foldlite file, or damaged)")
    keys = [str(k) for k in arrays[f"{prefix}.keys"].reshape(-1)]
    out = {}
    for i, k in enumerate(keys):
        name = f"{prefix}.{i:05d}"
        if name not in arrays:
            raise InputError(f"{where}: array {name} ({k}) is missing")
        out[k] = arrays[name]
    return out


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


def dict_paths(tree: Any) -> list[list[str]]:
    """Key path of every leaf of a tree of string-keyed dicts (Haiku params), as lists of keys."""
    out = []
    for kp, _ in jax.tree_util.tree_flatten_with_path(tree)[0]:
        if not all(isinstance(k, jax.tree_util.DictKey) and isinstance(k.key, str) for k in kp):
            raise ValueError(f"not a tree of string-keyed dicts at {jax.tree_util.keystr(kp)}")
        out.append([k.key for k in kp])
    return out


def nested_dict_from_paths(paths: list[list[str]], values: list[np.ndarray]) -> dict:
    """Nested dicts from key paths (``dict_paths``) and their leaves."""
    root: dict = {}
    for path, v in zip(paths, values):
        node = root
        for p in path[:-1]:
            node = node.setdefault(p, {})
        node[path[-1]] = v
    return root


def _str_scalar(arrays: dict[str, np.ndarray], name: str, where: str) -> str:
    if name not in arrays:
        raise InputError(f"{where}: missing '{name}'")
    return str(arrays[name].reshape(-1)[0]) if arrays[name].size else ""


def _load(path: str | os.PathLike, what: str) -> dict[str, np.ndarray]:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: {what} file not found")
    try:
        return fileio.load_npz(path)
    except ValueError as e:
        if "pickle" in str(e):  # numpy refuses object arrays without allow_pickle
            raise InputError(f"{path}: holds pickled Python objects; foldlite {what} files must "
                             "be plain numeric arrays (as save_weights/save_checkpoint write "
                             "them), and are never unpickled") from None
        raise InputError(f"{path}: not a readable {what} file: {e}") from None
    except (OSError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as e:  # damaged
        raise InputError(f"{path}: not a readable {what} file (damaged or truncated: "
                         f"{type(e).__name__}: {e})") from None


# --------------------------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------------------------

def save_weights(path: str | os.PathLike, params: Any, model_cfg: Any,
                 meta: dict | None = None, dtype: Any = None) -> None:
    """Write model weights with their model config and metadata (atomic).

    Args:
      path: output ``.npz``.
      params: Haiku params ``{module: {name: array}}``.
      model_cfg: the ``ModelConfig`` dataclass the params belong to.
      meta: JSON-serialisable metadata (training steps, data, metrics, ...).
      dtype: optional dtype to store floating arrays in (e.g. ``np.float16`` to halve the size);
        ``load_weights`` always returns float32.
    """
    if dtype is not None:
        params = jax.tree_util.tree_map(
            lambda x: np.asarray(x, dtype) if np.issubdtype(np.asarray(x).dtype, np.floating)
            else np.asarray(x), params)
    arrays = _pack("params", params)
    arrays["params.paths"] = np.asarray([json.dumps(p) for p in dict_paths(params)],
                                        dtype=np.str_)
    cfg = to_dict(model_cfg) if dataclasses.is_dataclass(model_cfg) else model_cfg
    arrays["config_yaml"] = np.asarray(yaml.safe_dump(cfg, sort_keys=False), dtype=np.str_)
    arrays["meta_json"] = np.asarray(json.dumps(meta or {}, default=fileio._json_default,
                                                sort_keys=True), dtype=np.str_)
    arrays["format"] = np.asarray(WEIGHTS_FORMAT, dtype=np.str_)
    fileio.save_npz(path, arrays)


def load_weights(path: str | os.PathLike) -> tuple[dict, Any, dict]:
    """Read a weights file written by ``save_weights``.

    Returns:
      ``(params, model_cfg, meta)``: params as nested dicts of float32 numpy arrays, the
      ``ModelConfig`` (``foldlite.model.ModelConfig``), and the metadata dict.
    """
    where = str(path)
    arrays = _load(path, "weights")
    fmt = _str_scalar(arrays, "format", where)
    if fmt != WEIGHTS_FORMAT:
        raise InputError(f"{where}: format {fmt!r}, expected {WEIGHTS_FORMAT!r}")
    values = _unpack("params", arrays, where)
    if "params.paths" not in arrays or arrays["params.paths"].size != len(values):
        raise InputError(f"{where}: missing or damaged 'params.paths'")
    paths = [json.loads(str(p)) for p in arrays["params.paths"].reshape(-1)]
    leaves = [v.astype(np.float32) if np.issubdtype(v.dtype, np.floating) else v
              for v in values.values()]
    params = nested_dict_from_paths(paths, leaves)
    cfg_dict = yaml.safe_load(_str_scalar(arrays, "config_yaml", where)) or {}
    from foldlite.model.config import model_config_from_dict
    model_cfg = model_config_from_dict(cfg_dict, where=f"{where}: config_yaml")
    meta = json.loads(_str_scalar(arrays, "meta_json", where) or "{}")
    return params, model_cfg, meta


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
        arrays.update(_pack(g, getattr(state, g)))
    arrays["step"] = np.asarray(jax.device_get(state.step), np.int64)
    arrays["rng"] = np.asarray(jax.device_get(state.rng), np.uint32)
    arrays["extra_json"] = np.asarray(json.dumps(extra or {}, default=fileio._json_default),
                                      dtype=np.str_)
    arrays["format"] = np.asarray(CHECKPOINT_FORMAT, dtype=np.str_)
    fileio.save_npz(path, arrays, compress=False)


def load_checkpoint(path: str | os.PathLike, template: TrainState) -> tuple[TrainState, dict]:
    """Read a checkpoint into the structure of ``template``; returns ``(state, extra)``."""
    where = str(path)
    arrays = _load(path, "checkpoint")
    fmt = _str_scalar(arrays, "format", where)
    if fmt != CHECKPOINT_FORMAT:
        raise InputError(f"{where}: format {fmt!r}, expected {CHECKPOINT_FORMAT!r}")
    parts = {g: unflatten_like(getattr(template, g), _unpack(g, arrays, where), f"{where} [{g}]")
             for g in _GROUPS}
    state = TrainState(step=np.asarray(arrays["step"], np.int32),
                       rng=np.asarray(arrays["rng"], np.uint32), **parts)
    extra = json.loads(_str_scalar(arrays, "extra_json", where) or "{}")
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
        arrays = _pack(g, getattr(state, g))
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
        parts[g] = unflatten_like(getattr(template, g), _unpack(g, _load(where, "state"), where),
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
