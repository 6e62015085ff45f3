"""Command-line code: argument parsing and reporting for the ``foldlite`` subcommands that
live here; the library modules they call know nothing of the command line."""
