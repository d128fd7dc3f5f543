"""Validate checkpoints: ``yolo-act-swap val`` / ``python -m yolo_act_swap.val`` / ``scripts/val.py``.

Reports precision, recall, mAP50 and mAP50-95 overall and per class with ultralytics' detection validator. With
``--save-json`` on a dataset that came from COCO JSON (the demo does), it also computes the official COCO mAP with
faster-coco-eval (or pycocotools) against the original annotation file, mapping predictions back to its image and
category ids.

Examples:
    >>> from yolo_act_swap.val import val
    >>> val("runs/train/exp/weights/best.pt", data="demo", imgsz=160)["metrics"]["mAP50"]
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

from .errors import ActSwapError


def _validator_base():
    from ultralytics.models.yolo.detect import DetectionValidator

    return DetectionValidator


def coco_eval(anno_json, predictions: list, img_ids: list) -> dict:
    """Official COCO box mAP of ``predictions`` against ``anno_json`` with faster-coco-eval, else pycocotools.

    Returns:
        (dict): ``mAP50-95``, ``mAP50``, ``mAP75``, ``mAP_small``, ``mAP_medium``, ``mAP_large`` and ``evaluator``.

    Raises:
        ActSwapError: neither package is installed.
    """
    try:
        from faster_coco_eval import COCO, COCOeval_faster as COCOeval

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


class ActSwapValidator(_validator_base()):
    """Ultralytics ``DetectionValidator`` with official COCO evaluation for datasets built from COCO JSON.

    The data YAML's ``coco_annotations:`` key (written by the demo generator and the COCO-JSON converter, or added by
    hand) maps each split to its annotation file; ``category_ids:`` maps class indices to COCO category ids.
    """

    def init_metrics(self, model):
        """Ultralytics' setup, then switch ``save_json`` to the original COCO file when the data names one."""
        super().init_metrics(model)
        self.coco_anno = None
        split = self.args.split or "val"
        anno = (self.data.get("coco_annotations") or {}).get(split) if isinstance(self.data, dict) else None
        if not (self.args.save_json and anno) or self.is_coco or self.is_lvis:
            return
        base = Path(self.data.get("path") or ".")
        anno = Path(anno) if Path(anno).is_absolute() else base / anno
        if not anno.is_file():
            from .errors import DataError

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
            from .errors import DataError

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
        from ultralytics.utils import LOGGER

        LOGGER.info(f"\nEvaluating official COCO mAP against {self.coco_anno}...")
        res = coco_eval(self.coco_anno, self.jdict, sorted(set(self._seen_ids)))
        self.coco_results = res
        stats["metrics/coco/mAP50-95(B)"] = res["mAP50-95"]
        stats["metrics/coco/mAP50(B)"] = res["mAP50"]
        if not self.training:
            stats["metrics/mAP50(B)"], stats["metrics/mAP50-95(B)"] = res["mAP50"], res["mAP50-95"]
            stats["fitness"] = 0.9 * res["mAP50-95"] + 0.1 * res["mAP50"]
        return stats


def _ckpt_args(weights) -> dict:
    """The train args stored in a checkpoint (empty when unreadable)."""
    from ultralytics.nn.tasks import torch_safe_load

    try:
        ckpt, _ = torch_safe_load(str(weights))
        return dict(ckpt.get("train_args") or {})
    except Exception:  # noqa: BLE001 - only used for defaults
        return {}


def val(
    weights,
    data=None,
    imgsz: int | None = None,
    batch: int = 32,
    device=None,
    save_json: bool = False,
    split: str = "val",
    **overrides,
) -> dict:
    """Validate a checkpoint.

    Args:
        weights (str | Path): checkpoint (``best.pt`` / ``last.pt``).
        data (str, optional): dataset (default: the one the checkpoint was trained on, else the demo).
        imgsz (int, optional): image size (default: the checkpoint's training size, else 640).
        batch (int): batch size.
        device (str, optional): ``cpu``, ``0`` ... (default: GPU 0 if any).
        save_json (bool): write COCO-format predictions and compute the official COCO mAP where possible.
        split (str): dataset split to validate.
        **overrides: other ultralytics val args (``conf``, ``iou``, ``half`` ...).

    Returns:
        (dict): ``metrics`` (precision, recall, mAP50, mAP50-95), ``per_class``, ``coco`` (with ``save_json``),
        ``speed_ms`` and ``save_dir``.
    """
    from ultralytics.utils import LOGGER

    from .data import check_class_count, resolve_data
    from .checkpoints import register_safe_globals
    from .train import load_weights

    register_safe_globals()
    if not Path(str(weights)).is_file():
        from .errors import ModelError

        raise ModelError(f"weights file not found: {weights}; pass a best.pt or last.pt")
    model = load_weights(weights)
    targs = _ckpt_args(weights)
    data = data if data is not None else targs.get("data")
    info = resolve_data(data, splits=(split,))
    nc = int(getattr(model, "nc", 0) or len(getattr(model, "names", {}) or {}))
    if nc:
        check_class_count(nc, info, f"--weights {weights}")
    args = {
        "model": str(weights),
        "data": str(info.yaml),
        "imgsz": imgsz or targs.get("imgsz") or 640,
        "batch": batch,
        "save_json": save_json,
        "split": split,
        "mode": "val",
        "task": "detect",
        "plots": overrides.pop("plots", False),
        "rect": overrides.pop("rect", True),  # rectangular batches with 0.5-stride padding, as the trainer validates
        **({"device": device} if device is not None else {}),
        **overrides,
    }
    validator = ActSwapValidator(args=args)
    stats = validator()
    m = validator.metrics
    names = m.names or info.names
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
    mp, mr, map50, map_ = (float(x) for x in m.mean_results())
    result = {
        "weights": str(weights),
        "data": str(info.yaml),
        "images": int(validator.seen),
        "instances": int(m.nt_per_class.sum()) if m.nt_per_class is not None else 0,
        "metrics": {"precision": mp, "recall": mr, "mAP50": map50, "mAP50-95": map_},
        "per_class": per_class,
        "speed_ms": dict(validator.speed),
        "save_dir": str(validator.save_dir),
    }
    if getattr(validator, "coco_results", None):
        result["coco"] = validator.coco_results
    elif save_json and ("metrics/mAP50-95(B)" in stats) and (validator.is_coco or validator.is_lvis):
        result["coco"] = {"mAP50-95": stats["metrics/mAP50-95(B)"], "mAP50": stats["metrics/mAP50(B)"]}
    elif save_json:
        LOGGER.warning("--save-json: this dataset has no COCO annotation file; predictions.json is saved, official "
                       "COCO mAP needs a COCO-JSON dataset (coco_annotations: in the data YAML)")
    from .io import atomic_write_text

    atomic_write_text(Path(validator.save_dir) / "act_swap_val.json", json.dumps(result, indent=2) + "\n")
    return result


