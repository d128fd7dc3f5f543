"""Benchmark every registered activation: forward+backward time and memory at a feature-map size, relative to SiLU.

Channel-aware activations are also timed against the straightforward implementations in ``benchmarks/reference.py``
(same weights), and their outputs and input gradients are checked against them. All candidates of one size run
interleaved (one repetition of each in turn), so that load on the machine hits them alike; that is repeated for
``--runs`` runs (default 3) and the ratio columns show the median of the runs' ratios with their range
(``benchmarks/harness.py``: raised malloc thresholds, fixed threads, warm-up, CPU burners for ``--contention``).

Memory, per activation, in training mode:
- ``peak``: the most memory allocated at once during forward+backward beyond the input and the upstream gradient (CPU:
  the torch profiler's allocation events; CUDA: ``torch.cuda.max_memory_allocated``). SiLU needs 2 feature maps (its
  output and the input gradient).
- ``kept``: what the forward leaves allocated for the backward besides its output, in feature maps of the input's size.
  This is what piles up across the layers of a network (SiLU keeps only its input, which is not counted).

Usage:
    python benchmarks/activations.py                       # CPU, float32, [8,64,80,80] and [8,256,20,20]
    python benchmarks/activations.py --quick               # a short run: [4,32,40,40], 3 repetitions
    python benchmarks/activations.py --only frelu,dy_relu_b --reps 20
    python benchmarks/activations.py --device cuda --dtype bf16   # autocast on a GPU
    python benchmarks/activations.py --compile             # also time compile=True (torch.compile; slow to build)
    python benchmarks/activations.py --eager               # also time the eager blocks beside the fused C kernels
    python benchmarks/activations.py --threads 1 --clock cpu   # on a shared, busy machine
    python benchmarks/activations.py --threads 2 --contention 0,2 --only acon_c,dy_relu_b --no-memory --no-fused
                                                           # idle, then beside 2 CPU burners: ratios side by side
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from benchmarks import harness

if __name__ == "__main__":
    harness.ensure_allocator()  # before torch starts its OpenMP runtime

import torch
import torch.nn as nn

from benchmarks.act_tables import contention_table, fused_table, table
from benchmarks.reference import REFERENCES, VECTORISED, ReferenceModule
from yolo_act_swap.activations import create_activation, list_activations, native

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def machine(device: torch.device, threads: int) -> str:
    """One line describing the machine, the library versions and the current load."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    s = f"{cpu}, {os.cpu_count()} logical CPUs, torch {torch.__version__}, {threads} threads"
    if device.type == "cuda":
        s += f", {torch.cuda.get_device_name(device)}"
    if hasattr(os, "getloadavg"):
        s += f", load average {os.getloadavg()[0]:.1f}"
    return s


@torch.no_grad()
def perturb(m: nn.Module, seed: int = 0) -> nn.Module:
    """Move every parameter off its initial value (a fresh DY-ReLU is exactly ReLU, which would check nothing)."""
    g = torch.Generator().manual_seed(seed)
    for p in m.parameters():
        p.add_(torch.randn(p.shape, generator=g).to(p) * 0.1)
    return m


class Case:
    """One candidate: a module plus how to run one training step of it on the shared input."""

    def __init__(self, label: str, module: nn.Module, x: torch.Tensor, g: torch.Tensor, autocast: torch.dtype | None):
        self.label, self.module, self.x, self.g, self.autocast = label, module, x, g, autocast
        self.params = [p for p in module.parameters() if p.requires_grad]
        self.times: list[float] = []

    def forward(self) -> torch.Tensor:
        if self.autocast is None:
            return self.module(self.x)
        with torch.autocast(self.x.device.type, dtype=self.autocast):
            return self.module(self.x)

    def step(self) -> None:
        self.x.grad = None
        for p in self.params:
            p.grad = None
        self.forward().backward(self.g)

    def timed_step(self, clock=time.perf_counter) -> None:
        sync(self.x.device)
        t = clock()
        self.step()
        sync(self.x.device)
        self.times.append(clock() - t)

    @property
    def ms(self) -> float:
        return statistics.median(self.times) * 1e3


