"""Datasets for training and validation: the offline demo, COCO-JSON conversion, and ``--data`` resolution.

``resolve_data(data)`` turns what a user passes as ``--data`` into a checked ultralytics data YAML:

- ``None`` or ``"demo"``: the built-in synthetic demo (``configs/data/demo.yaml``), generated on first use;
- an ultralytics data YAML (a path, or a name ultralytics ships such as ``coco.yaml``), optionally with a
  ``coco_json:`` key (split -> COCO annotation file) whose labels are converted from COCO JSON;
- a COCO JSON annotation file whose images sit next to it (``images/``, ``images/<split>``, ``../<split>`` ...).

COCO JSON is converted once with ultralytics' ``convert_coco`` into a cache folder keyed by the JSON's content hash.
Every problem a user can fix is reported as one ``DataError`` line; nothing is ever downloaded.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from .errors import DataError
from .io import configs_dir

IMG_SUFFIXES = {"bmp", "dng", "jpeg", "jpg", "mpo", "png", "tif", "tiff", "webp", "pfm", "heic", "avif", "jp2"}
MAX_LABEL_SCAN = 20000  # label files checked per split; bigger splits are sampled evenly (ultralytics checks the rest)
SPLITS = ("train", "val", "test")


@dataclass
class DataInfo:
    """A resolved, checked dataset.

    Attributes:
        yaml (Path): the ultralytics data YAML to hand to the trainer / validator.
        nc (int): number of classes.
        names (dict[int, str]): class names.
        splits (dict[str, list[str]]): resolved image sources per split (``train``, ``val``, maybe ``test``).
        coco_annotations (dict[str, Path]): split -> COCO annotation file, for official COCO mAP (``--save-json``).
        category_ids (list[int]): COCO category id of each class index (for official COCO evaluation).
        source (str): what the user passed, for messages.
    """

    yaml: Path
    nc: int
    names: dict
    splits: dict = field(default_factory=dict)
    coco_annotations: dict = field(default_factory=dict)
    category_ids: list = field(default_factory=list)
    source: str = ""


# ----------------------------------------------------------------------------------------------------------- cache
def cache_root() -> Path:
    """The cache folder: ``$YAS_CACHE_DIR`` or ``~/.cache/yolo_act_swap``."""
    env = os.environ.get("YAS_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "yolo_act_swap"


@contextlib.contextmanager
def _atomic_dir(final: Path):
    """Yield a fresh temporary folder next to ``final``; on success rename it to ``final`` in one step.

    If another process finished the same folder first, its copy is kept and ours is discarded.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        yield tmp
        try:
            os.rename(tmp, final)
        except OSError:
            if not final.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _write_yaml(path: Path, data: dict) -> None:
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")


