"""``yolo-act-swap sweep``: train one model per activation under identical settings and compare them.

    yolo-act-swap sweep                                  # demo: silu,relu,frelu x 2 seeds on the synthetic data, CPU
    yolo-act-swap sweep --cfg yolov7-tiny.yaml --acts silu,relu,frelu,acon_c --seeds 3 --data coco.yaml --epochs 50 \
        --device 0,1
    yolo-act-swap sweep --weights best.pt --transition 2 --acts relu,leaky_relu,hard_swish   # from a trained model

The work is done by :mod:`yolo_act_swap.sweep` (plan -> runner -> harvest -> tables, scheduled by ``Sweep``); this
module reads the flags, prints, and draws the plots.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from ..errors import SweepError
from ..plots import plot_sweep
from ..sweep import (
    DEFAULT_ACTS,
    DEMO_SEEDS,
    Sweep,
    SweepFolder,
    activations_of,
    build_table,
    default_baseline,
    make_settings,
    planned_runs,
    require_scipy,
    resolve_acts,
    resolve_devices,
    resolve_seeds,
    seeds_of,
    summary_lines,
    with_seeds,
    write_tables,
)
from .common import Parser, add_trust_checkpoint, add_verbose, check_count, check_imgsz

RESERVED_OVERRIDES = {"project", "name", "exist_ok", "resume", "device", "save_dir", "model", "data", "epochs",
                      "batch", "imgsz", "seed", "workers"}  # set by the sweep (or by its own flags) for every run


def build_parser() -> argparse.ArgumentParser:
    """The ``yolo-act-swap sweep`` argument parser (unknown ``key=value`` arguments go to every training)."""
    p = Parser(
        prog="yolo-act-swap sweep",
        description="Train one model per activation and seed with identical data, schedule and image size, then "
        "compare them in a table (CSV/Markdown: mean over seeds, 95% intervals, a paired t-test against the "
        "baseline and a Holm-corrected verdict) and plots. Extra key=value arguments go to every training run.",
    )
    p.add_argument("--cfg", default=None, help="model YAML (demo: yolov8n.yaml, else the train command's default)")
    p.add_argument("--acts", nargs="+", default=None,
                   help=f"comma list of activation names, inline specs (leaky_relu:negative_slope=0.1), spec files or "
                        f"folders of spec YAMLs (default: {DEFAULT_ACTS})")
    p.add_argument("--data", default=None, help="dataset YAML or COCO JSON (default: the built-in synthetic demo)")
    p.add_argument("--epochs", type=int, default=None, help="epochs per run (demo 6, else 100)")
    p.add_argument("--batch-size", type=int, default=None, help="batch size per run (demo 8, else 16)")
    p.add_argument("--img-size", type=int, default=None, help="train/val image size (demo 128, else 640)")
    p.add_argument("--device", default=None, help="cpu, 0, or 0,1,2,3 for one run per device in parallel")
    p.add_argument("--workers", type=int, default=None, help="dataloader workers per run")
    # not add_run_folder: a sweep folder is always reused (that is how it resumes), so --exist-ok has no meaning here
    p.add_argument("--project", default="runs/sweep", help="parent folder of sweeps (runs/sweep)")
    p.add_argument("--name", default="sweep", help="sweep folder name (sweep)")
    p.add_argument("--seeds", default=None,
                   help=f"seeds per activation: a count (3: seeds 0,1,2, from --seed) or a list (0,1,2); the same "
                        f"seeds for every activation (paired). Default: the plan's, else {DEMO_SEEDS} on the demo and "
                        f"1 on real data")
    p.add_argument("--seed", type=int, default=None, help="the first seed of a --seeds count; alone, the one seed")
    p.add_argument("--baseline", default=None,
                   help="the activation the others are compared with (default: silu when it is in --acts)")
    p.add_argument("--weights", default=None,
                   help="fine-tune every run from this trained checkpoint (its config and activations) instead of "
                   "training from scratch")
    p.add_argument("--transition", default=None, metavar="E|Nit",
                   help="with --weights: move to each activation through a blended transition of E epochs or N "
                   "iterations (see train --transition); without it, an abrupt swap")
    p.add_argument("--resume", nargs="?", const=True, default=False,
                   help="continue the sweep at --project/--name (or at the given folder) with its planned settings")
    p.add_argument("--retry-failed", action="store_true", help="train failed runs again instead of keeping their rows")
    p.add_argument("--backend", choices=("local", "ray"), default="local",
                   help="local subprocesses, or Ray tasks of one GPU (or CPU) each (pip install 'yolo-act-swap[ray]')")
    p.add_argument("--latency-reps", type=int, default=50, help="timed rounds of the latency measurement (50)")
    p.add_argument("--deploy", action="store_true",
                   help="add ONNX Runtime and OpenVINO latency and INT8 (OpenVINO NNCF) mAP50-95 + drop columns and "
                        "int8_frontier.png (pip install 'yolo-act-swap[deploy]')")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    add_trust_checkpoint(p)
    add_verbose(p, "tracebacks on errors, --verbose to every run")
    return p


def _split_overrides(rest: list[str]) -> list[str]:
    """The ``key=value`` training arguments, checked: well formed, and not one that the sweep sets itself."""
    overrides = []
    for item in rest:
        key, sep, _ = item.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise SweepError(f"unexpected argument {item!r}: sweep flags are listed by --help, ultralytics train "
                             f"settings go as key=value")
        if key in RESERVED_OVERRIDES:
            raise SweepError(f"{item!r}: the sweep sets {key!r} for every run; use its flag (see --help) instead")
        overrides.append(item)
    return overrides


def settings_from_args(args: argparse.Namespace, rest: list[str], planned: dict | None) -> dict:
    """The sweep settings: explicit flags, else the plan's (when resuming), else the defaults (demo or real data)."""
    return make_settings(planned, data=args.data, overrides=_split_overrides(rest), cfg=args.cfg, epochs=args.epochs,
                         batch_size=args.batch_size, img_size=args.img_size,
                         weights=args.weights, transition=args.transition)


