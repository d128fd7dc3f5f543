"""INT8 accuracy per activation, in two runtimes: OpenVINO and ONNX Runtime post-training quantization.

``int8_check`` exports the model in FP32 with ultralytics' exporter and quantizes it to INT8, calibrated on a dataset
split: ``backend="openvino"`` with NNCF through ultralytics' exporter (``format=openvino``, ``quantize=8``),
``backend="onnx"`` with ONNX Runtime's static quantization of the FP32 ONNX export (``engine.int8_ort``). Both models
are validated with ultralytics' ``DetectionValidator`` on the same split with the same settings; the row has
mAP50-95 in FP32 and INT8, the drop, and the INT8 speed-up in the same runtime. A failing step fills ``reason``.

Example:
    >>> from yolo_act_swap.data import resolve_data
    >>> rows = [int8_check(model, "relu", resolve_data("demo").yaml, 160, "runs/int8", backend=b)
    ...         for b in INT8_BACKENDS]
    >>> print(int8_table(rows))
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..io import quiet
from ..tables import format_table
from .export import error_line, export, load_backend, run_once, time_once
from .formats import DEPLOY_EXTRA, FORMATS, missing_modules, no_installs
from .int8_ort import ORT_INT8_MODULES, quantize_onnx

INT8_BACKENDS = {"openvino": ("openvino", "nncf"), "onnx": ("onnxslim", *ORT_INT8_MODULES)}  # format -> modules
INT8_ALIASES = {"onnxruntime": "onnx", "ort": "onnx", "ov": "openvino"}


def int8_backends(text: str) -> list[str]:
    """``openvino,onnx`` / ``all`` / aliases (``onnxruntime``) -> backend names; raise ``KeyError`` naming the known."""
    names = [s.strip().lower() for s in text.split(",") if s.strip()]
    out = []
    for name in names:
        key = INT8_ALIASES.get(name, name)
        if key == "all":
            out += list(INT8_BACKENDS)
        elif key in INT8_BACKENDS:
            out.append(key)
        else:
            raise KeyError(f"unknown INT8 backend {name!r}; known: {', '.join(INT8_BACKENDS)}, onnxruntime, all")
    if not out:
        raise KeyError(f"give at least one INT8 backend out of {', '.join(INT8_BACKENDS)}, all")
    return list(dict.fromkeys(out))


@dataclass
class Int8Check:
    """FP32 vs INT8 in one runtime for one activation.

    Attributes:
        act (str): the activation label.
        backend (str): ``openvino`` (NNCF PTQ) or ``onnx`` (ONNX Runtime static quantization).
        fp32, int8 (dict): ``mAP50`` and ``mAP50-95`` of each model on the validation split (empty when not run).
        fp32_ms, int8_ms (float | None): median batch-1 latency of each in that runtime.
        reason (str): why a step failed.
        paths (dict): the exported folders.
    """

    act: str
    backend: str = "openvino"
    fp32: dict = field(default_factory=dict)
    int8: dict = field(default_factory=dict)
    fp32_ms: float | None = None
    int8_ms: float | None = None
    reason: str = ""
    paths: dict = field(default_factory=dict)

    @property
    def drop(self) -> float | None:
        """FP32 minus INT8 mAP50-95 (positive: INT8 is worse)."""
        if "mAP50-95" in self.fp32 and "mAP50-95" in self.int8:
            return self.fp32["mAP50-95"] - self.int8["mAP50-95"]
        return None


def int8_args(data_yaml: str | Path, split: str = "train", fraction: float = 1.0) -> dict:
    """Exporter arguments for INT8 calibrated on ``split`` of ``data_yaml`` (``quantize=8``, or ``int8`` before 8.4)."""
    from ultralytics.utils import DEFAULT_CFG_DICT

    flag = {"quantize": 8} if "quantize" in DEFAULT_CFG_DICT else {"int8": True}
    return {**flag, "data": str(data_yaml), "split": split, "fraction": fraction}


def validate(path: str | Path, data_yaml: str | Path, imgsz: int, split: str = "val", folder: Path | None = None,
             verbose: bool = False) -> dict:  # fmt: skip
    """``mAP50`` and ``mAP50-95`` of an exported model (or a module) with ultralytics' ``DetectionValidator``.

    Square letterboxed batches of one (``rect=False``), the way every fixed-shape export is validated, so that
    FP32 and INT8 see the same pixels.
    """
    from ultralytics.models.yolo.detect import DetectionValidator

    args = {
        "model": path if isinstance(path, (str, Path)) else None, "data": str(data_yaml), "imgsz": imgsz, "batch": 1,
        "split": split, "rect": False, "plots": False, "device": "cpu", "save_json": False, "verbose": verbose,
        "task": "detect", "mode": "val", "exist_ok": True,
        **({"project": str(folder), "name": "val"} if folder is not None else {}),
    }  # fmt: skip
    with no_installs(), quiet(not verbose):
        validator = DetectionValidator(args={k: v for k, v in args.items() if v is not None})
        stats = validator(model=None if isinstance(path, (str, Path)) else path)
    return {"mAP50": float(stats["metrics/mAP50(B)"]), "mAP50-95": float(stats["metrics/mAP50-95(B)"])}


def _latency(paths: dict, imgsz: int, repeats: int, verbose: bool) -> dict:
    """Median ms of each exported model, timed interleaved after a warm-up."""
    x = torch.rand(1, 3, imgsz, imgsz)
    backends = {k: load_backend(p, verbose) for k, p in paths.items()}
    for fn in backends.values():
        run_once(fn, x)
    times = {k: [] for k in backends}
    for _ in range(repeats):
        for k, fn in backends.items():
            times[k].append(time_once(fn, x))
    return {k: 1000 * statistics.median(v) for k, v in times.items()}


def _quantize(model, backend: str, fp32: str, data_yaml, imgsz: int, folder: Path, calib_split: str,
              fraction: float, verbose: bool) -> str:  # fmt: skip
    """The INT8 model of ``backend``: NNCF through ultralytics' OpenVINO exporter, or ONNX Runtime on ``fp32``."""
    if backend == "openvino":
        return export(model, "openvino", imgsz, folder, "model", verbose, **int8_args(data_yaml, calib_split, fraction))
    with no_installs(), quiet(not verbose):
        return quantize_onnx(fp32, folder / "model_int8.onnx", data_yaml, imgsz, calib_split, fraction)


