"""DSSP secondary structure from backbone atoms (Kabsch & Sander 1983, Biopolymers 22:2577).

``assign_dssp(atom37, mask, residue_index)`` -> uint8 [L] ASCII letters of the eight DSSP
states: H (alpha helix), G (3-10 helix), I (pi helix), E (strand in a ladder), B (isolated
bridge), T (H-bonded turn), S (bend), C (coil); 0 for residues without a complete N, CA, C, O
backbone. Used for structures whose source has no DSSP (mmCIF/PDB files); ProMod3 ships its own.

The method, as in the paper and the classic ``dssp`` program:

1. Amide hydrogens are placed 1 A from N opposite the previous residue's C=O direction (no H on
   the first residue after a break, nor on proline). Residues i, i+1 are connected when
   C(i)-N(i+1) < 2.5 A.
2. Electrostatic H-bond energy between C=O of residue a and N-H of residue d:
   ``E = 0.084 * 332 * (1/r_ON + 1/r_CH - 1/r_OH - 1/r_CN)`` kcal/mol (clamped at -9.9); a bond
   when E < -0.5, keeping the two best acceptors of each donor; CA-CA < 9 A; d != a + 1.
3. n-turn at i (n = 3, 4, 5): Hbond(i, i+n). Two consecutive n-turns at i-1 and i make residues
   i..i+n-1 a helix: H for n=4 (overriding strands), then G where still unassigned, then I
   where unassigned or H (pi-helix priority, as in DSSP 2.1 and later).
4. Bridges: parallel (Hbond(i-1, j) and Hbond(j, i+1)) or (Hbond(j-1, i) and Hbond(i, j+1));
   antiparallel (Hbond(i, j) and Hbond(j, i)) or (Hbond(i-1, j+1) and Hbond(j-1, i+1)),
   |i - j| >= 3. Consecutive bridges form ladders; ladders of one type joined by a bulge (gaps of
   at most 1 and 4 residues on the two strands) are linked. Residues of ladders with more than
   one bridge (or linked) are E, residues of single bridges B.
5. T: residues inside an n-turn not otherwise assigned; S: CA(i-2), CA(i), CA(i+2) bend over 70
   degrees. Everything else is C.

Only one chain is seen (bridges to other chains of a complex are not), so strands paired only
across chains come out as coil.
"""

from __future__ import annotations

import numpy as np

from foldlite import constants as rc

_N, _CA, _C, _O = (rc.atom_order[a] for a in ("N", "CA", "C", "O"))
_PRO = rc.restype_order["P"]
HBOND_CUTOFF = -0.5  # kcal/mol
CA_CUTOFF = 9.0  # Angstrom
COIL = ord("C")


