"""What `foldlite predict` writes: one folder per record, and a summary of the batch.

Per record, ``OUTDIR/<safe id>/`` holds:

  model.pdb, model.cif   final all-atom model (refined unless refinement was off), pLDDT in the
                         B-factor column of every atom
  unrefined.pdb          the model as the network predicted it (written when refinement ran)
  ranked_<k>.pdb         with several seeds: the network's model of the k-th best seed by mean
                         pLDDT (unrefined; ranked_0 is the seed that model.pdb was refined from)
  scores.json            pLDDT (mean and per residue), pTM, PAE [L, L], ranking, refinement
                         report, timings per stage, seed, weights' name and sha256, versions,
                         device; the MSA (source, database, search settings, depth) and the
                         templates (hits, the ones used, the template model's report); with
                         templates, ``plddt`` is the template model's confidence and
                         ``network_plddt`` the network's own pLDDT
  msa.a3m                the searched MSA (with --msa-db)
  plddt.png, pae.png     the confidence plots
  coverage.png           MSA and template coverage per residue (with an MSA or templates)
  view.html              a standalone page with the 3D view coloured by pLDDT and the plots
  .complete              the completion marker (JSON: file names and sizes), written last

A record folder is built under a hidden temporary name in OUTDIR and renamed into place once
everything, the marker included, has been written. A killed run therefore never leaves a folder
that looks complete; ``is_complete`` checks the marker and that every file it lists is present
with its recorded size.

``OUTDIR/summary.tsv`` has one row per record: id, dir, length, mean_plddt, ptm, msa_depth
(sequences in the MSA, empty without one), templates (the chain ids of the templates used,
comma-separated), status (``ok``, ``cached`` for a complete record that a re-run skipped,
``failed``), time_s, message.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from foldlite import fileio
from foldlite import protein as protein_mod
from foldlite import viz
from foldlite.errors import printable

if TYPE_CHECKING:  # pragma: no cover - the result type only names what is written here
    from foldlite.results import Prediction

MODEL_PDB = "model.pdb"
MODEL_CIF = "model.cif"
UNREFINED_PDB = "unrefined.pdb"
SCORES_JSON = "scores.json"
PLDDT_PNG = "plddt.png"
PAE_PNG = "pae.png"
COVERAGE_PNG = "coverage.png"
MSA_A3M = "msa.a3m"
VIEW_HTML = "view.html"
COMPLETE_MARKER = ".complete"
SUMMARY_TSV = "summary.tsv"
SUMMARY_COLUMNS = ("id", "dir", "length", "mean_plddt", "ptm", "msa_depth", "templates",
                   "status", "time_s", "message")
#: Names a record folder may not take (they are files of OUTDIR itself).
RESERVED_NAMES = frozenset({SUMMARY_TSV})
SCORES_FORMAT = "foldlite.scores/1"


def ranked_name(rank: int) -> str:
    return f"ranked_{rank}.pdb"


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------

def is_complete(record_dir: str | os.PathLike) -> bool:
    """True when ``record_dir`` holds a completion marker and every file it lists, unchanged in size."""
    record_dir = Path(record_dir)
    marker = record_dir / COMPLETE_MARKER
    try:
        data = json.loads(marker.read_text(encoding="utf-8"))
        files = data["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    if not isinstance(files, dict) or not files:
        return False
    for name, size in files.items():
        p = record_dir / name
        try:
            if p.stat().st_size != int(size):
                return False
        except (OSError, ValueError, TypeError):
            return False
    return True


def read_scores(record_dir: str | os.PathLike) -> dict | None:
    """The record's scores.json as a dict, or None when it is missing or unreadable."""
    p = Path(record_dir) / SCORES_JSON
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def find_model_file(record_dir: str | os.PathLike) -> Path | None:
    """The record's model (model.pdb, else model.cif), or None if the folder holds neither."""
    d = Path(record_dir)
    for name in (MODEL_PDB, MODEL_CIF):
        if (d / name).is_file():
            return d / name
    return None


