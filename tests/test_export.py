"""export-check: the export matrix (ONNX Runtime, OpenVINO), INT8 through OpenVINO NNCF, and how failures show.

INT8 through ONNX Runtime: tests/test_int8.py.
"""

from __future__ import annotations

import importlib.util

import pytest
import torch
import torch.nn as nn

from yolo_act_swap import patch_model
from yolo_act_swap.activations.registry import temporary_activation
from yolo_act_swap.cli import main
from yolo_act_swap.engine import formats
from yolo_act_swap.engine.export import export_matrix, matrix_rows, matrix_table
from yolo_act_swap.models import load_model

pytest.importorskip("onnxruntime")
pytest.importorskip("openvino")

IMGSZ = 64
ACTS = ["silu", "relu", "frelu", "acon_c", "dy_relu_b"]


def build(act: str) -> nn.Module:
    model = load_model("yolov8n.yaml", nc=3)
    patch_model(model, act, imgsz=IMGSZ, verify=False, flops=False)
    return model


@pytest.fixture(scope="module")
def matrix(tmp_path_factory):
    folder = tmp_path_factory.mktemp("matrix")
    return export_matrix(build, ACTS, ["onnx", "openvino"], imgsz=IMGSZ, folder=folder, warmup=1, repeats=3)


def test_matrix_every_cell_filled(matrix):
    assert [(r.act, r.format) for r in matrix] == [(a, f) for a in ACTS for f in ("pytorch", "onnx", "openvino")]
    for r in matrix:
        where = f"{r.act} / {r.format}: {r.reason}"
        assert r.exported and r.loads and r.runs, where
        assert r.ms is not None and r.ms > 0 and r.x_silu is not None, where
        assert r.ops and r.ops != ["(none)"], where
        assert r.within(rtol=1e-3, atol=1e-3), f"{where} max diff {r.max_diff} (scale {r.ref_scale})"
        assert not r.reason, where
    for cells in matrix_rows(matrix):
        assert "-" not in cells[:-1], cells  # every cell but the note is filled


def test_matrix_ops_per_format(matrix):
    ops = {(r.act, r.format): r.ops for r in matrix}
    assert set(ops["silu", "onnx"]) == {"Sigmoid", "Mul"}  # ONNX has no SiLU op
    assert ops["silu", "openvino"] == ["Swish"]  # OpenVINO has a native one
    assert ops["relu", "onnx"] == ["Relu"] and ops["relu", "openvino"] == ["Relu"]
    assert {"Conv", "Relu", "Add"} <= set(ops["frelu", "onnx"])  # x + relu(conv'(x)), see activations/graphs.py
    assert {"GroupConvolution", "Relu", "Add"} <= set(ops["frelu", "openvino"])
    assert {"Sigmoid", "Mul"} <= set(ops["acon_c", "onnx"])
    assert ops["silu", "pytorch"] == ["SiLU"]
    assert all(r.x_silu == 1.0 for r in matrix if r.act == "silu")


class Digamma(nn.Module):
    """A shape-preserving activation whose op (aten::digamma) ONNX cannot express."""

    def __init__(self, channels=None):
        super().__init__()

    def forward(self, x):
        return torch.digamma(x.abs() + 1.0)


def test_activation_that_cannot_export_is_one_row(tmp_path):
    with temporary_activation("digamma_test", Digamma, onnx_exportable=False):
        rows = export_matrix(build, ["digamma_test"], ["onnx"], imgsz=IMGSZ, folder=tmp_path, warmup=0, repeats=1)
    (pt, onnx_row) = rows
    assert pt.runs and pt.format == "pytorch"
    assert onnx_row.exported is False and onnx_row.loads is None and onnx_row.runs is None
    assert onnx_row.reason.startswith("export: ") and "digamma" in onnx_row.reason
    assert "\n" not in onnx_row.reason and len(onnx_row.reason) < 200
    line = [x for x in matrix_table(rows).splitlines() if "ONNX" in x]
    assert len(line) == 1 and "NO" in line[0] and "digamma" in line[0]


def test_missing_package_is_one_line(monkeypatch, capsys):
    real = importlib.util.find_spec
    absent = ("ncnn", "pnnx")  # whether or not they are installed here: both missing, in one line
    monkeypatch.setattr(formats.importlib.util, "find_spec", lambda name, *a: None if name in absent else real(name, *a))
    assert formats.missing_packages(formats.FORMATS["ncnn"]) == ["ncnn", "pnnx"]
    rc = main(["export-check", "--cfg", "yolov8n.yaml", "--act", "relu", "--formats", "ncnn", "--imgsz", "64",
               "--repeats", "1"])  # fmt: skip
    out = capsys.readouterr().out
    assert rc == 0
    lines = [x for x in out.splitlines() if "ncnn" in x]
    assert lines == ["ncnn: skipped, ncnn, pnnx not installed: pip install 'yolo-act-swap[deploy]'"], out
    assert "PyTorch" in out  # the rest of the check still runs


def test_unknown_format_is_a_usage_error(capsys):
    assert main(["export-check", "--formats", "onnx,tensorrtt"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unknown format 'tensorrtt'" in err


def test_int8_on_demo_data(tmp_path, capsys):
    pytest.importorskip("nncf")
    rc = main(["export-check", "--cfg", "yolov8n.yaml", "--act", "relu", "--formats", "openvino", "--imgsz", "64",
               "--repeats", "2", "--int8", "--data", "demo", "--out", str(tmp_path)])  # fmt: skip
    out = capsys.readouterr().out
    assert rc == 0, out
    head, _, int8 = out.partition("INT8 (OpenVINO NNCF")
    assert "OpenVINO" in head and "relu" in int8
    lines = int8.splitlines()
    cols = lines[1].split()
    assert cols[:4] == ["activation", "backend", "FP32", "mAP50-95"], lines[1]
    row = next(x for x in lines[3:] if x.startswith("relu")).split()
    assert row[1] == "OpenVINO", row  # the default backend
    fp32, q, drop = float(row[2]), float(row[3]), float(row[4])
    assert 0 <= fp32 <= 1 and 0 <= q <= 1 and abs(fp32 - q - drop) < 2e-3
    assert list(tmp_path.glob("int8/relu/*_int8_openvino_model/*.xml"))  # the quantized model is there


def test_sweep_of_two_activations_with_deploy_columns(tmp_path):
    pytest.importorskip("nncf")
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "yolo_act_swap", "sweep", "--acts", "silu,relu", "--epochs", "1", "--device", "cpu",
           "--project", str(tmp_path), "--name", "s", "--cfg", "yolov8n.yaml", "--img-size", "64", "--batch-size", "8",
           "--workers", "0", "--latency-reps", "3", "--deploy", "fraction=0.1", "plots=False"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    md = (tmp_path / "s" / "results.md").read_text()
    for head in ("ONNX Runtime ms", "OpenVINO ms", "INT8 mAP50-95", "INT8 drop", "latency ms"):
        assert head in md, md
    import csv

    with open(tmp_path / "s" / "results.csv", newline="") as f:
        rows = {r["act"]: r for r in csv.DictReader(f)}
    assert set(rows) == {"silu", "relu"}
    for r in rows.values():
        assert float(r["onnx_ms"]) > 0 and float(r["openvino_ms"]) > 0, r
        assert 0 <= float(r["int8_mAP50-95"]) <= 1 and r["int8_drop"] != "", r
    assert (tmp_path / "s" / "int8_frontier.png").read_bytes()[:4] == b"\x89PNG"
