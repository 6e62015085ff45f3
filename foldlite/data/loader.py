"""Training batches from a foldlite dataset: sampling, cropping, padding.

``Loader(dataset, config, chain_ids, clusters)`` draws batches as AlphaFold2 training does
(Jumper et al. 2021, Suppl. 1.2.5 and 1.2.8; spatial crops as in AlphaFold-Multimer, Evans et al.
2021, Suppl. Alg. 2):

* chains are sampled with replacement, each with weight 1 / (size of its sequence cluster) when
  clusters are given (so every cluster is equally likely), optionally times the AlphaFold2 length
  weight ``max(min(L, 512), 256) / 512``;
* a chain longer than ``crop_size`` is cropped: a contiguous crop (uniform random start) or, with
  probability ``spatial_crop_prob``, a spatial crop (the ``crop_size`` residues whose CA atoms
  are nearest to the CA of a random residue, kept in chain order; gaps in ``residue_index`` mark
  the breaks);
* each example is padded to the length bucket of the longest crop in the batch
  (``foldlite.data.features.length_bucket`` over ``buckets``; ``pad_to_crop`` pads every batch
  to ``crop_size`` for a single compiled shape);
* with probability ``profile_dropout`` an example's profile is replaced by the one-hot sequence
  (``has_profile`` 0), so that the model also learns to predict without an alignment.

``loader.batch(step)`` is a pure function of ``(config.seed, step)``: training resumes mid-epoch
by asking for the next step. A batch is a dict of numpy arrays:

  features      foldlite.data.features.Features batched: aatype [B, N] int32, profile
                [B, N, 20] float32, residue_index [B, N] int32, mask [B, N] float32,
                has_profile [B] float32
  atom37        float32 [B, N, 37, 3] Angstrom (zeros where absent)
  atom37_mask   float32 [B, N, 37]
  dssp3         int32 [B, N]: 0 helix (H G I), 1 strand (E B), 2 other; -1 padding/unknown
  chain_ids     str [B]
  positions     int32 [B, N] residue position in the stored chain (0-based), -1 on padding
  step          int
"""

from __future__ import annotations

import dataclasses
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from foldlite import constants as rc
from foldlite.data import dataset as ds
from foldlite.data.features import Features, length_bucket, make_features, stack_features
from foldlite.data.splits import read_clusters, read_split, resolve_splits_prefix
from foldlite.errors import ConfigError, InputError

_CA = rc.atom_order["CA"]


