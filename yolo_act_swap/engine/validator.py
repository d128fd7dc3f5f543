"""Validate checkpoints: ``ActSwapValidator`` (ultralytics' detection validator plus official COCO mAP) and ``val()``.

Reports precision, recall, mAP50 and mAP50-95 overall and per class with ultralytics' detection validator. With
``save_json`` on a dataset that came from COCO JSON (the demo does), it also computes the official COCO mAP with
faster-coco-eval (or pycocotools) against the original annotation file, mapping predictions back to its image and
category ids.

Examples:
    >>> from yolo_act_swap.engine.validator import val
    >>> val("runs/train/exp/weights/best.pt", data="demo", imgsz=160)["metrics"]["mAP50"]
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

from ultralytics.models.yolo.detect import DetectionValidator
from ultralytics.utils import LOGGER

from ..checkpoints import register_safe_globals
from ..data.resolve import check_class_count, resolve_data
from ..errors import ActSwapError, DataError, ModelError
from ..io import atomic_write_text
from ..models import load_model
from ..safe_load import load_checkpoint
from ..tables import format_table
from .layout import batch_to_layout, is_channels_last

VAL_FILE = "act_swap_val.json"
METRIC_KEYS = ("precision", "recall", "mAP50", "mAP50-95")


def coco_eval(anno_json, predictions: list, img_ids: list) -> dict:
    """Official COCO box mAP of ``predictions`` against ``anno_json`` with faster-coco-eval, else pycocotools.

    Returns:
        (dict): ``mAP50-95``, ``mAP50``, ``mAP75``, ``mAP_small``, ``mAP_medium``, ``mAP_large`` and ``evaluator``.

    Raises:
        ActSwapError: neither package is installed.
    """
    try:
        from faster_coco_eval import COCO
        from faster_coco_eval import COCOeval_faster as COCOeval

        name = "faster-coco-eval"
    except ImportError:
        try:
            from pycocotools.coco import COCO
            from pycocotools.cocoeval import COCOeval

            name = "pycocotools"
        except ImportError:
            raise ActSwapError(
                "--save-json needs faster-coco-eval or pycocotools: pip install 'yolo-act-swap[coco]'"
            ) from None
    anno = COCO(str(anno_json))
    if not predictions:
        return {"evaluator": name, "mAP50-95": 0.0, "mAP50": 0.0, "mAP75": 0.0}
    pred = anno.loadRes(copy.deepcopy(predictions))
    ev = COCOeval(anno, pred, "bbox")
    ev.params.imgIds = list(img_ids)
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    s = [float(x) for x in ev.stats[:6]]
    keys = ("mAP50-95", "mAP50", "mAP75", "mAP_small", "mAP_medium", "mAP_large")
    return {"evaluator": name, **dict(zip(keys, s))}


class ActSwapValidator(DetectionValidator):
    """Ultralytics ``DetectionValidator`` with official COCO evaluation for datasets built from COCO JSON.

    The data YAML's ``coco_annotations:`` key (written by the demo generator and the COCO-JSON converter, or added by
    hand) maps each split to its annotation file; ``category_ids:`` maps class indices to COCO category ids.
    Overrides only public hooks: ``init_metrics`` (also notes the model's memory layout), ``preprocess`` (images in
    that layout, ``engine.layout``), ``pred_to_json``, ``update_metrics``, ``eval_json``,
    ``print_results`` (skipped when ``print_table`` is False: ``val()`` returns the figures and the command prints
    them once, as ``metrics_table``).
    """

    print_table = True
    model_channels_last = False  # set by init_metrics: the model holds its weights in channels_last

    def print_results(self):
        """Ultralytics' per-class table, unless the caller prints its own."""
        if self.print_table:
            super().print_results()

    def init_metrics(self, model):
        """Ultralytics' setup, then switch ``save_json`` to the original COCO file when the data names one."""
        super().init_metrics(model)
        self.model_channels_last = is_channels_last(model)
        self.coco_anno = None
        split = self.args.split or "val"
        anno = (self.data.get("coco_annotations") or {}).get(split) if isinstance(self.data, dict) else None
        if not (self.args.save_json and anno) or self.is_coco or self.is_lvis:
            return
        base = Path(self.data.get("path") or ".")
        anno = Path(anno) if Path(anno).is_absolute() else base / anno
        if not anno.is_file():
            raise DataError(
                f"COCO annotation file for {split} not found: {anno}; fix coco_annotations: in the data YAML"
            )
        with open(anno, encoding="utf-8") as f:
            doc = json.load(f)
        self.coco_anno = anno
        self._coco_ids = {Path(im["file_name"]).as_posix(): int(im["id"]) for im in doc["images"]}
        cats = self.data.get("category_ids") or sorted(int(c["id"]) for c in doc["categories"])
        self.class_map = [int(c) for c in cats]
        self.is_custom_json = False  # ultralytics' label-rebuilt ground truth is not needed: we have the original
        self.gdict, self.build_gdict, self.eval_ids = None, False, None
        self._seen_ids = []

    def preprocess(self, batch):
        """Ultralytics' preprocessing, with the images in channels_last when the model is (``engine.layout``)."""
        return batch_to_layout(super().preprocess(batch), self.model_channels_last)

    def _image_id(self, im_file: str):
        parts = Path(im_file).parts
        for n in range(1, min(len(parts), 4) + 1):
            key = Path(*parts[-n:]).as_posix()
            if key in self._coco_ids:
                return self._coco_ids[key]
        return None

    def pred_to_json(self, predn, pbatch):
        """Ultralytics' COCO-format predictions, with image ids taken from the original annotation file."""
        if getattr(self, "coco_anno", None) is None:
            return super().pred_to_json(predn, pbatch)
        n = len(self.jdict)
        super().pred_to_json(predn, pbatch)
        image_id = self._image_id(pbatch["im_file"])
        if image_id is None:
            raise DataError(f"{pbatch['im_file']} is not listed in {self.coco_anno}; regenerate the converted dataset")
        for d in self.jdict[n:]:
            d["image_id"] = image_id

    def update_metrics(self, preds, batch):
        """Record every evaluated image id (images without predictions count too) for the COCO evaluation."""
        super().update_metrics(preds, batch)
        if getattr(self, "coco_anno", None) is not None:
            for f in batch["im_file"]:
                image_id = self._image_id(f)
                if image_id is not None:
                    self._seen_ids.append(image_id)

    def eval_json(self, stats):
        """Official COCO mAP against the original annotation file (replaces mAP50/mAP50-95 outside training)."""
        if getattr(self, "coco_anno", None) is None:
            return super().eval_json(stats)
        LOGGER.info(f"\nEvaluating official COCO mAP against {self.coco_anno}...")
        res = coco_eval(self.coco_anno, self.jdict, sorted(set(self._seen_ids)))
        self.coco_results = res
        stats["metrics/coco/mAP50-95(B)"] = res["mAP50-95"]
        stats["metrics/coco/mAP50(B)"] = res["mAP50"]
        if not self.training:
            stats["metrics/mAP50(B)"], stats["metrics/mAP50-95(B)"] = res["mAP50"], res["mAP50-95"]
            stats["fitness"] = 0.9 * res["mAP50-95"] + 0.1 * res["mAP50"]
        return stats


