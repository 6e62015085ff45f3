"""Training and validation examples for the trainer, as a pure function of the step.

``TrainingData(cfg).batch(step, process_index, process_count)`` returns this process's share of
the global batch of ``step``. The global batch comes from ``foldlite.data.loader.Loader``, whose
``batch(step)`` is a pure function of ``(seed, step)``: chains sampled with weight 1 / cluster
size (clusters from ``{splits}_clusters.tsv``), contiguous or spatial crops of ``crop_size``
residues, profile dropout, every batch padded to ``crop_size`` (one compiled shape). Nothing
depends on what was loaded before, so a resumed run, a run on more devices and a run split over
processes see the same examples.

Batch dict (numpy; ``b`` = examples of this process, ``N`` = ``crop_size``):
  features:     ``Features`` with arrays ``[b, N, ...]``
  atom37:       float32 [b, N, 37, 3]
  atom37_mask:  float32 [b, N, 37]
  dssp3:        int32   [b, N]  (0 helix, 1 strand, 2 coil, -1 unknown or padding)
  chain_ids:    [b] str
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import jax
import numpy as np

from foldlite import constants as rc
from foldlite.data.dataset import Dataset
from foldlite.data.features import Features, make_features
from foldlite.data.loader import Loader, LoaderConfig
from foldlite.data.splits import read_clusters, read_split, resolve_splits_prefix
from foldlite.errors import ConfigError, InputError

_REPO = Path(__file__).resolve().parents[2]


def resolve_path(p: str | os.PathLike) -> Path:
    """``~`` expanded; a relative path that does not exist from the working directory is tried
    against the repository root."""
    path = Path(os.path.expanduser(str(p)))
    if path.is_absolute() or path.exists():
        return path
    alt = _REPO / path
    return alt if alt.exists() or Path(str(alt) + "_train.txt").exists() else path


def _splits_prefix(name_or_prefix: str | os.PathLike) -> Path:
    """A shipped split set or a prefix (``foldlite.data.splits.resolve_splits_prefix``); a
    relative prefix is tried against the repository root as ``resolve_path`` does."""
    prefix = resolve_splits_prefix(name_or_prefix)
    return prefix if prefix.is_absolute() else resolve_path(prefix)


def split_chain_indices(ds: Any, split: str, splits_prefix: str | os.PathLike | None = None
                        ) -> np.ndarray:
    """Dataset positions of the chains of ``split``.

    ``split`` is ``all`` (every chain), a path to a file of chain ids, or a split name resolved as
    ``{splits_prefix}_{split}.txt`` (``splits_prefix``: a shipped split set's name, such as
    ``promod3``, or the prefix of ``foldlite data split`` output; ``_splits_prefix``), then as
    ``<dataset>/splits/{split}.txt``.
    """
    if split == "all":
        return np.arange(len(ds))
    candidates = []
    if Path(split).suffix == ".txt":
        candidates.append(resolve_path(split))
    if splits_prefix:
        candidates.append(Path(f"{_splits_prefix(splits_prefix)}_{split}.txt"))
    candidates.append(Path(ds.path) / "splits" / f"{split}.txt")
    for c in candidates:
        if c.is_file():
            ids = read_split(c)
            missing = [cid for cid in ids if cid not in ds]
            if missing:
                raise InputError(f"{c}: {len(missing)} chain id(s) not in the dataset {ds.path} "
                                 f"(first: {missing[0]!r})")
            return np.asarray([ds.index(cid) for cid in ids], np.int64)
    raise InputError(f"split {split!r}: none of {[str(c) for c in candidates]} exists")


@dataclasses.dataclass(frozen=True)
class EvalExample:
    """One chain to predict and score.

    Attributes:
      chain_id: name in reports.
      features: unpadded ``Features`` [L] (profile or one-hot).
      true_ca: [L, 3] true CA positions; ``ca_mask`` [L] where they exist.
    """

    chain_id: str
    features: Features
    true_ca: np.ndarray
    ca_mask: np.ndarray

    @property
    def length(self) -> int:
        return int(self.true_ca.shape[0])


def example_from_record(rec: Any, use_profile: bool = True) -> EvalExample:
    """``EvalExample`` of a dataset ``ChainRecord``."""
    profile = rec.profile if (use_profile and rec.profile is not None) else None
    ca = rc.atom_order["CA"]
    feats = make_features(rec.aatype, profile, rec.residue_index)
    return EvalExample(rec.chain_id, feats, np.asarray(rec.atom_positions[:, ca], np.float32),
                       np.asarray(rec.atom_mask[:, ca], np.float32))


class TrainingData:
    """The training and validation examples of a ``TrainConfig`` (see the module docstring)."""

    def __init__(self, cfg: Any):
        self.cfg = cfg
        d = cfg.data
        self.dataset = Dataset(resolve_path(d.path))
        idx = split_chain_indices(self.dataset, d.train_split, d.splits)
        clusters = None
        if d.splits and d.cluster_weighting:
            cpath = Path(f"{_splits_prefix(d.splits)}_clusters.tsv")
            if cpath.is_file():
                clusters = read_clusters(cpath)
        lcfg = LoaderConfig(batch_size=d.batch_size, crop_size=d.crop_size,
                            spatial_crop_prob=d.spatial_crop_prob, pad_to_crop=True,
                            cluster_weighting=d.cluster_weighting, length_weighting=False,
                            profile_dropout=d.profile_dropout, min_length=d.min_length,
                            max_length=d.max_length, seed=cfg.seed)
        try:
            self.loader = Loader(self.dataset, lcfg,
                                 chain_ids=[self.dataset.chain_ids[i] for i in idx],
                                 clusters=clusters)
        except InputError as e:
            raise ConfigError(f"{d.path}: no training chains in split {d.train_split!r} with "
                              f"{d.min_length}..{d.max_length} residues ({e})") from None
        self._validation: list | None = None

    def batch(self, step: int, process_index: int = 0, process_count: int = 1) -> dict:
        """This process's examples of the global batch of ``step``."""
        full = self.loader.batch(step)
        per = self.cfg.data.batch_size // process_count
        sl = slice(process_index * per, (process_index + 1) * per)
        return {"features": jax.tree_util.tree_map(lambda x: x[sl], full["features"]),
                "atom37": full["atom37"][sl], "atom37_mask": full["atom37_mask"][sl],
                "dssp3": full["dssp3"][sl], "chain_ids": list(full["chain_ids"][sl])}

    def example_features(self) -> Features:
        """Batched features of one example (for parameter initialisation)."""
        return jax.tree_util.tree_map(lambda x: x[:1], self.batch(0)["features"])

    def validation_examples(self) -> list:
        """The fixed validation subset: the first ``evaluation.num_chains`` chains of the
        validation split (in split order) within the length limits."""
        if self._validation is not None:
            return self._validation
        ev = self.cfg.evaluation
        if ev.num_chains <= 0:
            return []
        idx = split_chain_indices(self.dataset, self.cfg.data.valid_split, self.cfg.data.splits)
        out = []
        for i in idx:
            L = int(self.dataset.lengths[i])
            if L < self.cfg.data.min_length or L > ev.max_length:
                continue
            out.append(example_from_record(self.dataset[int(i)], use_profile=True))
            if len(out) >= ev.num_chains:
                break
        self._validation = out
        return out