def _sweep_root(args: argparse.Namespace) -> Path:
    if isinstance(args.resume, str):
        p = Path(args.resume).expanduser()
        p = p.parent if p.name == "plan.json" else p
        if not (p / "plan.json").exists():
            raise SweepError(f"--resume {args.resume}: no plan.json there; pass a sweep folder, e.g. runs/sweep/sweep")
        return p.resolve()
    return (Path(args.project).expanduser() / args.name).resolve()


def _runs(args: argparse.Namespace, plan: dict | None, demo: bool) -> list:
    """The (activation, seed) runs asked for: ``--acts`` (or, resuming, the planned ones) times the seeds."""
    planned = planned_runs(plan) if plan is not None else []
    if args.acts is None and args.resume and args.seeds is None and args.seed is None:
        return planned  # --resume alone: exactly the plan
    acts = activations_of(planned) if args.acts is None and args.resume else resolve_acts(args.acts or [DEFAULT_ACTS])
    return with_seeds(acts, resolve_seeds(args.seeds, args.seed, seeds_of(planned), demo))


def _baseline(args: argparse.Namespace, runs: list) -> str | None:
    """``--baseline`` checked against the sweep's activations, else the plain silu run's label."""
    if args.baseline is None:
        return default_baseline(runs)
    labels = list(dict.fromkeys(r.label for r in runs))
    if args.baseline not in labels:
        raise SweepError(f"--baseline {args.baseline}: not an activation of this sweep ({', '.join(labels)}); "
                         f"name one of them, or add it to --acts")
    return args.baseline


