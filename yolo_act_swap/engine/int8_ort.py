"""INT8 through ONNX Runtime static quantization (``onnxruntime.quantization.quantize_static``).

The FP32 model comes from ultralytics' ONNX exporter (``engine.export``). ``quantize_onnx`` writes a QDQ model:
per-channel INT8 weights and UINT8 activations (U8S8, the fast path of ONNX Runtime's x86 kernels), MinMax-calibrated
on images of a dataset split that ultralytics' own dataset code letterboxes exactly as its ``DetectionValidator`` does
(``mode="val"``, ``rect=False``, pixels / 255). As in ultralytics' ``format=onnx quantize=8``, only weighted ops
(Conv, Gemm, MatMul) are quantized, with their inputs and outputs: the activation between two convs runs in float on
dequantized values and its output is quantized again at the next conv's input. Quantizing the head's decode as
well would give box pixels (0-640) and class scores (0-1) one scale and round every score to zero. The ultralytics
metadata (stride, names, imgsz ...) is copied over, so that ``AutoBackend`` loads the INT8 model like the FP32 one.

Example:
    >>> from yolo_act_swap.engine.int8_ort import quantize_onnx
    >>> quantize_onnx("model.onnx", "model_int8.onnx", "demo.yaml", imgsz=160)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

ORT_INT8_MODULES = ("onnx", "onnxruntime")
QUANTIZED_OPS = frozenset({"Conv", "Gemm", "MatMul"})


def calibration_loader(data_yaml: str | Path, split: str, imgsz: int, fraction: float = 1.0):
    """Batches of one letterboxed uint8 image from ``split`` of ``data_yaml``, built as the validator builds them."""
    from ultralytics.cfg import get_cfg
    from ultralytics.data import build_dataloader, build_yolo_dataset
    from ultralytics.data.utils import check_det_dataset

    cfg = get_cfg(overrides={"task": "detect", "mode": "val", "data": str(data_yaml), "imgsz": imgsz, "rect": False,
                             "fraction": fraction, "split": split})  # fmt: skip
    data = check_det_dataset(str(data_yaml))
    if not data.get(split):
        raise ValueError(f"{data_yaml} has no {split!r} split to calibrate on")
    dataset = build_yolo_dataset(cfg, data[split], 1, data, mode="val", fraction=fraction)
    if len(dataset) < 1:
        raise ValueError(f"the {split} split of {data_yaml} has no images to calibrate on")
    return build_dataloader(dataset, batch=1, workers=0, shuffle=False, pin_memory=False, device="cpu")


def _image(batch: dict) -> np.ndarray:
    """A loader batch as the float NCHW input the validator feeds (``img.float() / 255``)."""
    return batch["img"].float().numpy() / 255.0


def copy_metadata(source: str | Path, target: str | Path) -> int:
    """Copy the ``metadata_props`` that ``target`` lacks from ``source`` (ONNX files); return how many."""
    import onnx

    src, dst = onnx.load(str(source)), onnx.load(str(target))
    have = {p.key for p in dst.metadata_props}
    added = 0
    for prop in src.metadata_props:
        if prop.key not in have:
            new = dst.metadata_props.add()
            new.key, new.value = prop.key, prop.value
            added += 1
    if added:
        onnx.save(dst, str(target))
    return added


def quantize_onnx(fp32_path: str | Path, int8_path: str | Path, data_yaml: str | Path, imgsz: int,
                  split: str = "train", fraction: float = 1.0) -> str:  # fmt: skip
    """Quantize the FP32 ONNX model ``fp32_path`` to the QDQ INT8 model ``int8_path``; return its path.

    Args:
        fp32_path: an ultralytics ONNX export (batch 1, ``imgsz`` square).
        int8_path: where the INT8 model goes.
        data_yaml: the ultralytics data YAML whose ``split`` (a ``fraction`` of it) is the calibration set.
        imgsz: the export's input size.
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from ultralytics.utils.export.onnx import onnx_calibration_reader

    graph = onnx.load(str(fp32_path)).graph
    exclude = [n.name for n in graph.node if n.op_type not in QUANTIZED_OPS]
    name = graph.input[0].name
    del graph
    reader = onnx_calibration_reader(calibration_loader(data_yaml, split, imgsz, fraction), _image, name)
    Path(int8_path).parent.mkdir(parents=True, exist_ok=True)
    quantize_static(str(fp32_path), str(int8_path), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=exclude)  # fmt: skip
    copy_metadata(fp32_path, int8_path)
    return str(int8_path)
