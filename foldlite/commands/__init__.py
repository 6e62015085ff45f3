"""Command-line code: argument parsing and reporting for the ``foldlite`` subcommands that
live here (``foldlite.cli.COMMANDS`` names the module of each); the library modules they call
know nothing of the command line."""
