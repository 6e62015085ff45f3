#!/usr/bin/env python
"""Benchmark foldlite's refinement against its goals and against an OpenMM (AMBER) relax.

What it does, for real all-atom structures (tests/data and the PDB files shipped in the
``tmtools`` wheel) perturbed by Gaussian noise (default sigma 0.3 A per coordinate on every heavy
atom, fixed seed):

1. **Quality**: violations by AlphaFold2's definitions, clashes (overlap > 0.4 A) per 1,000 atoms,
   bond and angle RMSZ, trans-peptide planarity, CA RMSD moved (and to the native), before and
   after ``foldlite.physics.refine``; each goal is printed PASS or FAIL.
2. **Independent check**: the AMBER energy (OpenMM, amber14-all in vacuum, hydrogens added with
   ``openmm.app.Modeller`` and minimised with the heavy atoms fixed) of the perturbed start and
   of foldlite's result. Chains are split at gaps for OpenMM (which would bond across them),
   each piece ending in an OXT.
3. **Speed, side by side**: foldlite cold (first call in the process, compilation included; JAX
   caches cleared before each structure, no persistent cache) and compiled (second call), and
   OpenMM minimisation with AlphaFold2's relax settings (amber force field, hydrogens,
   harmonic restraints of 10 kcal/mol/A^2 on heavy atoms, tolerance 2.39 kcal/mol [as 10
   kJ/mol/nm RMS force, OpenMM 8 semantics], no cutoff, HBonds constraints, CPU platform),
   timed from system creation to the end of ``minimizeEnergy`` (one round; AlphaFold2 repeats
   rounds while violations remain).
4. **Scaling**: synthetic chains of 100 to 1,000 residues built from real fragments (7ok9 chains
   A and B, placed side by side with a numbering gap), time per atom (compiled) and cold.

The machine is shared: rerun for stable timings; ``--repeat`` takes the best of N compiled runs.
OpenMM is optional (``pip install openmm``, extra ``bench``); without it those columns are
skipped.

Usage:
  python scripts/benchmark_refine.py [--noise 0.3] [--seed 0] [--no-openmm]
      [--sizes 100,250,500,750,1000] [--openmm-max-residues 600] [--json out.json]
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import os
import sys
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
    return Protein(aatype=p.aatype[:n], atom_positions=p.atom_positions[:n],
                   atom_mask=p.atom_mask[:n], residue_index=p.residue_index[:n],
                   chain_id=p.chain_id, b_factors=p.b_factors[:n],
                   insertion_code=p.insertion_code[:n])


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
    e1 = sim.context.getState(getEnergy=True).getPotentialEnergy()
    return {"time_s": t2 - t0, "minimize_s": t2 - t1,
            "energy_start": float(e0.value_in_unit(unit.kilocalories_per_mole)),
            "energy_end": float(e1.value_in_unit(unit.kilocalories_per_mole))}


# ------------------------------------------------------------------------------------ runs
def run_foldlite(p: Protein, config: RefineConfig, repeat: int) -> tuple[Protein, object, float,
                                                                          float]:
    jax.clear_caches()
    t = time.perf_counter()
    out, rep = refine(p, config=config)
    cold = time.perf_counter() - t
    warm = np.inf
    for _ in range(max(repeat, 1)):
        t = time.perf_counter()
        out, rep = refine(p, config=config)
        warm = min(warm, time.perf_counter() - t)
    return out, rep, cold, warm


def check(name: str, value: float, goal: float) -> str:
    ok = value <= goal
    return f"{name} {value:.3g} (<= {goal}) {'PASS' if ok else 'FAIL'}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--noise", type=float, default=0.3, help="sigma per coordinate (A)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=1, help="compiled runs (best taken)")
    ap.add_argument("--no-openmm", action="store_true")
    ap.add_argument("--openmm-max-residues", type=int, default=600)
    ap.add_argument("--sizes", default="100,250,500,750,1000")
    ap.add_argument("--only", default=None, help="comma-separated structure names")
    ap.add_argument("--extra", nargs="*", default=[],
                    help="more structures to refine as they are (e.g. model predictions; "
                         "pLDDT read from the B-factors when they look like one)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    use_openmm = have_openmm() and not args.no_openmm
    config = RefineConfig()
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} CPUs; "
          f"noise sigma {args.noise} A per coordinate, seed {args.seed}; OpenMM: "
          f"{'yes' if use_openmm else 'no'}")
    if use_openmm:
        import openmm
        print(f"OpenMM {openmm.__version__}")
    results = {"noise": args.noise, "seed": args.seed, "structures": [], "scaling": []}

    print("\n== Quality and speed on perturbed real structures ==")
    names = set(args.only.split(",")) if args.only else None
    for name, raw in structures():
        if names and name not in names:
            continue
        native = prepare(raw)
        start = perturb(native, args.noise, args.seed)
        out, rep, cold, warm = run_foldlite(start, config, args.repeat)
        mb, ma = rep.metrics_before, rep.metrics_after
        row = {"name": name, "residues": native.length, "atoms": rep.num_atoms,
               "steps": rep.steps, "rounds": rep.rounds, "cold_s": cold, "compiled_s": warm,
               "before": mb, "after": ma, "ca_rmsd_moved": rep.ca_rmsd,
               "ca_rmsd_native_start": ca_rmsd(start, native),
               "ca_rmsd_native_after": ca_rmsd(out, native)}
        print(f"\n{name}: {native.length} residues, {rep.num_atoms} atoms; {rep.steps} steps, "
              f"{rep.rounds} round(s); foldlite cold {cold:.2f} s, compiled {warm:.2f} s")
        for key in ("violations", "clashes_per_1000", "bond_rmsz", "angle_rmsz",
                    "omega_max_dev_deg", "wrong_chirality"):
            print(f"  {key:18s} {mb[key]:10.3g} -> {ma[key]:.3g}")
        print(f"  CA RMSD to native {row['ca_rmsd_native_start']:.3f} -> "
              f"{row['ca_rmsd_native_after']:.3f} A")
        print("  goals: " + "; ".join([
            check("violations", ma["violations"], GOALS["violations"]),
            check("clashes/1000", ma["clashes_per_1000"], GOALS["clashes_per_1000"]),
            check("bond RMSZ", ma["bond_rmsz"], GOALS["bond_rmsz"]),
            check("angle RMSZ", ma["angle_rmsz"], GOALS["angle_rmsz"]),
            check("trans omega dev", ma["omega_max_dev_deg"], GOALS["omega_max_dev_deg"]),
            check("CA RMSD moved", rep.ca_rmsd, GOALS["ca_rmsd"])]))
        if use_openmm:
            try:
                e_start = amber_energy(start)
                e_after = amber_energy(out)
                row["amber_start"], row["amber_after"] = e_start, e_after
                print(f"  AMBER energy (H minimised, heavy atoms fixed) {e_start:.1f} -> "
                      f"{e_after:.1f} kcal/mol: {'PASS' if e_after < e_start else 'FAIL'}")
                if native.length <= args.openmm_max_residues:
                    af2 = af2_relax(start)
                    row["openmm_relax"] = af2
                    print(f"  OpenMM AF2-style relax {af2['time_s']:.2f} s (minimise "
                          f"{af2['minimize_s']:.2f} s; AMBER {af2['energy_start']:.0f} -> "
                          f"{af2['energy_end']:.0f} kcal/mol incl. restraints); speed-up "
                          f"compiled x{af2['time_s'] / warm:.1f}, cold x{af2['time_s'] / cold:.1f}")
            except Exception as e:  # an OpenMM template problem must not stop the benchmark
                print(f"  OpenMM failed: {type(e).__name__}: {e}")
        results["structures"].append(row)

    if args.extra:
        print("\n== Structures refined as given (no noise) ==")
    for path in args.extra:
        p = read_structure(path)
        b = p.b_factors[:, _CA]
        plddt = b if (b.min() >= 0 and b.max() <= 100 and b.max() > 1) else None
        jax.clear_caches()
        t = time.perf_counter()
        out, rep = refine(p, plddt, config=config)
        cold = time.perf_counter() - t
        mb, ma = rep.metrics_before, rep.metrics_after
        print(f"\n{path}: {p.length} residues, {rep.num_atoms} atoms, pLDDT "
              f"{'from B-factors' if plddt is not None else 'none'}; {rep.steps} steps, "
              f"{cold:.2f} s (cold)")
        for key in ("violations", "clashes_per_1000", "bond_rmsz", "angle_rmsz",
                    "omega_max_dev_deg", "wrong_chirality"):
            print(f"  {key:18s} {mb[key]:10.3g} -> {ma[key]:.3g}")
        print(f"  CA RMSD moved {rep.ca_rmsd:.3f} A")
        results.setdefault("extra", []).append(
            {"path": str(path), "before": mb, "after": ma, "ca_rmsd_moved": rep.ca_rmsd,
             "cold_s": cold, "steps": rep.steps})

    print("\n== Scaling (synthetic chains from real 7ok9 fragments) ==")
    d = tmtools_data()
    if d is None:
        print("  tmtools data not found; skipped")
    else:
        a = prepare(read_structure(d / "7ok9.pdb", chain="A"))
        b = prepare(read_structure(d / "7ok9.pdb", chain="B"))
        for n in [int(s) for s in args.sizes.split(",") if s]:
            parts = [sub(a, min(n, a.length))]
            if n > a.length:
                parts.append(sub(b, n - a.length))
            chain = perturb(concat_chain(parts), args.noise, args.seed)
            out, rep, cold, warm = run_foldlite(chain, config, args.repeat)
            ma = rep.metrics_after
            row = {"residues": n, "atoms": rep.num_atoms, "cold_s": cold, "compiled_s": warm,
                   "us_per_atom": 1e6 * warm / rep.num_atoms, "steps": rep.steps,
                   "violations": ma["violations"], "clashes_per_1000": ma["clashes_per_1000"],
                   "bond_rmsz": ma["bond_rmsz"], "angle_rmsz": ma["angle_rmsz"]}
            results["scaling"].append(row)
            print(f"  {n:5d} residues {rep.num_atoms:6d} atoms: compiled {warm:6.2f} s "
                  f"({row['us_per_atom']:.0f} us/atom, {rep.steps} steps, "
                  f"{1e6 * warm / rep.num_atoms / max(rep.steps, 1):.2f} us/atom/step), cold "
                  f"{cold:6.2f} s; violations {ma['violations']}, clashes/1000 "
                  f"{ma['clashes_per_1000']:.2f}, bond RMSZ {ma['bond_rmsz']:.2f}, "
                  f"angle RMSZ {ma['angle_rmsz']:.2f}")
            if n >= 1000:
                print("  goal: 1,000 residues " + check("cold s", cold, 30.0))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=float))
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
