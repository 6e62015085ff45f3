"""Atomic file writes: write to a temporary name in the same folder, then rename.

A crash or a kill never leaves a half-written file under the final name (``os.replace`` is atomic
on POSIX and Windows when source and target are on the same file system).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Collection, Iterator

import numpy as np

from foldlite.errors import OutputError


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs: Any) -> Iterator[IO]:
    """Open a temporary file beside ``path`` for writing; rename it to ``path`` on success.

    On an exception the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp creates 0600 files; give the result the usual umask-based permissions.
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _why(e: OSError) -> str:
    return e.strerror or type(e).__name__


def check_output_dir(path: str | os.PathLike, what: str = "output folder") -> Path:
    """Create the folder ``path`` (and its parents) and prove it writable with a probe file;
    returns it. Raises ``OutputError`` with one line when it cannot be (an existing file, no
    permission, a read-only or full file system, a path under a file or /proc)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{path}: exists and is not a folder (the {what} must be a folder)")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"{path}: cannot create the {what}: {_why(e)}") from None
    try:
        fd, probe = tempfile.mkstemp(prefix=".foldlite-probe.", suffix=".tmp", dir=path)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(b"probe\n")
                fh.flush()
                os.fsync(fh.fileno())
        finally:
            os.unlink(probe)
    except OSError as e:
        raise OutputError(f"{path}: cannot write into the {what}: {_why(e)}") from None
    return path


def check_output_file(path: str | os.PathLike, suffixes: tuple[str, ...] = ()) -> Path:
    """Check, before the work, that the file ``path`` can be written: not a folder, a known
    suffix (when ``suffixes`` are given), its folder creatable and writable. Raises
    ``OutputError`` with one line."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path}: is a folder; give a file name"
                          + (f" ({', '.join(suffixes)})" if suffixes else ""))
    if suffixes and not path.name.lower().endswith(suffixes):
        raise OutputError(f"{path}: unknown output format; the name must end with "
                          f"{', '.join(suffixes)}")
    check_output_dir(path.parent if str(path.parent) else Path("."), what="folder of the output")
    return path


def remove_stale_temporaries(folder: str | os.PathLike, name: str) -> list[Path]:
    """Remove what a killed ``atomic_open(folder/name)`` left: ``.{name}.*.tmp`` files."""
    removed = []
    folder = Path(folder)
    try:
        candidates = list(folder.glob(f".{name}.*.tmp"))
    except OSError:
        return removed
    for p in candidates:
        with contextlib.suppress(OSError):
            if p.is_file():
                p.unlink()
                removed.append(p)
    return removed


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w", encoding="utf-8") as fh:
        fh.write(text)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_open(path, "wb") as fh:
        fh.write(data)


def write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> None:
    write_text(path, json.dumps(obj, indent=indent, default=_json_default) + "\n")


def jsonable(obj: Any, *, decimals: int | None = None, drop: Collection[str] = (),
             nan_to_none: bool = True) -> Any:
    """Plain JSON values (dicts with str keys, lists, str, int, float, bool, None) from nested
    dicts, lists, tuples and dataclasses, numpy arrays and scalars, array-likes and paths; any
    other object becomes its ``str``.

    decimals: float arrays are rounded to this many decimals (None: as they are).
    drop: dict keys and dataclass fields left out (e.g. a report's bulky ``trajectory``).
    nan_to_none: non-finite floats become None (JSON has no NaN); False keeps them (Python's
      ``json`` then writes NaN and Infinity).
    """
    def convert(o: Any) -> Any:
        if dataclasses.is_dataclass(o) and not isinstance(o, type):
            return {f.name: convert(getattr(o, f.name)) for f in dataclasses.fields(o)
                    if f.name not in drop}
        if isinstance(o, dict):
            return {str(k): convert(v) for k, v in o.items() if k not in drop}
        if isinstance(o, (list, tuple)):
            return [convert(v) for v in o]
        if isinstance(o, np.ndarray):
            if o.dtype.kind not in "fc":
                return o.tolist()
            if decimals is not None:
                o = np.round(o.astype(np.float64), decimals)
            return convert(o.tolist())
        if isinstance(o, (np.floating, float)):
            f = float(o)
            return None if nan_to_none and not math.isfinite(f) else f
        if isinstance(o, np.integer):
            return int(o)
        if isinstance(o, np.bool_):
            return bool(o)
        if isinstance(o, (str, int, bool)) or o is None:
            return o
        if isinstance(o, Path):
            return str(o)
        if hasattr(o, "__array__"):
            return convert(np.asarray(o))
        return str(o)

    return convert(obj)


def _json_default(obj: Any) -> Any:
    """The ``default`` of ``json.dumps``: numpy arrays and scalars and paths converted by
    ``jsonable`` (non-finite values kept); ``TypeError`` for anything else."""
    if isinstance(obj, (np.ndarray, np.generic, Path)):
        return jsonable(obj, nan_to_none=False)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def save_npz(path: str | os.PathLike, arrays: dict[str, np.ndarray], compress: bool = True) -> None:
    """Write arrays to ``path`` (.npz) atomically. Only numeric/string arrays, never objects."""
    for k, v in arrays.items():
        if np.asarray(v).dtype == object:
            raise TypeError(f"refusing to save object array {k!r} (needs pickle)")
    with atomic_open(path, "wb") as fh:
        (np.savez_compressed if compress else np.savez)(fh, **arrays)


def load_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read an .npz without pickle (``allow_pickle=False``) into a dict of arrays."""
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            b = fh.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()
