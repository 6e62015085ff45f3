"""Looking at structures: py3Dmol views, confidence plots and a standalone HTML page.

- ``show(protein_or_path, color="plddt")``: a py3Dmol view coloured by pLDDT with AlphaFold's four
  confidence bands (very high > 90, confident 70-90, low 50-70, very low < 50) and a legend, or by
  chain, secondary structure or a rainbow along the sequence.
- ``overlay(prediction, reference)``: superposes the prediction on the reference on CA atoms
  (Kabsch, residues paired by a sequence alignment when the sequences differ) and shows both, with
  the CA RMSD and the TM-score in the title; ``superpose`` gives the numbers alone.
- ``plot_plddt``, ``plot_pae``: matplotlib figures (created without pyplot, so no global state and
  no display backend is needed).
- ``animate(trajectory)``: a refinement trajectory as a py3Dmol multi-model animation.
- ``write_html(path, ...)``: one self-contained page with the 3D view, the legend and both plots.
  With a local 3Dmol.js (``js_path``) the library is inlined and the page works offline; otherwise
  it is loaded from the CDN that py3Dmol uses.
- The ``foldlite view TARGET -o view.html`` command (``add_arguments``/``run``): TARGET is a
  prediction record folder, a ``foldlite predict`` output folder (``--record`` picks one record)
  or a PDB/mmCIF file (pLDDT read from the B-factor column).

Structures are handed to 3Dmol.js as PDB text; colours by pLDDT are per-residue selections, so
what is drawn does not depend on 3Dmol.js colour schemes.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import gzip
import html as html_lib
import io
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np

from foldlite.errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    import py3Dmol
    from matplotlib.figure import Figure

    from foldlite.protein import Protein

#: AlphaFold's confidence bands: (lower bound, exclusive; colour; label). A residue belongs to the
#: first band whose bound its pLDDT exceeds.
PLDDT_BANDS: tuple[tuple[float, str, str], ...] = (
    (90.0, "#0053D6", "Very high (pLDDT > 90)"),
    (70.0, "#65CBF3", "Confident (90 > pLDDT > 70)"),
    (50.0, "#FFDB13", "Low (70 > pLDDT > 50)"),
    (-np.inf, "#FF7D45", "Very low (pLDDT < 50)"),
)
COLOR_MODES = ("plddt", "chain", "ss", "rainbow")
STYLES = ("cartoon", "stick", "sphere", "line", "cross", "cartoon+stick")
REFERENCE_COLOR = "#B0B0B0"
#: Upper end of the PAE colour scale: the centre of the last PAE bin (foldlite.model.heads).
MAX_PAE = 31.75
#: The 3Dmol.js that py3Dmol loads (same version as the npm package ``3dmol`` used in tests).
CDN_3DMOL = "https://cdn.jsdelivr.net/npm/3dmol@2.5.5/build/3Dmol-min.js"
#: Environment variable naming a local 3Dmol-min.js used by default for HTML pages.
ENV_3DMOL_JS = "FOLDLITE_3DMOL_JS"


# ---------------------------------------------------------------------------------------------
# pLDDT bands
# ---------------------------------------------------------------------------------------------

def plddt_band(plddt: np.ndarray | Sequence[float]) -> np.ndarray:
    """[L] pLDDT (0-100) -> [L] band index into ``PLDDT_BANDS`` (0 very high ... 3 very low)."""
    p = np.asarray(plddt, np.float64)
    band = np.full(p.shape, len(PLDDT_BANDS) - 1, np.int32)
    for i, (lo, _, _) in reversed(list(enumerate(PLDDT_BANDS))):
        band[p > lo] = i
    return band


def plddt_colors(plddt: np.ndarray | Sequence[float]) -> list[str]:
    """[L] pLDDT -> the band colour of each residue as '#RRGGBB'."""
    return [PLDDT_BANDS[b][1] for b in plddt_band(plddt)]


# ---------------------------------------------------------------------------------------------
# Structures as PDB text
# ---------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class _Residue:
    chain: str
    resi: int
    icode: str
    bfactor: float


def _is_protein(obj: Any) -> bool:
    return hasattr(obj, "atom_positions") and hasattr(obj, "aatype")


def _read_text(path: Path) -> str:
    if path.suffix == ".gz":
        with gzip.open(path, "rt", encoding="utf-8", errors="replace") as fh:
            return fh.read()
    return path.read_text(encoding="utf-8", errors="replace")


def _structure_suffix(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    return Path(name).suffix


def _join_pdb(texts: Iterable[str]) -> str:
    """Concatenate single-chain PDB texts into one model, renumbering atom serials."""
    out: list[str] = []
    serial = 0
    for text in texts:
        for line in text.splitlines():
            rec = line[:6]
            if rec in ("ATOM  ", "HETATM"):
                serial += 1
                out.append(f"{rec}{serial % 100000:5d}{line[11:]}")
            elif rec.startswith("TER"):
                out.append("TER")
    out.append("END")
    return "\n".join(out) + "\n"


def pdb_text(obj: Any) -> str:
    """PDB text of a ``Protein``, a list of ``Protein`` chains, a PDB/mmCIF path or PDB text."""
    if _is_protein(obj):
        from foldlite import protein as protein_mod
        return protein_mod.to_pdb_string(obj)
    if isinstance(obj, (list, tuple)) and obj and all(_is_protein(p) for p in obj):
        from foldlite import protein as protein_mod
        return _join_pdb(protein_mod.to_pdb_string(p) for p in obj)
    if isinstance(obj, (str, os.PathLike)):
        s = str(obj)
        if "\n" in s and ("ATOM" in s or "HETATM" in s):
            return s
        path = Path(s)
        if not path.is_file():
            raise InputError(f"{path}: structure file not found")
        suffix = _structure_suffix(path)
        if suffix in (".pdb", ".ent"):
            return _read_text(path)
        if suffix in (".cif", ".mmcif"):
            from foldlite import protein as protein_mod
            chains = protein_mod.read_structure_chains(path)
            if not chains:
                raise InputError(f"{path}: no protein chain found")
            return _join_pdb(protein_mod.to_pdb_string(p) for p in chains)
        raise InputError(f"{path}: not a structure file (expected .pdb, .ent, .cif or .mmcif, "
                         "optionally .gz)")
    raise TypeError(f"cannot show a {type(obj).__name__}: give a Protein, a path or PDB text")


def _pdb_residues(text: str) -> list[_Residue]:
    """Residues of the first model of a PDB text, in file order; B-factor of CA (else mean)."""
    residues: dict[tuple[str, int, str], list] = {}
    for line in text.splitlines():
        if line.startswith("ENDMDL"):
            break
        if not line.startswith(("ATOM  ", "HETATM")) or len(line) < 27:
            continue
        try:
            key = (line[21], int(line[22:26]), line[26].strip())
            b = float(line[60:66]) if len(line) >= 66 and line[60:66].strip() else 0.0
        except ValueError:
            continue
        entry = residues.setdefault(key, [None, []])
        entry[1].append(b)
        if line[12:16].strip() == "CA":
            entry[0] = b
    return [_Residue(c, r, i, ca if ca is not None else float(np.mean(bs)))
            for (c, r, i), (ca, bs) in residues.items()]


def _residue_selections(residues: Sequence[_Residue], groups: np.ndarray) -> dict[int, list[dict]]:
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
    import py3Dmol
    kwargs = {"width": width, "height": height}
    if js:
        kwargs["js"] = js
    return py3Dmol.view(**kwargs)


def _apply_colouring(view: "py3Dmol.view", text: str, color: str, style: str | dict,
                     plddt: np.ndarray | None, model: int | None = None) -> None:
    sel_base: dict = {} if model is None else {"model": model}
    if color == "plddt":
        residues = _pdb_residues(text)
        values = np.asarray([r.bfactor for r in residues]) if plddt is None else np.asarray(
            plddt, np.float64).reshape(-1)
        if len(values) != len(residues):
            raise ValueError(f"plddt has {len(values)} values but the structure has "
                             f"{len(residues)} residues")
        for band, sels in sorted(_residue_selections(residues, plddt_band(values)).items()):
            for sel in sels:
                view.setStyle({**sel_base, **sel}, _style_spec(style, {"color": PLDDT_BANDS[band][1]}))
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


def _add_legend(view: "py3Dmol.view") -> None:
    for i, (_, colour, label) in enumerate(PLDDT_BANDS):
        view.addLabel(label, {
            "position": {"x": 8, "y": 8 + 24 * i, "z": 0}, "useScreen": True,
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


# ---------------------------------------------------------------------------------------------
# Superposition on a reference
# ---------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Superposition:
    """A prediction superposed on a reference on CA atoms.

    moved: the prediction (all atoms) after the superposition; pairs: [K, 2] (prediction index,
    reference index) of the residues paired by sequence; rmsd in Angstrom over the K pairs;
    tm_score normalised by the reference length.
    """
    moved: Any
    rmsd: float
    tm_score: float
    pairs: np.ndarray

    @property
    def num_aligned(self) -> int:
        return int(self.pairs.shape[0])


def _as_protein(obj: Any) -> "Protein":
    if _is_protein(obj):
        return obj
    from foldlite import protein as protein_mod
    return protein_mod.read_structure(obj)


def residue_pairs(seq_a: str, seq_b: str) -> np.ndarray:
    """[K, 2] indices of residues paired by a global alignment of two sequences (identity if equal)."""
    if seq_a == seq_b:
        idx = np.arange(len(seq_a))
        return np.stack([idx, idx], axis=-1)
    from Bio import Align
    aligner = Align.PairwiseAligner(mode="global", match_score=2.0, mismatch_score=-1.0,
                                    open_gap_score=-4.0, extend_gap_score=-0.5)
    aln = aligner.align(seq_a, seq_b)[0]
    pairs = []
    for (a0, a1), (b0, b1) in zip(*aln.aligned):
        pairs.extend(zip(range(a0, a1), range(b0, b1)))
    return np.asarray(pairs, np.int64).reshape(-1, 2)


def superpose(prediction: Any, reference: Any) -> Superposition:
    """Superpose ``prediction`` on ``reference`` (``Protein`` or paths) on CA atoms."""
    from foldlite import constants as rc
    from foldlite import metrics

    pred, ref = _as_protein(prediction), _as_protein(reference)
    ca = rc.atom_order["CA"]
    pairs = residue_pairs(pred.sequence, ref.sequence)
    ok = (np.asarray(pred.atom_mask)[pairs[:, 0], ca] > 0) & (
        np.asarray(ref.atom_mask)[pairs[:, 1], ca] > 0)
    pairs = pairs[ok]
    if len(pairs) < 3:
        raise InputError("prediction and reference share fewer than 3 residues with CA atoms")
    x = np.asarray(pred.atom_positions, np.float64)[pairs[:, 0], ca]
    y = np.asarray(ref.atom_positions, np.float64)[pairs[:, 1], ca]
    rot, trans = metrics.kabsch(x, y)
    rot, trans = np.asarray(rot, np.float64), np.asarray(trans, np.float64)
    moved_pos = np.asarray(pred.atom_positions, np.float64) @ rot.T + trans
    moved_pos = moved_pos * np.asarray(pred.atom_mask)[..., None]
    moved = dataclasses.replace(pred, atom_positions=moved_pos.astype(np.float32))
    xm = moved_pos[pairs[:, 0], ca]
    rmsd = float(np.sqrt(np.mean(np.sum((xm - y) ** 2, axis=-1))))
    # TM-score over the paired residues, normalised by the reference length.
    ref_ca_mask = np.asarray(ref.atom_mask)[:, ca] > 0
    full_pred = np.zeros((ref.length, 3))
    full_mask = np.zeros(ref.length, bool)
    full_pred[pairs[:, 1]] = xm
    full_mask[pairs[:, 1]] = True
    tm = _tm_normalised(full_pred, np.asarray(ref.atom_positions, np.float64)[:, ca],
                        full_mask, int(ref_ca_mask.sum()))
    return Superposition(moved=moved, rmsd=rmsd, tm_score=tm, pairs=pairs)


def _tm_normalised(pred: np.ndarray, true: np.ndarray, mask: np.ndarray, length: int) -> float:
    """TM-score of the masked pairs, normalised by ``length`` (the reference length)."""
    from foldlite import metrics
    return float(metrics.tm_score(pred[mask], true[mask],
                                  reference_length=max(int(length), int(mask.sum()))))


def overlay(prediction: Any, reference: Any, *, color: str = "plddt", style: str | dict = "cartoon",
            plddt: np.ndarray | None = None, width: int | str = 640, height: int | str = 480,
            js: str | None = None, names: tuple[str, str] = ("prediction", "reference")
            ) -> "py3Dmol.view":
    """Show ``prediction`` superposed on ``reference`` (grey), RMSD and TM-score in the title.

    The prediction is coloured by ``color`` ('plddt' from its B-factors or ``plddt``, or any
    ``show`` colour). Use ``superpose`` for the numbers.
    """
    sup = superpose(prediction, reference)
    ref = _as_protein(reference)
    pred_text, ref_text = pdb_text(sup.moved), pdb_text(ref)
    view = _new_view(width, height, js)
    view.addModel(ref_text, "pdb")
    view.addModel(pred_text, "pdb")
    view.setStyle({"model": 0}, _style_spec(style, {"color": REFERENCE_COLOR}))
    _apply_colouring(view, pred_text, color, style, plddt, model=1)
    _add_title(view, f"{names[0]} (coloured) on {names[1]} (grey): "
                     f"CA RMSD {sup.rmsd:.2f} \u00c5 over {sup.num_aligned} residues, "
                     f"TM-score {sup.tm_score:.3f}")
    if color == "plddt":
        for i, (_, colour, label) in enumerate(PLDDT_BANDS):
            view.addLabel(label, {
                "position": {"x": 8, "y": 40 + 24 * i, "z": 0}, "useScreen": True,
                "backgroundColor": colour, "fontColor": "white" if i == 0 else "black",
                "fontSize": 12, "inFront": True})
    view.zoomTo()
    return view


# ---------------------------------------------------------------------------------------------
# Trajectories
# ---------------------------------------------------------------------------------------------

def _trajectory_texts(trajectory: Any, protein: Any = None) -> list[str]:
    if isinstance(trajectory, (str, os.PathLike)) and Path(trajectory).is_file():
        text = _read_text(Path(trajectory))
        frames, cur = [], []
        for line in text.splitlines():
            if line.startswith("MODEL"):
                cur = []
            elif line.startswith("ENDMDL"):
                frames.append("\n".join(cur) + "\nEND\n")
                cur = []
            else:
                cur.append(line)
        return frames or [text]
    if hasattr(trajectory, "trajectory"):  # a refinement report
        trajectory = trajectory.trajectory
    if trajectory is None:
        raise ValueError("no trajectory: refine with record_trajectory=True")
    items = list(trajectory) if not isinstance(trajectory, np.ndarray) else list(trajectory)
    if not items:
        raise ValueError("the trajectory is empty")
    if all(_is_protein(p) for p in items):
        return [pdb_text(p) for p in items]
    if protein is None:
        raise ValueError("a trajectory of coordinates [T, L, 37, 3] needs the template protein")
    template = _as_protein(protein)
    texts = []
    for frame in items:
        frame = np.asarray(frame, np.float32)
        if frame.shape != np.asarray(template.atom_positions).shape:
            raise ValueError(f"trajectory frame has shape {frame.shape}, the protein has "
                             f"{np.asarray(template.atom_positions).shape}")
        texts.append(pdb_text(dataclasses.replace(template, atom_positions=frame)))
    return texts


def multi_model_pdb(frames: Sequence[str]) -> str:
    """Join PDB texts into one multi-model PDB (MODEL/ENDMDL records)."""
    out = []
    for i, text in enumerate(frames, start=1):
        out.append(f"MODEL     {i:4d}")
        out.extend(l for l in text.splitlines()
                   if l.startswith(("ATOM  ", "HETATM", "TER")))
        out.append("ENDMDL")
    out.append("END")
    return "\n".join(out) + "\n"


def animate(trajectory: Any, protein: Any = None, *, color: str = "plddt",
            style: str | dict = "cartoon+stick", plddt: np.ndarray | None = None,
            interval_ms: int = 100, loop: str = "backAndForth", width: int | str = 640,
            height: int | str = 480, js: str | None = None) -> "py3Dmol.view":
    """Animate a trajectory (e.g. refinement): list of ``Protein``, coordinates [T, L, 37, 3]
    with the template ``protein``, a report with a ``trajectory`` attribute, or a multi-model PDB.
    """
    frames = _trajectory_texts(trajectory, protein)
    if color == "plddt" and plddt is None and protein is not None:
        plddt = np.asarray([r.bfactor for r in _pdb_residues(pdb_text(protein))])
    view = _new_view(width, height, js)
    view.addModelsAsFrames(multi_model_pdb(frames), "pdb")
    _apply_colouring(view, frames[0], color, style, plddt)
    _add_title(view, f"{len(frames)} frames", y=8 if color != "plddt" else 8 + 24 * 4)
    if color == "plddt":
        _add_legend(view)
    view.zoomTo()
    view.animate({"loop": loop, "interval": int(interval_ms)})
    return view


# ---------------------------------------------------------------------------------------------
# Plots
# ---------------------------------------------------------------------------------------------

def new_figure(**kwargs: Any) -> "Figure":
    """A matplotlib Figure outside pyplot (no global state, no backend needed) that IPython
    displays as a PNG when it is the value of a notebook cell."""
    if "cls" not in _DISPLAY_FIGURE:
        from matplotlib.figure import Figure

        class DisplayFigure(Figure):
            def _repr_png_(self) -> bytes:
                return figure_png(self)

        _DISPLAY_FIGURE["cls"] = DisplayFigure
    return _DISPLAY_FIGURE["cls"](**kwargs)


_DISPLAY_FIGURE: dict[str, type] = {}


def _figure_axes(ax: Any, figsize: tuple[float, float], rect: tuple[float, float, float, float]
                 ) -> tuple["Figure", Any]:
    """``ax``'s figure, or a new Figure (``new_figure``) with one Axes at ``rect`` (fixed
    margins are much faster to draw than a layout engine)."""
    if ax is not None:
        return ax.figure, ax
    fig = new_figure(figsize=figsize)
    return fig, fig.add_axes(rect)


def plot_plddt(plddt: np.ndarray | Sequence[float] | dict[str, Any], *, ax: Any = None,
               title: str | None = None, residue_numbers: np.ndarray | None = None) -> "Figure":
    """pLDDT along the sequence, coloured by confidence band, with the bands shaded and a colour bar.

    Args:
      plddt: [L] values 0-100, or a dict {label: [L]} to compare several models (lines only).
      ax: draw into this matplotlib Axes (default: a new Figure).
    """
    from matplotlib.colorbar import ColorbarBase
    from matplotlib.colors import BoundaryNorm, ListedColormap

    fig, ax = _figure_axes(ax, (7.0, 3.0), (0.08, 0.16, 0.82, 0.74))
    bounds = [0, 50, 70, 90, 100]
    colours = [b[1] for b in reversed(PLDDT_BANDS)]
    for lo, hi, c in zip(bounds[:-1], bounds[1:], colours):
        ax.axhspan(lo, hi, color=c, alpha=0.12, lw=0)
    series = plddt if isinstance(plddt, dict) else {"pLDDT": plddt}
    for label, values in series.items():
        v = np.asarray(values, np.float64).reshape(-1)
        x = np.arange(1, len(v) + 1) if residue_numbers is None else np.asarray(residue_numbers)
        ax.plot(x, v, color="0.25", lw=1.0, label=label, zorder=2)
        if len(series) == 1:
            ax.scatter(x, v, c=plddt_colors(v), s=9, zorder=3, lw=0)
    ax.set_ylim(0, 100)
    ax.set_xlabel("Residue")
    ax.set_ylabel("pLDDT")
    if len(series) > 1:
        ax.legend(loc="lower right", fontsize=8)
    mean = np.mean([np.mean(np.asarray(v, np.float64)) for v in series.values()])
    ax.set_title(title or f"Predicted lDDT (mean {mean:.1f})")
    cmap = ListedColormap(colours)
    norm = BoundaryNorm(bounds, cmap.N)
    cax = ax.inset_axes([1.01, 0.0, 0.025, 1.0])
    cb = ColorbarBase(cax, cmap=cmap, norm=norm, ticks=[25, 60, 80, 95])
    cb.ax.set_yticklabels(["<50", "50-70", "70-90", ">90"], fontsize=8)
    return fig


def plot_pae(pae: np.ndarray, *, ax: Any = None, title: str | None = None,
             max_error: float | None = None) -> "Figure":
    """Predicted aligned error [L, L] (row: aligned on residue i; column: error at residue j)."""
    fig, ax = _figure_axes(ax, (5.2, 4.4), (0.14, 0.12, 0.62, 0.78))
    pae = np.asarray(pae, np.float64)
    if pae.ndim != 2 or pae.shape[0] != pae.shape[1]:
        raise ValueError(f"PAE must be a square [L, L] matrix, got shape {pae.shape}")
    vmax = float(max_error if max_error is not None else max(
        MAX_PAE, float(np.nanmax(pae)) if pae.size else MAX_PAE))
    n = pae.shape[0]
    im = ax.imshow(pae, cmap="Greens_r", vmin=0.0, vmax=vmax, origin="upper",
                   extent=(0.5, n + 0.5, n + 0.5, 0.5), interpolation="nearest")
    ax.set_xlabel("Scored residue")
    ax.set_ylabel("Aligned residue")
    ax.set_title(title or "Predicted aligned error")
    cax = ax.inset_axes([1.04, 0.0, 0.05, 1.0])
    cb = fig.colorbar(im, cax=cax)
    cb.set_label("Expected position error (\u00c5)")
    return fig


def read_training_log(path: str | os.PathLike) -> list[dict]:
    """Records of a training log (``metrics.jsonl`` of ``foldlite train``: one JSON per line)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: training log not found")
    records = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError as e:
                raise InputError(f"{path}: line {lineno}: not JSON ({e})") from None
            if not isinstance(rec, dict):
                raise InputError(f"{path}: line {lineno}: expected a JSON object")
            records.append(rec)
    return records


