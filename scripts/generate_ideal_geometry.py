#!/usr/bin/env python
"""Generate the ideal-geometry tables of ``foldlite/constants.py`` from ``Bio.PDB.ic_data``.

``Bio.PDB.ic_data`` (Biopython, R. T. Miller 2019-22) holds bond lengths, bond angles and
dihedral angles averaged over the PISCES set cullpdb_pc20_res2.2_R1.0 (Aug 2019; G. Wang and
R. L. Dunbrack, Bioinformatics 19:1589, 2003): ~37,000 residues at <= 2.2 A resolution. Its
standard deviations of bond lengths and its means of fixed dihedrals are only written in comments
of that file, so this script reads the module's source text as well as its dictionaries.

The script rewrites the block between the markers ``# >>> BEGIN GENERATED IDEAL GEOMETRY`` and
``# <<< END GENERATED IDEAL GEOMETRY`` in ``foldlite/constants.py`` (atomically). Nothing else in
that file is touched. Run it from the repository root:

    python scripts/generate_ideal_geometry.py            # rewrite the block
    python scripts/generate_ideal_geometry.py --check    # exit 1 if the block is out of date

What it emits:

* ``ic_hedra[(resname, a1, a2, a3)] = (len12, len12_sd, angle_deg, angle_sd, len23, len23_sd,
  count)`` for every heavy-atom bond angle of the 20 amino acids that ``ic_data`` lists, oriented
  as written in the key. Atom names of the neighbouring residues carry a sign: ``-C`` is the
  carbonyl carbon of residue i-1, ``+N`` the amide nitrogen of residue i+1.
* ``ic_sidechain_build[resname]``: the order in which side-chain heavy atoms beyond CB are placed
  (natural extension reference frame, NeRF): ``(atom, ref_a, ref_b, ref_c, chi, dihedral_deg)``
  meaning that the dihedral ``ref_a-ref_b-ref_c-atom`` equals ``chi_k + dihedral_deg`` when
  ``chi = k`` in 1..4, or the constant ``dihedral_deg`` when ``chi = 0``. The bond ``ref_c-atom``
  and the angle ``ref_b-ref_c-atom`` are looked up in ``ic_hedra``.
"""

from __future__ import annotations

import argparse
import inspect
import re
import sys
from pathlib import Path

import Bio
import Bio.PDB.ic_data as ic

REPO = Path(__file__).resolve().parents[1]
CONSTANTS = REPO / "foldlite" / "constants.py"
BEGIN = "# >>> BEGIN GENERATED IDEAL GEOMETRY"
END = "# <<< END GENERATED IDEAL GEOMETRY"

ONE_TO_THREE = {
    "A": "ALA", "R": "ARG", "N": "ASN", "D": "ASP", "C": "CYS", "Q": "GLN", "E": "GLU",
    "G": "GLY", "H": "HIS", "I": "ILE", "L": "LEU", "K": "LYS", "M": "MET", "F": "PHE",
    "P": "PRO", "S": "SER", "T": "THR", "W": "TRP", "Y": "TYR", "V": "VAL",
}
BACKBONE = ("N", "CA", "C", "O", "CB")


def _parse_comment_stats() -> tuple[dict, dict, dict]:
    """Numbers that ``ic_data`` keeps in comments: length sds and counts, dihedral means."""
    src = inspect.getsource(ic)
    hedra = {}
    pat = re.compile(r'"(\w+)": \[\s*\(([-\d.]+), ([-\d.]+), ([-\d.]+)\),\s*([-\d.]+),\s*\],'
                     r'\s*#\s*([-\d.]+)\s+([-\d.]+)\s*\[(\d+)\]')
    for key, l1, ang, l3, ang_sd, l1_sd, l3_sd, count in pat.findall(src):
        hedra[key] = (float(l1), float(l1_sd), float(ang), float(ang_sd), float(l3),
                      float(l3_sd), int(count))
    primary = {}
    pat = re.compile(r'"(\w+)": \[(-?[\d.]+), ([-\d.]+)\],\s*#\s*(\d+)\s+([-\d.]+)')
    for key, _mode, sd, count, mean in pat.findall(src):
        primary[key] = (float(mean), float(sd), int(count))
    secondary = {}
    pat = re.compile(r'"(\w+)": \[\s*\(([^)]*)\),\s*([-\d.]+),?\s*\],\s*#\s*(\d+)\s+([-\d.]+)')
    for key, _ref, rot, count, sd in pat.findall(src):
        secondary[key] = (float(rot), float(sd), int(count))
    if len(hedra) != len(ic.hedra_defaults) or len(primary) != len(ic.dihedra_primary_defaults):
        raise SystemExit("could not parse the comments of Bio.PDB.ic_data; its format changed")
    return hedra, primary, secondary


