"""Exported graphs per activation: ONNX node counts and ONNX Runtime latency of a whole detector, relative to SiLU's.

For each activation, yolov8n (ultralytics ``yolov8n.yaml``, 80 classes) is built, patched with
``yolo_act_swap.patch_model``, given trained-looking weights (``benchmarks/models.perturb``), fused
(``model.fuse()``: conv+BN, the BNs inside activations, ACON-C's scale into its conv) and exported with
``torch.onnx.export`` (opset 17, batch 1, static imgsz). ONNX Runtime (CPU, ``--ort-threads`` intra-op threads, all graph optimisations) then runs every model
interleaved, ``--runs`` x (warm-up + ``--reps`` repetitions); ``x SiLU`` is the ratio to the SiLU model within each
run (median [range]). ``max|d|`` is the largest difference between ONNX Runtime's and PyTorch's outputs, relative to
their scale. ``ORT nodes`` counts the graph ONNX Runtime runs after its optimisations (written with
``SessionOptions.optimized_model_filepath``), ``reorders`` its NCHW <-> NCHWc copies (ReorderInput + ReorderOutput:
two full passes over a feature map each time an op outside the blocked layout needs the tensor).

Usage:
    python benchmarks/export_graphs.py                               # silu, frelu, acon_c, dy_relu_b at 320, 1 thread
    python benchmarks/export_graphs.py --acts silu,acon_c,meta_acon_c,dy_relu_a,dy_relu_b --ort-threads 2
    python benchmarks/export_graphs.py --contention 2                # beside two CPU burners
    python benchmarks/export_graphs.py --profile                     # + where each model's extra time goes, per op
"""

from __future__ import annotations

