"""foldlite.physics.refine and pack_sidechains end to end (small proteins, few steps)."""

from __future__ import annotations

import dataclasses
import importlib.util
import io
import json

import numpy as np
import pytest

from foldlite import constants as rc
from foldlite.cli import main as cli_main
from foldlite.errors import InputError
from foldlite.physics.refine import RefineConfig, refine
from foldlite.physics.sidechains import SIDECHAIN_MASK37, pack_sidechains
from foldlite.protein import Protein, read_structure, read_structure_chains, write_pdb

N_RES = 24
CONFIG = RefineConfig(max_steps=400)
_CA = rc.atom_order["CA"]


def _fragment(repo_root) -> Protein:
    p = read_structure(repo_root / "tests/data/1A8O.pdb")
    return Protein(aatype=p.aatype[:N_RES], atom_positions=p.atom_positions[:N_RES],
                   atom_mask=p.atom_mask[:N_RES], residue_index=p.residue_index[:N_RES],
                   chain_id="A")


def _perturb(p: Protein, sigma: float = 0.3, seed: int = 0) -> Protein:
    rng = np.random.default_rng(seed)
    noise = rng.normal(0, sigma, p.atom_positions.shape).astype(np.float32)
    return p.replace(atom_positions=p.atom_positions + noise * p.atom_mask[..., None])


@pytest.fixture(scope="module")
def native(repo_root):
    return _fragment(repo_root)


@pytest.fixture(scope="module")
def refined(native):
    start = _perturb(native)
    out, report = refine(start, config=CONFIG)
    return start, out, report


def test_refinement_meets_the_geometry_goals(native, refined):
    start, out, report = refined
    mb, ma = report.metrics_before, report.metrics_after
    assert mb["violations"] > 0 and mb["bond_rmsz"] > 5
    assert ma["violations"] == 0
    assert ma["clashes_per_1000"] <= 2.0
    assert ma["bond_rmsz"] <= 1.0 and ma["angle_rmsz"] <= 1.5
    assert ma["omega_max_dev_deg"] <= 15.0
    assert ma["wrong_chirality"] == 0
    assert report.energy_after["total"] < report.energy_before["total"]
    assert 0.0 < report.ca_rmsd < 0.6
    # Refinement moves the noisy atoms back towards the native structure.
    d_start = np.linalg.norm(start.atom_positions[:, _CA] - native.atom_positions[:, _CA], axis=-1)
    d_out = np.linalg.norm(out.atom_positions[:, _CA] - native.atom_positions[:, _CA], axis=-1)
    assert np.sqrt(np.mean(d_out ** 2)) < np.sqrt(np.mean(d_start ** 2))
    assert np.array_equal(out.aatype, start.aatype)
    assert np.array_equal(out.atom_mask, start.atom_mask)
    assert report.steps > 0 and report.rounds >= 1 and report.rebuilt_sidechains == 0
    # A perturbed crystal structure converges by the optimiser's own rule in one round (the
    # looser per-check tolerance, settle_tol, is for slowly relaxing predictions).
    assert [r["end"] for r in report.round_log] == ["converged"]
    assert not report.collapsed_start and report.restraint_weight == CONFIG.restraint_weight
    assert report.coarse is None
    d = json.loads(json.dumps(report.to_dict()))
    assert d["violations_after"] == 0 and d["trajectory_frames"] == 0
    assert set(d["energy_after"]) >= {"bond", "angle", "omega", "chirality", "repulsion",
                                      "restraint", "total"}