def _planned_sweep(args: argparse.Namespace, rest: list[str], argv: list[str]) -> Sweep:
    """Read or write the plan (locking the folder) and return the sweep that trains it.

    An existing plan's settings are the defaults of a re-run (so the same command resumes it, also across releases
    that changed the demo's defaults); a flag that differs from the plan is reported by ``SweepFolder.plan``.
    """
    root = _sweep_root(args)
    folder = SweepFolder(root)
    plan = folder.read_plan()
    if args.resume and plan is None:
        raise SweepError(f"--resume: no sweep to resume at {root} (no plan.json); start it without --resume")
    settings = settings_from_args(args, rest, (plan or {}).get("settings"))
    runs = _runs(args, plan, settings["data"] is None)
    baseline = _baseline(args, runs)
    folder.lock()
    runs = folder.plan(settings, runs, argv)
    return Sweep(folder, runs, settings, resolve_devices(args.device), args.workers, args.verbose, args.retry_failed,
                 baseline)


def _deploy(sweep: Sweep, args: argparse.Namespace) -> dict | None:
    """The deployment columns (``--deploy``), or None with one line when their packages are missing."""
    from ..engine.formats import DEPLOY_EXTRA, missing_modules
    from ..sweep.deploy import sweep_deploy

    missing = missing_modules(("onnx", "onnxslim", "onnxruntime", "openvino", "nncf"))
    if missing:
        print(f"--deploy: skipped, {', '.join(missing)} not installed: {DEPLOY_EXTRA}", file=sys.stderr, flush=True)
        return None
    return sweep_deploy(sweep.folder, sweep.runs, sweep.settings, args.latency_reps, write=sweep.write)


def main(argv: list[str] | None = None) -> int:
    """``yolo-act-swap sweep``: plan, run (or resume) and compare.

    Returns:
        (int): 0 once every run is recorded (finished or failed), 1 when some were interrupted (re-run to resume).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    args, rest = build_parser().parse_known_args(argv)
    check_count("--epochs", args.epochs, hint="epochs per run, e.g. --epochs 100")
    check_count("--batch-size", args.batch_size, hint="images per batch, e.g. 16")
    check_count("--workers", args.workers, minimum=0)
    check_count("--latency-reps", args.latency_reps)
    args.img_size = check_imgsz("--img-size", args.img_size)
    require_scipy()  # before any training: the table at the end needs it
    from ..safe_load import trusting

    with trusting(args.trust_checkpoint):
        return _sweep(args, rest, argv)


def _sweep(args: argparse.Namespace, rest: list[str], argv: list[str]) -> int:
    sweep = _planned_sweep(args, rest, argv)
    folder, runs = sweep.folder, sweep.runs
    todo = sweep.pending()
    acts, seeds = len({r.label for r in runs}), len(seeds_of(runs))
    print(f"sweep {folder.root}: {len(runs)} runs ({acts} activations x {seeds} seeds), {len(runs) - len(todo)} "
          f"already recorded, {len(todo)} to train on {','.join(sweep.devices)} ({args.backend})", flush=True)
    if todo:
        (sweep.run_ray if args.backend == "ray" else sweep.run_local)(todo)
    latency = sweep.latency(args.latency_reps)
    deploy = _deploy(sweep, args) if args.deploy else None
    table = build_table(runs, folder, latency, sweep.baseline, deploy)
    text = write_tables(table, folder, sweep.settings, latency, deploy)
    if not args.no_plots:
        curves: dict[str, list] = {}
        for r in runs:
            curves.setdefault(r.label, []).append(folder.run_dir(r.run_id) / "results.csv")
        plot_sweep(folder.root, table.rows, curves, baseline=table.baseline)
    print(text, end="", flush=True)
    for line in summary_lines(table):
        print(line, flush=True)
    print(f"results: {folder.root / 'results.md'} (+ results.csv, runs.csv, plots)", flush=True)
    open_runs = [row["run_id"] for row in table.runs if row["status"] not in ("finished", "failed")]
    if open_runs:
        print(f"{len(open_runs)} run(s) interrupted ({', '.join(open_runs)}): run the same command again, or "
              f"'yolo-act-swap sweep --resume {folder.root}', to finish them", file=sys.stderr, flush=True)
        return 1
    return 0  # failed runs are results too: their rows say why
