"""Which activation wins where the model runs: latency per backend relative to SiLU, and the INT8 drop.

For each model and activation the model is built (``yolo_act_swap.models.load_model``), patched
(``yolo_act_swap.patch_model``), exported with ultralytics' exporter to each format and loaded back with AutoBackend
(``yolo_act_swap.engine.export.export_matrix``). All models of one model family are timed side by side in one run:
batch 1, ``--rounds`` rounds of ``--repeats`` interleaved forwards (one of every candidate in turn); a cell is the
median of the per-round ratios to SiLU in the same backend, with the lowest and highest round in brackets.

``--int8`` also trains each activation briefly on the built-in demo data (``yolo-act-swap train``, ``--int8-epochs``;
a run that finished before with the same command is reused), quantizes it with OpenVINO NNCF through ultralytics'
exporter and with ONNX Runtime static quantization (both calibrated on the demo train split) and validates the FP32
and INT8 models of each runtime on the demo val split (``yolo_act_swap.engine.int8``).

Usage:
    python benchmarks/deploy.py                                   # yolov8n + yolov7-tiny, 10 activations, latency
    python benchmarks/deploy.py --models yolov8n.yaml --acts silu,relu,frelu --formats onnx,openvino --rounds 3
    python benchmarks/deploy.py --int8 --int8-models yolov8n.yaml --int8-epochs 10   # plus the INT8 drop
    python benchmarks/deploy.py --models '' --int8 --markdown    # the INT8 part only (finished trainings are reused)
    python benchmarks/deploy.py --markdown                        # the tables as markdown (docs/performance.md)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")  # never download anything
os.environ.setdefault("YOLO_AUTOINSTALL", "false")
os.environ.setdefault("YOLO_VERBOSE", "false")

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.activations import machine  # noqa: E402
from yolo_act_swap import patch_model  # noqa: E402
from yolo_act_swap.engine.export import PYTORCH, export_matrix  # noqa: E402
from yolo_act_swap.engine.formats import FORMATS, missing_packages  # noqa: E402
from yolo_act_swap.io import atomic_write_text, checkpoint_complete  # noqa: E402
from yolo_act_swap.models import load_model  # noqa: E402
from yolo_act_swap.sweep.plan import DEMO_RECIPE  # noqa: E402
from yolo_act_swap.tables import format_table, markdown_table  # noqa: E402

DEFAULT_ACTS = "silu,relu,leaky_relu,hard_swish,gelu,mish,frelu,acon_c,meta_acon_c,dy_relu_b"
DEFAULT_MODELS = "yolov8n.yaml,yolov7-tiny.yaml"


def builder(cfg: str, imgsz: int, nc: int | None = None, weights: dict | None = None):
    """activation -> a freshly built (or trained, from ``weights[act]``) model patched to it."""

    def build(act: str) -> torch.nn.Module:
        torch.manual_seed(0)
        if weights and act in weights:
            return load_model(None, weights[act])
        model = load_model(cfg, nc=nc)
        patch_model(model, act, imgsz=imgsz, verify=False, flops=False)
        return model

    return build


def _cell(row) -> str:
    if row is None:
        return "-"
    if row.x_silu is None:
        return f"fail ({row.reason[:40]})" if row.reason else "-"
    lo, hi = row.x_silu_range or (row.x_silu, row.x_silu)
    return f"{row.x_silu:.2f} ({lo:.2f}-{hi:.2f})"


def latency_table(model: str, acts: list[str], formats: list[str], rows) -> tuple[list, list]:
    """Header and rows: per activation, x SiLU in each backend (PyTorch first), plus each backend's ms of SiLU."""
    by = {(r.act, r.format): r for r in rows}
    backends = [PYTORCH, *formats]
    titles = ["PyTorch" if b == PYTORCH else FORMATS[b].title for b in backends]
    head = ["model", "activation", *[f"{t} x SiLU" for t in titles]]
    body = [[model, act, *[_cell(by.get((act, b))) for b in backends]] for act in acts]
    silu = [by.get(("silu", b)) for b in backends]
    body.append([model, "(silu ms)", *["-" if r is None or r.ms is None else f"{r.ms:.1f}" for r in silu]])
    return head, body


