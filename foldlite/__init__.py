"""foldlite: an AlphaFold2-style protein structure prediction pipeline in JAX and Haiku.

Data flows ``foldlite.data`` -> ``foldlite.model`` -> ``foldlite.physics`` -> outputs. The
public API is imported lazily (on first use, so that ``import foldlite`` stays light: the
modules behind it import JAX).
"""

from __future__ import annotations

from foldlite.version import __version__

__all__ = ["__version__", "Protein", "predict", "load_predictor", "refine"]


def __getattr__(name: str):
    # Each import is deferred to first use: the modules import JAX (seconds), and the command
    # line (`foldlite --help`) and light users of the package need none of them.
    if name == "Protein":
        from foldlite.protein import Protein  # deferred (see above)
        return Protein
    if name == "predict":
        from foldlite.pipeline import predict  # deferred (see above)
        return predict
    if name == "load_predictor":
        from foldlite.model.inference import load_predictor  # deferred (see above)
        return load_predictor
    if name == "refine":
        from foldlite.physics.refine import refine  # deferred (see above)
        return refine
    raise AttributeError(f"module 'foldlite' has no attribute {name!r}")
