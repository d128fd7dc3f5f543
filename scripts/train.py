#!/usr/bin/env python
"""Train a YOLO detector with swapped activations (thin wrapper around ``yolo_act_swap.cli.train.main``).

    python scripts/train.py --cfg yolov7-tiny.yaml --act frelu --data coco.yaml --epochs 300 --batch-size 64 \
        --img-size 640 --device 0
"""

import sys

from yolo_act_swap.cli import run_guarded
from yolo_act_swap.cli.train import main

if __name__ == "__main__":
    sys.exit(run_guarded(main, sys.argv[1:]))
