"""Templates in the physics (foldlite.search.template_coords, template_model,
template_benchmark) on a small library built inside the test: chains cut from 1A8O, backbone
only as in ProMod3, some with mutated sequences (homologs on the same coordinates)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from datagen import mutate
from foldlite import constants as rc
from foldlite import metrics
from foldlite.data.dataset import ChainRecord, Dataset, write_dataset
from foldlite.protein import Protein, read_structure
from foldlite.search import template_benchmark as tb
from foldlite.search import templates as tpl
from foldlite.search.template_coords import BACKBONE37, template_coords
from foldlite.search.template_model import (TemplateModelConfig, TemplateWarning,
                                            model_from_templates)
from foldlite.sequences import parse_sequence

pytestmark = pytest.mark.usefixtures("fast_compile")


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FOLDLITE_CACHE_DIR", str(tmp_path / "cache"))


def _chain(p: Protein, cid: str, start: int, stop: int, seq: str | None = None) -> ChainRecord:
    """Residues start:stop of ``p`` as a backbone-only chain, optionally with another
    sequence (a homolog on the same coordinates)."""
    n = stop - start
    aatype = p.aatype[start:stop] if seq is None else np.array(
        [rc.restype_order[c] for c in seq], np.int32)
    mask = np.zeros((n, 37), np.float32)
    mask[:, BACKBONE37] = p.atom_mask[start:stop][:, BACKBONE37]
    return ChainRecord(chain_id=cid, aatype=aatype,
                       atom_positions=p.atom_positions[start:stop] * mask[..., None],
                       atom_mask=mask, residue_index=p.residue_index[start:stop],
                       insertion_code=np.array([""] * n), dssp=np.zeros(n, np.uint8))


@pytest.fixture(scope="module")
def library(tmp_path_factory, repo_root):
    """(index, dataset, the true protein of query Q_A): Q_A (1A8O), TWIN_B (its identical
    copy), HOM_A (the same coordinates, ~30% of the sequence mutated), PART_A (residues 10-50,
    ~35% mutated; the only "training" chain)."""
    tmp = tmp_path_factory.mktemp("tpl")
    p = read_structure(repo_root / "tests" / "data" / "1A8O.pdb")
    rng = np.random.default_rng(0)
    L = p.length
    recs = [_chain(p, "Q_A", 0, L), _chain(p, "TWIN_B", 0, L),
            _chain(p, "HOM_A", 0, L, mutate(p.sequence, 0.3, rng)),
            _chain(p, "PART_A", 10, 50, mutate(p.sequence[10:50], 0.35, rng))]
    ds = write_dataset(tmp / "lib", recs, source="test")
    index = tpl.open_index(tpl.build_index(ds, tmp / "idx"))
    return index, Dataset(ds), p


def _hit(index, ds, query: str, chain: str):
    hits = tpl.search_templates(parse_sequence(ds[query].sequence, query), index, max_hits=10)
    return next(h for h in hits if h.chain_id == chain)


def _network(p: Protein, seed: int = 0, sigma: float = 3.0) -> tuple[Protein, np.ndarray]:
    """A poor "network prediction" of ``p``: backbone with noise, rotated and moved away."""
    rng = np.random.default_rng(seed)
    mask = np.zeros((p.length, 37), np.float32)
    mask[:, BACKBONE37] = 1.0
    pos = p.atom_positions + rng.normal(0, sigma, (p.length, 1, 3)).astype(np.float32)
    c, s = np.cos(1.0), np.sin(1.0)
    rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]], np.float32)
    pos = (pos @ rot.T + 40.0) * mask[..., None]
    return (Protein(aatype=p.aatype, atom_positions=pos, atom_mask=mask,
                    residue_index=np.arange(1, p.length + 1)), np.full(p.length, 40.0))


def test_template_on_itself_reproduces_its_backbone(library):
    index, ds, p = library
    hit = _hit(index, ds, "Q_A", "Q_A")
    assert hit.identity == 1.0 and hit.coverage == 1.0
    tc = template_coords(hit, ds)
    assert tc.backbone.shape == (p.length, 4, 3) and tc.mask.all()
    np.testing.assert_allclose(tc.backbone, p.atom_positions[:, BACKBONE37], atol=1e-5)
    # a partial template: the query's residues 10-49 get PART_A's residues 0-39, which sit on
    # the same coordinates; nothing elsewhere
    part = template_coords(_hit(index, ds, "Q_A", "PART_A"), ds)
    assert not part.mask[:8].any() and not part.mask[52:].any()
    m = part.mask
    assert m.sum() >= 36
    np.testing.assert_allclose(part.ca[m], p.ca_positions[m], atol=1e-5)


def test_model_from_templates_is_sound_and_marks_template_residues(library):
    index, ds, p = library
    pred, plddt = _network(p)
    part = _hit(index, ds, "Q_A", "PART_A")
    res = model_from_templates(pred, plddt, [part], ds)
    assert res.used
    rep = res.report
    assert rep["fallback"] is None and rep["templates"][0]["chain_id"] == "PART_A"
    assert rep["refine"]["violations_after"] == 0 and res.refine_report.violations_after == 0
    n_t = int(template_coords(part, ds).mask.sum())
    assert rep["residues_from_templates"] == n_t == int(res.from_template.sum())
    assert rep["residues_from_network"] == p.length - n_t
    assert res.protein.length == p.length and res.protein.sequence == p.sequence
    # the confidence tells template residues from the network's
    assert res.confidence[res.from_template].min() > plddt.max()
    assert np.allclose(res.confidence[~res.from_template], plddt[~res.from_template])
    # side chains were built: a full-atom model
    assert res.protein.atom_mask.sum() > 4 * p.length
    # the template part is kept: close to the truth there, and the whole chain far better than
    # the noisy prediction
    ft = res.from_template
    assert metrics.rmsd(res.protein.ca_positions[ft], p.ca_positions[ft]) < 1.0
    assert (metrics.lddt_ca(res.protein.ca_positions, p.ca_positions)
            > metrics.lddt_ca(pred.ca_positions, p.ca_positions) + 0.2)


def test_hit_covering_nothing_falls_back_with_a_warning(library):
    index, ds, p = library
    pred, plddt = _network(p)
    hit = _hit(index, ds, "Q_A", "PART_A")
    empty = tpl.TemplateHit(chain_id="PART_A", evalue=1.0, score=0.0, identity=0.0,
                            coverage=0.0, query_to_template=np.full(p.length, -1, np.int32),
                            a3m="-" * p.length)
    with pytest.warns(TemplateWarning, match="no usable template.*PART_A: 0 aligned"):
        res = model_from_templates(pred, plddt, [empty], ds)
    assert not res.used and res.report["fallback"] and res.refine_report is None
    np.testing.assert_array_equal(res.protein.atom_positions, pred.atom_positions)
    assert (res.template_index == -1).all()
    with pytest.warns(TemplateWarning, match="no template hits"):
        assert not model_from_templates(pred, plddt, [], ds).used
    # a config that needs more aligned residues than the hit has
    with pytest.warns(TemplateWarning):
        res = model_from_templates(pred, plddt, [hit], ds,
                                   config=TemplateModelConfig(min_aligned=60))
    assert not res.used


def test_settings_never_use_self_or_near_identical(library):
    index, ds, p = library
    q = ds["Q_A"]
    cfg = tb.BenchmarkConfig(max_hits=10)
    rel, excluded = tb.allowed_hits(q, index, "relatives", frozenset({"PART_A"}), cfg)
    ids = [h.chain_id for h in rel]
    assert "Q_A" not in ids and "TWIN_B" not in ids and excluded == 2
    assert "HOM_A" in ids and all(h.identity < tb.MAX_IDENTITY for h in rel)
    rem, _ = tb.allowed_hits(q, index, "remote", frozenset({"PART_A"}), cfg)
    assert [h.chain_id for h in rem] == ["PART_A"]
    # the rule itself
    hom = next(h for h in rel if h.chain_id == "HOM_A")
    assert not tb.allowed(hom, "remote", "Q_A", frozenset())
    assert not tb.allowed(dataclasses.replace(hom, chain_id="Q_A"), "relatives", "Q_A",
                          frozenset({"Q_A"}))
    assert not tb.allowed(dataclasses.replace(hom, identity=0.95), "relatives", "Q_A",
                          frozenset())
    with pytest.raises(Exception, match="unknown template setting"):
        tb.allowed(hom, "nearby", "Q_A", frozenset())


def test_template_only_score_counts_unaligned_as_missing(library):
    index, ds, p = library
    tc = template_coords(_hit(index, ds, "Q_A", "PART_A"), ds)
    s = tb.score_ca(tc.ca, p.ca_positions, np.ones(p.length), tc.mask)
    frac = tc.mask.mean()
    # exact coordinates on the aligned residues: TM and GDT are the aligned fraction
    assert s["gdt_ts"] == pytest.approx(frac, abs=1e-6)
    assert s["tm_score"] == pytest.approx(frac, abs=1e-3)
    assert s["lddt_ca"] < 1.0
    full = tb.score_ca(p.ca_positions, p.ca_positions, np.ones(p.length))
    assert full["lddt_ca"] == pytest.approx(1.0) and full["tm_score"] == pytest.approx(1.0)


def test_summary_medians_and_the_good_subset():
    def row(setting, good, used, net, tmpl, only):
        sc = lambda v: {k: v for k in tb.METRICS}  # noqa: E731
        return {"setting": setting, "good_template": good, "used": used,
                "report": {"refine": {"violations_after": 0}} if used else {},
                "network": sc(net), "templates": sc(tmpl), "template_only": sc(only)}
    rows = [row("relatives", True, True, 0.3, 0.9, 0.8),
            row("relatives", True, True, 0.2, 0.7, 0.6),
            row("relatives", False, False, 0.4, 0.4, 0.0),
            row("remote", False, False, 0.3, 0.3, 0.0)]
    s = tb.summarize(rows)
    assert list(s) == ["remote", "relatives"]
    assert s["relatives"]["all"]["chains"] == 3 and s["relatives"]["good"]["chains"] == 2
    assert s["relatives"]["good"]["templates.tm_score.median"] == pytest.approx(0.8)
    assert s["relatives"]["all"]["network.lddt_ca.median"] == pytest.approx(0.3)
    assert s["remote"]["good"]["chains"] == 0
    assert s["remote"]["good"]["network.gdt_ts.median"] is None
    assert s["relatives"]["all"]["worse_than_network.lddt_ca"] == 0
    table = tb.format_table(s)
    assert "| relatives (template >= 30% id, 70% cov) | 2 | 2 | templates | 0.800 (0.800)" in table


# --------------------------------------------------------------------------------------------
# The command line: foldlite predict --msa-db --templates, foldlite evaluate --templates
# --------------------------------------------------------------------------------------------

def _ca_rmsd(model_pdb, truth: Protein) -> float:
    model = read_structure(model_pdb)
    ca = rc.atom_order["CA"]
    return float(metrics.rmsd(model.atom_positions[:, ca], truth.atom_positions[:, ca],
                              truth.atom_mask[:, ca] > 0))


def test_predict_cli_with_msa_search_and_templates(library, tmp_path, capsys):
    """`foldlite predict --msa-db DB --templates LIB`: the MSA is searched, templates found
    from it, the model built on the identical template (close to the truth although the
    untrained network's own model is not), and the outputs record both; a record without
    template hits is predicted without, with a note, in the same batch."""
    import json

    from conftest import tiny_weights
    from foldlite import outputs
    from foldlite.cli import main

    index, ds, truth = library
    rng = np.random.default_rng(5)
    query = truth.sequence
    db = "".join(f">hom{k}\n{mutate(query, 0.25, rng)}\n" for k in range(6))
    (tmp_path / "db.fasta").write_text(db + ">other\nMKVLAAGIVGLLLAGCSSNE\n")
    lonely = "".join(rng.choice(list("ACDEFGHIKLMNPQRSTVWY"), 40))
    (tmp_path / "in.fasta").write_text(f">Q\n{query}\n>lonely\n{lonely}\n")
    out = tmp_path / "out"
    rc_ = main(["predict", str(tmp_path / "in.fasta"), "-o", str(out), "--weights",
                str(tiny_weights()), "--msa-db", str(tmp_path / "db.fasta"), "--templates",
                str(index.dataset), "--refine-steps", "150"])
    err = capsys.readouterr().err
    assert rc_ == 0, err
    assert "record 'lonely': templates: no template hits" in err and "Traceback" not in err

    rows = {r["id"]: r for r in outputs.read_summary(out)}
    assert list(rows["Q"])[:7] == list(outputs.SUMMARY_COLUMNS)[:7]
    assert int(rows["Q"]["msa_depth"]) >= 6 and rows["lonely"]["msa_depth"] == "1"
    assert rows["Q"]["templates"].split(",")[0] in ("Q_A", "TWIN_B")
    assert rows["lonely"]["templates"] == "" and rows["lonely"]["status"] == "ok"

    q = out / "Q"
    for f in (outputs.MSA_A3M, outputs.COVERAGE_PNG, outputs.MODEL_PDB, outputs.UNREFINED_PDB):
        assert (q / f).is_file(), f
    assert (q / outputs.MSA_A3M).read_text().startswith(">Q\n")
    assert "coverage-plot" in (q / outputs.VIEW_HTML).read_text()
    s = json.loads((q / outputs.SCORES_JSON).read_text())
    assert s["msa"]["source"] == "search" and s["msa"]["num_sequences"] >= 6
    t = s["templates"]
    assert t["used"] and t["fallback"] is None and t["search"] == "profile"
    assert t["model"]["templates"][0]["identity"] == 1.0
    assert len(s["network_plddt"]) == truth.length and s["plddt"] != s["network_plddt"]
    # the identical template's backbone, refined; the untrained network alone is far off
    assert _ca_rmsd(q / outputs.MODEL_PDB, truth) < 1.5
    assert _ca_rmsd(q / outputs.UNREFINED_PDB, truth) > 5.0
    assert t["model"]["refine"]["violations_after"] == 0

    lone = json.loads((out / "lonely" / outputs.SCORES_JSON).read_text())
    assert lone["templates"]["used"] is False and lone["network_plddt"] is None
    assert "no template hits" in lone["templates"]["fallback"]


def test_predict_cli_homology_input_errors(library, tmp_path, capsys):
    """--msa with --msa-db, a missing database and a library that is no library: clear
    messages, exit status 2, nothing predicted."""
    from conftest import tiny_weights
    from foldlite.cli import main

    index, ds, truth = library
    (tmp_path / "in.fasta").write_text(f">Q\n{truth.sequence}\n")
    (tmp_path / "q.a3m").write_text(f">Q\n{truth.sequence}\n")
    (tmp_path / "empty").mkdir()
    base = ["predict", str(tmp_path / "in.fasta"), "--weights", str(tiny_weights()), "--quiet"]
    cases = [
        (["--msa", str(tmp_path / "q.a3m"), "--msa-db", str(index.dataset / "x.fa")],
         "not both"),
        (["--msa-db", str(tmp_path / "missing.fasta")], "sequence database not found"),
        (["--templates", str(tmp_path / "empty")], "neither a foldlite dataset"),
    ]
    for k, (extra, message) in enumerate(cases):
        assert main(base + ["-o", str(tmp_path / f"out{k}")] + extra) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err
        assert not list((tmp_path / f"out{k}").glob("*/model.pdb"))


def test_evaluate_cli_templates(library, tmp_path, capsys):
    """`foldlite evaluate --split test --templates`: both settings on a split of the library
    (Q_A as the test chain, PART_A the only training chain), table and templates.json."""
    import json

    from conftest import tiny_weights
    from foldlite.cli import main

    index, ds, truth = library
    (tmp_path / "s_test.txt").write_text("Q_A\n")
    (tmp_path / "s_train.txt").write_text("PART_A\n")
    rc_ = main(["evaluate", "--weights", str(tiny_weights()), "--split", "test", "--dataset",
                str(index.dataset), "--splits", str(tmp_path / "s"), "--templates",
                "--library", str(index.dataset), "--out", str(tmp_path / "ev")])
    out = capsys.readouterr().out
    assert rc_ == 0
    assert "| remote (all) | 1 |" in out and "| relatives (all) | 1 |" in out
    r = json.loads((tmp_path / "ev" / "templates.json").read_text())
    rows = {x["setting"]: x for x in r["rows"]}
    assert rows["remote"]["best"]["chain_id"] == "PART_A"  # the only training chain
    assert rows["relatives"]["best"]["chain_id"] == "HOM_A"  # identical ones excluded
    rel = rows["relatives"]
    assert rel["templates"]["tm_score"] > rel["network"]["tm_score"] + 0.2
    assert main(["evaluate", "--weights", str(tiny_weights()), "--structures",
                 str(tmp_path), "--templates"]) == 2
    assert "--templates needs --split" in capsys.readouterr().err