def format_table(result: dict) -> str:
    """Per-class and overall P, R, mAP50, mAP50-95 as a text table."""
    rows = [("class", "instances", "P", "R", "mAP50", "mAP50-95")]
    m = result["metrics"]
    keys = ("precision", "recall", "mAP50", "mAP50-95")
    rows.append(("all", str(result["instances"]), *(f"{m[k]:.3f}" for k in keys)))
    for name, c in result["per_class"].items():
        rows.append((name, str(c["instances"]), *(f"{c[k]:.3f}" for k in keys)))
    w = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(r[i].rjust(w[i]) if i else r[i].ljust(w[i]) for i in range(len(r))) for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    if "coco" in result:
        c = result["coco"]
        lines.append(f"official COCO mAP ({c.get('evaluator', 'COCO')}): mAP50-95 {c['mAP50-95']:.3f}  "
                     f"mAP50 {c['mAP50']:.3f}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """``yolo-act-swap val`` arguments (flag names follow upstream YOLOv5/YOLOv7 val.py/test.py)."""
    p = argparse.ArgumentParser(
        prog="yolo-act-swap val",
        description="Validate a checkpoint: P, R, mAP50, mAP50-95 per class and overall. Extra ultralytics val args "
        "pass through as key=value (e.g. conf=0.001 iou=0.7).",
    )
    p.add_argument("--weights", required=True, help="checkpoint, e.g. runs/train/exp/weights/best.pt")
    p.add_argument("--data", default=None, help="data YAML, COCO JSON or 'demo' (default: the checkpoint's own data)")
    p.add_argument("--img-size", "--imgsz", type=int, default=None, help="image size (default: the training size)")
    p.add_argument("--batch-size", type=int, default=32, help="batch size")
    p.add_argument("--device", default=None, help="cuda device 0 or cpu (default: GPU 0 if any)")
    p.add_argument("--task", default="val", choices=("train", "val", "test"), help="dataset split to validate")
    p.add_argument("--save-json", action="store_true", help="save COCO-format predictions and report official COCO mAP")
    p.add_argument("--project", default="runs/val", help="save to project/name")
    p.add_argument("--name", default="exp", help="save to project/name")
    p.add_argument("--exist-ok", action="store_true", help="reuse project/name instead of incrementing")
    p.add_argument("--verbose", "-v", action="store_true", help="show tracebacks on errors")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="other ultralytics val args")
    return p


def main(argv: list[str] | None = None) -> int:
    """``yolo-act-swap val`` / ``python -m yolo_act_swap.val``."""
    from .train import parse_overrides

    args = build_parser().parse_args(argv)
    extra = parse_overrides(args.overrides, flags={"model": "--weights", "data": "--data", "imgsz": "--img-size",
                                                   "batch": "--batch-size", "device": "--device",
                                                   "save_json": "--save-json", "split": "--task",
                                                   "project": "--project", "name": "--name",
                                                   "exist_ok": "--exist-ok"})
    result = val(args.weights, data=args.data, imgsz=args.img_size, batch=args.batch_size, device=args.device,
                 save_json=args.save_json, split=args.task, project=str(Path(args.project).resolve()),
                 name=args.name, exist_ok=args.exist_ok, **extra)
    print(format_table(result))
    print(f"yolo-act-swap: results saved to {result['save_dir']}")
    return 0


if __name__ == "__main__":
    from .cli import run_guarded

    sys.exit(run_guarded(main, sys.argv[1:]))
