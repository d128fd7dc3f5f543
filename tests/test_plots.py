"""Plots: ``yolo-act-swap plot`` (activation curves and derivatives) and the sweep's comparison figures."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from yolo_act_swap.activations import list_activations
from yolo_act_swap.cli import main as cli_main
from yolo_act_swap.plots import activation_curve, pareto_front, plot_sweep

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