class EagerCase(Case):
    """The same module with the fused C kernels switched off (``native.use_native(False)``): the eager blocks."""

    def step(self) -> None:
        with native.use_native(False):
            super().step()


FUSED_KERNELS = ("acon_c", "meta_acon_c", "dy_relu_a", "dy_relu_b", "dy_relu_c", "frelu")  # the activations kernels.c covers
CLONE = "x.clone()"


class Clone:
    """``x.clone()`` of the benchmark's input: the memory-traffic floor the ``clones`` column divides by."""

    def __init__(self, x: torch.Tensor):
        self.x, self.runs = x, []

    def step(self) -> None:
        self.x.clone()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _cpu_peak_and_net(fn) -> tuple[int, int]:
    """Peak and final net bytes allocated by ``fn`` on the CPU, from the profiler's allocation events."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = []
    stack = list(prof.profiler.kineto_results.experimental_event_tree())
    alloc = torch._C._profiler._EventType.Allocation
    while stack:
        e = stack.pop()
        stack.extend(e.children)
        if e.tag == alloc and e.extra_fields.device.type == "cpu":
            events.append((e.start_time_ns, e.extra_fields.alloc_size))
    cur = peak = 0
    for _, size in sorted(events):
        cur += size
        peak = max(peak, cur)
    return peak, cur


def memory(case: Case) -> tuple[float, float]:
    """(peak bytes during forward+backward, bytes kept by the forward besides its output) of one training step."""
    dev = case.x.device
    case.x.grad = None
    for p in case.params:
        p.grad = None
    out = {}
    if dev.type == "cuda":
        sync(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        base = torch.cuda.memory_allocated(dev)
        y = case.forward()
        sync(dev)
        kept = torch.cuda.memory_allocated(dev) - base
        kept -= 0 if y.untyped_storage().data_ptr() == case.x.untyped_storage().data_ptr() else y.nbytes
        y.backward(case.g)
        sync(dev)
        peak = torch.cuda.max_memory_allocated(dev) - base
        return peak, kept

    def fwd():
        out["y"] = case.forward()

    _, net = _cpu_peak_and_net(fwd)
    y = out.pop("y")
    kept = net - (0 if y.untyped_storage().data_ptr() == case.x.untyped_storage().data_ptr() else y.nbytes)
    del y
    case.x.grad = None
    for p in case.params:
        p.grad = None
    peak, _ = _cpu_peak_and_net(case.step)
    return peak, kept


def check(ours: nn.Module, ref: nn.Module, x: torch.Tensor, g: torch.Tensor, autocast) -> float:
    """Largest difference between ours and the reference (output and input gradient), relative to their scale.

    float32 inputs are checked in float64 (module and input; a difference is then ~1e-16, not ~1e-7): a max over two
    values that tie to float32 rounding (FReLU's, DY-ReLU's) may pick either one, and the gradient then differs there
    by O(1) although both are right.
    """
    worst = 0.0
    res = []
    if autocast is None and x.dtype == torch.float32:
        ours, ref, x, g = ours.double(), ref.double(), x.double(), g.double()
    for m in (ours, ref):
        xi = x.detach().clone().requires_grad_()
        if autocast is None:
            y = m(xi)
        else:
            with torch.autocast(x.device.type, dtype=autocast):
                y = m(xi)
        y.backward(g)
        res.append((y.detach().double(), xi.grad.double()))
    for a, b in zip(*res):
        worst = max(worst, float((a - b).abs().max() / b.abs().max().clamp_min(1e-12)))
    return worst


def _add_cases(info, c, x, g, args, autocast, cases: dict) -> dict:
    """One activation's candidates (ours, the references, compile=true) into ``cases``; returns its table row."""
    device = x.device
    m = create_activation(info.name, c)
    if info.channel_aware:
        perturb(m)
    m = m.to(device).train()
    row = {"name": info.name, "kind": info.kind, "case": info.name}
    cases[info.name] = Case(info.name, m, x, g, autocast)
    if info.name in REFERENCES:
        ref = ReferenceModule(copy.deepcopy(m)).to(device).train()
        cases[info.name + "/ref"] = Case(info.name + "/ref", ref, x, g, autocast)
        row["ref"] = info.name + "/ref"
        row["err"] = check(copy.deepcopy(m), copy.deepcopy(ref), x, g, autocast)
        if info.name in VECTORISED:
            vec = ReferenceModule(copy.deepcopy(m), VECTORISED[info.name]).to(device).train()
            cases[info.name + "/vec"] = Case(info.name + "/vec", vec, x, g, autocast)
            row["vec"] = info.name + "/vec"
    if args.eager and info.name in FUSED_KERNELS and native.available():
        cases[info.name + "/eager"] = EagerCase(info.name + "/eager", copy.deepcopy(m), x, g, autocast)
        row["eager"] = info.name + "/eager"
    if args.compile and (info.channel_aware or info.name == "silu"):
        cm = copy.deepcopy(m)
        if hasattr(cm, "use_compile"):  # the activation's own compile=True option (same weights)
            cm.use_compile = True
        else:
            cm = torch.compile(cm)
        cases[info.name + "/compiled"] = Case(info.name + "/compiled", cm, x, g, autocast)
        row["compiled"] = info.name + "/compiled"
        t0 = time.perf_counter()  # the first call compiles (the on-disk inductor cache may make it shorter)
        cases[info.name + "/compiled"].step()
        row["compile_s"] = time.perf_counter() - t0
    return row


