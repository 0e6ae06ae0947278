"""Defaults more than one stage needs, spelled once (conf/ and the dataclasses in launcher/config.py read them)."""

#: a measured figure within this relative distance of the published one is `reproduced` (gather/stats.py)
TOLERANCE = 0.05
#: the machine the published detectron2 table was measured on (8 V100s)
REFERENCE_HARDWARE = "v100x8"
