"""A foldlite dataset from a directory of mmCIF/PDB files (the general path).

``build_from_structures(in_dir, out_dir)`` reads every ``.cif``/``.mmcif``/``.pdb``/``.ent`` file
(optionally ``.gz``) below ``in_dir`` with ``foldlite.protein.read_structure_chains`` (first
model; all atoms present are kept in atom37), keeps one chain per entry (``chains='first'``: the
first protein chain that passes the filters) or every protein chain (``chains='all'``), and
writes a ``foldlite.data.dataset`` directory. DSSP is assigned from the backbone with
``foldlite.data.dssp``. What is skipped is counted with a reason:

* files that fail to parse (the reader's message is kept in the report);
* non-protein chains (nucleic acids, ligand- or water-only chains);
* chains with fewer than ``min_length`` residues with a CA atom;
* chains with fewer than half standard amino acids (mostly UNK/modified residues).

``download_pdb_entries(ids, dest)`` fetches entries from the RCSB with ``Bio.PDB.PDBList``.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import os
import re
import socket
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from foldlite import constants as rc
from foldlite.data import dataset as ds
from foldlite.errors import InputError
from foldlite.protein import read_structure_chains

STRUCTURE_SUFFIXES = (".cif", ".mmcif", ".pdb", ".ent")
_CA = rc.atom_order["CA"]


def find_structure_files(in_dir: str | os.PathLike) -> list[Path]:
    """Structure files below ``in_dir`` (recursively), sorted by path."""
    in_dir = Path(in_dir)
    if not in_dir.is_dir():
        raise InputError(f"{in_dir}: input directory not found")
    out = []
    for p in sorted(in_dir.rglob("*")):
        name = p.name.lower()
        if name.endswith(".gz"):
            name = name[:-3]
        if p.is_file() and name.endswith(STRUCTURE_SUFFIXES) and not p.name.startswith("."):
            out.append(p)
    return out


def entry_name(path: Path) -> str:
    """``1abc.cif.gz`` -> ``1ABC`` (file name without structure/gzip suffixes; safe characters;
    upper case when it looks like a PDB id)."""
    name = path.name
    if name.lower().endswith(".gz"):
        name = name[:-3]
    stem = name.rsplit(".", 1)[0] if "." in name else name
    if stem.lower().startswith("pdb") and len(stem) == 7:  # pdb1abc.ent
        stem = stem[3:]
    stem = re.sub(r"[^A-Za-z0-9._-]", "-", stem) or "entry"
    return stem.upper() if re.fullmatch(r"[0-9][A-Za-z0-9]{3}", stem) else stem


def file_chain_ids(path: Path) -> list[str]:
    """Chain ids with any atom in the first model of a PDB/mmCIF file (a light text scan, to
    count the non-protein chains that the structure reader leaves out)."""
    opener: Callable[..., Any] = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8", errors="replace") as fh:
            text = fh.read()
    except (OSError, EOFError):
        return []
    if re.search(r"^data_", text, re.M) and "_atom_site." in text:
        return _mmcif_chain_ids(text)
    chains: list[str] = []
    for line in text.splitlines():
        if line.startswith("ENDMDL"):
            break
        if line.startswith(("ATOM  ", "HETATM")) and len(line) > 21:
            c = line[21].strip() or " "
            if c not in chains:
                chains.append(c)
    return chains


def _mmcif_chain_ids(text: str) -> list[str]:
    from Bio.PDB.MMCIF2Dict import MMCIF2Dict  # deferred: Biopython takes a while to import

    try:
        d = MMCIF2Dict(io.StringIO(text))
    except Exception:  # malformed files are reported by the reader
        return []
    auth = d.get("_atom_site.auth_asym_id") or d.get("_atom_site.label_asym_id") or []
    models = d.get("_atom_site.pdbx_PDB_model_num") or ["1"] * len(auth)
    first = models[0] if models else "1"
    chains: list[str] = []
    for c, m in zip(auth, models):
        if m != first:
            break
        if c not in chains:
            chains.append(c)
    return chains


@dataclasses.dataclass
class StructuresReport:
    """Counts of what ``build_from_structures`` read, kept and skipped, with reasons."""

    files: int = 0
    files_read: int = 0
    chains_kept: int = 0
    residues_kept: int = 0
    skipped_files: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    skipped_chains: Counter = dataclasses.field(default_factory=Counter)
    skipped_chain_examples: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    renamed: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    seconds: float = 0.0
    out_dir: Path | None = None

    def skip_chain(self, reason: str, chain_id: str) -> None:
        self.skipped_chains[reason] += 1
        ex = self.skipped_chain_examples.setdefault(reason, [])
        if len(ex) < 5:
            ex.append(chain_id)

    def as_dict(self) -> dict[str, Any]:
        return {"files": self.files, "files_read": self.files_read,
                "chains_kept": self.chains_kept, "residues_kept": self.residues_kept,
                "skipped_files": [{"file": f, "reason": r} for f, r in self.skipped_files],
                "skipped_chains": dict(self.skipped_chains),
                "skipped_chain_examples": self.skipped_chain_examples,
                "renamed_duplicates": [{"from": a, "to": b} for a, b in self.renamed]}

    def lines(self) -> list[str]:
        out = [f"wrote {self.out_dir}" if self.out_dir else "nothing written",
               f"  files: {self.files} found, {self.files_read} read, "
               f"{len(self.skipped_files)} skipped; chains kept: {self.chains_kept:,} "
               f"({self.residues_kept:,} residues, {self.seconds:.1f} s)"]
        for f, r in self.skipped_files:
            out.append(f"  skipped file {f}: {r}")
        for reason, n in sorted(self.skipped_chains.items()):
            ex = ", ".join(self.skipped_chain_examples.get(reason, []))
            out.append(f"  skipped {n} chain(s): {reason} (e.g. {ex})")
        for a, b in self.renamed:
            out.append(f"  duplicate chain id {a} stored as {b}")
        return out


def _record_from_protein(prot: Any, chain_id: str, dssp_fn: Callable | None) -> ds.ChainRecord:
    dssp = np.zeros(prot.length, np.uint8)
    if dssp_fn is not None:
        dssp = dssp_fn(prot.atom_positions, prot.atom_mask, prot.residue_index)
    return ds.ChainRecord(chain_id=chain_id, aatype=prot.aatype,
                          atom_positions=prot.atom_positions, atom_mask=prot.atom_mask,
                          residue_index=prot.residue_index,
                          insertion_code=prot.insertion_code, dssp=dssp, profile=None,
                          b_factors=prot.b_factors)


def _chain_problem(prot: Any, min_length: int) -> str | None:
    n_ca = int((np.asarray(prot.atom_mask)[:, _CA] > 0).sum())
    if n_ca < min_length:
        return f"shorter than {min_length} residues with a CA atom"
    standard = int((np.asarray(prot.aatype) < rc.unk_restype_index).sum())
    if standard * 2 < prot.length:
        return "fewer than half standard amino acids"
    return None


def build_from_structures(in_dir: str | os.PathLike, out_dir: str | os.PathLike, *,
                          chains: str = "first", min_length: int = 10,
                          overwrite: bool = False, assign_dssp: bool = True,
                          command: str | None = None,
                          log: Callable[[str], None] | None = None) -> StructuresReport:
    """Read the structure files below ``in_dir`` and write a dataset at ``out_dir``.

    Args:
      chains: 'first' (one chain per entry) or 'all' (every protein chain).
      min_length: minimum number of residues with a CA atom.
      assign_dssp: compute DSSP from the backbone (``foldlite.data.dssp``).
    Raises:
      InputError: when ``in_dir`` has no structure files or no chain passes the filters.
    """
    if chains not in ("first", "all"):
        raise InputError(f"--chains must be 'first' or 'all', not {chains!r}")
    ds.check_output_dir(out_dir, overwrite)
    t0 = time.perf_counter()
    files = find_structure_files(in_dir)
    if not files:
        raise InputError(f"{in_dir}: no structure files (.cif, .mmcif, .pdb, .ent, optionally "
                         ".gz) found")
    dssp_fn = None
    if assign_dssp:
        from foldlite.data.dssp import assign_dssp as dssp_fn  # noqa: F811
    rep = StructuresReport(files=len(files))
    records: list[ds.ChainRecord] = []
    entries: list[str] = []
    names: list[str] = []
    taken: set[str] = set()
    for path in files:
        rel = str(path.relative_to(in_dir)) if path.is_relative_to(in_dir) else str(path)
        entry = entry_name(path)
        try:
            prots = read_structure_chains(path)
        except InputError as e:
            msg = str(e)
            rep.skipped_files.append((rel, msg.split(": ", 1)[-1] if msg.startswith(str(path))
                                      else msg))
            if "no protein chain" in msg:
                _skip_non_protein(rep, path, entry, [])
            continue
        except Exception as e:  # a reader failure on a malformed file must not stop the run
            rep.skipped_files.append((rel, f"{type(e).__name__}: {e}"))
            continue
        rep.files_read += 1
        _skip_non_protein(rep, path, entry, [p.chain_id for p in prots])
        picked = 0
        for prot in prots:
            cid = f"{entry}_{prot.chain_id}"
            if chains == "first" and picked:
                rep.skip_chain("not the first usable chain of its entry (--chains first)", cid)
                continue
            problem = _chain_problem(prot, min_length)
            if problem:
                rep.skip_chain(problem, cid)
                continue
            uid = cid
            k = 2
            while uid in taken:
                uid = f"{cid}.{k}"
                k += 1
            if uid != cid:
                rep.renamed.append((cid, uid))
            taken.add(uid)
            records.append(_record_from_protein(prot, uid, dssp_fn))
            entries.append(entry)
            names.append(prot.chain_id)
            picked += 1
            if log:
                log(f"  {rel}: chain {prot.chain_id} ({prot.length} residues)")
    rep.chains_kept = len(records)
    rep.residues_kept = int(sum(r.length for r in records))
    rep.seconds = time.perf_counter() - t0
    if not records:
        reasons = "; ".join([f"{f}: {r}" for f, r in rep.skipped_files[:3]] +
                            [f"{n} chain(s) {r}" for r, n in rep.skipped_chains.items()])
        raise InputError(f"{in_dir}: no chain could be used ({reasons or 'nothing read'})")
    manifest = {"source": "structures", "source_dir": str(Path(in_dir).resolve()),
                "options": {"chains": chains, "min_length": min_length,
                            "dssp": "foldlite.data.dssp" if assign_dssp else None},
                "report": rep.as_dict()}
    if command:
        manifest["command"] = command
    rep.out_dir = ds.write_dataset(out_dir, records, source="structures", manifest=manifest,
                                   entries=entries, chain_names=names, overwrite=overwrite)
    rep.seconds = time.perf_counter() - t0
    return rep


def _skip_non_protein(rep: StructuresReport, path: Path, entry: str,
                      protein_chains: Sequence[str]) -> None:
    for c in file_chain_ids(path):
        if c not in protein_chains:
            rep.skip_chain("non-protein chain (nucleic acid, ligands or water only)",
                           f"{entry}_{c.strip() or '?'}")


# ----------------------------------------------------------------------------------------------
# Downloads
# ----------------------------------------------------------------------------------------------

_PDB_ID = re.compile(r"^[0-9][A-Za-z0-9]{3}$")
RCSB_HOST = "files.rcsb.org"


def read_pdb_ids(path: str | os.PathLike) -> list[str]:
    """PDB ids from a text file: whitespace/comma separated, '#' comments; ``1ABC`` or
    ``1ABC_A`` (the chain part is ignored for the download)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: PDB id list not found")
    ids: list[str] = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        for tok in re.split(r"[\s,]+", line.split("#", 1)[0].strip()):
            if not tok:
                continue
            pid = tok.split("_", 1)[0].split(".", 1)[0]
            if not _PDB_ID.match(pid):
                raise InputError(f"{path}: line {n}: {tok!r} is not a PDB id (like 1ABC)")
            if pid.upper() not in ids:
                ids.append(pid.upper())
    if not ids:
        raise InputError(f"{path}: no PDB ids in the file")
    return ids