def hbond_energy(o: np.ndarray, c: np.ndarray, n: np.ndarray, h: np.ndarray) -> np.ndarray:
    """DSSP electrostatic energy [A, D] (kcal/mol) between C=O of acceptors (``o``, ``c``
    [A, 3]) and N-H of donors (``n``, ``h`` [D, 3])."""
    def inv(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        d = np.linalg.norm(x[:, None, :] - y[None, :, :], axis=-1)
        return 1.0 / np.maximum(d, 1e-3)

    e = 0.084 * 332.0 * (inv(o, n) + inv(c, h) - inv(o, h) - inv(c, n))
    return np.maximum(e, -9.9)


def hbond_matrix(bb: np.ndarray, ok: np.ndarray, connected: np.ndarray,
                 aatype: np.ndarray | None = None) -> np.ndarray:
    """bool [L, L]: ``hb[a, d]`` when C=O of residue a accepts an H-bond from N-H of residue d.

    Args:
      bb: [L, 4, 3] N, CA, C, O; ok: [L] complete backbone; connected: [L-1] i -> i+1 bonded.
    """
    L = bb.shape[0]
    n, ca, c, o = bb[:, 0], bb[:, 1], bb[:, 2], bb[:, 3]
    co = c - o
    has_prev = np.zeros(L, bool)
    has_prev[1:] = connected & ok[:-1] & ok[1:]
    h = n.copy()
    prev = co[:-1] / np.maximum(np.linalg.norm(co[:-1], axis=-1, keepdims=True), 1e-6)
    h[1:] = np.where(has_prev[1:, None], n[1:] + prev, n[1:])
    donor = ok & has_prev
    if aatype is not None:
        donor &= np.asarray(aatype) != _PRO
    e = hbond_energy(o, c, n, h)
    dca = np.linalg.norm(ca[:, None] - ca[None, :], axis=-1)
    valid = (dca < CA_CUTOFF) & ok[:, None] & donor[None, :]
    np.fill_diagonal(valid, False)
    idx = np.arange(L)
    valid[idx[:-1], idx[:-1] + 1] = False  # donor a + 1 to acceptor a: not an H-bond
    e = np.where(valid, e, 0.0)
    # keep the two lowest-energy acceptors of each donor
    if L > 2:
        order = np.argsort(e, axis=0, kind="stable")[:2]
        best = np.zeros_like(valid)
        best[order, idx[None, :]] = True
    else:
        best = np.ones_like(valid)
    return valid & best & (e < HBOND_CUTOFF)


def assign_dssp(atom37: np.ndarray, mask: np.ndarray, residue_index: np.ndarray | None = None,
                aatype: np.ndarray | None = None) -> np.ndarray:
    """DSSP letters for one chain.

    Args:
      atom37: [L, 37, 3] positions (or [L, 4, 3] N, CA, C, O).
      mask: [L, 37] (or [L, 4]) atom presence.
      residue_index: [L] (unused beyond its length; breaks come from geometry).
      aatype: [L] residue types (prolines donate no H-bond); optional.
    Returns:
      uint8 [L] ASCII letters (H G I E B T S C), 0 where the backbone is incomplete.
    """
    atom37 = np.asarray(atom37, np.float64)
    mask = np.asarray(mask) > 0
    if atom37.shape[1] == 4:
        bb, bmask = atom37, mask
    else:
        sel = [_N, _CA, _C, _O]
        bb, bmask = atom37[:, sel], mask[:, sel]
    L = bb.shape[0]
    out = np.zeros(L, np.uint8)
    if L == 0:
        return out
    ok = bmask.all(-1)
    connected = np.zeros(max(L - 1, 0), bool)
    if L > 1:
        cn = np.linalg.norm(bb[1:, 0] - bb[:-1, 2], axis=-1)
        connected = (cn < 2.5) & ok[1:] & ok[:-1]
    # nobreak_upto[i] = index of the first break at or after i (break between k and k+1)
    breaks = np.concatenate([np.flatnonzero(~connected), [L]])
    seg_end = breaks[np.searchsorted(breaks, np.arange(L))]

    def no_break(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Residues a..b (a <= b, in range) are one connected segment."""
        return seg_end[a] >= b

    hb = hbond_matrix(bb, ok, connected, aatype)
    ss = np.full(L, COIL, np.uint8)
    idx = np.arange(L)

    # --- bridges and ladders (Kabsch & Sander sec. 2.3) -----------------------------------
    def H(a: np.ndarray, d: np.ndarray) -> np.ndarray:
        inside = (a >= 0) & (a < L) & (d >= 0) & (d < L)
        return inside & hb[np.clip(a, 0, L - 1), np.clip(d, 0, L - 1)]

    ii, jj = np.nonzero(np.triu(np.ones((L, L), bool), 3))
    win = (ii >= 1) & (jj <= L - 2)
    ii, jj = ii[win], jj[win]
    win = no_break(ii - 1, ii + 1) & no_break(jj - 1, jj + 1) & ok[ii] & ok[jj]
    ii, jj = ii[win], jj[win]
    par = (H(ii - 1, jj) & H(jj, ii + 1)) | (H(jj - 1, ii) & H(ii, jj + 1))
    anti = (H(ii, jj) & H(jj, ii)) | (H(ii - 1, jj + 1) & H(jj - 1, ii + 1))
    bridges = sorted([(int(i), int(j), "p") for i, j in zip(ii[par], jj[par])] +
                     [(int(i), int(j), "a") for i, j in zip(ii[anti], jj[anti])])
    ladders: list[dict] = []
    for i, j, t in bridges:
        for lad in ladders:
            if lad["type"] == t and lad["i"][-1] == i - 1 and \
                    lad["j"][-1] == (j + 1 if t == "a" else j - 1):
                lad["i"].append(i)
                lad["j"].append(j)
                break
        else:
            ladders.append({"type": t, "i": [i], "j": [j], "link": None})
    # bulge-linked ladders
    parent = list(range(len(ladders)))

    def find(k: int) -> int:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    for x in range(len(ladders)):
        for y in range(len(ladders)):
            a, b = ladders[x], ladders[y]
            if x == y or a["type"] != b["type"]:
                continue
            di = b["i"][0] - a["i"][-1]
            if not 0 < di < 6:
                continue
            dj = (b["j"][0] - a["j"][-1]) if a["type"] == "p" else (a["j"][-1] - b["j"][0])
            if dj <= 0:
                continue
            if (dj < 6 and di < 3) or dj < 3:
                parent[find(y)] = find(x)
    groups: dict[int, list[dict]] = {}
    for k, lad in enumerate(ladders):
        groups.setdefault(find(k), []).append(lad)
    strand = np.zeros(L, bool)
    bridge = np.zeros(L, bool)
    for lads in groups.values():
        n_bridges = sum(len(lad["i"]) for lad in lads)
        is_i = [r for lad in lads for r in lad["i"]]
        is_j = [r for lad in lads for r in lad["j"]]
        if n_bridges > 1:
            strand[min(is_i):max(is_i) + 1] = True
            strand[min(is_j):max(is_j) + 1] = True
        else:
            bridge[is_i + is_j] = True
    ss[bridge] = ord("B")
    ss[strand] = ord("E")

    # --- turns and helices (sec. 2.2) -------------------------------------------------------
    starts = {}
    turn_res = np.zeros(L, bool)
    for n in (3, 4, 5):
        t = np.zeros(L, bool)
        i = idx[:max(L - n, 0)]
        t[i] = H(i, i + n) & no_break(i, i + n)
        starts[n] = t
        for k in np.flatnonzero(t):
            turn_res[k + 1:k + n] = True
    for n, letter, overrides in ((4, "H", None), (3, "G", (COIL, ord("G"))),
                                 (5, "I", (COIL, ord("I"), ord("H")))):
        t = starts[n]
        cand = np.flatnonzero(t[1:] & t[:-1]) + 1  # turns at i-1 and i
        for i in cand:
            seg = slice(i, min(i + n, L))
            if overrides is None or np.all(np.isin(ss[seg], overrides)):
                ss[seg] = ord(letter)
    loop = ss == COIL
    ss[loop & turn_res] = ord("T")
    # bends
    if L >= 5:
        ca = bb[:, 1]
        i = idx[2:L - 2]
        v1 = ca[i] - ca[i - 2]
        v2 = ca[i + 2] - ca[i]
        cosang = np.sum(v1 * v2, -1) / np.maximum(
            np.linalg.norm(v1, axis=-1) * np.linalg.norm(v2, axis=-1), 1e-9)
        bend = np.zeros(L, bool)
        bend[i] = (cosang < np.cos(np.deg2rad(70.0))) & no_break(i - 2, i + 2)
        ss[(ss == COIL) & bend] = ord("S")
    ss[~ok] = 0
    return ss
