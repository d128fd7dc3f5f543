"""Export a patched model with ultralytics' exporter, run it back through ultralytics' AutoBackend, and compare.

``export_matrix`` gives one ``FormatCheck`` per (activation, format): exported / loads / runs, the largest absolute
difference from the PyTorch output on the same input, batch-1 median latency after warm-up relative to the same model
with SiLU in the same format, and the ops the activation became there (the op types the model has beyond the same
model with no activation, ``identity``). A step that fails fills its row with the reason; nothing raises.

Example:
    >>> from yolo_act_swap.engine.export import export_matrix, matrix_table
    >>> build = lambda act: patched("yolov8n.yaml", act)  # any callable: activation name -> patched model
    >>> print(matrix_table(export_matrix(build, ["frelu"], ["onnx", "openvino"], imgsz=96)))
"""

from __future__ import annotations

import copy
import statistics
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch

from ..io import quiet
from ..tables import format_table
from .formats import DEPLOY_EXTRA, FORMATS, added_ops, format_info, graph_ops, missing_packages, no_installs

BASELINE = "silu"  # latency is relative to the model with this activation, in the same format
NO_ACT = "identity"  # the model without activations: what a format's graph has beyond it is the activations' ops
PYTORCH = "pytorch"


@dataclass
class FormatCheck:
    """One row of the export matrix: one activation in one format.

    Attributes:
        act (str): the activation (spec) label.
        format (str): the ultralytics format name, or ``pytorch`` for the fused eager model.
        exported, loads, runs (bool | None): how far it got; ``None`` for a step not tried.
        max_diff (float | None): max |output - PyTorch output| on the same input.
        ms (float | None): median batch-1 latency in milliseconds.
        x_silu (float | None): ``ms`` over the SiLU model's ``ms`` in the same format.
        ops (list[str]): op types the activation became in this format.
        reason (str): why a step failed or was skipped.
        path (str): the exported artifact.
    """

    act: str
    format: str
    exported: bool | None = None
    loads: bool | None = None
    runs: bool | None = None
    max_diff: float | None = None
    ms: float | None = None
    x_silu: float | None = None
    ops: list = field(default_factory=list)
    reason: str = ""
    path: str = ""
    ref_scale: float = 0.0
    round_ms: list = field(default_factory=list)  # the median of each timing round
    x_silu_range: tuple = ()  # (min, max) of the per-round ratios to SiLU
    graph: Counter = field(default_factory=Counter, repr=False)

    def within(self, rtol: float = 1e-3, atol: float = 1e-3) -> bool:
        """True when the output matches PyTorch to ``atol + rtol * max|PyTorch output|``."""
        return self.max_diff is not None and self.max_diff <= atol + rtol * self.ref_scale


def first_tensor(y) -> torch.Tensor:
    """The first tensor of a (nested) model output: tensors, numpy arrays, lists, tuples and dicts."""
    if isinstance(y, torch.Tensor):
        return y
    if isinstance(y, dict):
        return first_tensor(next(iter(y.values())))
    if isinstance(y, (list, tuple)) and y:
        return first_tensor(y[0])
    if hasattr(y, "__array__"):
        return torch.as_tensor(y)
    raise TypeError(f"model output of type {type(y).__name__} holds no tensor")


def error_line(e: BaseException, limit: int = 160) -> str:
    """One short line naming an exception."""
    text = " ".join(str(e).split()) or "(no message)"
    return f"{type(e).__name__}: {text[:limit]}"


def prepare(model: torch.nn.Module) -> torch.nn.Module:
    """A fused eval copy of ``model`` with the attributes ultralytics' exporter reads (``task``, ``names``)."""
    m = copy.deepcopy(model).float().eval()
    if not getattr(m, "task", None):
        m.task = "detect"
    fuse = getattr(m, "fuse", None)
    with quiet():
        return fuse(verbose=False) if callable(fuse) else m


