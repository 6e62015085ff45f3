"""Training configuration: typed, frozen dataclasses from ``foldlite/configs/train/<name>.yaml``.

``load_train_config(name_or_path, overrides)`` reads the YAML with ``foldlite.config.load_config``
(unknown keys are errors, lists become tuples) and applies ``--set key=value`` overrides
(``optimizer.learning_rate=3.0e-4``; YAML 1.1 reads ``3e-4`` without a dot as a string).

Loss weights can change during training: ``loss.stages`` is a list of ``{start_step, weights}``;
the weights of the last stage whose ``start_step <= step`` apply (AlphaFold2 trains first without
and then with the violation losses, Suppl. 1.11.5). Keys a stage leaves out take the
``LossWeights`` defaults, not the previous stage's values.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Literal

from foldlite.config import config_path, load_config
from foldlite.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class LossWeights:
    """Weight of each loss term (0 switches a term off and skips computing it).

    AlphaFold2's values (Suppl. 1.9, Eq. 7 and Table 5) are the reference: FAPE 0.5 (backbone,
    averaged over iterations) + 0.5 (all-atom, final), chi 0.5, angle norm 0.01, distogram 0.3,
    pLDDT 0.01, violations 1.0 in fine-tuning only.
    """

    fape: float = 0.5             # backbone FAPE averaged over structure-module iterations
    sidechain_fape: float = 0.5   # all-frame/all-atom FAPE of the final structure
    chi: float = 0.5              # side-chain torsions, min over the pi-periodic alternative
    angle_norm: float = 0.01      # |unnormalised torsion| -> 1
    distogram: float = 0.3
    plddt: float = 0.01
    pae: float = 0.01
    ss: float = 0.1               # 3-state secondary structure
    bond: float = 0.0             # peptide bond C-N length violation
    angle: float = 0.0            # CA-C-N and C-N-CA angle violations
    ca_ca: float = 0.0            # consecutive CA-CA distance violation
    clash: float = 0.0            # between-residue heavy-atom clashes


@dataclasses.dataclass(frozen=True)
class LossStage:
    start_step: int
    weights: LossWeights = LossWeights()


@dataclasses.dataclass(frozen=True)
class LossConfig:
    """Loss settings that do not change with the stage."""

    fape_clamp: float = 10.0               # Angstrom (Suppl. 1.9.2)
    fape_length_scale: float = 10.0        # Z in Alg. 28
    unclamped_fape_fraction: float = 0.1   # examples trained with the unclamped backbone FAPE
    violation_tolerance: float = 12.0      # bond/angle tolerance in standard deviations
    clash_tolerance: float = 1.5           # Angstrom below the sum of van der Waals radii
    stages: tuple[LossStage, ...] = (LossStage(0),)

    def weights_at(self, step: int) -> LossWeights:
        w = self.stages[0].weights
        for s in self.stages:
            if s.start_step <= step:
                w = s.weights
        return w


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where the training examples come from and how they are cropped and batched."""

    path: str                       # dataset folder (foldlite.data.dataset format)
    splits: str | None = None       # split files prefix: {splits}_{train_split}.txt etc.
    train_split: str = "train"
    valid_split: str = "valid"
    crop_size: int = 128            # residues per training example (longer chains are cropped)
    batch_size: int = 4             # global batch (all devices and processes together)
    profile_dropout: float = 0.5    # probability of training an example without its profile
    spatial_crop_prob: float = 0.5  # spatial (else contiguous) crops of chains > crop_size
    cluster_weighting: bool = True  # sample chains with weight 1 / cluster size
    min_length: int = 20            # chains shorter than this are not used for training
    max_length: int = 100000        # nor longer than this


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    """AdamW with a linear warm-up, then cosine decay (``schedule: cosine``) or a constant
    learning rate (``schedule: constant``: for a run cut into short jobs that continue each
    other, where the EMA does the averaging that the decay would), and global-norm gradient
    clipping."""

    learning_rate: float = 1e-3
    warmup_steps: int = 1000
    end_lr_fraction: float = 0.05   # cosine: learning rate at the last step, relative to the peak
    schedule: Literal["cosine", "constant"] = "cosine"
    b1: float = 0.9
    b2: float = 0.99
    eps: float = 1e-6
    weight_decay: float = 1e-4
    grad_clip_norm: float = 1.0


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """Validation on a fixed subset of the validation split."""

    interval: int = 1000        # steps between evaluations (0: only at the end)
    num_chains: int = 32        # the first N chains of the validation split (fixed order)
    num_recycles: int = 3
    max_length: int = 400       # longer validation chains are skipped
    use_ema: bool = True
    buckets: tuple[int, ...] = ()   # padded lengths (empty: the usual length buckets); one
    #                                 bucket >= max_length compiles the model once


