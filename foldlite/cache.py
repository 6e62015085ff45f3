"""foldlite's user cache folder, JAX's persistent compilation cache in it, and traced programs.

``cache_dir()`` is ``$FOLDLITE_CACHE_DIR``, else ``$XDG_CACHE_HOME/foldlite``, else
``~/.cache/foldlite``. ``enable_compilation_cache()`` is called by every stage that compiles
(prediction, refinement) so a second process does not recompile; ``FOLDLITE_NO_COMPILATION_CACHE=1``
turns it off (and the program cache below with it).

JAX's compilation cache saves the XLA compile, but a new process still traces the Python
function and lowers it to StableHLO before it can look the executable up: for the network and the
minimiser loop that is most of the time a second ``foldlite predict`` spends before it computes
anything (~1 s per program on a 2-core CPU). ``persistent_jit`` also keeps the traced program:
the first process exports it (``jax.export``, a versioned StableHLO serialisation, no pickle) to
``cache_dir()/programs``, later processes deserialise it and only compile it (an XLA cache hit).
A program file is named by what shapes the trace: the function, its static arguments, the
structure, shapes and dtypes of its array arguments, the platform, the JAX settings that change
a trace (x64, default matmul precision, PRNG implementation), and a fingerprint of
foldlite's source files and of the jax, jaxlib, optax and dm-haiku versions, so an edit to the
code or an upgrade never reuses a stale program (files of an older fingerprint are removed when
a program is written anew).

JAX is imported inside the functions that use it: the MSA and template searches take
``cache_dir()`` from here and never need JAX, which takes seconds to import.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import os
import threading
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from foldlite import fileio


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
    import jax  # deferred: JAX (see the module docstring)

    if "dir" in _CACHE_STATE:
        return _CACHE_STATE["dir"]
    if os.environ.get("FOLDLITE_NO_COMPILATION_CACHE", "") not in ("", "0"):
        _CACHE_STATE["dir"] = None
        return None
    configured = jax.config.jax_compilation_cache_dir
    if configured and path is None:
        _CACHE_STATE["programs"] = cache_dir() / "programs"
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
    _CACHE_STATE["programs"] = cache_dir() / "programs"
    jax.config.update("jax_compilation_cache_dir", str(folder))
    # Cache every executable: even the small ones cost a noticeable time to recompile on CPU.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    _CACHE_STATE["dir"] = folder
    return folder


def program_dir() -> Path | None:
    """Folder of the exported programs (``persistent_jit``), or None when the caches are off."""
    enable_compilation_cache()
    return _CACHE_STATE.get("programs") if _CACHE_STATE.get("dir") is not None else None


_FINGERPRINT: list[str] = []


def code_fingerprint() -> str:
    """sha256 over foldlite's source files and the versions of the libraries that trace
    programs (computed once per process)."""
    if not _FINGERPRINT:
        h = hashlib.sha256()
        root = Path(__file__).resolve().parent
        for f in sorted(root.rglob("*.py")):
            h.update(str(f.relative_to(root)).encode())
            h.update(f.read_bytes())
        for dist in ("jax", "jaxlib", "optax", "dm-haiku"):
            try:
                h.update(f"{dist}={metadata.version(dist)}".encode())
            except metadata.PackageNotFoundError:
                h.update(f"{dist}=none".encode())
        _FINGERPRINT.append(h.hexdigest())
    return _FINGERPRINT[0]


@dataclasses.dataclass
class _Program:
    call: Callable | None   # compiled, takes the flat array leaves (None: not exportable)
    out_tree: Any           # treedef of the output when the program returns flat leaves

    def run(self, leaves) -> Any:
        import jax  # deferred: JAX (see the module docstring)

        out = self.call(*(_conform(x) for x in leaves))
        return out if self.out_tree is None else jax.tree_util.tree_unflatten(self.out_tree, out)


def _flatten(dynamic: tuple):
    import jax  # deferred: JAX (see the module docstring)

    return jax.tree_util.tree_flatten(dynamic)


class PersistentJit:
    """``jax.jit`` whose traced program also persists across processes (module docstring).

    Args:
      fun: the function; its arguments are array pytrees except ``static_argnames`` (hashable
        values with a stable ``repr``, e.g. frozen dataclasses, that shape the program).
      name: the program's file name prefix (``module.function``).
      static_argnames: as for ``jax.jit``.
      out_tree: None when ``fun`` returns dicts, tuples and lists of arrays (``jax.export``
        keeps that structure); else ``out_tree(*dynamic_args) -> PyTreeDef`` of the output
        (for custom pytree nodes such as NamedTuple states, which are returned as flat leaves).
      key: extra text for the program's name: anything ``fun`` closes over that shapes its trace
        (e.g. a model config).

    Calling it runs the program; ``compiled(*args, **kwargs)`` returns the ready callable (taking
    the same arguments) without running it. With the caches off
    (``FOLDLITE_NO_COMPILATION_CACHE=1``), or when a program cannot be exported, it is a plain
    ``jax.jit``.
    """

    def __init__(self, fun: Callable, name: str, *, static_argnames: Sequence[str] = (),
                 out_tree: Callable | None = None, key: str = "") -> None:
        import jax  # deferred: JAX (see the module docstring)

        self.fun = fun
        self.name = name
        self.static_argnames = tuple(static_argnames)
        self.out_tree = out_tree
        self.key = key
        self._signature = inspect.signature(fun)
        self.jitted = jax.jit(fun, static_argnames=self.static_argnames)  # plain jit
        self._programs: dict[Any, _Program] = {}
        self._lock = threading.Lock()
        self.loaded = 0     # programs read from the cache folder (for tests and benchmarks)
        self.exported = 0   # programs traced and written

    def _cache_size(self) -> int:
        """Programs held in this process (as ``jax.jit``'s ``_cache_size``)."""
        return len(self._programs) + self.jitted._cache_size()

    def _split(self, args, kwargs):
        bound = self._signature.bind(*args, **kwargs)
        bound.apply_defaults()
        static = {k: v for k, v in bound.arguments.items() if k in self.static_argnames}
        dynamic = tuple(v for k, v in bound.arguments.items() if k not in self.static_argnames)
        return static, dynamic

    def __call__(self, *args, **kwargs):
        static, dynamic = self._split(args, kwargs)
        leaves, in_tree = _flatten(dynamic)
        prog = self._lookup(static, dynamic, leaves, in_tree)
        if prog is None:
            return self.jitted(*args, **kwargs)
        return prog.run(leaves)

    def compiled(self, *args, **kwargs) -> Callable:
        """The compiled program for these arguments (loaded, exported, or ``self.jitted``),
        as a callable taking the same arguments."""
        static, dynamic = self._split(args, kwargs)
        prog = self._lookup(static, dynamic, *_flatten(dynamic))
        if prog is None:
            return self.jitted
        return lambda *a, **k: prog.run(_flatten(self._split(a, k)[1])[0])

    def _lookup(self, static: dict, dynamic: tuple, leaves, in_tree) -> _Program | None:
        """The program for these arguments, or None where ``self.jitted`` serves (caches off,
        tracers, not exportable)."""
        import jax  # deferred: JAX (see the module docstring)

        folder = program_dir()
        if folder is None or any(isinstance(x, jax.core.Tracer) for x in leaves):
            return None  # off, or inside another transformation: trace through as jax.jit does
        specs = tuple(_spec(x) for x in leaves)
        platform = _platform(leaves)
        mem_key = (in_tree, specs, tuple(sorted(static.items())), platform)
        prog = self._programs.get(mem_key)
        if prog is None:
            with self._lock:
                prog = self._programs.get(mem_key)
                if prog is None:
                    prog = self._load_or_export(folder, static, dynamic, leaves, in_tree,
                                                specs, platform)
                    self._programs[mem_key] = prog
        return prog if prog.call is not None else None

    def _load_or_export(self, folder: Path, static: dict, dynamic: tuple, leaves, in_tree,
                        specs, platform: str) -> _Program:
        import jax  # deferred: JAX (see the module docstring)
        from jax import export

        fp = code_fingerprint()
        desc = repr((self.key, sorted(static.items()), str(in_tree),
                     [(s.shape, str(s.dtype)) for s in specs], platform,
                     [str(getattr(jax.config, flag, None)) for flag in _TRACE_FLAGS]))
        digest = hashlib.sha256(desc.encode()).hexdigest()[:24]
        path = folder / f"{self.name}-{fp[:12]}-{digest}.jaxexport"
        out_tree = self.out_tree(*dynamic) if self.out_tree is not None else None
        leaves = [_conform(x) for x in leaves]
        if path.is_file():
            try:
                exp = export.deserialize(bytearray(path.read_bytes()))
                # Compiled here, for these arguments' devices (an XLA cache hit mostly).
                call = jax.jit(exp.call).lower(*leaves).compile()
                self.loaded += 1
                return _Program(call=call, out_tree=out_tree)
            except Exception:  # noqa: BLE001 - a damaged or foreign file: trace it again
                pass
        fun, flat = self.fun, out_tree is not None

        def program(*flat_args):
            out = fun(*jax.tree_util.tree_unflatten(in_tree, flat_args), **static)
            return tuple(jax.tree_util.tree_leaves(out)) if flat else out

        try:
            exp = export.export(jax.jit(program), platforms=[platform])(*specs)
            data = exp.serialize()
        except Exception as err:  # noqa: BLE001 - not exportable here: plain jit
            warnings.warn(f"{self.name}: program not cached ({type(err).__name__}: {err})",
                          RuntimeWarning)
            return _Program(call=None, out_tree=None)
        try:
            fileio.write_bytes(path, bytes(data))
            for old in folder.glob(f"{self.name}-*.jaxexport"):
                if not old.name.startswith(f"{self.name}-{fp[:12]}-"):
                    old.unlink(missing_ok=True)
        except OSError:
            pass  # a read-only cache: the program still runs, it is traced next time too
        self.exported += 1
        return _Program(call=jax.jit(exp.call).lower(*leaves).compile(), out_tree=out_tree)


def _spec(x):
    import jax  # deferred: JAX (see the module docstring)

    dtype = x.dtype if hasattr(x, "dtype") else np.asarray(x).dtype
    return jax.ShapeDtypeStruct(np.shape(x), jax.dtypes.canonicalize_dtype(dtype))


#: JAX settings that change what a trace produces (part of a program's name).
_TRACE_FLAGS = ("jax_enable_x64", "jax_default_matmul_precision", "jax_default_prng_impl",
                "jax_threefry_partitionable")


def _conform(x):
    """``x`` as a strongly typed array of its canonical dtype (what the compiled program takes:
    Python scalars, numpy arrays and weakly typed arrays otherwise differ from its types)."""
    import jax  # deferred: JAX (see the module docstring)
    import jax.numpy as jnp

    if isinstance(x, jax.Array) and not x.weak_type:
        return x
    spec = _spec(x)
    return jnp.asarray(x, dtype=spec.dtype)


def _platform(leaves) -> str:
    """The export platform (``jax.export``'s names: cpu, cuda, rocm, tpu) of the first device
    array among ``leaves``, else of JAX's default backend."""
    import jax  # deferred: JAX (see the module docstring)
    from jax import export

    name = None
    for x in leaves:
        if isinstance(x, jax.Array):
            try:
                name = next(iter(x.devices())).platform
            except Exception:  # noqa: BLE001 - e.g. a deleted array
                pass
            break
    return export_platform(name, export.default_export_platform())


def export_platform(device_platform: str | None, default: str) -> str:
    """``jax.export``'s name for a device's platform: a device reports "gpu", an export names
    the GPU stack ("cuda" or "rocm", that of the default backend); None gives ``default``."""
    if device_platform is None:
        return default
    if device_platform == "gpu":
        return default if default in ("cuda", "rocm") else "cuda"
    return device_platform


def persistent_jit(fun: Callable | None = None, *, name: str | None = None,
                   static_argnames: Sequence[str] = (), out_tree: Callable | None = None,
                   key: str = ""):
    """Decorator form of ``PersistentJit`` (``name`` defaults to ``module.function``)."""
    def wrap(f: Callable) -> PersistentJit:
        return PersistentJit(f, name or f"{f.__module__.removeprefix('foldlite.')}.{f.__name__}",
                             static_argnames=static_argnames, out_tree=out_tree, key=key)
    return wrap(fun) if fun is not None else wrap
