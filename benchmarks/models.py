"""Benchmark patched detectors per activation and memory layout: a training step and eval latency, against SiLU.

For every model (ultralytics ``yolov8n.yaml``; ``yolov7-tiny.yaml`` from ``configs/models``), activation and layout
(``--layouts nchw,channels_last``), the model is built with the ultralytics engine (``build_detection_model``) and
patched with ``yolo_act_swap.patch_model`` (every activated conv block gets its own activation); a channels_last case
holds its weights and inputs in ``torch.channels_last``. On ``benchmarks/harness.py``: raised malloc thresholds,
fixed threads, every case interleaved after warm-up, ``--runs`` runs with their spread, ``--contention N`` burners.
Figures are ``median [min-max]`` of the runs' medians; ratios are taken within each run.

- ``train ms``: one training step, forward + the ultralytics detection loss on synthetic boxes + backward, at
  batch x imgsz (default 4 x 320); ``peak MiB`` (with ``--memory``): the most memory allocated at once in that step.
- ``(ref)`` rows (``--ref``): the same model with the straightforward implementations of ``benchmarks/reference.py``.
- ``infer ms``: eval-mode latency of the unfused model (batch 1 by default); ``fused ms``: after ``model.fuse()``
  (conv+BN as ultralytics, plus the BNs inside activations, e.g. FReLU's, folded); ``conv-only ms``: fused like
  ultralytics alone, activations left unfolded; ``max|d|``: largest output difference fused vs unfused, relative to
  the output's scale. ``--kinds`` picks which of train, infer, fused, conv_only are timed.
- ``x SiLU``: against the SiLU model in the same layout; ``cl/nchw``: channels_last over NCHW, same activation.

Usage:
    python benchmarks/models.py                          # yolov8n and yolov7-tiny, the default activations, NCHW
    python benchmarks/models.py --quick                  # yolov8n, silu/frelu/dy_relu_b, 2 repetitions
    python benchmarks/models.py --threads 1 --clock cpu --layouts nchw,channels_last --kinds train,fused
    python benchmarks/models.py --acts silu,frelu --models yolov8n.yaml --reps 10 --memory --contention 2
    python benchmarks/models.py --ref --acts silu,frelu,dy_relu_b   # also the straightforward implementations
    python benchmarks/models.py --acts silu,dy_relu_b:compile=true  # an activation's own keywords, inline
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from benchmarks import harness

if __name__ == "__main__":
    harness.ensure_allocator()  # before torch starts its OpenMP runtime

os.environ.setdefault("YOLO_OFFLINE", "1")  # never download anything
os.environ.setdefault("YOLO_AUTOINSTALL", "false")
os.environ.setdefault("YOLO_VERBOSE", "false")

import torch

from benchmarks.activations import _cpu_peak_and_net, sync
from benchmarks.reference import REFERENCES, ReferenceModule
from yolo_act_swap import patch_model
from yolo_act_swap.activations.registry import ACT_TAG
from yolo_act_swap.models import build_detection_model
from yolo_act_swap.tables import format_table

DEFAULT_ACTS = "silu,relu,leaky_relu,hard_swish,mish,frelu,acon_c,meta_acon_c,dy_relu_a,dy_relu_b,dy_relu_c"
DEFAULT_MODELS = "yolov8n.yaml,yolov7-tiny.yaml"
KINDS = ("train", "infer", "fused", "conv_only")
LAYOUTS = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}


def build(cfg: str, act: str, device: torch.device, reference: bool = False) -> torch.nn.Module:
    """A detection model with every activated conv block patched to ``act``, with the loss hyperparameters set.

    With ``reference``, each swapped activation then runs the straightforward implementation from
    ``benchmarks/reference.py`` (same weights).
    """
    from ultralytics.cfg import get_cfg

    torch.manual_seed(0)
    model = build_detection_model(cfg, nc=80, verbose=False)
    patch_model(model, act, verify=False)
    model.args = get_cfg()  # box/cls/dfl gains of the detection loss, as the trainer sets them
    model = perturb(model)
    if reference:
        swaps = [(parent, name, child) for parent in model.modules() for name, child in parent.named_children()
                 if getattr(child, ACT_TAG, None) in REFERENCES]
        for parent, name, child in swaps:
            setattr(parent, name, ReferenceModule(child))
    return model.to(device)


@torch.no_grad()
def perturb(model: torch.nn.Module) -> torch.nn.Module:
    """Give zero-initialised weights (heads, DY-ReLU's fc2) and BN statistics small random values, as after some
    training: a fresh detector's outputs are constants, which would make the fused-vs-unfused check vacuous."""
    g = torch.Generator().manual_seed(0)
    for p in model.parameters():
        if not p.any():
            p.copy_(torch.randn(p.shape, generator=g) * 0.01)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d) and m.running_mean is not None:
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return model