def summary_info(scores: dict) -> dict[str, Any]:
    """A few human-readable rows from scores.json (for the HTML page)."""
    info: dict[str, Any] = {}
    if not scores:
        return info
    for key, label, fmt in (("id", "Record", "{}"), ("length", "Length", "{}"),
                            ("mean_plddt", "Mean pLDDT", "{:.1f}"), ("ptm", "pTM", "{:.3f}"),
                            ("seed", "Seed", "{}")):
        v = scores.get(key)
        if v is not None:
            info[label] = fmt.format(v)
    w = scores.get("weights") or {}
    if w.get("name"):
        info["Weights"] = f"{w['name']} (sha256 {str(w.get('sha256', ''))[:12]})"
    ref = scores.get("refinement")
    if isinstance(ref, dict):
        info["Refined"] = "yes"
    elif scores.get("refined") is False:
        info["Refined"] = "no"
    msa = scores.get("msa") or {}
    if msa.get("num_sequences") is not None:
        where = msa.get("database") or msa.get("path")
        info["MSA"] = (f"{msa['num_sequences']} sequences"
                       + (f" ({msa.get('engine', 'search')} in {Path(where).name})"
                          if msa.get("source") == "search" and where else ""))
    tpl = scores.get("templates") or {}
    if tpl:
        used = (tpl.get("model") or {}).get("templates") or []
        info["Templates"] = (", ".join(f"{t['chain_id']} ({100 * t['identity']:.0f}% id, "
                                       f"{t['used']} residues)" for t in used)
                             if used else f"none used ({tpl.get('fallback') or 'no hits'})")
    v = scores.get("versions") or {}
    if v:
        info["Versions"] = ", ".join(f"{k} {val}" for k, val in v.items())
    return info


# ---------------------------------------------------------------------------------------------
# Writing one record
# ---------------------------------------------------------------------------------------------

def _jsonable(obj: Any) -> Any:
    """Plain JSON values for scores.json: float arrays to 4 decimals, NaN/inf as None, no
    trajectory (``fileio.jsonable``)."""
    return fileio.jsonable(obj, decimals=4, drop=("trajectory",))


def _report_dict(report: Any) -> dict | None:
    """A refinement report as JSON (its own ``to_dict`` when it has one; no trajectory)."""
    if report is None:
        return None
    if hasattr(report, "to_dict"):
        return _jsonable(report.to_dict())
    return _jsonable(report)


def scores_dict(pred: "Prediction", files: dict[str, str] | None = None) -> dict[str, Any]:
    """The content of scores.json for a prediction."""
    plddt = np.asarray(pred.plddt, np.float64)
    pae = None if pred.pae is None else np.round(np.asarray(pred.pae, np.float64), 2)
    ranking = []
    for rank, m in enumerate(pred.ranked):
        ranking.append({"rank": rank, "seed": int(m.seed), "mean_plddt": round(float(m.mean_plddt), 3),
                        "ptm": None if m.ptm is None else round(float(m.ptm), 4),
                        "file": (files or {}).get(f"ranked_{rank}")})
    return {
        "format": SCORES_FORMAT,
        "id": pred.id,
        "name": pred.name,
        "description": pred.description,
        "sequence": pred.sequence,
        "length": len(pred.sequence),
        "mean_plddt": round(float(plddt.mean()), 3) if plddt.size else None,
        "ptm": None if pred.ptm is None else round(float(pred.ptm), 4),
        "max_pae": None if pae is None else float(pae.max()) if pae.size else None,
        "plddt": np.round(plddt, 2).tolist(),
        "network_plddt": (None if pred.network_plddt is None
                          else np.round(np.asarray(pred.network_plddt, np.float64), 2).tolist()),
        "pae": None if pae is None else pae.tolist(),
        "seed": int(pred.seed),
        "ranking": ranking,
        "refined": pred.refine_report is not None,
        "refinement": _report_dict(pred.refine_report),
        "timings": {k: round(float(v), 4) for k, v in pred.timings.items()},
        **_jsonable(pred.info),
        "files": files or {},
    }


def _protein_with_plddt(protein: Any, plddt: np.ndarray) -> Any:
    """``protein`` with the per-residue pLDDT [L] in every present atom's B-factor."""
    return protein.with_plddt(np.asarray(plddt, np.float32))


def _short(text: str, n: int = 40) -> str:
    return text if len(text) <= n else text[:n - 3] + "..."


def _stale_siblings(outdir: Path, name: str) -> list[Path]:
    prefix = f".{name}."
    return [p for p in outdir.iterdir() if p.name.startswith(prefix) and p.is_dir()
            and p.name.endswith((".partial", ".old"))
            and "." not in p.name[len(prefix):].rsplit(".", 1)[0]]


