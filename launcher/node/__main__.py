"""`python -m launcher.node RUN_DIR`: run the row whose spec.json is in RUN_DIR (launcher/node/run.py)."""

import sys

from .run import main

sys.exit(main())