# ------------------------------------------------------------------------------------------------------------ demo
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
    import cv2

    cfg = demo_config(**overrides)
    final = Path(root or cache_root()).expanduser().resolve() / _demo_folder_name(cfg)
    if (final / "data.yaml").is_file():
        return final / "data.yaml"
    names = cfg["names"]
    with _atomic_dir(final) as tmp:
        coco_json = {}
        for split in ("train", "val"):
            (tmp / "images" / split).mkdir(parents=True)
            (tmp / "labels" / split).mkdir(parents=True)
            images, annotations = [], []
            for i in range(int(cfg[split])):
                img, objects = render_demo_image(i, split, cfg)
                h, w = img.shape[:2]
                stem = f"{i + 1:06d}"
                if not cv2.imwrite(str(tmp / "images" / split / f"{stem}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 95]):
                    raise DataError(
                        f"cannot write demo images under {final.parent}; set YAS_CACHE_DIR to a writable folder"
                    )
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
                "categories": [{"id": k + 1, "name": v, "supercategory": "shape"} for k, v in names.items()],
            }
            (tmp / "annotations").mkdir(exist_ok=True)
            (tmp / "annotations" / f"instances_{split}.json").write_text(json.dumps(coco), encoding="utf-8")
            coco_json[split] = f"annotations/instances_{split}.json"
        settings = {k: v for k, v in cfg.items() if k != "names"}
        _write_yaml(
            tmp / "data.yaml",
            {
                "path": str(final),
                "train": "images/train",
                "val": "images/val",
                "names": names,
                "coco_annotations": coco_json,
                "demo": settings,
            },
        )
    return final / "data.yaml"


# ------------------------------------------------------------------------------------------------------- COCO JSON
def _sha1(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _read_coco(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise DataError(f"COCO annotation file not found: {path}; check the path") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path} is not valid JSON ({e}); pass a COCO annotation file") from None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in ("images", "categories")):
        raise DataError(f"{path} is not a COCO detection file: it needs 'images' and 'categories' lists")
    data.setdefault("annotations", [])
    if not data["images"]:
        raise DataError(f"{path} lists no images; the split is empty")
    if not data["categories"]:
        raise DataError(f"{path} lists no categories; add a 'categories' list with id and name")
    return data


def _link(src: Path, dst: Path) -> None:
    """Symlink ``dst`` -> ``src``; hard link or copy where symlinks are not allowed."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        dst.symlink_to(src)
    except OSError:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)


def coco_to_yolo(
    json_files: dict, images: dict, names: dict | None = None, root: str | os.PathLike | None = None
) -> Path:
    """Convert COCO JSON annotations to an ultralytics dataset in the cache (once per content hash) and return its YAML.

    Category ids are mapped to class indices in ascending id order (for COCO 2017 this is the usual 80-class order).
    The cache folder holds ``labels/<split>/`` written by ultralytics' ``convert_coco`` and ``images/<split>/`` made of
    links to the original images, so ultralytics finds each label next to its image.

    Args:
        json_files (dict[str, Path]): split -> COCO annotation file.
        images (dict[str, Path]): split -> folder that the JSON's ``file_name`` entries are relative to.
        names (dict, optional): class names overriding the JSON's category names.
        root (str | Path, optional): cache folder (default ``cache_root()``).

    Returns:
        (Path): the converted dataset's ``data.yaml``.
    """
    from ultralytics.data.converter import convert_coco

    json_files = {s: Path(p).resolve() for s, p in json_files.items()}
    images = {s: Path(p).resolve() for s, p in images.items()}
    h = hashlib.sha1()
    for s in sorted(json_files):
        h.update(f"{s}:{_sha1(json_files[s])}:{images[s]}\n".encode())
    h.update(json.dumps(names, sort_keys=True, default=str).encode())
    final = Path(root or cache_root()).expanduser().resolve() / f"coco-{h.hexdigest()[:16]}"
    if (final / "data.yaml").is_file():
        return final / "data.yaml"

    datas = {s: _read_coco(p) for s, p in json_files.items()}
    cat_ids = sorted({int(c["id"]) for d in datas.values() for c in d["categories"]})
    cat_names = {int(c["id"]): str(c.get("name", c["id"])) for d in datas.values() for c in d["categories"]}
    remap = {cid: i + 1 for i, cid in enumerate(cat_ids)}
    if names is None:
        names = {i: cat_names[cid] for i, cid in enumerate(cat_ids)}
    elif len(names) != len(cat_ids):
        raise DataError(
            f"data YAML lists {len(names)} names but the COCO JSON has {len(cat_ids)} categories; make them agree"
        )
    with _atomic_dir(final) as tmp:
        ann_dir = tmp / "_json"
        ann_dir.mkdir()
        for split, data in datas.items():
            bad = [a for a in data["annotations"] if int(a.get("category_id", -1)) not in remap]
            if bad:
                raise DataError(
                    f"{json_files[split]}: annotation id {bad[0].get('id')} has category_id "
                    f"{bad[0].get('category_id')}, which is not in 'categories' ({len(bad)} such); fix the JSON"
                )
            missing = [im["file_name"] for im in data["images"] if not (images[split] / im["file_name"]).is_file()]
            if missing:
                raise DataError(
                    f"{len(missing)} of {len(data['images'])} images in {json_files[split].name} are missing under "
                    f"{images[split]} (first: {missing[0]}); point the split's image folder at them"
                )
            norm = {
                "images": data["images"],
                "annotations": [{**a, "category_id": remap[int(a["category_id"])]} for a in data["annotations"]],
                "categories": [{"id": remap[c], "name": cat_names[c]} for c in cat_ids],
            }
            (ann_dir / f"instances_{split}.json").write_text(json.dumps(norm), encoding="utf-8")
            for im in data["images"]:
                _link(images[split] / im["file_name"], tmp / "images" / split / im["file_name"])
        out = tmp / "_converted"
        convert_coco(labels_dir=str(ann_dir), save_dir=str(out), cls91to80=False)
        (tmp / "labels").mkdir()
        for split in datas:
            src = out / "labels" / split
            if src.is_dir():
                shutil.move(str(src), str(tmp / "labels" / split))
            else:  # a split without a single annotation: all background images
                (tmp / "labels" / split).mkdir()
        shutil.rmtree(out)
        shutil.rmtree(ann_dir)
        doc = {"path": str(final)}
        for split in datas:
            doc[split] = f"images/{split}"
        doc.setdefault("train", doc.get("val"))  # ultralytics wants both keys; one JSON serves both roles
        doc.setdefault("val", doc["train"])
        doc["names"] = {int(k): str(v) for k, v in names.items()}
        doc["coco_annotations"] = {s: str(p) for s, p in json_files.items()}
        doc["category_ids"] = cat_ids
        _write_yaml(tmp / "data.yaml", doc)
    return final / "data.yaml"


def _find_coco_images(json_file: Path, data: dict) -> Path:
    """Find the image folder of a bare COCO JSON by looking where COCO-style layouts keep images."""
    stem = json_file.stem.replace("instances_", "")
    d = json_file.parent
    candidates = [d / "images" / stem, d / "images", d.parent / "images" / stem, d.parent / stem, d.parent / "images"]
    candidates += [d / stem, d]
    first = data["images"][0]["file_name"]
    for c in candidates:
        if (c / first).is_file():
            return c
    tried = ", ".join(str(c) for c in candidates[:5])
    raise DataError(
        f"images of {json_file} not found (looked for {first} in {tried}); write a data YAML with train:/val: image "
        f"folders and coco_json: {{train: ..., val: ...}}"
    )


# ---------------------------------------------------------------------------------------------------- resolution
def _load_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"data YAML not found: {path}; check the path") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise DataError(f"{where}: invalid YAML ({getattr(e, 'problem', e)}); fix the syntax") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: a data YAML must be a mapping with train:, val: and names:")
    return data


def _find_yaml(name: str) -> Path:
    """A path, a file in ``configs/data/``, or a dataset YAML that ultralytics ships (``coco.yaml``)."""
    p = Path(name).expanduser()
    if p.is_file():
        return p.resolve()
    for n in (name, f"{name}.yaml"):
        if (configs_dir() / "data" / n).is_file():
            return configs_dir() / "data" / n
    if p.suffix in {".yaml", ".yml", ""} and len(p.parts) == 1:
        from ultralytics.utils import ROOT

        for n in (name, f"{name}.yaml"):
            hits = sorted((ROOT / "cfg" / "datasets").rglob(n))
            if hits:
                return hits[0]
    raise DataError(f"dataset {name!r} not found; pass a data YAML path, a COCO JSON file, or omit --data for the demo")


def _yaml_with_coco_json(path: Path, doc: dict, splits: tuple) -> Path:
    """A data YAML with a ``coco_json:`` key: convert its annotation files and return the converted YAML."""
    spec = doc["coco_json"]
    if not isinstance(spec, dict) or not spec:
        raise DataError(f"{path}: coco_json: must map splits to annotation files, e.g. {{train: a.json, val: b.json}}")
    base = Path(doc.get("path") or path.parent)
    if not base.is_absolute():
        base = (path.parent / base).resolve()
    json_files, images = {}, {}
    for split, jf in spec.items():
        if split not in SPLITS:
            raise DataError(f"{path}: coco_json: has unknown split {split!r}; use train, val or test")
        jf = Path(jf) if Path(jf).is_absolute() else base / jf
        if not jf.is_file():
            raise DataError(f"{path}: coco_json {split} file not found: {jf}; fix the path")
        img = doc.get(split)
        if not isinstance(img, str):
            raise DataError(f"{path}: coco_json: has {split} but {split}: (its image folder) is missing; add it")
        img = Path(img) if Path(img).is_absolute() else base / img
        if not img.is_dir():
            raise DataError(f"{path}: {split} image folder not found: {img}; fix {split}: or path:")
        json_files[split], images[split] = jf, img
    for split in splits:
        if split not in json_files and split != "val":  # without a val file, ultralytics validates on train
            raise DataError(f"{path}: coco_json: needs a {split} annotation file; add {split}: <file>.json under it")
    names = doc.get("names")
    if isinstance(names, list):
        names = dict(enumerate(names))
    return coco_to_yolo(json_files, images, names=names)


def _image_files(source) -> list[str]:
    """Image files of a split source (folder, list file, or list of those), like ultralytics' dataset does."""
    files = []
    for p in source if isinstance(source, list) else [source]:
        p = Path(p)
        if p.is_dir():
            files += [str(f) for f in p.rglob("*.*") if f.suffix[1:].lower() in IMG_SUFFIXES]
        elif p.is_file() and p.suffix[1:].lower() in IMG_SUFFIXES:
            files.append(str(p))
        elif p.is_file():
            parent = str(p.parent) + os.sep
            lines = p.read_text(encoding="utf-8-sig").strip().splitlines()
            files += [x.replace("./", parent, 1) if x.startswith("./") else x for x in lines]
            files = [f for f in files if f.rpartition(".")[-1].lower() in IMG_SUFFIXES]
    return sorted(files)


def check_labels(image_files: list[str], nc: int, where: str) -> int:
    """Check YOLO label files of ``image_files``: class ids in ``[0, nc)``, 5 numbers per box row (or polygons).

    Scans at most ``MAX_LABEL_SCAN`` files, evenly spaced. Returns the number of label files found.

    Raises:
        DataError: on the first out-of-range class id or malformed row, naming file:line.
    """
    from ultralytics.data.utils import img2label_paths

    step = max(1, len(image_files) // MAX_LABEL_SCAN)
    found = 0
    for lf in img2label_paths(image_files[::step]):
        try:
            text = Path(lf).read_text(encoding="utf-8-sig")
        except (FileNotFoundError, NotADirectoryError):
            continue
        found += 1
        for ln, line in enumerate(text.splitlines(), 1):
            parts = line.split()
            if not parts:
                continue
            try:
                values = [float(x) for x in parts]
            except ValueError:
                raise DataError(
                    f"{lf}:{ln}: label row {line.strip()!r} is not numbers; expected 'class x y w h'"
                ) from None
            if len(values) < 5 or (len(values) > 5 and len(values) % 2 == 0):
                raise DataError(f"{lf}:{ln}: label row has {len(values)} numbers; expected 'class x y w h' (5)")
            c = values[0]
            if c != int(c) or not 0 <= c < nc:
                raise DataError(
                    f"{lf}:{ln}: class id {parts[0]} is out of range for {where} with {nc} classes "
                    f"(valid 0..{nc - 1}); fix the label or the names: list"
                )
    return found


def check_data_yaml(path: str | os.PathLike, source: str = "", splits: tuple = ("train", "val")) -> DataInfo:
    """Parse and check an ultralytics data YAML without downloading anything.

    Checks that the splits exist and are not empty, that names/nc agree, and that label class ids are in range.

    Returns:
        (DataInfo): the checked dataset.
    """
    from ultralytics.data.utils import check_det_dataset

    path = Path(path)
    doc = _load_yaml(path)
    for k in ("train", "val"):
        if k in splits and not doc.get(k) and not (k == "val" and doc.get("validation")):
            raise DataError(f"{path}: '{k}:' is missing or empty; add the {k} image folder or list file")
    try:
        data = check_det_dataset(str(path), autodownload=False)
    except FileNotFoundError as e:
        msg = re.sub(r"^Dataset '.*?' ", "", str(e).splitlines()[0])  # the path is already named once
        hint = "download it first (the YAML has a download: entry)" if doc.get("download") else "fix path:/train:/val:"
        raise DataError(f"{path}: {msg}; {hint}") from None
    except (SyntaxError, TypeError, ValueError, KeyError) as e:
        raise DataError(f"{path}: {str(e).splitlines()[0]}") from None
    names = {int(k): str(v) for k, v in data["names"].items()}
    nc = int(data["nc"])
    info = DataInfo(yaml=path.resolve(), nc=nc, names=names, source=source or str(path))
    for split in splits:
        src = data.get(split)
        if src is None:
            continue
        missing = [p for p in (src if isinstance(src, list) else [src]) if not Path(p).exists()]
        if missing:
            raise DataError(
                f"{path}: {split} images not found at {missing[0]}; fix path:/{split}: or download the data"
            )
        files = _image_files(src)
        if not files:
            raise DataError(f"{path}: the {split} split is empty (no images in {src}); add images or fix {split}:")
        if check_labels(files, nc, f"{path.name}") == 0 and split == "train":
            raise DataError(
                f"{path}: no label files for the train images (looked for labels/ next to images/, e.g. "
                f"{Path(files[0]).parent.parent / 'labels'}); add YOLO txt labels or use coco_json:"
            )
        info.splits[split] = src
    base = Path(data.get("path") or path.parent)
    for split, jf in (doc.get("coco_annotations") or {}).items():
        jf = Path(jf)
        info.coco_annotations[split] = jf if jf.is_absolute() else (base / jf)
    cats = doc.get("category_ids")
    info.category_ids = [int(c) for c in cats] if cats else list(range(1, nc + 1))
    return info


def resolve_data(data=None, splits: tuple = ("train", "val")) -> DataInfo:
    """Resolve and check ``--data``.

    Args:
        data (str | Path | None): ``None``/``"demo"`` for the built-in demo, a data YAML (path or known name), a YAML
            with ``coco_json:``, or a COCO JSON annotation file with its images next to it.
        splits (tuple[str, ...]): the splits that must exist and be non-empty (``("val",)`` for validation).

    Returns:
        (DataInfo): the checked dataset, with ``yaml`` ready for ultralytics.

    Raises:
        DataError: a missing path, an empty split, out-of-range labels, a malformed YAML or JSON.
    """
    source = "demo" if data is None else str(data)
    if data is None or str(data) in {"demo", "demo.yaml"}:
        return check_data_yaml(demo_dataset(), source=source, splits=splits)
    p = Path(str(data)).expanduser()
    if p.suffix.lower() == ".json":
        if not p.is_file():
            raise DataError(f"COCO annotation file not found: {p}; check the path")
        doc = _read_coco(p)
        img_dir = _find_coco_images(p, doc)
        split = "val" if splits == ("val",) else "train"
        yaml_path = coco_to_yolo({split: p}, {split: img_dir})
        return check_data_yaml(yaml_path, source=source, splits=splits)
    path = _find_yaml(str(data))
    doc = _load_yaml(path)
    if "demo" in doc and "train" not in doc:  # a copy of configs/data/demo.yaml with other settings
        demo = doc.get("demo") or {}
        base = demo_config()
        return check_data_yaml(
            demo_dataset(**{k: v for k, v in demo.items() if base.get(k) != v}), source=source, splits=splits
        )
    if doc.get("coco_json"):
        return check_data_yaml(_yaml_with_coco_json(path, doc, splits), source=source, splits=splits)
    return check_data_yaml(path, source=source, splits=splits)


def check_class_count(model_nc: int, data: DataInfo, what: str) -> None:
    """Raise ``DataError`` when a model built for ``model_nc`` classes meets a dataset with a different count."""
    if int(model_nc) != int(data.nc):
        raise DataError(
            f"{what} has {model_nc} classes but {data.source} has {data.nc}; use weights trained on these classes, "
            "or add --new-head to train a fresh detection head"
        )
