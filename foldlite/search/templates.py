"""The template library's search index and template search.

A library is a foldlite dataset (default: the ProMod3 dataset, ``~/.cache/foldlite/promod3``) or
a folder of mmCIF/PDB files, which ``build_index`` first turns into a dataset (every protein
chain; ``foldlite.data.structures``) inside the index. The index is a folder (default
``cache_dir()/templates/<library name>-<hash of its path>``) holding:

  sequences.fasta   every chain's sequence, named by chain id (HMMER's sequence database)
  index.json        format, the dataset path, its manifest's sha256, chain and residue counts
  dataset/          only for a folder of structure files: the dataset built from it

``search_templates(query, index, msa=None)`` builds a profile HMM from the query's MSA when
there is one (else from the query alone, as phmmer does), searches the library's sequences,
aligns each hit's best domain with the query to that HMM in query columns, and keeps the best
``max_hits`` by E-value, then coverage. Each ``TemplateHit`` carries the chain id, identity,
coverage, E-value, bit score and the residue map (template residue index for each query
position, -1 for none) into the dataset's chain.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

import numpy as np

from foldlite import constants as rc
from foldlite.cache import cache_dir
from foldlite.data.dataset import Dataset
from foldlite.data.structures import build_from_structures, find_structure_files
from foldlite.errors import InputError
from foldlite.fileio import sha256_file, write_json, write_text
from foldlite.search.alignment import align_to_query
from foldlite.search.database import SequenceDatabase, read_database
from foldlite.sequences import GAP, Msa, SequenceRecord

INDEX_FORMAT = "foldlite-template-index"
INDEX_VERSION = 1
DEFAULT_LIBRARY = Path("~/.cache/foldlite/promod3")


@dataclasses.dataclass(frozen=True)
class TemplateHit:
    """One template for a query (see the module docstring)."""

    chain_id: str
    evalue: float
    score: float
    identity: float
    coverage: float
    query_to_template: np.ndarray  # int32 [L]
    a3m: str  # the template's row in query columns

    @property
    def aligned(self) -> int:
        return int((self.query_to_template >= 0).sum())

    def as_dict(self) -> dict:
        return {"chain_id": self.chain_id, "evalue": self.evalue, "score": round(self.score, 1),
                "identity": round(self.identity, 4), "coverage": round(self.coverage, 4),
                "aligned": self.aligned}


@dataclasses.dataclass
class TemplateIndex:
    """An opened index: its folder, the dataset path and the digital sequences."""

    path: Path
    dataset: Path
    database: SequenceDatabase
    num_chains: int
    num_residues: int

    @property
    def block(self):
        return self.database.block


def default_index_dir(library: str | os.PathLike) -> Path:
    library = Path(library).expanduser().resolve()
    tag = hashlib.sha256(str(library).encode()).hexdigest()[:12]
    return cache_dir() / "templates" / f"{library.name or 'library'}-{tag}"


def build_index(library: str | os.PathLike = DEFAULT_LIBRARY,
                out_dir: str | os.PathLike | None = None) -> Path:
    """Build (or rebuild) the index of ``library`` (a dataset folder or a folder of mmCIF/PDB
    files) in ``out_dir`` (default ``default_index_dir(library)``); returns the index folder."""
    library = Path(library).expanduser()
    if not library.exists():
        raise InputError(f"{library}: template library not found (a foldlite dataset folder, "
                         "e.g. from 'foldlite data promod3', or a folder of mmCIF/PDB files)")
    if not library.is_dir():
        raise InputError(f"{library}: a template library is a folder (a foldlite dataset or "
                         "mmCIF/PDB files), not a file")
    out = Path(out_dir) if out_dir is not None else default_index_dir(library)
    if (library / "manifest.json").is_file():
        dataset_dir = library.resolve()
    else:
        if not find_structure_files(library):
            raise InputError(f"{library}: neither a foldlite dataset (no manifest.json) nor a "
                             "folder with mmCIF/PDB files (.cif, .mmcif, .pdb, .ent, optionally "
                             ".gz)")
        dataset_dir = out / "dataset"
        build_from_structures(library, dataset_dir, chains="all", overwrite=True)
    ds = Dataset(dataset_dir)
    if len(ds) == 0:
        raise InputError(f"{dataset_dir}: the template library has no chains")
    seqs = ds.sequences()
    write_text(out / "sequences.fasta", "".join(f">{cid}\n{s}\n" for cid, s in seqs.items()))
    write_json(out / "index.json", {
        "format": INDEX_FORMAT, "format_version": INDEX_VERSION,
        "dataset": str(dataset_dir), "library": str(library.resolve()),
        "manifest_sha256": sha256_file(dataset_dir / "manifest.json"),
        "chains": len(seqs), "residues": int(sum(len(s) for s in seqs.values())),
    })
    return out


def open_index(index: str | os.PathLike | None = None, build: bool = True) -> TemplateIndex:
    """Open an index folder, or the index of a library folder (built first when missing or
    out of date and ``build``); ``None`` is the default library."""
    path = Path(index if index is not None else DEFAULT_LIBRARY).expanduser()
    if not (path / "index.json").is_file():
        library, path = path, default_index_dir(path)
        if not _index_current(path):
            if not build:
                raise InputError(f"{library}: no template index; run 'foldlite templates index "
                                 f"{library}'")
            build_index(library, path)
    try:
        meta = json.loads((path / "index.json").read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"{path / 'index.json'}: not a readable template index ({e})") from None
    if meta.get("format") != INDEX_FORMAT or meta.get("format_version") != INDEX_VERSION:
        raise InputError(f"{path}: not a foldlite template index (format "
                         f"{meta.get('format')!r} version {meta.get('format_version')!r}); "
                         "rebuild it with 'foldlite templates index'")
    db = read_database(path / "sequences.fasta", digest=False)
    return TemplateIndex(path=path, dataset=Path(meta["dataset"]), database=db,
                         num_chains=db.num_sequences, num_residues=db.num_residues)


def _index_current(path: Path) -> bool:
    try:
        meta = json.loads((path / "index.json").read_text())
        return (meta.get("format_version") == INDEX_VERSION
                and sha256_file(Path(meta["dataset"]) / "manifest.json")
                == meta["manifest_sha256"] and (path / "sequences.fasta").is_file())
    except (OSError, ValueError, KeyError):
        return False


def _msa_hmm(msa: Msa, alphabet, query: SequenceRecord):
    """Profile HMM built from an MSA's match columns (insertions dropped)."""
    import pyhmmer  # deferred: the HMMER bindings are only needed for searches

    letters = np.frombuffer(("".join(rc.restypes_with_x) + "-").encode(), np.uint8)
    rows = [letters[np.clip(r, 0, GAP)].tobytes().decode() for r in msa.sequences]
    names = [f"r{i}".encode() for i in range(len(rows))]
    text = pyhmmer.easel.TextMSA(name=query.id.encode() or b"query", sequences=[
        pyhmmer.easel.TextSequence(name=n, sequence=s) for n, s in zip(names, rows)])
    builder = pyhmmer.plan7.Builder(alphabet)
    hmm, _, _ = builder.build_msa(text.digitize(alphabet), pyhmmer.plan7.Background(alphabet))
    return hmm


