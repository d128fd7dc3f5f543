"""Plots: a sweep's comparison figures (from its table rows and the runs' ``results.csv``), and activation curves
with their derivatives (``yolo-act-swap plot``, whose command line is ``cli/plot.py``).

Figures are drawn with matplotlib's object API on an Agg canvas (no pyplot, no global backend change) and saved
atomically as PNG.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from .activations import create_activation, get_activation_info
from .errors import SpecError
from .io import atomic_path, read_results_csv
from .spec import load_spec
from .tables import is_finite

DPI = 110


def _figure(width: float, height: float):
    """A new Agg-backed figure, independent of pyplot's state."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def save_png(fig, path: str | os.PathLike) -> Path:
    """Save ``fig`` as a PNG atomically; returns the path."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight")
    return Path(path)


# ---------------------------------------------------------------------------------------------------------- sweep
def pareto_front(points: list[tuple[float, float, str]]) -> list[tuple[float, float, str]]:
    """The (latency, mAP, label) points no other point beats on both (lower latency and higher mAP), by latency.

    Args:
        points (list[tuple]): ``(latency_ms, mAP, label)``.

    Returns:
        (list[tuple]): the frontier, sorted by latency.
    """
    front, best = [], -math.inf
    for lat, m, label in sorted(points, key=lambda p: (p[0], -p[1])):
        if m > best:
            front.append((lat, m, label))
            best = m
    return front


ZERO_NOTE = "every mAP is 0: the runs are too short to learn anything"


def _yerr(rows: list[dict], key: str = "mAP50-95") -> list[list[float]] | None:
    """Asymmetric error bars from each row's ``{key}_ci_low`` / ``{key}_ci_high`` (0 where there is no interval)."""
    lo, hi = [], []
    for r in rows:
        m, a, b = r.get(key), r.get(f"{key}_ci_low"), r.get(f"{key}_ci_high")
        ok = is_finite(m) and is_finite(a) and is_finite(b)
        lo.append(max(m - a, 0.0) if ok else 0.0)
        hi.append(max(b - m, 0.0) if ok else 0.0)
    return [lo, hi] if any(lo) or any(hi) else None


def _map_limits(ax, values: list[float], axis: str = "y", floor: float = 0.01) -> bool:
    """mAP axis limits that start at 0, never go negative and are not blown up from zeros (0..1 and a note when every
    value is 0); returns True in that degenerate case."""
    vals = [v for v in values if is_finite(v)]
    top = max(vals, default=0.0)
    if top <= 0:
        (ax.set_ylim if axis == "y" else ax.set_xlim)(0, 1)
        ax.text(0.5, 0.5, ZERO_NOTE, transform=ax.transAxes, ha="center", va="center", color="tab:red", fontsize=10,
                wrap=True)
        return True
    (ax.set_ylim if axis == "y" else ax.set_xlim)(0, max(top * 1.3, floor))  # headroom for labels and the legend
    return False


def frontier_figure(rows: list[dict], baseline: str | None = None):
    """Mean mAP50-95 against fused batch-1 latency, one labelled point per activation with its interval over seeds as
    an error bar, and the accuracy/speed frontier of the means."""
    rows = [r for r in rows if is_finite(r.get("latency_ms")) and is_finite(r.get("mAP50-95"))]
    if not rows:
        return None  # nothing to draw
    pts = [(r["latency_ms"], r["mAP50-95"], r["act"]) for r in rows]
    fig = _figure(7, 5)
    ax = fig.add_subplot()
    front = pareto_front(pts)
    on_front = {p[2] for p in front}
    yerr = _yerr(rows)
    for i, (lat, m, label) in enumerate(pts):
        color = "black" if label == baseline else ("tab:blue" if label in on_front else "tab:gray")
        err = None if yerr is None else [[yerr[0][i]], [yerr[1][i]]]
        ax.errorbar([lat], [m], yerr=err, fmt="o", ms=8 if label in on_front else 6, color=color, capsize=4,
                    zorder=3)
        ax.annotate(label, (lat, m), textcoords="offset points", xytext=(6, 4), fontsize=9)
    ax.plot([p[0] for p in front], [p[1] for p in front], "--", color="tab:blue", lw=1, label="frontier (means)",
            zorder=2)
    ax.margins(x=0.15)  # room for the labels at the edges
    highs = [r.get("mAP50-95_ci_high") if is_finite(r.get("mAP50-95_ci_high")) else r["mAP50-95"] for r in rows]
    if not _map_limits(ax, highs):
        lows = [r.get("mAP50-95_ci_low") if is_finite(r.get("mAP50-95_ci_low")) else r["mAP50-95"] for r in rows]
        lo, hi = min(lows), max(highs)
        pad = max((hi - lo) * 0.15, 0.005)
        ax.set_ylim(max(0.0, lo - pad), hi + pad)
    ax.set_xlabel("latency ms (batch 1, fused)")
    ax.set_ylabel("mAP50-95" + (" (mean, 95% CI over seeds)" if yerr is not None else ""))
    ax.set_title("accuracy vs speed (upper left is better)")
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    return fig