def plot_training_curves(log: str | os.PathLike | Sequence[dict],
                         keys: Sequence[str] | None = None, *, title: str | None = None
                         ) -> "Figure":
    """Learning curves from a training log: one panel per metric, against the step.

    Training records (``kind: train``) are lines; validation records (``kind: eval``) are
    markers on the panel of the same metric. ``keys`` defaults to the loss, FAPE and lDDT-CA
    (those present), plus validation TM-score / GDT-TS when logged.
    """
    records = read_training_log(log) if isinstance(log, (str, os.PathLike)) else list(log)
    train = [r for r in records if r.get("kind") == "train" and "step" in r]
    evals = [r for r in records if r.get("kind") == "eval" and "step" in r]
    if not train and not evals:
        raise ValueError("the training log has no train or eval records")

    def present(k: str, recs: list[dict]) -> bool:
        return any(isinstance(r.get(k), (int, float)) for r in recs)

    if keys is None:
        keys = [k for k in ("loss", "fape", "lddt_ca") if present(k, train) or present(k, evals)]
        keys += [k for k in ("tm_score", "gdt_ts") if present(k, evals) and k not in keys]
    keys = [k for k in keys if present(k, train) or present(k, evals)]
    if not keys:
        raise ValueError("none of the requested metrics is in the training log")
    n = len(keys)
    cols = min(n, 3)
    rows = (n + cols - 1) // cols
    fig = new_figure(figsize=(4.2 * cols, 3.2 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).reshape(-1)
    for ax, key in zip(axes, keys):
        for recs, label, kw in ((train, "train", {"lw": 1.2}),
                                (evals, "validation", {"marker": "o", "ls": "--", "ms": 4})):
            pts = [(r["step"], r[key]) for r in recs if isinstance(r.get(key), (int, float))
                   and np.isfinite(r[key])]
            if pts:
                x, y = zip(*pts)
                ax.plot(x, y, label=label, **kw)
        ax.set_xlabel("step")
        ax.set_ylabel(key)
        ax.set_title(key)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in axes[n:]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title)
    return fig


