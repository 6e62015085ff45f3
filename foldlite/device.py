"""Devices: choosing the JAX device, its memory limit, and the versions a result records.

``select_device('gpu')`` returns the first GPU JAX sees or says why there is none;
``device_memory_limit(device)`` the bytes a computation may use there (an accelerator's free
memory, on a CPU the available RAM); ``describe_device`` and ``versions`` the provenance that a
prediction's ``info`` records.
"""

from __future__ import annotations

import platform

import haiku
import jax
import jaxlib
import numpy as np

from foldlite.errors import FoldliteError, InputError
from foldlite.system import available_ram
from foldlite.version import __version__

#: device names ``select_device`` (and ``--device``) takes
DEVICES = ("cpu", "gpu", "tpu")


def select_device(name: str | None = None):
    """The first JAX device of ``name`` ('cpu', 'gpu', 'tpu'), or JAX's default device."""
    if name is None:
        return jax.devices()[0]
    if name not in DEVICES:
        raise InputError(f"--device {name!r}: choose one of {', '.join(DEVICES)}")
    try:
        devices = jax.devices(name)
    except RuntimeError:
        devices = []
    if not devices:
        available = sorted({d.platform for d in jax.devices()})
        hint = " (install jax with CUDA support: pip install 'foldlite[gpu]')" if name == "gpu" else ""
        raise FoldliteError(f"--device {name}: no {name.upper()} visible to JAX; available: "
                            f"{', '.join(available)}{hint}")
    return devices[0]


def device_memory_limit(device) -> int | None:
    """Bytes a computation may use on ``device``: an accelerator's memory limit (JAX's
    ``memory_stats``), on a CPU the available RAM (``MemAvailable``); None when unknown."""
    if getattr(device, "platform", "cpu") != "cpu":
        try:
            stats = device.memory_stats() or {}
        except Exception:  # noqa: BLE001 - not every backend reports memory
            stats = {}
        limit = stats.get("bytes_limit")
        return int(limit) - int(stats.get("bytes_in_use", 0)) if limit else None
    return available_ram()


def describe_device(device) -> str:
    """``platform:id (kind)``, e.g. ``gpu:0 (NVIDIA H100 80GB HBM3)``."""
    kind = getattr(device, "device_kind", "") or ""
    return f"{device.platform}:{device.id}" + (f" ({kind})" if kind and kind != device.platform
                                               else "")


def versions() -> dict[str, str]:
    """Versions of foldlite, JAX, jaxlib, Haiku, NumPy and Python."""
    return {"foldlite": __version__, "jax": jax.__version__,
            "jaxlib": jaxlib.__version__, "haiku": haiku.__version__,
            "numpy": np.__version__, "python": platform.python_version()}