def _atom_key(res1: str, atom: str) -> str:
    if atom.startswith(("+", "-")):
        return "X" + atom[1:]
    return res1 + atom


def _is_heavy(atom: str) -> bool:
    return not atom.lstrip("+-").startswith("H")


def _wrap(deg: float) -> float:
    deg = (deg + 180.0) % 360.0 - 180.0
    return 180.0 if deg == -180.0 else deg


def collect_hedra(hstats: dict) -> dict:
    """All heavy-atom hedra of the 20 residues, keyed by (resname, a1, a2, a3)."""
    out = {}
    for res1, res3 in ONE_TO_THREE.items():
        for key, stats in hstats.items():
            # A key concatenates three (residue letter + atom name) tokens. Decode it by trying
            # every split and keeping the one whose tokens are atoms of this residue (or X).
            atoms = _split_key(key, res1)
            if atoms is None or not all(_is_heavy(a) for a in atoms):
                continue
            out[(res3,) + atoms] = stats
    return out


def _split_key(key: str, res1: str) -> tuple[str, str, str] | None:
    """Split e.g. ``FCD1FCE1FCZ`` into ('CD1', 'CE1', 'CZ') for residue F; X atoms get a sign."""
    names = set()
    for atoms in ic.ic_data_sidechains.get(res1, ()):  # side-chain names of this residue
        names.update(a for a in atoms[:4])
    for atoms in ic.ic_data_backbone:
        names.update(atoms[:4])
    names.update(("N", "CA", "C", "O", "OXT", "CB"))

    def rec(s: str, depth: int) -> list[tuple[str, ...]]:
        if depth == 3:
            return [()] if not s else []
        found = []
        for prefix in (res1, "X"):
            if not s.startswith(prefix):
                continue
            rest = s[len(prefix):]
            for n in sorted(names, key=len, reverse=True):
                if rest.startswith(n):
                    for tail in rec(rest[len(n):], depth + 1):
                        found.append(((prefix, n),) + tail)
        return found

    splits = rec(key, 0)
    if not splits:
        return None
    (p1, a1), (p2, a2), (p3, a3) = splits[0]
    # The X residue is the previous one before the first own atom, the next one after it.
    def signed(p: str, a: str, pos: int) -> str:
        if p != "X":
            return a
        own_positions = [i for i, (pp, _) in enumerate(splits[0]) if pp != "X"]
        return ("-" if pos < min(own_positions) else "+") + a
    if all(p == "X" for p, _ in splits[0]):
        return None
    return signed(p1, a1, 0), signed(p2, a2, 1), signed(p3, a3, 2)


