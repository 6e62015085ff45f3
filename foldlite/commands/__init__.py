"""Subcommands of the ``foldlite`` command line that drive several modules and so belong to none
of them (``foldlite.cli.COMMANDS`` names the module of each subcommand)."""
