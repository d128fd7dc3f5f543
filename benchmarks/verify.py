"""How much does patching + verification cost, next to building the model? Measured side by side in one run.

Target (issue 3): ``yolo-act-swap --cfg yolov7.yaml --act frelu`` takes at most 1.5x the time of building the same
model unpatched. Two views, each a median over ``--repeats`` interleaved runs:

- process: the whole command in a fresh process (``yolo-act-swap ...``) vs a fresh process that only builds the model
  (``load_model(cfg)``); both pay the Python/torch/ultralytics imports, as a user does.
- in-process: ``load_model`` vs ``load_model`` + ``patch_model`` (verify on, GFLOPs on), after a warm-up, with the
  patch split into swap only (``verify=False``) and verification.

    python benchmarks/verify.py                                # yolov7.yaml, frelu, 3 repeats
    python benchmarks/verify.py --cfg yolov8n.yaml --act acon_c --repeats 5 --threads 1

``--threads`` sets OMP_NUM_THREADS / torch threads for both sides (1 is steadier on a shared machine).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

BUILD = "from yolo_act_swap.models import load_model; load_model({cfg!r})"


def _run(cmd: list[str], env: dict) -> float:
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    dt = time.perf_counter() - t
    if r.returncode:
        raise SystemExit(f"failed ({r.returncode}): {' '.join(cmd)}\n{r.stderr[-2000:]}")
    return dt


def process_times(cfg: str, act: str, repeats: int, env: dict) -> tuple[list, list]:
    script = Path(sys.executable).with_name("yolo-act-swap")
    cli = [str(script)] if script.exists() else [sys.executable, "-m", "yolo_act_swap.cli"]
    build, patch = [], []
    for _ in range(repeats):  # interleaved, so that load changes hit both sides alike
        build.append(_run([sys.executable, "-c", BUILD.format(cfg=cfg)], env))
        patch.append(_run([*cli, "--cfg", cfg, "--act", act], env))
    return build, patch


def inprocess_times(cfg: str, act: str, repeats: int, imgsz: int) -> dict:
    import torch

    from yolo_act_swap import patch_model
    from yolo_act_swap.models import load_model

    patch_model(load_model(cfg), act, imgsz=imgsz)  # warm-up: first-use imports and kernels
    out = {"build": [], "swap": [], "patch+verify": [], "verify": []}
    for _ in range(repeats):
        t = time.perf_counter()
        model = load_model(cfg)
        out["build"].append(time.perf_counter() - t)
        m2 = load_model(cfg)
        t = time.perf_counter()
        patch_model(m2, act, imgsz=imgsz, verify=False, flops=False)
        out["swap"].append(time.perf_counter() - t)
        t = time.perf_counter()
        report = patch_model(model, act, imgsz=imgsz)
        out["patch+verify"].append(time.perf_counter() - t)
        out["verify"].append(report.verification.seconds)
        del model, m2
    out["threads"] = torch.get_num_threads()
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cfg", default="yolov7.yaml")
    ap.add_argument("--act", default="frelu")
    ap.add_argument("--imgsz", type=int, default=640)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="OMP/torch threads for both sides (0: leave as is)")
    ap.add_argument("--skip-process", action="store_true", help="only the in-process measurement")
    args = ap.parse_args(argv)

    env = {**os.environ, "YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "false", "YOLO_VERBOSE": "false"}
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    os.environ.update({k: env[k] for k in ("YOLO_OFFLINE", "YOLO_AUTOINSTALL", "YOLO_VERBOSE")})
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    med = statistics.median
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python "
          f"{platform.python_version()}, torch {torch.__version__}; {args.cfg} --act {args.act}, imgsz {args.imgsz}, "
          f"median of {args.repeats}")  # fmt: skip
    rows = []
    if not args.skip_process:
        build, patch = process_times(args.cfg, args.act, args.repeats, env)
        rows.append(("process: build only", med(build), 1.0))
        rows.append((f"process: yolo-act-swap --cfg {args.cfg} --act {args.act}", med(patch), med(patch) / med(build)))
    ip = inprocess_times(args.cfg, args.act, args.repeats, args.imgsz)
    b = med(ip["build"])
    rows.append(("in-process: build", b, 1.0))
    rows.append(("in-process: build + swap (verify=False)", b + med(ip["swap"]), (b + med(ip["swap"])) / b))
    rows.append(("in-process: build + patch + verify + GFLOPs", b + med(ip["patch+verify"]),
                 (b + med(ip["patch+verify"])) / b))  # fmt: skip
    rows.append(("  of which verification", med(ip["verify"]), med(ip["verify"]) / b))
    w = max(len(r[0]) for r in rows)
    print(f"{'':{w}}  {'seconds':>8}  {'x build':>8}")
    for name, s, ratio in rows:
        print(f"{name:{w}}  {s:8.2f}  {ratio:8.2f}")
    print(f"torch threads in-process: {ip['threads']}; target: the yolo-act-swap command <= 1.50x build")
    return 0


if __name__ == "__main__":
    sys.exit(main())