def synthetic_batch(batch: int, imgsz: int, device: torch.device, boxes: int = 4) -> dict:
    """Random images with ``boxes`` random targets each, in the ultralytics batch format."""
    g = torch.Generator().manual_seed(0)
    n = batch * boxes
    xy = torch.rand(n, 2, generator=g) * 0.6 + 0.2
    wh = torch.rand(n, 2, generator=g) * 0.2 + 0.05
    return {
        "img": torch.rand(batch, 3, imgsz, imgsz, generator=g).to(device),
        "batch_idx": torch.arange(batch).repeat_interleave(boxes).float().to(device),
        "cls": torch.randint(0, 80, (n, 1), generator=g).float().to(device),
        "bboxes": torch.cat([xy, wh], 1).to(device),
    }


def first(out):
    """The prediction tensor of an eval-mode output (a tensor, or a tuple/list/dict holding one first)."""
    while isinstance(out, (tuple, list, dict)):
        out = next(iter(out.values())) if isinstance(out, dict) else out[0]
    return out


def train_step(model, batch, autocast):
    params = [p for p in model.parameters() if p.requires_grad]

    def step():
        for p in params:
            p.grad = None
        if autocast is None:
            loss = model.loss(batch)[0]
        else:
            with torch.autocast(batch["img"].device.type, dtype=autocast):
                loss = model.loss(batch)[0]
        loss.sum().backward()

    return step


def infer(model, x, autocast):
    @torch.no_grad()
    def run():
        if autocast is None:
            return model(x)
        with torch.autocast(x.device.type, dtype=autocast):
            return model(x)

    return run


def unfolded_activations(model):
    """A copy whose activation modules are hidden from ``fuse_activations`` (conv+BN fusion only)."""
    m = copy.deepcopy(model)
    for mod in m.modules():
        if hasattr(mod, ACT_TAG):
            delattr(mod, ACT_TAG)
    return m


def to_layout(obj, layout: str):
    """A model, a tensor or a batch dict (its 4-D tensors) in ``layout`` (``nchw`` or ``channels_last``)."""
    fmt = LAYOUTS[layout]
    if isinstance(obj, dict):
        return {k: to_layout(v, layout) if isinstance(v, torch.Tensor) and v.ndim == 4 else v for k, v in obj.items()}
    if isinstance(obj, torch.Tensor):
        return obj.contiguous(memory_format=fmt)
    return obj.to(memory_format=fmt)


def _rel_diff(y: torch.Tensor, ref: torch.Tensor) -> float:
    return float((y - ref).abs().max() / ref.abs().max().clamp_min(1e-12))