def plot_int8_frontier(rows: list[dict], path: str | os.PathLike, baseline: str | None = None) -> Path | None:
    """INT8 mAP50-95 against batch-1 latency in each runtime (ONNX Runtime, OpenVINO): one panel each, with the
    frontier of that runtime (the rows of a ``sweep --deploy``)."""
    panels = [(key, title) for key, title in (("onnx_ms", "ONNX Runtime"), ("openvino_ms", "OpenVINO"))
              if any(is_finite(r.get(key)) and is_finite(r.get("int8_mAP50-95")) for r in rows)]
    if not panels:
        return None
    fig = _figure(6 * len(panels), 4.5)
    for i, (key, title) in enumerate(panels, 1):
        ax = fig.add_subplot(1, len(panels), i)
        pts = [(r[key], r["int8_mAP50-95"], r["act"]) for r in rows
               if is_finite(r.get(key)) and is_finite(r.get("int8_mAP50-95"))]
        front = pareto_front(pts)
        on_front = {p[2] for p in front}
        for lat, m, label in pts:
            ax.scatter(lat, m, s=55 if label in on_front else 30, zorder=3,
                       color="black" if label == baseline else ("tab:green" if label in on_front else "tab:gray"))
            ax.annotate(label, (lat, m), textcoords="offset points", xytext=(5, 4), fontsize=9)
        ax.plot([p[0] for p in front], [p[1] for p in front], "--", color="tab:green", lw=1, zorder=2)
        ax.margins(x=0.15, y=0.12)
        ax.set_xlabel(f"{title} FP32 latency ms (batch 1)")
        ax.set_ylabel("INT8 mAP50-95 (OpenVINO NNCF)")
        ax.set_title(f"INT8 accuracy vs {title} speed")
        ax.grid(alpha=0.3)
    return save_png(fig, path)


def map_bars_figure(rows: list[dict], baseline: str | None = None):
    """Mean mAP50-95 per activation as bars with 95% interval whiskers and one dot per seed (unfinished activations
    marked), with the baseline's mean as a horizontal line."""
    if not rows:
        return None  # nothing to draw
    fig = _figure(max(5.0, 0.8 * len(rows) + 2), 4.5)
    ax = fig.add_subplot()
    labels = [r["act"] for r in rows]
    vals = [r["mAP50-95"] if is_finite(r.get("mAP50-95")) else 0.0 for r in rows]
    colors = ["black" if r["act"] == baseline else ("tab:blue" if r.get("status") == "finished" else "tab:red")
              for r in rows]
    yerr = _yerr(rows)
    ax.bar(range(len(rows)), vals, color=colors, alpha=0.85, yerr=yerr, capsize=5, ecolor="dimgray")
    dots = [(i, v) for i, r in enumerate(rows) for v in r.get("values") or [] if is_finite(v)]
    if len({v for _, v in dots}) > 0 and any(len(r.get("values") or []) > 1 for r in rows):
        ax.scatter([i for i, _ in dots], [v for _, v in dots], s=14, color="tab:orange", zorder=4, label="one seed")
    for i, r in enumerate(rows):
        if is_finite(r.get("mAP50-95")) and r.get("status") in ("finished", "some failed"):
            top = r.get("mAP50-95_ci_high") if is_finite(r.get("mAP50-95_ci_high")) else r["mAP50-95"]
            ax.annotate(f"{r['mAP50-95']:.3f}", (i, top), textcoords="offset points", xytext=(0, 3),
                        ha="center", va="bottom", fontsize=8)
        if r.get("status") != "finished":
            ax.annotate(str(r.get("status")), (i, 0), textcoords="offset points", xytext=(0, 3), ha="center",
                        color="tab:red", fontsize=8, rotation=90, va="bottom")
    base = next((r["mAP50-95"] for r in rows if r["act"] == baseline and is_finite(r.get("mAP50-95"))), None)
    highs = [r.get("mAP50-95_ci_high") for r in rows] + [v for _, v in dots] + vals
    if not _map_limits(ax, highs) and base is not None:
        ax.axhline(base, ls="--", color="black", lw=1, label=f"{baseline} baseline {base:.4f}")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper right", fontsize=8)
    ax.set_xticks(range(len(rows)), labels, rotation=30, ha="right")
    ax.set_ylabel("mAP50-95" + (" (mean, 95% CI over seeds)" if yerr is not None else ""))
    ax.set_title("mAP50-95 per activation")
    ax.grid(axis="y", alpha=0.3)
    return fig


