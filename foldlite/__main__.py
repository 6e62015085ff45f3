"""``python -m foldlite`` runs the same command line as ``foldlite``."""

import sys

from foldlite.cli import main

sys.exit(main())
