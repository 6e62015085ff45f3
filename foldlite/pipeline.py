"""The prediction pipeline: sequence -> features -> model -> atoms -> refinement -> ``Prediction``.

Python API:

* ``load_model(weights=None, device=None, chunk_size=None) -> Model``: weights written by
  ``foldlite.train.checkpoint.save_weights`` (default: the shipped ``foldlite/weights/default.npz``),
  placed on a device, with one compiled executable per (length bucket, recycles) kept in memory.
* ``predict(query, ...) -> Prediction``: one sequence (string, ``SequenceRecord`` or a one-record
  FASTA file) end to end: features (optionally an MSA profile), the network for every seed
  (models ranked by mean pLDDT), then refinement of the best model.
* ``predict_batch(input, outdir, ...) -> BatchResult``: what ``foldlite predict`` runs: every
  record of a FASTA file into its own output folder (``foldlite.outputs``), with a progress bar
  (plain lines when stderr is not a terminal), failing records reported and skipped, complete
  records skipped on a re-run. Checked before any work: the input, the weights and the device,
  then the output folder (created and probed with a file); before each record: its memory
  estimate against the device's (``check_memory``).

Compilation: sequences are padded to a few length buckets (``features.length_bucket``) so a batch
of varied lengths compiles a few executables, and JAX's persistent compilation cache lives in a
user cache folder (``$FOLDLITE_CACHE_DIR``, else ``$XDG_CACHE_HOME/foldlite``, else
``~/.cache/foldlite``; subfolder ``jax``) so that a second run of the command does not
recompile. ``FOLDLITE_NO_COMPILATION_CACHE=1`` turns the cache off.

The command line (``foldlite predict`` / ``python -m foldlite predict``) is ``add_arguments`` and
``run`` below.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

import foldlite
from foldlite.cache import cache_dir, enable_compilation_cache  # noqa: F401 (public here too)
from foldlite.errors import FoldliteError, InputError, OutputError, printable

#: The shipped model.
DEFAULT_WEIGHTS = Path(__file__).resolve().parent / "weights" / "default.npz"
DEVICES = ("cpu", "gpu", "tpu")


# ---------------------------------------------------------------------------------------------
# Environment: cache folder, devices
# ---------------------------------------------------------------------------------------------

# ``cache_dir`` and ``enable_compilation_cache`` live in ``foldlite.cache`` (imported above), so
# that the physics stage can use them without importing the pipeline.


def select_device(name: str | None = None):
    """The first JAX device of ``name`` ('cpu', 'gpu', 'tpu'), or JAX's default device."""
    import jax

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
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


#: atoms per residue the refinement's memory estimate assumes (atom14)
_ATOMS_PER_RESIDUE = 14


def memory_estimate(model: "Model", length: int, refine: bool = True) -> dict[str, int]:
    """Estimated peak bytes of predicting ``length`` residues with ``model``: the network at
    the padded length (``foldlite.model.memory``) and, with ``refine``, the refinement
    (neighbour lists at their largest capacities)."""
    from foldlite.data.features import length_bucket
    from foldlite.model.memory import network_bytes

    out = {"network": network_bytes(model.config, length_bucket(length))}
    if refine:
        from foldlite.physics.neighbors import list_bytes
        out["refine"] = 2 * list_bytes(length * _ATOMS_PER_RESIDUE)
    return out


