"""foldlite's user cache folder and JAX's persistent compilation cache in it.

``cache_dir()`` is ``$FOLDLITE_CACHE_DIR``, else ``$XDG_CACHE_HOME/foldlite``, else
``~/.cache/foldlite``. ``enable_compilation_cache()`` is called by every stage that compiles
(prediction, refinement) so a second process does not recompile; ``FOLDLITE_NO_COMPILATION_CACHE=1``
turns it off.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any


def cache_dir() -> Path:
    """foldlite's user cache folder (not created here)."""
    env = os.environ.get("FOLDLITE_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "foldlite"


_CACHE_STATE: dict[str, Any] = {}


def enable_compilation_cache(path: str | os.PathLike | None = None) -> Path | None:
    """Turn on JAX's persistent compilation cache in ``path`` (default ``cache_dir()/jax``).

    Idempotent; leaves a cache folder the user configured for JAX alone. Returns the folder in
    use, or None when the cache is off (``FOLDLITE_NO_COMPILATION_CACHE=1``) or not writable.
    """
    import jax

    if "dir" in _CACHE_STATE:
        return _CACHE_STATE["dir"]
    if os.environ.get("FOLDLITE_NO_COMPILATION_CACHE", "") not in ("", "0"):
        _CACHE_STATE["dir"] = None
        return None
    configured = jax.config.jax_compilation_cache_dir
    if configured and path is None:
        _CACHE_STATE["dir"] = Path(configured)
        return _CACHE_STATE["dir"]
    folder = Path(path) if path is not None else cache_dir() / "jax"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError:
        warnings.warn(f"compilation cache disabled: cannot write to {folder}", RuntimeWarning)
        _CACHE_STATE["dir"] = None
        return None
    jax.config.update("jax_compilation_cache_dir", str(folder))
    # Cache every executable: even the small ones cost a noticeable time to recompile on CPU.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    _CACHE_STATE["dir"] = folder
    return folder
