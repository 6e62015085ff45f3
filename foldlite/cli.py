"""The ``foldlite`` command line: parses arguments and calls the stage that does the work.

Each subcommand lives beside the code it drives; a module named in ``COMMANDS`` provides
``add_arguments(parser)`` and ``run(args) -> int``. Only the module of the subcommand that is
run gets imported, so ``foldlite --help`` is fast.

A ``FoldliteError`` (a user's mistake) is printed as one message and exits with status 2;
no traceback is shown for it.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from foldlite import __version__
from foldlite.errors import FoldliteError

#: subcommand -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "predict": ("foldlite.pipeline", "predict structures for FASTA records or a sequence"),
    "refine": ("foldlite.physics.refine", "refine a structure by minimising foldlite's energy"),
    "train": ("foldlite.train.trainer", "train a model from a YAML config"),
    "evaluate": ("foldlite.train.evaluate", "score predictions against real structures"),
    "campaign": ("foldlite.commands.campaign",
                 "the training campaign: data packs, accelerator jobs, adopting their state"),
    "search": ("foldlite.commands.search",
               "MSAs for FASTA queries from a local sequence database (HMMER jackhmmer)"),
    "templates": ("foldlite.commands.templates",
                  "template library index and template search (HMMER)"),
    "data": ("foldlite.data.cli", "build training datasets (ProMod3 database, mmCIF/PDB files)"),
    "view": ("foldlite.viz", "write a standalone HTML page with the 3D view and plots"),
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
    try:
        return int(args._run(args) or 0)
    except FoldliteError as e:
        print(f"foldlite {args.command}: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"foldlite {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
