"""Tests for foldlite.metrics: superposition, RMSD, lDDT, TM-score, GDT.

TM-score, RMSD and GDT are cross-checked against two independent programs: the TMscore program
(Zhang & Skolnick 2004; Debian package tm-align) and the ``tmtools`` package (TM-align with a
fixed alignment). Each of those tests skips when its reference is not installed.
"""

from __future__ import annotations

import gzip
import re
import shutil
import subprocess
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from foldlite import metrics

DATA = Path(__file__).resolve().parent / "data"
DEBIAN_EXAMPLES = Path("/usr/share/doc/tm-align/examples")
TMSCORE = shutil.which("TMscore")

# --------------------------------------------------------------------------------------------
# Protein-like CA chains
# --------------------------------------------------------------------------------------------


def _place(a: np.ndarray, b: np.ndarray, c: np.ndarray, bond: float, angle: float,
           torsion: float) -> np.ndarray:
    """Point d with |cd| = bond, angle(b, c, d) = angle, dihedral(a, b, c, d) = torsion."""
    bc = (c - b) / np.linalg.norm(c - b)
    n = np.cross(b - a, bc)
    n /= np.linalg.norm(n)
    m = np.cross(n, bc)
    d2 = bond * np.array([-np.cos(angle), np.sin(angle) * np.cos(torsion),
                          np.sin(angle) * np.sin(torsion)])
    return c + d2[0] * bc + d2[1] * m + d2[2] * n


def protein_like_chain(rng: np.random.Generator, n: int) -> np.ndarray:
    """A CA trace [n, 3] of helices, strands and loops (3.8 A virtual bonds).

    CA virtual-bond angle / dihedral: alpha helix about 91 / 50 degrees, beta strand about
    120 / -170 degrees; loops draw both at random.
    """
    kinds = []
    while len(kinds) < n:
        kind = rng.choice(["helix", "strand", "loop"], p=[0.45, 0.3, 0.25])
        length = {"helix": rng.integers(8, 18), "strand": rng.integers(4, 9),
                  "loop": rng.integers(2, 6)}[kind]
        kinds += [kind] * int(length)
    pos = [np.zeros(3), np.array([3.8, 0, 0]),
           np.array([3.8 + 3.8 * np.cos(np.pi / 3), 3.8 * np.sin(np.pi / 3), 0.0])]
    for i in range(3, n):
        kind = kinds[i]
        if kind == "helix":
            angle, torsion = 91.0 + rng.normal(0, 2), 50.0 + rng.normal(0, 4)
        elif kind == "strand":
            angle, torsion = 120.0 + rng.normal(0, 4), -170.0 + rng.normal(0, 8)
        else:
            angle, torsion = rng.uniform(85, 145), rng.uniform(-180, 180)
        pos.append(_place(pos[-3], pos[-2], pos[-1], 3.8, np.radians(angle), np.radians(torsion)))
    return np.array(pos[:n]) + rng.normal(0, 10, 3)


def random_walk_chain(rng: np.random.Generator, n: int) -> np.ndarray:
    """A CA trace [n, 3] as a random walk of 3.8 A steps with CA-CA-CA angles of 80-150 deg."""
    pos = [np.zeros(3), np.array([3.8, 0, 0])]
    while len(pos) < n:
        d = rng.normal(size=3)
        step = d / np.linalg.norm(d) * 3.8
        prev = pos[-1] - pos[-2]
        cos = np.dot(-prev, step) / 3.8 ** 2
        if np.degrees(np.arccos(np.clip(cos, -1, 1))) < 80 or np.degrees(
                np.arccos(np.clip(cos, -1, 1))) > 150:
            continue
        pos.append(pos[-1] + step)
    return np.array(pos)


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    return q


def hinge(x: np.ndarray, start: int, degrees: float, rng: np.random.Generator) -> np.ndarray:
    """Rotates residues start: of x about a random axis through residue start."""
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    t = np.radians(degrees)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rot = np.eye(3) + np.sin(t) * k + (1 - np.cos(t)) * k @ k
    out = x.copy()
    out[start:] = (x[start:] - x[start]) @ rot.T + x[start]
    return out