def _variant(cfg, act, ref, args, device, autocast, batch, x1) -> tuple[list[dict], dict]:
    """The rows (one per layout) and timed cases of one activation: ``{"act|layout|kind": fn}``."""
    label = act + (" (ref)" if ref else "")
    base = build(cfg, act, device, ref).train()
    ev = copy.deepcopy(base).eval()
    models = {"train": base, "infer": ev, "fused": copy.deepcopy(ev).fuse(verbose=False),
              "conv_only": unfolded_activations(ev).fuse(verbose=False)}  # fused in NCHW, then moved to the layout
    with torch.no_grad():
        y_nchw = first(models["fused"](x1)).float()
    rows, cases = [], {}
    for layout in args.layouts:
        ms = {k: to_layout(copy.deepcopy(m), layout) if layout != "nchw" else m for k, m in models.items()}
        b, x = to_layout(batch, layout), to_layout(x1, layout)
        with torch.no_grad():
            y, yf = first(ms["infer"](x)).float(), first(ms["fused"](x)).float()
        row = {"model": Path(cfg).stem, "act": label, "layout": layout, "diff": _rel_diff(yf, y),
               "layout_diff": _rel_diff(yf, y_nchw), "params": sum(p.numel() for p in base.parameters())}
        for kind in args.kinds:
            fn = train_step(ms["train"], b, autocast) if kind == "train" else infer(ms[kind], x, autocast)
            cases[f"{label}|{layout}|{kind}"] = fn
        if args.memory:
            row["peak_mib"] = _peak_mib(train_step(ms["train"], b, autocast), device)
        rows.append(row)
    return rows, cases


def _peak_mib(step, device) -> float:
    """The most memory one call of ``step`` holds at once, in MiB."""
    if device.type == "cpu":
        return _cpu_peak_and_net(step)[0] / 2**20
    sync(device)
    torch.cuda.reset_peak_memory_stats(device)
    start = torch.cuda.memory_allocated(device)
    step()
    sync(device)
    return (torch.cuda.max_memory_allocated(device) - start) / 2**20


def bench_model(cfg: str, acts: list[str], args, device, autocast) -> list[dict]:
    """Rows of one model: per activation and layout, the runs of each kind (seconds) and their ratios."""
    batch = synthetic_batch(args.batch, args.imgsz, device)
    x1 = torch.rand(args.infer_batch, 3, args.imgsz, args.imgsz, generator=torch.Generator().manual_seed(1)).to(device)
    variants = [(a, False) for a in acts]
    if args.ref:  # the straightforward implementations in the same models, for the channel-aware ones
        variants += [(a, True) for a in acts if a.split(":")[0] in REFERENCES and ":" not in a]
    rows, cases = [], {}
    for act, ref in variants:
        r, c = _variant(cfg, act, ref, args, device, autocast, batch, x1)
        rows, cases = rows + r, {**cases, **c}
    with harness.Burners(args.contention):
        runs = harness.interleave(cases, args.reps, args.warmup, args.runs, args.clock, sync=lambda: sync(device),
                                      min_time=args.min_time)
    for row in rows:
        for kind in args.kinds:
            key = f"{row['act']}|{row['layout']}|{kind}"
            row[kind] = runs[key]
            if "silu" in acts:
                row[f"{kind}_x_silu"] = harness.ratio_runs(runs, key, f"silu|{row['layout']}|{kind}")
            if row["layout"] != "nchw" and "nchw" in args.layouts:
                row[f"{kind}_x_nchw"] = harness.ratio_runs(runs, key, f"{row['act']}|nchw|{kind}")
    return rows


def table(rows: list[dict], args) -> str:
    """The rows as text: ``median [min-max]`` over the runs for every time and ratio."""
    both = len(args.layouts) > 1
    head = ["model", "activation", "layout", "params"]
    for kind in args.kinds:
        head += [f"{kind} ms", "x SiLU"] + (["cl/nchw"] if both else [])
    head += (["peak MiB"] if args.memory else []) + ["max|d| fused"] + (["|d| cl"] if both else [])
    lines = []
    for r in rows:
        line = [r["model"], r["act"], r["layout"], f"{r['params'] / 1e6:.2f}M"]
        for kind in args.kinds:
            line += [harness.spread([v * 1e3 for v in r[kind]], ".1f"), harness.spread(r.get(f"{kind}_x_silu", []))]
            line += [harness.spread(r.get(f"{kind}_x_nchw", []))] if both else []
        line += [f"{r['peak_mib']:.0f}"] if args.memory else []
        line += [f"{r['diff']:.1e}"] + ([f"{r['layout_diff']:.1e}"] if both else [])
        lines.append(line)
    return "\n".join(format_table(head, lines, right=range(3, len(head)), group_first=True))


