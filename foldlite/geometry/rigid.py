"""Rigid transforms: the one geometry type of foldlite.

A ``Rigid`` is a rotation matrix ``rot [..., 3, 3]`` and a translation ``trans [..., 3]``
(float32) acting on points as ``x -> rot @ x + trans``. It is a JAX pytree, so it passes
through ``jit``, ``vmap``, ``scan`` and Haiku modules, and works on any batch shape.

Backbone frames follow Jumper et al. 2021, Suppl. Alg. 21 (rigid from three points, Gram-Schmidt
on N-CA-C) and Alg. 23 (backbone update through a non-unit quaternion).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp


def _f32(x: Any) -> jnp.ndarray:
    return jnp.asarray(x, dtype=jnp.float32)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Rigid:
    """A batch of rigid transforms.

    Attributes:
      rot: [..., 3, 3] rotation matrices (orthonormal, det +1).
      trans: [..., 3] translations in Angstrom.
    """

    rot: jnp.ndarray
    trans: jnp.ndarray

    # ---------------------------------------------------------------- construction
    @staticmethod
    def identity(shape: tuple[int, ...] = ()) -> "Rigid":
        """Identity transforms of batch shape ``shape``."""
        rot = jnp.broadcast_to(jnp.eye(3, dtype=jnp.float32), tuple(shape) + (3, 3))
        trans = jnp.zeros(tuple(shape) + (3,), jnp.float32)
        return Rigid(rot, trans)

    @staticmethod
    def from_arrays(rot: Any, trans: Any) -> "Rigid":
        return Rigid(_f32(rot), _f32(trans))

    @staticmethod
    def from_three_points(x_neg: jnp.ndarray, origin: jnp.ndarray, x_pos: jnp.ndarray,
                          eps: float = 1e-8) -> "Rigid":
        """Frame from three points by Gram-Schmidt (Suppl. Alg. 21).

        For backbone frames pass ``(N, CA, C)``: the x axis points from CA towards C
        (``e1 = normalise(C - CA)``) and N lies in the xy plane on the positive-y side
        (``e2`` is ``N - CA`` orthogonalised against ``e1``); ``e3 = e1 x e2``.

        Args:
          x_neg: [..., 3] point that defines the xy plane (N for backbone).
          origin: [..., 3] origin (CA).
          x_pos: [..., 3] point on the positive x axis (C).
        """
        x_neg, origin, x_pos = _f32(x_neg), _f32(origin), _f32(x_pos)
        v1 = x_pos - origin
        v2 = x_neg - origin
        e1 = v1 / jnp.sqrt(jnp.sum(v1 * v1, axis=-1, keepdims=True) + eps)
        u2 = v2 - e1 * jnp.sum(e1 * v2, axis=-1, keepdims=True)
        e2 = u2 / jnp.sqrt(jnp.sum(u2 * u2, axis=-1, keepdims=True) + eps)
        e3 = jnp.cross(e1, e2)
        rot = jnp.stack([e1, e2, e3], axis=-1)  # columns are the axes
        return Rigid(rot, origin)

    @staticmethod
    def from_quaternion(quat: jnp.ndarray, trans: jnp.ndarray | None = None,
                        normalize: bool = True) -> "Rigid":
        """Rigid from quaternions ``(w, x, y, z)`` [..., 4] and translations [..., 3]."""
        rot = quat_to_rot(quat, normalize=normalize)
        if trans is None:
            trans = jnp.zeros(rot.shape[:-2] + (3,), jnp.float32)
        return Rigid(rot, _f32(trans))

    # ---------------------------------------------------------------- algebra
    @property
    def shape(self) -> tuple[int, ...]:
        return self.trans.shape[:-1]

    def compose(self, other: "Rigid") -> "Rigid":
        """``self ∘ other``: apply ``other`` first, then ``self``."""
        rot = jnp.einsum("...ij,...jk->...ik", self.rot, other.rot)
        trans = jnp.einsum("...ij,...j->...i", self.rot, other.trans) + self.trans
        return Rigid(rot, trans)

    def invert(self) -> "Rigid":
        rot_t = jnp.swapaxes(self.rot, -1, -2)
        return Rigid(rot_t, -jnp.einsum("...ij,...j->...i", rot_t, self.trans))

    def apply(self, points: jnp.ndarray) -> jnp.ndarray:
        """Apply to points [..., 3]; the batch shape of ``points`` broadcasts with ``self``."""
        return jnp.einsum("...ij,...j->...i", self.rot, points) + self.trans

    def invert_apply(self, points: jnp.ndarray) -> jnp.ndarray:
        """Apply the inverse transform to points [..., 3]."""
        return jnp.einsum("...ji,...j->...i", self.rot, points - self.trans)

    def apply_rotation(self, vectors: jnp.ndarray) -> jnp.ndarray:
        return jnp.einsum("...ij,...j->...i", self.rot, vectors)

    def __getitem__(self, idx: Any) -> "Rigid":
        if not isinstance(idx, tuple):
            idx = (idx,)
        return Rigid(self.rot[idx + (slice(None), slice(None))],
                     self.trans[idx + (slice(None),)])

    def map(self, fn) -> "Rigid":
        """Apply ``fn`` to the batch axes of both arrays (e.g. ``lambda x: x[:, None]``)."""
        return Rigid(fn(self.rot), fn(self.trans))

    def unsqueeze(self, axis: int) -> "Rigid":
        """Insert a batch axis at ``axis`` (counted among the batch axes, negative allowed)."""
        nb = len(self.shape)
        ax = axis if axis >= 0 else nb + 1 + axis
        return Rigid(jnp.expand_dims(self.rot, ax), jnp.expand_dims(self.trans, ax))

    def scale_translation(self, factor: float) -> "Rigid":
        return Rigid(self.rot, self.trans * factor)

    def stop_rot_gradient(self) -> "Rigid":
        """Stop the gradient through the rotation (AlphaFold2 Alg. 20, line 20)."""
        return Rigid(jax.lax.stop_gradient(self.rot), self.trans)

    def stop_gradient(self) -> "Rigid":
        return Rigid(jax.lax.stop_gradient(self.rot), jax.lax.stop_gradient(self.trans))

    def to_tensor_4x4(self) -> jnp.ndarray:
        """Homogeneous matrices [..., 4, 4]."""
        top = jnp.concatenate([self.rot, self.trans[..., None]], axis=-1)
        bottom = jnp.broadcast_to(jnp.array([0, 0, 0, 1], jnp.float32),
                                  self.shape + (1, 4))
        return jnp.concatenate([top, bottom], axis=-2)

    def quaternion_update(self, update: jnp.ndarray) -> "Rigid":
        """Backbone update (Suppl. Alg. 23): compose with the transform from ``update``.

        Args:
          update: [..., 6]: ``(b, c, d)`` of the non-unit quaternion ``(1, b, c, d)`` and a
            translation ``(t_x, t_y, t_z)`` expressed in the local frame.
        """
        bcd, t = update[..., :3], update[..., 3:]
        quat = jnp.concatenate([jnp.ones_like(bcd[..., :1]), bcd], axis=-1)
        return self.compose(Rigid.from_quaternion(quat, t, normalize=True))


def quat_to_rot(quat: jnp.ndarray, normalize: bool = True) -> jnp.ndarray:
    """Rotation matrices [..., 3, 3] from quaternions ``(w, x, y, z)`` [..., 4]."""
    quat = _f32(quat)
    if normalize:
        quat = quat / jnp.sqrt(jnp.sum(quat * quat, axis=-1, keepdims=True))
    w, x, y, z = jnp.moveaxis(quat, -1, 0)
    rot = jnp.stack([
        jnp.stack([w * w + x * x - y * y - z * z, 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        jnp.stack([2 * (x * y + w * z), w * w - x * x + y * y - z * z, 2 * (y * z - w * x)], -1),
        jnp.stack([2 * (x * z - w * y), 2 * (y * z + w * x), w * w - x * x - y * y + z * z], -1),
    ], axis=-2)
    return rot


def rot_to_quat(rot: jnp.ndarray) -> jnp.ndarray:
    """Unit quaternions ``(w, x, y, z)`` [..., 4] from rotation matrices [..., 3, 3].

    Uses the eigenvector of the symmetric 4x4 matrix of Bar-Itzhack (2000), which is stable for
    every rotation; the sign is chosen so that ``w >= 0``.
    """
    rot = _f32(rot)
    r = rot
    k = jnp.stack([
        jnp.stack([r[..., 0, 0] - r[..., 1, 1] - r[..., 2, 2], r[..., 1, 0] + r[..., 0, 1],
                   r[..., 2, 0] + r[..., 0, 2], r[..., 2, 1] - r[..., 1, 2]], -1),
        jnp.stack([r[..., 1, 0] + r[..., 0, 1], r[..., 1, 1] - r[..., 0, 0] - r[..., 2, 2],
                   r[..., 2, 1] + r[..., 1, 2], r[..., 0, 2] - r[..., 2, 0]], -1),
        jnp.stack([r[..., 2, 0] + r[..., 0, 2], r[..., 2, 1] + r[..., 1, 2],
                   r[..., 2, 2] - r[..., 0, 0] - r[..., 1, 1], r[..., 1, 0] - r[..., 0, 1]], -1),
        jnp.stack([r[..., 2, 1] - r[..., 1, 2], r[..., 0, 2] - r[..., 2, 0],
                   r[..., 1, 0] - r[..., 0, 1], r[..., 0, 0] + r[..., 1, 1] + r[..., 2, 2]], -1),
    ], axis=-2) / 3.0
    _, vecs = jnp.linalg.eigh(k)
    v = vecs[..., :, -1]  # (x, y, z, w) for the largest eigenvalue
    quat = jnp.concatenate([v[..., 3:], v[..., :3]], axis=-1)
    return quat * jnp.where(quat[..., :1] < 0, -1.0, 1.0)


def random_rotation(key: jax.Array, shape: tuple[int, ...] = ()) -> jnp.ndarray:
    """Uniformly random rotation matrices [*shape, 3, 3] (normalised Gaussian quaternions)."""
    q = jax.random.normal(key, tuple(shape) + (4,), jnp.float32)
    return quat_to_rot(q)


def random_rigid(key: jax.Array, shape: tuple[int, ...] = (), scale: float = 10.0) -> Rigid:
    """Random rigid transforms: uniform rotation, Gaussian translation of std ``scale`` A."""
    k1, k2 = jax.random.split(key)
    return Rigid(random_rotation(k1, shape),
                 scale * jax.random.normal(k2, tuple(shape) + (3,), jnp.float32))