def rcsb_reachable(timeout: float = 5.0) -> bool:
    try:
        with socket.create_connection((RCSB_HOST, 443), timeout=timeout):
            return True
    except OSError:
        return False


def download_pdb_entries(ids: Sequence[str], dest: str | os.PathLike,
                         log: Callable[[str], None] = print) -> list[Path]:
    """Download mmCIF files of ``ids`` into ``dest`` with ``Bio.PDB.PDBList`` (files already
    there are kept). Raises ``InputError`` when the RCSB cannot be reached or nothing arrives."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    todo = [i for i in ids if not any(dest.glob(f"{i.lower()}.cif*")) and
            not any(dest.glob(f"{i.upper()}.cif*"))]
    if todo and not rcsb_reachable():
        raise InputError(f"cannot reach {RCSB_HOST} to download {len(todo)} PDB entr"
                         f"{'y' if len(todo) == 1 else 'ies'} (offline?); put the .cif files in "
                         f"{dest} yourself and run without --pdb-ids")
    from Bio.PDB import PDBList  # deferred: Biopython; only downloads need it

    pdbl = PDBList(verbose=False)
    got, failed = [], []
    for i in todo:
        try:
            f = pdbl.retrieve_pdb_file(i, file_format="mmCif", pdir=str(dest), overwrite=False)
        except Exception as e:  # network errors surface as many types
            f = None
            log(f"  {i}: download failed ({type(e).__name__}: {e})")
        if f and Path(f).is_file():
            got.append(Path(f))
        else:
            failed.append(i)
    if failed:
        log(f"could not download {len(failed)} entr{'y' if len(failed) == 1 else 'ies'}: "
            f"{' '.join(failed[:20])}{' ...' if len(failed) > 20 else ''}")
    if todo and not got:
        raise InputError(f"none of the {len(todo)} PDB entries could be downloaded from "
                         f"{RCSB_HOST}")
    return got
