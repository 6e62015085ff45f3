#!/usr/bin/env python
"""Benchmark foldlite's refinement against its goals and against an OpenMM (AMBER) relax.

What it does, for real all-atom structures (tests/data and the PDB files shipped in the
``tmtools`` wheel) perturbed by Gaussian noise. **Noise**: every heavy atom gets an independent
Gaussian displacement with standard deviation ``sigma`` (default 0.3 A) on *each* Cartesian
coordinate (fixed seed), so an atom moves by ``sigma * sqrt(3)`` RMS (0.52 A for 0.3 A); the
start's CA RMSD to the native is printed with each structure. Refining such a start back to
ideal geometry must undo most of that displacement, so "CA RMSD moved" is close to it for any
method; OpenMM's figure is printed alongside.

1. **Quality**: violations by AlphaFold2's definitions, clashes (overlap > 0.4 A) per 1,000 atoms,
   bond and angle RMSZ, trans-peptide planarity, CA RMSD moved (and to the native), before and
   after ``foldlite.physics.refine`` (default settings: restraints of 10 kcal/mol/A^2 on heavy
   atoms, as AlphaFold2); each goal is printed PASS or FAIL.
2. **Independent check**: the AMBER energy (OpenMM, amber14-all in vacuum, hydrogens added with
   ``openmm.app.Modeller`` and minimised with the heavy atoms fixed) of the perturbed start and
   of foldlite's result. Chains are split at gaps for OpenMM (which would bond across them),
   each piece ending in an OXT.
3. **Speed, side by side**: foldlite *cold* (in-memory JAX caches cleared and an empty
   persistent compilation cache: everything compiled), *cached* (in-memory caches cleared again,
   the persistent cache kept: what a second process pays, tracing and loading included) and
   *compiled* (a repeat call), with the number of XLA compilations of each; and OpenMM
   minimisation with AlphaFold2's relax settings (amber force field, hydrogens, harmonic
   restraints of 10 kcal/mol/A^2 on heavy atoms, tolerance 2.39 kcal/mol [as 10 kJ/mol/nm RMS
   force, OpenMM 8 semantics], no cutoff, HBonds constraints, CPU platform), timed from system
   creation to the end of ``minimizeEnergy`` (one round; AlphaFold2 repeats rounds while
   violations remain), with the CA RMSD it moved.
4. **Scaling**: synthetic chains of 100 to 1,000 residues built from real fragments (7ok9 chains
   A and B, placed side by side with a numbering gap), time per atom (compiled), cold and
   cached; then a second, different chain (another offset, a few residues shorter) of the same
   atom bucket, refined right after: it should need no compilation at all.
5. **Predictions** (``--extra``): structures refined as given (e.g. a network's unrefined
   models, pLDDT read from the B-factors), with each round's repulsion scale, steps, end and
   the violations and clashes left (``RefineReport.round_log``).

The machine is shared: rerun for stable timings; ``--repeat`` takes the best of N compiled runs.
OpenMM is optional (``pip install openmm``, extra ``bench``); without it those columns are
skipped. Persistent compilation caches live in temporary folders, removed at the end.

``--set KEY=VALUE`` overrides a ``RefineConfig`` field for every refinement (e.g.
``--set settle_tol=0`` for the optimiser's own stopping rule only, ``--set clash_ramp=[0.03,0.3]``).

Usage:
  python scripts/benchmark_refine.py [--noise 0.3] [--seed 0] [--no-openmm]
      [--sizes 100,250,500,750,1000] [--openmm-max-residues 600] [--only 1A8O,2GTL_A]
      [--extra model.pdb ...] [--set KEY=VALUE ...] [--json out.json]
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import jax  # noqa: E402

from foldlite import constants as rc  # noqa: E402
from foldlite.physics.refine import RefineConfig, refine  # noqa: E402
from foldlite.physics.sidechains import incomplete_sidechains, pack_sidechains  # noqa: E402
from foldlite.physics.topology import chain_links  # noqa: E402
from foldlite.protein import Protein, read_structure, to_pdb_string  # noqa: E402

GOALS = {
    "violations": 0,
    "clashes_per_1000": 2.0,
    "bond_rmsz": 1.0,
    "angle_rmsz": 1.5,
    "omega_max_dev_deg": 15.0,
    "ca_rmsd": 0.5,
}
_C, _O, _CA, _OXT = (rc.atom_order[a] for a in ("C", "O", "CA", "OXT"))


def tmtools_data() -> Path | None:
    spec = importlib.util.find_spec("tmtools")
    if spec is None or not spec.submodule_search_locations:
        return None
    d = Path(list(spec.submodule_search_locations)[0]) / "data"
    return d if d.is_dir() else None


def structures() -> list[tuple[str, Protein]]:
    out = [("1A8O", read_structure(REPO / "tests/data/1A8O.pdb")),
           ("4ZHL_U", read_structure(REPO / "tests/data/4ZHL.cif.gz", chain="U"))]
    d = tmtools_data()
    if d is not None:
        out += [("2GTL_A", read_structure(d / "2gtl.pdb", chain="A")),
                ("2GTL_M", read_structure(d / "2gtl.pdb", chain="M")),
                ("7OK9_A", read_structure(d / "7ok9.pdb", chain="A"))]
    return out


def add_oxt(p: Protein) -> Protein:
    """Place the terminal OXT (planar carboxylate, 1.25 A, opposite CA and O) if missing:
    the AMBER templates need it."""
    pos = p.atom_positions.copy()
    mask = p.atom_mask.copy()
    i = p.length - 1
    if mask[i, _OXT] > 0 or mask[i, _O] == 0:
        return p
    c, o, ca = pos[i, _C], pos[i, _O], pos[i, _CA]
    u = (ca - c) / np.linalg.norm(ca - c)
    v = (o - c) / np.linalg.norm(o - c)
    d = -(u + v)
    pos[i, _OXT] = c + 1.25 * d / np.linalg.norm(d)
    mask[i, _OXT] = 1.0
    return p.replace(atom_positions=pos, atom_mask=mask)


def prepare(p: Protein) -> Protein:
    """Complete side chains missing in the deposited structure, add OXT: the 'native'."""
    if incomplete_sidechains(p.aatype, p.atom_mask).any():
        p = pack_sidechains(p)
    return add_oxt(p)


def perturb(p: Protein, sigma: float, seed: int) -> Protein:
    rng = np.random.default_rng(seed)
    noise = rng.normal(0.0, sigma, p.atom_positions.shape).astype(np.float32)
    return p.replace(atom_positions=p.atom_positions + noise * p.atom_mask[..., None])


def ca_rmsd(a: Protein, b: Protein) -> float:
    m = (a.atom_mask[:, _CA] > 0) & (b.atom_mask[:, _CA] > 0)
    d = a.atom_positions[m, _CA] - b.atom_positions[m, _CA]
    return float(np.sqrt(np.mean(np.sum(d * d, -1))))


def concat_chain(parts: list[Protein], gap: float = 80.0) -> Protein:
    """One chain from several real fragments side by side (x offset) with numbering gaps."""
    pos, mask, aa, ridx = [], [], [], []
    for k, p in enumerate(parts):
        shift = np.array([k * gap, 0, 0], np.float32) - p.atom_positions[p.atom_mask > 0].mean(0)
        pos.append((p.atom_positions + shift) * p.atom_mask[..., None])
        mask.append(p.atom_mask)
        aa.append(p.aatype)
        ridx.append(p.residue_index - p.residue_index[0] + 1 + 2000 * k)
    return Protein(aatype=np.concatenate(aa), atom_positions=np.concatenate(pos),
                   atom_mask=np.concatenate(mask), residue_index=np.concatenate(ridx),
                   chain_id="A")


def sub(p: Protein, n: int) -> Protein:
    return sub_from(p, 0, n)


def sub_from(p: Protein, start: int, n: int) -> Protein:
    sl = slice(start, start + n)
    return Protein(aatype=p.aatype[sl], atom_positions=p.atom_positions[sl],
                   atom_mask=p.atom_mask[sl], residue_index=p.residue_index[sl],
                   chain_id=p.chain_id, b_factors=p.b_factors[sl],
                   insertion_code=p.insertion_code[sl])


# ------------------------------------------------------------------------------------ OpenMM
def have_openmm() -> bool:
    return importlib.util.find_spec("openmm") is not None


def segments(p: Protein) -> list[Protein]:
    """Split a chain where foldlite sees no peptide bond (``topology.chain_links``: a numbering
    gap, or C(i)-N(i+1) beyond 4 A), each piece with its own chain id and a terminal OXT:
    OpenMM would otherwise bond consecutive residues across a gap."""
    linked = chain_links(p.atom_positions, p.atom_mask, p.residue_index, p.insertion_code)
    cuts = [0] + [i + 1 for i in np.nonzero(~linked)[0]] + [p.length]
    out = []
    for k, (a, b) in enumerate(zip(cuts[:-1], cuts[1:])):
        piece = Protein(aatype=p.aatype[a:b], atom_positions=p.atom_positions[a:b],
                        atom_mask=p.atom_mask[a:b], residue_index=p.residue_index[a:b],
                        chain_id="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"[k % 52],
                        insertion_code=p.insertion_code[a:b])
        out.append(add_oxt(piece))
    return out


def _openmm_model(p: Protein):
    from openmm import app
    pdb = app.PDBFile(io.StringIO(to_pdb_string(segments(p))))
    ff = app.ForceField("amber14-all.xml")
    model = app.Modeller(pdb.topology, pdb.positions)
    model.addHydrogens(ff)
    return model, ff


def amber_energy(p: Protein, threads: int = 2) -> float:
    """AMBER (amber14-all, vacuum, no cutoff) energy in kcal/mol with hydrogens added and
    minimised while the heavy atoms stay fixed (massless particles do not move)."""
    import openmm
    from openmm import app, unit
    model, ff = _openmm_model(p)
    system = ff.createSystem(model.topology, nonbondedMethod=app.NoCutoff, constraints=None)
    for atom in model.topology.atoms():
        if atom.element is not None and atom.element.symbol != "H":
            system.setParticleMass(atom.index, 0.0)
    integ = openmm.VerletIntegrator(0.001)
    plat = openmm.Platform.getPlatformByName("CPU")
    ctx = openmm.Context(system, integ, plat, {"Threads": str(threads)})
    ctx.setPositions(model.positions)
    openmm.LocalEnergyMinimizer.minimize(ctx, 10.0, 2000)
    e = ctx.getState(getEnergy=True).getPotentialEnergy()
    return float(e.value_in_unit(unit.kilocalories_per_mole))


def af2_relax(p: Protein, threads: int = 2) -> dict:
    """OpenMM minimisation with AlphaFold2's relax settings; returns time and energies."""
    import openmm
    from openmm import app, unit
    t0 = time.perf_counter()
    model, ff = _openmm_model(p)
    system = ff.createSystem(model.topology, nonbondedMethod=app.NoCutoff,
                             constraints=app.HBonds)
    k = 10.0 * unit.kilocalories_per_mole / unit.angstroms ** 2
    force = openmm.CustomExternalForce("0.5 * k * ((x - x0)^2 + (y - y0)^2 + (z - z0)^2)")
    force.addGlobalParameter("k", k)
    for name in ("x0", "y0", "z0"):
        force.addPerParticleParameter(name)
    for atom, xyz in zip(model.topology.atoms(), model.positions):
        if atom.element is not None and atom.element.symbol != "H":
            force.addParticle(atom.index, xyz.value_in_unit(unit.nanometers))
    system.addForce(force)
    integ = openmm.LangevinIntegrator(0, 0.01, 0.0)
    plat = openmm.Platform.getPlatformByName("CPU")
    sim = app.Simulation(model.topology, system, integ, plat, {"Threads": str(threads)})
    sim.context.setPositions(model.positions)
    e0 = sim.context.getState(getEnergy=True).getPotentialEnergy()
    t1 = time.perf_counter()
    sim.minimizeEnergy(tolerance=10.0 * unit.kilojoules_per_mole / unit.nanometer,
                       maxIterations=0)
    t2 = time.perf_counter()
    state = sim.context.getState(getEnergy=True, getPositions=True)
    e1 = state.getPotentialEnergy()
    # CA RMSD moved (no superposition, as foldlite's), from OpenMM's own start.
    x0 = np.asarray(model.positions.value_in_unit(unit.angstrom))
    x1 = np.asarray(state.getPositions(asNumpy=True).value_in_unit(unit.angstrom))
    ca = [a.index for a in model.topology.atoms() if a.name == "CA"]
    moved = float(np.sqrt(np.mean(np.sum((x1[ca] - x0[ca]) ** 2, axis=-1))))
    return {"time_s": t2 - t0, "minimize_s": t2 - t1, "ca_rmsd_moved": moved,
            "ca_positions": x1[ca],
            "energy_start": float(e0.value_in_unit(unit.kilocalories_per_mole)),
            "energy_end": float(e1.value_in_unit(unit.kilocalories_per_mole))}


