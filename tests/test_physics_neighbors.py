"""Neighbour lists (sorted cell grid, flat candidate table) against brute force."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from foldlite.physics.neighbors import (brute_force_pairs, build_neighbor_list, needs_rebuild,
                                        pairs_of, query_neighbors)


def _cloud(n=600, box=18.0, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, box, (n, 3)).astype(np.float32)  # ~0.1 atoms / A^3, denser than protein
    mask = np.ones(n, np.float32)
    mask[-20:] = 0.0  # padding
    return x, mask


def test_matches_brute_force_with_exclusions_and_special_pairs():
    x, mask = _cloud()
    n = len(x)
    excl = np.full((n, 2), -1, np.int32)  # exclude chain neighbours i +- 1 (symmetric)
    excl[:-1, 0] = np.arange(1, n)
    excl[1:, 1] = np.arange(n - 1)
    special = np.full((n, 1), -1, np.int32)  # flag i, i+2 pairs
    special[:-2, 0] = np.arange(2, n)
    special2 = np.full((n, 1), -1, np.int32)
    special2[2:, 0] = np.arange(n - 2)
    special = np.concatenate([special, special2], 1)
    nl = build_neighbor_list(jnp.asarray(x), jnp.asarray(mask), jnp.asarray(excl),
                             jnp.asarray(special), cutoff=4.0, capacity=16 * n,
                             candidate_capacity=128 * n)
    assert not bool(nl.overflow)
    got = np.asarray(nl.pairs)[np.asarray(nl.pair_mask())]
    assert len(got) == int(nl.count) == len(pairs_of(nl))  # each pair once
    want = brute_force_pairs(x, mask, 4.0, excl)
    assert pairs_of(nl) == want
    assert np.all(np.asarray(nl.pairs)[int(nl.count):] == n)  # padding rows
    flag = np.asarray(nl.special)[: int(nl.count)]
    assert np.all(np.abs(got[flag, 0] - got[flag, 1]) == 2)
    assert int(flag.sum()) == sum(1 for p in want if abs(p[0] - p[1]) == 2)


def test_overflow_is_reported_not_silent():
    x, mask = _cloud()
    excl = np.full((len(x), 1), -1, np.int32)
    n = len(x)
    args = (jnp.asarray(x), jnp.asarray(mask), jnp.asarray(excl))
    assert not bool(build_neighbor_list(*args, cutoff=4.0, capacity=16 * n,
                                        candidate_capacity=128 * n).overflow)
    assert bool(build_neighbor_list(*args, cutoff=4.0, capacity=n,
                                    candidate_capacity=128 * n).overflow)  # total pairs
    assert bool(build_neighbor_list(*args, cutoff=4.0, capacity=16 * n,
                                    candidate_capacity=8 * n).overflow)  # candidates
    # The candidate count the build examines is the host's estimate (same grid).
    from foldlite.physics.neighbors import half_shell_candidates
    want = half_shell_candidates(x[mask > 0], 4.0)
    assert bool(build_neighbor_list(*args, cutoff=4.0, capacity=16 * n,
                                    candidate_capacity=want - 1).overflow)
    assert not bool(build_neighbor_list(*args, cutoff=4.0, capacity=16 * n,
                                        candidate_capacity=want).overflow)


def test_extended_chain_uses_little_memory():
    # 3,000 atoms on a 1.5 A-spaced line (4.5 km of grid cells would be far too many for a
    # dense grid; the sorted grid only stores atoms).
    n = 3000
    x = np.zeros((n, 3), np.float32)
    x[:, 0] = 1.5 * np.arange(n)
    nl = build_neighbor_list(jnp.asarray(x), jnp.ones(n), jnp.full((n, 1), -1, jnp.int32),
                             cutoff=3.2, capacity=2 * n, candidate_capacity=8 * n)
    assert not bool(nl.overflow)
    assert pairs_of(nl) == {(i, i + 1) for i in range(n - 1)} | {(i, i + 2)
                                                                 for i in range(n - 2)}


def test_query_neighbors_and_rebuild_rule():
    x, mask = _cloud(seed=1)
    rng = np.random.default_rng(2)
    q = rng.uniform(0, 18, (50, 3)).astype(np.float32)
    qm = np.ones(50, np.float32)
    idx, over = query_neighbors(jnp.asarray(q), jnp.asarray(qm), jnp.asarray(x),
                                jnp.asarray(mask), cutoff=3.5, capacity=48, cell_capacity=24)
    assert not bool(over)
    idx = np.asarray(idx)
    d = np.linalg.norm(q[:, None] - x[None], axis=-1)
    for i in range(50):
        want = set(np.nonzero((d[i] < 3.5) & (mask > 0))[0].tolist())
        assert set(idx[i][idx[i] < len(x)].tolist()) == want
    nl = build_neighbor_list(jnp.asarray(x), jnp.asarray(mask), jnp.full((len(x), 1), -1),
                             cutoff=4.0, capacity=16 * len(x), candidate_capacity=128 * len(x))
    moved = x.copy()
    moved[3] += np.array([0.4, 0, 0], np.float32)
    assert not bool(needs_rebuild(nl, jnp.asarray(moved), jnp.asarray(mask), skin=1.0))
    moved[3] += np.array([0.2, 0, 0], np.float32)
    assert bool(needs_rebuild(nl, jnp.asarray(moved), jnp.asarray(mask), skin=1.0))


def test_capacities_are_fixed_per_bucket_and_grow_along_a_ladder(repo_root):
    from foldlite.physics.neighbors import (CAPACITY_LADDER, DEFAULT_CAPACITIES, MAX_CAPACITIES,
                                            estimate_capacities, grow_capacities)
    from foldlite.physics.topology import build_topology
    from foldlite.protein import read_structure

    p = read_structure(repo_root / "tests/data/1A8O.pdb")
    rng = np.random.default_rng(0)
    for sigma in (0.0, 0.3):  # folded proteins, native or noisy: the defaults
        pos = p.atom_positions + rng.normal(0, sigma, p.atom_positions.shape) * p.atom_mask[
            ..., None]
        for pad in (True, False):
            topo, _ = build_topology(p.aatype, pos, p.atom_mask, p.residue_index, pad=pad)
            for cutoff in (3.7, 4.6):
                caps, truncated = estimate_capacities(topo.reference, topo.atom_mask, cutoff,
                                                      topo.exclusions)
                assert caps == DEFAULT_CAPACITIES and not truncated
    # Collapsed: a larger set of the ladder, or truncated beyond the caps.
    topo, _ = build_topology(p.aatype, p.atom_positions, p.atom_mask, p.residue_index)
    centre = topo.reference[topo.atom_mask > 0].mean(0)
    for shrink, want in ((0.8, CAPACITY_LADDER[1]), (0.05, MAX_CAPACITIES)):
        x = (topo.reference - centre) * shrink
        caps, truncated = estimate_capacities(x, topo.atom_mask, 4.6, topo.exclusions)
        assert caps == want and truncated == (shrink < 0.1)
    # Growth walks the ladder and ends at the caps.
    seen, caps = [], dict(DEFAULT_CAPACITIES)
    while caps is not None:
        seen.append(caps)
        caps = grow_capacities(caps)
    assert seen == list(CAPACITY_LADDER)


def test_estimated_capacities_hold_a_crowded_structure(repo_root):
    """Capacities from ``estimate_capacities`` hold the lists of a compressed protein (no
    overflow, every pair found): the defaults for a folded one, a larger set when crowded."""
    from foldlite.physics.neighbors import (CAPACITY_LADDER, capacity_level, estimate_capacities,
                                            list_sizes)
    from foldlite.physics.topology import build_topology
    from foldlite.protein import read_structure

    p = read_structure(repo_root / "tests/data/1A8O.pdb")
    topo, _ = build_topology(p.aatype, p.atom_positions, p.atom_mask, p.residue_index)
    centre = topo.reference[topo.atom_mask > 0].mean(0)
    for shrink in (1.0, 0.7, 0.5):
        x = ((topo.reference - centre) * shrink).astype(np.float32)
        caps, truncated = estimate_capacities(x, topo.atom_mask, 4.6, topo.exclusions)
        assert not truncated
        nl = build_neighbor_list(jnp.asarray(x), jnp.asarray(topo.atom_mask),
                                 jnp.asarray(topo.exclusions), cutoff=4.6,
                                 **list_sizes(caps, len(x)))
        assert not bool(nl.overflow)
        assert pairs_of(nl) == brute_force_pairs(x, topo.atom_mask, 4.6, topo.exclusions)
        level = capacity_level(caps)
        assert CAPACITY_LADDER[level] == caps
        assert (level == 0) == (shrink == 1.0)  # folded: the defaults; compressed: more room
