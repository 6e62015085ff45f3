"""Training and validation examples for the trainer, as a pure function of the step.

``TrainingData(cfg).batch(step, process_index, process_count)`` returns this process's share of
the global batch of ``step``: the global batch is the examples ``step * B .. step * B + B - 1`` of
an endless sequence in which every epoch is a permutation of the training chains seeded by
``(seed, epoch)``; each example is cropped to ``crop_size`` residues at a start drawn from a
generator seeded by ``(seed, step, slot)``. Nothing depends on what was loaded before, so a
resumed run, a run on more devices and a run split over processes see the same examples.

Batch dict (numpy; ``b`` = examples of this process, ``N`` = ``crop_size``):
  features:     ``Features`` with arrays ``[b, N, ...]``
  atom37:       float32 [b, N, 37, 3]
  atom37_mask:  float32 [b, N, 37]
  dssp3:        int32   [b, N]  (0 helix, 1 strand, 2 coil, -1 unknown or padding)
  chain_ids:    list of b str
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from foldlite.data.features import Features, make_features, stack_features
from foldlite.errors import ConfigError, InputError

_REPO = Path(__file__).resolve().parents[2]


def resolve_path(p: str | os.PathLike) -> Path:
    """``~`` expanded; a relative path that does not exist from the working directory is tried
    against the repository root (configs name ``data/splits/...``)."""
    path = Path(os.path.expanduser(str(p)))
    if path.is_absolute() or path.exists():
        return path
    alt = _REPO / path
    return alt if alt.exists() or Path(str(alt) + "_train.txt").exists() else path


def split_chain_indices(ds: Any, split: str, splits_prefix: str | os.PathLike | None = None
                        ) -> np.ndarray:
    """Dataset positions of the chains of ``split``.

    ``split`` is ``all`` (every chain), a path to a file of chain ids, or a split name resolved as
    ``{splits_prefix}_{split}.txt`` (``foldlite data splits`` output), then as
    ``<dataset>/splits/{split}.txt``.
    """
    from foldlite.data.splits import read_split

    if split == "all":
        return np.arange(len(ds))
    candidates = []
    if Path(split).suffix == ".txt":
        candidates.append(resolve_path(split))
    if splits_prefix:
        candidates.append(Path(f"{resolve_path(splits_prefix)}_{split}.txt"))
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


def crop_and_pad(rec: Any, crop_size: int, start: int, use_profile: bool = True) -> dict:
    """One training example: residues ``start:start+crop_size`` of ``rec`` padded to
    ``crop_size``."""
    from foldlite.data.dataset import dssp_to_3state

    L = rec.length
    s, e = start, min(L, start + crop_size)
    n = e - s
    profile = rec.profile[s:e] if (use_profile and rec.profile is not None) else None
    feats = make_features(rec.aatype[s:e], profile, rec.residue_index[s:e], pad_to=crop_size)
    pad = crop_size - n
    atom37 = np.zeros((crop_size, 37, 3), np.float32)
    atom37[:n] = rec.atom_positions[s:e]
    mask37 = np.zeros((crop_size, 37), np.float32)
    mask37[:n] = rec.atom_mask[s:e]
    dssp3 = np.concatenate([dssp_to_3state(rec.dssp[s:e]), -np.ones(pad, np.int32)])
    return {"features": feats, "atom37": atom37, "atom37_mask": mask37,
            "dssp3": dssp3.astype(np.int32), "chain_id": rec.chain_id}


def collate(examples: list[dict]) -> dict:
    return {
        "features": stack_features([e["features"] for e in examples]),
        "atom37": np.stack([e["atom37"] for e in examples]),
        "atom37_mask": np.stack([e["atom37_mask"] for e in examples]),
        "dssp3": np.stack([e["dssp3"] for e in examples]),
        "chain_ids": [e["chain_id"] for e in examples],
    }


class TrainingData:
    """The training and validation examples of a ``TrainConfig`` (see the module docstring)."""

    def __init__(self, cfg: Any):
        from foldlite.data.dataset import Dataset

        self.cfg = cfg
        d = cfg.data
        self.dataset = Dataset(resolve_path(d.path))
        idx = split_chain_indices(self.dataset, d.train_split, d.splits)
        lengths = self.dataset.lengths[idx]
        keep = (lengths >= d.min_length) & (lengths <= d.max_length)
        self.train_indices = idx[keep]
        if len(self.train_indices) == 0:
            raise ConfigError(f"{d.path}: no training chains in split {d.train_split!r} with "
                              f"{d.min_length}..{d.max_length} residues")
        self._perm_cache: dict[int, np.ndarray] = {}
        self._validation: list | None = None

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch not in self._perm_cache:
            if len(self._perm_cache) > 4:
                self._perm_cache.clear()
            rng = np.random.default_rng([self.cfg.seed, epoch, 1])
            self._perm_cache[epoch] = rng.permutation(len(self.train_indices))
        return self._perm_cache[epoch]

    def chain_for(self, step: int, slot: int) -> int:
        """Dataset position of example ``slot`` of the global batch of ``step``."""
        g = step * self.cfg.data.batch_size + slot
        n = len(self.train_indices)
        return int(self.train_indices[self._permutation(g // n)[g % n]])

    def example(self, step: int, slot: int) -> dict:
        i = self.chain_for(step, slot)
        L = int(self.dataset.lengths[i])
        crop = self.cfg.data.crop_size
        rng = np.random.default_rng([self.cfg.seed, step, slot, 2])
        start = int(rng.integers(0, L - crop + 1)) if L > crop else 0
        rec = self.dataset.chain(i, start, start + crop)
        return crop_and_pad(rec, crop, 0)

    def batch(self, step: int, process_index: int = 0, process_count: int = 1) -> dict:
        """This process's examples of the global batch of ``step``."""
        B = self.cfg.data.batch_size
        per = B // process_count
        slots = range(process_index * per, (process_index + 1) * per)
        return collate([self.example(step, s) for s in slots])

    def example_features(self) -> Features:
        """Batched features of one example (for parameter initialisation)."""
        return stack_features([self.example(0, 0)["features"]])

    def validation_examples(self) -> list:
        """The fixed validation subset: the first ``evaluation.num_chains`` chains of the
        validation split (in split order) within the length limits."""
        from foldlite.train.evaluate import example_from_record

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
