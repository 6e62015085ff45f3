"""The standalone HTML page: the 3D view, the pLDDT legend, the pLDDT and PAE plots, info rows.

Its script and style sheet are package files beside this module (``page.js``, ``page.css``),
inlined into every page. With a local 3Dmol.js (``js_path`` or $FOLDLITE_3DMOL_JS) the library is
inlined too and the page works offline; otherwise it is loaded from the CDN that py3Dmol uses.
"""

from __future__ import annotations

import base64
import html as html_lib
import json
import os
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from foldlite.errors import InputError
from foldlite.fileio import write_text
from foldlite.protein import pdb_residues
from foldlite.viz.plots import PLDDT_BANDS, figure_png, plot_pae, plot_plddt
from foldlite.viz.view3d import pdb_text, show

#: The 3Dmol.js that py3Dmol loads (same version as the npm package ``3dmol`` used in tests).
CDN_3DMOL = "https://cdn.jsdelivr.net/npm/3dmol@2.5.5/build/3Dmol-min.js"
#: Environment variable naming a local 3Dmol-min.js used by default for HTML pages.
ENV_3DMOL_JS = "FOLDLITE_3DMOL_JS"


def _package_file(name: str) -> str:
    return resources.files("foldlite.viz").joinpath(name).read_text(encoding="utf-8")


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


def _head(title: str, local_js: Path | None) -> list[str]:
    """<head>: the page's script (error capture first), 3Dmol.js and $3Dmolpromise, status."""
    head = [
        "<!DOCTYPE html>", "<html lang=\"en\">", "<head>", "<meta charset=\"utf-8\">",
        f"<title>{html_lib.escape(title)} - foldlite</title>",
        f"<style>{_package_file('page.css')}</style>", _inline_script(_package_file("page.js")),
    ]
    if local_js:
        head.append(_inline_script(local_js.read_text(encoding="utf-8")))
        head.append(_inline_script(
            "var $3Dmolpromise = (typeof $3Dmol !== 'undefined') ? "
            "Promise.resolve() : Promise.reject('3Dmol.js failed to load');"))
    else:
        head.append(_inline_script(
            f"var $3Dmolpromise = foldliteLoad3Dmol({json.dumps(CDN_3DMOL)});"))
    head.append(_inline_script("foldliteTrackStatus();"))
    head.append("</head>")
    return head


def _png_img(png: bytes, alt: str, ident: str) -> str:
    return (f"<img alt=\"{alt}\" id=\"{ident}\" src=\"data:image/png;base64,"
            f"{base64.b64encode(png).decode()}\">")


def html_page(structure: Any, *, plddt: np.ndarray | None = None, pae: np.ndarray | None = None,
              title: str = "foldlite", info: dict[str, Any] | None = None, color: str = "plddt",
              style: str | dict = "cartoon", js_path: str | os.PathLike | None = None,
              width: int = 640, height: int = 480, plddt_png: bytes | None = None,
              pae_png: bytes | None = None, coverage_png: bytes | None = None) -> str:
    """A standalone HTML page: the 3D view, the legend, the pLDDT and PAE plots, ``info`` rows.

    ``plddt_png``/``pae_png``: already drawn plots to embed instead of drawing them again;
    ``coverage_png``: the MSA and template coverage plot (``plots.plot_coverage``), shown after
    them.
    """
    text = pdb_text(structure)
    local_js = resolve_3dmol_js(js_path)
    view = show(text, color=color, style=style, plddt=plddt, legend=False, width=width,
                height=height, js=None if local_js else CDN_3DMOL)
    viewer_html = view._make_html()
    if plddt is None and color == "plddt":
        plddt = np.asarray([r.bfactor for r in pdb_residues(text)])
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
        plots.append(_png_img(png, "pLDDT plot", "plddt-plot"))
    if pae is not None or pae_png is not None:
        png = pae_png if pae_png is not None else figure_png(plot_pae(pae))
        plots.append(_png_img(png, "PAE plot", "pae-plot"))
    if coverage_png is not None:
        plots.append(_png_img(coverage_png, "MSA and template coverage plot", "coverage-plot"))
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
    return "\n".join(_head(title, local_js) + body) + "\n"


def write_html(path: str | os.PathLike, structure: Any, **kwargs: Any) -> Path:
    """Write ``html_page(structure, **kwargs)`` to ``path`` atomically; returns the path."""
    path = Path(path)
    write_text(path, html_page(structure, **kwargs))
    return path