def structure_pairs() -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, model, native) CA pairs covering high to low similarity."""
    rng = np.random.default_rng(20240611)
    pairs = []
    for n, noise in [(60, 0.3), (85, 1.0), (120, 2.0), (70, 3.5)]:
        native = protein_like_chain(rng, n)
        model = native + rng.normal(0, noise, native.shape)
        model = model @ random_rotation(rng).T + rng.normal(0, 20, 3)
        pairs.append((f"protein_like_L{n}_noise{noise}", model, native))
    native = protein_like_chain(rng, 90)
    model = hinge(native, 45, 60.0, rng) + rng.normal(0, 0.5, native.shape)
    pairs.append(("hinge_L90_60deg", model, native))
    native = protein_like_chain(rng, 40)
    model = hinge(native, 20, 100.0, rng) + rng.normal(0, 1.5, native.shape)
    pairs.append(("hinge_L40_100deg", model, native))
    native = random_walk_chain(rng, 75)
    model = native + rng.normal(0, 1.5, native.shape)
    pairs.append(("random_walk_L75_noise1.5", model, native))
    native = random_walk_chain(rng, 50)
    model = random_walk_chain(rng, 50)
    pairs.append(("unrelated_walks_L50", model, native))
    return pairs


PAIRS = structure_pairs()
PAIR_IDS = [name for name, _, _ in PAIRS]


def read_ca_trace(path: Path, chain: str | None = None) -> dict[int, np.ndarray]:
    """CA positions by residue number from a PDB file (first altloc, one chain), plain text."""
    opener = gzip.open if path.suffix == ".gz" else open
    out: dict[int, np.ndarray] = {}
    with opener(path, "rt") as fh:
        for line in fh:
            if line.startswith("ENDMDL"):
                break
            if not line.startswith("ATOM") or line[12:16] != " CA ":
                continue
            if chain is None:
                chain = line[21]
            if line[21] != chain or line[16] not in " A" or line[26] != " ":
                continue
            out.setdefault(int(line[22:26]),
                           np.array([float(line[30:38]), float(line[38:46]), float(line[46:54])]))
    return out


# --------------------------------------------------------------------------------------------
# References
# --------------------------------------------------------------------------------------------


def write_ca_pdb(path: Path, ca: np.ndarray, residue_numbers=None) -> None:
    """A CA-only PDB file (alanines, chain A), plain fixed-column formatting."""
    numbers = range(1, len(ca) + 1) if residue_numbers is None else residue_numbers
    lines = []
    for serial, (num, (x, y, z)) in enumerate(zip(numbers, ca), start=1):
        lines.append(f"ATOM  {serial:5d}  CA  ALA A{num:4d}    {x:8.3f}{y:8.3f}{z:8.3f}"
                     f"  1.00  0.00           C")
    lines += ["TER", "END"]
    path.write_text("\n".join(lines) + "\n")


def run_tmscore(tmp_path: Path, model: np.ndarray, native: np.ndarray,
                model_numbers=None, native_numbers=None) -> dict[str, float]:
    """TM-score, RMSD and GDT from the TMscore program (native's length normalises)."""
    write_ca_pdb(tmp_path / "model.pdb", model, model_numbers)
    write_ca_pdb(tmp_path / "native.pdb", native, native_numbers)
    out = subprocess.run([TMSCORE, "model.pdb", "native.pdb"], cwd=tmp_path, check=True,
                         capture_output=True, text=True, timeout=60).stdout
    num = r"([-0-9.]+)"
    return {
        "tm": float(re.search(r"TM-score\s*=\s*" + num, out).group(1)),
        "rmsd": float(re.search(r"RMSD of\s+the common residues=\s*" + num, out).group(1)),
        "gdt_ts": float(re.search(r"GDT-TS-score=\s*" + num, out).group(1)),
        "gdt_ha": float(re.search(r"GDT-HA-score=\s*" + num, out).group(1)),
        "common": int(re.search(r"Number of residues in common=\s*(\d+)", out).group(1)),
    }


needs_tmscore = pytest.mark.skipif(TMSCORE is None,
                                   reason="TMscore program not on PATH (Debian package tm-align)")


def rounded(x: np.ndarray) -> np.ndarray:
    """Coordinates as the PDB files hold them (3 decimals)."""
    return np.round(np.asarray(x, np.float64), 3)


# --------------------------------------------------------------------------------------------
# Kabsch and RMSD
# --------------------------------------------------------------------------------------------


def test_kabsch_recovers_rigid_transform():
    rng = np.random.default_rng(0)
    x = protein_like_chain(rng, 30)
    rot, trans = random_rotation(rng), rng.normal(0, 30, 3)
    y = x @ rot.T + trans
    r, t = metrics.kabsch(x, y)
    np.testing.assert_allclose(r, rot, atol=1e-9)
    np.testing.assert_allclose(t, trans, atol=1e-7)
    assert metrics.rmsd(x, y) < 1e-6
    np.testing.assert_allclose(metrics.superpose(x, y), y, atol=1e-7)


def test_kabsch_never_reflects():
    rng = np.random.default_rng(1)
    x = protein_like_chain(rng, 40)
    mirror = x * np.array([-1.0, 1.0, 1.0])
    r, _ = metrics.kabsch(x, mirror)
    assert np.linalg.det(r) == pytest.approx(1.0, abs=1e-9)
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-9)
    # A chiral chain cannot be superposed on its mirror image by a proper rotation.
    assert metrics.rmsd(x, mirror) > 1.0
    # Degenerate (collinear) points still give a proper rotation.
    line = np.arange(5)[:, None] * np.array([[3.8, 0.0, 0.0]])
    r, _ = metrics.kabsch(line, line[::-1] + 1.0)
    assert np.linalg.det(r) == pytest.approx(1.0, abs=1e-9)
    assert metrics.rmsd(line, line[::-1] + 1.0) < 1e-6