def _curve_series(paths, key: str) -> tuple[list[int], list[float], list[float], list[float]] | None:
    """Epochs and the mean, min and max of ``key`` over the runs (one ``results.csv`` each) that reached each epoch."""
    per_epoch: dict[int, list[float]] = {}
    for p in [paths] if isinstance(paths, (str, os.PathLike)) else paths:
        for r in read_results_csv(p):
            if key in r and is_finite(r[key]):
                per_epoch.setdefault(int(r["epoch"]), []).append(r[key])
    if not per_epoch:
        return None
    ep = sorted(per_epoch)
    return (ep, [sum(per_epoch[e]) / len(per_epoch[e]) for e in ep], [min(per_epoch[e]) for e in ep],
            [max(per_epoch[e]) for e in ep])


def curves_figure(curves: dict, baseline: str | None = None, key: str = "metrics/mAP50-95(B)"):
    """Training curves (``key`` of the runs' ultralytics ``results.csv`` against epoch): per activation the mean over
    its seeds as a line and their range as a band.

    Args:
        curves (dict): label -> one ``results.csv`` path, or a list of them (one per seed).
    """
    from matplotlib.ticker import MaxNLocator

    series = {label: s for label, paths in curves.items() if (s := _curve_series(paths, key)) is not None}
    if not series:
        return None  # nothing to draw
    fig = _figure(7, 4.5)
    ax = fig.add_subplot()
    banded = False
    for i, (label, (ep, mean, lo, hi)) in enumerate(series.items()):
        color = "black" if label == baseline else f"C{i % 10}"
        ax.plot(ep, mean, marker="o", ms=3, label=label, color=color, lw=2.2 if label == baseline else 1.4)
        if any(a != b for a, b in zip(lo, hi)):
            ax.fill_between(ep, lo, hi, color=color, alpha=0.15, lw=0)
            banded = True
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    name = key.replace("metrics/", "").replace("(B)", "")
    _map_limits(ax, [v for _, _, _, hi in series.values() for v in hi])
    ax.set_xlabel("epoch")
    ax.set_ylabel(name + (" (mean; band: range over seeds)" if banded else ""))
    ax.set_title("training curves")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def _save(fig, path) -> Path | None:
    return None if fig is None else save_png(fig, path)


def plot_frontier(rows: list[dict], path: str | os.PathLike, baseline: str | None = None) -> Path | None:
    """``frontier_figure`` saved as a PNG (None when no activation has both a latency and an mAP)."""
    return _save(frontier_figure(rows, baseline), path)


def plot_map_bars(rows: list[dict], path: str | os.PathLike, baseline: str | None = None) -> Path | None:
    """``map_bars_figure`` saved as a PNG (None without rows)."""
    return _save(map_bars_figure(rows, baseline), path)


def plot_curves(curves: dict, path: str | os.PathLike, baseline: str | None = None,
                key: str = "metrics/mAP50-95(B)") -> Path | None:
    """``curves_figure`` saved as a PNG (None when no run has a results.csv row)."""
    return _save(curves_figure(curves, baseline, key), path)


def plot_sweep(folder: str | os.PathLike, rows: list[dict], curves: dict, baseline: str | None = None) -> list[Path]:
    """Write the sweep's PNGs next to its table: ``frontier.png``, ``map.png``, ``curves.png`` and, with deployment
    columns, ``int8_frontier.png`` (those with data).

    Args:
        folder (str | Path): the sweep folder.
        rows (list[dict]): one row per activation (``act``, ``status``, ``mAP50-95`` and its ``_ci_low`` /
            ``_ci_high``, ``values`` per seed, ``latency_ms``, ...).
        curves (dict): label -> the ultralytics ``results.csv`` of each of its runs (a path or a list).
        baseline (str, optional): the baseline's label.

    Returns:
        (list[Path]): the files written.
    """
    folder = Path(folder)
    out = [
        plot_frontier(rows, folder / "frontier.png", baseline),
        plot_map_bars(rows, folder / "map.png", baseline),
        plot_curves(curves, folder / "curves.png", baseline),
        plot_int8_frontier(rows, folder / "int8_frontier.png", baseline),
    ]
    return [p for p in out if p is not None]