import argparse
import collections
import io
import os
import statistics
import sys
import tempfile
import warnings
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "false")
os.environ.setdefault("YOLO_VERBOSE", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import harness

if __name__ == "__main__":
    harness.ensure_allocator()

import torch

from benchmarks.models import first, perturb
from yolo_act_swap import patch_model
from yolo_act_swap.models import build_detection_model


def export(act: str, cfg: str, imgsz: int):
    """(onnx bytes, input, torch output, node-type counts) of ``cfg`` patched with ``act``, fused, in eval mode."""
    import onnx

    torch.manual_seed(0)
    model = build_detection_model(cfg, nc=80, verbose=False)
    if act != "silu":
        patch_model(model, act, verify=False)
    model = perturb(model).eval()
    model.fuse(verbose=False) if "verbose" in model.fuse.__code__.co_varnames else model.fuse()
    x = torch.rand(1, 3, imgsz, imgsz, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y = first(model(x))
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kw = {"dynamo": False} if "dynamo" in torch.onnx.export.__code__.co_varnames else {}
        torch.onnx.export(model, (x,), f, opset_version=17, input_names=["images"], output_names=["output0"], **kw)
    counts = collections.Counter(n.op_type for n in onnx.load_from_string(f.getvalue()).graph.node)
    return f.getvalue(), x, y, counts


def quiet_copy(so):
    """A copy of the session options ``so`` (threads, optimisation level) that logs errors only (ONNX Runtime's
    "hardware specific" notice about saving an NCHWc graph, and the profiler's file notice)."""
    import onnxruntime as ort

    opt = ort.SessionOptions()
    opt.intra_op_num_threads, opt.inter_op_num_threads = so.intra_op_num_threads, so.inter_op_num_threads
    opt.graph_optimization_level, opt.log_severity_level = so.graph_optimization_level, 3
    return opt


def optimized_counts(data: bytes, so) -> collections.Counter:
    """Node types of the graph ONNX Runtime actually runs (after its graph optimisations) for the model ``data``."""
    import onnx
    import onnxruntime as ort

    opt = quiet_copy(so)
    with tempfile.TemporaryDirectory() as tmp:
        opt.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        ort.InferenceSession(data, opt, providers=["CPUExecutionProvider"])
        return collections.Counter(n.op_type for n in onnx.load(opt.optimized_model_filepath).graph.node)


def profile_ops(data: bytes, so, feed: dict, runs: int) -> tuple[dict, float]:
    """ONNX Runtime's own profile of ``runs`` runs of the model ``data`` (after one warm-up run): per op type of the
    optimised graph, ``(kernel ms per run, nodes per run)``, and the total kernel ms per run. Kernel times only: the
    executor's own work between kernels is not in them."""
    import json

    import onnxruntime as ort

    opt = quiet_copy(so)
    with tempfile.TemporaryDirectory() as tmp:
        opt.enable_profiling, opt.profile_file_prefix = True, str(Path(tmp) / "ort")
        sess = ort.InferenceSession(data, opt, providers=["CPUExecutionProvider"])
        for _ in range(runs + 1):
            sess.run(None, feed)
        events = json.loads(Path(sess.end_profiling()).read_text())
    spans = sorted((e["ts"], e["ts"] + e["dur"]) for e in events
                   if e.get("cat") == "Session" and e.get("name") == "model_run")[1:]  # the first run warmed up
    totals: dict = collections.defaultdict(lambda: [0.0, 0])
    for e in events:
        if e.get("cat") == "Node" and str(e.get("name", "")).endswith("_kernel_time"):
            if any(a <= e["ts"] <= b for a, b in spans):
                op = totals[e.get("args", {}).get("op_name", "?")]
                op[0] += e["dur"] / 1e3
                op[1] += 1
    n = max(len(spans), 1)
    out = {op: (ms / n, count / n) for op, (ms, count) in totals.items()}
    return out, sum(ms for ms, _ in out.values())


def profile_table(profiles: dict) -> str:
    """Per activation, its kernel time over SiLU's and the op types that make the difference (ms per run, nodes)."""
    base, base_total = profiles["silu"]
    lines = [f"# ONNX Runtime's profile, kernel ms per run (silu {base_total:.2f} ms); per activation the op types with "
             f"the largest differences from silu's model: +ms (nodes per run, us per node)"]
    for act, (ops, total) in profiles.items():
        if act == "silu":
            continue
        diff = {op: ops.get(op, (0.0, 0))[0] - base.get(op, (0.0, 0))[0] for op in set(ops) | set(base)}
        top = sorted(diff, key=lambda op: -abs(diff[op]))[:8]
        parts = []
        for op in top:
            ms, nodes = ops.get(op, (0.0, 0))
            each = f", {1e3 * ms / nodes:.0f} us" if nodes else ""
            parts.append(f"{op} {diff[op]:+.2f} ({nodes:.0f}{each})")
        lines.append(f"{act:12s} {total:6.2f} ms ({total / base_total:.2f}x): " + ", ".join(parts))
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--acts", default="silu,frelu,acon_c,dy_relu_b", help="comma-separated activations (silu first)")
    p.add_argument("--cfg", default="yolov8n.yaml")
    p.add_argument("--imgsz", type=int, default=320)
    p.add_argument("--ort-threads", type=int, default=1, help="ONNX Runtime intra-op threads")
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--profile", action="store_true", help="also profile each model with ONNX Runtime's profiler and "
                   "print, per activation, the op types whose kernel time differs most from SiLU's model")
    harness.add_arguments(p)
    args = p.parse_args(argv)
    import onnxruntime as ort

    threads = harness.pin_threads(args.threads or 1, args.pin)
    acts = [a for a in args.acts.split(",") if a]
    if "silu" not in acts:
        acts.insert(0, "silu")
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = args.ort_threads, 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    rows, cases, profiles = [], {}, {}
    for act in acts:
        data, x, y, counts = export(act, args.cfg, args.imgsz)
        sess = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
        feed = {"images": x.numpy()}
        out = torch.from_numpy(sess.run(None, feed)[0])
        err = float((out - y).abs().max() / y.abs().max().clamp_min(1e-12))
        cases[act] = (lambda s=sess, f=feed: s.run(None, f))
        top = ", ".join(f"{k} {v}" for k, v in counts.most_common(6))
        opt = optimized_counts(data, so)
        if args.profile:
            profiles[act] = profile_ops(data, so, feed, args.reps)
        rows.append({"act": act, "nodes": sum(counts.values()), "top": top, "err": err, "ort": sum(opt.values()),
                     "reorders": opt["ReorderInput"] + opt["ReorderOutput"]})
    print(f"# benchmarks/export_graphs.py: {harness.settings_line(threads, args.contention)}")
    print(f"# {args.cfg} batch 1 x {args.imgsz}, fused, opset 17; ONNX Runtime {ort.__version__}, "
          f"{args.ort_threads} intra-op thread(s); {args.runs} runs x (median of {args.reps} interleaved repetitions "
          f"after {args.warmup} warm-up)")
    with harness.Burners(args.contention):
        runs = harness.interleave(cases, args.reps, args.warmup, args.runs, args.clock, min_time=args.min_time)
        print(f"# measured beside {args.contention} burner processes, load average {harness.load()}")
    head = ["activation", "nodes", "most frequent node types", "ORT nodes", "reorders", "ORT ms", "x SiLU [range]",
            "max|d|"]
    lines = [head]
    for r in rows:
        lines.append([r["act"], str(r["nodes"]), r["top"], str(r["ort"]), str(r["reorders"]),
                      f"{statistics.median(runs[r['act']]) * 1e3:.2f}",
                      harness.spread(harness.ratio_runs(runs, r["act"], "silu")), f"{r['err']:.1e}"])
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    out = ["  ".join(v.ljust(widths[i]) if i in (0, 2) else v.rjust(widths[i]) for i, v in enumerate(line))
           for line in lines]
    out.insert(1, "-" * len(out[0]))
    print("\n".join(out))
    if profiles:
        print(profile_table(profiles))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
