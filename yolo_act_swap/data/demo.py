"""The built-in demo dataset: synthetic circles, squares and triangles on textured backgrounds, generated offline.

The generator settings and class names live in ``configs/data/demo.yaml``; every image is a pure function of the seed,
the split and the index, and the dataset is generated once into the cache (``data.cache``).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import yaml

from ..errors import DataError
from ..io import configs_dir
from .cache import SPLITS, atomic_dir, cache_root, write_yaml

DEMO_NAMES = ("demo", "demo.yaml")  # the --data aliases of the built-in demo


def is_demo(data) -> bool:
    """True when ``--data`` means the built-in demo: None (no --data), ``demo`` or ``demo.yaml``."""
    return data is None or str(data) in DEMO_NAMES


def demo_config(**overrides) -> dict:
    """The demo's generator settings and class names from ``configs/data/demo.yaml``, with ``overrides`` applied."""
    cfg = yaml.safe_load((configs_dir() / "data" / "demo.yaml").read_text(encoding="utf-8"))
    demo = dict(cfg["demo"])
    unknown = sorted(set(overrides) - set(demo))
    if unknown:
        raise DataError(f"demo dataset has no setting {', '.join(unknown)}; valid settings: {', '.join(demo)}")
    demo.update(overrides)
    demo["names"] = {int(k): str(v) for k, v in cfg["names"].items()}
    return demo


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A textured background: smooth colour blobs, a random stripe pattern, a few lines and pixel noise."""
    import cv2

    g = int(rng.integers(3, 7))
    img = cv2.resize(rng.uniform(40, 215, (g, g, 3)).astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    theta, freq, phase = rng.uniform(0, np.pi), rng.uniform(0.15, 0.6), rng.uniform(0, 2 * np.pi)
    stripes = np.sin((xx * np.cos(theta) + yy * np.sin(theta)) * freq + phase)
    img += (stripes[..., None] * rng.uniform(8, 30, 3)).astype(np.float32)
    for _ in range(int(rng.integers(0, 4))):  # distractor lines
        p1, p2 = rng.integers(0, size, 2), rng.integers(0, size, 2)
        color = tuple(float(c) for c in rng.uniform(0, 255, 3))
        cv2.line(img, (int(p1[0]), int(p1[1])), (int(p2[0]), int(p2[1])), color, int(rng.integers(1, 3)), cv2.LINE_AA)
    img += rng.normal(0, rng.uniform(4, 14), img.shape).astype(np.float32)
    return img


def _shape_points(cls: int, cx: float, cy: float, s: float, angle: float) -> np.ndarray:
    """Polygon of a square (cls 1) or triangle (cls 2) of size ``s`` centred at (cx, cy), rotated by ``angle``."""
    if cls == 1:
        pts = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], np.float32) * (s / 2 / np.sqrt(2) * 1.25)
    else:
        a = np.deg2rad([90, 210, 330])
        pts = np.stack([np.cos(a), -np.sin(a)], 1).astype(np.float32) * (s / 2)
    c, si = np.cos(angle), np.sin(angle)
    return pts @ np.array([[c, si], [-si, c]], np.float32) + np.array([cx, cy], np.float32)


def render_demo_image(index: int, split: str = "train", cfg: dict | None = None) -> tuple[np.ndarray, list]:
    """Render one demo image; a pure function of the config's seed, the split and the index.

    Args:
        index (int): image index within the split.
        split (str): ``train`` or ``val`` (each split has its own random stream).
        cfg (dict, optional): generator settings from ``demo_config()``.

    Returns:
        img (np.ndarray): HxWx3 uint8 BGR image.
        objects (list[tuple[int, list[float], np.ndarray]]): ``(class, [x1, y1, x2, y2], polygon)`` per shape, pixels.
    """
    import cv2

    cfg = cfg or demo_config()
    size, nc = int(cfg["imgsz"]), len(cfg["names"])
    rng = np.random.default_rng([int(cfg["seed"]), SPLITS.index(split), int(index)])
    img = _background(rng, size)
    objects, boxes = [], []
    n = int(rng.integers(1, int(cfg["max_objects"]) + 1))
    for _ in range(40 * n):
        if len(objects) == n:
            break
        cls = int(rng.integers(0, nc))
        s = float(rng.uniform(cfg["min_size"], cfg["max_size"]) * size)
        cx, cy = (float(v) for v in rng.uniform(s / 2 + 1, size - s / 2 - 1, 2))
        angle = float(rng.uniform(-0.3, 0.3) if cls == 1 else rng.uniform(0, 2 * np.pi))
        if cls == 0:
            a = np.linspace(0, 2 * np.pi, 24, endpoint=False)
            poly = np.stack([cx + s / 2 * np.cos(a), cy + s / 2 * np.sin(a)], 1).astype(np.float32)
            box = [cx - s / 2, cy - s / 2, cx + s / 2, cy + s / 2]
        else:
            poly = _shape_points(cls, cx, cy, s, angle)
            box = [*poly.min(0).tolist(), *poly.max(0).tolist()]
        box = [min(max(v, 0.0), size - 1.0) for v in box]
        if any(box[0] < b[2] + 3 and b[0] < box[2] + 3 and box[1] < b[3] + 3 and b[1] < box[3] + 3 for b in boxes):
            continue  # keep shapes apart so every box is unambiguous
        mean = img[int(box[1]) : int(box[3]) + 1, int(box[0]) : int(box[2]) + 1].mean((0, 1))
        color = np.where(mean > 127, rng.uniform(0, 60, 3), rng.uniform(195, 255, 3))  # contrast with the background
        color = tuple(float(c) for c in color)
        if cls == 0:
            center, radius = (int(round(cx * 16)), int(round(cy * 16))), int(round(s / 2 * 16))  # 4 fractional bits
            cv2.circle(img, center, radius, color, -1, cv2.LINE_AA, 4)
        else:
            cv2.fillPoly(img, [np.round(poly * 16).astype(np.int32)], color, cv2.LINE_AA, 4)
        boxes.append(box)
        objects.append((cls, box, poly))
    return np.clip(img, 0, 255).astype(np.uint8), objects


def _demo_folder_name(cfg: dict) -> str:
    default = demo_config()
    name = f"demo-v{cfg['version']}"
    if cfg != default:  # non-default settings get their own folder
        blob = json.dumps({k: cfg[k] for k in sorted(cfg) if k != "names"}, sort_keys=True).encode()
        name += "-" + hashlib.sha1(blob).hexdigest()[:10]
    return name


def _write_demo_split(tmp: Path, final: Path, split: str, cfg: dict) -> str:
    """Render one split into ``tmp``: images, YOLO labels and a COCO JSON; returns the JSON's relative path."""
    import cv2

    (tmp / "images" / split).mkdir(parents=True)
    (tmp / "labels" / split).mkdir(parents=True)
    images, annotations = [], []
    for i in range(int(cfg[split])):
        img, objects = render_demo_image(i, split, cfg)
        h, w = img.shape[:2]
        stem = f"{i + 1:06d}"
        if not cv2.imwrite(str(tmp / "images" / split / f"{stem}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 95]):
            raise DataError(f"cannot write demo images under {final.parent}; set YAS_CACHE_DIR to a writable folder")
        rows = []
        for cls, (x1, y1, x2, y2), poly in objects:
            xywh = ((x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h)
            rows.append(f"{cls} " + " ".join(f"{v:.6f}" for v in xywh))
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i + 1,
                    "category_id": cls + 1,
                    "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                    "area": round((x2 - x1) * (y2 - y1), 2),
                    "segmentation": [np.round(poly, 2).reshape(-1).tolist()],
                    "iscrowd": 0,
                }
            )
        (tmp / "labels" / split / f"{stem}.txt").write_text("\n".join(rows) + "\n", encoding="utf-8")
        images.append({"id": i + 1, "file_name": f"{stem}.jpg", "width": w, "height": h})
    coco = {
        "info": {"description": f"yolo-act-swap synthetic demo v{cfg['version']} ({split})"},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": k + 1, "name": v, "supercategory": "shape"} for k, v in cfg["names"].items()],
    }
    (tmp / "annotations").mkdir(exist_ok=True)
    (tmp / "annotations" / f"instances_{split}.json").write_text(json.dumps(coco), encoding="utf-8")
    return f"annotations/instances_{split}.json"


def demo_dataset(root: str | os.PathLike | None = None, **overrides) -> Path:
    """Return the demo's data YAML, generating the dataset first if it is not in the cache yet.

    Written atomically: images, YOLO labels, COCO JSON and ``data.yaml`` go to a temporary folder that is renamed into
    place, so an interrupted or concurrent generation never leaves a half-written dataset behind.

    Args:
        root (str | Path, optional): cache folder (default ``cache_root()``).
        **overrides: generator settings that differ from ``configs/data/demo.yaml`` (e.g. ``train=64``).

    Returns:
        (Path): ``<root>/demo-v<version>[-<hash>]/data.yaml``.
    """
    cfg = demo_config(**overrides)
    final = Path(root or cache_root()).expanduser().resolve() / _demo_folder_name(cfg)
    if (final / "data.yaml").is_file():
        return final / "data.yaml"
    with atomic_dir(final) as tmp:
        coco_json = {split: _write_demo_split(tmp, final, split, cfg) for split in ("train", "val")}
        settings = {k: v for k, v in cfg.items() if k != "names"}
        doc = {"path": str(final), "train": "images/train", "val": "images/val", "names": cfg["names"],
               "coco_annotations": coco_json, "demo": settings}
        write_yaml(tmp / "data.yaml", doc)
    return final / "data.yaml"
