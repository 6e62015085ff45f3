"""``foldlite refine``: refine a structure by minimising foldlite's energy
(``foldlite.physics.refine``).

    foldlite refine IN.pdb -o OUT.pdb [--restraint-weight W] [--max-steps N]
                    [--keep-sidechains | --no-keep-sidechains] [--plddt-from-bfactors]
                    [--report REPORT.json]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from foldlite import constants as rc
from foldlite import fileio
from foldlite.config import apply_overrides, from_dict, load_yaml
from foldlite.errors import InputError
from foldlite.physics.refine import RefineConfig, refine
from foldlite.protein import read_structure, read_structure_chains, write_structure

_CA = rc.atom_order["CA"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="structure to refine (PDB or mmCIF, .gz ok)")
    parser.add_argument("-o", "--output", required=True,
                        help="refined structure (.pdb, or .cif for mmCIF); an existing folder "
                             "gets INPUT_refined.pdb inside it")
    parser.add_argument("--chain", default=None,
                        help="refine only this chain (default: every protein chain, together)")
    parser.add_argument("--restraint-weight", type=float, default=None,
                        help="harmonic restraint of every heavy atom to its start, "
                             "kcal/mol/A^2 (default 10, as AlphaFold2's relax; 0 = none)")
    parser.add_argument("--max-steps", type=int, default=None,
                        help="optimiser steps per round (default 1000)")
    parser.add_argument("--keep-sidechains", action=argparse.BooleanOptionalAction, default=True,
                        help="keep complete side chains of the input (default); "
                             "--no-keep-sidechains rebuilds them all")
    parser.add_argument("--plddt-from-bfactors", action="store_true",
                        help="read per-residue pLDDT from the B-factor column (AlphaFold-style "
                             "models) and weight the restraints by it")
    parser.add_argument("--config", default=None, help="RefineConfig YAML file")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a RefineConfig field (repeatable)")
    parser.add_argument("--report", default=None, help="write the refinement report (JSON)")


def _load_config(args: argparse.Namespace) -> RefineConfig:
    data = load_yaml(args.config) if args.config else {}
    data = apply_overrides(data, args.set)
    if args.restraint_weight is not None:
        data["restraint_weight"] = args.restraint_weight
    if args.max_steps is not None:
        data["max_steps"] = args.max_steps
    data["keep_sidechains"] = bool(args.keep_sidechains)
    return from_dict(RefineConfig, data, where=args.config or "refine options")


def run(args: argparse.Namespace) -> int:
    config = _load_config(args)
    path = Path(args.input)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    # outputs are checked before the work: an existing folder gets <input>_refined.pdb (.cif
    # for an mmCIF input) inside it; a file that cannot be written is an error now
    output = Path(args.output)
    if output.is_dir():
        stem = path.name[:-3] if path.name.lower().endswith(".gz") else path.name
        stem, dot, ext = stem.rpartition(".")
        suffix = ".cif" if dot and ext.lower() in ("cif", "mmcif") else ".pdb"
        output = output / f"{stem or ext}_refined{suffix}"
    fileio.check_output_file(output)
    if args.report:
        fileio.check_output_file(args.report)
    if args.chain:
        chains: Sequence = [read_structure(path, chain=args.chain)]
    else:
        chains = read_structure_chains(path)
    if not chains:
        raise InputError(f"{path}: no protein chain found")
    plddt = None
    if args.plddt_from_bfactors:
        plddt = [np.asarray(c.b_factors)[:, _CA] for c in chains]
    refined, report = refine(list(chains), plddt, config=config, source=str(path))
    write_structure(refined, output)
    if args.report:
        fileio.write_json(args.report, report.to_dict())
    mb, ma = report.metrics_before, report.metrics_after
    print(f"refined {report.num_residues} residues ({report.num_atoms} atoms) in "
          f"{report.time_s:.1f} s, {report.steps} steps: violations {mb['violations']} -> "
          f"{ma['violations']}, clashes {mb['clashes']} -> {ma['clashes']}, bond RMSZ "
          f"{mb['bond_rmsz']:.2f} -> {ma['bond_rmsz']:.2f}, angle RMSZ {mb['angle_rmsz']:.2f} -> "
          f"{ma['angle_rmsz']:.2f}, CA RMSD moved {report.ca_rmsd:.2f} A -> {output}")
    if report.nonstandard_residues:
        shown = ", ".join(report.nonstandard_residues[:10])
        more = (f" and {len(report.nonstandard_residues) - 10} more"
                if len(report.nonstandard_residues) > 10 else "")
        print(f"note: {len(report.nonstandard_residues)} non-standard residue(s) refined as "
              f"backbone only (N, CA, C, O): {shown}{more}")
    if ma["violations"]:
        print(f"warning: {ma['violations']} violation(s) remain ({ma['bond_violations']} bond, "
              f"{ma['angle_violations']} angle, {ma['clash_violations']} clash; AlphaFold2's "
              f"definitions): the input may be too distorted (e.g. a collapsed model)",
              file=sys.stderr)
    if report.pair_list_truncated:
        print("warning: the input is so overcrowded that some atom pairs were left out of the "
              "neighbour lists; the figures after refinement are lower bounds", file=sys.stderr)
    return 0
