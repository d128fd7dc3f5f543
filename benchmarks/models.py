"""Benchmark patched detectors per activation: a training step and fused inference, relative to the SiLU model.

For every model (ultralytics ``yolov5n.yaml``; ``yolov7-tiny.yaml`` from ``configs/models``) and activation, the model
is built with the ultralytics engine (``build_detection_model``) and patched with ``yolo_act_swap.patch_model`` (every
activated conv block gets its own activation). Measured, interleaved over all candidates, medians after warm-up:

- ``train ms``: one training step, forward + the ultralytics detection loss on synthetic boxes + backward, at
  batch x imgsz (default 4 x 320); ``peak MiB`` (with ``--memory``): the most memory allocated at once in that step.
- ``(ref)`` rows (``--ref``): the same model with the straightforward implementations of ``benchmarks/reference.py``.
- ``infer ms``: eval-mode latency of the unfused model (batch 1 by default); ``fused ms``: after ``model.fuse()``
  (conv+BN as ultralytics, plus the BNs inside activations, e.g. FReLU's, folded); ``conv-only ms``: fused like
  ultralytics alone, activations left unfolded; ``max|d|``: largest output difference fused vs unfused, relative to
  the output's scale.

Usage:
    python benchmarks/models.py                          # yolov5n and yolov7-tiny, the default activations
    python benchmarks/models.py --quick                  # yolov5n, silu/frelu/dy_relu_b, 2 repetitions
    python benchmarks/models.py --acts silu,frelu --models yolov5n.yaml --reps 10 --memory
    python benchmarks/models.py --threads 1 --clock cpu  # on a shared, busy machine
    python benchmarks/models.py --ref --acts silu,frelu,dy_relu_b   # also the straightforward implementations
    python benchmarks/models.py --acts silu,dy_relu_b:compile=true  # an activation's own keywords, inline
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")  # never download anything
os.environ.setdefault("YOLO_AUTOINSTALL", "false")
os.environ.setdefault("YOLO_VERBOSE", "false")

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.activations import _cpu_peak_and_net, machine, sync
from benchmarks.reference import REFERENCES, ReferenceModule
from yolo_act_swap import patch_model
from yolo_act_swap.activations.registry import ACT_TAG
from yolo_act_swap.models import build_detection_model

DEFAULT_ACTS = "silu,relu,leaky_relu,hard_swish,mish,frelu,acon_c,meta_acon_c,dy_relu_a,dy_relu_b,dy_relu_c"
DEFAULT_MODELS = "yolov5n.yaml,yolov7-tiny.yaml"


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


class Candidate:
    """A timed callable with its repetitions."""

    def __init__(self, fn, device):
        self.fn, self.device, self.times = fn, device, []

    def run(self, clock):
        sync(self.device)
        t = clock()
        self.fn()
        sync(self.device)
        self.times.append(clock() - t)

    @property
    def ms(self) -> float:
        return statistics.median(self.times) * 1e3 if self.times else float("nan")


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


def bench_model(cfg: str, acts: list[str], args, device, autocast) -> list[dict]:
    batch = synthetic_batch(args.batch, args.imgsz, device)
    x1 = torch.rand(args.infer_batch, 3, args.imgsz, args.imgsz, generator=torch.Generator().manual_seed(1)).to(device)
    rows, cands = [], {}
    variants = [(a, False) for a in acts]
    if args.ref:  # the straightforward implementations in the same models, for the channel-aware ones
        variants += [(a, True) for a in acts if a.split(":")[0] in REFERENCES and ":" not in a]
    for act, ref in variants:
        label = act + (" (ref)" if ref else "")
        model = build(cfg, act, device, ref).train()
        params = sum(p.numel() for p in model.parameters())
        ev = copy.deepcopy(model).eval()
        fused = copy.deepcopy(ev).fuse(verbose=False)
        conv_only = unfolded_activations(ev).fuse(verbose=False)
        with torch.no_grad():
            y, yf = first(ev(x1)).float(), first(fused(x1)).float()
        diff = float((y - yf).abs().max() / y.abs().max().clamp_min(1e-12))
        row = {"model": Path(cfg).stem, "act": label, "params": params, "diff": diff}
        cands[(label, "train")] = Candidate(train_step(model, batch, autocast), device)
        cands[(label, "infer")] = Candidate(infer(ev, x1, autocast), device)
        cands[(label, "fused")] = Candidate(infer(fused, x1, autocast), device)
        cands[(label, "conv_only")] = Candidate(infer(conv_only, x1, autocast), device)
        if args.memory and device.type == "cpu":
            row["peak_mib"] = _cpu_peak_and_net(train_step(model, batch, autocast))[0] / 2**20
        elif args.memory:
            sync(device)
            torch.cuda.reset_peak_memory_stats(device)
            base = torch.cuda.memory_allocated(device)
            train_step(model, batch, autocast)()
            sync(device)
            row["peak_mib"] = (torch.cuda.max_memory_allocated(device) - base) / 2**20
        rows.append(row)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    for c in cands.values():
        for _ in range(args.warmup):
            c.fn()
    for _ in range(args.reps):
        for c in cands.values():
            c.run(clock)
    base = {k: cands[("silu", k)].ms for k in ("train", "infer", "fused")} if "silu" in acts else None
    for row in rows:
        for k in ("train", "infer", "fused", "conv_only"):
            row[k] = cands[(row["act"], k)].ms
        row["fused_x_unfused"] = row["fused"] / row["infer"]
        if base:
            row["train_x"] = row["train"] / base["train"]
            row["infer_x"] = row["infer"] / base["infer"]
            row["fused_x"] = row["fused"] / base["fused"]
    return rows


def table(rows: list[dict], memory: bool) -> str:
    head = ["model", "activation", "params", "train ms", "x SiLU"]
    head += ["peak MiB"] if memory else []
    head += ["infer ms", "x SiLU", "fused ms", "x SiLU", "fused/unfused", "conv-only ms", "max|d| fused"]
    lines = [head]

    def f(v, spec):
        return "-" if v is None else format(v, spec)

    for r in rows:
        line = [r["model"], r["act"], f"{r['params'] / 1e6:.2f}M", f(r["train"], ".1f"), f(r.get("train_x"), ".2f")]
        line += [f(r.get("peak_mib"), ".0f")] if memory else []
        line += [
            f(r["infer"], ".1f"), f(r.get("infer_x"), ".2f"), f(r["fused"], ".1f"), f(r.get("fused_x"), ".2f"),
            f(r["fused_x_unfused"], ".2f"), f(r["conv_only"], ".1f"), f(r["diff"], ".1e"),
        ]
        lines.append(line)
    widths = [max(len(str(l[i])) for l in lines) for i in range(len(head))]
    out = []
    for line in lines:
        cells = [str(v).rjust(w) if i > 1 else str(v).ljust(w) for i, (v, w) in enumerate(zip(line, widths))]
        out.append("  ".join(cells))
    out.insert(1, "-" * len(out[0]))
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--models", default=DEFAULT_MODELS, help="comma-separated model YAMLs")
    p.add_argument("--acts", default=DEFAULT_ACTS, help="comma-separated activations (silu is the baseline)")
    p.add_argument("--batch", type=int, default=4, help="training batch size")
    p.add_argument("--imgsz", type=int, default=320, help="image size (training and inference)")
    p.add_argument("--infer-batch", type=int, default=1, help="inference batch size")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:i]")
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"], help="bf16/fp16: autocast")
    p.add_argument("--reps", type=int, default=5, help="timed repetitions per candidate (median reported)")
    p.add_argument("--warmup", type=int, default=1, help="untimed repetitions first")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--clock", default="wall", choices=["wall", "cpu"],
                   help="wall: elapsed time; cpu: process CPU time (robust on a shared machine with --threads 1)")
    p.add_argument("--memory", action="store_true", help="also measure the training step's peak memory")
    p.add_argument("--ref", action="store_true", help="also run the channel-aware activations' reference versions")
    p.add_argument("--quick", action="store_true", help="yolov5n with silu, frelu, dy_relu_b; 2 repetitions")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.models, args.reps, args.warmup = "yolov5n.yaml", min(args.reps, 2), min(args.warmup, 1)
        if args.acts == DEFAULT_ACTS:
            args.acts = "silu,frelu,dy_relu_b"
    device = torch.device(args.device)
    autocast = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    acts = [a.strip() for a in args.acts.split(",") if a.strip()]
    print(f"# benchmarks/models.py: {machine(device, torch.get_num_threads())}")
    print(f"# {args.dtype} on {device}; train: batch {args.batch} x {args.imgsz}, infer: batch {args.infer_batch}; "
          f"{args.clock} clock, median of {args.reps} interleaved repetitions after {args.warmup} warm-up; activations "
          f"swapped with yolo_act_swap.patch_model; command: python benchmarks/models.py "
          f"{' '.join(argv if argv is not None else sys.argv[1:])}")
    rows = []
    for cfg in [m.strip() for m in args.models.split(",") if m.strip()]:
        t0 = time.perf_counter()
        try:
            rows += bench_model(cfg, acts, args, device, autocast)
        except Exception as e:  # noqa: BLE001 - a model that cannot be built here is reported, not fatal
            print(f"# skipped {cfg}: {type(e).__name__}: {e}")
            continue
        print(f"# {cfg}: {time.perf_counter() - t0:.0f} s")
    print()
    print(table(rows, args.memory))
    print(f"\n# done; {machine(device, torch.get_num_threads())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
