"""``yolo-act-swap train``: train a YOLO detector with swapped activations (flag names follow upstream YOLOv5/YOLOv7
train.py; other ultralytics train args pass through as ``key=value``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..data import is_demo
from ..errors import ModelError
from ..models import default_cfg
from .common import (
    NO_SWAP_HELP,
    Parser,
    add_overrides,
    add_run_folder,
    add_trust_checkpoint,
    add_verbose,
    check_count,
    check_imgsz,
    load_record,
    parse_overrides,
)

# Ultralytics train args that have a flag of their own: key -> flag (``key=value`` is refused for them).
TRAIN_FLAGS = {"model": "--cfg", "pretrained": "--weights", "data": "--data", "epochs": "--epochs",
               "batch": "--batch-size", "imgsz": "--img-size", "device": "--device", "workers": "--workers",
               "project": "--project", "name": "--name", "resume": "--resume", "seed": "--seed",
               "exist_ok": "--exist-ok", "save_dir": "--project/--name", "channels_last": "--channels-last"}


def build_parser() -> Parser:
    """``yolo-act-swap train`` arguments."""
    p = Parser(
        prog="yolo-act-swap train",
        description="Train a YOLO detector with swapped activations using the ultralytics engine. Extra ultralytics "
        "train args pass through as key=value (e.g. lr0=0.005 optimizer=SGD amp=False).",
    )
    p.add_argument("--cfg", default=None, help=f"model YAML or name (default: the weights', else {default_cfg()})")
    p.add_argument("--weights", default=None, help="checkpoint to start from (its activations are kept unless --act)")
    p.add_argument("--data", default=None, help="data YAML, COCO JSON, or 'demo' (default: the built-in demo)")
    p.add_argument("--act", default=None, help="activation of every block: frelu, leaky_relu:negative_slope=0.1 ... "
                   f"({NO_SWAP_HELP})")
    p.add_argument("--spec", default=None, help="swap spec YAML (configs/acts/...); --act overrides its default")
    p.add_argument("--epochs", type=int, default=None, help="epochs (default 300; 30 on the demo)")
    p.add_argument("--batch-size", type=int, default=None, help="total batch size over all GPUs (default 16)")
    p.add_argument("--img-size", "--imgsz", type=int, default=None, help="train/val image size (default 640; demo 160)")
    p.add_argument("--device", default=None, help="cuda device(s) 0 or 0,1,2,3 or cpu (default: GPU 0 if any)")
    p.add_argument("--workers", type=int, default=None, help="dataloader workers per process (default 8)")
    add_run_folder(p, "runs/train")
    p.add_argument("--resume", nargs="?", const=True, default=False, help="resume the newest (or the given) last.pt")
    p.add_argument("--seed", type=int, default=0, help="global training seed")
    p.add_argument("--new-head", action="store_true", help="allow --weights with another class count (new head)")
    p.add_argument("--transition", default=None, metavar="E|Nit",
                   help="move --weights' activations to --act gradually: blend (1-a)*old + a*new with a ramping 0->1 "
                   "over E epochs (3) or N iterations (300it), then keep the new one alone")
    p.add_argument("--recalibrate-bn", type=int, default=0, metavar="N",
                   help="after the abrupt swap of --weights to --act, refresh BatchNorm statistics from N training "
                   "batches (no gradients) before training")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="train (and validate) with the model and batches in channels_last (NHWC), on CPU too; "
                   "default: ultralytics' choice, channels_last on CUDA only")
    add_trust_checkpoint(p)
    add_verbose(p)
    add_overrides(p, "other ultralytics train args")
    return p


def check_args(args) -> None:
    """The numbers a run needs, checked before anything is built or written (one line each)."""
    check_count("--epochs", args.epochs, hint="the number of epochs to train, e.g. --epochs 100")
    if args.batch_size != -1:
        check_count("--batch-size", args.batch_size, hint="the images per batch, e.g. 16 (-1: ultralytics' AutoBatch)")
    check_count("--workers", args.workers, minimum=0)
    args.img_size = check_imgsz("--img-size", args.img_size)


def _resume(args, extra: dict) -> dict:
    from ..engine.run import resume

    ckpt = args.resume
    if ckpt is not True and not Path(ckpt).is_file():
        raise ModelError(f"--resume checkpoint not found: {ckpt}; pass a last.pt or use --resume alone")
    over = {k: v for k, v in {"device": args.device, "workers": args.workers, "batch": args.batch_size,
                              "imgsz": args.img_size, "channels_last": args.channels_last}.items() if v is not None}
    return resume(ckpt, **over, **extra)


def _train(args, extra: dict) -> dict:
    from ..engine.run import train

    demo = is_demo(args.data)
    over = {
        "epochs": args.epochs if args.epochs is not None else (30 if demo else 300),
        "batch": args.batch_size if args.batch_size is not None else 16,
        "imgsz": args.img_size if args.img_size is not None else (160 if demo else 640),
        "project": str(Path(args.project).resolve()),
        "name": args.name,
        "exist_ok": args.exist_ok,
        "seed": args.seed,
        **({"device": args.device} if args.device is not None else {}),
        **({"workers": args.workers} if args.workers is not None else {}),
        **({"channels_last": args.channels_last} if args.channels_last is not None else {}),
    }
    return train(cfg=args.cfg, weights=args.weights, data=args.data, act=args.act, spec=args.spec,
                 new_head=args.new_head, transition=args.transition, recalibrate_bn=args.recalibrate_bn, **over,
                 **extra)


def main(argv: list[str] | None = None) -> int:
    """``yolo-act-swap train`` / ``python -m yolo_act_swap train`` / ``scripts/train.py``."""
    args = build_parser().parse_args(argv)
    check_args(args)
    extra = parse_overrides(args.overrides, TRAIN_FLAGS)
    from ..safe_load import trusting

    with trusting(args.trust_checkpoint):
        result = _resume(args, extra) if args.resume else _train(args, extra)
    if result.get("status") == "finished":
        m = result["metrics"]
        act = f"act_swap {load_record(result['act_swap'])}" if result.get("act_swap") else "no swap (own activations)"
        print(f"yolo-act-swap: finished {result['epochs']} epochs with {act}: P {m['precision']} R {m['recall']} "
              f"mAP50 {m['mAP50']} mAP50-95 {m['mAP50-95']}; results in {result['save_dir']}")
        return 0
    print("yolo-act-swap: training ended without a result file (see the log above)", file=sys.stderr)
    return 1