def test_kabsch_and_rmsd_respect_masks():
    rng = np.random.default_rng(2)
    x = protein_like_chain(rng, 30)
    rot, trans = random_rotation(rng), rng.normal(0, 5, 3)
    y = x @ rot.T + trans
    mask = np.ones(30)
    mask[[3, 10, 25]] = 0
    y_bad = y.copy()
    y_bad[[3, 10]] += 50.0
    y_bad[25] = np.nan  # masked-out positions may hold anything
    r, t = metrics.kabsch(x, y_bad, mask)
    np.testing.assert_allclose(r, rot, atol=1e-9)
    np.testing.assert_allclose(t, trans, atol=1e-7)
    assert metrics.rmsd(x, y_bad, mask) < 1e-6
    # Masked RMSD equals the RMSD of the kept points alone.
    noisy = x + rng.normal(0, 1, x.shape)
    keep = mask > 0
    assert metrics.rmsd(noisy, y_bad, mask) == pytest.approx(metrics.rmsd(noisy[keep], y[keep]))
    # Without superposition: the plain deviation.
    plain = np.sqrt(np.mean(np.sum((noisy[keep] - x[keep]) ** 2, -1)))
    assert metrics.rmsd(noisy, x, mask, superpose=False) == pytest.approx(plain)
    # Atom37 input with an atom mask.
    pos = np.zeros((30, 37, 3))
    pos[:, 1] = x
    pos[:, 0] = x + 1.0
    amask = np.zeros((30, 37))
    amask[:, :2] = 1
    moved = pos @ rot.T + trans
    assert metrics.rmsd(pos, moved, amask) < 1e-6
    with pytest.raises(ValueError):
        metrics.rmsd(x, y, np.zeros(30))
    with pytest.raises(ValueError):
        metrics.rmsd(x, y[:-1])


@needs_tmscore
@pytest.mark.parametrize("name", PAIR_IDS)
def test_tm_rmsd_gdt_match_tmscore_program(tmp_path, name):
    _, model, native = PAIRS[PAIR_IDS.index(name)]
    model, native = rounded(model), rounded(native)
    ref = run_tmscore(tmp_path, model, native)
    assert ref["common"] == len(native)
    assert metrics.tm_score(model, native) == pytest.approx(ref["tm"], abs=0.01)
    assert metrics.rmsd(model, native) == pytest.approx(ref["rmsd"], abs=0.01)
    _check_gdt_against_tmscore(model, native, ref)


def _check_gdt_against_tmscore(model, native, ref):
    """GDT over TMscore's superpositions equals its figures (printed to 4 decimals); the
    thorough search visits those and more, so it is never lower."""
    same = metrics.gdt_scores(model, native, search="tmscore")
    thorough = metrics.gdt_scores(model, native)
    for key in ("gdt_ts", "gdt_ha"):
        assert same[key] == pytest.approx(ref[key], abs=2e-4), key
        assert ref[key] - 2e-4 <= thorough[key] <= 1.0, key


