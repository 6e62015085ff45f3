"""py3Dmol views: a structure coloured by pLDDT (or chain, secondary structure, rainbow), a
prediction overlaid on a reference, and trajectories as animations.

Structures are handed to 3Dmol.js as PDB text (``pdb_text``); colours by pLDDT are per-residue
selections, so what is drawn does not depend on 3Dmol.js colour schemes.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from foldlite.protein import (PdbResidue, Protein, as_protein, multi_model_pdb, pdb_residues,
                              split_pdb_models, structure_pdb_text, to_pdb_string)
from foldlite.viz.plots import PLDDT_BANDS, plddt_band

if TYPE_CHECKING:  # pragma: no cover
    import py3Dmol

COLOR_MODES = ("plddt", "chain", "ss", "rainbow")
STYLES = ("cartoon", "stick", "sphere", "line", "cross", "cartoon+stick")
REFERENCE_COLOR = "#B0B0B0"


def pdb_text(obj: Any) -> str:
    """PDB text of a ``Protein``, a list of ``Protein`` chains, a PDB/mmCIF path or PDB text."""
    if isinstance(obj, Protein):
        return to_pdb_string(obj)
    if isinstance(obj, (list, tuple)) and obj and all(isinstance(p, Protein) for p in obj):
        return to_pdb_string(obj)
    if isinstance(obj, (str, os.PathLike)):
        s = str(obj)
        if "\n" in s and ("ATOM" in s or "HETATM" in s):
            return s
        return structure_pdb_text(s)
    raise TypeError(f"cannot show a {type(obj).__name__}: give a Protein, a path or PDB text")


def _residue_selections(residues: Sequence[PdbResidue], groups: np.ndarray
                        ) -> dict[int, list[dict]]:
    """Group residues into 3Dmol selections: {group: [{'chain': c, 'resi': [...]}, ...]}."""
    by: dict[int, dict[str, list[int]]] = {}
    for res, g in zip(residues, groups):
        by.setdefault(int(g), {}).setdefault(res.chain, []).append(res.resi)
    return {g: [{"chain": c, "resi": sorted(set(r))} for c, r in chains.items()]
            for g, chains in by.items()}


def _style_spec(style: str | dict, colour: dict) -> dict:
    """3Dmol style dict for ``style`` ('cartoon', 'stick', 'cartoon+stick', ...) with colouring."""
    if isinstance(style, dict):
        return {k: {**v, **colour} for k, v in style.items()}
    parts = style.split("+")
    for p in parts:
        if p not in ("cartoon", "stick", "sphere", "line", "cross"):
            raise ValueError(f"unknown style {style!r}; choose from {STYLES} or pass a dict")
    spec = {}
    for p in parts:
        extra = {"radius": 0.2} if p == "stick" and len(parts) > 1 else {}
        spec[p] = {**extra, **colour}
    return spec


def _new_view(width: int | str, height: int | str, js: str | None) -> "py3Dmol.view":
    import py3Dmol  # deferred: half a second to import, and only views need it
    kwargs = {"width": width, "height": height}
    if js:
        kwargs["js"] = js
    return py3Dmol.view(**kwargs)


def _apply_colouring(view: "py3Dmol.view", text: str, color: str, style: str | dict,
                     plddt: np.ndarray | None, model: int | None = None) -> None:
    sel_base: dict = {} if model is None else {"model": model}
    if color == "plddt":
        residues = pdb_residues(text)
        values = np.asarray([r.bfactor for r in residues]) if plddt is None else np.asarray(
            plddt, np.float64).reshape(-1)
        if len(values) != len(residues):
            raise ValueError(f"plddt has {len(values)} values but the structure has "
                             f"{len(residues)} residues")
        for band, sels in sorted(_residue_selections(residues, plddt_band(values)).items()):
            for sel in sels:
                view.setStyle({**sel_base, **sel},
                              _style_spec(style, {"color": PLDDT_BANDS[band][1]}))
    elif color == "chain":
        view.setStyle(sel_base, _style_spec(style, {"colorscheme": "chain"}))
    elif color == "ss":
        view.setStyle(sel_base, _style_spec(style, {"colorscheme": "ssJmol"}))
    elif color == "rainbow":
        view.setStyle(sel_base, _style_spec(style, {"color": "spectrum"}))
    elif color.startswith("#") or color.isalpha():
        view.setStyle(sel_base, _style_spec(style, {"color": color}))
    else:
        raise ValueError(f"unknown color {color!r}; choose from {COLOR_MODES} or a colour")


def _add_legend(view: "py3Dmol.view", y: int = 8) -> None:
    """The pLDDT bands as labels, the first at ``y`` pixels from the top."""
    for i, (_, colour, label) in enumerate(PLDDT_BANDS):
        view.addLabel(label, {
            "position": {"x": 8, "y": y + 24 * i, "z": 0}, "useScreen": True,
            "backgroundColor": colour, "backgroundOpacity": 1.0,
            "fontColor": "white" if i == 0 else "black", "fontSize": 12, "inFront": True})


def _add_title(view: "py3Dmol.view", title: str, y: int = 8) -> None:
    view.addLabel(title, {
        "position": {"x": 8, "y": y, "z": 0}, "useScreen": True, "backgroundColor": "white",
        "backgroundOpacity": 0.85, "fontColor": "black", "fontSize": 14, "inFront": True})


def show(protein_or_path: Any, color: str = "plddt", style: str | dict = "cartoon", *,
         plddt: np.ndarray | None = None, legend: bool = True, width: int | str = 640,
         height: int | str = 480, js: str | None = None) -> "py3Dmol.view":
    """A py3Dmol view of a structure.

    Args:
      protein_or_path: a ``Protein``, a list of chains, a PDB/mmCIF path (``.gz`` ok) or PDB text.
      color: 'plddt' (AlphaFold's bands; pLDDT from ``plddt`` or else from the B-factor column),
        'chain', 'ss' (secondary structure, computed by 3Dmol.js), 'rainbow' (N to C), or a
        colour name / '#RRGGBB'.
      style: 'cartoon', 'stick', 'sphere', 'line', 'cross', 'cartoon+stick', or a 3Dmol style dict.
      plddt: [L] per-residue pLDDT overriding the B-factors (L = residues in file order).
      legend: draw the pLDDT legend (colour by pLDDT only).
      js: URL of 3Dmol.js (default: py3Dmol's CDN).
    Returns: the ``py3Dmol.view`` (displayed when it is the last expression of a notebook cell).
    """
    text = pdb_text(protein_or_path)
    view = _new_view(width, height, js)
    view.addModel(text, "pdb")
    _apply_colouring(view, text, color, style, plddt)
    if legend and color == "plddt":
        _add_legend(view)
    view.zoomTo()
    return view


def overlay(prediction: Any, reference: Any, *, color: str = "plddt", style: str | dict = "cartoon",
            plddt: np.ndarray | None = None, width: int | str = 640, height: int | str = 480,
            js: str | None = None, names: tuple[str, str] = ("prediction", "reference")
            ) -> "py3Dmol.view":
    """Show ``prediction`` superposed on ``reference`` (grey), RMSD and TM-score in the title.

    The prediction is coloured by ``color`` ('plddt' from its B-factors or ``plddt``, or any
    ``show`` colour). ``compare`` gives the numbers alone.
    """
    # deferred: the comparison needs foldlite.metrics, which imports JAX (seconds); only the
    # overlay among the views needs it, and `foldlite view` does not
    from foldlite.viz.comparison import compare

    result = compare(prediction, reference)
    pred_text, ref_text = pdb_text(result.moved), pdb_text(as_protein(reference))
    view = _new_view(width, height, js)
    view.addModel(ref_text, "pdb")
    view.addModel(pred_text, "pdb")
    view.setStyle({"model": 0}, _style_spec(style, {"color": REFERENCE_COLOR}))
    _apply_colouring(view, pred_text, color, style, plddt, model=1)
    _add_title(view, f"{names[0]} (coloured) on {names[1]} (grey): "
                     f"CA RMSD {result.rmsd:.2f} \u00c5 over {result.num_aligned} residues, "
                     f"TM-score {result.tm_score:.3f}")
    if color == "plddt":
        _add_legend(view, y=40)
    view.zoomTo()
    return view


def _trajectory_texts(trajectory: Any, protein: Any = None) -> list[str]:
    if isinstance(trajectory, (str, os.PathLike)) and Path(trajectory).is_file():
        return split_pdb_models(structure_pdb_text(trajectory))
    if hasattr(trajectory, "trajectory"):  # a refinement report
        trajectory = trajectory.trajectory
    if trajectory is None:
        raise ValueError("no trajectory: refine with record_trajectory=True")
    items = list(trajectory)
    if not items:
        raise ValueError("the trajectory is empty")
    if all(isinstance(p, Protein) for p in items):
        return [pdb_text(p) for p in items]
    if protein is None:
        raise ValueError("a trajectory of coordinates [T, L, 37, 3] needs the template protein")
    template = as_protein(protein)
    texts = []
    for frame in items:
        frame = np.asarray(frame, np.float32)
        if frame.shape != np.asarray(template.atom_positions).shape:
            raise ValueError(f"trajectory frame has shape {frame.shape}, the protein has "
                             f"{np.asarray(template.atom_positions).shape}")
        texts.append(pdb_text(dataclasses.replace(template, atom_positions=frame)))
    return texts


def animate(trajectory: Any, protein: Any = None, *, color: str = "plddt",
            style: str | dict = "cartoon+stick", plddt: np.ndarray | None = None,
            interval_ms: int = 100, loop: str = "backAndForth", width: int | str = 640,
            height: int | str = 480, js: str | None = None) -> "py3Dmol.view":
    """Animate a trajectory (e.g. refinement): list of ``Protein``, coordinates [T, L, 37, 3]
    with the template ``protein``, a report with a ``trajectory`` attribute, or a multi-model PDB.
    """
    frames = _trajectory_texts(trajectory, protein)
    if color == "plddt" and plddt is None and protein is not None:
        plddt = np.asarray([r.bfactor for r in pdb_residues(pdb_text(protein))])
    view = _new_view(width, height, js)
    view.addModelsAsFrames(multi_model_pdb(frames), "pdb")
    _apply_colouring(view, frames[0], color, style, plddt)
    _add_title(view, f"{len(frames)} frames", y=8 if color != "plddt" else 8 + 24 * 4)
    if color == "plddt":
        _add_legend(view)
    view.zoomTo()
    view.animate({"loop": loop, "interval": int(interval_ms)})
    return view
