"""DSSP from backbone atoms: ideal helices and strands, and agreement with ProMod3's DSSP."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from datagen import ideal_backbone
from foldlite.data.dataset import Dataset, dssp_to_3state
from foldlite.data.dssp import assign_dssp, hbond_energy

CACHE = Path(os.environ.get("FOLDLITE_CACHE", "~/.cache/foldlite")).expanduser()


def letters(bb: np.ndarray, mask=None) -> str:
    mask = np.ones(bb.shape[:2]) if mask is None else mask
    return "".join(chr(c) if c else "?" for c in assign_dssp(bb, mask))


def test_alpha_helix():
    L = 20
    s = letters(ideal_backbone(np.full(L, -57.0), np.full(L, -47.0)))
    assert s[0] != "H" and s[-1] != "H"
    assert s[1:-1].count("H") >= L - 4, s


def test_extended_chain_is_coil():
    L = 15
    s = letters(ideal_backbone(np.full(L, -120.0), np.full(L, 130.0)))
    assert set(s) <= {"C", "S"}, s


def test_broken_and_incomplete_residues():
    L = 20
    bb = ideal_backbone(np.full(L, -57.0), np.full(L, -47.0))
    mask = np.ones((L, 4))
    mask[10, 3] = 0  # residue 10 lacks O
    s = letters(bb, mask)
    assert s[10] == "?"
    bb2 = bb.copy()
    bb2[12:] += 10.0  # a chain break between 11 and 12
    s2 = letters(bb2)
    assert s2[11] != "H" or s2[12] != "H"


def test_hbond_energy_reference_geometry():
    # an ideal linear N-H...O=C H-bond: O 2.9 A from N, H on the line between them
    n = np.array([[0.0, 0.0, 0.0]])
    h = np.array([[1.0, 0.0, 0.0]])
    o = np.array([[2.9, 0.0, 0.0]])
    c = np.array([[4.13, 0.0, 0.0]])
    e = hbond_energy(o, c, n, h)[0, 0]
    expected = 0.084 * 332 * (1 / 2.9 + 1 / 3.13 - 1 / 1.9 - 1 / 4.13)
    assert e == pytest.approx(expected) and e < -0.5


def test_agrees_with_promod3_dssp():
    path = CACHE / "promod3"
    if not (path / "manifest.json").is_file():
        pytest.skip(f"{path} absent (run: foldlite data promod3)")
    d = Dataset(path)
    rng = np.random.default_rng(0)
    same8 = same3 = total = 0
    for i in rng.choice(len(d), 25, replace=False):
        r = d[int(i)]
        s = assign_dssp(r.atom_positions, r.atom_mask, aatype=r.aatype)
        same8 += int((s == r.dssp).sum())
        same3 += int((dssp_to_3state(s) == dssp_to_3state(r.dssp)).sum())
        total += r.length
    # measured on 200 chains: 98.8 % (8-state); the rest is mostly strands paired across chains
    assert same8 / total > 0.95 and same3 / total > 0.95, (same8 / total, same3 / total)
