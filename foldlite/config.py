"""Typed, frozen configuration dataclasses loaded from YAML.

Every config in foldlite is a ``@dataclasses.dataclass(frozen=True)``; nested configs are fields
whose type is another such dataclass. ``from_dict`` checks that no key is unknown and no required
key is missing, and converts lists to tuples so configs stay hashable (they are passed as static
arguments to ``jax.jit``). YAML is read with ``yaml.safe_load`` only.

``--set key=value`` overrides use dotted paths (``optimizer.lr=1e-3``); values are parsed as YAML
scalars.

Named configs ship inside the package as package data, ``foldlite/configs/<kind>/<name>.yaml``
(kinds ``model`` and ``train``), so a checkout, an editable install and an installed wheel find
them in the same place; ``config_path`` is the one rule that turns a name or a path into a file.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from foldlite.errors import ConfigError

T = TypeVar("T")

#: the shipped named configs: <package>/configs/<kind>/<name>.yaml (package data)
CONFIGS_DIR = Path(__file__).resolve().parent / "configs"


def available_configs(kind: str) -> list[str]:
    """Names of the shipped configs of ``kind`` (``model`` or ``train``)."""
    return sorted(p.stem for p in (CONFIGS_DIR / kind).glob("*.yaml"))


def config_path(kind: str, name_or_path: str | os.PathLike) -> Path:
    """The YAML file of a shipped config name (``tiny``) of ``kind``, or ``name_or_path`` itself
    when it is a path: it ends in .yaml/.yml, contains a path separator or names a file."""
    text = os.fspath(name_or_path)
    path = Path(text)
    separators = [s for s in (os.sep, os.altsep) if s]
    if path.suffix in (".yaml", ".yml") or any(s in text for s in separators) or path.is_file():
        return path
    candidate = CONFIGS_DIR / kind / f"{text}.yaml"
    if not candidate.is_file():
        raise ConfigError(f"unknown {kind} config {text!r}: available: {available_configs(kind)} "
                          "or a path to a YAML file")
    return candidate


def load_yaml(path: str | os.PathLike) -> dict:
    """Read a YAML mapping with ``safe_load``; clear errors for missing or malformed files."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys to values at the top level")
    return data


def _convert(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping for {tp.__name__}, got {value!r}")
        return from_dict(tp, value, where)
    if origin is typing.Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
        if value is None and type(None) in args:
            return None
        non_none = [a for a in args if a is not type(None)]
        last: Exception | None = None
        for a in non_none:
            try:
                return _convert(a, value, where)
            except ConfigError as e:
                last = e
        raise last or ConfigError(f"{where}: bad value {value!r}")
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        inner = args[0] if args else Any
        return tuple(_convert(inner, v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):
            # YAML 1.1 (PyYAML) reads exponents without a dot, like 3e-4, as strings
            try:
                return float(value)
            except ValueError:
                raise ConfigError(f"{where}: expected a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def from_dict(cls: type[T], data: dict, where: str = "config") -> T:
    """Build the frozen dataclass ``cls`` from ``data``; unknown or missing keys are errors."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(fields)}")
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = _convert(hints[name], data[name], f"{where}.{name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{where}: missing required key {name!r}")
    return cls(**kwargs)


def to_dict(cfg: Any) -> dict:
    """Plain dict (lists for tuples) of a config dataclass, for YAML/JSON output."""
    def conv(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: conv(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, tuple):
            return [conv(x) for x in v]
        return v
    return conv(cfg)


def apply_overrides(data: dict, overrides: list[str] | tuple[str, ...]) -> dict:
    """Apply ``key.sub=value`` overrides to a nested dict (values parsed as YAML scalars)."""
    data = copy.deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        node = data
        parts = key.strip().split(".")
        for p in parts[:-1]:
            nxt = node.get(p)
            if nxt is None:
                nxt = node[p] = {}
            if not isinstance(nxt, dict):
                raise ConfigError(f"--set {key}: {p!r} is not a section")
            node = nxt
        node[parts[-1]] = value
    return data


def load_config(cls: type[T], path: str | os.PathLike, overrides: list[str] | tuple[str, ...] = ()
                ) -> T:
    """Load ``cls`` from the YAML file ``path`` with optional ``key=value`` overrides."""
    data = apply_overrides(load_yaml(path), overrides)
    return from_dict(cls, data, where=str(path))
