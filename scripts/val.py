#!/usr/bin/env python
"""Validate a checkpoint: P, R, mAP50, mAP50-95 per class and overall (thin wrapper around ``yolo_act_swap.cli.val.main``).

    python scripts/val.py --weights runs/train/exp/weights/best.pt --data coco.yaml --img-size 640 --save-json
"""

import sys

from yolo_act_swap.cli import run_guarded
from yolo_act_swap.cli.val import main

if __name__ == "__main__":
    sys.exit(run_guarded(main, sys.argv[1:]))
