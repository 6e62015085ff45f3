"""The ``foldlite`` command line: parses arguments and calls the stage that does the work.

Each subcommand is a module named in ``COMMANDS`` (in ``foldlite.commands``, apart from the
library it drives) that provides ``add_arguments(parser)`` and ``run(args) -> int``. Only the
module of the subcommand that is run gets imported, so ``foldlite --help`` is fast.

A ``FoldliteError`` (a user's mistake) is printed as one message and exits with status 2;
no traceback is shown for it. Ctrl-C exits with 130, SIGTERM with 143 (128 + the signal), after
the command's cleanup.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading
import warnings

from foldlite.errors import FoldliteError, printable
from foldlite.version import __version__

#: subcommand -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "predict": ("foldlite.commands.predict",
                "predict structures for FASTA records or a sequence"),
    "refine": ("foldlite.commands.refine", "refine a structure by minimising foldlite's energy"),
    "train": ("foldlite.commands.train", "train a model from a YAML config"),
    "evaluate": ("foldlite.commands.evaluate", "score predictions against real structures"),
    "campaign": ("foldlite.commands.campaign",
                 "the training campaign: data packs, accelerator jobs, adopting their state"),
    "search": ("foldlite.commands.search",
               "MSAs for FASTA queries from a local sequence database (HMMER jackhmmer)"),
    "templates": ("foldlite.commands.templates",
                  "template library index and template search (HMMER)"),
    "data": ("foldlite.commands.data", "build training datasets (ProMod3 database, mmCIF/PDB files)"),
    "view": ("foldlite.commands.view", "write a standalone HTML page with the 3D view and plots"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="foldlite",
        description="foldlite: protein structure prediction in JAX and Haiku.",
    )
    parser.add_argument("--version", action="version", version=f"foldlite {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            mod = importlib.import_module(module)
            mod.add_arguments(p)
            p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    if command not in COMMANDS:
        command = None
    parser = build_parser(command)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    _one_line_warnings(args.command)
    previous = _terminate_on_sigterm()
    try:
        return int(args._run(args) or 0)
    except FoldliteError as e:
        print(f"foldlite {args.command}: error: {printable(str(e))}", file=sys.stderr)
        return e.exit_code
    except Terminated:
        print(f"foldlite {args.command}: terminated (SIGTERM)", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print(f"foldlite {args.command}: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _one_line_warnings(command: str) -> None:
    """Warnings as one clean line (no source file, line number or code line)."""
    def show(message, category, filename, lineno, file=None, line=None):
        out = file if file is not None else sys.stderr
        try:
            text = " ".join(str(message).split())
            out.write(f"foldlite {command}: warning: {printable(text)}\n")
        except (OSError, ValueError):
            pass
    warnings.showwarning = show


class Terminated(KeyboardInterrupt):
    """SIGTERM: stops the work as Ctrl-C does (temporary files removed, nothing half-written
    under a final name), but the command exits with 143 (128 + SIGTERM), the convention."""


def _raise_terminated(signum, frame):
    raise Terminated()


def _terminate_on_sigterm():
    """Turn SIGTERM into ``Terminated`` for the command's run; returns the previous handler
    (None when not in the main thread, where handlers cannot be set)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _raise_terminated)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
