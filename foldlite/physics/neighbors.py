"""Neighbour lists for non-bonded terms: a sorted cell grid and a flat list of candidates.

Atoms are binned into cubic cells of edge ``cutoff`` (the interaction range plus a skin). Cells are
numbered along a bounding grid, atoms are sorted by cell number, and each atom finds its own cell
and the 13 cells of a half shell in the sorted order by binary search. The atoms of those cells
are the atom's candidates: their counts are laid end to end (a running sum over atoms and cells)
into one flat table of ``candidate_capacity`` slots, so the work follows the number of candidates
actually there, not the fullest cell (a collapsed model with a few crowded cells costs little
more than a folded protein of the same density elsewhere). Candidates are filtered by distance
and by ``j > i`` within the own cell (so each pair is found once), compacted, and then checked
against the exclusion table (bonded 1-2, 1-3, 1-4 pairs). The pairs go into a flat list
``pairs [P, 2]``: non-bonded terms then cost one gather (and one scatter in the gradient) per
listed pair. Time and memory are ``O(candidate_capacity + P)``, linear in the number of atoms,
never ``O(A^2)``.

Everything has a fixed shape so it runs under ``jax.jit`` and inside ``lax.while_loop``: a list
that would need more room than its capacities sets ``overflow``; the caller then rebuilds with
larger capacities (a new compile, rare in practice).

Verlet skin: a list built with ``cutoff = r_interaction + skin`` stays valid while no atom has
moved more than ``skin / 2`` since the build (``needs_rebuild``).
"""

from __future__ import annotations

import dataclasses
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

#: The 27 integer offsets of a cell and its neighbours.
_OFFSETS = np.array([(dx, dy, dz) for dx in (-1, 0, 1) for dy in (-1, 0, 1) for dz in (-1, 0, 1)],
                    np.int32)
#: The own cell first, then 13 cells of a half shell (one of each pair of opposite offsets).
_HALF_SHELL = np.array([(0, 0, 0)] + [tuple(o) for o in _OFFSETS
                                      if tuple(o) > (0, 0, 0)], np.int32)
#: Largest grid (cells) whose linear cell number fits in int32.
_MAX_CELLS = 2**31 - 1


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class NeighborList:
    """A flat list of atom pairs within the cutoff, each unordered pair once.

    Attributes:
      pairs: int32 [P, 2]: the pairs ``(i, j)``; rows past ``count`` hold ``(A, A)`` (A = number
        of atoms, one past the last index).
      special: bool [P]: the pair is listed in the ``special`` table of the build (e.g. 1-5
        pairs, which get a shorter contact distance).
      count: int32 []: number of pairs found (may exceed ``P`` when ``overflow``).
      reference: float32 [A, 3]: positions at the build (for the rebuild test).
      overflow: bool []: the list is incomplete; rebuild with larger capacities.
    """

    pairs: jax.Array
    special: jax.Array
    count: jax.Array
    reference: jax.Array
    overflow: jax.Array

    @property
    def capacity(self) -> int:
        return self.pairs.shape[0]

    def pair_mask(self) -> jax.Array:
        """bool [P]: rows holding a pair."""
        return self.pairs[:, 0] < self.reference.shape[0]


def _cell_coords(x: jax.Array, mask: jax.Array, cell: float):
    """Integer cell coordinates of each atom on a grid bounding the masked atoms (1-cell margin).

    Returns (coords int32 [A,3], dims int32 [3], too_large bool []).
    """
    big = jnp.float32(1e9)
    lo = jnp.min(jnp.where(mask[:, None], x, big), axis=0) - cell
    hi = jnp.max(jnp.where(mask[:, None], x, -big), axis=0) + cell
    lo = jnp.where(jnp.any(mask), lo, 0.0)
    hi = jnp.where(jnp.any(mask), hi, cell)
    dims_f = jnp.floor((hi - lo) / cell) + 1.0
    too_large = jnp.prod(dims_f) > jnp.float32(_MAX_CELLS) * 0.5
    dims = jnp.clip(dims_f, 1.0, 1024.0 * 1024.0).astype(jnp.int32)
    c = jnp.floor((x - lo) / cell).astype(jnp.int32)
    c = jnp.clip(c, 0, dims - 1)
    return c, dims, too_large


