"""User-facing errors.

``FoldliteError`` (and its subclasses) is raised for a user's mistake: bad input files, bad
options, missing data. The command line prints its message (no traceback) and exits non-zero.
Messages name the file, the record and the position where they apply; ``printable`` makes
text from the input (record ids, letters) safe to print.
"""

from __future__ import annotations


def printable(text: str) -> str:
    """``text`` safe to print on a terminal or in a table cell: every non-printable character
    (terminal escape sequences, control characters, tabs, newlines) as a Python escape
    (``\\x1b``), the rest unchanged."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in str(text))


class FoldliteError(Exception):
    """An error caused by input or options that the user can fix; its message says how."""

    exit_code = 2


class InputError(FoldliteError):
    """A malformed or invalid input file (FASTA, A3M, PDB/mmCIF, dataset, config)."""


class ConfigError(FoldliteError):
    """A configuration file or override that does not match the expected schema."""


class OutputError(FoldliteError):
    """An output that cannot be written: an existing file where a folder goes, a folder where a
    file goes, no permission, a read-only or full file system."""
