"""Inference: a network's parameters on a device, run on one chain padded to a length bucket.

The one layer below prediction (``foldlite.pipeline``), evaluation (``foldlite evaluate``) and
the trainer's validation; it imports no training code.

    predictor = load_predictor("weights.npz", device="gpu")     # or Predictor(config, params)
    result = predictor(make_features(aatype))                   # InferenceResult, cut to [L]

* ``Predictor(config, params, ...)``: the parameters on ``device`` and the jitted forward with
  recycles. A chain of ``L`` residues is padded to ``length_bucket(L)`` (or the smallest of
  ``buckets``), so chains of varied lengths compile a few executables; the number of recycles is
  a runtime argument and never recompiles. Executables are shared by every ``Predictor`` of the
  same model config in a process (a trainer builds one per validation), and the traced program
  persists across processes (``foldlite.cache.PersistentJit``).
* ``load_predictor(weights, device=..., chunk_size=...)``: a weights file
  (``foldlite.model.weights_io``; default: the shipped model) as a ``Predictor``; the last two
  loaded stay in memory.
* ``init_params(config, seed)``: random parameters of a model config (untrained weights for
  tests and notebooks).
* ``InferenceResult``: atoms, CA trace, pLDDT [L] (0-100), PAE [L, L] (Angstrom, at most
  ``heads.MAX_PAE``) and pTM of one run.
* ``compiler_options()``: the XLA options every ``jax.jit`` of foldlite uses: ``FAST_COMPILE``
  with ``FOLDLITE_FAST_COMPILE=1`` (tests and CI), else XLA's defaults.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from foldlite import fileio
from foldlite.cache import PersistentJit, enable_compilation_cache
from foldlite.data.features import Features, length_bucket, make_features
from foldlite.device import select_device
from foldlite.errors import InputError
from foldlite.model.config import ModelConfig, load_model_config
from foldlite.model.heads import pae_from_logits, plddt_from_logits, ptm_from_logits
from foldlite.model.model import make_model
from foldlite.model.weights_io import default_weights_path, load_weights

#: XLA options for programs where compile time matters more than run time: the backend's
#: cheapest optimisation level compiles in about half the time and runs slower.
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def compiler_options() -> dict | None:
    """XLA options for ``jax.jit``: ``FAST_COMPILE`` with the environment variable
    ``FOLDLITE_FAST_COMPILE=1`` (for tests and CI, never for real training), else None."""
    if os.environ.get("FOLDLITE_FAST_COMPILE", "") not in ("", "0"):
        return dict(FAST_COMPILE)
    return None


def init_params(config: ModelConfig | str | os.PathLike = "tiny", seed: int = 0
                ) -> tuple[Any, ModelConfig]:
    """Random parameters for a model config (a name like 'tiny', a YAML path or a
    ``ModelConfig``); returns ``(params, config)``."""
    enable_compilation_cache()
    cfg = load_model_config(config) if isinstance(config, (str, os.PathLike)) else config
    feats = make_features(np.arange(16, dtype=np.int32) % 20)
    init = jax.jit(lambda rng, f: make_model(cfg).init(rng, f, num_recycles=0, is_training=False))
    rng = jax.random.PRNGKey(seed)
    # Initialisation runs once: XLA's cheapest optimisation level compiles it ~3x faster.
    fn = init.lower(rng, feats).compile(compiler_options=FAST_COMPILE)
    params = jax.tree_util.tree_map(np.asarray, fn(rng, feats))
    return params, cfg


def pad_features(features: Features, n: int) -> Features:
    """``features`` of one chain [L] as numpy arrays padded to ``n`` >= L residues."""
    L = int(np.asarray(features.aatype).shape[0])
    if n == L:
        return jax.tree_util.tree_map(np.asarray, features)
    prof = np.asarray(features.profile) if float(np.asarray(features.has_profile)) > 0 else None
    return make_features(np.asarray(features.aatype), prof, np.asarray(features.residue_index),
                         pad_to=n)


@dataclasses.dataclass(frozen=True)
class InferenceResult:
    """One run of the network on one chain of ``L`` residues (numpy, padding cut off).

    Attributes:
      atom37: float32 [L, 37, 3] atom positions (Angstrom); ``atom37_mask`` float32 [L, 37].
      ca: float32 [L, 3] CA positions (the final backbone frames' origins).
      plddt: float32 [L] predicted lDDT-CA, 0-100.
      pae: float32 [L, L] predicted aligned error (Angstrom, 0..``heads.MAX_PAE``).
      ptm: predicted TM-score (0-1).
      padded_length: the length bucket the chain ran at.
      timings: seconds spent compiling (``compile``, 0 when the executable existed) and running
        (``model``).
    """

    atom37: np.ndarray
    atom37_mask: np.ndarray
    ca: np.ndarray
    plddt: np.ndarray
    pae: np.ndarray
    ptm: float
    padded_length: int
    timings: dict[str, float]


def _forward(config: ModelConfig, sample: bool) -> Callable:
    """``(params, rng, features [N], num_recycles) -> outputs [N]`` of ``config``'s network."""
    transformed = make_model(config)

    def infer(params, rng, features, num_recycles):
        out = transformed.apply(params, rng, features, num_recycles=num_recycles,
                                is_training=sample)
        return {
            "atom37": out.atom37, "atom37_mask": out.atom37_mask, "ca": out.frames.trans,
            "plddt": plddt_from_logits(out.plddt_logits),
            "pae": pae_from_logits(out.pae_logits),
            "ptm": ptm_from_logits(out.pae_logits, features.mask),
        }
    return infer


#: (config, sample, compiler options) -> the jitted forward, shared by every Predictor
_PROGRAMS: dict[tuple, Any] = {}
#: (program key, padded length, device) -> (executable, seconds it took to compile)
_EXECUTABLES: dict[tuple, tuple[Callable, float]] = {}


def _program(config: ModelConfig, sample: bool) -> tuple[tuple, Any]:
    """The jitted forward and its key: a ``PersistentJit`` (the traced program persists
    across processes), or with ``compiler_options()`` a ``jax.jit`` with those options (an
    exported program is compiled with XLA's defaults)."""
    opts = compiler_options()
    key = (config, bool(sample), tuple(sorted((opts or {}).items())))
    if key not in _PROGRAMS:
        fn = _forward(config, bool(sample))
        if opts:
            _PROGRAMS[key] = jax.jit(fn, compiler_options=opts)
        else:
            # The trace depends on the model config and on dropout, which the closure holds.
            _PROGRAMS[key] = PersistentJit(fn, "model.infer", key=repr((config, bool(sample))))
    return key, _PROGRAMS[key]


class Predictor:
    """A network ready to run: its parameters on ``device``, its config and provenance.

    Args:
      config: the ``ModelConfig``.
      params: its parameters (Haiku dict; put on ``device``).
      device: a ``jax.Device`` (default: JAX's default device).
      num_recycles: recycles when a call gives none (default: the config's).
      buckets: the padded lengths (default: ``length_bucket``'s); one bucket, e.g. ``(256,)``,
        compiles the network once for every chain up to that length.
      name, path, sha256, meta: where the weights came from (``load_predictor`` fills them).

    ``compiled`` holds the executables this predictor used, by (padded length, sample).
    """

    def __init__(self, config: ModelConfig, params: Any, *, device: Any = None,
                 num_recycles: int | None = None, buckets: tuple[int, ...] | None = None,
                 name: str = "model", path: Path | None = None, sha256: str | None = None,
                 meta: dict | None = None):
        self.config = config
        self.device = device if device is not None else jax.devices()[0]
        self.params = jax.device_put(params, self.device)
        self.num_recycles = (int(config.recycle.num_recycles) if num_recycles is None
                             else int(num_recycles))
        self.buckets = tuple(buckets) if buckets else None
        self.name, self.path, self.sha256, self.meta = name, path, sha256, dict(meta or {})
        self.compiled: dict[tuple[int, bool], Callable] = {}

    @property
    def weights_info(self) -> dict[str, Any]:
        return {"name": self.name, "path": None if self.path is None else str(self.path),
                "sha256": self.sha256, "meta": self.meta}

    def bucket(self, length: int) -> int:
        """The padded length a chain of ``length`` residues runs at."""
        return length_bucket(length, self.buckets) if self.buckets else length_bucket(length)

    def compile(self, features: Features, sample: bool = False) -> tuple[Callable, float]:
        """The executable for padded ``features`` [N]; returns (fn, seconds spent compiling
        now: 0 when it existed).

        ``sample``: dropout on (the network's training-time noise), which makes runs with
        different seeds differ; off gives the deterministic prediction.
        """
        n = int(features.aatype.shape[-1])
        if (n, bool(sample)) in self.compiled:
            return self.compiled[n, bool(sample)], 0.0
        prog_key, prog = _program(self.config, sample)
        key = (prog_key, n, str(self.device))
        t_compile = 0.0
        if key not in _EXECUTABLES:
            t0 = time.perf_counter()
            rng = jax.device_put(jax.random.PRNGKey(0), self.device)
            feats = jax.device_put(features, self.device)
            args = (self.params, rng, feats, jnp.int32(0))
            fn = prog.compiled(*args) if isinstance(prog, PersistentJit) else prog
            if fn is getattr(prog, "jitted", prog):  # no persistent program: compile it here
                fn = fn.lower(*args).compile()
            t_compile = time.perf_counter() - t0
            _EXECUTABLES[key] = (fn, t_compile)
        fn = _EXECUTABLES[key][0]
        self.compiled[n, bool(sample)] = fn
        return fn, t_compile

    def __call__(self, features: Features, *, seed: int = 0, num_recycles: int | None = None,
                 sample: bool = False) -> InferenceResult:
        """Run the network on one chain's unpadded ``features`` [L]."""
        L = int(np.asarray(features.aatype).shape[0])
        n = self.bucket(L)
        padded = pad_features(features, n)
        fn, t_compile = self.compile(padded, sample)
        recycles = self.num_recycles if num_recycles is None else int(num_recycles)
        t0 = time.perf_counter()
        rng = jax.device_put(jax.random.PRNGKey(int(seed)), self.device)
        out = fn(self.params, rng, jax.device_put(padded, self.device), jnp.int32(recycles))
        out = jax.tree_util.tree_map(np.asarray, jax.device_get(out))
        return InferenceResult(
            atom37=out["atom37"][:L], atom37_mask=out["atom37_mask"][:L], ca=out["ca"][:L],
            plddt=out["plddt"][:L], pae=out["pae"][:L, :L], ptm=float(out["ptm"]),
            padded_length=n,
            timings={"compile": t_compile, "model": time.perf_counter() - t0})


_PREDICTOR_CACHE: dict[tuple, Predictor] = {}
_PREDICTOR_CACHE_SIZE = 2


def load_predictor(weights: str | os.PathLike | None = None, *, device: Any = None,
                   chunk_size: int | None = None, cache: bool = True) -> Predictor:
    """Load a weights file (``weights_io.save_weights`` format) onto a device.

    The last two predictors loaded stay in memory (with their executables): loading the same
    file (same sha256) for the same device and chunk size again returns the same ``Predictor``
    unless ``cache=False``.

    Args:
      weights: the .npz file; default the shipped model (``weights_io.default_weights_path``).
      device: 'cpu', 'gpu', 'tpu', a ``jax.Device``, or None for JAX's default.
      chunk_size: override the config's chunk size (bounds memory for long sequences; 0: off).
    """
    if weights is None:
        path = default_weights_path()
    else:
        path = Path(weights)
        if not os.path.isfile(path):  # (False, not OSError, for an impossible file name)
            raise InputError(f"{path}: weights file not found")
    enable_compilation_cache()
    if chunk_size is not None and chunk_size < 0:
        raise InputError(f"--chunk-size {chunk_size}: must be >= 0 (0 turns chunking off)")
    dev = device if device is not None and not isinstance(device, str) else select_device(device)
    digest = fileio.sha256_file(path)
    key = (str(path.resolve()), digest, str(dev), chunk_size)
    if cache and key in _PREDICTOR_CACHE:
        return _PREDICTOR_CACHE[key]
    params, cfg, meta = load_weights(path)
    if chunk_size is not None:
        cfg = dataclasses.replace(cfg, chunk_size=int(chunk_size))
    predictor = Predictor(cfg, params, device=dev, name=str(meta.get("name") or path.stem),
                          path=path.resolve(), sha256=digest, meta=meta)
    if cache:
        while len(_PREDICTOR_CACHE) >= _PREDICTOR_CACHE_SIZE:
            _PREDICTOR_CACHE.pop(next(iter(_PREDICTOR_CACHE)))
        _PREDICTOR_CACHE[key] = predictor
    return predictor
