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


def plot_frontier(rows: list[dict], path: str | os.PathLike, baseline: str | None = None) -> Path | None:
    """mAP50-95 against fused batch-1 latency, one labelled point per activation, with the accuracy/speed frontier."""
    pts = [(r["latency_ms"], r["mAP50-95"], r["act"]) for r in rows
           if is_finite(r.get("latency_ms")) and is_finite(r.get("mAP50-95"))]
    if not pts:
        return None
    fig = _figure(7, 5)
    ax = fig.add_subplot()
    front = pareto_front(pts)
    on_front = {p[2] for p in front}
    for lat, m, label in pts:
        ax.scatter(lat, m, s=60 if label in on_front else 35, zorder=3,
                   color="black" if label == baseline else ("tab:blue" if label in on_front else "tab:gray"))
        ax.annotate(label, (lat, m), textcoords="offset points", xytext=(5, 4), fontsize=9)
    ax.plot([p[0] for p in front], [p[1] for p in front], "--", color="tab:blue", lw=1, label="frontier", zorder=2)
    ax.margins(x=0.15, y=0.12)  # room for the labels at the edges
    ax.set_xlabel("latency ms (batch 1, fused)")
    ax.set_ylabel("mAP50-95")
    ax.set_title("accuracy vs speed (upper left is better)")
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    return save_png(fig, path)


def plot_map_bars(rows: list[dict], path: str | os.PathLike, baseline: str | None = None) -> Path | None:
    """mAP50-95 per activation as bars (failed runs marked), with the silu baseline as a horizontal line."""
    if not rows:
        return None
    fig = _figure(max(5.0, 0.8 * len(rows) + 2), 4.5)
    ax = fig.add_subplot()
    labels = [r["act"] for r in rows]
    vals = [r["mAP50-95"] if is_finite(r.get("mAP50-95")) else 0.0 for r in rows]
    colors = ["black" if r["act"] == baseline else ("tab:blue" if r.get("status") == "finished" else "tab:red")
              for r in rows]
    ax.bar(range(len(rows)), vals, color=colors)
    for i, r in enumerate(rows):
        if is_finite(r.get("mAP50-95")) and r.get("status") == "finished":
            ax.annotate(f"{r['mAP50-95']:.3f}", (i, r["mAP50-95"]), textcoords="offset points", xytext=(0, 2),
                        ha="center", va="bottom", fontsize=8)
        elif r.get("status") != "finished":
            ax.annotate(str(r.get("status")), (i, 0), textcoords="offset points", xytext=(0, 3), ha="center",
                        color="tab:red", fontsize=8, rotation=90, va="bottom")
    base = next((r["mAP50-95"] for r in rows if r["act"] == baseline and is_finite(r.get("mAP50-95"))), None)
    if base is not None:
        ax.axhline(base, ls="--", color="black", lw=1, label=f"{baseline} baseline {base:.4f}")
        ax.legend(loc="upper right")
    ax.set_ylim(0, max(vals + [base or 0.0, 1e-3]) * 1.3)  # headroom for the legend
    ax.set_xticks(range(len(rows)), labels, rotation=30, ha="right")
    ax.set_ylabel("mAP50-95")
    ax.set_title("mAP50-95 per activation")
    ax.grid(axis="y", alpha=0.3)
    return save_png(fig, path)


def plot_curves(curves: dict[str, str | os.PathLike], path: str | os.PathLike, baseline: str | None = None,
                key: str = "metrics/mAP50-95(B)") -> Path | None:
    """Training curves (``key`` of each run's ultralytics ``results.csv`` against epoch), overlaid."""
    series = {}
    for label, csv_path in curves.items():
        rows = [r for r in read_results_csv(csv_path) if key in r]
        if rows:
            series[label] = ([int(r["epoch"]) for r in rows], [r[key] for r in rows])
    if not series:
        return None
    fig = _figure(7, 4.5)
    ax = fig.add_subplot()
    for label, (ep, val) in series.items():
        style = {"color": "black", "lw": 2.2} if label == baseline else {"lw": 1.4}
        ax.plot(ep, val, marker="o", ms=3, label=label, **style)
    ax.set_xlabel("epoch")
    ax.set_ylabel(key.replace("metrics/", "").replace("(B)", ""))
    ax.set_title("training curves")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_png(fig, path)


def plot_sweep(folder: str | os.PathLike, rows: list[dict], curves: dict[str, str | os.PathLike],
               baseline: str | None = None) -> list[Path]:
    """Write the sweep's PNGs next to its table: ``frontier.png``, ``map.png``, ``curves.png`` (those with data).

    Args:
        folder (str | Path): the sweep folder.
        rows (list[dict]): the table rows (``act``, ``status``, ``mAP50-95``, ``latency_ms``, ...).
        curves (dict): label -> that run's ultralytics ``results.csv``.
        baseline (str, optional): the silu run's label.

    Returns:
        (list[Path]): the files written.
    """
    folder = Path(folder)
    out = [
        plot_frontier(rows, folder / "frontier.png", baseline),
        plot_map_bars(rows, folder / "map.png", baseline),
        plot_curves(curves, folder / "curves.png", baseline),
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


def plot_activations(tokens: list[str], path: str | os.PathLike, lo: float = -4.0, hi: float = 4.0,
                     n: int = 401) -> Path:
    """Two panels on one figure: the activations and their derivatives (autograd) on ``[lo, hi]``."""
    curves = [activation_curve(t, lo, hi, n) for t in tokens]  # errors (unknown names) before any drawing
    fig = _figure(13, 5)
    ax_f, ax_d = fig.subplots(1, 2)
    for i, (x, y, dy, label) in enumerate(curves):
        color = f"C{i % 10}"
        ls = "-" if i < 10 else "--"
        ax_f.plot(x, y, color=color, ls=ls, lw=1.6, label=label)
        ax_d.plot(x, dy, color=color, ls=ls, lw=1.6, label=label)
    for ax, title in ((ax_f, "f(x)"), (ax_d, "f'(x) (autograd)")):
        ax.axhline(0, color="gray", lw=0.6)
        ax.axvline(0, color="gray", lw=0.6)
        ax.set_xlim(lo, hi)
        ax.set_xlabel("x")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    ax_f.legend(fontsize=8, loc="upper left")
    return save_png(fig, path)
