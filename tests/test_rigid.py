"""Rigid transforms: algebra, quaternions, frames from three points."""

import jax
import jax.numpy as jnp
import numpy as np

from foldlite.geometry.rigid import Rigid, quat_to_rot, random_rigid, rot_to_quat


def test_compose_invert_identity():
    r = random_rigid(jax.random.PRNGKey(0), (5, 3))
    x = jax.random.normal(jax.random.PRNGKey(1), (5, 3, 3))
    ident = r.compose(r.invert())
    np.testing.assert_allclose(ident.apply(x), x, atol=1e-4)
    np.testing.assert_allclose(r.invert_apply(r.apply(x)), x, atol=1e-4)


def test_compose_is_apply_order():
    a = random_rigid(jax.random.PRNGKey(2), (4,))
    b = random_rigid(jax.random.PRNGKey(3), (4,))
    x = jax.random.normal(jax.random.PRNGKey(4), (4, 3))
    np.testing.assert_allclose(a.compose(b).apply(x), a.apply(b.apply(x)), atol=1e-4)


def test_rotations_orthonormal():
    r = random_rigid(jax.random.PRNGKey(5), (100,))
    eye = jnp.einsum("nij,nkj->nik", r.rot, r.rot)
    np.testing.assert_allclose(eye, np.broadcast_to(np.eye(3), eye.shape), atol=1e-5)
    np.testing.assert_allclose(jnp.linalg.det(r.rot), 1.0, atol=1e-5)


def test_quaternion_round_trip():
    q = jax.random.normal(jax.random.PRNGKey(6), (50, 4))
    q = q / jnp.linalg.norm(q, axis=-1, keepdims=True)
    q = q * jnp.sign(q[:, :1])
    np.testing.assert_allclose(rot_to_quat(quat_to_rot(q)), q, atol=1e-5)


def test_from_three_points_frame():
    n = jnp.array([[-0.5, 1.4, 0.0]])
    ca = jnp.array([[0.0, 0.0, 0.0]])
    c = jnp.array([[1.5, 0.0, 0.0]])
    f = Rigid.from_three_points(n, ca, c)
    np.testing.assert_allclose(f.rot[0], np.eye(3), atol=1e-6)
    # Equivariance: transforming the points transforms the frame.
    g = random_rigid(jax.random.PRNGKey(7), ())
    f2 = Rigid.from_three_points(g.apply(n), g.apply(ca), g.apply(c))
    np.testing.assert_allclose(f2.rot, g.compose(f).rot, atol=1e-5)
    np.testing.assert_allclose(f2.trans, g.compose(f).trans, atol=1e-5)


def test_quaternion_update_zero_is_identity_and_jittable():
    r = random_rigid(jax.random.PRNGKey(8), (3,))
    out = jax.jit(lambda r, u: r.quaternion_update(u))(r, jnp.zeros((3, 6)))
    np.testing.assert_allclose(out.rot, r.rot, atol=1e-6)
    np.testing.assert_allclose(out.trans, r.trans, atol=1e-6)


def test_batch_indexing_and_4x4():
    r = random_rigid(jax.random.PRNGKey(9), (2, 3))
    assert r[0].shape == (3,)
    m = r.to_tensor_4x4()
    assert m.shape == (2, 3, 4, 4)
    x = jnp.ones((2, 3, 3))
    xh = jnp.concatenate([x, jnp.ones((2, 3, 1))], -1)
    np.testing.assert_allclose(jnp.einsum("...ij,...j->...i", m, xh)[..., :3], r.apply(x), atol=1e-5)
