"""User-facing errors.

``FoldliteError`` (and its subclasses) is raised for a user's mistake: bad input files, bad
options, missing data. The command line prints its message (no traceback) and exits non-zero.
Messages name the file, the record and the position where they apply.
"""

from __future__ import annotations


class FoldliteError(Exception):
    """An error caused by input or options that the user can fix; its message says how."""

    exit_code = 2


class InputError(FoldliteError):
    """A malformed or invalid input file (FASTA, A3M, PDB/mmCIF, dataset, config)."""


class ConfigError(FoldliteError):
    """A configuration file or override that does not match the expected schema."""