@pytest.mark.parametrize("name", PAIR_IDS)
def test_tm_and_rmsd_match_tmtools(name):
    tmtools = pytest.importorskip("tmtools", reason="tmtools package not installed")
    _, model, native = PAIRS[PAIR_IDS.index(name)]
    seq = "A" * len(native)
    # TM-align held to the identity alignment (the known correspondence).
    ref = tmtools.tm_align(model, native, seq, seq, alignment=[seq, seq])
    assert metrics.tm_score(model, native) == pytest.approx(ref.tm_norm_chain2, abs=0.01)
    if ref.seqM.count(" ") == 0:  # every pair kept: RMSD over all residues
        assert metrics.rmsd(model, native) == pytest.approx(ref.rmsd, abs=0.01)


def _debian_example_pair() -> tuple[np.ndarray, np.ndarray, list[int]]:
    a, b = DEBIAN_EXAMPLES / "1ni7.pdb.gz", DEBIAN_EXAMPLES / "5eep.pdb.gz"
    if not (a.is_file() and b.is_file()):
        pytest.skip(f"real structures {a} and {b} not present (Debian package tm-align)")
    model, native = read_ca_trace(a), read_ca_trace(b)
    common = sorted(set(model) & set(native))
    return (np.array([model[k] for k in common]), np.array([native[k] for k in common]),
            common)


@needs_tmscore
def test_real_structures_match_tmscore_program(tmp_path):
    """Two crystal structures of one protein (PDB 1NI7, 5EEP), numbered alike."""
    model, native, numbers = _debian_example_pair()
    ref = run_tmscore(tmp_path, model, native, numbers, numbers)
    assert metrics.tm_score(model, native) == pytest.approx(ref["tm"], abs=0.01)
    assert metrics.rmsd(model, native) == pytest.approx(ref["rmsd"], abs=0.01)
    _check_gdt_against_tmscore(model, native, ref)
    # And against a perturbed copy of the real chain.
    noisy = rounded(native + np.random.default_rng(3).normal(0, 2.0, native.shape))
    ref = run_tmscore(tmp_path, noisy, native, numbers, numbers)
    assert metrics.tm_score(noisy, native) == pytest.approx(ref["tm"], abs=0.01)
    assert metrics.rmsd(noisy, native) == pytest.approx(ref["rmsd"], abs=0.01)


def test_real_structures_match_tmtools():
    tmtools = pytest.importorskip("tmtools", reason="tmtools package not installed")
    model, native, _ = _debian_example_pair()
    seq = "A" * len(native)
    ref = tmtools.tm_align(model, native, seq, seq, alignment=[seq, seq])
    assert metrics.tm_score(model, native) == pytest.approx(ref.tm_norm_chain2, abs=0.01)
    assert metrics.rmsd(model, native) == pytest.approx(ref.rmsd, abs=0.01)


def _data_structures() -> list[Path]:
    if not DATA.is_dir():
        return []
    return sorted(p for p in DATA.iterdir()
                  if re.search(r"\.(pdb|cif|ent)(\.gz)?$", p.name, re.IGNORECASE))


@needs_tmscore
def test_structures_in_tests_data_match_tmscore_program(tmp_path):
    files = _data_structures()
    if not files:
        pytest.skip(f"no structure files under {DATA}")
    protein = pytest.importorskip("foldlite.protein", reason="foldlite.protein not available")
    rng = np.random.default_rng(4)
    checked = 0
    for path in files[:3]:
        prot = protein.read_structure(path)
        ca_mask = np.asarray(prot.atom_mask)[:, metrics.CA_INDEX] > 0
        native = rounded(np.asarray(prot.atom_positions)[ca_mask, metrics.CA_INDEX])
        if len(native) < 10:
            continue
        model = rounded(native + rng.normal(0, 1.5, native.shape))
        ref = run_tmscore(tmp_path, model, native)
        assert metrics.tm_score(model, native) == pytest.approx(ref["tm"], abs=0.01), path
        assert metrics.rmsd(model, native) == pytest.approx(ref["rmsd"], abs=0.01), path
        checked += 1
    if not checked:
        pytest.skip(f"no chain of 10 or more residues under {DATA}")


# --------------------------------------------------------------------------------------------
# TM-score
# --------------------------------------------------------------------------------------------