def collect_sidechain_build(primary: dict, secondary: dict) -> dict:
    out = {}
    for res1, res3 in ONE_TO_THREE.items():
        entries = ic.ic_data_sidechains.get(res1, ())
        placed = set(BACKBONE)
        chi_of = {}  # (a, b, c, d) -> chi index for tagged chis 1..4
        fixed = {}   # (a, b, c, d) -> constant dihedral
        build = []
        for e in entries:
            if len(e) < 4 or not all(_is_heavy(a) for a in e[:4]):
                continue
            a, b, c, d = e[:4]
            tag = e[4] if len(e) == 5 else None
            key = "".join(res1 + x for x in (a, b, c, d))
            if tag in ("chi1", "chi2", "chi3", "chi4"):
                k = int(tag[3])
                chi_of[(a, b, c, d)] = k
                spec = (k, 0.0)
            elif key in ic.dihedra_primary_defaults:
                # A primary dihedral that is not a rotatable chi (aromatic rings, Arg chi5):
                # its mean over the reference set.
                mean = primary[key][0]
                fixed[(a, b, c, d)] = mean
                spec = (0, _wrap(mean))
            elif key in ic.dihedra_secondary_defaults:
                ref, rot = ic.dihedra_secondary_defaults[key]
                ref = tuple(ref)
                if ref in chi_of:
                    spec = (chi_of[ref], _wrap(rot))
                elif ref in fixed:
                    spec = (0, _wrap(fixed[ref] + rot))
                else:
                    raise SystemExit(f"{res3}: secondary dihedral {key} refers to unknown {ref}")
            else:
                raise SystemExit(f"{res3}: no default for dihedral {key}")
            if d in placed:
                continue
            if not {a, b, c} <= placed:
                raise SystemExit(f"{res3}: {d} built before its reference atoms")
            placed.add(d)
            build.append((d, a, b, c) + spec)
        out[res3] = tuple(build)
    return out


def render(hedra: dict, build: dict) -> str:
    lines = [
        BEGIN,
        f"# Written by scripts/generate_ideal_geometry.py from Bio.PDB.ic_data (Biopython "
        f"{Bio.__version__}).",
        "# Do not edit by hand: rerun the script.",
        "# Source of every number in this block: Bio.PDB.ic_data hedra_defaults /",
        "# dihedra_*_defaults, means and standard deviations over the PISCES set",
        "# cullpdb_pc20_res2.2_R1.0_d190812 (Wang & Dunbrack, Bioinformatics 19:1589, 2003).",
        "#",
        "# ic_hedra[(resname, a1, a2, a3)] =",
        "#     (len12, len12_sd, angle_deg, angle_sd, len23, len23_sd, count)",
        "# '-C' = C of residue i-1, '+N' = N of residue i+1.",
        "ic_hedra: dict[tuple[str, str, str, str], tuple[float, float, float, float, float, float,"
        " int]] = {",
    ]
    for key in sorted(hedra):
        v = hedra[key]
        lines.append(f"    {key!r}: ({v[0]:.5f}, {v[1]:.5f}, {v[2]:.5f}, {v[3]:.5f}, {v[4]:.5f}, "
                     f"{v[5]:.5f}, {v[6]}),")
    lines += [
        "}",
        "",
        "# ic_sidechain_build[resname]: placement order of side-chain heavy atoms beyond CB,",
        "# (atom, ref_a, ref_b, ref_c, chi, dihedral_deg): dihedral ref_a-ref_b-ref_c-atom is",
        "# chi_k + dihedral_deg for chi = k in 1..4, or the constant dihedral_deg for chi = 0.",
        "ic_sidechain_build: dict[str, tuple[tuple[str, str, str, str, int, float], ...]] = {",
    ]
    for res3 in ONE_TO_THREE.values():
        if not build[res3]:
            lines.append(f"    {res3!r}: (),")
            continue
        lines.append(f"    {res3!r}: (")
        for atom, a, b, c, k, deg in build[res3]:
            lines.append(f"        ({atom!r}, {a!r}, {b!r}, {c!r}, {k}, {deg:.5f}),")
        lines.append("    ),")
    lines += ["}", END]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="only report whether foldlite/constants.py is up to date")
    parser.add_argument("--constants", type=Path, default=CONSTANTS)
    args = parser.parse_args(argv)

    hstats, primary, secondary = _parse_comment_stats()
    block = render(collect_hedra(hstats), collect_sidechain_build(primary, secondary))
    text = args.constants.read_text()
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        new = head + block + tail
    else:
        raise SystemExit(f"{args.constants}: markers {BEGIN!r} / {END!r} not found")
    if args.check:
        ok = new == text
        print("up to date" if ok else "out of date")
        return 0 if ok else 1
    if new != text:
        tmp = args.constants.with_suffix(".py.tmp")
        tmp.write_text(new)
        tmp.replace(args.constants)
        print(f"wrote {args.constants}")
    else:
        print("no change")
    return 0


if __name__ == "__main__":
    sys.exit(main())