def test_plddt_weights_let_unconfident_residues_move_more(native, refined):
    start, out_uniform, _ = refined
    plddt = np.full(N_RES, 95.0)
    plddt[: N_RES // 2] = 20.0
    out, report = refine(start, plddt, config=CONFIG)
    moved = np.linalg.norm(out.atom_positions[:, _CA] - start.atom_positions[:, _CA], axis=-1)
    moved_u = np.linalg.norm(out_uniform.atom_positions[:, _CA] - start.atom_positions[:, _CA],
                             axis=-1)
    low, high = slice(0, N_RES // 2), slice(N_RES // 2, N_RES)
    assert moved[low].mean() > moved_u[low].mean()
    assert moved[high].mean() < moved[low].mean()
    assert report.metrics_after["violations"] == 0


def test_trajectory_frames(refined):
    start, _, _ = refined
    cfg = RefineConfig(max_steps=40, max_rounds=1, trajectory_every=10)
    _, report = refine(start, config=cfg, record_trajectory=True)
    traj = report.trajectory
    assert traj is not None and traj.shape[1:] == (N_RES, 37, 3)
    assert 2 <= len(traj) <= 5
    m = start.atom_mask > 0
    assert np.allclose(traj[0][m], start.atom_positions[m], atol=1e-5)
    assert report.to_dict()["trajectory_frames"] == len(traj)


def test_missing_sidechains_are_built_and_complete_ones_kept(native):
    start = _perturb(native, 0.1, seed=3)
    drop = np.zeros(N_RES, bool)
    drop[::3] = True  # a third of the residues lose their side chains (CB included)
    mask = start.atom_mask * ~(drop[:, None] & SIDECHAIN_MASK37[start.aatype])
    partial = start.replace(atom_mask=mask)
    out, report = refine(partial, config=CONFIG)
    expected = rc.restype_atom37_mask[out.aatype] > 0
    have = out.atom_mask > 0
    assert np.array_equal(have & expected, expected)  # every side chain complete
    has_sc = np.any(SIDECHAIN_MASK37[start.aatype], axis=1)
    assert report.rebuilt_sidechains == int((drop & has_sc).sum())
    assert report.metrics_after["violations"] == 0
    assert report.metrics_after["clashes_per_1000"] <= 2.0
    # Kept side chains stay close to where they were.
    kept = (mask > 0) & SIDECHAIN_MASK37[start.aatype]
    shift = np.linalg.norm(out.atom_positions - start.atom_positions, axis=-1)[kept]
    assert np.sqrt(np.mean(shift ** 2)) < 0.5


def test_pack_sidechains_on_a_backbone_only_chain(native):
    bb = np.zeros(37, bool)
    bb[[rc.atom_order[a] for a in ("N", "CA", "C", "O")]] = True
    backbone = native.replace(atom_mask=native.atom_mask * bb)
    full, info = pack_sidechains(backbone, return_info=True)
    expected = rc.restype_atom37_mask[full.aatype] > 0
    assert np.array_equal((full.atom_mask > 0) & expected, expected)
    assert info["rebuilt"] == int(np.sum(np.any(SIDECHAIN_MASK37[native.aatype], axis=1)))
    assert info["chi_steps"] > 0
    assert np.allclose(full.atom_positions[:, bb], native.atom_positions[:, bb])
    # Side chains are built with ideal geometry on the real backbone: no severe clashes, and
    # CB (rotamer independent) lands on the crystal CB.
    from foldlite.physics.topology import build_topology
    from foldlite.physics.validation import geometry_metrics
    import jax
    topo, lay = build_topology(full.aatype, full.atom_positions, full.atom_mask,
                               full.residue_index)
    topo = jax.tree_util.tree_map(jax.numpy.asarray, topo)
    m = geometry_metrics(topo.reference, topo, num_atoms=lay.num_atoms)
    assert m["clash_violations"] == 0 and m["clashes"] <= 2
    cb = rc.atom_order["CB"]
    has_cb = native.atom_mask[:, cb] > 0
    d = np.linalg.norm(full.atom_positions[has_cb, cb] - native.atom_positions[has_cb, cb], axis=-1)
    assert d.max() < 0.3


def test_bad_input_gives_clear_errors(native):
    with pytest.raises(InputError, match="lack backbone atoms"):
        m = native.atom_mask.copy()
        m[5, _CA] = 0
        refine(native.replace(atom_mask=m), config=CONFIG)
    with pytest.raises(InputError, match="no protein residues"):
        empty = Protein(aatype=np.zeros(0, np.int32), atom_positions=np.zeros((0, 37, 3)),
                        atom_mask=np.zeros((0, 37)), residue_index=np.zeros(0, np.int32))
        refine(empty, config=CONFIG)
    with pytest.raises(InputError, match="non-finite"):
        pos = native.atom_positions.copy()
        pos[3, _CA, 0] = np.nan
        refine(native.replace(atom_positions=pos), config=CONFIG)
    with pytest.raises(InputError, match="plddt"):
        refine(native, np.ones(3), config=CONFIG)


def test_nonstandard_residues_are_refined_as_backbone(native, repo_root):
    # The reader turns modified residues into UNK with a backbone only (2N0N has two).
    (p,) = read_structure_chains(repo_root / "tests/data/2N0N_model1.pdb.gz")
    unk_in_file = p.aatype == rc.unk_restype_index
    assert unk_in_file.sum() == 2
    assert np.all(p.atom_mask[unk_in_file][:, ~np.isin(np.arange(37), [0, 1, 2, 4, 36])] == 0)
    # Refine such a residue inside the test fragment (glycine 6 -> UNK keeps every table size,
    # so no new compile).
    aatype = native.aatype.copy()
    assert rc.resnames[aatype[5]] == "GLY"
    aatype[5] = rc.unk_restype_index
    out, report = refine(_perturb(native.replace(aatype=aatype)), config=CONFIG)
    assert report.nonstandard_residues == [f"A:{native.residue_ids[5]}"]
    assert report.metrics_after["violations"] == 0
    assert out.aatype[5] == rc.unk_restype_index
    assert np.array_equal(out.atom_mask[5], native.atom_mask[5])


def test_cli_refine_end_to_end(native, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FOLDLITE_CACHE_DIR", str(tmp_path / "cache"))
    src = tmp_path / "noisy.pdb"
    write_pdb(_perturb(native), src)
    out, rep = tmp_path / "out.pdb", tmp_path / "report.json"
    rc_ = cli_main(["refine", str(src), "-o", str(out), "--report", str(rep),
                    "--max-steps", str(CONFIG.max_steps), "--restraint-weight", "10"])
    assert rc_ == 0
    assert "violations" in capsys.readouterr().out
    got = read_structure(out)
    assert got.length == N_RES and got.sequence == native.sequence
    report = json.loads(rep.read_text())
    assert report["metrics_after"]["violations"] == 0
    # -o naming a folder writes into it; an output that cannot be written is an error before
    # the work (issue 16, item 5)
    folder = tmp_path / "refined"
    folder.mkdir()
    assert cli_main(["refine", str(src), "-o", str(folder), "--max-steps",
                     str(CONFIG.max_steps)]) == 0
    assert read_structure(folder / "noisy_refined.pdb").length == N_RES
    capsys.readouterr()
    refine_mod = importlib.import_module("foldlite.commands.refine")
    monkeypatch.setattr(refine_mod, "refine", lambda *a, **k: pytest.fail("refined anyway"))
    for bad in (["-o", str(out / "sub.pdb")], ["-o", str(folder), "--report", str(folder)]):
        assert cli_main(["refine", str(src), *bad]) == 2
        err = capsys.readouterr().err
        assert err.count("error") == 1 and "Traceback" not in err
    monkeypatch.undo()
    # Errors are one line and exit status 2.
    assert cli_main(["refine", str(tmp_path / "missing.pdb"), "-o", str(out)]) == 2
    water = tmp_path / "water.pdb"
    water.write_text("HETATM    1  O   HOH A   1       0.000   0.000   0.000  1.00  0.00"
                     "           O\nEND\n")
    assert cli_main(["refine", str(water), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "error" in err and "Traceback" not in err
    bad = tmp_path / "bad.yaml"
    bad.write_text("no_such_key: 1\n")
    assert cli_main(["refine", str(src), "-o", str(out), "--config", str(bad)]) == 2


def _add_oxt(p: Protein) -> Protein:
    c, o, ca, oxt = (rc.atom_order[a] for a in ("C", "O", "CA", "OXT"))
    pos, mask = p.atom_positions.copy(), p.atom_mask.copy()
    i = p.length - 1
    u = pos[i, ca] - pos[i, c]
    v = pos[i, o] - pos[i, c]
    d = -(u / np.linalg.norm(u) + v / np.linalg.norm(v))
    pos[i, oxt] = pos[i, c] + 1.25 * d / np.linalg.norm(d)
    mask[i, oxt] = 1
    return p.replace(atom_positions=pos, atom_mask=mask)


@pytest.mark.skipif(importlib.util.find_spec("openmm") is None,
                    reason="OpenMM is not installed (optional extra 'bench')")
def test_amber_energy_from_openmm_is_lower_after_refinement(native):
    import openmm
    from openmm import app, unit

    from foldlite.protein import to_pdb_string

    def amber(p: Protein) -> float:
        pdb = app.PDBFile(io.StringIO(to_pdb_string(p)))
        ff = app.ForceField("amber14-all.xml")
        model = app.Modeller(pdb.topology, pdb.positions)
        model.addHydrogens(ff)
        system = ff.createSystem(model.topology, nonbondedMethod=app.NoCutoff)
        for atom in model.topology.atoms():
            if atom.element.symbol != "H":
                system.setParticleMass(atom.index, 0.0)  # heavy atoms fixed
        ctx = openmm.Context(system, openmm.VerletIntegrator(0.001),
                             openmm.Platform.getPlatformByName("Reference"))
        ctx.setPositions(model.positions)
        openmm.LocalEnergyMinimizer.minimize(ctx, 10.0, 500)
        e = ctx.getState(getEnergy=True).getPotentialEnergy()
        return e.value_in_unit(unit.kilocalories_per_mole)

    start = _add_oxt(_perturb(native))
    out, _ = refine(start, config=CONFIG)
    assert amber(out) < amber(start)


# ---------------------------------------------------------------------------------------------
# Shapes: one compile per bucket, padding changes nothing
# ---------------------------------------------------------------------------------------------

def _sub(p: Protein, start: int, stop: int) -> Protein:
    return Protein(aatype=p.aatype[start:stop], atom_positions=p.atom_positions[start:stop],
                   atom_mask=p.atom_mask[start:stop],
                   residue_index=p.residue_index[start:stop], chain_id="A")


class _CompileCounter:
    """Counts XLA compilations and jaxpr traces while active (``jax.monitoring`` events)."""

    def __init__(self):
        self.compiles = 0
        self.traces = 0

    def _listen(self, event: str, duration: float, **kw) -> None:
        if event == "/jax/core/compile/backend_compile_duration":
            self.compiles += 1
        elif event == "/jax/core/compile/jaxpr_trace_duration":
            self.traces += 1

    def __enter__(self):
        import jax.monitoring
        jax.monitoring.register_event_duration_secs_listener(self._listen)
        return self

    def __exit__(self, *exc):
        import jax.monitoring
        jax.monitoring.unregister_event_duration_listener(self._listen)


def test_two_proteins_in_one_bucket_compile_once(repo_root, refined):
    from foldlite.physics import minimize, validation
    from foldlite.physics.topology import bucket_size

    full = read_structure(repo_root / "tests/data/1A8O.pdb")
    first, _, first_report = refined                      # residues 1-24: compiled already
    second = _perturb(_sub(full, 30, 58), seed=7)         # residues 31-58: another sequence
    assert second.length != first.length and second.sequence != first.sequence
    n_first, n_second = first_report.num_atoms, int(np.sum(second.atom_mask))
    assert n_first != n_second and bucket_size(n_first) == bucket_size(n_second)
    jitted = (minimize._minimize, minimize._init_state, validation._evaluate)
    sizes = [f._cache_size() for f in jitted]
    with _CompileCounter() as counter:
        out, report = refine(second, config=CONFIG)
    assert counter.compiles == 0 and counter.traces == 0
    assert [f._cache_size() for f in jitted] == sizes
    assert report.steps > 0 and report.metrics_after["violations"] == 0
    assert out.length == second.length


def test_padding_changes_nothing(native):
    start = _perturb(native)
    padded = RefineConfig(max_steps=CONFIG.max_steps, max_rounds=1)
    exact = dataclasses.replace(padded, pad_shapes=False)
    # A few steps: the same coordinates to float precision.
    short_p, rep_p = refine(start, config=dataclasses.replace(padded, max_steps=10))
    short_e, rep_e = refine(start, config=dataclasses.replace(exact, max_steps=10))
    for k, v in rep_p.energy_before.items():
        assert rep_e.energy_before[k] == pytest.approx(v, rel=1e-5, abs=1e-4), k
    assert rep_p.steps == rep_e.steps == 10
    assert np.abs(short_p.atom_positions - short_e.atom_positions).max() < 1e-3
    # A full minimisation amplifies float rounding (the sums run over arrays of other lengths):
    # padding changes the result no more than moving the input by 1e-6 A does.
    full_p, rep_p = refine(start, config=padded)
    full_e, rep_e = refine(start, config=exact)
    rng = np.random.default_rng(11)
    jitter = start.replace(atom_positions=start.atom_positions + 1e-6 * rng.normal(
        size=start.atom_positions.shape).astype(np.float32) * start.atom_mask[..., None])
    full_j, _ = refine(jitter, config=padded)
    d_pad = np.abs(full_p.atom_positions - full_e.atom_positions).max()
    d_jitter = np.abs(full_p.atom_positions - full_j.atom_positions).max()
    assert d_pad <= max(3.0 * d_jitter, 5e-3)
    assert rep_p.metrics_after["violations"] == rep_e.metrics_after["violations"] == 0
    assert rep_e.energy_after["total"] == pytest.approx(rep_p.energy_after["total"], rel=1e-3)


# ---------------------------------------------------------------------------------------------
# Collapsed input (an untrained model's prediction): bounded work, honest report
# ---------------------------------------------------------------------------------------------


def _collapsed(native):
    """``native`` shrunk 5x about its centre: a collapsed start full of clashes."""
    m = native.atom_mask > 0
    centre = native.atom_positions[m].mean(0)
    return native.replace(atom_positions=(
        (native.atom_positions - centre) * 0.2 + centre) * native.atom_mask[..., None])

def test_collapsed_input_terminates_and_reports_honestly(native):
    import jax
    from foldlite.physics.topology import build_topology
    from foldlite.physics.validation import geometry_metrics

    collapsed = _collapsed(native)
    cfg = RefineConfig(max_steps=100)
    out, report = refine(collapsed, config=cfg)
    mb, ma = report.metrics_before, report.metrics_after
    assert report.collapsed_start and mb["clash_violations"] > 0.1 * report.num_atoms
    assert report.restraint_weight == cfg.collapsed_restraint_weight < cfg.restraint_weight
    # The CA trace was opened first (CA-level pre-relaxation), leaving no CA pair off its bounds.
    assert report.coarse["steps"] > 0 and report.coarse["ca_rmsd"] > 1.0
    assert report.coarse["ca_violations_before"] > 0 == report.coarse["ca_violations_after"]
    # Bounded: the softened-repulsion rounds come first, then at most max_rounds rounds.
    assert report.rounds <= cfg.max_rounds + len(cfg.clash_ramp)
    assert report.steps <= report.rounds * cfg.max_steps
    # Honest: the figures after refinement are those of the structure returned.
    topo, layout = build_topology(out.aatype, out.atom_positions, out.atom_mask,
                                  out.residue_index)
    topo = jax.tree_util.tree_map(jax.numpy.asarray, topo)
    check = geometry_metrics(topo.reference, topo, num_atoms=layout.num_atoms)
    for key in ("violations", "clashes", "bond_violations", "angle_violations"):
        assert check[key] == ma[key], key
    assert not report.pair_list_truncated and not ma["pair_list_truncated"]
    assert ma["violations"] < mb["violations"] / 100
    assert report.ca_rmsd > 1.0  # the chain had to unfold out of the collapsed ball
    # The round log accounts for every round and step; softened rounds come first, within
    # their step budget, and release no restraint.
    log = report.round_log
    assert len(log) == report.rounds and sum(r["steps"] for r in log) == report.steps
    n_ramp = len(cfg.clash_ramp)
    assert [r["repulsion_scale"] for r in log[:n_ramp]] == list(cfg.clash_ramp)
    assert all(r["steps"] <= min(cfg.clash_ramp_steps, cfg.max_steps) for r in log[:n_ramp])
    assert all(r["repulsion_scale"] == 1.0 for r in log[n_ramp:])
    assert all(r["end"] in ("converged", "settled", "step budget") for r in log)
    assert log[-1]["violations"] == ma["violations"] and log[-1]["clashes"] == ma["clashes"]
    assert json.loads(json.dumps(report.to_dict()))["round_log"][0]["steps"] == log[0]["steps"]


def test_settled_rounds_and_released_clashes_on_a_collapsed_start(native):
    """The convergence tolerance per check ends full-strength rounds early (fewer steps, the
    same violations), and releasing the restraints of clashing residues removes clashes that
    the restraints to a collapsed start would otherwise hold in place."""
    from foldlite.physics.coarse import CoarseConfig

    collapsed = _collapsed(native)
    # Without the CA-level pre-relaxation, which leaves too few clashes to tell these apart.
    cfg = RefineConfig(max_steps=400, coarse=CoarseConfig(max_steps=0))
    _, settled = refine(collapsed, config=cfg)
    _, full = refine(collapsed, config=dataclasses.replace(cfg, settle_tol=0.0))
    _, held = refine(collapsed, config=dataclasses.replace(cfg, release_clashes=False))
    assert any(r["end"] == "settled" for r in settled.round_log)
    assert all(r["end"] != "settled" for r in full.round_log)
    assert settled.steps < full.steps
    assert settled.violations_after == full.violations_after == 0
    assert settled.clashes_after <= 2
    assert held.clashes_after > settled.clashes_after + 10
    assert settled.coarse is None
    # With it (the default), the all-atom rounds start from an opened trace.
    _, opened = refine(collapsed, config=RefineConfig(max_steps=400))
    assert opened.coarse["steps"] > 0
    assert opened.violations_after == 0 and opened.clashes_after <= settled.clashes_after


def test_new_refine_options_are_validated():
    from foldlite.errors import ConfigError

    for bad in ({"clash_ramp_steps": -1}, {"check_every": -1}, {"settle_tol": 1.0},
                {"settle_tol": -0.1}, {"collapsed_restraint_weight": -1.0}):
        with pytest.raises(ConfigError):
            RefineConfig(**bad)


# ---------------------------------------------------------------------------------------------
# Bad input through the command line
# ---------------------------------------------------------------------------------------------

def test_cli_bad_structures_give_one_line_errors(native, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FOLDLITE_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "out.pdb"

    def fails(protein: Protein | None, *extra: str, text: str | None = None) -> str:
        src = tmp_path / "in.pdb"
        if protein is not None:
            write_pdb(protein, src)
        else:
            src.write_text(text)
        assert cli_main(["refine", str(src), "-o", str(out), *extra]) == 2
        err = capsys.readouterr().err
        assert "error" in err and "Traceback" not in err
        return err

    # A residue without its CA: named with its number and position.
    m = native.atom_mask.copy()
    m[5, _CA] = 0
    err = fails(native.replace(atom_mask=m))
    assert "lack backbone atoms" in err and "(position 6)" in err
    # A CA-only trace: every residue lacks N and C.
    ca_only = native.replace(atom_mask=native.atom_mask * (np.arange(37) == _CA)[None])
    err = fails(ca_only)
    assert "lack backbone atoms" in err and f"and {N_RES - 5} more" in err
    # A chain that is not in the file; a file with no protein (a ligand only).
    err = fails(native, "--chain", "Z")
    assert "'Z' not found" in err
    ligand = ("HETATM    1  C1  LIG A   1       0.000   0.000   0.000  1.00  0.00           C\n"
              "HETATM    2  O1  LIG A   1       1.200   0.000   0.000  1.00  0.00           O\n"
              "END\n")
    assert "no protein chain" in fails(None, text=ligand)
    assert not out.exists()


def test_cli_reports_nonstandard_residues(native, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FOLDLITE_CACHE_DIR", str(tmp_path / "cache"))
    aatype = native.aatype.copy()
    aatype[5] = rc.unk_restype_index  # written as UNK with a backbone only
    src, out = tmp_path / "unk.pdb", tmp_path / "out.pdb"
    write_pdb(_perturb(native.replace(aatype=aatype)), src)
    assert cli_main(["refine", str(src), "-o", str(out), "--max-steps", "400"]) == 0
    printed = capsys.readouterr().out
    assert "1 non-standard residue(s) refined as backbone only" in printed
    assert read_structure(out).aatype[5] == rc.unk_restype_index


def test_gap_is_a_chain_break_unless_every_residue_is_bonded(native):
    """A crystal structure's C(i)-N(i+1) gap beyond ``max_peptide_bond`` is a chain break and
    stays open; a prediction (``foldlite predict`` refines with every consecutive pair bonded)
    gets it closed."""
    from foldlite import pipeline

    gapped = native.atom_positions.copy()
    half = native.length // 2
    gapped[half:] += np.array([6.0, 0.0, 0.0], np.float32) * native.atom_mask[half:, :, None]
    start = native.replace(atom_positions=gapped)

    def c_n(p):
        return float(np.linalg.norm(p.atom_positions[half - 1, 2] - p.atom_positions[half, 0]))

    assert c_n(start) > 5.0
    broken, _ = refine(start, config=CONFIG)
    assert c_n(broken) > 4.0
    predicted = pipeline._refine_config(CONFIG.max_steps)
    assert predicted.max_peptide_bond >= 1e6
    closed, report = refine(start, config=predicted)
    assert c_n(closed) < 1.5 and report.violations_after == 0
