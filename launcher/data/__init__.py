"""The data the rows read. `python -m launcher.data stage impl=...` builds each seed row's exact COCO
layout from the user's COCO folders with symlinks (stage.py; 2014 names linked onto the 2017 images by
linkfarm.py) and runs the row's own script for derived files (SimpleDet's roidb)."""
