"""The data the rows read, and data sets the launcher makes itself.

- `python -m launcher.data stage impl=...` builds each seed row's exact COCO layout from the user's COCO
  folders with symlinks (stage.py; 2014 names linked onto the 2017 images by linkfarm.py) and runs the
  row's own script for derived files (SimpleDet's roidb).
- `python -m launcher.data synth --out DIR` writes a tiny COCO-format set (2017 and 2014 names, the 80
  categories, polygon masks) for CPU runs and tests of the seed rows' code."""

from .categories import CATEGORIES, CATEGORY_IDS
from .synth import MARKER, Params, SynthError, read_marker, synth

__all__ = ["CATEGORIES", "CATEGORY_IDS", "MARKER", "Params", "SynthError", "read_marker", "synth"]
