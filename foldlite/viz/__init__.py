"""Looking at structures: py3Dmol views, confidence plots and a standalone HTML page.

- ``show(protein_or_path, color="plddt")``: a py3Dmol view coloured by pLDDT with AlphaFold's four
  confidence bands (very high > 90, confident 70-90, low 50-70, very low < 50) and a legend, or by
  chain, secondary structure or a rainbow along the sequence.
- ``overlay(prediction, reference)``: superposes the prediction on the reference on CA atoms
  (``foldlite.metrics.superpose``, residues paired by a sequence alignment when the sequences
  differ) and shows both, with the CA RMSD and the TM-score in the title; ``compare`` gives the
  superposed prediction and the numbers alone.
- ``plot_plddt``, ``plot_pae``: matplotlib figures (created without pyplot, so no global state and
  no display backend is needed); ``plot_training_curves`` for a training log.
- ``animate(trajectory)``: a refinement trajectory as a py3Dmol multi-model animation.
- ``write_html(path, ...)``: one self-contained page with the 3D view, the legend and both plots.

Modules, by job: ``plots`` (pLDDT bands and plots; imports only numpy and matplotlib),
``curves`` (training logs), ``comparison`` (prediction on reference), ``view3d`` (py3Dmol
views), ``page`` (the HTML page; its script and style sheet are the package files ``page.js`` and
``page.css``). The ``foldlite view`` command is ``foldlite.commands.view``.

``compare``, ``Comparison`` and ``residue_pairs`` are imported on first use: they need
``foldlite.metrics``, which imports JAX (seconds), and the views, the plots and the page do not.
"""

from foldlite.protein import multi_model_pdb
from foldlite.viz.curves import plot_training_curves, read_training_log
from foldlite.viz.page import CDN_3DMOL, ENV_3DMOL_JS, html_page, resolve_3dmol_js, write_html
from foldlite.viz.plots import (MAX_PAE, PLDDT_BANDS, figure_png, new_figure, plddt_band,
                                plddt_colors, plot_coverage, plot_pae, plot_plddt)
from foldlite.viz.view3d import (COLOR_MODES, REFERENCE_COLOR, STYLES, animate, overlay,
                                 pdb_text, show)

__all__ = [
    "CDN_3DMOL", "COLOR_MODES", "Comparison", "ENV_3DMOL_JS", "MAX_PAE", "PLDDT_BANDS",
    "REFERENCE_COLOR", "STYLES", "animate", "compare", "figure_png", "html_page",
    "multi_model_pdb", "new_figure", "overlay", "pdb_text", "plddt_band", "plddt_colors",
    "plot_coverage", "plot_pae", "plot_plddt", "plot_training_curves", "read_training_log", "residue_pairs",
    "resolve_3dmol_js", "show", "write_html",
]


def __getattr__(name: str):
    if name in ("Comparison", "compare", "residue_pairs"):
        from foldlite.viz import comparison  # deferred: imports JAX (see the docstring)
        return getattr(comparison, name)
    raise AttributeError(f"module 'foldlite.viz' has no attribute {name!r}")
