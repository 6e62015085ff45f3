"""foldlite: an AlphaFold2-style protein structure prediction pipeline in JAX and Haiku.

Data flows ``foldlite.data`` -> ``foldlite.model`` -> ``foldlite.physics`` -> outputs. The
public API is imported lazily so that ``import foldlite`` stays light.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "Protein", "predict", "load_model", "refine"]


def __getattr__(name: str):
    if name == "Protein":
        from foldlite.protein import Protein
        return Protein
    if name == "predict":
        from foldlite.pipeline import predict
        return predict
    if name == "load_model":
        from foldlite.pipeline import load_model
        return load_model
    if name == "refine":
        from foldlite.physics.refine import refine
        return refine
    raise AttributeError(f"module 'foldlite' has no attribute {name!r}")
