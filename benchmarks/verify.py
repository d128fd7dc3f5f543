"""How much does patching + verification cost, next to building the model? Measured side by side in one run.

Targets: ``yolo-act-swap --cfg yolov7.yaml --act frelu`` takes at most 1.2x the time of building the same model
unpatched (as processes), and verification at most 1.5x its floor (``--floor``: the bare cost of its pieces, see
``floor_times``). Two views, each a median over ``--repeats`` interleaved repeats, ``--runs`` times (the ratios
print as median [range] of the runs):

- process: the whole command in a fresh process (``yolo-act-swap ...``) vs a fresh process that only builds the model
  (``load_model(cfg)``); both pay the Python/torch/ultralytics imports, as a user does. A second baseline builds
  with its imports frozen out of the garbage collector (``gc.freeze()``), as the command does: what patching and
  verification themselves add.
- in-process: ``load_model`` vs ``load_model`` + ``patch_model`` (verify on, GFLOPs on), after a warm-up, with the
  patch split into swap only (``verify=False``) and verification.

    python benchmarks/verify.py --floor                        # yolov7.yaml, frelu: 3 runs of 3 repeats
    python benchmarks/verify.py --floor --contention 2         # the same beside two CPU burners
    python benchmarks/verify.py --cfg yolov8n.yaml --act acon_c --repeats 5 --threads 1
    python benchmarks/verify.py --modes --cfgs yolov7.yaml yolov8n.yaml --repeats 3 --threads 1

``--modes`` asks whether verify's hand-written shape rules (``ShapeOnly``) pay for themselves: the same in-process
``patch_model`` (verify on, GFLOPs on) with the meta forwards run under ``ShapeOnly`` (the default), under no mode at
all (plain meta tensors: torch's own meta kernels) and under ``torch._subclasses.fake_tensor.FakeTensorMode``. Each
mode runs in a fresh process, so that the first call pays the first-use imports (``torch._dynamo``, sympy) as a
user's command does; the table shows that first call and the median of the warm calls after it, and each mode's
ratio to ``ShapeOnly``.

``--threads`` sets OMP_NUM_THREADS / torch threads for both sides (1 is steadier on a shared machine).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

BUILD = "from yolo_act_swap.models import load_model; load_model({cfg!r})"
# The same build with its imports frozen out of the garbage collector, as the command does (``cli.main``): the fair
# baseline for what patching and verification add, since a plain build pays full collections (and the one at exit)
# over every object torch and ultralytics made, and the command does not.
BUILD_FROZEN = "import gc; from yolo_act_swap.models import load_model; gc.freeze(); load_model({cfg!r})"


def _run(cmd: list[str], env: dict) -> float:
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    dt = time.perf_counter() - t
    if r.returncode:
        raise SystemExit(f"failed ({r.returncode}): {' '.join(cmd)}\n{r.stderr[-2000:]}")
    return dt


def process_times(cfg: str, act: str, repeats: int, env: dict) -> tuple[list, list, list]:
    """Seconds of ``repeats`` interleaved processes each: a plain build, a build with frozen imports, the command."""
    script = Path(sys.executable).with_name("yolo-act-swap")
    cli = [str(script)] if script.exists() else [sys.executable, "-m", "yolo_act_swap"]
    build, frozen, patch = [], [], []
    for _ in range(repeats):  # interleaved, so that load changes hit every side alike
        build.append(_run([sys.executable, "-c", BUILD.format(cfg=cfg)], env))
        frozen.append(_run([sys.executable, "-c", BUILD_FROZEN.format(cfg=cfg)], env))
        patch.append(_run([*cli, "--cfg", cfg, "--act", act], env))
    return build, frozen, patch


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


def floor_times(cfg: str, act: str, repeats: int, imgsz: int) -> dict:
    """The bare cost of the work verification does, each piece timed alone (median of ``repeats``), summed: the floor.

    Verification performs: 2 meta copies (the unpatched and the patched model), 10 shape-only forwards on meta
    (unpatched and patched in eval and train at two sizes, the fused copy in eval at both), one fuse of a meta copy,
    3 small real forwards without gradients (eval at batch 1, train at batches 2 and 1) and 2 GFLOPs counts
    (ultralytics' ``get_flops`` on meta copies, through ``model_flops``). Hooks, recording and comparing come on top of this floor.
    """
    import torch

    from yolo_act_swap import patch_model
    from yolo_act_swap.models import load_model
    from yolo_act_swap.verify import META, check_sizes, fuse_copy, meta_copy, model_flops, one_thread, shape_mode
    from yolo_act_swap.verify.checks import _forwards

    model = load_model(cfg)
    patch_model(model, act, imgsz=imgsz, verify=False, flops=False)
    gs = max(int(model.stride.max()), 32)
    sizes = check_sizes(imgsz, gs)
    med = statistics.median

    def timed(fn, n=repeats):
        out = []
        for _ in range(n):
            t = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t)
        return med(out)

    copy_s = timed(lambda: meta_copy(model))
    m = meta_copy(model)

    def shapes():
        with torch.no_grad(), shape_mode():
            for mode in ("eval", "train"):
                m.train(mode == "train")
                for h, w in sizes:
                    m(torch.empty(2, 3, h, w, device=META))

    shape_s = timed(shapes) / 4  # one forward
    fuse_s = timed(lambda: fuse_copy(meta_copy(model))) - copy_s
    m.eval()
    flops_s = timed(lambda: model_flops(m, imgsz))

    def real():
        with torch.no_grad(), one_thread():
            for mode, n, hw in _forwards((gs, gs), 2, gs):
                model.train(mode == "train")
                model(torch.rand(n, 3, *hw))

    real_s = timed(real)
    parts = {"2 meta copies": 2 * copy_s, "10 shape forwards": 10 * shape_s, "fuse on meta": fuse_s,
             "3 real forwards": real_s, "2 GFLOPs counts": 2 * flops_s}  # fmt: skip
    return {**parts, "floor": sum(parts.values())}


def _fake_mode():
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx.experimental.symbolic_shapes import ShapeEnv

    # a shape env with scalar outputs: ultralytics' make_anchors fills with a (real, CPU) stride tensor's value
    return FakeTensorMode(allow_non_fake_inputs=True, shape_env=ShapeEnv(allow_scalar_outputs=True))


MODES = {"shapeonly": None, "meta": contextlib.nullcontext, "fake": _fake_mode}


def mode_child(cfg: str, act: str, mode: str, repeats: int, imgsz: int) -> dict:
    """In this (fresh) process: the first and ``repeats`` warm ``patch_model`` calls with meta forwards under ``mode``."""
    from yolo_act_swap import patch_model
    from yolo_act_swap.models import load_model
    from yolo_act_swap.verify import set_shape_mode

    if MODES[mode] is not None:
        set_shape_mode(MODES[mode])
    out = {"patch": [], "verify": [], "ok": [], "gflops": []}
    for _ in range(1 + repeats):
        model = load_model(cfg)
        t = time.perf_counter()
        report = patch_model(model, act, imgsz=imgsz)
        out["patch"].append(time.perf_counter() - t)
        out["verify"].append(report.verification.seconds)
        out["ok"].append(report.verification.ok)
        out["gflops"].append(report.gflops_after)
    out["dynamo"] = "torch._dynamo" in sys.modules
    return out


def mode_table(cfgs: list[str], act: str, repeats: int, imgsz: int, env: dict) -> list[str]:
    """One fresh process per (model, mode); rows: first call and warm median, seconds and ratio to ShapeOnly."""
    med = statistics.median
    lines = [f"{'model':14} {'mode':10} {'first patch':>11} {'x':>6} {'warm patch':>10} {'x':>6} {'warm verify':>11} "
             f"{'x':>6} {'spread':>12}  ok  GFLOPs  dynamo"]  # fmt: skip
    for cfg in cfgs:
        base = None
        for mode in MODES:
            cmd = [sys.executable, __file__, "--mode-child", mode, "--cfg", cfg, "--act", act, "--imgsz", str(imgsz),
                   "--repeats", str(repeats)]  # fmt: skip
            r = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if r.returncode:
                lines.append(f"{cfg:14} {mode:10} failed: {(r.stderr.strip().splitlines() or ['?'])[-1][:150]}")
                continue
            d = json.loads(r.stdout.strip().splitlines()[-1])
            first, warm_p, warm_v = d["patch"][0], med(d["patch"][1:]), med(d["verify"][1:])
            base = base or (first, warm_p, warm_v)
            spread = f"{min(d['verify'][1:]):.2f}-{max(d['verify'][1:]):.2f}"
            gf = d["gflops"][-1]
            lines.append(f"{cfg:14} {mode:10} {first:11.2f} {first / base[0]:6.2f} {warm_p:10.2f} {warm_p / base[1]:6.2f} "
                         f"{warm_v:11.2f} {warm_v / base[2]:6.2f} {spread:>12}  {'y' if all(d['ok']) else 'n':>2}  "
                         f"{gf if gf is None else round(gf, 1)!s:>6}  {d['dynamo']}")  # fmt: skip
    return lines


def one_run(args, env) -> dict[str, float]:
    """One run's ratios: the command vs a plain build (processes), and in-process patch costs vs build and floor."""
    med = statistics.median
    out = {}
    if not args.skip_process:
        build, frozen, patch = process_times(args.cfg, args.act, args.repeats, env)
        out["process: the command / build only"] = med(patch) / med(build)
        out["process: the command / build only, imports frozen"] = med(patch) / med(frozen)
    ip = inprocess_times(args.cfg, args.act, args.repeats, args.imgsz)
    b = med(ip["build"])
    out["in-process: build + swap / build"] = (b + med(ip["swap"])) / b
    out["in-process: build + patch + verify + GFLOPs / build"] = (b + med(ip["patch+verify"])) / b
    if args.floor:
        fl = floor_times(args.cfg, args.act, args.repeats, args.imgsz)
        out["in-process: (patch + verify + GFLOPs - swap) / floor"] = (med(ip["patch+verify"]) - med(ip["swap"])) / fl[
            "floor"]  # fmt: skip
        out.update({f"  floor piece / floor: {k}": v / fl["floor"] for k, v in fl.items() if k != "floor"})
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cfg", default="yolov7.yaml")
    ap.add_argument("--act", default="frelu")
    ap.add_argument("--imgsz", type=int, default=640)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="OMP/torch threads for both sides (0: leave as is)")
    ap.add_argument("--runs", type=int, default=3, help="independent runs (ratios: median [range] of the runs)")
    ap.add_argument("--contention", type=int, default=0, metavar="N", help="N CPU-burner processes beside the runs")
    ap.add_argument("--skip-process", action="store_true", help="only the in-process measurement")
    ap.add_argument("--floor", action="store_true", help="also time the floor: verification's work, piece by piece")
    ap.add_argument("--modes", action="store_true", help="ShapeOnly vs plain meta vs FakeTensorMode (see above)")
    ap.add_argument("--cfgs", nargs="+", default=["yolov7.yaml", "yolov8n.yaml"], help="models for --modes")
    ap.add_argument("--mode-child", choices=list(MODES), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    env = {**os.environ, "YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "false", "YOLO_VERBOSE": "false"}
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    os.environ.update({k: env[k] for k in ("YOLO_OFFLINE", "YOLO_AUTOINSTALL", "YOLO_VERBOSE")})
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.mode_child:
        print(json.dumps(mode_child(args.cfg, args.act, args.mode_child, args.repeats, args.imgsz)))
        return 0
    if args.modes:
        print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
              f"threads {args.threads or 'default'}; --act {args.act}, imgsz {args.imgsz}; patch_model with verify + "
              f"GFLOPs; first call of a fresh process, then median of {args.repeats} warm calls; x = ratio to shapeonly")
        print("\n".join(mode_table(args.cfgs, args.act, args.repeats, args.imgsz, env)))
        return 0
    from benchmarks import harness

    print(f"# {harness.settings_line(torch.get_num_threads(), args.contention)}")
    print(f"# {args.cfg} --act {args.act}, imgsz {args.imgsz}; {args.runs} runs of {args.repeats} interleaved repeats "
          f"(each ratio is taken within a run; median [range] of the runs)")  # fmt: skip
    ratios: dict[str, list[float]] = {}
    with harness.Burners(args.contention):
        for _ in range(args.runs):
            for k, v in one_run(args, env).items():
                ratios.setdefault(k, []).append(v)
    w = max(map(len, ratios))
    for k, v in ratios.items():
        print(f"{k:{w}}  {harness.spread(v)}")
    print("targets: the command <= 1.20x a plain build (process); verification <= 1.50x its floor (in-process)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
