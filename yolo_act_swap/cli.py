"""``yolo-act-swap``: the command line.

    yolo-act-swap --cfg yolov7.yaml --act frelu        build, patch, verify, report (the default command)
    yolo-act-swap --list                               the activation registry as a table
    yolo-act-swap train|val|sweep|plot ...             the other commands, each with its own --help

Exit codes: 0 success, 2 a user error (one line on stderr), 1 anything else. ``--verbose`` shows tracebacks.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback
from pathlib import Path

from .errors import ActSwapError, SpecError

# subcommand -> module with a ``main(argv) -> int``
SUBCOMMANDS = {
    "train": "yolo_act_swap.train",
    "val": "yolo_act_swap.val",
    "sweep": "yolo_act_swap.sweep",
    "plot": "yolo_act_swap.plots",
}


def run_guarded(fn, argv, verbose: bool | None = None) -> int:
    """Run ``fn(argv)``; turn user errors into one line and exit code 2, other failures into exit code 1."""
    if verbose is None:
        verbose = "--verbose" in argv or "-v" in argv
    try:
        return int(fn(argv) or 0)
    except ActSwapError as e:
        if verbose:
            traceback.print_exc()
        print(f"yolo-act-swap: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("yolo-act-swap: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - the CLI's last line of defence
        if verbose:
            traceback.print_exc()
        print(
            f"yolo-act-swap: internal error: {type(e).__name__}: {e} (rerun with --verbose for the traceback)",
            file=sys.stderr,
        )
        return 1


DEFAULT_ACT = "frelu"


def build_parser() -> argparse.ArgumentParser:
    """The default (patch) command's parser."""
    p = argparse.ArgumentParser(
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
    p.add_argument("--act", help=f"activation, e.g. frelu, leaky_relu:negative_slope=0.1, acon_c:init=silu "
                   f"(default: {DEFAULT_ACT} unless --spec is given; with --spec it replaces the spec's default)")  # fmt: skip
    p.add_argument("--spec", help="swap spec YAML: a path or a name in configs/acts (e.g. backbone-frelu-head-silu)")
    p.add_argument("--imgsz", type=int, default=640, help="image size of the shape checks and GFLOPs (default 640)")
    p.add_argument("--repo", help="upstream YOLOv5/YOLOv7 checkout (default: the current directory if it is one)")
    p.add_argument("--nc", type=int, help="number of classes for a model built from --cfg")
    p.add_argument("--save", metavar="OUT.pt", help="write the patched model as an ultralytics-compatible checkpoint")
    p.add_argument("--save-yaml", metavar="OUT.yaml", help="write the model YAML with its act_swap: spec")
    p.add_argument("--no-verify", action="store_true", help="skip the forward-shape verification")
    p.add_argument("--list", action="store_true", help="print the activation registry and exit")
    p.add_argument("--verbose", "-v", action="store_true", help="show tracebacks on errors and one row per block")
    return p


def patch_main(argv: list[str]) -> int:
    """The default command: build or load a model, patch it, verify it, print the report, save it."""
    args = build_parser().parse_args(argv)
    if args.list:
        from .activations import activation_table

        print(activation_table())
        return 0

    from .models import default_cfg, load_model
    from .patch import patch_model
    from .spec import load_spec, spec_file_or_error

    if args.imgsz < 1:
        raise SpecError(f"--imgsz {args.imgsz}: give a positive image size, e.g. 640")
    spec_file = spec_file_or_error(args.spec) if args.spec else None
    spec = load_spec(spec_file, act=args.act if args.act or args.spec else DEFAULT_ACT)  # fail fast, before building
    cfg = args.cfg if args.cfg or args.weights else default_cfg()
    t0 = time.perf_counter()
    model = load_model(cfg, args.weights, repo=args.repo, nc=args.nc, verbose=args.verbose)
    t_build = time.perf_counter() - t0
    report = patch_model(model, spec, imgsz=args.imgsz, verify=not args.no_verify, flops=True)
    source = " + ".join(str(x) for x in (args.cfg or (cfg if not args.weights else None), args.weights) if x)
    print(f"yolo-act-swap: {report.model} from {source}: {spec} [{spec.source}]; build {t_build:.2f}s, "
          f"patch+verify {report.seconds:.2f}s")  # fmt: skip
    print(report.table(per_block=args.verbose))
    if args.save:
        print(f"saved {save_checkpoint(model, args.save, report, cfg=cfg, imgsz=args.imgsz)}")
    if args.save_yaml:
        print(f"saved {save_model_yaml(model, args.save_yaml)}")
    return 0


def save_checkpoint(model, path: str | Path, report=None, cfg=None, imgsz: int = 640) -> Path:
    """Write a patched model as a checkpoint (atomically).

    An ultralytics model gets the ultralytics layout (``model`` in half precision, ``train_args``, ``date``,
    ``version``, ...) so that ``ultralytics.YOLO(path)`` loads and runs it after ``import yolo_act_swap``; an upstream
    YOLOv5/YOLOv7 model gets upstream's layout (``model``, ``epoch``, ``optimizer``...). Both carry a
    ``yolo_act_swap`` entry with the spec and the report.
    """
    from copy import deepcopy
    from datetime import datetime

    from . import __version__
    from .patch import unwrap_model
    from .utils import atomic_torch_save

    model = unwrap_model(model)
    meta = {"version": __version__, "report": report.to_dict() if report is not None else None}
    if isinstance(getattr(model, "yaml", None), dict) and "act_swap" in model.yaml:
        meta["act_swap"] = model.yaml["act_swap"]
    m = deepcopy(model).half()
    try:
        from ultralytics.nn.tasks import BaseModel
    except ImportError:  # pragma: no cover
        BaseModel = ()
    if BaseModel and isinstance(model, BaseModel):
        import ultralytics

        args = dict(getattr(model, "args", None) or {})
        args.update(task="detect", model=str(cfg) if cfg else args.get("model"), imgsz=imgsz)
        ckpt = {
            "date": datetime.now().isoformat(),
            "version": ultralytics.__version__,
            "license": "AGPL-3.0 License (https://ultralytics.com/license)",
            "docs": "https://docs.ultralytics.com",
            "epoch": -1,
            "best_fitness": None,
            "model": m,
            "ema": None,
            "updates": None,
            "optimizer": None,
            "train_args": {k: v for k, v in args.items() if isinstance(v, (str, int, float, bool, type(None)))},
            "train_metrics": None,
            "train_results": None,
            "yolo_act_swap": meta,
        }
    else:
        ckpt = {"epoch": -1, "best_fitness": None, "model": m, "ema": None, "updates": None, "optimizer": None,
                "date": datetime.now().isoformat(), "yolo_act_swap": meta}  # fmt: skip
    return atomic_torch_save(ckpt, path)


def _plain(v):
    """YAML-safe copy: tuples become lists, everything else stays."""
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def dump_model_yaml(d: dict) -> str:
    """YAML text of a model dict, with layer rows and other short lists on one line each, as in model YAMLs."""
    import yaml

    class _Dumper(yaml.SafeDumper):
        pass

    def lists(dumper, data):
        flat = all(not isinstance(x, (list, dict)) or (isinstance(x, list) and all(
            not isinstance(y, (list, dict)) for y in x)) for x in data)  # fmt: skip
        return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flat)

    _Dumper.add_representer(list, lists)
    return yaml.dump(_plain(d), Dumper=_Dumper, sort_keys=False, width=120, allow_unicode=True)


def save_model_yaml(model, path: str | Path) -> Path:
    """Write the model's YAML dict, with its ``act_swap:`` spec, so that ``--cfg path`` rebuilds the patched model."""
    from .errors import ModelError
    from .patch import unwrap_model
    from .utils import atomic_write_text

    model = unwrap_model(model)
    d = getattr(model, "yaml", None)
    if not isinstance(d, dict):
        raise ModelError(f"{type(model).__name__} has no model YAML to save (--save-yaml needs a model built from one)")
    d = {k: v for k, v in _plain(d).items() if k != "yaml_file"}
    head = (f"# Written by yolo-act-swap from {model.yaml.get('yaml_file', 'a model YAML')}. The act_swap key is the "
            f"swap spec;\n# any yolo-act-swap build (yolo-act-swap --cfg THIS_FILE, train, val) re-applies it.\n")  # fmt: skip
    return atomic_write_text(path, head + dump_model_yaml(d))


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMANDS:
        module = importlib.import_module(SUBCOMMANDS[argv[0]])
        return run_guarded(module.main, argv[1:])
    return run_guarded(patch_main, argv)


if __name__ == "__main__":
    sys.exit(main())