def rankings(acts: list[str], formats: list[str], rows) -> list[str]:
    """One line per backend: the activations from fastest to slowest, and where it differs from PyTorch's order."""
    by = {(r.act, r.format): r for r in rows}
    order = {}
    for b in [PYTORCH, *formats]:
        timed = [(by[a, b].x_silu, a) for a in acts if (a, b) in by and by[a, b].x_silu is not None]
        order[b] = [a for _, a in sorted(timed)]
    lines = []
    for b, names in order.items():
        title = "PyTorch" if b == PYTORCH else FORMATS[b].title
        moved = [a for i, a in enumerate(names) if b != PYTORCH and a in order[PYTORCH] and
                 abs(order[PYTORCH].index(a) - i) >= 2]  # fmt: skip
        lines.append(f"{title:13s} {' < '.join(names)}" + (f"   (moved 2+ places vs PyTorch: {', '.join(moved)})"
                                                           if moved else ""))  # fmt: skip
    return lines


def train(cfg: str, act: str, epochs: int, imgsz: int, folder: Path) -> Path:
    """Train ``act`` on the demo data with ``yolo-act-swap train``; return best.pt (a failure raises).

    A run that finished before with the same command (``done.json`` next to a whole ``best.pt``) is not trained again,
    so an interrupted benchmark resumes with the activations it has not finished.
    """
    name = f"{Path(cfg).stem}-{act}"
    cmd = ["train", "--cfg", cfg, "--act", act, "--data", "demo", "--epochs", str(epochs), "--imgsz", str(imgsz),
           "--batch-size", "8", "--device", "cpu", "--workers", "1", "--project", str(folder), "--name", name,
           "--exist-ok", "--seed", "0", "plots=False", *DEMO_RECIPE]  # fmt: skip
    best, done_file = folder / name / "weights" / "best.pt", folder / name / "done.json"
    if done_file.is_file() and json.loads(done_file.read_text()) == cmd and checkpoint_complete(best):
        return best
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "yolo_act_swap", *cmd], env=env, capture_output=True, text=True)
    if done.returncode or not checkpoint_complete(best):
        raise RuntimeError(f"training {name} failed: {(done.stderr or done.stdout).strip().splitlines()[-1:]}")
    atomic_write_text(done_file, json.dumps(cmd))
    return best


def cached_int8_check(weights: Path, act: str, data_yaml, imgsz: int, folder: Path, backend: str):
    """``int8_check`` of a trained checkpoint and the load average while it ran (the higher of its start and end),
    reused from ``<backend>.json`` while the training run is the same."""
    from yolo_act_swap.engine.int8 import Int8Check, int8_check

    key = {"run": json.loads((weights.parents[1] / "done.json").read_text()), "imgsz": imgsz, "backend": backend}
    cache = folder / act / f"{backend}.json"
    if cache.is_file() and (old := json.loads(cache.read_text())).pop("key", None) == key:
        load = old.pop("load", None)
        return Int8Check(**old), load
    load = os.getloadavg()[0]
    row = int8_check(load_model(None, weights), act, data_yaml, imgsz, folder, backend=backend)
    load = max(load, os.getloadavg()[0])
    if not row.reason:
        atomic_write_text(cache, json.dumps({"key": key, **dataclasses.asdict(row), "load": load}))
    return row, load