def write_record(outdir: str | os.PathLike, pred: "Prediction", *,
                 js_path: str | os.PathLike | None = None, html: bool = True,
                 plots: bool = True) -> Path:
    """Write every output of ``pred`` into ``outdir/pred.name`` atomically; returns that folder.

    An existing folder of the same name is replaced (the caller decides whether to overwrite).
    """
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    name = pred.name
    if not name or name in (".", "..") or "/" in name or os.sep in name or name in RESERVED_NAMES:
        raise ValueError(f"unsafe record folder name {name!r}")
    final = outdir / name
    for stale in _stale_siblings(outdir, name):
        shutil.rmtree(stale, ignore_errors=True)
    t_start = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".partial", dir=outdir))
    try:
        files: dict[str, str] = {}
        model = _protein_with_plddt(pred.protein, pred.plddt)
        fileio.write_text(tmp / MODEL_PDB, protein_mod.to_pdb_string(model))
        fileio.write_text(tmp / MODEL_CIF, protein_mod.to_mmcif_string(model))
        files.update(model_pdb=MODEL_PDB, model_cif=MODEL_CIF)
        if pred.refine_report is not None and pred.unrefined is not None:
            network_plddt = pred.plddt if pred.network_plddt is None else pred.network_plddt
            fileio.write_text(tmp / UNREFINED_PDB, protein_mod.to_pdb_string(
                _protein_with_plddt(pred.unrefined, network_plddt)))
            files["unrefined_pdb"] = UNREFINED_PDB
        if len(pred.ranked) > 1:
            for rank, m in enumerate(pred.ranked):
                fileio.write_text(tmp / ranked_name(rank), protein_mod.to_pdb_string(
                    _protein_with_plddt(m.protein, m.plddt)))
                files[f"ranked_{rank}"] = ranked_name(rank)
        if pred.msa_a3m is not None:
            fileio.write_text(tmp / MSA_A3M, pred.msa_a3m)
            files["msa_a3m"] = MSA_A3M
        pngs: dict[str, bytes] = {}
        if plots and (pred.msa is not None or pred.template_maps):
            pngs["coverage_png"] = viz.figure_png(viz.plot_coverage(
                None if pred.msa is None else pred.msa.sequences, templates=pred.template_maps,
                title=f"{_short(printable(pred.id))}: MSA and template coverage"))
            fileio.write_bytes(tmp / COVERAGE_PNG, pngs["coverage_png"])
            files["coverage_png"] = COVERAGE_PNG
        if plots:
            pngs["plddt_png"] = viz.figure_png(viz.plot_plddt(
                pred.plddt, title=f"{_short(printable(pred.id))}: pLDDT (mean {float(np.mean(pred.plddt)):.1f})"))
            fileio.write_bytes(tmp / PLDDT_PNG, pngs["plddt_png"])
            files["plddt_png"] = PLDDT_PNG
            if pred.pae is not None:
                pngs["pae_png"] = viz.figure_png(viz.plot_pae(
                    pred.pae, title=f"{_short(printable(pred.id))}: predicted aligned error"))
                fileio.write_bytes(tmp / PAE_PNG, pngs["pae_png"])
                files["pae_png"] = PAE_PNG
        timings = dict(pred.timings)
        timings["outputs"] = time.perf_counter() - t_start  # structures and plots
        scores = scores_dict(dataclasses.replace(pred, timings=timings), files)
        fileio.write_json(tmp / SCORES_JSON, scores, indent=1)
        if html:
            viz.write_html(tmp / VIEW_HTML, model, plddt=pred.plddt, pae=pred.pae,
                           title=printable(pred.id),
                           info=summary_info(scores), js_path=js_path, **pngs)
            files["view_html"] = VIEW_HTML
        sizes = {p.name: p.stat().st_size for p in tmp.iterdir() if p.is_file()}
        fileio.write_json(tmp / COMPLETE_MARKER, {"format": SCORES_FORMAT, "files": sizes})
        os.chmod(tmp, 0o755)
        _swap_into_place(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _swap_into_place(tmp: Path, final: Path) -> None:
    """Rename the finished folder ``tmp`` to ``final``, replacing an existing ``final``."""
    old = None
    if final.exists() or final.is_symlink():
        if final.is_symlink() or not final.is_dir():
            final.unlink()
        else:
            old = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".old", dir=final.parent))
            os.rmdir(old)
            os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# summary.tsv
# ---------------------------------------------------------------------------------------------