def _fill_row(row: dict, runs: dict, mem: dict, fmap: int) -> None:
    """Times, ratios (x SiLU, clones, ours/ref) and memory of one row, from the interleaved runs."""
    row["ms"] = statistics.median(runs[row["case"]]) * 1e3
    row["ms_runs"] = [t * 1e3 for t in runs[row["case"]]]
    row["x_silu_runs"] = harness.ratio_runs(runs, row["case"], "silu")
    row["x_silu"] = statistics.median(row["x_silu_runs"])
    row["clones_runs"] = harness.ratio_runs(runs, row["case"], CLONE)
    row["clone_ms"] = statistics.median(runs[CLONE]) * 1e3
    if "compiled" in row:
        row["compiled_clones_runs"] = harness.ratio_runs(runs, row["compiled"], CLONE)
    if "eager" in row:
        row["eager_clones_runs"] = harness.ratio_runs(runs, row["eager"], CLONE)
    for key in ("ref", "vec", "eager"):
        if key in row:
            row[f"over_{key}_runs"] = harness.ratio_runs(runs, row["case"], row[key])
    if mem:
        row["peak_mib"] = mem[row["case"]][0] / 2**20
        row["peak_x_silu"] = mem[row["case"]][0] / max(mem["silu"][0], 1)
        row["kept_maps"] = mem[row["case"]][1] / fmap
    for key in ("ref", "vec", "compiled"):
        if key in row:
            row[key + "_ms"] = statistics.median(runs[row[key]]) * 1e3
            if mem and row[key] in mem:
                row[key + "_peak_mib"] = mem[row[key]][0] / 2**20
                row[key + "_peak_x_silu"] = mem[row[key]][0] / max(mem["silu"][0], 1)
                row[key + "_kept_maps"] = mem[row[key]][1] / fmap


def bench_size(shape, args, device, dtype) -> list[dict]:
    """Training-mode rows for one input shape: every candidate interleaved with ``x.clone()`` (the clones column)."""
    gen = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn(shape, generator=gen).to(device=device, dtype=dtype).requires_grad_()
    g = torch.randn(shape, generator=gen).to(device=device, dtype=dtype)
    autocast = None if dtype == torch.float32 else dtype
    only = set(args.only.split(",")) if args.only else None
    infos = [i for i in list_activations() if i.shape_preserving and (only is None or i.name in only | {"silu"})]
    cases = {CLONE: Clone(x.detach())}  # the memory-traffic floor: one read and one write of the input
    rows = [_add_cases(info, shape[1], x, g, args, autocast, cases) for info in infos]
    runs = harness.interleave({k: c.step for k, c in cases.items()}, args.reps, args.warmup, args.runs, args.clock,
                              lambda: sync(device), args.stat, args.min_time)
    mem = {k: memory(c) for k, c in cases.items() if k != CLONE} if not args.no_memory else {}
    for row in rows:
        _fill_row(row, runs, mem, x.numel() * x.element_size())
    return rows


