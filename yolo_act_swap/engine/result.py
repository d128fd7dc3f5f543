"""``act_swap_result.json``: what one training run reports (consumed by ``yolo-act-swap sweep``)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import torch

from ..io import atomic_write_text

RESULT_FILE = "act_swap_result.json"


def peak_memory_mb(device) -> float:
    """Peak memory of this process: GPU max allocated on CUDA, else the CPU's max resident set size."""
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        import resource

        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return rss / 2**20 if sys.platform == "darwin" else rss / 2**10  # bytes on macOS, KiB on Linux
    except ImportError:  # Windows
        import psutil

        return psutil.Process().memory_info().peak_wset / 2**20


def _f(v):
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else round(float(v), 6)


def run_result(trainer, train_time: float) -> dict:
    """The result of a finished run, from an ultralytics trainer after its final evaluation."""
    from ultralytics.utils.torch_utils import unwrap_model

    epochs = max(trainer.epoch - trainer.start_epoch + 1, 1)  # run in this session (fewer after a resume)
    m = trainer.metrics or {}
    train_s = getattr(trainer, "_yas_train_s", 0.0)
    return {
        "status": "finished",
        "save_dir": str(trainer.save_dir),
        "best": str(trainer.best) if trainer.best.exists() else None,
        "last": str(trainer.last) if trainer.last.exists() else None,
        "epochs": trainer.epoch + 1,  # trained in total
        "metrics": {
            "precision": _f(m.get("metrics/precision(B)")),
            "recall": _f(m.get("metrics/recall(B)")),
            "mAP50": _f(m.get("metrics/mAP50(B)")),
            "mAP50-95": _f(m.get("metrics/mAP50-95(B)")),
        },
        "train_time_s": round(train_time, 3),
        "epoch_time_s": round(train_time / epochs, 3),
        "train_images_per_s": round(getattr(trainer, "_yas_train_imgs", 0) / train_s, 2) if train_s else None,
        "peak_mem_mb": round(peak_memory_mb(trainer.device), 1),
        "device": str(trainer.device),
        "amp": bool(trainer.amp),
        "batch": int(trainer.batch_size),
        "imgsz": int(trainer.args.imgsz),
        "act_swap": (getattr(unwrap_model(trainer.model), "yaml", None) or {}).get("act_swap"),
    }


def write_result(trainer, train_time: float) -> Path:
    """Write ``{save_dir}/act_swap_result.json`` atomically."""
    path = Path(trainer.save_dir) / RESULT_FILE
    atomic_write_text(path, json.dumps(run_result(trainer, train_time), indent=2, default=str) + "\n")
    return path


def read_result(save_dir) -> dict:
    """A run folder's result, or ``{"status": "failed"}`` when the run wrote none."""
    path = Path(save_dir) / RESULT_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {"status": "failed"}
