"""Weight files: a network's parameters, model config and metadata in one ``.npz``, read without
pickle (``numpy.load(..., allow_pickle=False)``), and the one rule for the shipped weights.

Prediction, evaluation and training read and write weights here; training checkpoints
(``foldlite.train.checkpoint``) store their pytrees with the same helpers.

``save_weights(path, params, model_cfg, meta)`` / ``load_weights(path)``. Arrays of the file:

- ``params.keys``: str [P], the ``jax.tree_util.keystr`` of each parameter
  (``"['structure_module/ipa']['w']"`` for Haiku's ``{module: {name: array}}`` dicts);
- ``params.paths``: str [P], each parameter's key path as a JSON list
  (``["structure_module/ipa", "w"]``), from which the nested dicts are rebuilt;
- ``params.00000`` ... ``params.{P-1:05d}``: the parameter arrays in that order;
- ``config_yaml``: str [], the model config (``foldlite.config.to_dict``) as YAML;
- ``meta_json``: str [], free-form metadata (steps, data, metrics) as JSON;
- ``format``: str [], ``"foldlite-weights-v1"``.

Every file is written atomically (``foldlite.fileio.save_npz``: temporary name, then rename).
``DEFAULT_WEIGHTS`` is the shipped model (``foldlite/weights/default.npz``);
``default_weights_path()`` returns it or says that this copy of foldlite has none.
"""

from __future__ import annotations

import dataclasses
import json
import os
import zipfile
import zlib
from pathlib import Path
from typing import Any

import jax
import numpy as np
import yaml

from foldlite import fileio
from foldlite.config import to_dict
from foldlite.errors import FoldliteError, InputError
from foldlite.model.config import model_config_from_dict

WEIGHTS_FORMAT = "foldlite-weights-v1"

#: The shipped model.
DEFAULT_WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "default.npz"


def default_weights_path() -> Path:
    """The shipped weights (``DEFAULT_WEIGHTS``); ``FoldliteError`` when this copy has none."""
    path = DEFAULT_WEIGHTS
    if not path.is_file():
        raise FoldliteError(
            f"no shipped model weights at {path} (this copy of foldlite has none); pass "
            "--weights FILE with weights written by `foldlite train` "
            "(foldlite.model.weights_io.save_weights)")
    return path


# --------------------------------------------------------------------------------------------
# Pytrees flattened by key path
# --------------------------------------------------------------------------------------------

def flatten_tree(tree: Any) -> tuple[list[str], list[np.ndarray]]:
    """Leaves of ``tree`` as numpy arrays, named by ``jax.tree_util.keystr`` of their key path."""
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    keys = [jax.tree_util.keystr(kp) for kp, _ in leaves]
    if len(set(keys)) != len(keys):
        raise ValueError("pytree has duplicate key paths; cannot flatten it by key")
    return keys, [np.asarray(jax.device_get(v)) for _, v in leaves]


def pack_tree(prefix: str, tree: Any) -> dict[str, np.ndarray]:
    """``{prefix}.keys`` (the leaves' key strings) and ``{prefix}.00000``... (the leaves)."""
    keys, values = flatten_tree(tree)
    out: dict[str, np.ndarray] = {f"{prefix}.keys": np.asarray(keys, dtype=np.str_)}
    for i, v in enumerate(values):
        out[f"{prefix}.{i:05d}"] = v
    return out


def unpack_tree(prefix: str, arrays: dict[str, np.ndarray], where: str) -> dict[str, np.ndarray]:
    """``{keystr: array}`` of the group ``prefix`` written by ``pack_tree``."""
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


def read_str(arrays: dict[str, np.ndarray], name: str, where: str) -> str:
    """The string scalar ``name`` of a file's arrays."""
    if name not in arrays:
        raise InputError(f"{where}: missing '{name}'")
    return str(arrays[name].reshape(-1)[0]) if arrays[name].size else ""


def read_npz(path: str | os.PathLike, what: str) -> dict[str, np.ndarray]:
    """The arrays of a foldlite ``.npz`` (``what``: the file kind, for messages); never unpickles."""
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
    arrays = pack_tree("params", params)
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
    arrays = read_npz(path, "weights")
    fmt = read_str(arrays, "format", where)
    if fmt != WEIGHTS_FORMAT:
        raise InputError(f"{where}: format {fmt!r}, expected {WEIGHTS_FORMAT!r}")
    values = unpack_tree("params", arrays, where)
    if "params.paths" not in arrays or arrays["params.paths"].size != len(values):
        raise InputError(f"{where}: missing or damaged 'params.paths'")
    paths = [json.loads(str(p)) for p in arrays["params.paths"].reshape(-1)]
    leaves = [v.astype(np.float32) if np.issubdtype(v.dtype, np.floating) else v
              for v in values.values()]
    params = nested_dict_from_paths(paths, leaves)
    cfg_dict = yaml.safe_load(read_str(arrays, "config_yaml", where)) or {}
    model_cfg = model_config_from_dict(cfg_dict, where=f"{where}: config_yaml")
    meta = json.loads(read_str(arrays, "meta_json", where) or "{}")
    return params, model_cfg, meta
