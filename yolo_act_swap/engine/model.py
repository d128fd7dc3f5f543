"""``YOLO``: ultralytics' model wrapper whose detect task builds, trains and validates with yolo-act-swap's classes."""

from __future__ import annotations

import copy

from ultralytics import YOLO as UltralyticsYOLO

from ..models import build_detection_model, load_model_cfg
from .trainer import ActSwapTrainer
from .validator import ActSwapValidator


def task_model(cfg, ch=3, nc=None, verbose=True):
    """``task_map`` model entry: ultralytics calls it with a model dict (or a path) when it builds from YAML."""
    return build_detection_model(load_model_cfg(cfg), nc=nc, ch=ch, verbose=verbose)


class YOLO(UltralyticsYOLO):
    """Ultralytics ``YOLO`` whose detect task builds, trains and validates with yolo-act-swap's classes.

    ``YOLO(path).train(...)`` keeps the swap: YAML builds honour ``act_swap:``, a model patched in memory trains from
    its own model dict (which the patcher updated), and checkpoints rebuild through ``ActSwapTrainer.get_model``.

    Examples:
        >>> from yolo_act_swap import patch_model
        >>> model = YOLO("yolov8n.yaml")
        >>> patch_model(model, "frelu", imgsz=160)
        >>> model.train(data="demo", epochs=3, imgsz=160)  # data=None or "demo": the built-in demo dataset
    """

    @property
    def task_map(self) -> dict:
        """Ultralytics' map with the detect entries pointing at ``ActSwapTrainer`` / ``ActSwapValidator``."""
        m = super().task_map
        m["detect"] = {**m["detect"], "model": task_model, "trainer": ActSwapTrainer, "validator": ActSwapValidator}
        return m

    def train(self, trainer=None, **kwargs):
        """Ultralytics' ``Model.train``; a YAML-built model trains from its in-memory model dict (swap included)."""
        if not self.ckpt and isinstance(getattr(self.model, "yaml", None), dict) and "model" not in kwargs:
            kwargs["model"] = copy.deepcopy(self.model.yaml)
        if not kwargs.get("data") and not self.overrides.get("data"):
            kwargs["data"] = "demo"  # never ultralytics' default coco8.yaml, which would be downloaded
        return super().train(trainer=trainer, **kwargs)
