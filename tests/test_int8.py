"""INT8 through ONNX Runtime static quantization: the quantized model, its metadata, the CLI rows and errors."""

from __future__ import annotations

import importlib.util
import re

import pytest

from yolo_act_swap.cli import main
from yolo_act_swap.engine import formats
from yolo_act_swap.engine.int8 import int8_backends

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

IMGSZ = 64


def _table(out: str, marker: str = "INT8 (") -> dict:
    """``(activation, backend) -> the other cells`` of the INT8 table printed after ``marker``."""
    lines = out.partition(marker)[2].splitlines()
    assert lines[1].split()[:4] == ["activation", "backend", "FP32", "mAP50-95"], lines[1]
    rows = {}
    for line in lines[3:]:
        if not line.strip():
            break
        act, backend, *cells = re.split(r"\s{2,}", line.strip())  # columns are 2+ spaces apart
        rows[act, backend] = cells
    return rows


def test_onnxruntime_int8_validates_and_keeps_metadata(tmp_path, capsys):
    rc = main(["export-check", "--cfg", "yolov8n.yaml", "--act", "relu", "--formats", "onnx", "--imgsz", str(IMGSZ),
               "--repeats", "1", "--int8", "--int8-backend", "onnxruntime", "--data", "demo", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "ONNX Runtime static post-training quantization" in out
    cells = _table(out)[("relu", "ONNX Runtime")]
    fp32, q, drop = float(cells[0]), float(cells[1]), float(cells[2])
    assert 0 <= fp32 <= 1 and 0 <= q <= 1 and abs(fp32 - q - drop) < 2e-3, cells
    assert float(cells[5]) > 0 and float(cells[6]) > 0, cells  # both models ran in ONNX Runtime (ms)
    (path,) = tmp_path.glob("int8/relu/model_int8.onnx")
    model = onnx.load(str(path))
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv", "Relu"} <= ops, ops
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["stride"] == "32" and meta["imgsz"] == f"[{IMGSZ}, {IMGSZ}]" and meta["task"] == "detect", meta
    assert meta["names"].startswith("{0:"), meta  # AutoBackend reads the class names from here
    inits = {i.name: i for i in model.graph.initializer}
    per_channel = [n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits
                   and inits[n.input[0]].data_type == onnx.TensorProto.INT8 and len(inits[n.input[1]].dims) == 1
                   and inits[n.input[1]].dims[0] > 1]  # fmt: skip
    assert per_channel, "weights are quantized per output channel"


def test_both_backends_in_one_table(tmp_path, capsys):
    pytest.importorskip("nncf")
    rc = main(["export-check", "--cfg", "yolov8n.yaml", "--act", "relu", "--formats", "onnx,openvino", "--imgsz",
               str(IMGSZ), "--repeats", "1", "--int8", "--int8-backend", "all", "--data", "demo", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0, out
    rows = _table(out)
    assert set(rows) == {("relu", "OpenVINO"), ("relu", "ONNX Runtime")}, rows
    for cells in rows.values():
        assert 0 <= float(cells[0]) <= 1 and 0 <= float(cells[1]) <= 1, cells


@pytest.mark.parametrize("flag", ["tensorrt", ","])
def test_bad_backend_is_one_line(flag, capsys):
    assert main(["export-check", "--int8", "--int8-backend", flag, "--imgsz", str(IMGSZ)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("yolo-act-swap: error: --"), err


def test_backend_without_int8_is_a_usage_error(capsys):
    assert main(["export-check", "--int8-backend", "onnxruntime"]) == 2
    assert "--int8-backend is for --int8" in capsys.readouterr().err


def test_backend_names():
    assert int8_backends("all") == ["openvino", "onnx"]
    assert int8_backends("onnxruntime, OpenVINO, ort") == ["onnx", "openvino"]
    with pytest.raises(KeyError, match="unknown INT8 backend 'tflite'"):
        int8_backends("tflite")


def test_missing_onnxruntime_is_one_line(monkeypatch, capsys):
    real = importlib.util.find_spec
    absent = lambda name, *a: None if name == "onnxruntime" else real(name, *a)
    monkeypatch.setattr(formats.importlib.util, "find_spec", absent)
    rc = main(["export-check", "--cfg", "yolov8n.yaml", "--act", "relu", "--formats", "torchscript", "--imgsz",
               str(IMGSZ), "--repeats", "1", "--int8", "--int8-backend", "onnxruntime", "--data", "demo"])
    out = capsys.readouterr().out
    assert rc == 0, out
    lines = [x for x in out.splitlines() if "onnxruntime" in x]
    assert lines == ["INT8 ONNX Runtime: skipped, onnxruntime not installed: pip install 'yolo-act-swap[deploy]'"], out
