"""foldlite.geometry.pseudo_beta: CB, CA for glycine, a virtual CB where CB is missing."""

from __future__ import annotations

import numpy as np

from foldlite import constants as rc
from foldlite.geometry.pseudo_beta import pseudo_beta
from foldlite.protein import read_structure

CA, CB, C = rc.atom_order["CA"], rc.atom_order["CB"], rc.atom_order["C"]
GLY = rc.restype_order["G"]


def _chain(repo_root):
    p = read_structure(repo_root / "tests/data/1A8O.pdb")
    return (p.atom_positions.astype(np.float32), p.atom_mask.astype(np.float32),
            p.aatype.astype(np.int32))


def test_cb_and_glycine_ca(repo_root):
    pos37, mask37, aatype = _chain(repo_root)
    pos, mask = (np.asarray(a) for a in pseudo_beta(pos37, mask37, aatype))
    gly = aatype == GLY
    with_cb = ~gly & (mask37[:, CB] > 0)
    assert gly.any() and with_cb.any()
    np.testing.assert_array_equal(pos[gly], pos37[gly, CA])
    np.testing.assert_array_equal(pos[with_cb], pos37[with_cb, CB])
    np.testing.assert_array_equal(mask[gly | with_cb], 1.0)


def test_virtual_cb_from_backbone(repo_root):
    """Without CB, the virtual CB lies where the real one was (ideal tetrahedral geometry),
    about 1.52 A from CA (the formula follows the backbone's own bond lengths); glycine keeps
    CA."""
    pos37, mask37, aatype = _chain(repo_root)
    no_cb = mask37.copy()
    no_cb[:, CB] = 0.0
    pos, mask = (np.asarray(a) for a in pseudo_beta(pos37, no_cb, aatype))
    real = (aatype != GLY) & (mask37[:, CB] > 0)
    d_real = np.linalg.norm(pos[real] - pos37[real, CB], axis=-1)
    d_ca = np.linalg.norm(pos[real] - pos37[real, CA], axis=-1)
    assert d_real.max() < 0.3 and np.median(d_real) < 0.1, d_real
    np.testing.assert_allclose(d_ca, 1.52, atol=0.12)
    assert abs(np.median(d_ca) - 1.52) < 0.03
    np.testing.assert_array_equal(mask, 1.0)
    gly = aatype == GLY
    np.testing.assert_array_equal(pos[gly], pos37[gly, CA])


def test_mask_without_atoms_and_batch_axes(repo_root):
    """No CB and an incomplete backbone, or a glycine without CA: masked out. Leading batch
    axes are kept."""
    pos37, mask37, aatype = _chain(repo_root)
    m = mask37.copy()
    i = int(np.flatnonzero(aatype != GLY)[0])
    g = int(np.flatnonzero(aatype == GLY)[0])
    m[i, CB] = 0.0
    m[i, C] = 0.0
    m[g, CA] = 0.0
    _, mask = pseudo_beta(pos37, m, aatype)
    mask = np.asarray(mask)
    assert mask[i] == 0.0 and mask[g] == 0.0
    assert mask.sum() == len(aatype) - 2
    pos_b, mask_b = pseudo_beta(np.stack([pos37, pos37]), np.stack([m, m]),
                                np.stack([aatype, aatype]))
    assert pos_b.shape == (2, len(aatype), 3) and mask_b.shape == (2, len(aatype))
    np.testing.assert_array_equal(np.asarray(mask_b[1]), mask)
