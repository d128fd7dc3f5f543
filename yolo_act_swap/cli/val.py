"""``yolo-act-swap val``: P, R, mAP50, mAP50-95 of a checkpoint per class and overall (flag names follow upstream
YOLOv5/YOLOv7 val.py/test.py; other ultralytics val args pass through as ``key=value``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import (
    Parser,
    add_overrides,
    add_run_folder,
    add_trust_checkpoint,
    add_verbose,
    check_count,
    check_imgsz,
    parse_overrides,
)

# Ultralytics val args that have a flag of their own: key -> flag (``key=value`` is refused for them).
VAL_FLAGS = {"model": "--weights", "data": "--data", "imgsz": "--img-size", "batch": "--batch-size",
             "device": "--device", "save_json": "--save-json", "split": "--task", "project": "--project",
             "name": "--name", "exist_ok": "--exist-ok", "channels_last": "--channels-last"}


def build_parser() -> Parser:
    """``yolo-act-swap val`` arguments."""
    p = Parser(
        prog="yolo-act-swap val",
        description="Validate a checkpoint: P, R, mAP50, mAP50-95 per class and overall. Extra ultralytics val args "
        "pass through as key=value (e.g. conf=0.001 iou=0.7).",
    )
    p.add_argument("--weights", required=True, help="checkpoint, e.g. runs/train/exp/weights/best.pt")
    p.add_argument("--data", default=None, help="data YAML, COCO JSON or 'demo' (default: the checkpoint's own data)")
    p.add_argument("--img-size", "--imgsz", type=int, default=None, help="image size (default: the training size)")
    p.add_argument("--batch-size", type=int, default=32, help="batch size")
    p.add_argument("--device", default=None, help="cuda device 0 or cpu (default: GPU 0 if any)")
    p.add_argument("--task", default="val", choices=("train", "val", "test"), help="dataset split to validate")
    p.add_argument("--save-json", action="store_true", help="save COCO-format predictions and report official COCO mAP")
    add_run_folder(p, "runs/val")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="run the model and batches in channels_last (NHWC); default: ultralytics' choice, "
                   "channels_last on CUDA and on x86 CPUs with oneDNN")
    add_trust_checkpoint(p)
    add_verbose(p)
    add_overrides(p, "other ultralytics val args")
    return p


def main(argv: list[str] | None = None) -> int:
    """``yolo-act-swap val`` / ``python -m yolo_act_swap val`` / ``scripts/val.py``."""
    from ..engine.validator import metrics_table, val
    from ..safe_load import trusting

    args = build_parser().parse_args(argv)
    check_count("--batch-size", args.batch_size, hint="the images per batch, e.g. 32")
    args.img_size = check_imgsz("--img-size", args.img_size)
    extra = parse_overrides(args.overrides, VAL_FLAGS)
    with trusting(args.trust_checkpoint):
        result = val(args.weights, data=args.data, imgsz=args.img_size, batch=args.batch_size, device=args.device,
                     save_json=args.save_json, split=args.task, channels_last=args.channels_last, project=str(Path(args.project).resolve()),
                     name=args.name, exist_ok=args.exist_ok, **extra)
    print(metrics_table(result))
    print(f"yolo-act-swap: results saved to {result['save_dir']}")
    return 0