def int8_part(args, acts: list[str], folder: Path) -> list[str]:
    """Train each activation on the demo data (or reuse its finished run), quantize, validate FP32 and INT8."""
    from yolo_act_swap.data import resolve_data
    from yolo_act_swap.engine.int8 import INT8_HEAD, Int8Check, int8_backends, int8_rows

    info = resolve_data("demo", splits=("train", "val"))
    backends, body, loads = int8_backends(args.int8_backends), [], []
    for cfg in args.int8_models.split(","):
        for act in acts:
            t0 = time.perf_counter()
            try:
                weights = train(cfg, act, args.int8_epochs, args.int8_imgsz, folder / "train")
                rows = []
                for b in backends:
                    row, load = cached_int8_check(weights, act, info.yaml, args.int8_imgsz, folder / "int8" / cfg, b)
                    rows.append(row)
                    loads += [load] if load is not None else []
            except Exception as e:  # noqa: BLE001 - one failing activation is a row
                rows = [Int8Check(act, b, reason=str(e)[:120]) for b in backends]
            for cells in int8_rows(rows):
                body.append([Path(cfg).stem, *cells])
                print("  int8 " + " | ".join(body[-1]), file=sys.stderr, flush=True)
            print(f"  int8 {cfg} {act}: {time.perf_counter() - t0:.0f}s, load {os.getloadavg()[0]:.1f}", file=sys.stderr)
    table = markdown_table if args.markdown else format_table
    head = ["model", *INT8_HEAD]
    load = f"load average {min(loads):.1f}-{max(loads):.1f} while measured" if loads else "load average not recorded"
    return [f"## INT8, demo data, {args.int8_epochs} epochs at {args.int8_imgsz} px (batch 8, AdamW lr0 0.003, seed 0), "
            f"calibrated on the demo train split, validated on val, FP32 and INT8 in the same runtime; {load}",
            *table(head, body, right=range(3, 11))]  # fmt: skip


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=DEFAULT_MODELS)
    p.add_argument("--acts", default=DEFAULT_ACTS)
    p.add_argument("--formats", default="onnx,openvino,torchscript")
    p.add_argument("--imgsz", type=int, default=320)
    p.add_argument("--repeats", type=int, default=10, help="timed forwards per candidate per round")
    p.add_argument("--rounds", type=int, default=3, help="timing rounds (the spread in brackets)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--int8", action="store_true", help="also train briefly on the demo data and measure the INT8 drop")
    p.add_argument("--int8-models", default="yolov8n.yaml")
    p.add_argument("--int8-backends", default="all", help="openvino, onnxruntime or all (default)")
    p.add_argument("--int8-epochs", type=int, default=10)
    p.add_argument("--int8-imgsz", type=int, default=160)
    p.add_argument("--out", default="runs/deploy", help="exported models and training runs")
    p.add_argument("--markdown", action="store_true", help="print markdown tables")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    acts = args.acts.split(",")
    formats = [f for f in args.formats.split(",") if not missing_packages(FORMATS[f]) or print(f"skip {f}: missing")]
    out = Path(args.out)
    table = markdown_table if args.markdown else format_table
    lines = [f"# benchmarks/deploy.py: {machine(torch.device('cpu'), torch.get_num_threads())}",
             f"# batch 1, {args.imgsz} px, fp32; median of {args.rounds} rounds x {args.repeats} interleaved "
             f"forwards; x SiLU = vs the same model with SiLU in the same backend (lowest-highest round)"]  # fmt: skip
    lines = lines if args.models else lines[:1]
    for cfg in filter(None, args.models.split(",")):  # --models '': the INT8 part only
        t0 = time.perf_counter()
        rows = export_matrix(builder(cfg, args.imgsz), acts, formats, imgsz=args.imgsz, folder=out / Path(cfg).stem,
                             warmup=2, repeats=args.repeats, rounds=args.rounds)  # fmt: skip
        head, body = latency_table(Path(cfg).stem, acts, formats, rows)
        lines += ["", f"## {cfg} ({time.perf_counter() - t0:.0f} s)", *table(head, body, right=range(2, len(head)))]
        lines += ["", "fastest to slowest:", *rankings(acts, formats, rows)]
        print("\n".join(lines[-(len(body) + len(formats) + 6):]), file=sys.stderr)
    if args.int8:
        lines += ["", *int8_part(args, acts, out)]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
