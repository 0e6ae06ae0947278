"""Data sets the launcher makes itself: `python -m launcher.data synth --out DIR` writes a tiny COCO-format
set (2017 and 2014 names, the 80 categories, polygon masks) for CPU runs and tests of the seed rows' code."""

from .categories import CATEGORIES, CATEGORY_IDS
from .synth import MARKER, Params, SynthError, read_marker, synth

__all__ = ["CATEGORIES", "CATEGORY_IDS", "MARKER", "Params", "SynthError", "read_marker", "synth"]
