"""Plots: ``yolo-act-swap plot`` (activation curves and derivatives) and the sweep's comparison figures."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from yolo_act_swap.activations import list_activations
from yolo_act_swap.cli import main as cli_main
from yolo_act_swap.plots import (
    ZERO_NOTE,
    activation_curve,
    curves_figure,
    frontier_figure,
    map_bars_figure,
    pareto_front,
    plot_sweep,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _png_size(path):
    from PIL import Image

    assert path.read_bytes()[:8] == PNG_MAGIC, f"{path} is not a PNG"
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        return im.size


def test_plot_command_draws_pointwise_and_channel_aware(tmp_path):
    channel_aware = [i.name for i in list_activations() if i.channel_aware]
    acts = ",".join(["silu", "relu", "mish", "leaky_relu:negative_slope=0.1", *channel_aware])
    out = tmp_path / "acts.png"
    r = subprocess.run([sys.executable, "-m", "yolo_act_swap", "plot", "--acts", acts, "--out", str(out),
                        "--range", "-3", "3"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert str(out) in r.stdout
    w, h = _png_size(out)
    assert 1000 <= w <= 4000 and 350 <= h <= 2000, (w, h)  # two panels side by side


def test_curves_match_the_formulas():
    x, y, dy, label = activation_curve("silu", -4, 4, 101)
    t = torch.from_numpy(x).double()
    s = torch.sigmoid(t)
    np.testing.assert_allclose(y, (t * s).numpy(), atol=1e-5)
    np.testing.assert_allclose(dy, (s * (1 + t * (1 - s))).numpy(), atol=1e-5)
    assert label == "silu"

    x, y, dy, _ = activation_curve("leaky_relu:negative_slope=0.1", -4, 4, 101)
    np.testing.assert_allclose(y, np.where(x > 0, x, 0.1 * x), atol=1e-6)
    np.testing.assert_allclose(dy[x < -1e-3], 0.1, atol=1e-6)
    np.testing.assert_allclose(dy[x > 1e-3], 1.0, atol=1e-6)

    x, y, _, label = activation_curve("softmax", -4, 4, 101)  # over channels [x, 0]: sigmoid(x)
    np.testing.assert_allclose(y, 1 / (1 + np.exp(-x)), atol=1e-5)
    assert "channels" in label


@pytest.mark.parametrize("info", list_activations(), ids=lambda i: i.name)
def test_every_registered_activation_can_be_plotted(info):
    x, y, dy, label = activation_curve(info.name, -4, 4, 33)
    assert x.shape == y.shape == dy.shape == (33,)
    assert np.isfinite(y).all() and np.isfinite(dy).all()
    assert ("at init" in label) == info.channel_aware


def test_fresh_dy_relu_is_drawn_as_relu_at_init():
    names = {i.name for i in list_activations()}
    if "dy_relu_b" not in names:
        pytest.skip("dy_relu_b is not registered")
    x, y, _, label = activation_curve("dy_relu_b", -2, 2, 41)
    np.testing.assert_allclose(y, np.maximum(x, 0), atol=1e-6)  # the zero-initialised last FC makes it ReLU
    assert label == "dy_relu_b (at init)"


def test_unknown_activation_is_one_line_with_a_suggestion(tmp_path, capsys):
    rc = cli_main(["plot", "--acts", "silu,frlu", "--out", str(tmp_path / "x.png")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "frlu" in err[0] and "frelu" in err[0]
    assert not (tmp_path / "x.png").exists()


def test_bad_range_is_a_usage_error(tmp_path, capsys):
    rc = cli_main(["plot", "--acts", "silu", "--range", "2", "-2", "--out", str(tmp_path / "x.png")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "--range" in err[0]  # exit code 2, one line (cli.common.Parser)


def test_pareto_front():
    pts = [(5.0, 0.30, "silu"), (4.0, 0.28, "relu"), (6.0, 0.29, "mish"), (7.0, 0.33, "frelu"), (4.5, 0.27, "gelu")]
    assert [p[2] for p in pareto_front(pts)] == ["relu", "silu", "frelu"]  # mish and gelu are beaten on both axes


def test_plot_sweep_writes_three_pngs(tmp_path):
    head = "epoch,time,train/box_loss,metrics/mAP50(B),metrics/mAP50-95(B)\n"
    curves = {}
    for label, slope in (("silu", 0.02), ("relu", 0.015)):
        p = tmp_path / label / "results.csv"
        p.parent.mkdir()
        p.write_text(head + "".join(f"{e},{e},1.0,{2 * slope * e:.4f},{slope * e:.4f}\n" for e in range(1, 6)))
        curves[label] = p
    rows = [
        {"act": "silu", "status": "finished", "mAP50-95": 0.10, "latency_ms": 5.0},
        {"act": "relu", "status": "finished", "mAP50-95": 0.075, "latency_ms": 4.1},
        {"act": "mish", "status": "failed", "mAP50-95": None, "latency_ms": None},
    ]
    written = plot_sweep(tmp_path, rows, curves, baseline="silu")
    assert sorted(p.name for p in written) == ["curves.png", "frontier.png", "map.png"]
    for p in written:
        w, h = _png_size(p)
        assert 400 <= w <= 4000 and 300 <= h <= 3000, (p.name, w, h)


def _results_csv(path, values):
    path.parent.mkdir(parents=True, exist_ok=True)
    head = "epoch,time,metrics/mAP50(B),metrics/mAP50-95(B)\n"
    path.write_text(head + "".join(f"{e},{e},{2 * v:.4f},{v:.4f}\n" for e, v in enumerate(values, 1)))
    return path


def _texts(ax):
    return [t.get_text() for t in ax.texts]


def test_sweep_plots_over_seeds_have_whiskers_error_bars_and_bands(tmp_path):
    rows = [
        {"act": "silu", "status": "finished", "mAP50-95": 0.10, "mAP50-95_ci_low": 0.08, "mAP50-95_ci_high": 0.12,
         "values": [0.09, 0.11], "latency_ms": 5.0},
        {"act": "relu", "status": "finished", "mAP50-95": 0.07, "mAP50-95_ci_low": -0.02, "mAP50-95_ci_high": 0.16,
         "values": [0.05, 0.09], "latency_ms": 4.0},
    ]
    ax = map_bars_figure(rows, "silu").axes[0]
    assert len(ax.collections) >= 2  # the whiskers and the per-seed dots
    lo, hi = ax.get_ylim()
    assert lo == 0 and 0.16 < hi < 0.5  # from 0, with room for the upper whisker, never negative
    ax = frontier_figure(rows, "silu").axes[0]
    assert ax.get_ylim()[0] >= 0 and ax.get_ylim()[1] > 0.16
    assert any(c.__class__.__name__ == "LineCollection" for c in ax.collections)  # error bars
    curves = {"silu": [_results_csv(tmp_path / "s0.csv", [0.01, 0.05, 0.09]),
                       _results_csv(tmp_path / "s1.csv", [0.02, 0.07, 0.11])],
              "relu": _results_csv(tmp_path / "r0.csv", [0.0, 0.03, 0.05])}  # one path works too
    ax = curves_figure(curves, "silu").axes[0]
    assert len(ax.lines) == 2 and len(ax.collections) == 1  # a mean line each, a band where seeds differ
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [0.015, 0.06, 0.10])
    assert all(float(t).is_integer() for t in ax.get_xticks() if 1 <= t <= 3)  # integer epoch ticks
    assert "range over seeds" in ax.get_ylabel()


def test_sweep_plots_stay_sane_when_every_map_is_zero(tmp_path):
    rows = [{"act": a, "status": "finished", "mAP50-95": 0.0, "mAP50-95_ci_low": 0.0, "mAP50-95_ci_high": 0.0,
             "values": [0.0, 0.0], "latency_ms": lat} for a, lat in (("silu", 5.0), ("relu", 4.0))]
    for fig in (map_bars_figure(rows, "silu"), frontier_figure(rows, "silu")):
        ax = fig.axes[0]
        assert ax.get_ylim() == (0, 1) and ZERO_NOTE in _texts(ax)  # not 0..0.0012, never below 0
    curves = {"silu": [_results_csv(tmp_path / "a.csv", [0, 0]), _results_csv(tmp_path / "b.csv", [0, 0])]}
    ax = curves_figure(curves, "silu").axes[0]
    assert ax.get_ylim() == (0, 1) and ZERO_NOTE in _texts(ax)
    assert [t for t in ax.get_xticks() if 1 <= t <= 2] == [1, 2]  # two epochs: ticks 1 and 2, no 1.25
    assert len(plot_sweep(tmp_path, rows, curves, baseline="silu")) == 3