def int8_check(model: torch.nn.Module, act: str, data_yaml: str | Path, imgsz: int, folder: str | Path,
               split: str = "val", calib_split: str = "train", fraction: float = 1.0, repeats: int = 10,
               fp32_path: str | None = None, verbose: bool = False, backend: str = "openvino") -> Int8Check:  # fmt: skip
    """Quantize ``model`` to INT8 in ``backend`` and compare it with FP32 in the same runtime.

    Args:
        model: the patched model (not modified).
        act: its label in the table.
        data_yaml: the ultralytics data YAML (see ``yolo_act_swap.data.resolve_data``).
        imgsz: export, calibration and validation size.
        folder: where the exports and validation folders go.
        split: the validation split; calib_split and fraction: the calibration images.
        repeats: timed rounds for the latency columns.
        fp32_path: an FP32 export of the same model in ``backend``'s format to reuse.
        backend: ``openvino`` (NNCF) or ``onnx`` (ONNX Runtime static quantization), see ``INT8_BACKENDS``.

    Returns:
        (Int8Check): both mAPs and latencies, or the reason a step failed.
    """
    row = Int8Check(act, backend)
    missing = missing_modules(INT8_BACKENDS[backend])
    if missing:
        row.reason = f"needs {', '.join(missing)}: {DEPLOY_EXTRA}"
        return row
    folder = Path(folder) / act
    step = "FP32 export"
    try:
        row.paths["fp32"] = fp32_path or export(model, backend, imgsz, folder, "model", verbose)
        step = "INT8 quantization"
        row.paths["int8"] = _quantize(model, backend, row.paths["fp32"], data_yaml, imgsz, folder, calib_split,
                                      fraction, verbose)  # fmt: skip
        step = "FP32 validation"
        row.fp32 = validate(row.paths["fp32"], data_yaml, imgsz, split, folder / f"val-{backend}-fp32", verbose)
        step = "INT8 validation"
        row.int8 = validate(row.paths["int8"], data_yaml, imgsz, split, folder / f"val-{backend}-int8", verbose)
        step = "latency"
        ms = _latency(row.paths, imgsz, repeats, verbose)
        row.fp32_ms, row.int8_ms = ms["fp32"], ms["int8"]
    except Exception as e:  # noqa: BLE001 - a failing step is a row, never a crash
        row.reason = f"{step}: {error_line(e)}"
    return row


def _num(v, spec: str = ".3f") -> str:
    return "-" if v is None else format(v, spec)


INT8_HEAD = ("activation", "backend", "FP32 mAP50-95", "INT8 mAP50-95", "drop", "FP32 mAP50", "INT8 mAP50", "FP32 ms",
             "INT8 ms", "INT8 speed-up", "note")  # fmt: skip


def int8_rows(rows) -> list[tuple]:
    """Table cells of ``Int8Check`` rows."""
    out = []
    for r in rows:
        speed = r.fp32_ms / r.int8_ms if r.fp32_ms and r.int8_ms else None
        out.append((
            r.act, FORMATS[r.backend].title, _num(r.fp32.get("mAP50-95")), _num(r.int8.get("mAP50-95")), _num(r.drop, "+.3f"),
            _num(r.fp32.get("mAP50")), _num(r.int8.get("mAP50")), _num(r.fp32_ms, ".2f"), _num(r.int8_ms, ".2f"),
            _num(speed, ".2f"), r.reason,
        ))  # fmt: skip
    return out


def int8_table(rows) -> str:
    """FP32 vs INT8 accuracy and latency in the same runtime, one row per activation and backend."""
    return "\n".join(format_table(INT8_HEAD, int8_rows(rows), right=range(2, 10)))