@dataclasses.dataclass(frozen=True)
class CheckpointConfig:
    interval: int = 500     # steps between checkpoints (also written at the end and on a stop)
    keep: int = 3           # checkpoints kept (the newest)


@dataclasses.dataclass(frozen=True)
class ExecutionConfig:
    """How the training step runs (not what it computes): the parameters are the same whatever
    these are, and so are the weights files written."""

    compute_dtype: Literal["model", "float32", "bfloat16"] = "model"  # trunk activations;
    #                                   "model" keeps the model config's dtype. Master weights,
    #                                   losses and the structure module stay float32.
    scan_trunk: bool = False        # one scanned trunk block (short compiles; accelerators)
    prefetch: int = 2               # batches prepared ahead of the step on host threads


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """A training run: model, data, optimiser, losses, schedule and bookkeeping."""

    name: str
    model: str                        # model config name (foldlite/configs/model/) or path
    data: DataConfig
    steps: int
    seed: int = 0
    optimizer: OptimizerConfig = OptimizerConfig()
    loss: LossConfig = LossConfig()
    ema_decay: float = 0.999
    max_recycles: int = 3             # recycles sampled uniformly in [0, max_recycles] per step
    evaluation: EvalConfig = EvalConfig()
    checkpoint: CheckpointConfig = CheckpointConfig()
    log_interval: int = 10            # steps between JSON-lines log records of train metrics
    max_nonfinite: int = 5            # stop after this many consecutive non-finite steps
    log_dir: str | None = None        # default ~/.cache/foldlite/runs/<name>
    execution: ExecutionConfig = ExecutionConfig()

    def run_dir(self) -> Path:
        if self.log_dir:
            return Path(os.path.expanduser(self.log_dir))
        return Path.home() / ".cache" / "foldlite" / "runs" / self.name


def resolve_train_config_path(name_or_path: str | os.PathLike) -> Path:
    """A path to a YAML file, or a name in ``foldlite/configs/train/`` (``tiny``, ``small``)."""
    return config_path("train", name_or_path)


def validate(cfg: TrainConfig, where: str = "config") -> TrainConfig:
    """Range checks that the type checks of ``from_dict`` cannot express."""
    def bad(msg: str) -> None:
        raise ConfigError(f"{where}: {msg}")
    if cfg.steps < 1:
        bad(f"steps must be >= 1, got {cfg.steps}")
    if cfg.data.batch_size < 1:
        bad(f"data.batch_size must be >= 1, got {cfg.data.batch_size}")
    if cfg.data.crop_size < 8:
        bad(f"data.crop_size must be >= 8, got {cfg.data.crop_size}")
    for name in ("profile_dropout", "spatial_crop_prob"):
        v = getattr(cfg.data, name)
        if not 0.0 <= v <= 1.0:
            bad(f"data.{name} must be in [0, 1], got {v}")
    if not 0.0 <= cfg.ema_decay < 1.0:
        bad(f"ema_decay must be in [0, 1), got {cfg.ema_decay}")
    if cfg.max_recycles < 0:
        bad(f"max_recycles must be >= 0, got {cfg.max_recycles}")
    if not cfg.loss.stages:
        bad("loss.stages must list at least one stage")
    starts = [s.start_step for s in cfg.loss.stages]
    if starts[0] != 0 or starts != sorted(starts):
        bad(f"loss.stages must start at step 0 and be in increasing order, got {starts}")
    if cfg.optimizer.learning_rate <= 0:
        bad("optimizer.learning_rate must be > 0")
    if cfg.optimizer.warmup_steps < 0:
        bad("optimizer.warmup_steps must be >= 0")
    if cfg.checkpoint.interval < 1 or cfg.checkpoint.keep < 1:
        bad("checkpoint.interval and checkpoint.keep must be >= 1")
    if cfg.evaluation.interval < 0:
        bad("evaluation.interval must be >= 0")
    if cfg.max_nonfinite < 1:
        bad("max_nonfinite must be >= 1")
    if cfg.execution.prefetch < 1:
        bad("execution.prefetch must be >= 1")
    return cfg


def load_train_config(name_or_path: str | os.PathLike, overrides: tuple[str, ...] | list[str] = ()
                      ) -> TrainConfig:
    """Load and validate a ``TrainConfig`` (``--set`` style ``overrides``)."""
    path = resolve_train_config_path(name_or_path)
    cfg = load_config(TrainConfig, path, tuple(overrides))
    return validate(cfg, str(path))
