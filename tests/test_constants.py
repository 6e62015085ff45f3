"""Consistency of the chemistry tables in foldlite.constants."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from foldlite import constants as rc

REPO = Path(__file__).resolve().parents[1]
SIDECHAIN_RES = [r for r in rc.resnames if rc.chi_angles_atoms[r]]


# ------------------------------------------------------------------ layout and chi tables
def test_chi_atoms_exist_and_masks_match():
    for i, name in enumerate(rc.resnames):
        chis = rc.chi_angles_atoms[name]
        assert rc.chi_angles_mask[i].tolist() == [1.0] * len(chis) + [0.0] * (4 - len(chis))
        for k, atoms in enumerate(chis):
            assert len(atoms) == 4
            for a in atoms:
                assert a in rc.residue_atoms[name], (name, a)
            # consecutive chis share three atoms (the rigid-group chain relies on it)
            if k > 0:
                assert chis[k - 1][1:] == atoms[:3], (name, k)
            assert [rc.atom_types[j] for j in rc.chi_angles_atom37_indices[i, k]] == atoms
            names14 = rc.restype_name_to_atom14_names[name]
            assert [names14[j] for j in rc.chi_angles_atom14_indices[i, k]] == atoms
    assert rc.chi_angles_mask.shape == (21, 4) and rc.chi_pi_periodic.shape == (21, 4)
    # pi-periodic chis are a subset of the existing ones
    assert np.all(rc.chi_pi_periodic <= rc.chi_angles_mask)
    assert rc.chi_pi_periodic.sum() == 4


def test_chi_definitions_agree_with_biopython_ic_data():
    ic = pytest.importorskip("Bio.PDB.ic_data")
    for one, three in rc.restype_1to3.items():
        tagged = {}
        for entry in ic.ic_data_sidechains.get(one, ()):
            if len(entry) == 5 and entry[4] in ("chi1", "chi2", "chi3", "chi4"):
                tagged[int(entry[4][3])] = list(entry[:4])
        ours = {k + 1: a for k, a in enumerate(rc.chi_angles_atoms[three])}
        assert tagged == ours, three


def test_ambiguous_swaps_match_pi_periodic_chis():
    for i, name in enumerate(rc.resnames):
        perm = rc.restype_atom14_swap_index[i]
        assert sorted(perm.tolist()) == list(range(14))
        assert np.all(perm[perm] == np.arange(14))  # an involution
        swaps = rc.residue_atom_renaming_swaps.get(name, {})
        assert (rc.chi_pi_periodic[i].sum() > 0) == bool(swaps)
        names14 = rc.restype_name_to_atom14_names[name]
        for a, b in swaps.items():
            assert perm[names14.index(a)] == names14.index(b)
            assert rc.restype_atom14_is_ambiguous[i, names14.index(a)] == 1


# ------------------------------------------------------------------ rigid groups
def test_rigid_group_tables_shapes_and_frames():
    f = rc.restype_rigid_group_default_frame
    assert f.shape == (21, 8, 4, 4) and f.dtype == np.float32
    assert rc.restype_atom14_rigid_group_positions.shape == (21, 14, 3)
    assert rc.restype_atom14_to_rigid_group.shape == (21, 14)
    rot = f[..., :3, :3].astype(np.float64)
    np.testing.assert_allclose(rot @ np.swapaxes(rot, -1, -2), np.broadcast_to(np.eye(3),
                               rot.shape), atol=1e-5)
    np.testing.assert_allclose(np.linalg.det(rot), 1.0, atol=1e-5)
    np.testing.assert_array_equal(f[..., 3, :], np.broadcast_to([0, 0, 0, 1], f.shape[:-2] + (4,)))
    for i, name in enumerate(rc.resnames):
        for j, atom in enumerate(rc.restype_name_to_atom14_names[name]):
            if not atom:
                continue
            g = rc.restype_atom14_to_rigid_group[i, j]
            assert rc.restype_rigid_group_mask[i, g] == 1, (name, atom)
            if atom in ("N", "CA", "C", "CB"):
                assert g == 0
            elif atom == "O":
                assert g == 3
            else:
                assert g >= 4, (name, atom)
        # the atom defining chi_k (4th atom) lies in group chi_k at dihedral 0: y > 0, z = 0
        for k, atoms in enumerate(rc.chi_angles_atoms[name]):
            j = rc.restype_name_to_atom14_names[name].index(atoms[3])
            assert rc.restype_atom14_to_rigid_group[i, j] == 4 + k
            p = rc.restype_atom14_rigid_group_positions[i, j]
            assert p[1] > 0 and abs(p[2]) < 1e-5
        # frames of absent chis are identities
        for g in range(4 + len(rc.chi_angles_atoms[name]), 8):
            np.testing.assert_allclose(f[i, g], np.eye(4), atol=0)
    # backbone-group positions: CA at the origin, C on +x, N in the xy plane with y > 0,
    # CB below the plane (L-amino acids)
    ca, c, n = (rc.restype_atom14_rigid_group_positions[:, k] for k in (1, 2, 0))
    np.testing.assert_allclose(ca, 0, atol=1e-6)
    assert np.all(c[:, 0] > 1.4) and np.allclose(c[:, 1:], 0, atol=1e-6)
    assert np.all(n[:, 1] > 1.2) and np.allclose(n[:, 2], 0, atol=1e-6)
    cb = rc.restype_atom14_rigid_group_positions[:, 4]
    for i, name in enumerate(rc.resnames):
        if name not in ("GLY", "UNK"):
            assert cb[i, 2] < -1.0, name


def test_generated_block_is_up_to_date():
    import Bio

    text = (REPO / "foldlite" / "constants.py").read_text()
    if f"Biopython {Bio.__version__})" not in text:
        pytest.skip(f"tables were generated with another Biopython than {Bio.__version__}")
    res = subprocess.run([sys.executable, str(REPO / "scripts" / "generate_ideal_geometry.py"),
                          "--check"], capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 0, res.stdout + res.stderr


# ------------------------------------------------------------------ bonds and angles
def _ideal_pos(name: str) -> dict[str, np.ndarray]:
    i = rc.resnames.index(name)
    return {a: rc.restype_atom14_ideal_coords[i, j].astype(np.float64)
            for j, a in enumerate(rc.restype_name_to_atom14_names[name]) if a}


def _rotamer_pos(name: str, chis_deg: tuple[float, ...]) -> dict[str, np.ndarray]:
    """Ideal residue built at the given chi angles (identity backbone frame, psi 0)."""
    import jax.numpy as jnp

    from foldlite.geometry.rigid import Rigid
    from foldlite.geometry.torsions import frames_and_torsions_to_atom14

    i = rc.resnames.index(name)
    angles = np.zeros(7)
    angles[3:3 + len(chis_deg)] = np.deg2rad(chis_deg)
    sc = jnp.stack([jnp.sin(angles), jnp.cos(angles)], -1)[None]
    x14, _, _ = frames_and_torsions_to_atom14(Rigid.identity((1,)), sc, jnp.array([i]))
    x14 = np.asarray(x14[0], np.float64)
    return {a: x14[j] for j, a in enumerate(rc.restype_name_to_atom14_names[name]) if a}


def test_bonds_cover_every_close_pair_and_match_ideal_lengths():
    for name in rc.resnames:
        rots = rc.rotamer_library.get(name)
        pos = _rotamer_pos(name, rots[0][2]) if rots else _ideal_pos(name)
        bonds = {frozenset(b) for b in rc.residue_bonds[name]}
        n_atoms = len(pos)
        # a tree plus one bond per ring
        rings = {"PRO": 1, "PHE": 1, "TYR": 1, "HIS": 1, "TRP": 2}.get(name, 0)
        assert len(bonds) == n_atoms - 1 + rings, name
        atoms = list(pos)
        for p in range(n_atoms):
            for q in range(p + 1, n_atoms):
                a, b = atoms[p], atoms[q]
                d = np.linalg.norm(pos[a] - pos[b])
                if frozenset((a, b)) in bonds:
                    mean, sd = rc.ideal_bond_length[(name, a, b)]
                    assert rc.ideal_bond_length[(name, b, a)] == (mean, sd)
                    assert 1.2 < mean < 1.9 and 0.003 < sd < 0.05, (name, a, b, mean, sd)
                    if name == "PRO" and {a, b} == {"CD", "N"}:
                        assert abs(d - mean) < 0.05, d  # ring closes at the common rotamer
                        continue
                    assert abs(d - mean) < 0.02, (name, a, b, d, mean)
                else:
                    assert d > 2.1, (name, a, b, d)


def test_ideal_angles_match_built_coordinates():
    for name in rc.resnames:
        pos = _ideal_pos(name)
        for a, v, b in rc.residue_angles[name]:
            mean, sd = rc.ideal_bond_angle[(name, a, v, b)]
            assert rc.ideal_bond_angle[(name, b, v, a)] == (mean, sd)
            assert np.deg2rad(95) < mean < np.deg2rad(140), (name, a, v, b)
            assert np.deg2rad(0.2) < sd < np.deg2rad(6), (name, a, v, b)
            if name == "PRO" and "CD" in (a, v, b) and "N" in (a, v, b):
                continue  # closure angles depend on the pucker
            u, w = pos[a] - pos[v], pos[b] - pos[v]
            ang = np.arccos(np.dot(u, w) / np.linalg.norm(u) / np.linalg.norm(w))
            assert abs(ang - mean) < np.deg2rad(1.0), (name, a, v, b, np.rad2deg(ang - mean))
        # inter-residue terms present for every residue type
        for key in (("C", "+N"),):
            assert (name,) + key in rc.ideal_bond_length
        for key in (("CA", "C", "+N"), ("O", "C", "+N"), ("-C", "N", "CA")):
            assert (name,) + key in rc.ideal_bond_angle
        if name != "UNK":
            assert 1.2 < rc.ideal_bond_length[(name, "C", "OXT")][0] < 1.3
            s_oxt = sum(rc.ideal_bond_angle[(name,) + k][0] for k in
                        (("CA", "C", "O"), ("CA", "C", "OXT"), ("O", "C", "OXT")))
            assert abs(s_oxt - 2 * np.pi) < 1e-6
        # the carbonyl carbon is planar: the three angles at C sum to 360 degrees
        s = sum(rc.ideal_bond_angle[(name,) + k][0] for k in
                (("CA", "C", "O"), ("CA", "C", "+N"), ("O", "C", "+N")))
        assert abs(s - 2 * np.pi) < 1e-6


def test_atom14_restraint_arrays_match_dicts():
    for i, name in enumerate(rc.resnames):
        names14 = rc.restype_name_to_atom14_names[name]
        nb = int(rc.restype_bond_mask[i].sum())
        assert nb == len(rc.residue_bonds[name])
        for j in range(nb):
            a, b = (names14[k] for k in rc.restype_bond_atom14[i, j])
            np.testing.assert_allclose(rc.restype_bond_length[i, j],
                                       rc.ideal_bond_length[(name, a, b)], rtol=1e-6)
        na = int(rc.restype_angle_mask[i].sum())
        assert na == len(rc.residue_angles[name])
        for j in range(na):
            a, v, b = (names14[k] for k in rc.restype_angle_atom14[i, j])
            np.testing.assert_allclose(rc.restype_angle_value[i, j],
                                       rc.ideal_bond_angle[(name, a, v, b)], rtol=1e-6)


def test_ic_data_backbone_agrees_with_engh_huber():
    """The PISCES means that build the coordinates lie within 1.5 EH sds of the EH values."""
    for name in rc.resnames[:20]:
        for (a, b) in (("N", "CA"), ("CA", "C"), ("C", "O")):
            mean, _ = rc.ideal_bond_length[(name, a, b)]
            eh, eh_sd = rc.engh_huber((a, b), name)
            assert abs(mean - eh) < 1.5 * eh_sd, (name, a, b)
        for key in (("N", "CA", "C"), ("CA", "C", "O")):
            mean, _ = rc.ideal_bond_angle[(name,) + key]
            eh, eh_sd = rc.engh_huber(key, name)
            assert abs(np.rad2deg(mean) - eh) < 1.5 * eh_sd, (name, key)
        geo = rc.peptide_geometry(name, "ALA")
        assert abs(np.rad2deg(rc.ideal_bond_angle[(name, "CA", "C", "+N")][0])
                   - geo["ca_c_n"][0]) < 1.5 * geo["ca_c_n"][1]


def test_peptide_geometry_exceptions():
    assert rc.peptide_geometry("ALA", "PRO")["c_n"] == (1.341, 0.016)
    assert rc.peptide_geometry("PRO", "ALA")["c_n"] == (1.329, 0.014)
    assert rc.peptide_geometry("GLY", "ALA")["ca_c_n"] == (116.4, 2.1)
    assert rc.peptide_geometry("ALA", "GLY")["c_n_ca"] == (120.6, 1.7)
    assert rc.peptide_geometry("ALA", "ALA", "2001")["c_n"] == (1.336, 0.023)


def test_ca_ca_distances():
    assert abs(rc.ca_ca_distance_trans - 3.80) < 0.02
    assert 2.6 < rc.ca_ca_distance_cis < 3.0


# ------------------------------------------------------------------ rotamers
def test_rotamer_library():
    for i, name in enumerate(rc.resnames):
        rots = rc.rotamer_library.get(name, [])
        n_chi = len(rc.chi_angles_atoms[name])
        if n_chi == 0:
            assert not rots
            continue
        assert len(rots) >= 3, name
        total = 0.0
        for rot_name, freq, chis in rots:
            assert len(chis) == n_chi, (name, rot_name)
            assert all(-180 <= c <= 180 for c in chis)
            assert 0 < freq <= 75
            total += freq
        assert 40 <= total <= 101, (name, total)
        chis, freq = rc.rotamer_chis(name)
        assert chis.shape == (len(rots), 4) and np.all(chis[:, n_chi:] == 0)
        np.testing.assert_allclose(freq.sum(), total / 100, rtol=1e-5)
    # the most common rotamers that everyone quotes
    assert rc.rotamer_library["LEU"][0][0] == "mt"
    assert rc.rotamer_library["VAL"][0][0] == "t"


def test_proline_rotamers_close_the_ring():
    mean, sd = rc.ideal_bond_length[("PRO", "CD", "N")]
    for rot_name, _, chis in rc.rotamer_library["PRO"]:
        pos = _rotamer_pos("PRO", chis)
        d = np.linalg.norm(pos["CD"] - pos["N"])
        assert abs(d - mean) < 3 * sd, (rot_name, d)