def _linear(c: jax.Array, dims: jax.Array) -> jax.Array:
    return c[..., 0] + dims[0] * (c[..., 1] + dims[1] * c[..., 2])


def _compact(values: jax.Array, ok: jax.Array, width: int, fill: int) -> jax.Array:
    """Keep the entries of ``values`` [A, C] where ``ok``, left-aligned in [A, width]."""
    a = values.shape[0]
    pos = jnp.where(ok, jnp.cumsum(ok, axis=-1) - 1, width)
    rows = jnp.broadcast_to(jnp.arange(a)[:, None], pos.shape)
    return jnp.full((a, width), fill, values.dtype).at[rows, pos].set(values, mode="drop")


@partial(jax.jit, static_argnames=("cutoff", "capacity", "candidate_capacity"))
def build_neighbor_list(x: jax.Array, mask: jax.Array, exclusions: jax.Array,
                        special: jax.Array | None = None, *, cutoff: float, capacity: int,
                        candidate_capacity: int | None = None) -> NeighborList:
    """Build a flat pair list with a sorted cell grid (see the module docstring).

    Args:
      x: float32 [A, 3] positions.
      mask: [A] 1 for real atoms, 0 for padding (padding never appears in the list).
      exclusions: int32 [A, E] atoms that must not be paired with atom ``i`` (e.g. bonded
        neighbours), padded with -1 (or any index outside ``[0, A)``). Must be symmetric.
      special: int32 [A, F] or None: partners whose pairs are flagged in ``NeighborList.special``
        (same padding convention). Must be symmetric.
      cutoff: distance cutoff (Angstrom); also the cell edge.
      capacity: P, pairs kept in all.
      candidate_capacity: K, candidate pairs examined in all (the atoms of each atom's own cell
        and half shell; a folded protein has about 45 per atom at a 4.6 A cutoff); default
        ``8 * capacity``.

    Returns:
      NeighborList with ``pairs [P, 2]``.
    """
    a = x.shape[0]
    k = int(candidate_capacity if candidate_capacity is not None else 8 * capacity)
    mask = mask.astype(bool)
    x = x.astype(jnp.float32)
    coords, dims, too_large = _cell_coords(x, mask, cutoff)
    n_cells = dims[0] * dims[1] * dims[2]
    key = jnp.where(mask, _linear(coords, dims), n_cells)  # padding sorts last, matches nothing
    order = jnp.argsort(key).astype(jnp.int32)
    sorted_key = key[order]

    # The candidate ranges: atom i, half-shell cell h -> sorted positions [start, start + n).
    offsets = jnp.asarray(_HALF_SHELL)                                        # [H=14,3]
    n_half = offsets.shape[0]
    nb = coords[:, None, :] + offsets[None]                                   # [A,H,3]
    inside = jnp.all((nb >= 0) & (nb < dims), axis=-1) & mask[:, None]        # [A,H]
    nkey = jnp.where(inside, _linear(nb, dims), -1)
    # (method "scan", a loop: the unrolled search gets fused into, and recomputed by, every
    # consumer, several times slower in all.)
    start = jnp.searchsorted(sorted_key, nkey, side="left", method="scan")
    stop = jnp.searchsorted(sorted_key, nkey, side="right", method="scan")
    count = jnp.where(inside, stop - start, 0).reshape(-1).astype(jnp.int32)  # [A*H]
    end = jnp.cumsum(count)
    first = end - count                                                       # [A*H]
    total = end[-1]

    # Lay the ranges end to end in K slots: slot -> (range, position in it). The range of a
    # slot is the number of ranges starting at or before it, less one (empty ranges share the
    # start of the next one and come before it).
    marks = jnp.zeros((k + 1,), jnp.int32).at[jnp.minimum(first, k)].add(1)
    seg = jnp.clip(jnp.cumsum(marks[:k]) - 1, 0, count.shape[0] - 1)            # [K]
    slot = jnp.arange(k, dtype=jnp.int32)
    i = seg // n_half
    own_cell = (seg % n_half) == 0
    j = order[jnp.clip(start.reshape(-1)[seg] + slot - first[seg], 0, a - 1)]
    ok = (slot < total) & jnp.where(own_cell, j > i, True) & mask[j]
    d2 = jnp.sum((x[i] - x[j]) ** 2, axis=-1)
    ok &= d2 < cutoff * cutoff

    # Compact the pairs within the cutoff (bonded ones included: at most E / 2 per atom), then
    # drop the exclusions and flag the special pairs on the short table.
    n_excl = exclusions.shape[-1]
    mid = capacity + (n_excl // 2 + 1) * a
    n_close = jnp.sum(ok)
    pos = jnp.where(ok, jnp.cumsum(ok) - 1, mid)
    pick = jnp.full((mid,), k, jnp.int32).at[pos].set(slot, mode="drop")
    have = pick < k
    pick = jnp.minimum(pick, k - 1)
    ii, jj = i[pick], j[pick]
    keep = have
    if n_excl > 0:
        keep &= ~jnp.any(exclusions[ii] == jj[:, None], axis=-1)
    if special is not None and special.shape[-1] > 0:
        flag = jnp.any(special[ii] == jj[:, None], axis=-1)
    else:
        flag = jnp.zeros(keep.shape, bool)
    n_pairs = jnp.sum(keep).astype(jnp.int32)
    pos = jnp.where(keep, jnp.cumsum(keep) - 1, capacity)
    pairs = jnp.full((capacity, 2), a, jnp.int32).at[pos].set(
        jnp.stack([ii, jj], axis=-1).astype(jnp.int32), mode="drop")
    special_flag = jnp.zeros((capacity,), bool).at[pos].set(flag, mode="drop")
    overflow = (total > k) | (n_close > mid) | (n_pairs > capacity) | too_large
    return NeighborList(pairs=pairs, special=special_flag, count=n_pairs, reference=x,
                        overflow=overflow)


#: Default capacities per (padded) atom: enough for any folded protein at a 4.6 A cutoff
#: (measured: 4.4-5.1 non-bonded pairs and ~45 half-shell candidates per atom), against 8 and
#: 64. Crowded structures (collapsed models) get a larger set of ``CAPACITY_LADDER`` (each
#: doubling both); at ``MAX_CAPACITIES`` an overcrowded structure is refined with truncated
#: lists.
DEFAULT_CAPACITIES = {"pairs_per_atom": 8, "candidates_per_atom": 64}
MAX_CAPACITIES = {"pairs_per_atom": 128, "candidates_per_atom": 1024}


def capacities_at_level(level: int) -> dict:
    """``DEFAULT_CAPACITIES`` times ``2**level``, each capped at ``MAX_CAPACITIES``."""
    return {k: min(v * 2 ** level, MAX_CAPACITIES[k]) for k, v in DEFAULT_CAPACITIES.items()}


#: The capacity sets in use, smallest first (``capacities_at_level`` 0 to 4: the defaults, x2,
#: x4, x8 and the caps): few sets, so that inputs of one atom bucket share compiled programs,
#: and close enough that a crowded structure does not pay for much more room than it needs.
CAPACITY_LADDER = tuple(capacities_at_level(level) for level in range(5))
assert CAPACITY_LADDER[-1] == MAX_CAPACITIES


def list_sizes(capacities: dict, num_atoms: int) -> dict:
    """``build_neighbor_list`` keyword sizes (capacity, candidate_capacity) for ``num_atoms``
    (padded) atoms from a capacities dict."""
    return {"capacity": int(capacities["pairs_per_atom"]) * num_atoms,
            "candidate_capacity": int(capacities["candidates_per_atom"]) * num_atoms}


def list_bytes(num_atoms: int, capacities: dict = MAX_CAPACITIES) -> int:
    """Bytes of building one neighbour list for ``num_atoms`` atoms (an upper bound, at the
    largest capacities by default): about six 4-byte values per candidate slot and four per
    kept pair."""
    sizes = list_sizes(capacities, num_atoms)
    return 4 * (6 * sizes["candidate_capacity"] + 4 * sizes["capacity"])


def capacity_level(caps: dict) -> int:
    """Index of the smallest set of ``CAPACITY_LADDER`` holding ``caps``."""
    for level, step in enumerate(CAPACITY_LADDER):
        if all(caps[k] <= step[k] for k in step):
            return level
    return len(CAPACITY_LADDER) - 1


def half_shell_candidates(x: np.ndarray, cutoff: float) -> int:
    """Number of candidate pairs ``build_neighbor_list`` examines for atoms ``x`` [N,3] (real
    atoms only): for every atom, the atoms of its own cell and of the 13 half-shell cells, on a
    grid of edge ``cutoff`` (host side)."""
    x = np.asarray(x, np.float64)
    if len(x) == 0:
        return 0
    c = np.floor((x - x.min(0) + cutoff) / cutoff).astype(np.int64) + 1
    dims = c.max(0) + 2
    keys, occupancy = np.unique(c[:, 0] + dims[0] * (c[:, 1] + dims[1] * c[:, 2]),
                                return_counts=True)
    total = 0
    for o in _HALF_SHELL.astype(np.int64):
        nk = keys + o[0] + dims[0] * (o[1] + dims[1] * o[2])
        at = np.clip(np.searchsorted(keys, nk), 0, len(keys) - 1)
        total += int(np.sum(occupancy * np.where(keys[at] == nk, occupancy[at], 0)))
    return total


def estimate_capacities(x: np.ndarray, mask: np.ndarray, cutoff: float,
                        exclusions: np.ndarray, margin: float = 1.25) -> tuple[dict, bool]:
    """Capacities for ``build_neighbor_list`` from the coordinates (host side, scipy k-d tree),
    so that crowded inputs get room up front instead of overflowing.

    Every folded protein gets ``DEFAULT_CAPACITIES`` (measured on real chains at a 4.6 A cutoff:
    4.4-5.1 non-bonded pairs and ~45 half-shell candidates per atom, against 8 and 64 per padded
    atom), so the capacity of a list is fixed by the atom bucket. Crowded inputs (collapsed
    models) get the smallest set of ``CAPACITY_LADDER`` that holds them (with ``margin``), so
    only a few capacity sets (and compiled programs) exist.

    Args: x [A,3] and mask [A] (padded layout), cutoff, exclusions [A,E] (as for the build).
    Returns (capacities dict with pairs_per_atom and candidates_per_atom; truncated: True
    when even ``MAX_CAPACITIES`` cannot hold the lists).
    """
    from scipy.spatial import cKDTree  # deferred: SciPy takes a while to import

    x = np.asarray(x, np.float64)
    real = np.nonzero(np.asarray(mask) > 0)[0]
    if len(real) < 2:
        return dict(DEFAULT_CAPACITIES), False
    a = x.shape[0]
    pairs = real[cKDTree(x[real]).query_pairs(cutoff, output_type="ndarray")]
    ex = np.asarray(exclusions)
    rows = np.broadcast_to(np.arange(a)[:, None], ex.shape)
    ex_keys = (rows * a + ex)[ex >= 0]
    n_bonded = int(np.isin(pairs[:, 0] * a + pairs[:, 1], ex_keys).sum()) if len(pairs) else 0
    need = {
        "pairs_per_atom": margin * (len(pairs) - n_bonded) / a,
        "candidates_per_atom": margin * half_shell_candidates(x[real], cutoff) / a,
    }
    for caps in CAPACITY_LADDER:
        if all(need[k] <= caps[k] for k in need):
            return dict(caps), False
    return dict(MAX_CAPACITIES), True


def grow_capacities(caps: dict) -> dict | None:
    """The next set of ``CAPACITY_LADDER`` above ``caps`` (capacities that never shrink), or
    None when every capacity is at its cap already."""
    for step in CAPACITY_LADDER:
        if all(step[k] >= caps[k] for k in step) and step != caps:
            return dict(step)
    grown = {k: max(min(2 * v, MAX_CAPACITIES[k]), caps[k]) for k, v in caps.items()}
    return None if grown == caps else grown


@partial(jax.jit, static_argnames=("cutoff", "capacity", "cell_capacity"))
def query_neighbors(points: jax.Array, point_mask: jax.Array, x: jax.Array, mask: jax.Array, *,
                    cutoff: float, capacity: int = 32, cell_capacity: int = 16
                    ) -> tuple[jax.Array, jax.Array]:
    """Atoms of ``x`` within ``cutoff`` of each query point (a different set), by the same grid.

    Args:
      points: float32 [Q, 3] query points; point_mask [Q].
      x: float32 [A, 3] atoms; mask [A].
    Returns:
      (idx int32 [Q, K] with ``A`` for empty slots, overflow bool []).
    """
    a = x.shape[0]
    mask = mask.astype(bool)
    point_mask = point_mask.astype(bool)
    both = jnp.concatenate([x, points], axis=0)
    both_mask = jnp.concatenate([mask, point_mask], axis=0)
    coords, dims, too_large = _cell_coords(both.astype(jnp.float32), both_mask, cutoff)
    n_cells = dims[0] * dims[1] * dims[2]
    key = jnp.where(mask, _linear(coords[:a], dims), n_cells)
    order = jnp.argsort(key)
    sorted_key = key[order]
    qc = coords[a:]
    nb = qc[:, None, :] + jnp.asarray(_OFFSETS)[None]
    inside = jnp.all((nb >= 0) & (nb < dims), axis=-1)
    nkey = jnp.where(inside, _linear(nb, dims), -1)
    start = jnp.searchsorted(sorted_key, nkey, side="left", method="scan")
    stop = jnp.searchsorted(sorted_key, nkey, side="right", method="scan")
    cell_over = jnp.any(inside & point_mask[:, None] & (stop - start > cell_capacity))
    slot = start[..., None] + jnp.arange(cell_capacity)
    ok = (slot < stop[..., None]) & inside[..., None]
    q = points.shape[0]
    j = order[jnp.clip(slot, 0, a - 1)].reshape(q, -1)
    ok = ok.reshape(q, -1) & point_mask[:, None] & mask[j]
    d2 = jnp.sum((points[:, None, :] - x[j]) ** 2, axis=-1)
    ok &= d2 < cutoff * cutoff
    count = jnp.sum(ok, axis=-1)
    idx = _compact(j.astype(jnp.int32), ok, capacity, a)
    return idx, cell_over | jnp.any(count > capacity) | too_large


def needs_rebuild(nl: NeighborList, x: jax.Array, mask: jax.Array, skin: float) -> jax.Array:
    """bool []: some atom moved more than ``skin / 2`` since ``nl`` was built."""
    d2 = jnp.sum((x - nl.reference) ** 2, axis=-1)
    d2 = jnp.where(mask.astype(bool), d2, 0.0)
    return jnp.max(d2) > (0.5 * skin) ** 2


def brute_force_pairs(x: np.ndarray, mask: np.ndarray, cutoff: float,
                      exclusions: np.ndarray | None = None) -> set[tuple[int, int]]:
    """All pairs ``(i, j)``, ``i < j``, of masked atoms within ``cutoff``: O(A^2) reference for tests."""
    x = np.asarray(x, np.float64)
    m = np.asarray(mask).astype(bool)
    d = np.linalg.norm(x[:, None] - x[None], axis=-1)
    ii, jj = np.nonzero((d < cutoff) & m[:, None] & m[None] & np.triu(np.ones_like(d, bool), 1))
    out = set(zip(ii.tolist(), jj.tolist()))
    if exclusions is not None:
        excl = {(i, int(e)) for i in range(len(exclusions)) for e in exclusions[i] if 0 <= e}
        out = {p for p in out if p not in excl and (p[1], p[0]) not in excl}
    return out


def pairs_of(nl: NeighborList) -> set[tuple[int, int]]:
    """The pairs held by ``nl`` as a Python set of ``(min, max)`` (tests, debugging)."""
    p = np.asarray(nl.pairs)
    p = p[np.asarray(nl.pair_mask())]
    return {(int(min(a, b)), int(max(a, b))) for a, b in p}
