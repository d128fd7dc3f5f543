"""``--data`` resolution: what a user passes as ``--data``, checked (splits, names, labels) without downloading.

``resolve_data(data)`` turns what a user passes as ``--data`` into a checked ultralytics data YAML:

- ``None`` or ``"demo"``: the built-in synthetic demo (``configs/data/demo.yaml``), generated on first use;
- an ultralytics data YAML (a path, or a name ultralytics ships such as ``coco.yaml``), optionally with a
  ``coco_json:`` key (split -> COCO annotation file) whose labels are converted from COCO JSON;
- a COCO JSON annotation file whose images sit next to it (``images/``, ``images/<split>``, ``../<split>`` ...).

COCO JSON is converted once (``data.coco``) into a cache folder keyed by the JSON's content hash.
Every problem a user can fix is reported as one ``DataError`` line; nothing is ever downloaded.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..errors import DataError
from ..io import configs_dir
from .coco import coco_to_yolo, find_coco_images, read_coco, yaml_with_coco_json
from .demo import demo_config, demo_dataset, is_demo

IMG_SUFFIXES = {"bmp", "dng", "jpeg", "jpg", "mpo", "png", "tif", "tiff", "webp", "pfm", "heic", "avif", "jp2"}
MAX_LABEL_SCAN = 20000  # label files checked per split; bigger splits are sampled evenly (ultralytics checks the rest)


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
    if is_demo(data):
        return check_data_yaml(demo_dataset(), source=source, splits=splits)
    p = Path(str(data)).expanduser()
    if p.suffix.lower() == ".json":
        if not p.is_file():
            raise DataError(f"COCO annotation file not found: {p}; check the path")
        doc = read_coco(p)
        img_dir = find_coco_images(p, doc)
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
        return check_data_yaml(yaml_with_coco_json(path, doc, splits), source=source, splits=splits)
    return check_data_yaml(path, source=source, splits=splits)


def check_class_count(model_nc: int, data: DataInfo, what: str) -> None:
    """Raise ``DataError`` when a model built for ``model_nc`` classes meets a dataset with a different count."""
    if int(model_nc) != int(data.nc):
        raise DataError(
            f"{what} has {model_nc} classes but {data.source} has {data.nc}; use weights trained on these classes, "
            "or add --new-head to train a fresh detection head"
        )
