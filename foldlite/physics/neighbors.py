"""Neighbour lists for non-bonded terms: a sorted cell grid with fixed capacities.

Atoms are binned into cubic cells of edge ``cutoff`` (the interaction range plus a skin). Cells are
numbered along a bounding grid, atoms are sorted by cell number, and each atom finds its own cell
and the 13 cells of a half shell in the sorted order by binary search; each cell contributes at
most ``cell_capacity`` candidates, which are filtered by distance, by ``j > i`` within the own
cell (so each pair is found once) and by the exclusion table (bonded 1-2, 1-3, 1-4 pairs). The
pairs are compacted into a flat list ``pairs [P, 2]``: non-bonded terms then cost one gather (and
one scatter in the gradient) per real pair, with no padding slots per atom. Time and memory are
``O(A * 14 * cell_capacity)``, linear in the number of atoms, never ``O(A^2)``.

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


@partial(jax.jit, static_argnames=("cutoff", "capacity", "row_capacity", "cell_capacity"))
def build_neighbor_list(x: jax.Array, mask: jax.Array, exclusions: jax.Array,
                        special: jax.Array | None = None, *, cutoff: float, capacity: int,
                        row_capacity: int = 32, cell_capacity: int = 24) -> NeighborList:
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
      row_capacity: pairs found per atom before the exclusions are removed, beyond ``E``.
      cell_capacity: M, atoms read per cell.

    Returns:
      NeighborList with ``pairs [P, 2]``.
    """
    a = x.shape[0]
    mask = mask.astype(bool)
    x = x.astype(jnp.float32)
    coords, dims, too_large = _cell_coords(x, mask, cutoff)
    n_cells = dims[0] * dims[1] * dims[2]
    key = jnp.where(mask, _linear(coords, dims), n_cells)  # padding sorts last, matches nothing
    order = jnp.argsort(key)
    sorted_key = key[order]

    offsets = jnp.asarray(_HALF_SHELL)                                        # [14,3]
    nb = coords[:, None, :] + offsets[None]                                   # [A,14,3]
    inside = jnp.all((nb >= 0) & (nb < dims), axis=-1)                        # [A,14]
    nkey = jnp.where(inside, _linear(nb, dims), -1)
    start = jnp.searchsorted(sorted_key, nkey, side="left", method="scan")    # [A,14]
    stop = jnp.searchsorted(sorted_key, nkey, side="right", method="scan")
    cell_over = jnp.any(inside & mask[:, None] & (stop - start > cell_capacity))

    slot = start[..., None] + jnp.arange(cell_capacity)                       # [A,14,M]
    ok = (slot < stop[..., None]) & inside[..., None]
    j = order[jnp.clip(slot, 0, a - 1)]
    i = jnp.arange(a)[:, None, None]
    own_cell = (jnp.arange(offsets.shape[0]) == 0)[None, :, None]
    ok &= jnp.where(own_cell, j > i, True)
    j = j.reshape(a, -1)                                                      # [A,14M]
    ok = ok.reshape(a, -1) & mask[:, None] & mask[j]
    d2 = jnp.sum((x[:, None, :] - x[j]) ** 2, axis=-1)
    ok &= d2 < cutoff * cutoff

    # Per atom: compact the pairs within the cutoff, drop the exclusions on the short table.
    n_excl = exclusions.shape[-1]
    wide = row_capacity + n_excl
    row_all = jnp.sum(ok, axis=-1)
    jj = _compact(j.astype(jnp.int32), ok, wide, a)                           # [A,K+E]
    keep = jj < a
    if n_excl > 0:
        keep &= ~jnp.any(jj[:, :, None] == exclusions[:, None, :], axis=-1)
    if special is not None and special.shape[-1] > 0:
        flag = jnp.any(jj[:, :, None] == special[:, None, :], axis=-1)
    else:
        flag = jnp.zeros(jj.shape, bool)
    # Then flatten into one list of pairs.
    ii = jnp.broadcast_to(jnp.arange(a, dtype=jnp.int32)[:, None], jj.shape)
    keep = keep.reshape(-1)
    count = jnp.sum(keep).astype(jnp.int32)
    pos = jnp.where(keep, jnp.cumsum(keep) - 1, capacity)
    pairs = jnp.full((capacity, 2), a, jnp.int32).at[pos].set(
        jnp.stack([ii.reshape(-1), jj.reshape(-1)], axis=-1), mode="drop")
    special_flag = jnp.zeros((capacity,), bool).at[pos].set(flag.reshape(-1), mode="drop")
    overflow = cell_over | jnp.any(row_all > wide) | (count > capacity) | too_large
    return NeighborList(pairs=pairs, special=special_flag, count=count, reference=x,
                        overflow=overflow)