@dataclasses.dataclass(frozen=True)
class LoaderConfig:
    """Sampling, cropping and padding options (see the module docstring)."""

    batch_size: int = 4
    crop_size: int = 256
    spatial_crop_prob: float = 0.5
    buckets: tuple[int, ...] = (64, 128, 192, 256, 384, 512)
    pad_to_crop: bool = False
    cluster_weighting: bool = True
    length_weighting: bool = False
    profile_dropout: float = 0.0
    min_length: int = 16
    max_length: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.crop_size < 1:
            raise ConfigError("loader batch_size and crop_size must be positive")
        for name in ("spatial_crop_prob", "profile_dropout"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ConfigError(f"loader {name} must lie in [0, 1], got {v}")
        if self.min_length < 1:
            raise ConfigError("loader min_length must be at least 1")


class Loader:
    """Deterministic batches from a dataset (see the module docstring).

    Args:
      dataset: a ``Dataset`` or its path.
      config: ``LoaderConfig``.
      chain_ids: the chains to draw from (e.g. a split file's ids); default all.
      clusters: chain id -> cluster representative (for cluster weighting); default none
        (uniform over chains).
    """

    def __init__(self, dataset: ds.Dataset | str | os.PathLike,
                 config: LoaderConfig = LoaderConfig(),
                 chain_ids: Sequence[str] | None = None,
                 clusters: Mapping[str, str] | None = None):
        self.dataset = dataset if isinstance(dataset, ds.Dataset) else ds.Dataset(dataset)
        self.config = config
        d = self.dataset
        if chain_ids is None:
            idx = np.arange(len(d))
        else:
            missing = [c for c in chain_ids if c not in d]
            if missing:
                raise InputError(f"{d.path}: {len(missing)} of {len(chain_ids)} requested chains "
                                 f"are not in the dataset (e.g. {', '.join(missing[:5])})")
            idx = np.array([d.index(c) for c in chain_ids], np.int64)
        lengths = d.lengths[idx]
        keep = lengths >= config.min_length
        if config.max_length is not None:
            keep &= lengths <= config.max_length
        self.indices = idx[keep]
        if len(self.indices) == 0:
            raise InputError(f"{d.path}: no chain of {config.min_length}.."
                             f"{config.max_length or 'any'} residues to sample from")
        w = np.ones(len(self.indices))
        if config.cluster_weighting and clusters is not None:
            reps = [clusters.get(d.chain_ids[i], d.chain_ids[i]) for i in self.indices]
            _, inverse, counts = np.unique(reps, return_inverse=True, return_counts=True)
            w = w / counts[inverse]
        if config.length_weighting:
            L = d.lengths[self.indices].astype(np.float64)
            w = w * np.maximum(np.minimum(L, 512), 256) / 512
        self.weights = w / w.sum()
        self._cdf = np.cumsum(self.weights)
        self._cdf[-1] = 1.0

    def __len__(self) -> int:
        """Number of chains sampled from."""
        return len(self.indices)

    # ------------------------------------------------------------------------------------------
    def _rng(self, step: int) -> np.random.Generator:
        if step < 0:
            raise ValueError("step must be >= 0")
        return np.random.default_rng(np.random.SeedSequence([int(self.config.seed), int(step)]))

    def crop_positions(self, i: int, rng: np.random.Generator) -> tuple[np.ndarray, str]:
        """Residue positions (sorted, [<= crop_size]) of chain ``i`` to keep, and the crop kind."""
        L = int(self.dataset.lengths[i])
        n = self.config.crop_size
        if L <= n:
            return np.arange(L), "none"
        if rng.random() < self.config.spatial_crop_prob:
            ca, mask = self.dataset.ca_positions(i)
            centres = np.flatnonzero(mask)
            if len(centres):
                return spatial_crop(ca, mask, n, int(centres[rng.integers(0, len(centres))])), \
                    "spatial"
        start = int(rng.integers(0, L - n + 1))
        return np.arange(start, start + n), "contiguous"

    def example(self, i: int, positions: np.ndarray, one_hot: bool = False) -> dict[str, Any]:
        """Unpadded example of chain ``i`` restricted to ``positions`` (sorted)."""
        d = self.dataset
        lo, hi = int(positions[0]), int(positions[-1]) + 1
        rec = d.chain(i, lo, hi)
        sel = positions - lo
        profile = None
        if rec.profile is not None and not one_hot:
            profile = rec.profile[sel]
        return {"chain_id": rec.chain_id, "aatype": rec.aatype[sel], "profile": profile,
                "residue_index": rec.residue_index[sel],
                "atom37": rec.atom_positions[sel], "atom37_mask": rec.atom_mask[sel],
                "dssp3": ds.dssp_to_3state(rec.dssp[sel]), "positions": positions}

    def batch(self, step: int) -> dict[str, Any]:
        """The batch of training step ``step`` (a pure function of ``(seed, step)``)."""
        cfg = self.config
        rng = self._rng(step)
        picks = self.indices[np.searchsorted(self._cdf, rng.random(cfg.batch_size),
                                             side="right").clip(0, len(self.indices) - 1)]
        examples = []
        for i in picks:
            pos, _ = self.crop_positions(int(i), rng)
            drop = rng.random() < cfg.profile_dropout
            examples.append(self.example(int(i), pos, one_hot=drop))
        return self.collate(examples, step=step)

    def collate(self, examples: list[dict[str, Any]], step: int = -1,
                pad_to: int | None = None) -> dict[str, Any]:
        """Pad examples to one length bucket and stack them into a batch."""
        cfg = self.config
        longest = max(len(e["aatype"]) for e in examples)
        if pad_to is None:
            if cfg.pad_to_crop:
                pad_to = max(cfg.crop_size, longest)
            else:
                buckets = tuple(b for b in cfg.buckets if b < cfg.crop_size) + (cfg.crop_size,)
                pad_to = length_bucket(longest, buckets)
        feats: list[Features] = []
        B = len(examples)
        atom37 = np.zeros((B, pad_to, rc.atom_type_num, 3), np.float32)
        atom_mask = np.zeros((B, pad_to, rc.atom_type_num), np.float32)
        dssp3 = np.full((B, pad_to), -1, np.int32)
        positions = np.full((B, pad_to), -1, np.int32)
        for b, e in enumerate(examples):
            n = len(e["aatype"])
            feats.append(make_features(e["aatype"], e["profile"], e["residue_index"], pad_to))
            atom37[b, :n] = e["atom37"]
            atom_mask[b, :n] = e["atom37_mask"]
            dssp3[b, :n] = e["dssp3"]
            positions[b, :n] = e["positions"]
        return {"features": stack_features(feats), "atom37": atom37, "atom37_mask": atom_mask,
                "dssp3": dssp3, "chain_ids": np.array([e["chain_id"] for e in examples]),
                "positions": positions, "step": int(step)}

    def iterate(self, start_step: int = 0, num_steps: int | None = None,
                num_workers: int = 0) -> Iterator[dict[str, Any]]:
        """Batches for steps ``start_step, start_step + 1, ...`` (forever when ``num_steps`` is
        None); ``num_workers`` threads prepare batches ahead, in order."""
        stop = None if num_steps is None else start_step + num_steps
        if num_workers <= 0:
            step = start_step
            while stop is None or step < stop:
                yield self.batch(step)
                step += 1
            return
        with ThreadPoolExecutor(num_workers) as pool:
            pending = []
            step = start_step
            while True:
                while len(pending) < 2 * num_workers and (stop is None or step < stop):
                    pending.append(pool.submit(self.batch, step))
                    step += 1
                if not pending:
                    return
                yield pending.pop(0).result()

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self.iterate()

    def eval_batches(self, batch_size: int | None = None,
                     crop_size: int | None = None) -> Iterator[dict[str, Any]]:
        """Every chain once, in order, without sampling; chains longer than ``crop_size``
        (default: the config's) keep their central ``crop_size`` residues; no profile dropout."""
        bs = batch_size or self.config.batch_size
        n = crop_size or self.config.crop_size
        for s in range(0, len(self.indices), bs):
            exs = []
            for i in self.indices[s:s + bs]:
                L = int(self.dataset.lengths[i])
                start = max(0, (L - n) // 2)
                exs.append(self.example(int(i), np.arange(start, min(L, start + n))))
            yield self.collate(exs, step=-1)


def spatial_crop(ca: np.ndarray, ca_mask: np.ndarray, crop_size: int, centre: int) -> np.ndarray:
    """The ``crop_size`` residues nearest (by CA) to residue ``centre``, in chain order.

    AlphaFold-Multimer Suppl. Alg. 2 for one chain: distances to the centre's CA plus a tiny
    index-proportional offset to break ties; residues without CA come last.
    """
    L = ca.shape[0]
    d = np.linalg.norm(ca - ca[centre], axis=-1) + 1e-3 * np.arange(L) / max(L, 1)
    d = np.where(ca_mask > 0, d, np.inf)
    keep = np.argpartition(d, min(crop_size, L) - 1)[:crop_size]
    return np.sort(keep)


def make_loader(dataset: ds.Dataset | str | os.PathLike, split: str | None = None,
                splits_prefix: str | os.PathLike | None = None,
                config: LoaderConfig = LoaderConfig()) -> Loader:
    """A ``Loader`` over one split: ids from ``{splits_prefix}_{split}.txt`` and clusters from
    ``{splits_prefix}_clusters.tsv`` when that file exists (``splits_prefix``: a shipped split
    set's name or a path prefix, ``foldlite.data.splits.resolve_splits_prefix``)."""
    ids = clusters = None
    if split is not None:
        if splits_prefix is None:
            raise InputError("a split needs splits_prefix (e.g. promod3, the shipped splits)")
        prefix = resolve_splits_prefix(splits_prefix)
        ids = read_split(f"{prefix}_{split}.txt")
        cpath = Path(f"{prefix}_clusters.tsv")
        if cpath.is_file():
            clusters = read_clusters(cpath)
    return Loader(dataset, config, chain_ids=ids, clusters=clusters)