# ------------------------------------------------------------------------------------ runs
class CompileCounter:
    """Counts XLA compilations (``jax.monitoring``; persistent-cache hits are not compiles)."""

    def __init__(self):
        self.compiles = 0
        self.cache_hits = 0
        jax.monitoring.register_event_duration_secs_listener(self._duration)
        jax.monitoring.register_event_listener(self._event)

    def _duration(self, event, duration, **kw):
        if event == "/jax/core/compile/backend_compile_duration":
            self.compiles += 1

    def _event(self, event, **kw):
        if event == "/jax/compilation_cache/cache_hits":
            self.cache_hits += 1

    def count(self) -> int:
        """Compilations so far (persistent-cache loads excluded)."""
        return self.compiles - self.cache_hits


COUNTER = CompileCounter()
_CACHE_DIRS: list[str] = []


def fresh_persistent_cache() -> bool:
    """Point JAX's persistent compilation cache at a new empty folder and clear the in-memory
    caches (so the next call compiles everything). False when this JAX cannot switch folders."""
    try:
        from jax._src import compilation_cache
    except ImportError:
        jax.clear_caches()
        return False
    d = tempfile.mkdtemp(prefix="foldlite-bench-jax-")
    _CACHE_DIRS.append(d)
    jax.config.update("jax_compilation_cache_dir", d)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    compilation_cache.reset_cache()
    jax.clear_caches()
    return True