#: Default capacities (enough for any folded protein at a 4.6 A cutoff: about 5 pairs per atom,
#: at most ~35 atoms within the cutoff of one atom, ~15 atoms per cell) and the caps beyond
#: which an overcrowded structure (a collapsed model) is refined with truncated lists (16 times
#: the defaults; the cell capacity 256 holds 200 atoms per 4.6 A cell at the 1.25 margin).
DEFAULT_CAPACITIES = {"pairs_per_atom": 8, "row_capacity": 32, "cell_capacity": 24}
MAX_CAPACITIES = {"pairs_per_atom": 128, "row_capacity": 512, "cell_capacity": 256}


def capacities_at_level(level: int) -> dict:
    """``DEFAULT_CAPACITIES`` times ``4**level``, each capped at ``MAX_CAPACITIES``."""
    return {k: min(v * 4 ** level, MAX_CAPACITIES[k]) for k, v in DEFAULT_CAPACITIES.items()}


#: The capacity sets in use, smallest first (``capacities_at_level`` 0, 1, 2: the defaults, x4,
#: and the caps): few sets, so that inputs of one atom bucket share compiled programs.
CAPACITY_LADDER = tuple(capacities_at_level(level) for level in range(3))
assert CAPACITY_LADDER[-1] == MAX_CAPACITIES


def estimate_capacities(x: np.ndarray, mask: np.ndarray, cutoff: float,
                        exclusions: np.ndarray, margin: float = 1.25) -> tuple[dict, bool]:
    """Capacities for ``build_neighbor_list`` from the coordinates (host side, scipy k-d tree),
    so that crowded inputs get room up front instead of overflowing.

    Every folded protein gets ``DEFAULT_CAPACITIES`` (measured on real chains at a 4.6 A cutoff:
    4.4-5.1 non-bonded pairs per atom, at most 35 atoms within the cutoff of one atom and 13 in
    one cell, against 8 x padded atoms, 32 + the exclusion width and 24), so the capacity of a
    list is fixed by the atom bucket. Crowded inputs (collapsed models) get
    the smallest set of ``CAPACITY_LADDER`` that holds them, so only a few capacity sets (and
    compiled programs) exist.

    Args: x [A,3] and mask [A] (padded layout), cutoff, exclusions [A,E] (as for the build).
    Returns (capacities dict with pairs_per_atom, row_capacity, cell_capacity; truncated: True
    when even ``MAX_CAPACITIES`` cannot hold the lists).
    """
    from scipy.spatial import cKDTree

    x = np.asarray(x, np.float64)
    real = np.nonzero(np.asarray(mask) > 0)[0]
    if len(real) < 2:
        return dict(DEFAULT_CAPACITIES), False
    a = x.shape[0]
    pairs = real[cKDTree(x[real]).query_pairs(cutoff, output_type="ndarray")]
    per_atom = np.bincount(pairs.ravel(), minlength=a) if len(pairs) else np.zeros(1)
    ex = np.asarray(exclusions)
    rows = np.broadcast_to(np.arange(a)[:, None], ex.shape)
    ex_keys = (rows * a + ex)[ex >= 0]
    n_bonded = int(np.isin(pairs[:, 0] * a + pairs[:, 1], ex_keys).sum()) if len(pairs) else 0
    cells = np.floor((x[real] - x[real].min(0)) / cutoff).astype(np.int64)
    _, occupancy = np.unique(cells, axis=0, return_counts=True)
    need = {
        "pairs_per_atom": margin * (len(pairs) - n_bonded) / a,
        # candidates of one atom before exclusions (half shell): at most its full count
        "row_capacity": float(per_atom.max()) - ex.shape[1],
        "cell_capacity": margin * float(occupancy.max()),
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
