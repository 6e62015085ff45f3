"""Structure comparison metrics: superposition, RMSD, lDDT, TM-score and GDT.

All numpy functions take a predicted (model) structure and a reference (true) structure whose
residues correspond one to one (same length ``L``, same order), plus optional masks, and return
Python floats (or a per-residue ``[L]`` array where asked). Positions are either CA traces
``[L, 3]`` or atom37 arrays ``[L, 37, 3]`` (AlphaFold layout, CA is atom 1).

* ``kabsch`` / ``rmsd``: least-squares superposition (Kabsch 1976) with weights, never a
  reflection.
* ``lddt`` / ``lddt_ca`` / ``lddt_jax``: local distance difference test (Mariani et al. 2013,
  Bioinformatics 29:2722): the fraction of reference distances under the inclusion radius
  (15 A) preserved within 0.5, 1, 2 and 4 A, averaged over the four thresholds. No
  superposition. All-atom lDDT ignores pairs of atoms in the same residue.
* ``tm_score``: TM-score for a known residue correspondence (Zhang & Skolnick 2004, Proteins
  57:702) with ``d0 = 1.24 (L - 15)^(1/3) - 1.8`` (at least 0.5), normalised by the reference
  length. The superposition is searched as the TMscore program does: seed superpositions from
  fragments of length L, L/2, L/4, ... down to 4 at every start position, each refined by
  superposing again on the residues within ``d0_search + 1`` (at most 20 times).
* ``gdt_ts`` / ``gdt_ha``: global distance test (Zemla 2003, Nucleic Acids Res. 31:3370), the
  mean over cutoffs (1, 2, 4, 8 A or 0.5, 1, 2, 4 A) of the largest fraction of residues within
  the cutoff under any superposition. The search visits the TM-score superpositions (alone,
  ``search="tmscore"``, this gives the TMscore program's figures) and by default also, for each
  cutoff, fragment seeds refined on the residues within that cutoff (as LGA does), which finds
  the same or larger fractions.

Masked-out positions may hold anything, NaN included; they never reach a result.
"""

from __future__ import annotations

import dataclasses
from typing import Iterator, Sequence

import jax.numpy as jnp
import numpy as np
from scipy.spatial import cKDTree

from foldlite import constants

#: atom37 index of the alpha carbon.
CA_INDEX: int = constants.atom_order["CA"]
#: lDDT thresholds on the distance difference in Angstrom (Mariani et al. 2013).
LDDT_THRESHOLDS: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)
#: lDDT inclusion radius in Angstrom, applied to reference distances.
LDDT_CUTOFF: float = 15.0
#: GDT_TS distance cutoffs in Angstrom (Zemla 2003).
GDT_TS_CUTOFFS: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0)
#: GDT_HA ("high accuracy") distance cutoffs in Angstrom.
GDT_HA_CUTOFFS: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)

_TM_MAX_ITERATIONS = 20  # refinement rounds per seed, as in the TMscore program
_TM_MIN_FRAGMENT = 4  # shortest seed fragment
_TM_FRAGMENT_LEVELS = 6  # fragment lengths L, L/2, ..., L/16, then 4
_SEARCH_CHUNK_ELEMENTS = 1_500_000  # seeds * residues processed at once


# ============================================================================================
# Input handling
# ============================================================================================