def figure_png(fig: "Figure", dpi: int = 100) -> bytes:
    """PNG bytes of a matplotlib Figure (Agg, no display needed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------
# Standalone HTML page
# ---------------------------------------------------------------------------------------------

_PAGE_CSS = """
body { margin: 0; font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; color: #222; }
#layout { display: flex; flex-wrap: wrap; gap: 16px; padding: 0; }
#viewer-box { flex: none; border-right: 1px solid #ddd; }
#side { padding: 12px 16px; max-width: 520px; }
h1 { font-size: 18px; margin: 0 0 8px 0; word-break: break-all; }
table.info td { padding: 1px 8px 1px 0; font-size: 13px; }
ul.legend { list-style: none; padding: 0; margin: 8px 0; font-size: 13px; }
ul.legend li { margin: 3px 0; }
ul.legend span.swatch { display: inline-block; width: 14px; height: 14px; margin-right: 6px;
  vertical-align: middle; border: 1px solid #888; }
#plots { padding: 8px 16px; display: flex; flex-wrap: wrap; gap: 16px; }
#plots img { max-width: 100%; }
#js-errors { color: #b00; white-space: pre-wrap; }
#load-warning { color: #b00; display: none; }
"""

# The page reports its state in <body data-status=...> (read by tests and by anyone scripting the
# page): absent while loading, then "rendered" or "errors". Every JavaScript error seen at any time
# goes into window.__foldliteErrors and the #js-errors box, and an error that comes after the page
# was marked "rendered" turns the status into "errors": an error is never hidden by its timing.
#
# This script runs first in <head>, so it also sees errors of the 3Dmol.js library itself.
# ``report(text, reason)`` records a failure once, however many ways it surfaces (a callback error
# is caught by the tracker below and later fires 'unhandledrejection' with the same object).
_ERROR_CAPTURE_JS = """
window.__foldliteErrors = [];
window.__foldliteReport = (function () {
  var seen = [];
  return function (text, reason) {
    if (reason !== undefined && reason !== null) {
      if (seen.indexOf(reason) >= 0) { return; }
      seen.push(reason);
    }
    window.__foldliteErrors.push(text);
    var box = document.getElementById('js-errors');
    if (box) { box.textContent = window.__foldliteErrors.join('\\n'); }
    if (document.body && document.body.getAttribute('data-status')) {
      document.body.setAttribute('data-status', 'errors');
    }
  };
})();
window.addEventListener('error', function (e) {
  window.__foldliteReport('error: ' + (e.message || (e.target && e.target.src) || e), e.error);
}, true);
window.addEventListener('unhandledrejection', function (e) {
  window.__foldliteReport('unhandled rejection: ' + String(e.reason), e.reason);
});
"""

# $3Dmolpromise for a page that loads 3Dmol.js from the CDN (defined before py3Dmol's viewer code,
# which then uses it instead of its own loader): unlike that loader, it rejects when the library
# cannot be fetched, so an offline page says so instead of waiting forever.
_CDN_PROMISE_JS = """
var $3Dmolpromise = new Promise(function (resolve, reject) {
  var tag = document.createElement('script');
  tag.src = %(url)s;
  tag.async = true;
  tag.onload = function () {
    if (typeof $3Dmol !== 'undefined') { resolve(); }
    else { reject('3Dmol.js from ' + tag.src + ' did not define $3Dmol'); }
  };
  tag.onerror = function () { reject('3Dmol.js could not be loaded from ' + tag.src); };
  document.head.appendChild(tag);
});
"""

# Decides the page status without depending on timing. Every callback given to
# $3Dmolpromise.then (the viewer's code, added by py3Dmol further down the page, and any other) is
# tracked: an exception in it is reported the moment it is thrown (then re-thrown, so the promise
# chain behaves as before). The status is set once the window has loaded (every script of the page
# has run, so every callback has been registered), $3Dmolpromise has settled and every tracked
# callback has returned: "errors" if anything was reported by then, else "rendered". A later error
# still turns it into "errors" (see __foldliteReport). data-viewer-rect: the viewer's position.
_STATUS_JS = """
(function () {
  var report = window.__foldliteReport;
  var promise = $3Dmolpromise;
  var then = promise.then;
  var registered = 0, pending = 0, loaded = false, settled = false, finished = false;

  function finish() {
    finished = true;
    if (!registered) { report('3Dmol.js viewer code did not run'); }
    var r = document.getElementById('viewer-box').getBoundingClientRect();
    document.body.setAttribute('data-viewer-rect',
      [Math.round(r.left), Math.round(r.top), Math.round(r.width), Math.round(r.height)].join(','));
    var errs = window.__foldliteErrors;
    document.getElementById('js-errors').textContent = errs.join('\\n');
    document.body.setAttribute('data-status', errs.length ? 'errors' : 'rendered');
  }
  function check() {
    if (!finished && loaded && settled && pending === 0) { finish(); }
  }
  function tracked(fn, rejected) {
    return function (value) {
      try {
        if (typeof fn === 'function') { return fn(value); }
        if (rejected) { throw value; }  // no handler: pass the rejection on (reported below)
        return value;
      } catch (e) {
        if (typeof fn === 'function') { report('error in 3D viewer code: ' + String(e), e); }
        throw e;
      } finally {
        pending -= 1;
        check();
      }
    };
  }
  promise.then = function (onFulfilled, onRejected) {
    registered += 1;
    pending += 1;
    return then.call(promise, tracked(onFulfilled, false), tracked(onRejected, true));
  };
  then.call(promise, function () { settled = true; check(); },
            function (e) { settled = true; report(String(e), e); check(); });
  window.addEventListener('load', function () { loaded = true; check(); });
  setTimeout(function () {
    if (!document.body.getAttribute('data-status')) {
      document.getElementById('load-warning').style.display = 'block';
    }
  }, 15000);
})();
"""


def _inline_script(js: str) -> str:
    return "<script>" + js.replace("</script", "<\\/script") + "</script>"


def resolve_3dmol_js(js_path: str | os.PathLike | None) -> Path | None:
    """The local 3Dmol.js to inline: ``js_path``, else $FOLDLITE_3DMOL_JS, else None (CDN)."""
    if js_path is None:
        env = os.environ.get(ENV_3DMOL_JS)
        if not env:
            return None
        js_path = env
    p = Path(js_path).expanduser()
    if not p.is_file():
        raise InputError(f"{p}: 3Dmol.js not found (give the path of 3Dmol-min.js, e.g. from the "
                         "npm package '3dmol': build/3Dmol-min.js)")
    return p


def html_page(structure: Any, *, plddt: np.ndarray | None = None, pae: np.ndarray | None = None,
              title: str = "foldlite", info: dict[str, Any] | None = None, color: str = "plddt",
              style: str | dict = "cartoon", js_path: str | os.PathLike | None = None,
              width: int = 640, height: int = 480, plddt_png: bytes | None = None,
              pae_png: bytes | None = None) -> str:
    """A standalone HTML page: the 3D view, the legend, the pLDDT and PAE plots, ``info`` rows.

    ``plddt_png``/``pae_png``: already drawn plots to embed instead of drawing them again.
    """
    text = pdb_text(structure)
    local_js = resolve_3dmol_js(js_path)
    view = show(text, color=color, style=style, plddt=plddt, legend=False, width=width,
                height=height, js=None if local_js else CDN_3DMOL)
    viewer_html = view._make_html()
    if plddt is None and color == "plddt":
        plddt = np.asarray([r.bfactor for r in _pdb_residues(text)])
    head = [
        "<!DOCTYPE html>", "<html lang=\"en\">", "<head>", "<meta charset=\"utf-8\">",
        f"<title>{html_lib.escape(title)} - foldlite</title>",
        f"<style>{_PAGE_CSS}</style>", _inline_script(_ERROR_CAPTURE_JS),
    ]
    if local_js:
        head.append(_inline_script(local_js.read_text(encoding="utf-8")))
        head.append(_inline_script("var $3Dmolpromise = (typeof $3Dmol !== 'undefined') ? "
                                   "Promise.resolve() : Promise.reject('3Dmol.js failed to load');"))
    else:
        head.append(_inline_script(_CDN_PROMISE_JS % {"url": json.dumps(CDN_3DMOL)}))
    head.append(_inline_script(_STATUS_JS))
    head.append("</head>")
    rows = "".join(f"<tr><td>{html_lib.escape(str(k))}</td><td>{html_lib.escape(str(v))}</td></tr>"
                   for k, v in (info or {}).items())
    legend = ""
    if color == "plddt":
        legend = "<ul class=\"legend\">" + "".join(
            f"<li><span class=\"swatch\" style=\"background:{c}\"></span>{html_lib.escape(lab)}</li>"
            for _, c, lab in PLDDT_BANDS) + "</ul>"
    plots = []
    if plddt is not None and color == "plddt" or plddt_png is not None:
        png = plddt_png if plddt_png is not None else figure_png(plot_plddt(plddt))
        plots.append(f"<img alt=\"pLDDT plot\" id=\"plddt-plot\" src=\"data:image/png;base64,"
                     f"{base64.b64encode(png).decode()}\">")
    if pae is not None or pae_png is not None:
        png = pae_png if pae_png is not None else figure_png(plot_pae(pae))
        plots.append(f"<img alt=\"PAE plot\" id=\"pae-plot\" src=\"data:image/png;base64,"
                     f"{base64.b64encode(png).decode()}\">")
    source = "inlined from " + html_lib.escape(local_js.name) if local_js else (
        f"loaded from <a href=\"{CDN_3DMOL}\">{CDN_3DMOL}</a> (needs internet; "
        "<code>foldlite view --3dmol-js PATH</code> makes an offline page)")
    body = [
        "<body>", "<div id=\"layout\">",
        f"<div id=\"viewer-box\" style=\"width:{width}px;height:{height}px\">{viewer_html}</div>",
        "<div id=\"side\">", f"<h1>{html_lib.escape(title)}</h1>",
        f"<table class=\"info\">{rows}</table>", legend,
        f"<p style=\"font-size:12px;color:#666\">3Dmol.js {source}.</p>",
        "<p id=\"load-warning\">The 3D viewer did not load: 3Dmol.js could not be reached.</p>",
        "<pre id=\"js-errors\"></pre>", "</div>", "</div>",
        f"<div id=\"plots\">{''.join(plots)}</div>",
        "</body>", "</html>",
    ]
    return "\n".join(head + body) + "\n"


def write_html(path: str | os.PathLike, structure: Any, **kwargs: Any) -> Path:
    """Write ``html_page(structure, **kwargs)`` to ``path`` atomically; returns the path."""
    from foldlite.fileio import write_text
    path = Path(path)
    write_text(path, html_page(structure, **kwargs))
    return path


# ---------------------------------------------------------------------------------------------
# `foldlite view`
# ---------------------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="OUTDIR_OR_STRUCTURE",
                        help="a prediction record folder, a `foldlite predict` output folder, or "
                             "a PDB/mmCIF file (pLDDT read from the B-factor column)")
    parser.add_argument("-o", "--output", required=True, metavar="HTML",
                        help="the HTML page to write")
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


def _find_record_dir(target: Path, record: str | None) -> Path:
    from foldlite import outputs
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
    from foldlite import outputs
    target = Path(args.target)
    if not target.exists():
        raise InputError(f"{target}: not found")
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
    from foldlite.fileio import write_text
    write_text(args.output, page)
    print(f"wrote {args.output}")
    return 0