@dataclasses.dataclass
class SummaryRow:
    id: str
    dir: str
    length: int | None
    mean_plddt: float | None
    ptm: float | None
    status: str            # ok | cached | failed
    time_s: float | None
    message: str = ""
    msa_depth: int | None = None
    templates: str = ""  # chain ids of the templates used, comma-separated

    def cells(self) -> list[str]:
        def fmt(v: Any, f: str) -> str:
            return "" if v is None else f.format(v)
        # no tabs, newlines or terminal escape sequences inside a cell (the original id is in
        # scores.json)
        clean = lambda s: printable(" ".join(str(s).split()))
        return [clean(self.id), clean(self.dir), fmt(self.length, "{}"),
                fmt(self.mean_plddt, "{:.2f}"), fmt(self.ptm, "{:.4f}"),
                fmt(self.msa_depth, "{}"), clean(self.templates), self.status,
                fmt(self.time_s, "{:.2f}"), clean(self.message)]

    @staticmethod
    def homology(info: dict) -> dict[str, Any]:
        """``msa_depth`` and ``templates`` of a prediction's ``info`` (or its scores.json)."""
        used = ((info.get("templates") or {}).get("model") or {}).get("templates") or []
        return {"msa_depth": (info.get("msa") or {}).get("num_sequences"),
                "templates": ",".join(str(u["chain_id"]) for u in used)}

    @classmethod
    def from_prediction(cls, pred: "Prediction", status: str, time_s: float) -> "SummaryRow":
        """The row of a record just predicted."""
        return cls(pred.id, pred.name, pred.length, pred.mean_plddt, pred.ptm, status, time_s,
                   **cls.homology(pred.info))

    @classmethod
    def from_scores(cls, record_dir: Path, status: str = "cached") -> "SummaryRow":
        """The row of a record written earlier (its scores.json)."""
        s = read_scores(record_dir) or {}
        t = (s.get("timings") or {}).get("total")
        return cls(id=str(s.get("id", record_dir.name)), dir=record_dir.name,
                   length=s.get("length"), mean_plddt=s.get("mean_plddt"), ptm=s.get("ptm"),
                   status=status, time_s=t, **cls.homology(s))


def read_summary(outdir: str | os.PathLike) -> list[dict[str, str]]:
    """Rows of OUTDIR/summary.tsv as dicts (empty when absent)."""
    p = Path(outdir) / SUMMARY_TSV
    if not p.is_file():
        return []
    with open(p, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def remove_stale_files(outdir: str | os.PathLike) -> list[Path]:
    """Remove what a killed run left in OUTDIR: temporary files of the summary
    (``.summary.tsv.*.tmp``) and of the writability probe (record folders' leftovers,
    ``.<name>.*.partial``, are removed when the record is written again)."""
    return (fileio.remove_stale_temporaries(outdir, SUMMARY_TSV)
            + fileio.remove_stale_temporaries(outdir, "foldlite-probe"))


def write_summary(outdir: str | os.PathLike, rows: Sequence[SummaryRow],
                  keep_existing: bool = True) -> Path:
    """Write OUTDIR/summary.tsv atomically: ``rows`` in order, then earlier rows of other records."""
    outdir = Path(outdir)
    seen = {r.dir for r in rows}
    lines = [list(SUMMARY_COLUMNS)] + [r.cells() for r in rows]
    if keep_existing:
        for old in read_summary(outdir):
            if old.get("dir") and old["dir"] not in seen and (outdir / old["dir"]).is_dir():
                lines.append([old.get(c, "") or "" for c in SUMMARY_COLUMNS])
                seen.add(old["dir"])
    buf = io.StringIO()
    w = csv.writer(buf, delimiter="\t", lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    w.writerows(lines)
    path = outdir / SUMMARY_TSV
    fileio.write_text(path, buf.getvalue())
    return path


__all__ = [
    "MODEL_PDB", "MODEL_CIF", "UNREFINED_PDB", "SCORES_JSON", "PLDDT_PNG", "PAE_PNG",
    "COVERAGE_PNG", "MSA_A3M", "VIEW_HTML",
    "COMPLETE_MARKER", "SUMMARY_TSV", "SUMMARY_COLUMNS", "RESERVED_NAMES", "ranked_name",
    "is_complete", "read_scores", "find_model_file", "summary_info", "scores_dict",
    "write_record", "SummaryRow", "read_summary", "write_summary", "remove_stale_files",
]