# ---------------------------------------------------------------------------------------------------------- val()
def _ckpt_args(weights) -> dict:
    """The train args stored in a checkpoint (loaded without running code: ``safe_load``)."""
    return dict(load_checkpoint(weights).get("train_args") or {})


def _per_class(m, names) -> dict:
    """Per-class instances, images, P, R, mAP50, mAP50-95 from ultralytics' ``DetMetrics``."""
    per_class = {}
    for i, c in enumerate(m.ap_class_index):
        p, r, ap50, ap = m.class_result(i)
        per_class[names[int(c)]] = {
            "images": int(m.nt_per_image[c]) if getattr(m, "nt_per_image", None) is not None else None,
            "instances": int(m.nt_per_class[c]),
            "precision": float(p),
            "recall": float(r),
            "mAP50": float(ap50),
            "mAP50-95": float(ap),
        }
    return per_class


def _coco_result(validator, stats: dict, save_json: bool) -> dict | None:
    """Official COCO mAP where the data allows it (a warning where ``save_json`` asked for it but it does not)."""
    if getattr(validator, "coco_results", None):
        return validator.coco_results
    if save_json and ("metrics/mAP50-95(B)" in stats) and (validator.is_coco or validator.is_lvis):
        return {"mAP50-95": stats["metrics/mAP50-95(B)"], "mAP50": stats["metrics/mAP50(B)"]}
    if save_json:
        LOGGER.warning("--save-json: this dataset has no COCO annotation file; predictions.json is saved, official "
                       "COCO mAP needs a COCO-JSON dataset (coco_annotations: in the data YAML)")
    return None


