"""Frame Aligned Point Error (Jumper et al. 2021, Suppl. 1.9.2, Alg. 28).

FAPE compares a predicted structure with the true one in the local frame of every residue
(or every rigid group): each point is expressed in each frame, for the prediction and the truth,
and the distances between the two are averaged. The error is invariant to a global rigid
transform of either structure, and, unlike RMSD, it tells mirror images apart.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from foldlite.geometry.rigid import Rigid


def local_coordinates(frames: Rigid, points: jnp.ndarray) -> jnp.ndarray:
    """Every point in every frame: ``T_i^-1 x_j = R_i^T (x_j - t_i)``, [P, F, 3] (points
    first).

    Args:
      frames: Rigid [F]; points: [P, 3].

    Computed as one matrix product ``x [P, 3] @ R [3, F*3]`` minus ``t_i R_i``: no
    [F, P, 3, 3] broadcast of the rotations, and a backward pass that is two plain matrix
    products (about twice as fast on CPU as an einsum over the batch of frames).
    """
    n_frames = frames.rot.shape[0]
    rot = jnp.transpose(frames.rot, (1, 0, 2)).reshape(3, n_frames * 3)  # [j, (f, i)]
    rt = jnp.einsum("fj,fji->fi", frames.trans, frames.rot).reshape(n_frames * 3)
    return (points @ rot - rt).reshape(points.shape[0], n_frames, 3)


def frame_aligned_point_error(
    pred_frames: Rigid,
    true_frames: Rigid,
    frames_mask: jnp.ndarray,
    pred_positions: jnp.ndarray,
    true_positions: jnp.ndarray,
    positions_mask: jnp.ndarray,
    clamp_distance: float | jnp.ndarray | None = 10.0,
    length_scale: float = 10.0,
    eps: float = 1e-4,
) -> jnp.ndarray:
    """FAPE (Suppl. Alg. 28), a scalar.

    Args:
      pred_frames: Rigid [F] predicted frames.
      true_frames: Rigid [F] true frames.
      frames_mask: [F] 1 where the true frame exists.
      pred_positions: [P, 3] predicted points (Angstrom).
      true_positions: [P, 3] true points.
      positions_mask: [P] 1 where the true point exists.
      clamp_distance: distances are clamped at this value (Angstrom); None: no clamping.
        May be a traced scalar (e.g. ``jnp.inf`` for an unclamped example).
      length_scale: ``Z`` of Alg. 28: the error is reported in units of this length.
      eps: added to squared distances before the square root (keeps the gradient finite at 0).

    Returns:
      [] mean over existing (frame, point) pairs of the clamped distance, divided by
      ``length_scale``.
    """
    # x_ij = T_i^-1 x_j for every point j and frame i: [P, F, 3].
    local_pred = local_coordinates(pred_frames, pred_positions)
    local_true = local_coordinates(true_frames, true_positions)
    dist = jnp.sqrt(jnp.sum(jnp.square(local_pred - local_true), axis=-1) + eps)  # [P, F]
    if clamp_distance is not None:
        dist = jnp.minimum(dist, clamp_distance)
    mask = positions_mask[:, None] * frames_mask[None, :]
    return jnp.sum(dist * mask) / (length_scale * (jnp.sum(mask) + 1e-8))


def backbone_fape(
    pred_frames: Rigid,
    true_frames: Rigid,
    frames_mask: jnp.ndarray,
    clamp_distance: float | jnp.ndarray | None = 10.0,
    length_scale: float = 10.0,
) -> jnp.ndarray:
    """Backbone FAPE: frames [N] and their origins (the CA atoms) as the points.

    ``pred_frames`` may carry leading axes (e.g. the structure-module iterations ``[I, N]``);
    the result then has those axes (``[I]``).
    """
    def one(pf: Rigid) -> jnp.ndarray:
        return frame_aligned_point_error(pf, true_frames, frames_mask, pf.trans,
                                         true_frames.trans, frames_mask, clamp_distance,
                                         length_scale)
    fn = one
    for _ in range(len(pred_frames.shape) - len(true_frames.shape)):
        fn = jax.vmap(fn)
    return fn(pred_frames)
