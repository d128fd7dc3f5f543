"""``yolo-act-swap sweep``: train one model per activation under identical settings and compare them.

    yolo-act-swap sweep                                             # demo: silu,relu,frelu on the synthetic data, CPU
    yolo-act-swap sweep --cfg yolov7-tiny.yaml --acts silu,relu,frelu,acon_c --data coco.yaml --epochs 50 --device 0,1

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
    Sweep,
    SweepFolder,
    make_settings,
    planned_runs,
    resolve_acts,
    resolve_devices,
    table_rows,
    write_tables,
)
from .common import Parser, add_trust_checkpoint, add_verbose, check_count, check_imgsz

RESERVED_OVERRIDES = {"project", "name", "exist_ok", "resume", "device", "save_dir", "model", "data", "epochs",
                      "batch", "imgsz", "seed", "workers"}  # set by the sweep (or by its own flags) for every run


def build_parser() -> argparse.ArgumentParser:
    """The ``yolo-act-swap sweep`` argument parser (unknown ``key=value`` arguments go to every training)."""
    p = Parser(
        prog="yolo-act-swap sweep",
        description="Train one model per activation with identical data, seed, schedule and image size, then compare "
        "them in a table (CSV/Markdown) and plots. Extra key=value arguments go to every training run.",
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
    p.add_argument("--seed", type=int, default=None, help="training seed of every run (0)")
    p.add_argument("--resume", nargs="?", const=True, default=False,
                   help="continue the sweep at --project/--name (or at the given folder) with its planned settings")
    p.add_argument("--retry-failed", action="store_true", help="train failed runs again instead of keeping their rows")
    p.add_argument("--backend", choices=("local", "ray"), default="local",
                   help="local subprocesses, or Ray tasks of one GPU (or CPU) each (pip install 'yolo-act-swap[ray]')")
    p.add_argument("--latency-reps", type=int, default=50, help="timed rounds of the latency measurement (50)")
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
                         batch_size=args.batch_size, img_size=args.img_size, seed=args.seed)


def _sweep_root(args: argparse.Namespace) -> Path:
    if isinstance(args.resume, str):
        p = Path(args.resume).expanduser()
        p = p.parent if p.name == "plan.json" else p
        if not (p / "plan.json").exists():
            raise SweepError(f"--resume {args.resume}: no plan.json there; pass a sweep folder, e.g. runs/sweep/sweep")
        return p.resolve()
    return (Path(args.project).expanduser() / args.name).resolve()


def _planned_sweep(args: argparse.Namespace, rest: list[str], argv: list[str]) -> Sweep:
    """Read or write the plan (locking the folder) and return the sweep that trains it."""
    root = _sweep_root(args)
    folder = SweepFolder(root)
    plan = folder.read_json(folder.plan_path) if args.resume and folder.plan_path.exists() else None
    if args.resume and plan is None:
        raise SweepError(f"--resume: no sweep to resume at {root} (no plan.json); start it without --resume")
    settings = settings_from_args(args, rest, (plan or {}).get("settings"))
    runs = planned_runs(plan) if args.acts is None and plan is not None else resolve_acts(args.acts or [DEFAULT_ACTS])
    folder.lock()
    runs = folder.plan(settings, runs, argv)
    return Sweep(folder, runs, settings, resolve_devices(args.device), args.workers, args.verbose, args.retry_failed)


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
    from ..safe_load import trusting

    with trusting(args.trust_checkpoint):
        return _sweep(args, rest, argv)


def _sweep(args: argparse.Namespace, rest: list[str], argv: list[str]) -> int:
    sweep = _planned_sweep(args, rest, argv)
    folder, runs = sweep.folder, sweep.runs
    todo = sweep.pending()
    print(f"sweep {folder.root}: {len(runs)} runs, {len(runs) - len(todo)} already recorded, "
          f"{len(todo)} to train on {','.join(sweep.devices)} ({args.backend})", flush=True)
    if todo:
        (sweep.run_ray if args.backend == "ray" else sweep.run_local)(todo)
    latency = sweep.latency(args.latency_reps)
    rows = table_rows(runs, folder, latency)
    text = write_tables(rows, folder, sweep.settings, latency)
    if not args.no_plots:
        plot_sweep(folder.root, rows, {r.label: folder.run_dir(r.label) / "results.csv" for r in runs},
                   baseline=next((r.label for r in runs if r.baseline), None))
    print(text, end="", flush=True)
    print(f"results: {folder.root / 'results.md'} (+ results.csv, plots)", flush=True)
    open_runs = [row["act"] for row in rows if row["status"] not in ("finished", "failed")]
    if open_runs:
        print(f"{len(open_runs)} run(s) interrupted ({', '.join(open_runs)}): run the same command again, or "
              f"'yolo-act-swap sweep --resume {folder.root}', to finish them", file=sys.stderr, flush=True)
        return 1
    return 0  # failed runs are results too: their rows say why
