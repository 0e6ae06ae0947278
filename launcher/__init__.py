"""launcher: the detectron2 Mask R-CNN training-throughput benchmark, as software.

Stages, one module each: plan -> prepare -> backends (submit) -> node (execute, parse) -> gather; they
talk to each other only through the run directory, whose contract is rundir.py. See docs/architecture.md.
"""

from pathlib import Path

__version__ = "0.1.0"

PACKAGE_DIR = Path(__file__).resolve().parent
CONF_DIR = PACKAGE_DIR / "conf"
JOBS_DIR = PACKAGE_DIR / "jobs"