def test_tm_d0():
    assert metrics.tm_d0(100) == pytest.approx(1.24 * 85 ** (1 / 3) - 1.8)
    assert metrics.tm_d0(10) == 0.5
    assert metrics.tm_d0(21) == 0.5  # the formula gives 0.45 there
    assert metrics.tm_d0(22) == pytest.approx(1.24 * 7 ** (1 / 3) - 1.8)


def test_tm_score_identity_and_rigid_invariance():
    rng = np.random.default_rng(5)
    native = protein_like_chain(rng, 50)
    assert metrics.tm_score(native, native) == pytest.approx(1.0)
    model = native + rng.normal(0, 1.0, native.shape)
    moved = model @ random_rotation(rng).T + rng.normal(0, 40, 3)
    tm = metrics.tm_score(model, native)
    assert 0.3 < tm < 1.0
    assert metrics.tm_score(moved, native) == pytest.approx(tm, abs=1e-9)
    res = metrics.tm_superposition(moved, native)
    d2 = np.sum((moved @ res.rot.T + res.trans - native) ** 2, -1)
    assert np.mean(1 / (1 + d2 / res.d0 ** 2)) == pytest.approx(res.score)


@needs_tmscore
def test_tm_score_masks_and_reference_length(tmp_path):
    """Residues missing from the native: TMscore compares the common ones and normalises by
    the native's length; the mask and reference_length express the same."""
    _, model, native = PAIRS[1]
    model, native = rounded(model), rounded(native)
    n = len(native)
    mask = np.ones(n)
    mask[[0, 1, 30, 31, 32, 60]] = 0
    keep = mask > 0
    numbers = np.arange(1, n + 1)
    ref = run_tmscore(tmp_path, model, native[keep], numbers, numbers[keep])
    model_bad = model.copy()
    model_bad[~keep] = np.nan
    assert metrics.tm_score(model_bad, native, mask) == pytest.approx(ref["tm"], abs=0.01)
    # The model lacks residues instead: normalised by the whole native.
    ref = run_tmscore(tmp_path, model[keep], native, numbers[keep], numbers)
    assert ref["common"] == keep.sum()
    assert metrics.tm_score(model, native, mask, reference_length=n) == pytest.approx(
        ref["tm"], abs=0.01)


def test_tm_score_atom37_input_uses_ca():
    rng = np.random.default_rng(6)
    native = protein_like_chain(rng, 30)
    model = native + rng.normal(0, 1.0, native.shape)
    pos_m, pos_n = np.zeros((30, 37, 3)), np.zeros((30, 37, 3))
    pos_m[:, 1], pos_n[:, 1] = model, native
    pos_m[:, 0] = 100.0  # other atoms are ignored
    amask = np.zeros((30, 37))
    amask[:, 1] = 1
    assert metrics.tm_score(pos_m, pos_n, amask) == pytest.approx(
        metrics.tm_score(model, native))


def test_tm_score_short_chains():
    x = np.array([[0.0, 0, 0], [3.8, 0, 0], [5.0, 3.6, 0]])
    assert metrics.tm_score(x, x) == pytest.approx(1.0)
    assert metrics.tm_score(x[:1], x[:1] + 5.0) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        metrics.tm_score(x, x, mask=np.zeros(3))


# --------------------------------------------------------------------------------------------
# GDT
# --------------------------------------------------------------------------------------------