def search_templates(query: SequenceRecord, index: TemplateIndex, msa: Msa | None = None,
                     max_hits: int = 4, evalue: float = 1e-3, min_coverage: float = 0.1,
                     candidates: int = 100) -> list[TemplateHit]:
    """The best ``max_hits`` templates for ``query`` (see the module docstring): hits with an
    E-value at most ``evalue`` and a coverage of at least ``min_coverage``, by E-value, then
    coverage. ``candidates`` bounds the hits aligned."""
    import pyhmmer  # deferred: the HMMER bindings are only needed for searches

    alphabet = index.block.alphabet
    background = pyhmmer.plan7.Background(alphabet)
    if msa is not None and msa.num_sequences > 1:
        if msa.length != query.length:
            raise InputError(f"the MSA has {msa.length} columns, the query {query.id!r} "
                             f"{query.length} residues")
        hmm = _msa_hmm(msa, alphabet, query)
    else:
        seq = pyhmmer.easel.TextSequence(name=query.id.encode(),
                                         sequence=query.sequence).digitize(alphabet)
        hmm, _, _ = pyhmmer.plan7.Builder(alphabet).build(seq, background)
    pipeline = pyhmmer.plan7.Pipeline(alphabet, background=background, E=evalue, domE=evalue)
    hits = pipeline.search_hmm(hmm, index.block)
    found = []
    for hit in hits:
        if hit.evalue > evalue or not len(hit.domains):
            continue
        dom = max(hit.domains, key=lambda d: d.score)
        name = hit.name.decode() if isinstance(hit.name, bytes) else str(hit.name)
        found.append((hit.evalue, hit.score, name, dom.env_from, dom.env_to))
        if len(found) >= candidates:
            break
    if not found:
        return []
    rows = align_to_query(hmm, query.sequence,
                          [(n, index.database.sequence(n)[a - 1:b], a - 1)
                           for _, _, n, a, b in found])
    out = []
    for (ev, score, name, _, _), row in zip(found, rows):
        cov = row.coverage()
        if cov < min_coverage:
            continue
        out.append(TemplateHit(chain_id=name, evalue=float(ev), score=float(score),
                               identity=row.identity(query.sequence), coverage=cov,
                               query_to_template=row.query_to_target, a3m=row.a3m))
    out.sort(key=lambda h: (h.evalue, -h.coverage))
    return out[:max_hits]


def format_hits(query: SequenceRecord, hits: list[TemplateHit]) -> str:
    """A table of a query's templates (or a line saying there are none)."""
    if not hits:
        return f"{query.id}: no template hits"
    lines = [f"{query.id} ({query.length} residues): {len(hits)} template(s)",
             f"  {'template':<14}{'E-value':>10}{'bits':>8}{'identity':>10}{'coverage':>10}"]
    for h in hits:
        lines.append(f"  {h.chain_id:<14}{h.evalue:>10.2g}{h.score:>8.1f}{h.identity:>10.1%}"
                     f"{h.coverage:>10.1%}")
    return "\n".join(lines)
