"""``foldlite view TARGET -o view.html``: a standalone HTML page of a prediction or a structure.

TARGET is a prediction record folder, a ``foldlite predict`` output folder (``--record`` picks
one record) or a PDB/mmCIF file (pLDDT read from the B-factor column). ``-o`` names the page, or
an existing folder to write ``view.html`` into; it is checked before any work is done.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import numpy as np

from foldlite import outputs
from foldlite.errors import InputError
from foldlite.fileio import write_text
from foldlite.viz.page import ENV_3DMOL_JS, html_page
from foldlite.viz.view3d import COLOR_MODES, STYLES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="OUTDIR_OR_STRUCTURE",
                        help="a prediction record folder, a `foldlite predict` output folder, or "
                             "a PDB/mmCIF file (pLDDT read from the B-factor column)")
    parser.add_argument("-o", "--output", required=True, metavar="HTML",
                        help=f"the HTML page to write, or a folder to write {outputs.VIEW_HTML} "
                             "into")
    parser.add_argument("--record", metavar="ID",
                        help="which record of a predict output folder (its folder name or id)")
    parser.add_argument("--3dmol-js", dest="js_path", metavar="PATH",
                        help="local 3Dmol-min.js to inline so the page works offline (default: "
                             f"${ENV_3DMOL_JS} if set, else the CDN)")
    parser.add_argument("--color", choices=COLOR_MODES, default="plddt",
                        help="colouring of the 3D view (default: plddt)")
    parser.add_argument("--style", default="cartoon", choices=STYLES,
                        help="drawing style (default: cartoon)")
    parser.add_argument("--title", help="page title (default: the record id or file name)")


def output_path(output: str | os.PathLike) -> Path:
    """The page to write for ``-o output``: the path itself, or ``view.html`` in it when it is an
    existing folder. InputError when the page cannot be written there."""
    path = Path(output)
    if path.is_dir():
        path = path / outputs.VIEW_HTML
        if path.is_dir():
            raise InputError(f"{path}: is a folder; give the HTML file to write with -o")
    folder = next(p for p in path.parents if p.exists())
    if not folder.is_dir():
        raise InputError(f"{path}: cannot be written: {folder} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"{path}: cannot be written: no write permission in {folder}")
    return path


def _find_record_dir(target: Path, record: str | None) -> Path:
    if outputs.find_model_file(target) is not None:
        if record:
            raise InputError(f"{target}: is a single record folder; --record is not needed")
        return target
    candidates = sorted(p for p in target.iterdir()
                        if p.is_dir() and not p.name.startswith(".")
                        and outputs.find_model_file(p) is not None)
    if record is not None:
        for p in candidates:
            if p.name == record:
                return p
        for p in candidates:
            scores = outputs.read_scores(p)
            if scores and scores.get("id") == record:
                return p
        raise InputError(f"{target}: no record {record!r}; records: "
                         f"{', '.join(p.name for p in candidates) or 'none'}")
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise InputError(f"{target}: no prediction found (expected model.pdb in it or in its "
                         "record folders)")
    raise InputError(f"{target}: holds {len(candidates)} records; pick one with --record "
                     f"({', '.join(p.name for p in candidates[:10])}"
                     f"{', ...' if len(candidates) > 10 else ''})")


def run(args: argparse.Namespace) -> int:
    target = Path(args.target)
    if not target.exists():
        raise InputError(f"{target}: not found")
    out = output_path(args.output)
    plddt = pae = None
    info: dict[str, Any] = {}
    if target.is_dir():
        rec_dir = _find_record_dir(target, args.record)
        structure = outputs.find_model_file(rec_dir)
        scores = outputs.read_scores(rec_dir) or {}
        title = args.title or str(scores.get("id") or rec_dir.name)
        if scores.get("plddt") is not None:
            plddt = np.asarray(scores["plddt"], np.float64)
        if scores.get("pae") is not None:
            pae = np.asarray(scores["pae"], np.float64)
        info = outputs.summary_info(scores)
    else:
        if args.record:
            raise InputError(f"{target}: --record applies to prediction folders only")
        structure = target
        title = args.title or target.name
    page = html_page(structure, plddt=plddt, pae=pae, title=title, info=info, color=args.color,
                     style=args.style, js_path=args.js_path)
    write_text(out, page)
    print(f"wrote {out}")
    return 0
