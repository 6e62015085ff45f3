#!/usr/bin/env python
"""Compare training-recipe variants at equal steps, or overfit one chain.

    python scripts/ablate.py --config small --steps 300 --eval-chains 8 \\
        --set data.crop_size=64 --set data.batch_size=2 \\
        --variant "base:" --variant "lr3e-4: optimizer.learning_rate=3.0e-4" \\
        --variant "iters8: model.structure.num_iterations=8"
    python scripts/ablate.py --config small --overfit tests/data/1A8O.pdb --steps 1000 \\
        --variant "base:" --variant "no_sm_dropout: model.structure.dropout=0.0"

Prints one row per variant (steps, seconds, final train FAPE / distogram / crop lDDT-CA,
validation lDDT-CA and TM-score; with --overfit the first step where FAPE < 0.2 and lDDT-CA > 0.9
and the curve every 100 steps) and appends one JSON record per variant to
``<out>/ablation.jsonl``. See ``foldlite.train.ablation``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runs from a checkout too

from foldlite.errors import FoldliteError  # noqa: E402
from foldlite.train.ablation import main  # noqa: E402

if __name__ == "__main__":
    try:
        sys.exit(main())
    except FoldliteError as e:
        print(f"ablate: error: {e}", file=sys.stderr)
        sys.exit(2)
