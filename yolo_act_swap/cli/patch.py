"""The default command: build or load a model, swap its activations, verify, report, save."""

from __future__ import annotations

import argparse
import time
from collections import Counter

from ..errors import ModelError
from .common import (
    NO_SWAP_HELP,
    Parser,
    add_trust_checkpoint,
    add_verbose,
    check_count,
    check_imgsz,
    check_output_file,
    load_record,
)


def build_parser() -> argparse.ArgumentParser:
    """The default (patch) command's parser."""
    p = Parser(
        prog="yolo-act-swap",
        description="Swap the activation of every conv block of a YOLO model, verify shapes, and report. "
        "Other commands: train, val, sweep, plot (each has --help).",
        epilog="examples:  yolo-act-swap --cfg yolov7.yaml --act frelu | yolo-act-swap --cfg yolov8n.yaml "
        "--spec backbone-frelu-head-silu --save out.pt | yolo-act-swap --repo ../yolov5 --cfg yolov5s.yaml --act acon_c",
    )
    p.add_argument("--cfg", help="model YAML: a path, a name in configs/models (yolov7.yaml, yolov7-tiny.yaml), an "
                   "ultralytics name (yolov8n.yaml, yolo11n.yaml), or an upstream YAML with --repo "
                   "(default: yolov7-tiny.yaml if built in, else yolov8n.yaml)")  # fmt: skip
    p.add_argument("--weights", help="checkpoint to patch (ultralytics, or upstream with --repo)")
    p.add_argument("--act", help="activation, e.g. frelu, leaky_relu:negative_slope=0.1, acon_c:init=silu (with --spec "
                   f"it replaces the spec's default; {NO_SWAP_HELP})")  # fmt: skip
    p.add_argument("--spec", help="swap spec YAML: a path or a name in configs/acts (e.g. backbone-frelu-head-silu)")
    p.add_argument("--imgsz", type=int, default=640, help="image size of the shape checks and GFLOPs (default 640)")
    p.add_argument("--repo", help="upstream YOLOv5/YOLOv7 checkout (default: the current directory if it is one)")
    p.add_argument("--nc", type=int, help="number of classes for a model built from --cfg")
    p.add_argument("--save", metavar="OUT.pt", help="write the patched model as an ultralytics-compatible checkpoint")
    p.add_argument("--save-yaml", metavar="OUT.yaml", help="write the model YAML with its act_swap: spec")
    p.add_argument("--no-verify", action="store_true", help="skip the forward-shape verification")
    p.add_argument("--list", action="store_true", help="print the activation registry and exit")
    add_trust_checkpoint(p)
    add_verbose(p, "show tracebacks on errors and one row per block")
    return p


def main(argv: list[str]) -> int:
    """The default command: build or load a model, patch it, verify it, print the report, save it."""
    args = build_parser().parse_args(argv)
    if args.list:
        from ..activations import activation_table

        print(activation_table())
        return 0

    check_count("--nc", args.nc, hint="the number of classes, e.g. --nc 80")
    args.imgsz = check_imgsz("--imgsz", args.imgsz)
    check_output_file("--save", args.save)
    check_output_file("--save-yaml", args.save_yaml)
    from ..safe_load import trusting

    with trusting(args.trust_checkpoint):
        return _patch(args)


def _patch(args) -> int:
    from ..blocks import unwrap_model
    from ..models import default_cfg, load_model
    from ..patch import patch_model
    from ..spec import load_spec, spec_file_or_error

    swap = args.act is not None or args.spec is not None
    spec_file = spec_file_or_error(args.spec) if args.spec else None
    spec = load_spec(spec_file, act=args.act) if swap else None  # fail fast, before building
    cfg = args.cfg if args.cfg or args.weights else default_cfg()
    t0 = time.perf_counter()
    model = load_model(cfg, args.weights, repo=args.repo, nc=args.nc, verbose=args.verbose)
    t_build = time.perf_counter() - t0
    if args.save_yaml and not isinstance(getattr(unwrap_model(model), "yaml", None), dict):
        raise ModelError(f"--save-yaml: {type(unwrap_model(model)).__name__} has no model YAML to save (it needs a "
                         f"model built from one); drop --save-yaml or pass --cfg")  # fmt: skip
    source = " + ".join(str(x) for x in (args.cfg or (cfg if not args.weights else None), args.weights) if x)
    if swap:
        report = patch_model(model, spec, imgsz=args.imgsz, verify=not args.no_verify, flops=True)
        print(f"yolo-act-swap: {report.model} from {source}: {spec} [{spec.source}]; build {t_build:.2f}s, "
              f"patch+verify {report.seconds:.2f}s")  # fmt: skip
        print(report.table(per_block=args.verbose))
    else:
        report = None
        inspect_model(model, source, args.imgsz, verify=not args.no_verify)
    from ..checkpoints import save_checkpoint, save_model_yaml

    if args.save:
        print(f"saved {save_checkpoint(model, args.save, report, cfg=cfg, imgsz=args.imgsz)}")
    if args.save_yaml:
        print(f"saved {save_model_yaml(model, args.save_yaml)}")
    return 0




def inspect_model(model, source: str, imgsz: int, verify: bool = True) -> None:
    """No swap asked for: print the model's activations (per kind, with its act_swap: record) and verify it."""
    from ..blocks import find_blocks, unwrap_model
    from ..verify import verify_shapes
    from ..verify.trace import act_name

    root = unwrap_model(model)
    record = root.yaml.get("act_swap") if isinstance(getattr(root, "yaml", None), dict) else None
    blocks = find_blocks(model)
    kinds = Counter(act_name(b.act) for b in blocks)
    what = f"act_swap: {load_record(record)} (rebuilt from its record)" if record else "its own activations"
    print(f"yolo-act-swap: {type(root).__name__} from {source}: no --act/--spec, nothing swapped; the model keeps "
          f"{what}")
    print(f"{len(blocks)} activated conv blocks: " + ", ".join(f"{n} {k}" for k, n in kinds.most_common()))
    if verify:
        print(f"verification: {verify_shapes(model, imgsz=imgsz)}")