def export(model: torch.nn.Module, fmt: str, imgsz: int, folder: Path, name: str, verbose: bool = False, **args) -> str:
    """Export ``model`` (not modified) with ``ultralytics.engine.exporter.Exporter``; return the artifact path.

    The artifact lands in ``folder`` as ``name`` + the format's suffix. ``args`` are extra exporter arguments
    (``int8``/``quantize``, ``data``, ``opset`` ...). Nothing is installed: see ``formats.no_installs``.
    """
    from ultralytics.engine.exporter import Exporter

    m = copy.deepcopy(model)
    if not getattr(m, "task", None):
        m.task = "detect"
    folder.mkdir(parents=True, exist_ok=True)
    m.pt_path = str(folder / f"{name}.pt")  # the exporter names its outputs after this path
    overrides = {"format": fmt, "imgsz": imgsz, "batch": 1, "device": "cpu", "verbose": verbose, **args}
    with no_installs(), quiet(not verbose):
        path = Exporter(overrides=overrides)(model=m)
    if not path:
        raise RuntimeError(f"{fmt} export returned no file")
    return str(path)


def load_backend(path: str, verbose: bool = False):
    """Load an exported model with ``ultralytics.nn.autobackend.AutoBackend`` on the CPU."""
    from ultralytics.nn.autobackend import AutoBackend

    with no_installs(), quiet(not verbose):
        return AutoBackend(path, device=torch.device("cpu"), verbose=verbose)


def run_once(fn: Callable, x: torch.Tensor) -> torch.Tensor:
    """One forward of ``fn`` on ``x`` without autograd; the first output tensor, as float32 on the CPU."""
    with torch.inference_mode():
        return first_tensor(fn(x)).detach().float().cpu()


def time_once(fn: Callable, x: torch.Tensor) -> float:
    """Seconds of one forward."""
    t0 = time.perf_counter()
    run_once(fn, x)
    return time.perf_counter() - t0


def _missing_row(act: str, fmt: str, missing: list[str]) -> FormatCheck:
    reason = f"needs {', '.join(missing)}: {DEPLOY_EXTRA}"
    return FormatCheck(act, fmt, exported=False, reason=reason)


def _check_one(model, act: str, fmt: str, x: torch.Tensor, ref: torch.Tensor, folder: Path, verbose: bool):
    """Export, read the graph, load, run once and compare: a ``FormatCheck`` and the callable to time (or None)."""
    row = FormatCheck(act, fmt, ref_scale=float(ref.abs().max()))
    info = FORMATS[fmt]
    missing = missing_packages(info)
    if missing:
        return _missing_row(act, fmt, missing), None
    step = "export"
    try:
        row.path = export(model, fmt, x.shape[-1], folder / act, "model", verbose=verbose)
        row.exported = True
        step = "read ops"
        row.graph = graph_ops(fmt, row.path)
        if info.runs_here:
            row.reason = info.runs_here
            return row, None
        step = "load"
        backend = load_backend(row.path, verbose)
        row.loads = True
        step = "run"
        y = run_once(backend, x)
        row.runs = True
        row.max_diff = float((y - ref).abs().max()) if y.shape == ref.shape else None
        if row.max_diff is None:
            row.reason = f"output shape {tuple(y.shape)} != PyTorch {tuple(ref.shape)}"
        return row, backend
    except Exception as e:  # noqa: BLE001 - a failing format is a row, never a crash
        row.reason = f"{step}: {error_line(e)}"
        for attr in ("exported", "loads", "runs"):
            if getattr(row, attr) is None:
                setattr(row, attr, False)
                break
        return row, None


def time_interleaved(runners: dict, x: torch.Tensor, warmup: int, repeats: int, rounds: int = 1) -> dict:
    """Median ms per round of each runner; the forwards interleave (one of each in turn), so load hits all alike."""
    medians = {k: [] for k in runners}
    for fn in runners.values():
        for _ in range(warmup):
            run_once(fn, x)
    for _ in range(rounds):
        times = {k: [] for k in runners}
        for _ in range(repeats):
            for k, fn in runners.items():
                times[k].append(time_once(fn, x))
        for k, ts in times.items():
            medians[k].append(1000 * statistics.median(ts))
    return medians


