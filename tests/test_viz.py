"""foldlite.viz: pLDDT colouring, comparison with a reference, plots, animation, the HTML page,
`foldlite view`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from foldlite import metrics, viz
from foldlite.cli import main
from foldlite.protein import pdb_residues, read_structure
from foldlite.viz import view3d

DATA = Path(__file__).parent / "data"
PDB = DATA / "1A8O.pdb"
BAND_COLOURS = [c for _, c, _ in viz.PLDDT_BANDS]


@pytest.fixture(scope="module")
def prot():
    return read_structure(PDB)


def _banded(prot):
    """The protein with pLDDT rising through all four bands."""
    plddt = np.linspace(20.0, 99.0, prot.length)
    return prot.with_plddt(plddt), plddt


def test_plddt_bands_follow_alphafold():
    bands = viz.plddt_band([95, 90.01, 90, 75, 70, 60, 50, 10, 0])
    assert bands.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 3]
    assert BAND_COLOURS == ["#0053D6", "#65CBF3", "#FFDB13", "#FF7D45"]
    assert viz.plddt_colors([99, 20]) == ["#0053D6", "#FF7D45"]


def test_show_colours_residues_by_band_with_legend(prot):
    p, plddt = _banded(prot)
    html = viz.show(p)._make_html()
    for _, colour, label in viz.PLDDT_BANDS:
        assert colour in html and label in html
    # every residue is in exactly one band selection, with the right colour
    text = viz.pdb_text(p)
    residues = pdb_residues(text)
    assert len(residues) == prot.length
    sel = view3d._residue_selections(residues, viz.plddt_band(plddt))
    covered = sorted(r for sels in sel.values() for s in sels for r in s["resi"])
    assert covered == sorted(r.resi for r in residues)
    # explicit plddt overrides B-factors; wrong length is an error
    html2 = viz.show(prot, plddt=np.full(prot.length, 95.0), legend=False)._make_html()
    assert "#0053D6" in html2 and "#FF7D45" not in html2 and "Very high" not in html2
    with pytest.raises(ValueError, match="plddt has 3 values"):
        viz.show(prot, plddt=[1, 2, 3])


@pytest.mark.parametrize("color,expect", [("chain", "\"colorscheme\": \"chain\""),
                                          ("ss", "ssJmol"), ("rainbow", "spectrum")])
def test_show_other_colourings_and_styles(prot, color, expect):
    html = viz.show(prot, color=color, style="cartoon+stick")._make_html()
    assert expect in html and "\"stick\"" in html and "\"cartoon\"" in html
    assert "Very high" not in html  # the legend is for pLDDT only


def test_show_reads_files_and_rejects_bad_input(tmp_path):
    assert "addModel" in viz.show(PDB)._make_html()
    cif = viz.show(DATA / "1A8O.cif.gz", color="chain")._make_html()
    assert "ATOM" in cif
    with pytest.raises(ValueError, match="unknown color"):
        viz.show(PDB, color="plaid!")
    with pytest.raises(ValueError, match="unknown style"):
        viz.show(PDB, style="ribbonz")
    from foldlite.errors import InputError
    with pytest.raises(InputError, match="not found"):
        viz.show(tmp_path / "nope.pdb")
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(InputError, match="not a structure"):
        viz.show(tmp_path / "x.txt")


def test_compare_recovers_a_rigid_motion(prot):
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.linalg.det(q))
    moved = prot.replace(atom_positions=(prot.atom_positions @ q.T + [30.0, -5.0, 12.0])
                         * prot.atom_mask[..., None])
    sup = viz.compare(moved, prot)
    assert sup.num_aligned == prot.length
    assert sup.rmsd < 1e-3 and sup.tm_score == pytest.approx(1.0, abs=1e-4)
    np.testing.assert_allclose(sup.moved.atom_positions, prot.atom_positions, atol=2e-3)

    noisy = prot.replace(atom_positions=(prot.atom_positions + rng.normal(0, 1.0, (prot.length, 37, 3)))
                         * prot.atom_mask[..., None])
    sup = viz.compare(noisy, prot)
    assert sup.rmsd == pytest.approx(metrics.rmsd(noisy.ca_positions, prot.ca_positions), rel=1e-6)
    assert sup.tm_score == pytest.approx(metrics.tm_score(noisy.ca_positions, prot.ca_positions),
                                         abs=1e-6)


def test_compare_pairs_residues_of_different_sequences(prot):
    """A prediction of a fragment: paired by sequence, TM-score normalised by the reference."""
    frag = prot.replace(aatype=prot.aatype[10:60], atom_positions=prot.atom_positions[10:60],
                        atom_mask=prot.atom_mask[10:60], residue_index=prot.residue_index[10:60],
                        b_factors=prot.b_factors[10:60], insertion_code=prot.insertion_code[10:60])
    sup = viz.compare(frag, prot)
    assert sup.num_aligned == 50
    np.testing.assert_array_equal(sup.pairs[:, 1], np.arange(10, 60))
    assert sup.rmsd < 1e-3
    assert sup.tm_score == pytest.approx(50 / prot.length, abs=0.01)


def test_overlay_title_has_rmsd_and_tm(prot):
    p, _ = _banded(prot)
    shifted = p.replace(atom_positions=(p.atom_positions + 7.0) * p.atom_mask[..., None])
    html = viz.overlay(shifted, PDB)._make_html()
    assert "RMSD 0.00" in html and "TM-score 1.000" in html
    assert viz.REFERENCE_COLOR in html and "#0053D6" in html
    assert html.count("addModel(") == 2


def test_plots_have_axes_and_colour_bars():
    rng = np.random.default_rng(1)
    fig = viz.plot_plddt(np.linspace(10, 100, 40), title="t")
    ax = fig.axes[0]
    assert ax.get_xlabel() == "Residue" and ax.get_ylabel() == "pLDDT" and ax.get_ylim() == (0, 100)
    assert len(fig.axes) == 1 and len(ax.child_axes) == 1  # the band colour bar
    assert viz.figure_png(fig)[:8] == b"\x89PNG\r\n\x1a\n"
    fig = viz.plot_plddt({"seed 0": rng.uniform(0, 100, 30), "seed 1": rng.uniform(0, 100, 30)})
    assert len(fig.axes[0].get_legend().get_texts()) == 2
    fig = viz.plot_pae(rng.uniform(0, 31, (25, 25)))
    assert len(fig.axes[0].child_axes) == 1  # the colour bar
    assert "error" in fig.axes[0].child_axes[0].get_ylabel()
    assert viz.figure_png(fig)[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="square"):
        viz.plot_pae(np.zeros((3, 4)))


def test_pae_scale_matches_the_pae_head():
    """plots.py imports only numpy and matplotlib (a leaf), so it keeps its own copy of the PAE
    scale's upper end: it must be the PAE head's last bin centre."""
    from foldlite.model import heads

    assert viz.MAX_PAE == heads.MAX_PAE


def test_coverage_rows_and_plot():
    from foldlite.viz.plots import coverage_rows, plot_coverage

    gap = 21
    msa = np.array([[0, 1, 2, 3, 4, 5],
                    [0, 1, 9, 9, gap, gap],     # covers 4, 2 identical
                    [gap, gap, gap, gap, gap, gap],
                    [0, 1, 2, 3, 4, 9]])        # covers 6, 5 identical
    identity, covered = coverage_rows(msa, gap)
    np.testing.assert_allclose(identity, [1.0, 0.5, 0.0, 5 / 6])
    assert covered.sum(axis=1).tolist() == [6, 4, 0, 6]
    qmap = np.array([-1, -1, 0, 1, 2, 3])
    fig = plot_coverage(msa, gap=gap, templates={"1ABC_A": (qmap, 0.42)})
    ax = fig.axes[0]
    img = ax.get_images()[0].get_array()
    # rows sorted by identity, a gap is blank (masked), a covered cell holds its row's identity
    np.testing.assert_allclose(np.ma.filled(img, -1)[:, 0], [1.0, 5 / 6, 0.5, -1])
    bottom = next(c for c in ax.child_axes if c.get_images())
    assert [t.get_text() for t in bottom.get_yticklabels()] == ["1ABC_A"]
    assert np.isnan(bottom.get_images()[0].get_array().filled(np.nan)[0, :2]).all()
    assert "4 sequences, 1 template" in ax.get_title()
    assert viz.figure_png(fig)[:4] == b"\x89PNG"
    # templates only (no MSA): the query row alone
    assert plot_coverage(None, templates={"t": (qmap, 0.3)}).axes
    with pytest.raises(ValueError, match="MSA or at least one template"):
        plot_coverage(None)


def test_animate_frames(prot):
    frames = [prot.replace(atom_positions=(prot.atom_positions + 0.1 * i) * prot.atom_mask[..., None])
              for i in range(3)]
    html = viz.animate(frames, color="rainbow")._make_html()
    assert "addModelsAsFrames" in html and "animate" in html
    assert html.count("MODEL ") == 3 and html.count("ENDMDL") == 3
    coords = np.stack([f.atom_positions for f in frames])
    html = viz.animate(coords, protein=prot.with_plddt(np.full(prot.length, 80.0)))._make_html()
    assert html.count("ENDMDL") == 3 and "#65CBF3" in html
    with pytest.raises(ValueError, match="template protein"):
        viz.animate(coords)


def test_html_page_offline_and_cdn(tmp_path, prot):
    p, plddt = _banded(prot)
    js = tmp_path / "3Dmol-min.js"
    js.write_text("window.$3Dmol = {marker: 'LOCAL-3DMOL'}; // </script> inside a string\n")
    pae = np.random.default_rng(0).uniform(0, 30, (prot.length, prot.length))
    page = viz.html_page(p, plddt=plddt, pae=pae, title="<b>x</b>", js_path=js,
                         info={"Length": prot.length})
    assert "LOCAL-3DMOL" in page and viz.CDN_3DMOL not in page.split("<body>")[0]
    assert "<\\/script> inside" in page  # the inlined library cannot close its script tag
    assert "&lt;b&gt;x&lt;/b&gt;" in page and "<b>x</b>" not in page
    assert page.count("data:image/png;base64,") == 2
    for colour in BAND_COLOURS:
        assert colour in page
    cdn = viz.html_page(p, title="x")
    assert viz.CDN_3DMOL in cdn and "LOCAL-3DMOL" not in cdn
    assert cdn.count("data:image/png;base64,") == 1  # pLDDT plot only, no PAE given
    from foldlite.errors import InputError
    with pytest.raises(InputError, match="3Dmol.js not found"):
        viz.html_page(p, js_path=tmp_path / "missing.js")


def test_view_command(tmp_path, prot, capsys):
    from test_outputs import make_prediction

    from foldlite import outputs
    out = tmp_path / "view.html"
    assert main(["view", str(PDB), "-o", str(out)]) == 0
    assert out.read_text().startswith("<!DOCTYPE html>")
    # a predict output folder with two records: --record picks one
    batch = tmp_path / "batch"
    for name in ("a", "b"):
        outputs.write_record(batch, make_prediction(prot, name=name), html=False)
    assert main(["view", str(batch), "-o", str(out)]) == 2
    assert "pick one with --record" in capsys.readouterr().err
    assert main(["view", str(batch), "--record", "b", "-o", str(out)]) == 0
    page = out.read_text()
    assert "<h1>b id</h1>" in page and page.count("data:image/png;base64,") == 2
    assert main(["view", str(batch / "a"), "-o", str(out), "--color", "rainbow"]) == 0
    assert "spectrum" in out.read_text()
    assert main(["view", str(tmp_path / "missing"), "-o", str(out)]) == 2
    assert "not found" in capsys.readouterr().err
    js = tmp_path / "3dmol.js"
    js.write_text("window.$3Dmol = {};")
    assert main(["view", str(PDB), "-o", str(out), "--3dmol-js", str(js)]) == 0
    assert viz.CDN_3DMOL not in out.read_text().split("<body>")[0]
    json.dumps(outputs.read_scores(batch / "a"))  # scores stay plain JSON


def test_view_output_is_checked_before_the_work(tmp_path, capsys, monkeypatch):
    """-o an existing folder writes view.html into it; -o under a file is one error, before any
    page is made."""
    from foldlite.commands import view
    folder = tmp_path / "pages"
    folder.mkdir()
    assert main(["view", str(PDB), "-o", str(folder)]) == 0
    assert (folder / "view.html").read_text().startswith("<!DOCTYPE html>")
    assert str(folder / "view.html") in capsys.readouterr().out

    def no_work(*a, **k):
        raise AssertionError("the page was made before the output was checked")

    monkeypatch.setattr(view, "html_page", no_work)
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    assert main(["view", str(PDB), "-o", str(blocker / "view.html")]) == 2
    err = capsys.readouterr().err
    assert "is not a folder" in err and "Traceback" not in err and len(err.splitlines()) == 1
    (folder / "view.html").unlink()
    (folder / "view.html").mkdir()
    assert main(["view", str(PDB), "-o", str(folder)]) == 2
    assert "is a folder" in capsys.readouterr().err


def test_plots_is_a_leaf_module():
    """foldlite.viz.plots imports only numpy and matplotlib (anything may draw the plots)."""
    import ast
    tree = ast.parse(Path(viz.plots.__file__).read_text())
    roots = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
             for a in n.names}
    roots |= {n.module.split(".")[0] for n in ast.walk(tree)
              if isinstance(n, ast.ImportFrom) and n.module}
    assert roots <= {"__future__", "io", "typing", "numpy", "matplotlib"}, roots


def test_training_curves(tmp_path):
    log = tmp_path / "metrics.jsonl"
    lines = [{"kind": "start", "step": 0}]
    for step in range(2, 12, 2):
        lines.append({"kind": "train", "step": step, "loss": 5.0 / step, "fape": 2.0 / step,
                      "lddt_ca": 0.05 * step})
    lines.append({"kind": "eval", "step": 10, "lddt_ca": 0.4, "tm_score": 0.3})
    log.write_text("\n".join(json.dumps(l) for l in lines) + "\n\n")
    recs = viz.read_training_log(log)
    assert len(recs) == len(lines)
    fig = viz.plot_training_curves(log)
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert titles == ["loss", "fape", "lddt_ca", "tm_score"]
    lddt_ax = fig.axes[2]
    assert [l.get_label() for l in lddt_ax.get_lines()] == ["train", "validation"]
    np.testing.assert_allclose(lddt_ax.get_lines()[0].get_ydata(), [0.1, 0.2, 0.3, 0.4, 0.5])
    assert viz.figure_png(fig)[:4] == b"\x89PNG"
    from foldlite.errors import InputError
    (tmp_path / "bad.jsonl").write_text('{"kind": "train"}\nnot json\n')
    with pytest.raises(InputError, match="line 2"):
        viz.read_training_log(tmp_path / "bad.jsonl")
    with pytest.raises(ValueError, match="no train or eval"):
        viz.plot_training_curves([{"kind": "start"}])


def test_view_command_does_not_load_jax():
    """`foldlite view` and the views load without JAX (only ``compare``/``overlay`` need it)."""
    import subprocess
    import sys
    code = ("import sys, foldlite.commands.view, foldlite.viz; "
            "assert 'jax' not in sys.modules, 'jax imported'")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       cwd=Path(__file__).resolve().parents[1])
    assert r.returncode == 0, r.stderr[-2000:]
