"""Refinement topology on real structures: bonds, angles, links, chirality, exclusions."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from foldlite import constants as rc
from foldlite.physics import energy as E
from foldlite.physics.topology import bucket_size, build_topology, chain_links, ideal_angle
from foldlite.physics.validation import evaluate, metrics_from_values
from foldlite.protein import read_structure


@pytest.fixture(scope="module")
def capsid(repo_root):
    return read_structure(repo_root / "tests/data/1A8O.pdb")


def test_counts_follow_the_residue_tables(capsid):
    p = capsid
    topo, lay = build_topology(p.aatype, p.atom_positions, p.atom_mask, p.residue_index,
                               pad=False)
    # Complete residues: intra-residue bonds from the chemistry table, one peptide bond per
    # link, C-OXT, one disulfide.
    full = np.all((p.atom_mask > 0) >= (rc.restype_atom37_mask[p.aatype] > 0), axis=1)
    assert full.all()
    n_intra = sum(len(rc.residue_bonds[rc.resnames[a]]) for a in p.aatype)
    n_oxt = int(p.atom_mask[:, rc.atom_order["OXT"]].sum())
    assert int(topo.bond_mask.sum()) == n_intra + int(lay.linked.sum()) + n_oxt + len(
        lay.disulfides)
    assert lay.num_atoms == int(p.atom_mask.sum())
    assert int(topo.omega_mask.sum()) == int(lay.linked.sum())
    n_chiral = int(np.sum(p.aatype != rc.restype_order["G"])) + int(
        np.sum(np.isin(p.aatype, [rc.restype_order["I"], rc.restype_order["T"]])))
    assert int(topo.chiral_mask.sum()) == n_chiral
    assert len(lay.disulfides) == 1  # 1A8O has one disulfide bridge
    # Exclusions are symmetric and disjoint from the 1-5 table.
    ex = {(i, int(j)) for i in range(lay.num_atoms) for j in topo.exclusions[i] if j >= 0}
    assert all((j, i) in ex for i, j in ex)
    five = {(i, int(j)) for i in range(lay.num_atoms) for j in topo.one_five[i] if j >= 0}
    assert not (ex & five)
    assert all((j, i) in five for i, j in five)


def test_native_structure_scores_like_a_refined_crystal_structure(capsid):
    p = capsid
    topo, lay = build_topology(p.aatype, p.atom_positions, p.atom_mask, p.residue_index)
    topo = jax.tree_util.tree_map(jnp.asarray, topo)
    energy, values = evaluate(topo.reference, topo)
    m = metrics_from_values(values, lay.num_atoms)
    assert m["violations"] == 0
    assert m["wrong_chirality"] == 0
    assert m["bond_rmsz"] < 1.0 and m["angle_rmsz"] < 1.5
    assert m["clashes_per_1000"] <= 2.0
    assert m["omega_max_dev_deg"] < 15.0
    assert energy["restraint"] == 0.0
    # Mirror image: every chiral centre flips.
    mirrored = topo.reference * jnp.array([1.0, 1.0, -1.0])
    _, v2 = evaluate(mirrored, topo)
    assert metrics_from_values(v2, lay.num_atoms)["wrong_chirality"] == int(
        topo.chiral_mask.sum())


def test_links_gaps_insertion_codes_and_cis_proline(repo_root):
    p = read_structure(repo_root / "tests/data/4ZHL.cif.gz", chain="U")
    links = chain_links(p.atom_positions, p.atom_mask, p.residue_index, p.insertion_code)
    c, n = rc.atom_order["C"], rc.atom_order["N"]
    d = np.linalg.norm(p.atom_positions[1:, n] - p.atom_positions[:-1, c], axis=-1)
    assert np.array_equal(links, d < 2.0)  # numbering skips (chymotrypsin) are still bonded
    # A stretched bond between consecutively numbered residues (a model) stays a bond ...
    pos = p.atom_positions.copy()
    v = pos[50, n] - pos[49, c]
    pos[50:] += 1.3 * v / np.linalg.norm(v)  # C(49)-N(50) stretched to ~2.6 A
    assert chain_links(pos, p.atom_mask, np.arange(p.length), None)[49]
    # ... but not across a numbering gap.
    assert not chain_links(pos, p.atom_mask, np.arange(p.length) * 2, None)[49]
    # A cis peptide before proline keeps a cis target; elsewhere trans.
    topo, lay = build_topology(p.aatype, p.atom_positions, p.atom_mask, p.residue_index,
                               insertion_code=p.insertion_code)
    assert not lay.cis.any()
    x = jnp.asarray(topo.reference)
    om = np.asarray(E.dihedral_angles(x, jnp.asarray(topo.omegas)))
    assert np.all(np.abs(np.abs(om[topo.omega_mask > 0]) - math.pi) < math.radians(40))


def test_ideal_values_and_buckets():
    # Engh & Huber backbone values and the glycine / proline exceptions.
    assert math.degrees(ideal_angle("ALA", "N", "CA", "C")[0]) == pytest.approx(111.2)
    assert math.degrees(ideal_angle("GLY", "N", "CA", "C")[0]) == pytest.approx(112.5)
    assert math.degrees(ideal_angle("PRO", "-C", "N", "CA", prev_resname="ALA")[0]) == \
        pytest.approx(122.6)
    s = (ideal_angle("ALA", "CA", "C", "O")[0] + ideal_angle("ALA", "CA", "C", "+N")[0]
         + ideal_angle("ALA", "O", "C", "+N")[0])
    assert math.degrees(s) == pytest.approx(360.0, abs=0.05)  # planar carbonyl
    sizes = [bucket_size(n) for n in range(1, 5000, 37)]
    assert all(b >= n for b, n in zip(sizes, range(1, 5000, 37)))
    assert len(set(sizes)) < 25


def _rotate_downstream(p, i: int, angle: float):
    """Rotate residues i+1.. about the C(i)-N(i+1) bond by ``angle`` (changes omega_i)."""
    c, n = rc.atom_order["C"], rc.atom_order["N"]
    pos = p.atom_positions.copy()
    origin = pos[i, c]
    axis = pos[i + 1, n] - origin
    axis /= np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rot = np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * k @ k
    pos[i + 1:] = (pos[i + 1:] - origin) @ rot.T + origin
    return p.replace(atom_positions=pos.astype(np.float32))


def test_cis_targets_before_proline_only(capsid):
    p = capsid
    assert p.sequence[6] == "P" and p.sequence[3] != "P"
    cis_pro = _rotate_downstream(_rotate_downstream(p, 5, math.pi), 2, math.pi)
    topo, lay = build_topology(cis_pro.aatype, cis_pro.atom_positions, cis_pro.atom_mask,
                               cis_pro.residue_index)
    assert lay.cis[5] and not lay.cis[2]
    assert np.nonzero(lay.cis)[0].tolist() == [5]
    x = jnp.asarray(topo.reference)
    om = np.asarray(E.dihedral_angles(x, jnp.asarray(topo.omegas)))[topo.omega_mask > 0]
    assert abs(om[5]) < math.radians(10) and abs(om[2]) < math.radians(10)  # both are cis
    assert topo.omega_target[5] == 0.0 and topo.omega_target[2] == pytest.approx(math.pi)
    _, lay2 = build_topology(cis_pro.aatype, cis_pro.atom_positions, cis_pro.atom_mask,
                             cis_pro.residue_index, cis_nonproline=True)
    assert lay2.cis[2] and lay2.cis[5]


def test_every_table_size_follows_from_the_atom_bucket(repo_root):
    from foldlite.physics.topology import TABLE_TIERS, table_size

    shapes, buckets = [], set()
    for path, chain, start, stop in (("1A8O.pdb", None, 0, 70), ("1A8O.pdb", None, 3, 70),
                                     ("4ZHL.cif.gz", "U", 0, 66), ("4ZHL.cif.gz", "U", 0, 70)):
        p = read_structure(repo_root / "tests/data" / path, chain=chain)
        sl = slice(start, stop)
        topo, lay = build_topology(p.aatype[sl], p.atom_positions[sl], p.atom_mask[sl],
                                   p.residue_index[sl])
        shapes.append(tuple(np.shape(v) for v in jax.tree_util.tree_leaves(topo)))
        buckets.add(bucket_size(lay.num_atoms))
    # Four chains (530-559 atoms, different sequences) in one atom bucket: identical shapes.
    assert len(buckets) == 1 and len(set(shapes)) == 1
    # Any chain fits the last tier: polyproline has the most bonds and angles per atom (8 and
    # 12 per 7-atom residue).
    A = bucket_size(7 * 100)
    assert table_size("bonds", 8 * 100, A) <= TABLE_TIERS["bonds"][-1] * A + 32
    assert table_size("angles", 12 * 100, A) <= TABLE_TIERS["angles"][-1] * A + 32
    assert table_size("bonds", 10 * A, A) >= 10 * A  # beyond every tier: a bucket of its own