def _checked_model(weights, data, split):
    """Load ``weights``, resolve ``data`` (default: the checkpoint's own) and check that the class counts agree."""
    register_safe_globals()
    if not Path(str(weights)).is_file():
        raise ModelError(f"weights file not found: {weights}; pass a best.pt or last.pt")
    model = load_model(weights=weights)
    targs = _ckpt_args(weights)
    info = resolve_data(data if data is not None else targs.get("data"), splits=(split,))
    nc = int(getattr(model, "nc", 0) or len(getattr(model, "names", {}) or {}))
    if nc:
        check_class_count(nc, info, f"--weights {weights}")
    return info, targs


def val(weights, data=None, imgsz: int | None = None, batch: int = 32, device=None, save_json: bool = False,
        split: str = "val", channels_last: bool | None = None, **overrides) -> dict:
    """Validate a checkpoint.

    Args:
        weights (str | Path): checkpoint (``best.pt`` / ``last.pt``).
        data (str, optional): dataset (default: the one the checkpoint was trained on, else the demo).
        imgsz (int, optional): image size (default: the checkpoint's training size, else 640).
        batch (int): batch size.
        device (str, optional): ``cpu``, ``0`` ... (default: GPU 0 if any).
        save_json (bool): write COCO-format predictions and compute the official COCO mAP where possible.
        split (str): dataset split to validate.
        channels_last (bool, optional): run the model in channels_last (NHWC); None: ultralytics' choice, which is
            channels_last on CUDA and on x86 CPUs with oneDNN (``engine.layout``).
        **overrides: other ultralytics val args (``conf``, ``iou``, ``half`` ...).

    Returns:
        (dict): ``metrics`` (precision, recall, mAP50, mAP50-95), ``per_class``, ``coco`` (with ``save_json``),
        ``speed_ms`` and ``save_dir``.
    """
    info, targs = _checked_model(weights, data, split)
    args = {"model": str(weights), "data": str(info.yaml), "imgsz": imgsz or targs.get("imgsz") or 640, "batch": batch,
            "save_json": save_json, "split": split, "mode": "val", "task": "detect",
            "plots": overrides.pop("plots", False),
            "rect": overrides.pop("rect", True),  # rectangular batches with 0.5-stride padding, as the trainer validates
            **({"device": device} if device is not None else {}),
            **({"channels_last": bool(channels_last)} if channels_last is not None else {}), **overrides}
    validator = ActSwapValidator(args=args)
    validator.print_table = False  # the figures come back in the result; metrics_table() prints them once
    stats = validator()
    m = validator.metrics
    result = {
        "weights": str(weights),
        "data": str(info.yaml),
        "images": int(validator.seen),
        "instances": int(m.nt_per_class.sum()) if m.nt_per_class is not None else 0,
        "metrics": dict(zip(METRIC_KEYS, (float(x) for x in m.mean_results()))),
        "per_class": _per_class(m, m.names or info.names),
        "speed_ms": dict(validator.speed),
        "save_dir": str(validator.save_dir),
    }
    coco = _coco_result(validator, stats, save_json)
    if coco:
        result["coco"] = coco
    atomic_write_text(Path(validator.save_dir) / VAL_FILE, json.dumps(result, indent=2) + "\n")
    return result


def metrics_table(result: dict) -> str:
    """Per-class and overall P, R, mAP50, mAP50-95 of a ``val()`` result as a text table."""
    rows = [("all", result["instances"], *(f"{result['metrics'][k]:.3f}" for k in METRIC_KEYS))]
    rows += [(name, c["instances"], *(f"{c[k]:.3f}" for k in METRIC_KEYS)) for name, c in result["per_class"].items()]
    lines = format_table(("class", "instances", "P", "R", "mAP50", "mAP50-95"), rows, right=range(1, 6))
    if "coco" in result:
        c = result["coco"]
        lines.append(f"official COCO mAP ({c.get('evaluator', 'COCO')}): mAP50-95 {c['mAP50-95']:.3f}  "
                     f"mAP50 {c['mAP50']:.3f}")
    return "\n".join(lines)
