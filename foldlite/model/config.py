"""Model hyperparameters: typed, frozen dataclasses from ``foldlite/configs/model/<name>.yaml``.

Every key must be present in the YAML file and no unknown key is accepted
(``foldlite.config.from_dict`` raises ``ConfigError`` naming the file and the key), so a
config file always says exactly what network it builds. Shipped configs:

* ``tiny``  -- for tests: compiles in seconds.
* ``small`` -- the CPU default: trains on a 2-core machine.
* ``base``  -- for a GPU: wider, deeper, triangle attention, bfloat16 trunk, remat.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Literal

from foldlite.config import (CONFIGS_DIR, apply_overrides, available_configs, config_path,
                             from_dict, load_yaml)
from foldlite.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class EmbedConfig:
    """Input embedding (Suppl. Alg. 3, 4)."""

    #: relative positions are clipped to [-max_relative_position, max_relative_position].
    max_relative_position: int


@dataclasses.dataclass(frozen=True)
class RecycleConfig:
    """Recycling of the previous pass (Suppl. Alg. 32)."""

    #: default number of extra passes at inference (total passes = num_recycles + 1).
    num_recycles: int
    #: distogram of previous pseudo-beta positions: ``num_bins`` bins between min and max (A).
    min_bin: float
    max_bin: float
    num_bins: int


@dataclasses.dataclass(frozen=True)
class TrunkConfig:
    """The stack of trunk blocks that update the single and pair representations."""

    num_blocks: int
    #: gated self-attention over residues with pair bias (on the single representation).
    attention_heads: int
    attention_head_dim: int
    #: hidden width of the single and pair transitions = factor * channels.
    transition_factor: int
    #: projection width of the outer-product update s -> z.
    outer_product_dim: int
    #: hidden width of the triangle multiplicative updates.
    triangle_mult_dim: int
    #: triangle self-attention around the starting and ending node (Suppl. Alg. 13, 14).
    triangle_attention: bool
    triangle_attention_heads: int
    triangle_attention_head_dim: int
    #: dropout rates (training only): on single updates, and row/column-shared on pair updates.
    single_dropout: float
    pair_dropout: float
    #: recompute block activations in the backward pass (saves memory, costs ~1/3 more time).
    remat: bool
    #: training unrolls the loop over blocks (faster backward pass on CPU); False keeps one
    #: scanned block (one block to compile: much shorter compiles on an accelerator). Only how
    #: the stack is executed: the parameters and the results are the same either way.
    unroll_training: bool = True


@dataclasses.dataclass(frozen=True)
class StructureConfig:
    """Structure module (Suppl. Alg. 20) with Invariant Point Attention (Alg. 22)."""

    num_iterations: int
    ipa_heads: int
    ipa_head_dim: int
    ipa_qk_points: int
    ipa_v_points: int
    #: number of hidden layers in the single transition after IPA.
    transition_layers: int
    #: width and residual blocks of the torsion-angle head.
    angle_hidden: int
    angle_blocks: int
    #: frames are updated in units of ``position_scale`` Angstrom (10 in AlphaFold2).
    position_scale: float
    dropout: float
    #: stop the gradient through the rotations between iterations (Alg. 20, line 20). The
    #: default keeps configs written before this key existed (shipped weights) loadable.
    stop_rotation_gradient: bool = True


@dataclasses.dataclass(frozen=True)
class HeadsConfig:
    """Output heads."""

    #: hidden width of the pLDDT head (Suppl. Alg. 29).
    plddt_hidden: int


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Everything that defines a foldlite network."""

    #: single representation channels ``C_s``.
    c_s: int
    #: pair representation channels ``C_z``.
    c_z: int
    embed: EmbedConfig
    recycle: RecycleConfig
    trunk: TrunkConfig
    structure: StructureConfig
    heads: HeadsConfig
    #: compute dtype of the trunk; the structure module and geometry are always float32.
    dtype: Literal["float32", "bfloat16"]
    #: chunk size for attention and triangle operations along one axis (0: no chunking).
    #: Chunking bounds memory for long sequences and gives the same result to float tolerance.
    chunk_size: int

    def __post_init__(self) -> None:
        def check(ok: bool, what: str) -> None:
            if not ok:
                raise ConfigError(f"model config: {what}")

        check(self.c_s > 0 and self.c_z > 0, "c_s and c_z must be positive")
        check(self.trunk.num_blocks >= 0, "trunk.num_blocks must be >= 0")
        check(self.structure.num_iterations >= 1, "structure.num_iterations must be >= 1")
        check(self.chunk_size >= 0, "chunk_size must be >= 0 (0 disables chunking)")
        check(self.recycle.num_recycles >= 0, "recycle.num_recycles must be >= 0")
        check(self.recycle.num_bins >= 2 and self.recycle.max_bin > self.recycle.min_bin,
              "recycle bins: need num_bins >= 2 and max_bin > min_bin")
        for name in ("single_dropout", "pair_dropout"):
            rate = getattr(self.trunk, name)
            check(0.0 <= rate < 1.0, f"trunk.{name} must be in [0, 1)")
        check(0.0 <= self.structure.dropout < 1.0, "structure.dropout must be in [0, 1)")
        check(self.structure.ipa_qk_points >= 1 and self.structure.ipa_v_points >= 1,
              "structure.ipa_qk_points and ipa_v_points must be >= 1")


#: where named model configs live: foldlite/configs/model/<name>.yaml (package data)
CONFIG_DIR = CONFIGS_DIR / "model"


def available_model_configs() -> list[str]:
    """Names of the shipped model configs."""
    return available_configs("model")


def model_config_path(name_or_path: str | os.PathLike) -> Path:
    """Resolve a config name (``tiny``) or a YAML path to a file path."""
    return config_path("model", name_or_path)


def model_config_from_dict(data: dict, where: str = "model config") -> ModelConfig:
    """Build a ``ModelConfig`` from a mapping (e.g. one stored beside trained weights)."""
    return from_dict(ModelConfig, data, where=where)


def load_model_config(name_or_path: str | os.PathLike,
                      overrides: list[str] | tuple[str, ...] = ()) -> ModelConfig:
    """Load a model config by name (``tiny``, ``small``, ``base``) or from a YAML path.

    Args:
      name_or_path: a shipped config name or a path to a YAML file.
      overrides: ``key.sub=value`` strings applied before validation.

    Raises:
      ConfigError: unknown name, missing file, bad YAML, unknown or missing keys, bad values.
    """
    path = model_config_path(name_or_path)
    data = apply_overrides(load_yaml(path), overrides)
    return model_config_from_dict(data, where=str(path))
