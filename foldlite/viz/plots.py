"""Confidence plots: pLDDT along the sequence and the predicted aligned error (PAE) matrix; the
MSA and template coverage per residue (as ColabFold's coverage plot).

A leaf module: it imports only numpy and matplotlib, so anything can draw these plots. Figures
are made without pyplot (no global state, no display backend needed) and show themselves as PNG
in a notebook. The pLDDT bands (AlphaFold's: very high > 90, confident 70-90, low 50-70, very low
< 50) and their colours are defined here, for the 3D views and the HTML page too.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

#: AlphaFold's confidence bands: (lower bound, exclusive; colour; label). A residue belongs to the
#: first band whose bound its pLDDT exceeds.
PLDDT_BANDS: tuple[tuple[float, str, str], ...] = (
    (90.0, "#0053D6", "Very high (pLDDT > 90)"),
    (70.0, "#65CBF3", "Confident (90 > pLDDT > 70)"),
    (50.0, "#FFDB13", "Low (70 > pLDDT > 50)"),
    (-np.inf, "#FF7D45", "Very low (pLDDT < 50)"),
)
#: Upper end of the PAE colour scale: the centre of the last PAE bin (foldlite.model.heads).
MAX_PAE = 31.75


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


def new_figure(**kwargs: Any) -> "Figure":
    """A matplotlib Figure outside pyplot (no global state, no backend needed) that IPython
    displays as a PNG when it is the value of a notebook cell."""
    if "cls" not in _DISPLAY_FIGURE:
        # deferred: matplotlib takes half a second to import; only drawing needs it
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
    # deferred like matplotlib in new_figure
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


def coverage_rows(sequences: np.ndarray, gap: int) -> tuple[np.ndarray, np.ndarray]:
    """Per MSA row, the identity to the query (row 0) and the covered positions.

    Args:
      sequences: int [N, L] residue codes in query columns, row 0 the query.
      gap: the gap code.
    Returns:
      identity: [N] identical / covered positions (0 for a row that covers nothing).
      covered: bool [N, L] the row has a residue (not a gap) at the position.
    """
    seqs = np.asarray(sequences)
    covered = seqs != gap
    same = (seqs == seqs[:1]) & covered
    n = covered.sum(axis=1)
    identity = np.where(n > 0, same.sum(axis=1) / np.maximum(n, 1), 0.0)
    return identity, covered


def plot_coverage(sequences: np.ndarray | None, *, gap: int = 21,
                  templates: dict[str, tuple[np.ndarray, float]] | None = None, ax: Any = None,
                  title: str | None = None) -> "Figure":
    """MSA and template coverage along the query.

    Each MSA row is a line over the positions it covers, coloured by its identity to the query,
    the rows sorted by identity (most identical at the top); the black line counts the rows
    covering each position (right axis). Templates follow below the MSA rows, each a labelled
    line coloured by its identity.

    Args:
      sequences: int [N, L] MSA in query columns (row 0 the query), or None (no MSA: query only
        when templates give the length).
      gap: the gap code in ``sequences``.
      templates: {label: (query_to_template int [L] with -1 where unaligned, identity 0-1)}.
      ax: draw into this Axes (default: a new Figure).
    """
    templates = templates or {}
    if sequences is None:
        if not templates:
            raise ValueError("plot_coverage needs an MSA or at least one template")
        length = len(next(iter(templates.values()))[0])
        sequences = np.zeros((1, length), np.int32)
    identity, covered = coverage_rows(sequences, gap)
    order = np.argsort(-identity, kind="stable")
    image = np.where(covered[order], identity[order, None], np.nan)
    n_msa, length = covered.shape
    extent_x = (0.5, length + 0.5)
    fig, ax = _figure_axes(ax, (7.5, 4.6) if templates else (7.5, 4.0),
                           (0.13, 0.4, 0.6, 0.52) if templates else (0.09, 0.13, 0.64, 0.77))
    style = {"cmap": "rainbow_r", "vmin": 0.0, "vmax": 1.0, "aspect": "auto",
             "interpolation": "nearest"}
    im = ax.imshow(image, extent=(*extent_x, n_msa, 0), **style)
    depth = covered.sum(axis=0)
    twin = ax.twinx()
    twin.plot(np.arange(1, length + 1), depth, color="black", lw=1.0)
    twin.set_ylim(0, max(1, int(depth.max())) * 1.05)
    twin.set_ylabel("Sequences covering")
    ax.set_xlim(*extent_x)
    ax.set_ylabel("MSA rows (by identity)")
    ax.set_title(title or f"Coverage: {n_msa} sequences" +
                 (f", {len(templates)} template(s)" if templates else ""))
    bottom = ax
    if templates:
        # templates get rows of their own below the MSA, visible however deep the MSA is
        bottom = ax.inset_axes([0.0, -0.5, 1.0, 0.36])
        rows = [np.where(np.asarray(q) >= 0, float(t), np.nan) for q, t in templates.values()]
        bottom.imshow(np.array(rows, np.float64), extent=(*extent_x, len(rows), 0), **style)
        bottom.set_yticks(np.arange(len(rows)) + 0.5, list(templates), fontsize=7)
        bottom.set_xlim(*extent_x)
        ax.tick_params(labelbottom=False)
    bottom.set_xlabel("Query position")
    cax = ax.inset_axes([1.15, 0.0, 0.03, 1.0])
    cb = fig.colorbar(im, cax=cax)
    cb.set_label("Identity to the query")
    return fig


def figure_png(fig: "Figure", dpi: int = 100) -> bytes:
    """PNG bytes of a matplotlib Figure (Agg, no display needed)."""
    # deferred like matplotlib in new_figure
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()
