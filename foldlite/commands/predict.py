"""``foldlite predict``: every record of a FASTA file (or one sequence) into its own folder.

``predict_batch(input, outdir, ...) -> BatchResult`` is what the command runs: every record into
``OUTDIR/<safe id>/`` (``foldlite.outputs``), with a progress bar (plain lines when stderr is not
a terminal), failing records reported and skipped, complete records skipped on a re-run.
Checked before any work: the input, the weights and the device, then the output folder (created
and probed with a file); before each record: its memory estimate against the device's
(``pipeline.check_memory``). ``read_batch_input`` reads the records (``sequences``' checked
FASTA reading, or one sequence typed on the command line). ``add_arguments`` and ``run`` are the
command line.

Homology (``foldlite.homology``, with ``--msa-db`` and/or ``--templates``): the database and the
template index are checked (the index built on first use) after the output folder, then one MSA
search covers every record to predict, and each record's templates are searched (from its MSA
when it has one) just before it is predicted.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

from tqdm import tqdm

from foldlite import fileio, outputs
from foldlite.device import DEVICES
from foldlite.errors import FoldliteError, InputError, OutputError, printable
from foldlite.homology import ENGINES, Homology, HomologyConfig
from foldlite.model.weights_io import DEFAULT_WEIGHTS
from foldlite.pipeline import Predictor, check_memory, load_predictor, predict, read_msa
from foldlite.search.template_model import TemplateWarning
from foldlite.search.templates import DEFAULT_LIBRARY
from foldlite.sequences import (FastaEntry, SequenceWarning, parse_sequence, read_fasta_entries,
                                safe_name)
from foldlite.viz import resolve_3dmol_js


@dataclasses.dataclass
class BatchResult:
    """What a batch did: one ``outputs.SummaryRow`` per record, and the summary file."""

    rows: list[outputs.SummaryRow]
    summary_path: Path

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.rows)

    @property
    def failed(self) -> int:
        return self.count("failed")

    @property
    def ok(self) -> bool:
        return self.failed == 0


#: a sequence typed on the command line (INPUT, not --sequence) must be at least this long and
#: all upper-case amino-acid letters, so that a mistyped file name is never folded.
MIN_INLINE_SEQUENCE = 10
_INLINE_LETTERS = frozenset("ACDEFGHIKLMNPQRSTVWYXUOBZJ")


def _is_sequence_text(text: str) -> bool:
    """True for what can only be a sequence: >= MIN_INLINE_SEQUENCE upper-case amino-acid
    letters (an optional final '*'), nothing else (no dot, no path separator)."""
    s = text[:-1] if text.endswith("*") else text
    return len(s) >= MIN_INLINE_SEQUENCE and set(s) <= _INLINE_LETTERS


def _sequence_entry(text: str, max_length: int | None) -> FastaEntry:
    """The one entry of a sequence given on the command line (record 'query')."""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", SequenceWarning)
            record = parse_sequence(text, "query", max_length)
    except InputError as e:
        return FastaEntry(1, "query", None, str(e))
    notes = tuple(str(w.message) for w in caught if issubclass(w.category, SequenceWarning))
    return FastaEntry(1, "query", record, None, notes)


def read_batch_input(source: str | os.PathLike | None, max_length: int | None = None, *,
                     sequence: str | None = None) -> list[FastaEntry]:
    """The records of a FASTA file (or one sequence), each validated on its own.

    ``source`` is a FASTA file, or a plain sequence of at least ``MIN_INLINE_SEQUENCE``
    upper-case amino-acid letters; anything else that is not an existing file is an error
    naming the missing file (a mistyped file name is never folded as a sequence).
    ``sequence`` (``--sequence``) is taken as a sequence whatever it looks like.

    File-level problems (missing, empty, not FASTA) raise ``InputError``; a record with bad
    letters (undecodable bytes included), a duplicate id or too many residues becomes an entry
    with an ``error``.
    """
    if sequence is not None:
        if source is not None:
            raise InputError("give INPUT (a FASTA file or a sequence) or --sequence, not both")
        return [_sequence_entry(sequence, max_length)]
    if source is None:
        raise InputError("no input: give a FASTA file, a sequence, or --sequence SEQ")
    path = Path(source)
    text = str(source)
    # os.path's tests (not Path's): a long sequence typed as INPUT is no valid file name
    # (ENAMETOOLONG), which they answer with False instead of raising.
    if not os.path.isfile(path):
        if os.path.exists(path):
            raise InputError(f"{path}: is a directory, not a FASTA file")
        if _is_sequence_text(text):
            return [_sequence_entry(text, max_length)]
        raise InputError(f"{text}: no such FASTA file (a sequence given as INPUT needs at least "
                         f"{MIN_INLINE_SEQUENCE} upper-case amino-acid letters; --sequence "
                         "takes any)")
    return read_fasta_entries(path, max_length=max_length)


def predict_batch(source: str | os.PathLike | None, outdir: str | os.PathLike, *,
                  predictor: Predictor | None = None, weights: str | os.PathLike | None = None,
                  msa: Any = None, num_recycles: int | None = None, num_seeds: int = 1,
                  seed: int = 0, refine: bool = True, refine_steps: int | None = None,
                  max_length: int | None = None, chunk_size: int | None = None,
                  device: Any = None, overwrite: bool = False, quiet: bool = False,
                  js_path: str | os.PathLike | None = None, sequence: str | None = None,
                  memory_limit: int | None = None,
                  homology: HomologyConfig | None = None) -> BatchResult:
    """Predict every record of ``source`` into ``outdir/<safe id>/``; write ``outdir/summary.tsv``.

    Records whose folder is complete are skipped (status ``cached``) unless ``overwrite``; a
    record that fails (bad letters, too long for the memory, an output that cannot be written)
    is reported (status ``failed``, message in the summary) and the others go on. Before any
    work: the input is read, the weights loaded and the device chosen (when a record needs the
    model), and the output folder created and probed, so that a mistake there costs nothing.
    ``sequence``: one sequence (``--sequence``) instead of ``source``. ``memory_limit``: bytes
    a length bucket may need (default: the device's memory, ``device.device_memory_limit``).
    ``homology``: the MSA database and the template library to search (see the module
    docstring); a searched MSA replaces none given (``msa`` and ``homology.msa_db`` exclude each
    other).
    """
    if num_seeds < 1:
        raise InputError(f"--num-seeds {num_seeds}: must be >= 1")
    if predictor is not None and (weights is not None or device is not None
                                  or chunk_size is not None):
        raise ValueError("predict_batch: give either a loaded predictor or weights/device/"
                         "chunk_size to load one, not both")
    if max_length is not None and max_length < 1:
        raise InputError(f"--max-length {max_length}: must be >= 1")
    js = resolve_3dmol_js(js_path)
    entries = read_batch_input(source, max_length=max_length, sequence=sequence)
    if msa is not None and len(entries) != 1:
        raise InputError(f"--msa needs a single-record input; {source} holds {len(entries)} "
                         "records")
    if msa is not None and homology is not None and homology.msa_db is not None:
        raise InputError("give --msa (an alignment you made) or --msa-db (a database to search), "
                         "not both")
    outdir = Path(outdir)
    if outdir.exists() and not outdir.is_dir():
        raise InputError(f"{outdir}: exists and is not a folder")
    taken: set[str] = set(outputs.RESERVED_NAMES)
    names = [safe_name(e.id, taken) for e in entries]
    root = outdir.resolve()
    for n in names:  # defence in depth: a folder name never leaves OUTDIR
        if (root / n).resolve().parent != root:
            raise FoldliteError(f"internal error: unsafe folder name {n!r}")
    todo = [e for e, n in zip(entries, names)
            if e.error is None and (overwrite or not outputs.is_complete(outdir / n))]
    if todo and predictor is None:  # bad weights or an unavailable device: before any folder
        predictor = load_predictor(weights, device=device, chunk_size=chunk_size)
    fileio.check_output_dir(outdir)
    outputs.remove_stale_files(outdir)
    searches = None
    if todo and homology is not None and homology.active:  # wrong paths fail here, before work
        searches = Homology(homology, progress=not quiet)
    if not quiet:
        if sequence is not None or (source is not None and not os.path.isfile(source)):
            what = f"a sequence of {entries[0].record.length} residues" if entries[0].record \
                else "a sequence"
            print(f"foldlite predict: input: {what} (record 'query')", file=sys.stderr)
        else:
            print(f"foldlite predict: input: FASTA file {source} ({len(entries)} records)",
                  file=sys.stderr)

    found_msas: dict[str, Any] = {}
    if searches is not None and homology.msa_db is not None:
        if not quiet:
            print(f"foldlite predict: searching {homology.msa_db} ({homology.engine}) for "
                  f"{len(todo)} record(s)", file=sys.stderr)
        records = [e.record for e in todo]
        found_msas = dict(zip((r.id for r in records), searches.msas(records)))

    rows: list[outputs.SummaryRow] = []
    interactive = sys.stderr.isatty()
    # a progress bar on a terminal; plain lines (no '\r' updates) into a file or a pipe
    bar = tqdm(list(zip(entries, names)), desc="foldlite predict", unit="record",
               disable=quiet or not interactive, file=sys.stderr, dynamic_ncols=True)
    total_n = len(entries)

    def say(msg: str, always: bool = False) -> None:
        if always or not quiet:
            tqdm.write(msg, file=sys.stderr)

    def save_summary() -> None:
        try:
            outputs.write_summary(outdir, rows)
        except OSError as e:
            bar.close()
            raise OutputError(f"{outdir / outputs.SUMMARY_TSV}: cannot write the summary: "
                              f"{e.strerror or e}; {sum(r.status == 'ok' for r in rows)} "
                              "record(s) of this run are complete in their folders") from None

    for k, (entry, name) in enumerate(bar, start=1):
        rec_dir = outdir / name
        shown = printable(entry.id)
        where = f"[{k}/{total_n}] " if not interactive else ""
        t0 = time.perf_counter()
        for note in entry.notes:
            say(f"{where}note: {note}")
        if entry.error is not None:
            rows.append(outputs.SummaryRow(entry.id, name, None, None, None, "failed", None,
                                           entry.error))
            say(f"{where}failed: {entry.error}", always=True)
        elif not overwrite and outputs.is_complete(rec_dir):
            rows.append(outputs.SummaryRow.from_scores(rec_dir, status="cached"))
            say(f"{where}{shown}: complete in {rec_dir}, skipped (--overwrite redoes it)")
        else:
            try:
                check_memory(predictor, entry.record.length, refine=refine, limit=memory_limit,
                             record=entry.id)
                record_msa = found_msas.get(entry.record.id, msa)
                templates = None
                if searches is not None and searches.index is not None:
                    alignment, _ = read_msa(record_msa, entry.record)
                    templates = searches.templates(entry.record, alignment)
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always", TemplateWarning)
                    pred = predict(entry.record, predictor=predictor, msa=record_msa,
                                   templates=templates, num_recycles=num_recycles,
                                   num_seeds=num_seeds, seed=seed, refine=refine,
                                   refine_steps=refine_steps, name=name)
                for w in caught:
                    say(f"{where}note: {w.message}")
                try:
                    outputs.write_record(outdir, pred, js_path=js)
                except OSError as e:
                    raise OutputError(f"record {entry.id!r}: cannot write its outputs into "
                                      f"{outdir}: {e.strerror or e}") from None
                total = time.perf_counter() - t0
                row = outputs.SummaryRow.from_prediction(pred, "ok", total)
                rows.append(row)
                extra = "".join([f", MSA {row.msa_depth} sequences" if row.msa_depth else "",
                                 f", templates {row.templates}" if row.templates else ""])
                say(f"{where}{shown}: {pred.length} residues, mean pLDDT {pred.mean_plddt:.1f}, "
                    f"pTM {pred.ptm:.3f}{extra}, {total:.1f} s -> {rec_dir}")
            except KeyboardInterrupt:
                bar.close()
                raise
            except FoldliteError as e:
                rows.append(outputs.SummaryRow(entry.id, name, entry.record.length, None, None,
                                               "failed", time.perf_counter() - t0, str(e)))
                named = repr(entry.id) in str(e)  # the message names the record already
                say(f"{where}failed: {'' if named else shown + ': '}{e}", always=True)
            except Exception as e:  # noqa: BLE001 - one record's crash must not stop the batch
                msg = f"{type(e).__name__}: {e}"
                rows.append(outputs.SummaryRow(entry.id, name, entry.record.length, None, None,
                                               "failed", time.perf_counter() - t0, msg))
                say(f"{where}failed: {shown}: {msg}", always=True)
                if os.environ.get("FOLDLITE_DEBUG"):
                    traceback.print_exc()
        bar.set_postfix_str(f"{shown}: {time.perf_counter() - t0:.1f} s", refresh=False)
        save_summary()
    bar.close()
    result = BatchResult(rows=rows, summary_path=outdir / outputs.SUMMARY_TSV)
    if not quiet:
        print(f"{result.count('ok')} predicted, {result.count('cached')} already complete, "
              f"{result.failed} failed; summary: {result.summary_path}", file=sys.stderr)
    return result


# ---------------------------------------------------------------------------------------------
# The command line
# ---------------------------------------------------------------------------------------------

def _int_at_least(low: int):
    """An argparse ``type``: a whole number >= ``low``."""
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if v < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {v}")
        return v
    return parse


_positive_int = _int_at_least(1)
_non_negative_int = _int_at_least(0)


def _gib(text: str) -> int:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of GiB, got {text!r}") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return int(v * 2**30)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", metavar="INPUT", nargs="?",
                        help="a FASTA file (one or many records), or a plain sequence of at "
                             f"least {MIN_INLINE_SEQUENCE} upper-case one-letter codes")
    parser.add_argument("--sequence", metavar="SEQ",
                        help="predict this one-letter sequence (record 'query') instead of INPUT")
    parser.add_argument("-o", "--output", "--outdir", dest="outdir", required=True,
                        metavar="OUTDIR", help="output folder: one subfolder per record and "
                                               "summary.tsv")
    parser.add_argument("--msa", metavar="FILE.a3m",
                        help="alignment for a single-record input: profile features from it, "
                             "with sequence weighting")
    parser.add_argument("--msa-db", metavar="SEQS.fasta",
                        help="search this sequence database (any protein FASTA, optionally "
                             "gzipped: UniRef90, UniRef50, a proteome) for every record's MSA "
                             "first; the A3M is kept in the record folder (msa.a3m)")
    parser.add_argument("--engine", choices=ENGINES, default="jackhmmer",
                        help="MSA search: jackhmmer (HMMER, AlphaFold2's settings; default) or "
                             "mmseqs (MMseqs2, ColabFold's; needs the `mmseqs` program)")
    parser.add_argument("--templates", nargs="?", const=str(DEFAULT_LIBRARY), metavar="LIBRARY",
                        help="build the model from templates found in LIBRARY (a dataset folder "
                             "such as `foldlite data promod3` makes, or a folder of mmCIF/PDB "
                             "files; indexed on first use; default: the ProMod3 dataset "
                             f"{DEFAULT_LIBRARY}): copied template backbone, the network's "
                             "prediction where no template aligns, then refinement (always)")
    parser.add_argument("--max-templates", type=_positive_int, default=HomologyConfig.max_templates,
                        metavar="N", help=f"templates used per record (default "
                                          f"{HomologyConfig.max_templates})")
    parser.add_argument("--cpus", type=_positive_int, default=2, metavar="N",
                        help="threads of the MSA search (default 2)")
    parser.add_argument("--weights", metavar="FILE",
                        help=f"model weights (.npz from `foldlite train`; default: the shipped "
                             f"model {DEFAULT_WEIGHTS.name})")
    parser.add_argument("--num-recycles", type=_non_negative_int, metavar="N",
                        help="recycling passes (default: the model's)")
    parser.add_argument("--num-seeds", type=_positive_int, default=1, metavar="N",
                        help="sample N models (dropout on, seeds SEED..SEED+N-1) and rank them "
                             "by mean pLDDT; 1 (default): the deterministic prediction")
    parser.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    parser.add_argument("--no-refine", dest="refine", action="store_false",
                        help="skip the physics refinement")
    parser.add_argument("--refine-steps", type=_non_negative_int, metavar="N",
                        help="optimiser steps per refinement round (default: the "
                             "refinement's, 1000)")
    parser.add_argument("--max-length", type=_positive_int, metavar="N",
                        help="fail records longer than N residues")
    parser.add_argument("--chunk-size", type=_non_negative_int, metavar="N",
                        help="evaluate every [L, L, *] stage (attention, triangle updates, "
                             "transitions, IPA) N rows at a time to bound memory for long "
                             "sequences (0: off; default: the model's); a record refused for "
                             "memory names the chunk size that helps most")
    parser.add_argument("--memory-limit", type=_gib, metavar="GIB",
                        help="memory a record may need, in GiB (default: the device's memory; "
                             "on a CPU the available RAM); longer records are refused before "
                             "they run")
    parser.add_argument("--device", choices=DEVICES, help="run on this device (default: JAX's)")
    parser.add_argument("--overwrite", action="store_true",
                        help="redo records whose outputs are already complete")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or messages")
    parser.add_argument("--3dmol-js", dest="js_path", metavar="PATH",
                        help="local 3Dmol-min.js to inline in view.html (offline pages)")


def homology_config(args: argparse.Namespace) -> HomologyConfig | None:
    """The searches the arguments ask for (None: neither ``--msa-db`` nor ``--templates``)."""
    if args.msa_db is None and args.templates is None:
        return None
    return HomologyConfig(msa_db=None if args.msa_db is None else Path(args.msa_db),
                          engine=args.engine,
                          templates=None if args.templates is None else Path(args.templates),
                          max_templates=args.max_templates, cpus=args.cpus)


def run(args: argparse.Namespace) -> int:
    result = predict_batch(
        args.input, args.outdir, weights=args.weights, msa=args.msa,
        num_recycles=args.num_recycles, num_seeds=args.num_seeds, seed=args.seed,
        refine=args.refine, refine_steps=args.refine_steps, max_length=args.max_length,
        chunk_size=args.chunk_size, device=args.device, overwrite=args.overwrite,
        quiet=args.quiet, js_path=args.js_path, sequence=args.sequence,
        memory_limit=args.memory_limit, homology=homology_config(args))
    return 0 if result.ok else 1