def export_matrix(
    build: Callable[[str], torch.nn.Module],
    acts: Sequence[str],
    formats: Sequence[str],
    imgsz: int = 128,
    folder: str | Path | None = None,
    warmup: int = 3,
    repeats: int = 20,
    pytorch: bool = True,
    verbose: bool = False,
    rounds: int = 1,
) -> list[FormatCheck]:
    """Export each activation's model to each format and check it (see the module docstring).

    Args:
        build: activation name -> a patched model (called once per activation, plus ``silu`` and ``identity``).
        acts: activations (labels passed to ``build``).
        formats: ultralytics format names (``onnx``, ``openvino``, ``torchscript``, ``ncnn``, ``coreml`` ...).
        imgsz: square input size.
        folder: where the artifacts go (default: a temporary folder, deleted afterwards).
        warmup, repeats: warm-up forwards and timed forwards per round (median).
        rounds: timing rounds; ``x_silu`` is the median of the per-round ratios, ``x_silu_range`` their spread.
        pytorch: add a ``pytorch`` row per activation (the fused eager model) as the reference.
        verbose: show ultralytics' export logs.

    Returns:
        (list[FormatCheck]): rows in the order activation, format.
    """
    fmts = [format_info(f).name for f in formats]
    if folder is None:
        with tempfile.TemporaryDirectory(prefix="yas-export-") as tmp:
            return export_matrix(build, acts, fmts, imgsz, tmp, warmup, repeats, pytorch, verbose, rounds)
    folder = Path(folder)
    torch.manual_seed(0)
    x = torch.rand(1, 3, imgsz, imgsz)
    names = list(dict.fromkeys([*acts, BASELINE, NO_ACT]))
    rows, runners = {}, {}
    for act in names:
        rows[act], runners[act] = _check_act(build, act, fmts, x, folder, pytorch, verbose)
    flat = {(r.act, r.format): r for act in names for r in rows[act]}
    timed = time_interleaved({k: f for act in names for k, f in runners[act].items()}, x, warmup, repeats, rounds)
    for key, ms in timed.items():
        flat[key].round_ms = ms
        flat[key].ms = statistics.median(ms)
    _fill_relative(flat)
    return [r for act in acts for r in rows[act]]


def _check_act(build, act, fmts, x, folder, pytorch, verbose):
    """Rows and timing callables of one activation in every format."""
    rows, runners = [], {}
    try:
        model = build(act)
        ref_model = prepare(model)
        ref = run_once(ref_model, x)
    except Exception as e:  # noqa: BLE001 - an activation that does not build or run is one row per format
        reason = f"build: {error_line(e)}"
        return [FormatCheck(act, f, exported=False, reason=reason) for f in ([PYTORCH] if pytorch else []) + fmts], {}
    if pytorch:
        row = FormatCheck(act, PYTORCH, True, True, True, 0.0, ref_scale=float(ref.abs().max()))
        row.graph = graph_ops(PYTORCH, ref_model)
        rows.append(row)
        runners[(act, PYTORCH)] = ref_model
    for fmt in fmts:
        row, fn = _check_one(model, act, fmt, x, ref, folder, verbose)
        rows.append(row)
        if fn is not None:
            runners[(act, fmt)] = fn
    return rows, runners


def _fill_relative(flat: dict) -> None:
    """``x_silu`` and ``ops`` of every row, from the SiLU and no-activation rows of the same format."""
    for (_act, fmt), row in flat.items():
        base = flat.get((BASELINE, fmt))
        if row.ms is not None and base is not None and base.ms:
            ratios = [a / b for a, b in zip(row.round_ms, base.round_ms)]
            row.x_silu = statistics.median(ratios)
            row.x_silu_range = (min(ratios), max(ratios))
        none = flat.get((NO_ACT, fmt))
        if row.graph and none is not None and none.graph:
            row.ops = added_ops(row.graph, none.graph) or ["(none)"]


def _yes(v) -> str:
    return "-" if v is None else ("yes" if v else "NO")


def matrix_rows(rows: Sequence[FormatCheck]) -> list[tuple]:
    """Table cells of ``rows``: act, format, exported, loads, runs, max diff, ms, x SiLU, ops, note."""
    out = []
    for r in rows:
        title = FORMATS[r.format].title if r.format in FORMATS else "PyTorch"
        out.append((
            r.act, title, _yes(r.exported), _yes(r.loads), _yes(r.runs),
            "-" if r.max_diff is None else f"{r.max_diff:.1e}",
            "-" if r.ms is None else f"{r.ms:.2f}",
            "-" if r.x_silu is None else f"{r.x_silu:.2f}",
            ", ".join(r.ops[:6]) + (" ..." if len(r.ops) > 6 else "") if r.ops else "-",
            r.reason,
        ))  # fmt: skip
    return out


MATRIX_HEAD = ("activation", "format", "exported", "loads", "runs", "max diff", "ms", "x SiLU", "became", "note")


def matrix_table(rows: Sequence[FormatCheck]) -> str:
    """The export matrix as a fixed-width text table (one row per activation and format)."""
    return "\n".join(format_table(MATRIX_HEAD, matrix_rows(rows), right=(5, 6, 7), group_first=True))