def test_gdt_known_values():
    rng = np.random.default_rng(7)
    native = protein_like_chain(rng, 80)
    shift = rng.normal(size=(80, 3))
    shift /= np.linalg.norm(shift, axis=-1, keepdims=True)
    idx = rng.permutation(80)
    # 70% of the residues exact, 30% thrown 30 A away: 0.7 at every cutoff.
    model = native.copy()
    model[idx[56:]] += 30.0 * shift[idx[56:]]
    model = model @ random_rotation(rng).T + rng.normal(0, 10, 3)
    np.testing.assert_allclose(metrics.gdt(model, native), [0.7] * 5)
    assert metrics.gdt_ts(model, native) == pytest.approx(0.7)
    assert metrics.gdt_ha(model, native, search="tmscore") == pytest.approx(0.7)
    # Two rigid domains moved apart: the larger one (60%) wins at every cutoff.
    model = native.copy()
    model[48:] = model[48:] @ random_rotation(rng).T + np.array([60.0, 0, 0])
    assert metrics.gdt_scores(model, native) == pytest.approx({"gdt_ts": 0.6, "gdt_ha": 0.6})
    # Half exact, a quarter off by 1.5 A, a quarter off by 30 A: at 2, 4 and 8 A exactly the
    # 75% near residues; at 0.5 and 1 A at least the exact half (a small shift of the whole
    # may trade a few exact residues for a few of the 1.5 A ones).
    model = native.copy()
    model[idx[40:60]] += 1.5 * shift[idx[40:60]]
    model[idx[60:]] += 30.0 * shift[idx[60:]]
    model = model @ random_rotation(rng).T + rng.normal(0, 10, 3)
    frac = metrics.gdt(model, native, cutoffs=(0.5, 1, 2, 4, 8))
    np.testing.assert_allclose(frac[2:], [0.75, 0.75, 0.75])
    assert np.all((frac[:2] >= 0.5) & (frac[:2] <= 0.6))
    scores = metrics.gdt_scores(model, native)
    assert scores["gdt_ts"] == pytest.approx((frac[1] + 0.75 * 3) / 4)
    assert scores["gdt_ha"] == pytest.approx((frac[0] + frac[1] + 0.75 * 2) / 4)
    assert metrics.gdt_ts(model, native) == pytest.approx(scores["gdt_ts"])
    assert metrics.gdt_ha(model, native) == pytest.approx(scores["gdt_ha"])
    quick = metrics.gdt_scores(model, native, search="tmscore")
    assert quick["gdt_ts"] <= scores["gdt_ts"] + 1e-12
    # Identity and rigid motions score 1.
    assert metrics.gdt_ts(native, native) == pytest.approx(1.0)
    assert metrics.gdt_ha(native @ random_rotation(rng).T + 5.0, native) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        metrics.gdt(native, native, search="exhaustive")


def test_gdt_masks():
    rng = np.random.default_rng(8)
    native = protein_like_chain(rng, 40)
    model = native.copy()
    model[30:] += 20.0  # far off, then masked out
    model[30:35] = np.nan
    mask = np.ones(40)
    mask[30:] = 0
    assert metrics.gdt_ts(model, native, mask) == pytest.approx(1.0)
    # Normalised by a longer reference: 30 of 40 residues match.
    assert metrics.gdt_ts(model, native, mask, reference_length=40) == pytest.approx(0.75)


# --------------------------------------------------------------------------------------------
# lDDT
# --------------------------------------------------------------------------------------------


def test_lddt_hand_computed_ca():
    true = np.array([[0.0, 0, 0], [3.8, 0, 0], [7.6, 0, 0], [100.0, 0, 0]])
    pred = np.array([[0.0, 0, 0], [3.8, 0, 0], [8.3, 0, 0], [140.0, 0, 0]])
    # Pairs: (0,1) kept exactly; (0,2) and (1,2) off by 0.7 A (3 of 4 thresholds);
    # residue 3 is beyond the 15 A radius of everyone in the reference, so never scored.
    assert metrics.lddt(pred, true) == pytest.approx((1 + 0.75 + 0.75) / 3)
    per = metrics.lddt(pred, true, per_residue=True)
    np.testing.assert_allclose(per[:3], [0.875, 0.875, 0.75])
    assert np.isnan(per[3])
    assert metrics.lddt_ca(pred, true) == pytest.approx((1 + 0.75 + 0.75) / 3)
    # A 5 A radius drops the (0,2) pair (7.6 A apart in the reference).
    assert metrics.lddt(pred, true, cutoff=5.0) == pytest.approx((1 + 0.75) / 2)


def _lddt_bruteforce(pred, true, tmask, pmask, cutoff=15.0):
    """Literal per-pair loops over atoms of different residues."""
    n_res, n_atom = tmask.shape
    num = np.zeros(n_res)
    den = np.zeros(n_res)
    for i in range(n_res):
        for a in range(n_atom):
            if not tmask[i, a]:
                continue
            for j in range(n_res):
                if j == i:
                    continue
                for b in range(n_atom):
                    if not tmask[j, b]:
                        continue
                    dt = np.linalg.norm(true[i, a] - true[j, b])
                    if dt >= cutoff:
                        continue
                    den[i] += 1
                    if pmask[i, a] and pmask[j, b]:
                        dp = np.linalg.norm(pred[i, a] - pred[j, b])
                        num[i] += np.mean([abs(dp - dt) < t for t in (0.5, 1, 2, 4)])
    return num.sum() / den.sum(), num / den


