"""COCO JSON: reading and checking annotation files, and converting them (once per content hash) to an ultralytics
dataset in the cache, with links to the original images."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from ..errors import DataError
from .cache import SPLITS, atomic_dir, cache_root, write_yaml


def _sha1(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_coco(path: Path) -> dict:
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


def _cache_folder(json_files: dict, images: dict, names, root) -> Path:
    """The converted dataset's folder: keyed by the JSONs' content, the image folders and the names."""
    h = hashlib.sha1()
    for s in sorted(json_files):
        h.update(f"{s}:{_sha1(json_files[s])}:{images[s]}\n".encode())
    h.update(json.dumps(names, sort_keys=True, default=str).encode())
    return Path(root or cache_root()).expanduser().resolve() / f"coco-{h.hexdigest()[:16]}"


def _normalized(data: dict, json_file: Path, image_dir: Path, remap: dict, cat_names: dict) -> dict:
    """One split's COCO dict with category ids remapped to 1..nc, after checking its categories and images."""
    bad = [a for a in data["annotations"] if int(a.get("category_id", -1)) not in remap]
    if bad:
        raise DataError(
            f"{json_file}: annotation id {bad[0].get('id')} has category_id "
            f"{bad[0].get('category_id')}, which is not in 'categories' ({len(bad)} such); fix the JSON"
        )
    missing = [im["file_name"] for im in data["images"] if not (image_dir / im["file_name"]).is_file()]
    if missing:
        raise DataError(
            f"{len(missing)} of {len(data['images'])} images in {json_file.name} are missing under "
            f"{image_dir} (first: {missing[0]}); point the split's image folder at them"
        )
    return {
        "images": data["images"],
        "annotations": [{**a, "category_id": remap[int(a["category_id"])]} for a in data["annotations"]],
        "categories": [{"id": remap[c], "name": cat_names[c]} for c in sorted(remap)],
    }


def _convert(tmp: Path, norms: dict) -> None:
    """ultralytics' ``convert_coco`` on the normalized JSONs; labels end in ``tmp/labels/<split>/``."""
    from ultralytics.data.converter import convert_coco

    ann_dir = tmp / "_json"
    ann_dir.mkdir()
    for split, norm in norms.items():
        (ann_dir / f"instances_{split}.json").write_text(json.dumps(norm), encoding="utf-8")
    out = tmp / "_converted"
    convert_coco(labels_dir=str(ann_dir), save_dir=str(out), cls91to80=False)
    (tmp / "labels").mkdir()
    for split in norms:
        src = out / "labels" / split
        if src.is_dir():
            shutil.move(str(src), str(tmp / "labels" / split))
        else:  # a split without a single annotation: all background images
            (tmp / "labels" / split).mkdir()
    shutil.rmtree(out)
    shutil.rmtree(ann_dir)


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
    json_files = {s: Path(p).resolve() for s, p in json_files.items()}
    images = {s: Path(p).resolve() for s, p in images.items()}
    final = _cache_folder(json_files, images, names, root)
    if (final / "data.yaml").is_file():
        return final / "data.yaml"
    datas = {s: read_coco(p) for s, p in json_files.items()}
    cat_ids = sorted({int(c["id"]) for d in datas.values() for c in d["categories"]})
    cat_names = {int(c["id"]): str(c.get("name", c["id"])) for d in datas.values() for c in d["categories"]}
    remap = {cid: i + 1 for i, cid in enumerate(cat_ids)}
    if names is None:
        names = {i: cat_names[cid] for i, cid in enumerate(cat_ids)}
    elif len(names) != len(cat_ids):
        raise DataError(
            f"data YAML lists {len(names)} names but the COCO JSON has {len(cat_ids)} categories; make them agree"
        )
    with atomic_dir(final) as tmp:
        norms = {}
        for split, data in datas.items():
            norms[split] = _normalized(data, json_files[split], images[split], remap, cat_names)
            for im in data["images"]:
                _link(images[split] / im["file_name"], tmp / "images" / split / im["file_name"])
        _convert(tmp, norms)
        doc = {"path": str(final), **{split: f"images/{split}" for split in datas}}
        doc.setdefault("train", doc.get("val"))  # ultralytics wants both keys; one JSON serves both roles
        doc.setdefault("val", doc["train"])
        doc["names"] = {int(k): str(v) for k, v in names.items()}
        doc["coco_annotations"] = {s: str(p) for s, p in json_files.items()}
        doc["category_ids"] = cat_ids
        write_yaml(tmp / "data.yaml", doc)
    return final / "data.yaml"


def find_coco_images(json_file: Path, data: dict) -> Path:
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


def yaml_with_coco_json(path: Path, doc: dict, splits: tuple) -> Path:
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
