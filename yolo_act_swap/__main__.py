"""``python -m yolo_act_swap ...``: the same as the ``yolo-act-swap`` command."""

import sys

from .cli import main

sys.exit(main())