def test_lddt_all_atom_against_bruteforce_and_masks():
    rng = np.random.default_rng(9)
    n_res = 12
    ca = protein_like_chain(rng, n_res)
    true = ca[:, None, :] + rng.normal(0, 1.5, (n_res, 37, 3))
    tmask = (rng.random((n_res, 37)) < 0.15).astype(np.float32)
    tmask[:, 1] = 1
    pred = true + rng.normal(0, 0.8, true.shape)
    pmask = np.ones_like(tmask)
    pmask[2, 1] = 0
    true_nan = np.where(tmask[..., None] > 0, true, np.nan)
    want_global, want_per = _lddt_bruteforce(pred, true, tmask, pmask)
    got = metrics.lddt(pred, true_nan, tmask, pred_mask=pmask)
    assert got == pytest.approx(want_global)
    np.testing.assert_allclose(metrics.lddt(pred, true_nan, tmask, per_residue=True,
                                            pred_mask=pmask), want_per)
    assert 0.0 < got < 1.0
    # Atoms absent from the reference are ignored in the prediction too, NaN or not.
    pred_nan = np.where(tmask[..., None] > 0, pred, np.nan)
    assert metrics.lddt(pred_nan, true_nan, tmask) == pytest.approx(
        metrics.lddt(pred, true, tmask))
    with pytest.raises(ValueError):
        metrics.lddt(pred_nan, true, np.ones_like(tmask))
    # A missing predicted atom can only lower the score.
    assert metrics.lddt(pred, true, tmask) > got
    # Pairs inside one residue never count: a lone residue has nothing to score.
    assert np.isnan(metrics.lddt(pred[:1], true[:1], tmask[:1]))


def test_lddt_identity_and_rigid_invariance():
    rng = np.random.default_rng(10)
    ca = protein_like_chain(rng, 25)
    true = ca[:, None, :] + rng.normal(0, 1.5, (25, 37, 3))
    mask = np.zeros((25, 37))
    mask[:, :5] = 1
    assert metrics.lddt(true, true, mask) == pytest.approx(1.0)
    assert metrics.lddt(ca, ca) == pytest.approx(1.0)
    pred = true + rng.normal(0, 1.0, true.shape)
    moved = pred @ random_rotation(rng).T + rng.normal(0, 30, 3)
    assert metrics.lddt(moved, true, mask) == pytest.approx(metrics.lddt(pred, true, mask))
    np.testing.assert_allclose(metrics.lddt_ca(moved, true, mask, per_residue=True),
                               metrics.lddt_ca(pred, true, mask, per_residue=True))
    # lddt_ca on atom37 is lddt on the CA trace.
    assert metrics.lddt_ca(pred, true, mask) == pytest.approx(
        metrics.lddt(pred[:, 1], true[:, 1]))


def test_lddt_jax_matches_numpy():
    rng = np.random.default_rng(11)
    batch = []
    for _ in range(2):
        true = protein_like_chain(rng, 30)
        pred = true + rng.normal(0, 1.0, true.shape)
        mask = (rng.random(30) > 0.2).astype(np.float32)
        batch.append((pred, true, mask))
    pred, true, mask = (np.stack(a) for a in zip(*batch))
    lddt_jit = jax.jit(metrics.lddt_jax, static_argnames=("cutoff", "per_residue"))
    per = np.asarray(lddt_jit(pred, true, mask))
    glob = np.asarray(lddt_jit(pred, true, mask, per_residue=False))
    assert per.shape == (2, 30) and glob.shape == (2,)
    for b in range(2):
        want = metrics.lddt(pred[b], true[b], mask[b], per_residue=True)
        keep = mask[b] > 0
        np.testing.assert_allclose(per[b][keep], want[keep], atol=1e-5)
        assert glob[b] == pytest.approx(metrics.lddt(pred[b], true[b], mask[b]), abs=1e-5)
    # Identity scores 1 and gradients are finite (zero almost everywhere).
    np.testing.assert_allclose(lddt_jit(true, true, mask, per_residue=False), 1.0, atol=1e-6)
    grad = jax.jit(jax.grad(lambda p: jnp.sum(metrics.lddt_jax(p, true, mask))))(
        jnp.asarray(true))
    assert np.all(np.isfinite(np.asarray(grad)))