def timed(p: Protein, config: RefineConfig, plddt=None):
    """(refined, report, seconds, XLA compilations) of one ``refine`` call."""
    c0 = COUNTER.count()
    t = time.perf_counter()
    out, rep = refine(p, plddt, config=config)
    return out, rep, time.perf_counter() - t, COUNTER.count() - c0


def run_foldlite(p: Protein, config: RefineConfig, repeat: int) -> tuple[Protein, object, dict]:
    """Cold (nothing compiled), cached (persistent cache only: a second process) and compiled
    (repeat) calls; returns (refined, report, {cold_s, cached_s, compiled_s, *_compiles})."""
    have_cache = fresh_persistent_cache()
    out, rep, cold, n_cold = timed(p, config)
    t = {"cold_s": cold, "cold_compiles": n_cold}
    if have_cache:
        jax.clear_caches()
        _, _, t["cached_s"], t["cached_compiles"] = timed(p, config)
    warm, n_warm = np.inf, 0
    for _ in range(max(repeat, 1)):
        out, rep, dt, n = timed(p, config)
        warm, n_warm = min(warm, dt), max(n_warm, n)
    t["compiled_s"], t["compiled_compiles"] = warm, n_warm
    return out, rep, t


def fmt_times(t: dict) -> str:
    cached = (f", cached {t['cached_s']:.2f} s ({t['cached_compiles']} compiles)"
              if "cached_s" in t else "")
    return (f"cold {t['cold_s']:.2f} s ({t['cold_compiles']} compiles){cached}, compiled "
            f"{t['compiled_s']:.2f} s ({t['compiled_compiles']} compiles)")