def _gib_text(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"


def check_memory(model: "Model", length: int, *, refine: bool = True, limit: int | None = None,
                 record: str = "query") -> None:
    """Refuse, before it runs, a record whose estimated memory exceeds ``limit`` (default: the
    device's, ``device_memory_limit``): ``FoldliteError`` naming the length, the estimate, the
    limit and what to do."""
    from foldlite.data.features import length_bucket
    from foldlite.model.memory import best_chunk_size, longest_length

    if limit is None:
        limit = device_memory_limit(model.device)
        where = ("available RAM" if getattr(model.device, "platform", "cpu") == "cpu"
                 else f"memory of {describe_device(model.device)}")
    else:
        where = "--memory-limit"
    if limit is None:
        return
    need = memory_estimate(model, length, refine)
    stage, worst = max(need.items(), key=lambda kv: kv[1])
    if worst <= limit:
        return
    chunk = int(model.config.chunk_size)
    bucket = length_bucket(length)
    hints = []
    if stage == "network":
        best, with_chunk = best_chunk_size(model.config, bucket)
        if best != chunk and with_chunk < worst:
            hints.append(f"--chunk-size {best} (estimate {_gib_text(with_chunk)})")
        longest = longest_length(model.config, limit)
        hints.append(f"--max-length {longest}" if longest else "--max-length")
    else:
        hints.append("--no-refine")
    hints.append("a device with more memory")
    raise FoldliteError(
        f"record {record!r}: {length} residues (padded to {bucket}) need an estimated "
        f"{_gib_text(worst)} for the {stage}"
        + (f" (chunk size {chunk})" if stage == "network" else "")
        + f", more than the {_gib_text(limit)} of {where}; refused before running. Try "
        + ", or ".join(hints))


def describe_device(device) -> str:
    kind = getattr(device, "device_kind", "") or ""
    return f"{device.platform}:{device.id}" + (f" ({kind})" if kind and kind != device.platform
                                               else "")


def versions() -> dict[str, str]:
    import jax
    import jaxlib

    import haiku
    return {"foldlite": foldlite.__version__, "jax": jax.__version__,
            "jaxlib": jaxlib.__version__, "haiku": haiku.__version__,
            "numpy": np.__version__, "python": platform.python_version()}


# ---------------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Model:
    """A network ready to predict: its parameters on ``device``, config and provenance.

    Executables are compiled ahead of time per (padded length ``N``, recycles) and kept in
    ``compiled``; the persistent cache makes a later process load them instead of compiling.
    """

    params: Any
    config: Any                     # foldlite.model.config.ModelConfig
    meta: dict
    name: str
    sha256: str | None
    path: Path | None
    device: Any
    compiled: dict = dataclasses.field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        from foldlite.model import make_model
        self._transformed = make_model(self.config)

    @property
    def weights_info(self) -> dict[str, Any]:
        return {"name": self.name, "path": None if self.path is None else str(self.path),
                "sha256": self.sha256, "meta": self.meta}

    def _infer_fn(self, sample: bool) -> Callable:
        """The network's inference program (a ``cache.PersistentJit``: a later process loads
        the traced program instead of tracing the network again)."""
        from foldlite.cache import PersistentJit
        from foldlite.model.heads import pae_from_logits, plddt_from_logits, ptm_from_logits

        transformed = self._transformed

        def infer(params, rng, features, num_recycles):
            out = transformed.apply(params, rng, features, num_recycles=num_recycles,
                                    is_training=sample)
            return {
                "atom37": out.atom37, "atom37_mask": out.atom37_mask,
                "plddt": plddt_from_logits(out.plddt_logits),
                "pae": pae_from_logits(out.pae_logits),
                "ptm": ptm_from_logits(out.pae_logits, features.mask),
            }
        # The trace depends on the model config and on dropout, which the closure holds.
        return PersistentJit(infer, "model.infer", key=repr((self.config, bool(sample))))

    def compile(self, features: Any, sample: bool = False) -> tuple[Callable, float]:
        """The executable for ``features``' padded length ``N`` (the number of recycles is a
        runtime argument, so it does not recompile); returns (fn, seconds spent compiling).

        ``sample``: dropout on (the network's training-time noise), which makes models from
        different seeds differ; off gives the deterministic prediction.
        """
        import jax
        import jax.numpy as jnp

        key = (int(features.aatype.shape[-1]), bool(sample))
        if key in self.compiled:
            return self.compiled[key], 0.0
        t0 = time.perf_counter()
        rng = jax.device_put(jax.random.PRNGKey(0), self.device)
        feats = jax.device_put(features, self.device)
        prog = self._infer_fn(sample)
        fn = prog.compiled(self.params, rng, feats, jnp.int32(0))
        if fn is prog.jitted:  # caches off: compile ahead of time as before
            fn = fn.lower(self.params, rng, feats, jnp.int32(0)).compile()
        self.compiled[key] = fn
        return fn, time.perf_counter() - t0

    def __call__(self, features: Any, seed: int, num_recycles: int, sample: bool = False
                 ) -> tuple[dict, dict]:
        """Run the network on padded ``features`` ([N]); returns (numpy outputs, timings)."""
        import jax
        import jax.numpy as jnp

        fn, t_compile = self.compile(features, sample)
        t0 = time.perf_counter()
        rng = jax.device_put(jax.random.PRNGKey(int(seed)), self.device)
        out = fn(self.params, rng, jax.device_put(features, self.device),
                 jnp.int32(num_recycles))
        out = jax.tree_util.tree_map(np.asarray, jax.device_get(out))
        return out, {"compile": t_compile, "model": time.perf_counter() - t0}


def init_params(config: Any = "tiny", seed: int = 0) -> tuple[Any, Any]:
    """Random parameters for a model config (a name like 'tiny', a YAML path or a ModelConfig)."""
    import jax

    from foldlite.data.features import make_features
    from foldlite.model import make_model
    from foldlite.model.config import load_model_config

    enable_compilation_cache()
    cfg = load_model_config(config) if isinstance(config, (str, os.PathLike)) else config
    feats = make_features(np.arange(16, dtype=np.int32) % 20)
    init = jax.jit(lambda rng, f: make_model(cfg).init(rng, f, num_recycles=0, is_training=False))
    rng = jax.random.PRNGKey(seed)
    # Initialisation runs once: XLA's cheapest optimisation level compiles it ~3x faster.
    fn = init.lower(rng, feats).compile(compiler_options=_FAST_COMPILE)
    params = jax.tree_util.tree_map(np.asarray, fn(rng, feats))
    return params, cfg


#: XLA options for programs that run once (compile time matters more than run time).
_FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


_MODEL_CACHE: dict[tuple, Model] = {}
_MODEL_CACHE_SIZE = 2


def load_model(weights: str | os.PathLike | None = None, *, device: Any = None,
               chunk_size: int | None = None, cache: bool = True) -> Model:
    """Load weights (``save_weights`` format) onto a device.

    The last two models loaded stay in memory (with their compiled executables): loading the
    same file (same sha256) for the same device and chunk size again returns the same ``Model``
    unless ``cache=False``.

    Args:
      weights: the .npz file; default the shipped model ``foldlite/weights/default.npz``.
      device: 'cpu', 'gpu', 'tpu', a ``jax.Device``, or None for JAX's default.
      chunk_size: override the config's chunk size (bounds memory for long sequences; 0: off).
    """
    import jax

    from foldlite import fileio
    from foldlite.train.checkpoint import load_weights

    if weights is None:
        path = DEFAULT_WEIGHTS
        if not path.is_file():
            raise FoldliteError(
                f"no shipped model weights at {path} (this copy of foldlite has none); pass "
                "--weights FILE with weights written by `foldlite train` "
                "(foldlite.train.checkpoint.save_weights)")
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
    if cache and key in _MODEL_CACHE:
        return _MODEL_CACHE[key]
    params, cfg, meta = load_weights(path)
    if chunk_size is not None:
        cfg = dataclasses.replace(cfg, chunk_size=int(chunk_size))
    name = str(meta.get("name") or path.stem)
    model = Model(params=jax.device_put(params, dev), config=cfg, meta=meta, name=name,
                  sha256=digest, path=path.resolve(), device=dev)
    if cache:
        while len(_MODEL_CACHE) >= _MODEL_CACHE_SIZE:
            _MODEL_CACHE.pop(next(iter(_MODEL_CACHE)))
        _MODEL_CACHE[key] = model
    return model


# ---------------------------------------------------------------------------------------------
# One prediction
# ---------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class RankedModel:
    """One seed's network output (unrefined), for ranking."""

    seed: int
    protein: Any            # foldlite.protein.Protein, pLDDT in B-factors
    plddt: np.ndarray       # [L]
    pae: np.ndarray | None  # [L, L]
    ptm: float | None

    @property
    def mean_plddt(self) -> float:
        return float(np.mean(self.plddt))


@dataclasses.dataclass(frozen=True)
class Prediction:
    """The result for one sequence.

    protein: the final model (refined unless refinement was off), pLDDT [L] in the B-factors;
    unrefined: the best seed's network output; plddt [L] (0-100), pae [L, L] (Angstrom) and ptm
    of the best seed; ranked: every seed's model, best first; refine_report: the
    ``RefineReport`` (None without refinement); trajectory: the refinement trajectory when asked
    for; timings: seconds per stage; info: weights, versions, device, settings.
    """

    id: str
    name: str
    description: str
    sequence: str
    protein: Any
    unrefined: Any
    plddt: np.ndarray
    pae: np.ndarray | None
    ptm: float | None
    seed: int
    ranked: tuple[RankedModel, ...]
    refine_report: Any
    timings: dict[str, float]
    info: dict[str, Any]
    trajectory: Any = None

    @property
    def mean_plddt(self) -> float:
        return float(np.mean(self.plddt))

    @property
    def length(self) -> int:
        return len(self.sequence)

    def to_pdb(self) -> str:
        from foldlite.protein import to_pdb_string
        return to_pdb_string(self.protein)

    def save(self, outdir: str | os.PathLike, **kwargs: Any) -> Path:
        """Write every output into ``outdir/<name>`` (see ``foldlite.outputs.write_record``)."""
        from foldlite.outputs import write_record
        return write_record(outdir, self, **kwargs)


def _as_record(query: Any, max_length: int | None):
    from foldlite.sequences import SequenceRecord, parse_sequence, read_fasta

    if isinstance(query, SequenceRecord):
        if max_length is not None and query.length > max_length:
            raise InputError(f"record {query.id!r}: {query.length} residues, more than "
                             f"--max-length {max_length}")
        return query
    if isinstance(query, os.PathLike) or (isinstance(query, str) and _looks_like_path(query)):
        records = read_fasta(query, max_length=max_length)
        if len(records) != 1:
            raise InputError(f"{query}: holds {len(records)} records; predict() takes one "
                             "(use predict_batch for many)")
        return records[0]
    if isinstance(query, str):
        return parse_sequence(query, name="query", max_length=max_length)
    raise TypeError(f"cannot predict a {type(query).__name__}: give a sequence, a "
                    "SequenceRecord or a FASTA path")


def _looks_like_path(text: str) -> bool:
    return os.path.exists(text) or any(c in text for c in "/\\.") or text.endswith(
        (".fasta", ".fa", ".faa"))


def _msa_profile(msa: Any, record) -> tuple[np.ndarray | None, dict | None]:
    from foldlite.sequences import Msa, msa_profile, read_a3m

    if msa is None:
        return None, None
    if isinstance(msa, Msa):
        m, source = msa, None
    else:
        m, source = read_a3m(msa, query=record), str(msa)
    if m.length != record.length:
        raise InputError(f"{source or 'MSA'}: {m.length} columns for a query of "
                         f"{record.length} residues")
    return msa_profile(m, weighting=True), {"path": source, "num_sequences": m.num_sequences}


#: ``max_peptide_bond`` of a prediction's refinement: any gap (finite, for strict JSON readers
#: of scores.json's ``refine_config``).
_ANY_GAP = 1e9


def _refine_config(steps: int | None):
    """The refinement settings: the defaults, with ``max_steps`` (per round) = ``steps``, and
    every pair of consecutive residues bonded.

    A predicted chain is one unbroken sequence: a C(i)-N(i+1) gap in the network's model (a
    weakly trained network leaves some, up to ~17 A) is its error, to be closed, not a chain
    break as in a crystal structure, which is what ``max_peptide_bond`` tells apart otherwise.
    """
    from foldlite.physics.refine import RefineConfig

    if steps is not None and steps < 0:
        raise InputError(f"--refine-steps {steps}: must be >= 0")
    config = RefineConfig(max_peptide_bond=_ANY_GAP)
    return config if steps is None else dataclasses.replace(config, max_steps=int(steps))


def predict(query: Any, *, model: Model | None = None, weights: str | os.PathLike | None = None,
            msa: Any = None, num_recycles: int | None = None, num_seeds: int = 1, seed: int = 0,
            refine: bool = True, refine_steps: int | None = None, max_length: int | None = None,
            chunk_size: int | None = None, device: Any = None, record_trajectory: bool = False,
            name: str | None = None) -> Prediction:
    """Predict the structure of one sequence.

    Args:
      query: a one-letter sequence, a ``SequenceRecord`` or a FASTA file with one record.
      model: a loaded ``Model`` (default: ``load_model(weights, device=..., chunk_size=...)``).
      msa: an A3M path or ``Msa`` whose first row is the query: profile features (with sequence
        weighting) instead of the one-hot sequence.
      num_recycles: recycling passes (default: the model config's).
      num_seeds: 1 (default): the deterministic prediction. More: sample ``num_seeds`` models
        with the network's dropout on, seeded ``seed .. seed+num_seeds-1`` (as ColabFold's
        dropout sampling), and keep the one with the highest mean pLDDT (all are in
        ``Prediction.ranked``).
      refine, refine_steps: refine the best model (``foldlite.physics.refine``) and how far.
      max_length: refuse longer sequences (``InputError``).
      record_trajectory: keep the refinement trajectory (``Prediction.trajectory``).
      name: output folder name (default: a safe form of the record id).
    """
    from foldlite.config import to_dict
    from foldlite.data.features import length_bucket, make_features
    from foldlite.protein import Protein
    from foldlite.sequences import safe_name

    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    if num_seeds < 1:
        raise InputError(f"--num-seeds {num_seeds}: must be >= 1")
    record = _as_record(query, max_length)
    profile, msa_info = _msa_profile(msa, record)
    n_res = record.length
    bucket = length_bucket(n_res)
    features = make_features(record.aatype, profile=profile, pad_to=bucket)
    timings["features"] = time.perf_counter() - t_start

    if model is None:
        t0 = time.perf_counter()
        model = load_model(weights, device=device, chunk_size=chunk_size)
        timings["load_model"] = time.perf_counter() - t0
    elif weights is not None or device is not None or chunk_size is not None:
        raise ValueError("predict: give either a loaded model or weights/device/chunk_size "
                         "to load one, not both")
    if num_recycles is None:
        num_recycles = int(model.config.recycle.num_recycles)
    if num_recycles < 0:
        raise InputError(f"--num-recycles {num_recycles}: must be >= 0")

    ranked: list[RankedModel] = []
    timings["compile"] = 0.0
    timings["model"] = 0.0
    residue_index = np.arange(1, n_res + 1, dtype=np.int32)
    for i in range(num_seeds):
        s = int(seed) + i
        out, t = model(features, s, num_recycles, sample=num_seeds > 1)
        timings["compile"] += t["compile"]
        timings["model"] += t["model"]
        pos = out["atom37"][:n_res].astype(np.float32)
        mask = out["atom37_mask"][:n_res].astype(np.float32)
        plddt = out["plddt"][:n_res].astype(np.float64)
        pae = out["pae"][:n_res, :n_res].astype(np.float64)
        if not (np.all(np.isfinite(pos[mask > 0])) and np.all(np.isfinite(plddt))):
            raise FoldliteError(f"record {record.id!r}: the network produced non-finite "
                                f"coordinates or pLDDT (seed {s}); are the weights sound?")
        prot = Protein(aatype=record.aatype, atom_positions=pos * mask[..., None], atom_mask=mask,
                       residue_index=residue_index, chain_id="A").with_plddt(plddt)
        ranked.append(RankedModel(seed=s, protein=prot, plddt=plddt, pae=pae,
                                  ptm=float(out["ptm"])))
    ranked.sort(key=lambda m: -m.mean_plddt)  # stable: ties keep seed order
    best = ranked[0]

    report = trajectory = None
    final = best.protein
    if refine:
        from foldlite.physics.refine import refine as run_refine
        t0 = time.perf_counter()
        cfg = _refine_config(refine_steps)
        try:
            refined, report = run_refine(best.protein, best.plddt, config=cfg,
                                         record_trajectory=record_trajectory)
        except FoldliteError:
            raise
        except Exception as e:  # noqa: BLE001 - reported as this record's failure
            raise FoldliteError(f"record {record.id!r}: refinement failed ({type(e).__name__}: "
                                f"{e}); --no-refine skips it") from e
        final = refined.with_plddt(best.plddt)
        trajectory = getattr(report, "trajectory", None) if record_trajectory else None
        timings["refine"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_start

    info = {
        "weights": {"name": model.name, "sha256": model.sha256,
                    "path": None if model.path is None else str(model.path)},
        "num_recycles": int(num_recycles),
        "num_seeds": int(num_seeds),
        "dropout_sampling": bool(num_seeds > 1),
        "padded_length": int(bucket),
        "chunk_size": int(model.config.chunk_size),
        "msa": msa_info,
        "refine_config": to_dict(_refine_config(refine_steps)) if refine else None,
        "versions": versions(),
        "device": describe_device(model.device),
    }
    return Prediction(id=record.id, name=name or safe_name(record.id), description=record.description,
                      sequence=record.sequence, protein=final, unrefined=best.protein,
                      plddt=best.plddt, pae=best.pae, ptm=best.ptm, seed=best.seed,
                      ranked=tuple(ranked), refine_report=report, timings=timings, info=info,
                      trajectory=trajectory)


# ---------------------------------------------------------------------------------------------
# Batches (what `foldlite predict` runs)
# ---------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class BatchEntry:
    """One input record before validation: a valid ``record`` or the ``error`` that rejects it;
    ``notes``: one line on letters read by the substitution policy (U, O, B, Z, J, X)."""

    id: str
    record: Any
    error: str | None
    notes: tuple[str, ...] = ()


@dataclasses.dataclass
class BatchResult:
    rows: list
    summary_path: Path

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.rows)

    @property
    def failed(self) -> int:
        return self.count("failed")

    @property
    def ok(self) -> bool:
        return self.failed == 0


#: a sequence typed on the command line (INPUT, not --sequence) must be at least this long and
#: all upper-case amino-acid letters, so that a mistyped file name is never folded.
MIN_INLINE_SEQUENCE = 10
_INLINE_LETTERS = frozenset("ACDEFGHIKLMNPQRSTVWYXUOBZJ")


def _is_sequence_text(text: str) -> bool:
    """True for what can only be a sequence: >= MIN_INLINE_SEQUENCE upper-case amino-acid
    letters (an optional final '*'), nothing else (no dot, no path separator)."""
    s = text[:-1] if text.endswith("*") else text
    return len(s) >= MIN_INLINE_SEQUENCE and set(s) <= _INLINE_LETTERS


def _sequence_entry(text: str, max_length: int | None) -> BatchEntry:
    from foldlite.sequences import SequenceWarning, parse_sequence

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", SequenceWarning)
            record = parse_sequence(text, "query", max_length)
    except InputError as e:
        return BatchEntry("query", None, str(e))
    notes = tuple(str(w.message) for w in caught if issubclass(w.category, SequenceWarning))
    return BatchEntry("query", record, None, notes)


def read_batch_input(source: str | os.PathLike | None, max_length: int | None = None, *,
                     sequence: str | None = None) -> list[BatchEntry]:
    """The records of a FASTA file (or one sequence), each validated on its own.

    ``source`` is a FASTA file, or a plain sequence of at least ``MIN_INLINE_SEQUENCE``
    upper-case amino-acid letters; anything else that is not an existing file is an error
    naming the missing file (a mistyped file name is never folded as a sequence).
    ``sequence`` (``--sequence``) is taken as a sequence whatever it looks like.

    File-level problems (missing, empty, not FASTA) raise ``InputError``; a record with bad
    letters (undecodable bytes included), a duplicate id or too many residues becomes an entry
    with an ``error``.
    """
    from foldlite.sequences import read_fasta_entries

    if sequence is not None:
        if source is not None:
            raise InputError("give INPUT (a FASTA file or a sequence) or --sequence, not both")
        return [_sequence_entry(sequence, max_length)]
    if source is None:
        raise InputError("no input: give a FASTA file, a sequence, or --sequence SEQ")
    path = Path(source)
    text = str(source)
    # os.path's tests (not Path's): a long sequence typed as INPUT is no valid file name
    # (ENAMETOOLONG), which they answer with False instead of raising.
    if not os.path.isfile(path):
        if os.path.exists(path):
            raise InputError(f"{path}: is a directory, not a FASTA file")
        if _is_sequence_text(text):
            return [_sequence_entry(text, max_length)]
        raise InputError(f"{text}: no such FASTA file (a sequence given as INPUT needs at least "
                         f"{MIN_INLINE_SEQUENCE} upper-case amino-acid letters; --sequence "
                         "takes any)")
    return [BatchEntry(e.id, e.record, e.error, e.notes)
            for e in read_fasta_entries(path, max_length=max_length)]


def predict_batch(source: str | os.PathLike | None, outdir: str | os.PathLike, *,
                  model: Model | None = None, weights: str | os.PathLike | None = None,
                  msa: Any = None, num_recycles: int | None = None, num_seeds: int = 1,
                  seed: int = 0, refine: bool = True, refine_steps: int | None = None,
                  max_length: int | None = None, chunk_size: int | None = None,
                  device: Any = None, overwrite: bool = False, quiet: bool = False,
                  js_path: str | os.PathLike | None = None, sequence: str | None = None,
                  memory_limit: int | None = None) -> BatchResult:
    """Predict every record of ``source`` into ``outdir/<safe id>/``; write ``outdir/summary.tsv``.

    Records whose folder is complete are skipped (status ``cached``) unless ``overwrite``; a
    record that fails (bad letters, too long for the memory, an output that cannot be written)
    is reported (status ``failed``, message in the summary) and the others go on. Before any
    work: the input is read, the weights loaded and the device chosen (when a record needs the
    model), and the output folder created and probed, so that a mistake there costs nothing.
    ``sequence``: one sequence (``--sequence``) instead of ``source``. ``memory_limit``: bytes
    a length bucket may need (default: the device's memory, ``memory.device_memory_limit``).
    """
    from tqdm import tqdm

    from foldlite import fileio, outputs
    from foldlite.sequences import safe_name

    if num_seeds < 1:
        raise InputError(f"--num-seeds {num_seeds}: must be >= 1")
    if model is not None and (weights is not None or device is not None
                              or chunk_size is not None):
        raise ValueError("predict_batch: give either a loaded model or weights/device/"
                         "chunk_size to load one, not both")
    if max_length is not None and max_length < 1:
        raise InputError(f"--max-length {max_length}: must be >= 1")
    from foldlite.viz import resolve_3dmol_js
    js = resolve_3dmol_js(js_path)
    entries = read_batch_input(source, max_length=max_length, sequence=sequence)
    if msa is not None and len(entries) != 1:
        raise InputError(f"--msa needs a single-record input; {source} holds {len(entries)} "
                         "records")
    outdir = Path(outdir)
    if outdir.exists() and not outdir.is_dir():
        raise InputError(f"{outdir}: exists and is not a folder")
    taken: set[str] = set(outputs.RESERVED_NAMES)
    names = [safe_name(e.id, taken) for e in entries]
    root = outdir.resolve()
    for n in names:  # defence in depth: a folder name never leaves OUTDIR
        if (root / n).resolve().parent != root:
            raise FoldliteError(f"internal error: unsafe folder name {n!r}")
    todo = [e for e, n in zip(entries, names)
            if e.error is None and (overwrite or not outputs.is_complete(outdir / n))]
    if todo and model is None:  # bad weights or an unavailable device: before any folder
        model = load_model(weights, device=device, chunk_size=chunk_size)
    fileio.check_output_dir(outdir)
    outputs.remove_stale_files(outdir)
    if not quiet:
        if sequence is not None or (source is not None and not os.path.isfile(source)):
            what = f"a sequence of {entries[0].record.length} residues" if entries[0].record \
                else "a sequence"
            print(f"foldlite predict: input: {what} (record 'query')", file=sys.stderr)
        else:
            print(f"foldlite predict: input: FASTA file {source} ({len(entries)} records)",
                  file=sys.stderr)

    rows: list[outputs.SummaryRow] = []
    interactive = sys.stderr.isatty()
    # a progress bar on a terminal; plain lines (no '\r' updates) into a file or a pipe
    bar = tqdm(list(zip(entries, names)), desc="foldlite predict", unit="record",
               disable=quiet or not interactive, file=sys.stderr, dynamic_ncols=True)
    total_n = len(entries)

    def say(msg: str, always: bool = False) -> None:
        if always or not quiet:
            tqdm.write(msg, file=sys.stderr)

    def save_summary() -> None:
        try:
            outputs.write_summary(outdir, rows)
        except OSError as e:
            bar.close()
            raise OutputError(f"{outdir / outputs.SUMMARY_TSV}: cannot write the summary: "
                              f"{e.strerror or e}; {sum(r.status == 'ok' for r in rows)} "
                              "record(s) of this run are complete in their folders") from None

    for k, (entry, name) in enumerate(bar, start=1):
        rec_dir = outdir / name
        shown = printable(entry.id)
        where = f"[{k}/{total_n}] " if not interactive else ""
        t0 = time.perf_counter()
        for note in entry.notes:
            say(f"{where}note: {note}")
        if entry.error is not None:
            rows.append(outputs.SummaryRow(entry.id, name, None, None, None, "failed", None,
                                           entry.error))
            say(f"{where}failed: {entry.error}", always=True)
        elif not overwrite and outputs.is_complete(rec_dir):
            rows.append(outputs.SummaryRow.from_scores(rec_dir, status="cached"))
            say(f"{where}{shown}: complete in {rec_dir}, skipped (--overwrite redoes it)")
        else:
            try:
                check_memory(model, entry.record.length, refine=refine, limit=memory_limit,
                             record=entry.id)
                pred = predict(entry.record, model=model, msa=msa,
                               num_recycles=num_recycles, num_seeds=num_seeds, seed=seed,
                               refine=refine, refine_steps=refine_steps, name=name)
                try:
                    outputs.write_record(outdir, pred, js_path=js)
                except OSError as e:
                    raise OutputError(f"record {entry.id!r}: cannot write its outputs into "
                                      f"{outdir}: {e.strerror or e}") from None
                total = time.perf_counter() - t0
                rows.append(outputs.SummaryRow(pred.id, name, pred.length, pred.mean_plddt,
                                               pred.ptm, "ok", total))
                say(f"{where}{shown}: {pred.length} residues, mean pLDDT {pred.mean_plddt:.1f}, "
                    f"pTM {pred.ptm:.3f}, {total:.1f} s -> {rec_dir}")
            except KeyboardInterrupt:
                bar.close()
                raise
            except FoldliteError as e:
                rows.append(outputs.SummaryRow(entry.id, name, entry.record.length, None, None,
                                               "failed", time.perf_counter() - t0, str(e)))
                named = repr(entry.id) in str(e)  # the message names the record already
                say(f"{where}failed: {'' if named else shown + ': '}{e}", always=True)
            except Exception as e:  # noqa: BLE001 - one record's crash must not stop the batch
                msg = f"{type(e).__name__}: {e}"
                rows.append(outputs.SummaryRow(entry.id, name, entry.record.length, None, None,
                                               "failed", time.perf_counter() - t0, msg))
                say(f"{where}failed: {shown}: {msg}", always=True)
                if os.environ.get("FOLDLITE_DEBUG"):
                    traceback.print_exc()
        bar.set_postfix_str(f"{shown}: {time.perf_counter() - t0:.1f} s", refresh=False)
        save_summary()
    bar.close()
    result = BatchResult(rows=rows, summary_path=outdir / outputs.SUMMARY_TSV)
    if not quiet:
        print(f"{result.count('ok')} predicted, {result.count('cached')} already complete, "
              f"{result.failed} failed; summary: {result.summary_path}", file=sys.stderr)
    return result


# ---------------------------------------------------------------------------------------------
# `foldlite predict`
# ---------------------------------------------------------------------------------------------

def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def _non_negative_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {v}")
    return v


def _gib(text: str) -> int:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of GiB, got {text!r}") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return int(v * 2**30)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", metavar="INPUT", nargs="?",
                        help="a FASTA file (one or many records), or a plain sequence of at "
                             f"least {MIN_INLINE_SEQUENCE} upper-case one-letter codes")
    parser.add_argument("--sequence", metavar="SEQ",
                        help="predict this one-letter sequence (record 'query') instead of INPUT")
    parser.add_argument("-o", "--output", "--outdir", dest="outdir", required=True,
                        metavar="OUTDIR", help="output folder: one subfolder per record and "
                                               "summary.tsv")
    parser.add_argument("--msa", metavar="FILE.a3m",
                        help="alignment for a single-record input: profile features from it, "
                             "with sequence weighting")
    parser.add_argument("--weights", metavar="FILE",
                        help=f"model weights (.npz from `foldlite train`; default: the shipped "
                             f"model {DEFAULT_WEIGHTS.name})")
    parser.add_argument("--num-recycles", type=_non_negative_int, metavar="N",
                        help="recycling passes (default: the model's)")
    parser.add_argument("--num-seeds", type=_positive_int, default=1, metavar="N",
                        help="sample N models (dropout on, seeds SEED..SEED+N-1) and rank them "
                             "by mean pLDDT; 1 (default): the deterministic prediction")
    parser.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    parser.add_argument("--no-refine", dest="refine", action="store_false",
                        help="skip the physics refinement")
    parser.add_argument("--refine-steps", type=_non_negative_int, metavar="N",
                        help="optimiser steps per refinement round (default: the "
                             "refinement's, 1000)")
    parser.add_argument("--max-length", type=_positive_int, metavar="N",
                        help="fail records longer than N residues")
    parser.add_argument("--chunk-size", type=_non_negative_int, metavar="N",
                        help="evaluate every [L, L, *] stage (attention, triangle updates, "
                             "transitions, IPA) N rows at a time to bound memory for long "
                             "sequences (0: off; default: the model's); a record refused for "
                             "memory names the chunk size that helps most")
    parser.add_argument("--memory-limit", type=_gib, metavar="GIB",
                        help="memory a record may need, in GiB (default: the device's memory; "
                             "on a CPU the available RAM); longer records are refused before "
                             "they run")
    parser.add_argument("--device", choices=DEVICES, help="run on this device (default: JAX's)")
    parser.add_argument("--overwrite", action="store_true",
                        help="redo records whose outputs are already complete")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or messages")
    parser.add_argument("--3dmol-js", dest="js_path", metavar="PATH",
                        help="local 3Dmol-min.js to inline in view.html (offline pages)")


def run(args: argparse.Namespace) -> int:
    result = predict_batch(
        args.input, args.outdir, weights=args.weights, msa=args.msa,
        num_recycles=args.num_recycles, num_seeds=args.num_seeds, seed=args.seed,
        refine=args.refine, refine_steps=args.refine_steps, max_length=args.max_length,
        chunk_size=args.chunk_size, device=args.device, overwrite=args.overwrite,
        quiet=args.quiet, js_path=args.js_path, sequence=args.sequence,
        memory_limit=args.memory_limit)
    return 0 if result.ok else 1


__all__ = ["DEFAULT_WEIGHTS", "Model", "Prediction", "RankedModel", "BatchResult", "BatchEntry",
           "load_model", "init_params", "predict", "predict_batch", "read_batch_input",
           "enable_compilation_cache", "cache_dir", "select_device", "versions",
           "check_memory", "memory_estimate", "device_memory_limit", "MIN_INLINE_SEQUENCE"]