def _plain_acon(m, x):
    from yolo_act_swap.activations.acon import acon_formula

    beta = m.beta(x) if callable(m.beta) else m.beta
    return acon_formula(x, m.p1, m.p2, beta)


def _plain_dy_relu(m, x):
    """The plain two-piece (K-piece) maximum ``maximum(a0 x + b0, a1 x + b1)`` with the module's coefficients."""
    a, b = m.coefficients(x)
    a, b = a[..., None, None], b[..., None, None]
    y = a[:, :, 0] * x + b[:, :, 0]
    for i in range(1, a.shape[2]):
        y = torch.maximum(y, a[:, :, i] * x + b[:, :, i])
    pi = m.spatial_attention(x)
    return y * pi if pi is not None else y


PLAIN = {"acon_c": _plain_acon, "meta_acon_c": _plain_acon, "dy_relu_a": _plain_dy_relu, "dy_relu_b": _plain_dy_relu,
         "dy_relu_c": _plain_dy_relu}  # eval: the formula written plainly, against our inference path


def bench_fused(shape, args, device, dtype) -> list[dict]:
    """Eval-mode latency: unfused vs ``fuse()`` (FReLU's BN, ...), and our inference path vs the plain formula."""
    n, c, h, w = shape
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(device=device, dtype=dtype)
    autocast = None if dtype == torch.float32 else dtype
    only = set(args.only.split(",")) if args.only else None
    rows, cases = [], {}
    for info in list_activations():
        if not info.shape_preserving or (only is not None and info.name not in only and info.name != "silu"):
            continue
        m = create_activation(info.name, c)
        if not callable(getattr(m, "fuse", None)) and info.name not in PLAIN and info.name != "silu":
            continue
        if info.channel_aware:
            perturb(m)
            with torch.no_grad():  # a few training steps' worth of BN statistics
                for b in m.modules():
                    if isinstance(b, nn.BatchNorm2d):
                        b.running_mean.uniform_(-0.1, 0.1)
                        b.running_var.uniform_(0.5, 1.5)
        m = m.to(device).eval()
        fused = copy.deepcopy(m)
        if callable(getattr(fused, "fuse", None)):
            fused.fuse()
        with torch.no_grad():
            y, yf = m(x).float(), fused(x).float()
        err = float((y - yf).abs().max() / y.abs().max().clamp_min(1e-12))
        for label, mod in ((info.name, m), (info.name + "/fused", fused)):
            cases[label] = _InferCase(mod, x, autocast)
        row = {"name": info.name, "err": err}
        if info.name in PLAIN:
            plain = ReferenceModule(copy.deepcopy(m), PLAIN[info.name]).eval()
            cases[info.name + "/plain"] = _InferCase(plain, x, autocast)
            with torch.no_grad():
                row["plain_err"] = float((plain(x).float() - y).abs().max() / y.abs().max().clamp_min(1e-12))
        rows.append(row)
    runs = harness.interleave({k: cs.run for k, cs in cases.items()}, args.reps, args.warmup, args.runs, args.clock,
                              lambda: sync(device), args.stat, args.min_time)
    for r in rows:
        r["ms"] = statistics.median(runs[r["name"]]) * 1e3
        r["fused_ms"] = statistics.median(runs[r["name"] + "/fused"]) * 1e3
        r["fused_runs"] = harness.ratio_runs(runs, r["name"] + "/fused", r["name"])
        r["x_silu_runs"] = harness.ratio_runs(runs, r["name"], "silu")
        if r["name"] + "/plain" in runs:
            r["plain_ms"] = statistics.median(runs[r["name"] + "/plain"]) * 1e3
            r["plain_runs"] = harness.ratio_runs(runs, r["name"], r["name"] + "/plain")
    return rows


class _InferCase:
    def __init__(self, module, x, autocast):
        self.module, self.x, self.autocast = module, x, autocast

    @torch.no_grad()
    def run(self):
        if self.autocast is None:
            return self.module(self.x)
        with torch.autocast(self.x.device.type, dtype=self.autocast):
            return self.module(self.x)