def _points_and_weights(x: np.ndarray, mask: np.ndarray | None, name: str
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Flattens ``x [..., 3]`` to ``[N, 3]`` float64 and ``mask [...]`` to weights ``[N]``."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim < 1 or x.shape[-1] != 3:
        raise ValueError(f"{name}: expected positions of shape [..., 3], got {x.shape}")
    if mask is None:
        w = np.ones(x.shape[:-1], np.float64)
    else:
        w = np.asarray(mask, dtype=np.float64)
        if w.shape != x.shape[:-1]:
            raise ValueError(f"{name}: mask shape {w.shape} does not match positions {x.shape}")
        if np.any(w < 0) or not np.all(np.isfinite(w)):
            raise ValueError(f"{name}: mask values must be finite and non-negative")
    x = x.reshape(-1, 3)
    w = w.reshape(-1)
    used = w > 0
    if not np.all(np.isfinite(x[used])):
        raise ValueError(f"{name}: non-finite coordinates at unmasked positions")
    x = np.where(used[:, None], x, 0.0)
    return x, w


def _ca_trace(pos: np.ndarray, mask: np.ndarray | None, name: str
              ) -> tuple[np.ndarray, np.ndarray | None]:
    """CA positions ``[L, 3]`` (and mask ``[L]``) from ``[L, 3]`` or atom37 ``[L, 37, 3]``."""
    pos = np.asarray(pos, dtype=np.float64)
    if pos.ndim == 3 and pos.shape[1:] == (constants.atom_type_num, 3):
        pos = pos[:, CA_INDEX]
        if mask is not None:
            mask = np.asarray(mask)
            mask = mask[:, CA_INDEX] if mask.ndim == 2 else mask
    elif pos.ndim != 2 or pos.shape[-1] != 3:
        raise ValueError(f"{name}: expected [L, 3] or [L, 37, 3] positions, got {pos.shape}")
    return pos, mask


def _common_residues(pred: np.ndarray, true: np.ndarray, mask: np.ndarray | None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """CA traces of the residues kept by ``mask``: ``([n, 3], [n, 3])`` float64."""
    pred, pmask = _ca_trace(pred, mask, "pred")
    true, tmask = _ca_trace(true, mask, "true")
    if pred.shape != true.shape:
        raise ValueError(f"pred {pred.shape} and true {true.shape} must have the same shape")
    x, w = _points_and_weights(pred, pmask, "pred")
    y, _ = _points_and_weights(true, tmask, "true")
    keep = w > 0
    if not keep.any():
        raise ValueError("no residues left to compare after masking")
    return x[keep], y[keep]


# ============================================================================================
# Superposition and RMSD
# ============================================================================================


def _kabsch_batched(x: np.ndarray, y: np.ndarray, w: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Weighted least-squares superpositions of ``x`` onto ``y`` for a batch of weightings.

    Args:
      x: [N, 3] points to move.
      y: [N, 3] target points.
      w: [S, N] non-negative weights, each row with a positive sum.

    Returns:
      rot [S, 3, 3] proper rotations and trans [S, 3] with ``y ~ rot @ x + trans``.
    """
    wsum = w.sum(-1)
    cx = (w @ x) / wsum[:, None]
    cy = (w @ y) / wsum[:, None]
    outer = (x[:, :, None] * y[:, None, :]).reshape(-1, 9)
    h = (w @ outer).reshape(-1, 3, 3) - wsum[:, None, None] * cx[:, :, None] * cy[:, None, :]
    u, _, vt = np.linalg.svd(h)
    v = np.swapaxes(vt, -1, -2)
    # A reflection would fit better when det(V U^T) < 0: flip the least significant axis.
    sign = np.sign(np.linalg.det(v) * np.linalg.det(u))
    sign[sign == 0] = 1.0
    v = v * np.stack([np.ones_like(sign), np.ones_like(sign), sign], -1)[:, None, :]
    rot = v @ np.swapaxes(u, -1, -2)
    trans = cy - np.einsum("sij,sj->si", rot, cx)
    return rot, trans


def kabsch(x: np.ndarray, y: np.ndarray, mask: np.ndarray | None = None
           ) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares rigid superposition of ``x`` onto ``y`` (Kabsch 1976), never a reflection.

    Args:
      x: [..., 3] positions to move (e.g. a prediction, [L, 3] or [L, 37, 3]).
      y: [..., 3] target positions, same shape as ``x``.
      mask: [...] optional 0/1 mask or non-negative weights over the points.

    Returns:
      ``(rot [3, 3], trans [3])`` float64 with ``x @ rot.T + trans`` superposed on ``y``
      (``det(rot) = +1``).
    """
    xf, w = _points_and_weights(x, mask, "x")
    yf, _ = _points_and_weights(y, mask, "y")
    if xf.shape != yf.shape:
        raise ValueError(f"x {np.shape(x)} and y {np.shape(y)} must have the same shape")
    if not np.any(w > 0):
        raise ValueError("kabsch: the mask selects no points")
    # Centre first so that the covariance is computed on small numbers.
    mx = (w @ xf) / w.sum()
    my = (w @ yf) / w.sum()
    rot, trans = _kabsch_batched(xf - mx, yf - my, w[None])
    rot = rot[0]
    return rot, trans[0] + my - rot @ mx


def superpose(x: np.ndarray, y: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """``x`` ([..., 3]) moved onto ``y`` by ``kabsch`` (same shape as ``x``)."""
    rot, trans = kabsch(x, y, mask)
    return np.asarray(x, np.float64) @ rot.T + trans


def rmsd(pred: np.ndarray, true: np.ndarray, mask: np.ndarray | None = None,
         superpose: bool = True) -> float:
    """Root-mean-square deviation, after optimal superposition unless ``superpose=False``.

    Args:
      pred: [..., 3] predicted positions ([L, 3] CA or [L, 37, 3] atoms).
      true: [..., 3] reference positions, same shape.
      mask: [...] optional mask (or weights); RMSD is the weighted mean over it.
      superpose: superpose ``pred`` onto ``true`` (Kabsch, over the masked points) first.
    """
    x, w = _points_and_weights(pred, mask, "pred")
    y, _ = _points_and_weights(true, mask, "true")
    if x.shape != y.shape:
        raise ValueError(f"pred {np.shape(pred)} and true {np.shape(true)} differ in shape")
    if not np.any(w > 0):
        raise ValueError("rmsd: the mask selects no points")
    if superpose:
        rot, trans = kabsch(x, y, w)
        x = x @ rot.T + trans
    sq = np.sum((x - y) ** 2, -1)
    return float(np.sqrt(np.sum(w * sq) / np.sum(w)))


# ============================================================================================
# lDDT
# ============================================================================================


def lddt(pred_pos: np.ndarray, true_pos: np.ndarray, true_mask: np.ndarray | None = None,
         cutoff: float = LDDT_CUTOFF, per_residue: bool = False,
         pred_mask: np.ndarray | None = None) -> float | np.ndarray:
    """Local distance difference test, no superposition (Mariani et al. 2013).

    A pair of atoms is scored when both are present in the reference, they belong to different
    residues and their reference distance is below ``cutoff``. Its score is the fraction of the
    thresholds 0.5, 1, 2, 4 A that ``|d_pred - d_true|`` falls under. A scored pair with an atom
    missing from the prediction (``pred_mask`` 0) counts as not preserved.

    Args:
      pred_pos: [L, 3] CA trace or [L, A, 3] atoms (atom37: A = 37) of the prediction.
      true_pos: reference positions, same shape.
      true_mask: [L] or [L, A] atoms present in the reference (default: all).
      cutoff: inclusion radius in Angstrom on reference distances.
      per_residue: return ``[L]`` per-residue scores (pairs with an atom of that residue; NaN
        for a residue with no scored pair) instead of the global score.
      pred_mask: optional [L] or [L, A] atoms present in the prediction (default: all).

    Returns:
      The global lDDT in [0, 1] over all scored pairs (NaN when there is none), or the
      per-residue array.
    """
    pred = np.asarray(pred_pos, np.float64)
    true = np.asarray(true_pos, np.float64)
    if pred.shape != true.shape or pred.ndim not in (2, 3) or pred.shape[-1] != 3:
        raise ValueError(f"lddt: expected equal [L, 3] or [L, A, 3] shapes, got "
                         f"{pred.shape} and {true.shape}")
    n_res = pred.shape[0]
    atoms_shape = pred.shape[:-1]
    y, tw = _points_and_weights(true, true_mask, "true")
    pm = (tw.reshape(atoms_shape) > 0) if pred_mask is None else pred_mask
    x, pw = _points_and_weights(pred, pm, "pred")
    res_id = np.broadcast_to(np.arange(n_res).reshape((n_res,) + (1,) * (pred.ndim - 2)),
                             atoms_shape).reshape(-1)
    keep = tw > 0
    x, y, pw, res_id = x[keep], y[keep], pw[keep] > 0, res_id[keep]
    # Reference pairs within the radius (each unordered pair once), from a k-d tree.
    pairs = cKDTree(y).query_pairs(r=cutoff, output_type="ndarray")
    pairs = pairs.reshape(-1, 2)
    pairs = pairs[res_id[pairs[:, 0]] != res_id[pairs[:, 1]]]  # never within one residue
    i, j = pairs[:, 0], pairs[:, 1]
    d_true = np.sqrt(np.sum((y[i] - y[j]) ** 2, -1))
    inside = d_true < cutoff  # the tree keeps distances <= cutoff
    i, j, d_true = i[inside], j[inside], d_true[inside]
    d_pred = np.sqrt(np.sum((x[i] - x[j]) ** 2, -1))
    diff = np.abs(d_pred - d_true)
    score = np.mean([diff < t for t in LDDT_THRESHOLDS], axis=0) * (pw[i] & pw[j])
    if per_residue:
        # A residue's score covers every pair with one of its atoms.
        count = (np.bincount(res_id[i], minlength=n_res)
                 + np.bincount(res_id[j], minlength=n_res)).astype(np.float64)
        total = (np.bincount(res_id[i], weights=score, minlength=n_res)
                 + np.bincount(res_id[j], weights=score, minlength=n_res))
        return np.where(count > 0, total / np.maximum(count, 1.0), np.nan)
    return float(score.mean()) if len(score) else float("nan")


def lddt_ca(pred_pos: np.ndarray, true_pos: np.ndarray, true_mask: np.ndarray | None = None,
            cutoff: float = LDDT_CUTOFF, per_residue: bool = False,
            pred_mask: np.ndarray | None = None) -> float | np.ndarray:
    """CA-only lDDT: ``lddt`` on the CA traces of ``[L, 3]`` or atom37 ``[L, 37, 3]`` inputs.

    Masks are ``[L]``, or atom37 ``[L, 37]`` (their CA column is used).
    """
    pred, pmask = _ca_trace(pred_pos, pred_mask, "pred")
    true, tmask = _ca_trace(true_pos, true_mask, "true")
    return lddt(pred, true, tmask, cutoff=cutoff, per_residue=per_residue, pred_mask=pmask)


def lddt_jax(pred: jnp.ndarray, true: jnp.ndarray, mask: jnp.ndarray,
             cutoff: float = LDDT_CUTOFF, per_residue: bool = True) -> jnp.ndarray:
    """CA lDDT in JAX for losses and pLDDT targets (as in Jumper et al. 2021, Suppl. 1.9.6).

    Jit/vmap/grad friendly: distances carry an epsilon so that gradients are finite (they are
    zero almost everywhere, the score being a step function of the positions).

    Args:
      pred: [..., L, 3] predicted CA positions.
      true: [..., L, 3] reference CA positions.
      mask: [..., L] residues present (applied to both structures).
      cutoff: inclusion radius in Angstrom on reference distances.
      per_residue: return ``[..., L]`` scores; otherwise ``[...]`` over all pairs.

    Returns:
      lDDT in [0, 1]. Where no pair is scored the value is 1 (the masked-out residues should
      be masked by the caller); elsewhere it equals ``lddt`` in numpy.
    """
    pred = jnp.asarray(pred, jnp.float32)
    true = jnp.asarray(true, jnp.float32)
    mask = jnp.asarray(mask, jnp.float32)
    d_true = jnp.sqrt(1e-10 + jnp.sum((true[..., :, None, :] - true[..., None, :, :]) ** 2, -1))
    d_pred = jnp.sqrt(1e-10 + jnp.sum((pred[..., :, None, :] - pred[..., None, :, :]) ** 2, -1))
    n = true.shape[-2]
    scored = ((d_true < cutoff).astype(jnp.float32) * mask[..., :, None] * mask[..., None, :]
              * (1.0 - jnp.eye(n, dtype=jnp.float32)))
    diff = jnp.abs(d_true - d_pred)
    score = sum((diff < t).astype(jnp.float32) for t in LDDT_THRESHOLDS) / len(LDDT_THRESHOLDS)
    axes = (-1,) if per_residue else (-2, -1)
    norm = 1.0 / (1e-10 + jnp.sum(scored, axis=axes))
    return norm * (1e-10 + jnp.sum(scored * score, axis=axes))


# ============================================================================================
# Superposition search (TM-score, GDT)
# ============================================================================================


def tm_d0(length: float) -> float:
    """TM-score distance scale ``d0 = 1.24 (L - 15)^(1/3) - 1.8``, at least 0.5 A."""
    if length <= 15:
        return 0.5
    return float(max(0.5, 1.24 * np.cbrt(length - 15.0) - 1.8))


def _fragment_lengths(n: int) -> list[int]:
    """Seed fragment lengths n, n/2, n/4, ... down to 4 (TMscore program schedule)."""
    shortest = min(_TM_MIN_FRAGMENT, n)
    lengths = []
    for level in range(_TM_FRAGMENT_LEVELS - 1):
        length = int(n / 2 ** level)
        if length <= shortest:
            lengths.append(shortest)
            return lengths
        lengths.append(length)
    lengths.append(shortest)
    return lengths


class _Deviations:
    """Squared deviations ``|rot @ x_n + trans - y_n|^2`` for many superpositions at once.

    Expanding the square gives ``|x_n|^2 + |y_n|^2 + |t|^2 - 2 y_n.R x_n + 2 x_n.R^T t
    - 2 y_n.t``: one [S, 15] x [15, N] matrix product per batch instead of moving every point.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray):
        self.base = np.sum(x * x, -1) + np.sum(y * y, -1)  # [N]
        yx = (y[:, :, None] * x[:, None, :]).reshape(-1, 9)  # y_i x_j
        self.features = np.concatenate([yx, x, y], axis=1).T  # [15, N]

    def __call__(self, rot: np.ndarray, trans: np.ndarray) -> np.ndarray:
        coeff = np.concatenate([-2.0 * rot.reshape(-1, 9),
                                2.0 * np.einsum("sji,sj->si", rot, trans),
                                -2.0 * trans], axis=1)  # [S, 15]
        d2 = coeff @ self.features + self.base + np.sum(trans * trans, -1)[:, None]
        return np.maximum(d2, 0.0)


def _within(d2: np.ndarray, cutoff: float) -> np.ndarray:
    """Residues with deviation below ``cutoff``; [S, N] bool.

    Where that leaves fewer than 3 residues (and there are more than 3), the cutoff grows in
    0.5 A steps until it keeps 3, as in the TMscore program.
    """
    sel = d2 < cutoff * cutoff
    n = d2.shape[1]
    if n <= 3:
        return sel
    short = np.flatnonzero(sel.sum(1) < 3)
    if short.size:
        rows = d2[short]
        third = np.sqrt(np.partition(rows, 2, axis=1)[:, 2])
        steps = np.maximum(np.floor((third - cutoff) / 0.5) + 1.0, 1.0)
        grown = cutoff + 0.5 * steps
        sub = rows < (grown * grown)[:, None]
        while True:  # guard against rounding at the boundary
            lacking = sub.sum(1) < 3
            if not lacking.any():
                break
            grown[lacking] += 0.5
            sub[lacking] = rows[lacking] < (grown[lacking] ** 2)[:, None]
        sel[short] = sub
    return sel


def _candidate_superpositions(x: np.ndarray, y: np.ndarray, seed_cutoff: float,
                              refine_cutoff: float, max_iterations: int = _TM_MAX_ITERATIONS
                              ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Superpositions visited by the TMscore-style search, in batches.

    Every fragment of every length in ``_fragment_lengths`` seeds a superposition; the residues
    then within ``seed_cutoff`` are superposed again, and then repeatedly those within
    ``refine_cutoff``, until the set stops changing or after ``max_iterations`` rounds. The
    superposition and everything after it depend only on the residue set, so a set already
    followed (from another seed) is not followed again: the best score is unchanged.

    Args:
      x: [N, 3] model CA positions (centred), y: [N, 3] reference CA positions (centred).

    Yields:
      ``(d2 [S, N], rot [S, 3, 3], trans [S, 3])``: squared deviations after each visited
      superposition ``rot @ x + trans``.
    """
    n = len(x)
    index = np.arange(n)
    deviations = _Deviations(x, y)
    chunk = max(1, _SEARCH_CHUNK_ELEMENTS // n)
    followed: dict[bytes, int] = {}  # packed residue set -> most rounds it was followed for

    def fresh(sel: np.ndarray, rounds_left: int) -> np.ndarray:
        """Rows of ``sel`` not yet followed for at least ``rounds_left`` rounds."""
        keep = []
        for i, row in enumerate(np.packbits(sel, axis=1)):
            key = row.tobytes()
            if followed.get(key, 0) < rounds_left:
                followed[key] = rounds_left
                keep.append(i)
        return sel[keep]

    for length in _fragment_lengths(n):
        starts = np.arange(0, n - length + 1)
        for c in range(0, len(starts), chunk):
            st = starts[c:c + chunk]
            weights = ((index[None] >= st[:, None]) & (index[None] < st[:, None] + length))
            rot, trans = _kabsch_batched(x, y, weights.astype(np.float64))
            d2 = deviations(rot, trans)
            yield d2, rot, trans
            sel = _within(d2, seed_cutoff)
            for it in range(max_iterations):
                sel = fresh(sel, max_iterations - it)
                if not len(sel):
                    break
                rot, trans = _kabsch_batched(x, y, sel.astype(np.float64))
                d2 = deviations(rot, trans)
                yield d2, rot, trans
                new = _within(d2, refine_cutoff)
                moving = np.any(new != sel, axis=1)
                sel = new[moving]


@dataclasses.dataclass(frozen=True)
class TMResult:
    """Outcome of the TM-score superposition search.

    Attributes:
      score: TM-score normalised by ``reference_length``.
      rot: [3, 3] and trans: [3]: the best superposition, ``pred @ rot.T + trans``.
      d0: the distance scale used.
      n_common: residues compared.
      reference_length: the normalisation length.
    """

    score: float
    rot: np.ndarray
    trans: np.ndarray
    d0: float
    n_common: int
    reference_length: int


def tm_superposition(pred: np.ndarray, true: np.ndarray, mask: np.ndarray | None = None,
                     reference_length: int | None = None) -> TMResult:
    """TM-score search for a known correspondence; returns the score and superposition.

    Args:
      pred: [L, 3] model CA trace (or atom37 [L, 37, 3]).
      true: [L, 3] reference CA trace (or atom37), residue i corresponding to pred's i.
      mask: [L] residues present in both (atom37 masks [L, 37]: the CA column).
      reference_length: normalisation length (default: the residues kept by ``mask``, i.e.
        the reference length when the mask marks the reference's resolved residues).
    """
    x, y = _common_residues(pred, true, mask)
    n = len(x)
    length = n if reference_length is None else int(reference_length)
    if length <= 0:
        raise ValueError(f"reference_length must be positive, got {reference_length}")
    d0 = tm_d0(length)
    d0_search = float(np.clip(d0, 4.5, 8.0))
    mx, my = x.mean(0), y.mean(0)
    xc, yc = x - mx, y - my
    best, best_rot, best_trans = -1.0, np.eye(3), np.zeros(3)
    for d2, rot, trans in _candidate_superpositions(xc, yc, d0_search - 1.0, d0_search + 1.0):
        scores = np.sum(1.0 / (1.0 + d2 / (d0 * d0)), axis=1)
        i = int(np.argmax(scores))
        if scores[i] > best:
            best, best_rot, best_trans = float(scores[i]), rot[i], trans[i]
    trans = best_trans + my - best_rot @ mx
    return TMResult(score=best / length, rot=best_rot, trans=trans, d0=d0, n_common=n,
                    reference_length=length)


def tm_score(pred: np.ndarray, true: np.ndarray, mask: np.ndarray | None = None,
             reference_length: int | None = None) -> float:
    """TM-score of ``pred`` against ``true`` for a known residue correspondence.

    ``TM = max over superpositions of (1/L_ref) sum_i 1 / (1 + (d_i / d0)^2)``, searched like
    the TMscore program (see ``tm_superposition``, which also returns the superposition).
    """
    return tm_superposition(pred, true, mask, reference_length).score


def gdt(pred: np.ndarray, true: np.ndarray, mask: np.ndarray | None = None,
        cutoffs: Sequence[float] = (0.5, 1.0, 2.0, 4.0, 8.0),
        reference_length: int | None = None, search: str = "thorough") -> np.ndarray:
    """Per-cutoff GDT fractions: for each cutoff, the largest fraction of reference residues
    whose CA lies within it of the model's under one superposition.

    Args:
      pred, true, mask, reference_length: as in ``tm_superposition``.
      cutoffs: distance cutoffs in Angstrom (a residue counts when its deviation is below).
      search: ``"tmscore"`` takes the best counts over the superpositions of the TM-score
        search, which reproduces the TMscore program's GDT figures; ``"thorough"`` (default)
        adds, for each cutoff, fragment seeds refined on the residues within that cutoff (as
        LGA does), so it finds the same or larger fractions.

    Returns:
      [len(cutoffs)] fractions in [0, 1].
    """
    if search not in ("thorough", "tmscore"):
        raise ValueError(f"search must be 'thorough' or 'tmscore', got {search!r}")
    x, y = _common_residues(pred, true, mask)
    n = len(x)
    length = n if reference_length is None else int(reference_length)
    if length <= 0:
        raise ValueError(f"reference_length must be positive, got {reference_length}")
    cut2 = np.asarray(cutoffs, np.float64) ** 2
    xc, yc = x - x.mean(0), y - y.mean(0)
    d0_search = float(np.clip(tm_d0(length), 4.5, 8.0))
    searches = [(d0_search - 1.0, d0_search + 1.0)]
    if search == "thorough":
        searches += [(float(c), float(c)) for c in cutoffs]
    best = np.zeros(len(cut2))
    for seed_cutoff, refine_cutoff in searches:
        for d2, _, _ in _candidate_superpositions(xc, yc, seed_cutoff, refine_cutoff):
            for k, c2 in enumerate(cut2):
                best[k] = max(best[k], np.count_nonzero(d2 < c2, axis=1).max())
    return best / length


def gdt_scores(pred: np.ndarray, true: np.ndarray, mask: np.ndarray | None = None,
               reference_length: int | None = None, search: str = "thorough"
               ) -> dict[str, float]:
    """GDT_TS and GDT_HA from one search: ``{"gdt_ts": ..., "gdt_ha": ...}``."""
    cutoffs = tuple(sorted(set(GDT_TS_CUTOFFS) | set(GDT_HA_CUTOFFS)))
    frac = dict(zip(cutoffs, gdt(pred, true, mask, cutoffs, reference_length, search)))
    return {"gdt_ts": float(np.mean([frac[c] for c in GDT_TS_CUTOFFS])),
            "gdt_ha": float(np.mean([frac[c] for c in GDT_HA_CUTOFFS]))}


def gdt_ts(pred: np.ndarray, true: np.ndarray, mask: np.ndarray | None = None,
           reference_length: int | None = None, search: str = "thorough") -> float:
    """GDT_TS: mean GDT fraction over the cutoffs 1, 2, 4 and 8 A (see ``gdt``)."""
    return float(np.mean(gdt(pred, true, mask, GDT_TS_CUTOFFS, reference_length, search)))


def gdt_ha(pred: np.ndarray, true: np.ndarray, mask: np.ndarray | None = None,
           reference_length: int | None = None, search: str = "thorough") -> float:
    """GDT_HA: mean GDT fraction over the cutoffs 0.5, 1, 2 and 4 A (see ``gdt``)."""
    return float(np.mean(gdt(pred, true, mask, GDT_HA_CUTOFFS, reference_length, search)))
