"""``python -m yolo_act_swap.sweep ...`` is ``yolo-act-swap sweep ...``."""

import sys

from ..cli import run_guarded
from ..cli.sweep import main

sys.exit(run_guarded(main, sys.argv[1:]))
