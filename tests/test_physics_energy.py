"""Energy terms of foldlite.physics.energy: hand-computed values, finite gradients, invariances."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import perturbed_topology

from foldlite.geometry.rigid import random_rigid
from foldlite.physics import energy as E
from foldlite.physics.neighbors import build_neighbor_list
from foldlite.physics.topology import build_topology, ideal_chiral_volume
from foldlite.protein import read_structure


def _x(*rows):
    return jnp.asarray(np.array(rows, np.float32))


def test_bond_energy_hand_value():
    x = _x([0, 0, 0], [1.6, 0, 0])
    e = E.bond_energy(x, jnp.array([[0, 1]]), jnp.array([1.5]), jnp.array([0.05]),
                      jnp.array([1.0]))
    assert float(e) == pytest.approx(0.5 * 2.0 ** 2, rel=1e-4)  # z = 2
    e0 = E.bond_energy(x, jnp.array([[0, 1]]), jnp.array([1.5]), jnp.array([0.05]),
                       jnp.array([0.0]))
    assert float(e0) == 0.0


def test_angle_energy_hand_value():
    x = _x([1, 0, 0], [0, 0, 0], [0, 2, 0])  # 90 degrees at atom 1
    theta = E.bond_angles(x, jnp.array([[0, 1, 2]]))
    assert float(theta[0]) == pytest.approx(math.pi / 2, abs=1e-5)
    e = E.angle_energy(x, jnp.array([[0, 1, 2]]), jnp.array([math.radians(100.0)]),
                       jnp.array([math.radians(5.0)]), jnp.array([1.0]))
    assert float(e) == pytest.approx(2.0, rel=1e-4)  # z = -2


def test_dihedral_sign_and_omega_energy():
    # p0-p1-p2-p3 with dihedral +60 degrees (IUPAC: clockwise looking down p1->p2 is positive).
    t = math.radians(60.0)
    x = _x([1, 0, 0], [0, 0, 0], [0, 0, 1], [math.cos(t), math.sin(t), 1])
    quad = jnp.array([[0, 1, 2, 3]])
    assert float(E.dihedral_angles(x, quad)[0]) == pytest.approx(t, abs=1e-5)
    # Omega 170 degrees against a trans target with sd 5 degrees: (1 - cos 10deg) / sd^2.
    w = math.radians(170.0)
    x = _x([1, 0, 0], [0, 0, 0], [0, 0, 1], [math.cos(w), math.sin(w), 1])
    sd = math.radians(5.0)
    e = E.omega_energy(x, quad, jnp.array([math.pi]), jnp.array([sd]), jnp.array([1.0]))
    assert float(e) == pytest.approx((1 - math.cos(math.radians(10.0))) / sd ** 2, rel=1e-3)
    assert float(e) == pytest.approx(0.5 * 2.0 ** 2, rel=5e-3)  # ~ 0.5 z^2 near the target
    e_cis = E.omega_energy(x, quad, jnp.array([0.0]), jnp.array([sd]), jnp.array([1.0]))
    assert float(e_cis) > 100 * float(e)


def test_signed_volume_and_chirality():
    x = _x([0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1])
    v = E.signed_volumes(x, jnp.array([[0, 1, 2, 3]]))
    assert float(v[0]) == pytest.approx(1.0)
    v_mirror = E.signed_volumes(x * jnp.array([1.0, 1.0, -1.0]), jnp.array([[0, 1, 2, 3]]))
    assert float(v_mirror[0]) == pytest.approx(-1.0)
    e = E.chirality_energy(x, jnp.array([[0, 1, 2, 3]]), jnp.array([1.4]), jnp.array([0.2]),
                           jnp.array([1.0]))
    assert float(e) == pytest.approx(0.5 * 2.0 ** 2, rel=1e-4)
    # L-amino acids: CA with (N, C, CB) has a positive volume of about 2.5 A^3.
    assert 2.2 < ideal_chiral_volume("ALA", "CA", "N", "C", "CB") < 2.8
    assert ideal_chiral_volume("ILE", "CB", "CA", "CG1", "CG2") > 2.0
    assert ideal_chiral_volume("THR", "CB", "CA", "OG1", "CG2") > 2.0


def _pair_list(n_atoms, pairs, special=()):
    idx = np.full((3, 2), n_atoms, np.int32)  # padded rows hold n_atoms
    flag = np.zeros((3,), bool)
    for k, (i, j) in enumerate(pairs):
        idx[k] = (i, j)
        flag[k] = (i, j) in special
    return jnp.asarray(idx), jnp.asarray(flag)


def test_repulsion_hand_values():
    radius = jnp.array([1.7, 1.7, 1.55, 1.52])
    polar = jnp.array([0.0, 0.0, 1.0, 1.0])
    # Two carbons 3.0 A apart: contact 3.4, tolerance 0.2 -> 0.2 A too close -> 0.04.
    x = _x([0, 0, 0], [3.0, 0, 0], [50, 0, 0], [52.4, 0, 0])
    idx, flag = _pair_list(4, [(0, 1)])
    e = E.repulsion_energy(x, idx, flag, radius, polar, tolerance=0.2)
    assert float(e) == pytest.approx(0.04, rel=1e-3)
    # N...O 2.4 A: a hydrogen-bond pair, contact 2.7 - 0.2 -> 0.1 too close -> 0.01.
    idx, flag = _pair_list(4, [(2, 3)])
    e = E.repulsion_energy(x, idx, flag, radius, polar, tolerance=0.2, hbond_contact=2.7)
    assert float(e) == pytest.approx(0.01, rel=1e-3)
    # A 1-5 pair at 3.0 A: contact 3.4 - 0.5, no penalty.
    idx, flag = _pair_list(4, [(0, 1)], special={(0, 1)})
    assert float(E.repulsion_energy(x, idx, flag, radius, polar, tolerance=0.2)) == 0.0
    # Empty rows contribute nothing.
    idx = jnp.full((4, 2), 4, jnp.int32)
    assert float(E.repulsion_energy(x, idx, jnp.zeros((4,), bool), radius, polar)) == 0.0


def test_attraction_hbond_restraint_hand_values():
    radius = jnp.array([1.7, 1.7])
    idx = jnp.array([[0, 1], [2, 2]], jnp.int32)  # one pair and a padding row
    for d, want in ((3.4, -1.0), (3.4 + 0.75, -0.5), (3.4 + 1.5, 0.0), (3.0, -1.0)):
        x = _x([0, 0, 0], [d, 0, 0])
        assert float(E.attraction_energy(x, idx, radius, width=1.5)) == pytest.approx(
            want, abs=1e-5)
    x = _x([0, 0, 0], [2.9, 0, 0])
    donor, acceptor = jnp.array([1.0, 0.0]), jnp.array([0.0, 1.0])
    e = E.hbond_energy(x, idx, donor, acceptor, jnp.array([0, 5]))
    assert float(e) == pytest.approx(-1.0, abs=1e-5)
    assert float(E.hbond_energy(x, idx, donor, acceptor, jnp.array([0, 1]))) == 0.0
    x0 = _x([0, 0, 0], [1, 1, 1])
    x1 = _x([0.5, 0, 0], [1, 1, 1])
    w = jnp.array([4.0, 4.0])
    assert float(E.restraint_energy(x1, x0, w)) == pytest.approx(0.5 * 4 * 0.25)
    assert float(E.restraint_energy(x1, x0, w, flat_bottom=0.3)) == pytest.approx(
        0.5 * 4 * 0.2 ** 2, rel=1e-3)


def test_every_term_has_finite_gradients_even_when_degenerate():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(5, 3)).astype(np.float32))
    x_deg = jnp.zeros((5, 3), jnp.float32)  # all atoms on top of each other
    pairs = jnp.array([[0, 1], [1, 2]])
    triples = jnp.array([[0, 1, 2], [1, 2, 3]])
    quads = jnp.array([[0, 1, 2, 3], [1, 2, 3, 4]])
    one = jnp.ones(2)
    nbr = jnp.array([[0, 1], [0, 2], [1, 3], [2, 4], [5, 5]], jnp.int32)
    flag = jnp.zeros((5,), bool)
    radius = jnp.full((5,), 1.7)
    polar = jnp.array([0, 1, 1, 0, 0], jnp.float32)
    fns = [
        lambda x: E.bond_energy(x, pairs, one, one * 0.02, one),
        lambda x: E.angle_energy(x, triples, one * 2.0, one * 0.03, one),
        lambda x: E.omega_energy(x, quads, one * math.pi, one * 0.1, one),
        lambda x: E.chirality_energy(x, quads, one * 2.5, one * 0.2, one),
        lambda x: E.repulsion_energy(x, nbr, flag, radius, polar),
        lambda x: E.attraction_energy(x, nbr, radius),
        lambda x: E.hbond_energy(x, nbr, polar, 1 - polar, jnp.arange(5) * 3),
        lambda x: E.restraint_energy(x, x + 0.1, jnp.ones(5), flat_bottom=0.05),
    ]
    for f in fns:
        grad = jax.jit(jax.grad(f))
        for pos in (x, x_deg):
            assert np.all(np.isfinite(np.asarray(grad(pos)))), f


@pytest.fixture(scope="module")
def small_system():
    return perturbed_topology(seed=1, sigma=0.1)


_terms = jax.jit(E.energy_terms, static_argnames=("weights",))


def _nl(topo, x):
    return build_neighbor_list(x, topo.atom_mask, topo.exclusions, topo.one_five, cutoff=4.6,
                               capacity=16 * x.shape[0],
                               candidate_capacity=128 * x.shape[0])


def test_total_energy_gradient_matches_finite_differences(small_system):
    topo, layout = small_system
    w = E.EnergyWeights(attraction=0.1, hbond=0.5)
    x = topo.reference + 0.05
    nl = _nl(topo, x)
    f = jax.jit(jax.value_and_grad(lambda y: E.total_energy(y, topo, nl, w)))
    g = np.asarray(f(x)[1])
    rng = np.random.default_rng(2)
    for _ in range(3):
        d = rng.normal(size=x.shape).astype(np.float32) * np.asarray(topo.atom_mask)[:, None]
        d /= np.linalg.norm(d)
        h = 1e-2  # float32 energies of ~1e4: a larger step keeps rounding out of the difference
        fd = (float(f(x + h * d)[0]) - float(f(x - h * d)[0])) / (2 * h)
        assert fd == pytest.approx(float(np.sum(g * d)), rel=1e-2, abs=1e-1)
    assert np.all(g[layout.num_atoms:] == 0)  # padding atoms feel nothing


def test_energy_is_invariant_under_rigid_motion(small_system):
    topo, _ = small_system
    topo = topo.replace(restraint_weight=jnp.zeros_like(topo.restraint_weight))
    w = E.EnergyWeights(attraction=0.1, hbond=0.5)
    x = topo.reference
    e0 = sum(float(v) for v in _terms(x, topo, _nl(topo, x), w).values())
    r = random_rigid(jax.random.PRNGKey(3), ())
    y = r.apply(x)
    e1 = sum(float(v) for v in _terms(y, topo, _nl(topo, y), w).values())
    assert e1 == pytest.approx(e0, rel=1e-3, abs=1e-2)


def test_energy_terms_are_padding_invariant(repo_root):
    p = read_structure(repo_root / "tests/data/3JQH.cif.gz")
    out = []
    for pad in (False, True):
        topo, _ = build_topology(p.aatype, p.atom_positions, p.atom_mask, p.residue_index,
                                 pad=pad)
        topo = jax.tree_util.tree_map(jnp.asarray, topo)
        x = topo.reference + 0.02
        terms = _terms(x, topo, _nl(topo, x), E.EnergyWeights(attraction=0.1, hbond=0.5))
        out.append({k: float(v) for k, v in terms.items()})
    for k in out[0]:
        assert out[1][k] == pytest.approx(out[0][k], rel=1e-4, abs=1e-4), k