# ----------------------------------------------------------------------------------------------------- activations
def _parse_act(token: str) -> tuple[str, dict]:
    """``leaky_relu:negative_slope=0.1`` -> ``("leaky_relu", {"negative_slope": 0.1})`` (checked by the spec parser)."""
    act = load_spec(act=token).act
    if act is None:
        raise SpecError(f"--acts {token!r}: 'keep' is not an activation to plot; name one, e.g. --acts silu")
    return act.name, dict(act.kwargs)


def activation_curve(token: str, lo: float = -4.0, hi: float = 4.0, n: int = 401, seed: int = 0):
    """Sample an activation and its autograd derivative on ``[lo, hi]``.

    A pointwise activation sees a ``[1, 1, 1, n]`` ramp. A channel-aware one is built fresh for one channel (``seed``
    fixes random inits), in eval mode, on the same ramp: FReLU's depthwise conv then runs along the ramp, so its curve
    is a picture of the module at init. Channel-dim ones (softmax & co) see channels ``[x, 0]``, glu sees ``[x, x]``.

    Args:
        token (str): a name or inline form (``leaky_relu:negative_slope=0.1``).
        lo, hi (float): the input range.
        n (int): samples.
        seed (int): torch seed for random initial parameters.

    Returns:
        (tuple): ``(x, y, dy, label)`` as numpy arrays and the legend label.
    """
    import torch

    name, kwargs = _parse_act(token)
    info = get_activation_info(name)
    two = info.kind == "channel" or not info.shape_preserving
    with torch.random.fork_rng(devices=[]):  # a fixed seed for random inits, without touching the caller's RNG
        torch.manual_seed(seed)
        module = create_activation(info.name, 2 if two else 1, **kwargs).eval()
    x = torch.linspace(lo, hi, n, dtype=torch.float32, requires_grad=True)
    if not two:
        inp, note = x.view(1, 1, 1, n), ""
    elif info.shape_preserving:
        inp, note = torch.stack([x, torch.zeros_like(x)]).view(1, 2, 1, n), " over channels [x, 0]"
    else:
        inp, note = torch.stack([x, x]).view(1, 2, 1, n), " of [x, x]"
    y = module(inp)[:, 0].reshape(-1)
    (dy,) = torch.autograd.grad(y.sum(), x)
    label = token + note + (" (at init)" if info.channel_aware else "")
    return x.detach().numpy(), y.detach().numpy(), dy.detach().numpy(), label


def _same_curve(a, b) -> bool:
    """Two sampled curves that a reader could not tell apart on the plot."""
    import numpy as np

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=1e-4, atol=1e-4, equal_nan=True))


def plot_activations(tokens: list[str], path: str | os.PathLike, lo: float = -4.0, hi: float = 4.0,
                     n: int = 401) -> Path:
    """Two panels on one figure: the activations and their derivatives (autograd) on ``[lo, hi]``."""
    curves = [activation_curve(t, lo, hi, n) for t in tokens]  # errors (unknown names) before any drawing
    fig = _figure(13, 5)
    ax_f, ax_d = fig.subplots(1, 2)
    for i, (x, y, dy, label) in enumerate(curves):
        color = f"C{i % 10}"
        same = next((c[3] for c in curves[:i] if _same_curve(c[1], y) and _same_curve(c[2], dy)), None)
        ls = (0, (5, 4)) if same else ("-" if i < 10 else "--")  # a coinciding curve is dashed over the first one
        if same:
            label = f"{label} (= {same})"
        ax_f.plot(x, y, color=color, ls=ls, lw=1.6, label=label)
        ax_d.plot(x, dy, color=color, ls=ls, lw=1.6, label=label)
    for ax, title in ((ax_f, "f(x)"), (ax_d, "f'(x) (autograd)")):
        ax.axhline(0, color="gray", lw=0.6)
        ax.axvline(0, color="gray", lw=0.6)
        ax.set_xlim(lo, hi)
        ax.set_xlabel("x")
        ax.set_ylabel(title.split(" ")[0])
        ax.set_title(title)
        ax.grid(alpha=0.3)
    ax_f.legend(fontsize=8, loc="upper left")
    return save_png(fig, path)