def _csv(value: str, allowed=None, flag: str = "") -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    bad = [v for v in items if allowed is not None and v not in allowed]
    if bad or not items:
        raise SystemExit(f"{flag} {value}: choose from {', '.join(allowed)}")
    return items


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--models", default=DEFAULT_MODELS, help="comma-separated model YAMLs")
    p.add_argument("--acts", default=DEFAULT_ACTS, help="comma-separated activations (silu is the baseline)")
    p.add_argument("--layouts", default="nchw", help="comma-separated memory layouts: nchw, channels_last")
    p.add_argument("--kinds", default=",".join(KINDS), help=f"what to time, comma-separated: {', '.join(KINDS)}")
    p.add_argument("--batch", type=int, default=4, help="training batch size")
    p.add_argument("--imgsz", type=int, default=320, help="image size (training and inference)")
    p.add_argument("--infer-batch", type=int, default=1, help="inference batch size")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:i]")
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"], help="bf16/fp16: autocast")
    p.add_argument("--reps", type=int, default=5, help="timed repetitions per case and run (median kept)")
    p.add_argument("--warmup", type=int, default=1, help="untimed repetitions per case before each run")
    p.add_argument("--memory", action="store_true", help="also measure the training step's peak memory")
    p.add_argument("--ref", action="store_true", help="also run the channel-aware activations' reference versions")
    p.add_argument("--quick", action="store_true", help="yolov8n with silu, frelu, dy_relu_b; 2 repetitions, 1 run")
    harness.add_arguments(p)
    args = p.parse_args(argv)
    if args.quick:
        args.models, args.reps, args.warmup, args.runs = "yolov8n.yaml", min(args.reps, 2), min(args.warmup, 1), 1
        if args.acts == DEFAULT_ACTS:
            args.acts = "silu,frelu,dy_relu_b"
    args.layouts = _csv(args.layouts, LAYOUTS, "--layouts")
    args.kinds = _csv(args.kinds, KINDS, "--kinds")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    threads = harness.pin_threads(args.threads, args.pin)
    device = torch.device(args.device)
    autocast = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    acts = [a.strip() for a in args.acts.split(",") if a.strip()]
    print(f"# benchmarks/models.py: {harness.settings_line(threads, args.contention)}")
    print(f"# {args.dtype} on {device}; train: batch {args.batch} x {args.imgsz}, infer: batch {args.infer_batch}; "
          f"{args.clock} clock; {args.runs} runs x ({args.warmup} warm-up + {args.reps} interleaved repetitions), "
          f"median [min-max] of the runs' medians; command: python benchmarks/models.py "
          f"{' '.join(argv if argv is not None else sys.argv[1:])}")
    rows = []
    for cfg in [m.strip() for m in args.models.split(",") if m.strip()]:
        t0 = time.perf_counter()
        try:
            rows += bench_model(cfg, acts, args, device, autocast)
        except Exception as e:  # noqa: BLE001 - a model that cannot be built here is reported, not fatal
            print(f"# skipped {cfg}: {type(e).__name__}: {e}")
            continue
        print(f"# {cfg}: {time.perf_counter() - t0:.0f} s, load average {harness.load()}", flush=True)
        print(table([r for r in rows if r["model"] == Path(cfg).stem], args) + "\n", flush=True)  # kept if cut short
    print("# all models")
    print(table(rows, args))
    print(f"\n# done; {harness.settings_line(threads, args.contention)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
