"""The sweep's deployment columns (``--deploy``): per finished run, batch-1 latency in ONNX Runtime and OpenVINO,
and INT8 (OpenVINO NNCF) mAP50-95 with its drop from FP32 OpenVINO on the same validation split.

Every finished checkpoint is exported with ultralytics' exporter (``engine.export``), all of them are timed side by
side in one process (interleaved rounds), then quantized and validated (``engine.int8``). The result is cached in
``deploy.json`` in the sweep folder, like ``latency.json``, and reused while the runs and settings are the same.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch

from ..engine.export import error_line, export, load_backend, time_interleaved
from ..engine.formats import FORMATS, missing_packages
from ..engine.int8 import int8_check
from .harvest import cpu_name
from .plan import SweepFolder

BACKENDS = ("onnx", "openvino")


def _load(path: str) -> torch.nn.Module:
    from ultralytics.nn.tasks import load_checkpoint

    model, _ = load_checkpoint(path, device="cpu")
    return model.float().eval()


def _export_all(weights: dict, imgsz: int, folder: Path, out: dict) -> dict:
    """Export every checkpoint to each backend; (label, backend) -> loaded backend. Failures go to ``out``."""
    runners = {}
    for label, path in weights.items():
        model = _load(path)
        for fmt in BACKENDS:
            missing = missing_packages(FORMATS[fmt])
            if missing:
                out[label].setdefault("error", f"{fmt}: {', '.join(missing)} not installed")
                continue
            try:
                artifact = export(model, fmt, imgsz, folder / label, "model")
                out[label][f"{fmt}_path"] = artifact
                runners[label, fmt] = load_backend(artifact)
            except Exception as e:  # noqa: BLE001 - one failing export is one empty cell
                out[label].setdefault("error", f"{fmt}: {error_line(e, 120)}")
    return runners


def measure_deploy(weights: dict, data_yaml: str, imgsz: int, folder: str | Path, reps: int = 20,
                   int8: bool = True) -> dict:  # fmt: skip
    """label -> ``onnx_ms``, ``openvino_ms``, ``int8_mAP50-95``, ``fp32_mAP50-95`` (OpenVINO), ``int8_drop``.

    Args:
        weights: label -> checkpoint of a finished run.
        data_yaml: the sweep's dataset (calibration: its train split, validation: val).
        imgsz: the sweep's image size.
        folder: where the exports go.
        reps: interleaved timed forwards per model and backend.
        int8: also quantize and validate.
    """
    folder = Path(folder)
    out = {label: {} for label in weights}
    runners = _export_all(weights, imgsz, folder, out)
    torch.manual_seed(0)
    x = torch.rand(1, 3, imgsz, imgsz)
    for (label, fmt), ms in time_interleaved(runners, x, warmup=3, repeats=reps).items():
        out[label][f"{fmt}_ms"] = statistics.median(ms)
    for label, path in weights.items() if int8 else ():
        row = int8_check(_load(path), label, data_yaml, imgsz, folder / "int8",
                         fp32_path=out[label].get("openvino_path"), repeats=3)  # fmt: skip
        if row.reason:
            out[label].setdefault("error", f"INT8 {row.reason}")
            continue
        out[label].update({"int8_mAP50-95": row.int8["mAP50-95"], "fp32_mAP50-95": row.fp32["mAP50-95"],
                           "int8_drop": row.drop})  # fmt: skip
    return out


def sweep_deploy(folder: SweepFolder, runs: list, settings: dict, reps: int, write=print) -> dict | None:
    """Measure (or reuse from ``deploy.json``) the deployment columns of every finished run of a sweep."""
    from ..data import resolve_data

    weights = {}  # per activation: the best.pt of its first finished seed
    for r in runs:
        rec = folder.record(r.run_id)
        if rec and rec.get("status") == "finished" and rec.get("best") and Path(rec["best"]).exists():
            weights.setdefault(r.label, rec["best"])
    if not weights:
        return None
    path = folder.root / "deploy.json"
    imgsz = settings["img_size"]
    old = folder.read_json(path)
    if old and sorted(old.get("runs", {})) == sorted(weights) and old.get("imgsz") == imgsz and old.get("reps") == reps:
        return old
    write(f"deploy: {len(weights)} models to ONNX Runtime and OpenVINO (FP32, INT8), batch 1, imgsz {imgsz}, cpu")
    data = resolve_data(settings.get("data"), splits=("train", "val"))
    result = measure_deploy(weights, str(data.yaml), imgsz, folder.root / "deploy", reps)
    doc = {"imgsz": imgsz, "reps": reps, "device_name": cpu_name(), "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
           "runs": result}  # fmt: skip
    folder.write_json(path, doc)
    return doc
