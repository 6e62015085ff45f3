"""A prediction superposed on a reference structure, with its CA RMSD and TM-score.

Residues are paired by a global alignment of the two sequences (identity when they are equal);
the prediction is moved by ``foldlite.metrics.superpose`` fitted on the CA atoms of the pairs.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
from Bio import Align

from foldlite import metrics
from foldlite.errors import InputError
from foldlite.protein import Protein, as_protein


@dataclasses.dataclass(frozen=True)
class Comparison:
    """A prediction superposed on a reference on CA atoms.

    moved: the prediction (all atoms) after the superposition; pairs: [K, 2] (prediction index,
    reference index) of the residues paired by sequence; rmsd in Angstrom over the K pairs;
    tm_score normalised by the reference length.
    """

    moved: Protein
    rmsd: float
    tm_score: float
    pairs: np.ndarray

    @property
    def num_aligned(self) -> int:
        return int(self.pairs.shape[0])


def residue_pairs(seq_a: str, seq_b: str) -> np.ndarray:
    """[K, 2] indices of residues paired by a global alignment of two sequences (identity if equal)."""
    if seq_a == seq_b:
        idx = np.arange(len(seq_a))
        return np.stack([idx, idx], axis=-1)
    aligner = Align.PairwiseAligner(mode="global", match_score=2.0, mismatch_score=-1.0,
                                    open_gap_score=-4.0, extend_gap_score=-0.5)
    aln = aligner.align(seq_a, seq_b)[0]
    pairs = []
    for (a0, a1), (b0, b1) in zip(*aln.aligned):
        pairs.extend(zip(range(a0, a1), range(b0, b1)))
    return np.asarray(pairs, np.int64).reshape(-1, 2)


def compare(prediction: Protein | str | os.PathLike, reference: Protein | str | os.PathLike
            ) -> Comparison:
    """Superpose ``prediction`` on ``reference`` (``Protein`` or paths) on the CA atoms of the
    residues paired by sequence; the TM-score is normalised by the reference length."""
    pred, ref = as_protein(prediction), as_protein(reference)
    ca = metrics.CA_INDEX
    pairs = residue_pairs(pred.sequence, ref.sequence)
    ok = (pred.atom_mask[pairs[:, 0], ca] > 0) & (ref.atom_mask[pairs[:, 1], ca] > 0)
    pairs = pairs[ok]
    if len(pairs) < 3:
        raise InputError("prediction and reference share fewer than 3 residues with CA atoms")
    y = np.asarray(ref.atom_positions, np.float64)[pairs[:, 1], ca]
    # Every atom of the prediction moves; only the paired CA atoms (weight 1) are fitted, each
    # on its partner's CA. The other target positions are never read.
    target = np.zeros(pred.atom_positions.shape)
    target[pairs[:, 0], ca] = y
    fitted = np.zeros(pred.atom_mask.shape)
    fitted[pairs[:, 0], ca] = 1.0
    moved_pos = metrics.superpose(pred.atom_positions, target, fitted) * pred.atom_mask[..., None]
    moved = pred.replace(atom_positions=moved_pos.astype(np.float32))
    xm = moved_pos[pairs[:, 0], ca]
    rmsd = metrics.rmsd(xm, y, superpose=False)
    ref_length = max(int(np.sum(ref.atom_mask[:, ca] > 0)), len(pairs))
    tm = metrics.tm_score(xm, y, reference_length=ref_length)
    return Comparison(moved=moved, rmsd=rmsd, tm_score=float(tm), pairs=pairs)