def check(name: str, value: float, goal: float) -> str:
    ok = value <= goal
    return f"{name} {value:.3g} (<= {goal}) {'PASS' if ok else 'FAIL'}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--noise", type=float, default=0.3,
                    help="sigma (A) of the Gaussian noise on each coordinate of every heavy atom "
                         "(RMS displacement per atom: sigma * sqrt(3))")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=1, help="compiled runs (best taken)")
    ap.add_argument("--no-openmm", action="store_true")
    ap.add_argument("--openmm-max-residues", type=int, default=600)
    ap.add_argument("--openmm-threads", type=int, default=2)
    ap.add_argument("--sizes", default="100,250,500,750,1000")
    ap.add_argument("--only", default=None, help="comma-separated structure names")
    ap.add_argument("--extra", nargs="*", default=[],
                    help="more structures to refine as they are (e.g. model predictions; "
                         "pLDDT read from the B-factors when they look like one)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a RefineConfig field (repeatable)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    try:
        return _main(args)
    finally:
        for d in _CACHE_DIRS:
            shutil.rmtree(d, ignore_errors=True)


def _main(args) -> int:
    from foldlite.config import apply_overrides, from_dict

    use_openmm = have_openmm() and not args.no_openmm
    config = from_dict(RefineConfig, apply_overrides({}, args.set), where="--set")
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} CPUs; OpenMM: "
          f"{'yes' if use_openmm else 'no'}")
    print(f"noise: Gaussian, sigma {args.noise} A on each coordinate of every heavy atom (RMS "
          f"displacement {args.noise * 3 ** 0.5:.2f} A per atom), seed {args.seed}; restraints "
          f"{config.restraint_weight} kcal/mol/A^2 on heavy atoms (both foldlite and OpenMM)")
    if use_openmm:
        import openmm
        print(f"OpenMM {openmm.__version__}, CPU platform, {args.openmm_threads} threads")
    if args.set:
        print(f"RefineConfig overrides: {', '.join(args.set)}")
    results = {"noise_sigma_per_coordinate": args.noise, "seed": args.seed, "structures": [],
               "scaling": [], "config_overrides": list(args.set)}

    print("\n== Quality and speed on perturbed real structures ==")
    names = set(args.only.split(",")) if args.only else None
    for name, raw in structures():
        if names and name not in names:
            continue
        native = prepare(raw)
        start = perturb(native, args.noise, args.seed)
        out, rep, t = run_foldlite(start, config, args.repeat)
        mb, ma = rep.metrics_before, rep.metrics_after
        row = {"name": name, "residues": native.length, "atoms": rep.num_atoms,
               "steps": rep.steps, "rounds": rep.rounds, **t,
               "before": mb, "after": ma, "ca_rmsd_moved": rep.ca_rmsd,
               "ca_rmsd_native_start": ca_rmsd(start, native),
               "ca_rmsd_native_after": ca_rmsd(out, native)}
        print(f"\n{name}: {native.length} residues, {rep.num_atoms} atoms; {rep.steps} steps, "
              f"{rep.rounds} round(s); foldlite {fmt_times(t)}")
        for key in ("violations", "clashes_per_1000", "bond_rmsz", "angle_rmsz",
                    "omega_max_dev_deg", "wrong_chirality"):
            print(f"  {key:18s} {mb[key]:10.3g} -> {ma[key]:.3g}")
        print(f"  CA RMSD to native {row['ca_rmsd_native_start']:.3f} (the noise) -> "
              f"{row['ca_rmsd_native_after']:.3f} A; CA RMSD moved {rep.ca_rmsd:.3f} A")
        print("  goals: " + "; ".join([
            check("violations", ma["violations"], GOALS["violations"]),
            check("clashes/1000", ma["clashes_per_1000"], GOALS["clashes_per_1000"]),
            check("bond RMSZ", ma["bond_rmsz"], GOALS["bond_rmsz"]),
            check("angle RMSZ", ma["angle_rmsz"], GOALS["angle_rmsz"]),
            check("trans omega dev", ma["omega_max_dev_deg"], GOALS["omega_max_dev_deg"]),
            check("CA RMSD moved", rep.ca_rmsd, GOALS["ca_rmsd"])]))
        if use_openmm:
            try:
                e_start = amber_energy(start, args.openmm_threads)
                e_after = amber_energy(out, args.openmm_threads)
                row["amber_start"], row["amber_after"] = e_start, e_after
                print(f"  AMBER energy (H minimised, heavy atoms fixed) {e_start:.1f} -> "
                      f"{e_after:.1f} kcal/mol: {'PASS' if e_after < e_start else 'FAIL'}")
                if native.length <= args.openmm_max_residues:
                    af2 = af2_relax(start, args.openmm_threads)
                    ca_native = native.atom_positions[native.atom_mask[:, _CA] > 0, _CA]
                    omm_native = (float(np.sqrt(np.mean(np.sum(
                        (af2.pop("ca_positions") - ca_native) ** 2, -1))))
                        if len(ca_native) == len(af2["ca_positions"]) else float("nan"))
                    af2["ca_rmsd_native_after"] = omm_native
                    row["openmm_relax"] = af2
                    print(f"  OpenMM AF2-style relax {af2['time_s']:.2f} s (minimise "
                          f"{af2['minimize_s']:.2f} s; AMBER {af2['energy_start']:.0f} -> "
                          f"{af2['energy_end']:.0f} kcal/mol incl. restraints); CA RMSD moved "
                          f"{af2['ca_rmsd_moved']:.3f} A (foldlite {rep.ca_rmsd:.3f}), to native "
                          f"{omm_native:.3f} A (foldlite {row['ca_rmsd_native_after']:.3f})")
                    speed = (f"  speed-up vs OpenMM: compiled "
                             f"x{af2['time_s'] / t['compiled_s']:.1f}, cold "
                             f"x{af2['time_s'] / t['cold_s']:.1f}")
                    if "cached_s" in t:
                        speed += f", cached x{af2['time_s'] / t['cached_s']:.1f}"
                    print(speed)
            except Exception as e:  # an OpenMM template problem must not stop the benchmark
                print(f"  OpenMM failed: {type(e).__name__}: {e}")
        results["structures"].append(row)

    if args.extra:
        print("\n== Structures refined as given (no noise) ==")
    for path in args.extra:
        p = read_structure(path)
        b = p.b_factors[:, _CA]
        plddt = b if (b.min() >= 0 and b.max() <= 100 and b.max() > 1) else None
        fresh_persistent_cache()
        out, rep, cold, n_cold = timed(p, config, plddt)
        mb, ma = rep.metrics_before, rep.metrics_after
        x = p.atom_positions[p.atom_mask > 0]
        rg = float(np.sqrt(np.mean(np.sum((x - x.mean(0)) ** 2, -1))))
        print(f"\n{path}: {p.length} residues, {rep.num_atoms} atoms, radius of gyration "
              f"{rg:.1f} A, pLDDT {'from B-factors' if plddt is not None else 'none'}"
              f"{' (mean %.0f)' % plddt.mean() if plddt is not None else ''}; collapsed start: "
              f"{rep.collapsed_start}; {rep.steps} steps in {rep.rounds} rounds, {cold:.2f} s "
              f"(cold, {n_cold} compiles); pair lists truncated at the end: "
              f"{rep.pair_list_truncated}")
        for key in ("violations", "clashes_per_1000", "bond_rmsz", "angle_rmsz",
                    "omega_max_dev_deg", "wrong_chirality"):
            print(f"  {key:18s} {mb[key]:10.3g} -> {ma[key]:.3g}")
        print(f"  CA RMSD moved {rep.ca_rmsd:.3f} A")
        _, rep, warm, n_warm = timed(p, config, plddt)
        print(f"  again (compiled): {warm:.2f} s ({n_warm} compiles); rounds (repulsion scale: "
              f"steps, end, time, violations/clashes left): " + "; ".join(
                  f"{r['repulsion_scale']:g}: {r['steps']}, {r['end']}, {r['time_s']:.2f} s, "
                  f"{r['violations']}/{r['clashes']}" for r in rep.round_log))
        results.setdefault("extra", []).append(
            {"path": str(path), "before": mb, "after": ma, "ca_rmsd_moved": rep.ca_rmsd,
             "cold_s": cold, "cold_compiles": n_cold, "compiled_s": warm, "steps": rep.steps,
             "collapsed_start": rep.collapsed_start, "round_log": rep.round_log})

    print("\n== Scaling (synthetic chains from real 7ok9 fragments) ==")
    d = tmtools_data()
    if d is None:
        print("  tmtools data not found; skipped")
    else:
        from foldlite.physics.topology import bucket_size
        a = prepare(read_structure(d / "7ok9.pdb", chain="A"))
        b = prepare(read_structure(d / "7ok9.pdb", chain="B"))

        def synthetic(n: int, offset: int = 0) -> Protein:
            parts = [sub_from(a, offset, min(n, a.length - offset))]
            if n > a.length - offset:
                parts.append(sub(b, n - (a.length - offset)))
            return perturb(concat_chain(parts), args.noise, args.seed)

        for n in [int(s) for s in args.sizes.split(",") if s]:
            chain = synthetic(n)
            out, rep, t = run_foldlite(chain, config, args.repeat)
            ma = rep.metrics_after
            row = {"residues": n, "atoms": rep.num_atoms, **t,
                   "us_per_atom": 1e6 * t["compiled_s"] / rep.num_atoms, "steps": rep.steps,
                   "violations": ma["violations"], "clashes_per_1000": ma["clashes_per_1000"],
                   "bond_rmsz": ma["bond_rmsz"], "angle_rmsz": ma["angle_rmsz"],
                   "ca_rmsd_moved": rep.ca_rmsd}
            print(f"  {n:5d} residues {rep.num_atoms:6d} atoms: compiled {t['compiled_s']:6.2f} s "
                  f"({row['us_per_atom']:.0f} us/atom, {rep.steps} steps, "
                  f"{1e6 * t['compiled_s'] / rep.num_atoms / max(rep.steps, 1):.2f} us/atom/step)"
                  f", cold {t['cold_s']:6.2f} s"
                  + (f", cached {t['cached_s']:.2f} s" if "cached_s" in t else "")
                  + f"; violations {ma['violations']}, clashes/1000 {ma['clashes_per_1000']:.2f}"
                  f", bond RMSZ {ma['bond_rmsz']:.2f}, angle RMSZ {ma['angle_rmsz']:.2f}, CA "
                  f"moved {rep.ca_rmsd:.2f} A")
            # Another chain of the same atom bucket right after: no compilation expected.
            for shorter in (5, 10, 20, 40):
                other = synthetic(n - shorter, offset=3)
                n_atoms = int(np.sum(other.atom_mask))
                if bucket_size(n_atoms) == bucket_size(rep.num_atoms) and n_atoms != rep.num_atoms:
                    _, rep2, dt, n_comp = timed(other, config)
                    row["same_bucket"] = {"residues": other.length, "atoms": rep2.num_atoms,
                                          "seconds": dt, "compiles": n_comp,
                                          "violations": rep2.metrics_after["violations"]}
                    print(f"        same bucket ({bucket_size(n_atoms)} atoms): another chain of "
                          f"{other.length} residues, {rep2.num_atoms} atoms: {dt:.2f} s, "
                          f"{n_comp} compiles, violations {rep2.metrics_after['violations']}")
                    break
            results["scaling"].append(row)
            if n >= 1000:
                print("  goal: 1,000 residues " + check("cold s", t["cold_s"], 30.0))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=float))
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
