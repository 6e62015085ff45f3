"""view.html in a real browser: headless Chromium draws the molecule in the confidence colours,
with no JavaScript error.

Needs Chromium (Debian package `chromium`; .ci/run installs it) and 3Dmol.js from the npm
package `3dmol` (fetched once with `npm pack` into ~/.cache/foldlite/3dmol, or taken from
$FOLDLITE_3DMOL_JS). Skips with the reason when either is missing.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import pytest

from foldlite import outputs, viz
from foldlite.cli import main

THREEDMOL_VERSION = "2.5.5"  # the version py3Dmol loads from its CDN
BAND_RGB = {c: tuple(int(c[i:i + 2], 16) for i in (1, 3, 5)) for _, c, _ in viz.PLDDT_BANDS}


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no Chromium on PATH (Debian: apt-get install chromium)")


def _threedmol_js() -> Path:
    env = os.environ.get(viz.ENV_3DMOL_JS)
    if env and Path(env).is_file():
        return Path(env)
    from foldlite.cache import cache_dir
    target = cache_dir() / "3dmol" / THREEDMOL_VERSION / "3Dmol-min.js"
    if target.is_file():
        return target
    npm = shutil.which("npm")
    if not npm:
        pytest.skip("3Dmol.js unavailable: no npm to fetch the '3dmol' package "
                    f"(or set ${viz.ENV_3DMOL_JS} to a 3Dmol-min.js)")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            r = subprocess.run([npm, "pack", f"3dmol@{THREEDMOL_VERSION}", "--silent"], cwd=tmp,
                               capture_output=True, text=True, timeout=180)
        except subprocess.TimeoutExpired:
            pytest.skip("3Dmol.js unavailable: `npm pack 3dmol` timed out")
        tgz = list(Path(tmp).glob("3dmol-*.tgz"))
        if r.returncode != 0 or not tgz:
            pytest.skip(f"3Dmol.js unavailable: `npm pack 3dmol` failed: {r.stderr.strip()[:200]}")
        with tarfile.open(tgz[0]) as tf:
            member = tf.getmember("package/build/3Dmol-min.js")
            data = tf.extractfile(member).read()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp_target = target.with_suffix(f".tmp{os.getpid()}")
    tmp_target.write_bytes(data)
    os.replace(tmp_target, target)
    return target


def _run_chromium(browser: str, page: Path, tmp: Path, *extra: str) -> subprocess.CompletedProcess:
    profile = tempfile.mkdtemp(prefix="chromium-profile-", dir=tmp)
    cmd = [browser, "--headless", "--no-sandbox", "--disable-dev-shm-usage", "--no-first-run",
           "--disable-extensions", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
           "--hide-scrollbars", "--window-size=1280,1000", "--virtual-time-budget=10000",
           "--enable-logging=stderr", "--v=0", f"--user-data-dir={profile}", *extra,
           page.resolve().as_uri()]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def _page_state(r: subprocess.CompletedProcess) -> dict:
    """Body attributes (data-status, data-viewer-rect) + 'errors' (the #js-errors text) of a DOM
    dump. Chromium dumps the DOM when the virtual time budget is spent, i.e. after the page has
    loaded and run all its scripts and timers due within 10 s; the page sets data-status only
    once every viewer callback has returned and turns it into "errors" on any later error, so
    this one sample is the final state, whatever the machine's load."""
    body = re.search(r"<body([^>]*)>", r.stdout)
    assert body, f"no DOM from Chromium: {r.stderr[-2000:]}"
    attrs = dict(re.findall(r'([\w-]+)="([^"]*)"', body.group(1)))
    errs = re.search(r'<pre id="js-errors">(.*?)</pre>', r.stdout, re.S)
    attrs["errors"] = errs.group(1).strip() if errs else "<no error box>"
    return attrs


def _dom_state(browser: str, page: Path, tmp: Path) -> dict:
    """One Chromium run without a screenshot: the page state (see ``_page_state``)."""
    return _page_state(_run_chromium(browser, page, tmp, "--dump-dom"))


def _render(browser: str, page: Path, tmp: Path) -> tuple[dict, np.ndarray, str]:
    """One Chromium run: (page state, screenshot [H, W, 3] 0..255, log)."""
    shot = tmp / f"{page.stem}.png"
    r = _run_chromium(browser, page, tmp, "--dump-dom", f"--screenshot={shot}")
    attrs = _page_state(r)
    assert shot.is_file(), f"no screenshot: {r.stderr[-2000:]}"
    from matplotlib.image import imread
    img = imread(shot)[..., :3]
    img = (img * 255).round() if img.dtype.kind == "f" else img.astype(np.float64)
    return attrs, img, r.stderr


def _band_pixel_counts(pixels: np.ndarray) -> dict[str, int]:
    """Pixels whose hue matches each band colour (lighting scales and offsets the RGB, so
    compare the chroma direction: RGB minus its mean, normalised)."""
    px = pixels.reshape(-1, 3).astype(np.float64)
    chroma = px - px.mean(-1, keepdims=True)
    norm = np.linalg.norm(chroma, axis=-1)
    counts = {}
    for colour, rgb in BAND_RGB.items():
        c = np.asarray(rgb, np.float64)
        c = c - c.mean()
        c /= np.linalg.norm(c)
        cos = (chroma @ c) / np.maximum(norm, 1e-9)
        counts[colour] = int(np.sum((cos > 0.99) & (norm > 25)))
    return counts


def _console_errors(log: str) -> list[str]:
    return [l for l in log.splitlines() if "CONSOLE" in l and ("Uncaught" in l or "Error" in l)]


@pytest.fixture(scope="module")
def browser_and_js():
    return _chromium(), _threedmol_js()


def test_view_html_draws_molecule_in_confidence_colours(browser_and_js, tmp_path):
    from test_outputs import make_prediction

    browser, js = browser_and_js
    pred = make_prediction(name="rec", num_seeds=1)  # pLDDT rising through all four bands
    rec = outputs.write_record(tmp_path / "out", pred, js_path=js)
    page = rec / "view.html"
    assert js.read_text(encoding="utf-8")[:200] in page.read_text(encoding="utf-8")  # offline
    attrs, img, log = _render(browser, page, tmp_path)
    assert attrs.get("data-status") == "rendered", attrs
    assert attrs["errors"] == ""
    assert not _console_errors(log), _console_errors(log)
    x, y, w, h = (int(v) for v in attrs["data-viewer-rect"].split(","))
    viewer = img[y:y + h, x:x + w]
    assert viewer.shape[0] > 100 and viewer.shape[1] > 100
    drawn = np.any(viewer < 235, axis=-1).mean()
    assert drawn > 0.02, f"the 3D view is blank ({drawn:.3%} of its pixels drawn)"
    counts = _band_pixel_counts(viewer)
    for colour, n in counts.items():
        assert n > 100, f"confidence colour {colour} not drawn: {counts}"


def test_view_command_page_and_error_detection(browser_and_js, tmp_path):
    """`foldlite view` on a PDB file renders; a page with a JS error is reported as such."""
    browser, js = browser_and_js
    pdb = Path(__file__).parent / "data" / "1A8O.pdb"
    from foldlite.protein import read_structure
    p = read_structure(pdb)
    banded = tmp_path / "banded.pdb"
    banded.write_text(viz.pdb_text(p.with_plddt(np.full(p.length, 95.0))))
    page = tmp_path / "view.html"
    assert main(["view", str(banded), "-o", str(page), "--3dmol-js", str(js)]) == 0
    attrs, img, _ = _render(browser, page, tmp_path)
    assert attrs.get("data-status") == "rendered" and attrs["errors"] == "", attrs
    x, y, w, h = (int(v) for v in attrs["data-viewer-rect"].split(","))
    counts = _band_pixel_counts(img[y:y + h, x:x + w])
    assert counts["#0053D6"] > 100 and counts["#FF7D45"] == 0, counts

    def inject(name: str, script: str) -> Path:
        out = tmp_path / name
        out.write_text(page.read_text().replace("</body>", f"<script>{script}</script></body>", 1))
        return out

    # An error in a callback queued on the viewer's promise by a later script of the page.
    broken = inject("broken.html", "$3Dmolpromise.then(function () { no_such_function(); });")
    attrs = _dom_state(browser, broken, tmp_path)
    assert attrs.get("data-status") == "errors" and "no_such_function" in attrs["errors"], attrs
    # An error after the page said "rendered" turns the status into "errors". (The page decides
    # in its own load handler, which runs before this one.)
    late = inject("late.html", "window.addEventListener('load', function () {"
                  " setTimeout(function () { document.body.setAttribute('data-status-before',"
                  " document.body.getAttribute('data-status'));"
                  " throw new Error('late_failure'); }, 0); });")
    attrs = _dom_state(browser, late, tmp_path)
    assert attrs.get("data-status-before") == "rendered", attrs
    assert attrs.get("data-status") == "errors" and "late_failure" in attrs["errors"], attrs


def test_view_page_reports_unreachable_3dmol(browser_and_js, tmp_path):
    """A page loading 3Dmol.js from a URL that cannot be fetched says so (status "errors")
    instead of waiting for a viewer that never comes."""
    browser, _ = browser_and_js
    page = tmp_path / "cdn.html"
    assert main(["view", str(Path(__file__).parent / "data" / "1A8O.pdb"), "-o", str(page)]) == 0
    missing = (tmp_path / "missing" / "3Dmol-min.js").as_uri()
    page.write_text(page.read_text().replace(viz.CDN_3DMOL, missing))
    attrs = _dom_state(browser, page, tmp_path)
    assert attrs.get("data-status") == "errors", attrs
    assert f"3Dmol.js could not be loaded from {missing}" in attrs["errors"], attrs