def parse_shape(s: str) -> tuple:
    shape = tuple(int(v) for v in s.lower().replace("x", ",").split(",") if v)
    if len(shape) != 4:
        raise argparse.ArgumentTypeError(f"shape must be N,C,H,W, got {s!r}")
    return shape


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--shape", type=parse_shape, action="append", help="N,C,H,W (repeatable); default 8,64,80,80 "
                   "and 8,256,20,20")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:i]")
    p.add_argument("--dtype", default="fp32", choices=sorted(DTYPES), help="input dtype; bf16/fp16 also autocast")
    p.add_argument("--reps", type=int, default=10, help="timed repetitions per candidate and run (median reported)")
    p.add_argument("--warmup", type=int, default=2, help="untimed repetitions first, in every run")
    p.add_argument("--only", default="", help="comma-separated activation names (SiLU always runs)")
    p.add_argument("--quick", action="store_true", help="a short run: 4,32,40,40 and 3 repetitions")
    p.add_argument("--no-memory", action="store_true", help="skip the memory measurements")
    p.add_argument("--compile", action="store_true",
                   help="also time the activations' compile=True option (torch.compile'd SiLU as its baseline)")
    p.add_argument("--eager", action="store_true",
                   help="also time the eager blocks of the activations that the fused C kernels cover (native.py)")
    p.add_argument("--no-fused", action="store_true", help="skip the eval-mode table (fused, plain formula)")
    harness.add_arguments(p, stat=True)
    p.set_defaults(contention="0", clock="auto")  # auto: CPU time at one thread (its activations run in-process)
    p._option_string_actions["--contention"].type = str
    p._option_string_actions["--contention"].help = "N or N1,N2,...: CPU-burner processes beside the measurement; " \
        "several levels run one after the other and a last table compares them"
    args = p.parse_args(argv)
    threads = harness.pin_threads(args.threads, args.pin)
    device = torch.device(args.device)
    dtype = DTYPES[args.dtype]
    shapes = args.shape or ([(4, 32, 40, 40)] if args.quick else [(8, 64, 80, 80), (8, 256, 20, 20)])
    if args.quick:
        args.reps, args.warmup = min(args.reps, 3), min(args.warmup, 1)
    levels = [int(v) for v in str(args.contention).split(",") if v.strip()]
    print(f"# benchmarks/activations.py: {harness.settings_line(threads)}")
    loops = f", calls of under {args.min_time * 1e3:g} ms back to back" if args.min_time else ""
    print(f"# {args.dtype}{' autocast' if dtype != torch.float32 else ''} on {device}, training mode, "
          f"{harness.clock_name(args.clock)} "
          f"clock, {args.runs} runs x ({args.stat} of {args.reps} interleaved repetitions after {args.warmup} warm-up"
          f"{loops}); ratios: median of the runs [range]; command: python benchmarks/activations.py "
          f"{' '.join(argv if argv is not None else sys.argv[1:])}")
    for shape in shapes:
        by_level = {}
        for n_burn in levels:
            with harness.Burners(n_burn):
                t0 = time.perf_counter()
                rows = bench_size(shape, args, device, dtype)
                by_level[n_burn] = rows
                print(f"\n## input {list(shape)}, {n_burn} burner processes ({time.perf_counter() - t0:.0f} s, "
                      f"load average {harness.load()})")
                print(table(rows, not args.no_memory, args.compile, args.eager))
                cols = [r[k] for r in rows for k in ("x_silu_runs", "clones_runs", "over_ref_runs") if k in r]
                print(f"# ratios repeat within {harness.worst_spread(cols)} over the {args.runs} runs (the widest "
                      f"spread of the x SiLU, clones and ours/ref columns); x.clone() "
                      f"{rows[0]['clone_ms']:.2f} ms")
                if not args.no_fused:
                    print(f"\n## inference (eval, no_grad) of {list(shape)}, {n_burn} burner processes: fuse(), "
                          f"and our path against the plain formula")
                    print(fused_table(bench_fused(shape, args, device, dtype)))
        if len(levels) > 1:
            print(f"\n## {list(shape)}: contention (ratios measured side by side within each level)")
            print(contention_table(by_level))
    print(f"\n# done; {harness.settings_line(threads)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
