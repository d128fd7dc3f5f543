"""The offline demo dataset, COCO-JSON conversion, --data resolution and the bad-data messages."""

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import yaml

from yolo_act_swap.data import (
    check_class_count,
    coco_to_yolo,
    demo_config,
    demo_dataset,
    render_demo_image,
    resolve_data,
)
from yolo_act_swap.errors import DataError

SMALL = {"train": 12, "val": 6}  # a small demo for the format tests


@pytest.fixture(scope="module")
def small(cache):
    return demo_dataset(**SMALL)


def _yolo_rows(path: Path) -> list:
    return [[float(v) for v in line.split()] for line in path.read_text().splitlines() if line.strip()]


# ------------------------------------------------------------------------------------------------------- the demo
def test_render_is_deterministic_and_labels_are_tight():
    cfg = demo_config()
    a, objs_a = render_demo_image(3, "train", cfg)
    b, objs_b = render_demo_image(3, "train", cfg)
    c, _ = render_demo_image(4, "train", cfg)
    v, _ = render_demo_image(3, "val", cfg)
    assert a.shape == (cfg["imgsz"], cfg["imgsz"], 3) and a.dtype == np.uint8
    assert np.array_equal(a, b) and [o[:2] for o in objs_a] == [o[:2] for o in objs_b]
    assert not np.array_equal(a, c) and not np.array_equal(a, v)  # index and split both change the image
    assert 1 <= len(objs_a) <= cfg["max_objects"]
    for cls, (x1, y1, x2, y2), poly in objs_a:
        assert 0 <= cls < len(cfg["names"])
        assert 0 <= x1 < x2 < cfg["imgsz"] and 0 <= y1 < y2 < cfg["imgsz"]
        side = max(x2 - x1, y2 - y1) / cfg["imgsz"]
        assert cfg["min_size"] * 0.7 <= side <= cfg["max_size"] * 1.3  # the box hugs the drawn shape
        assert poly.min(0)[0] >= x1 - 1 and poly.max(0)[0] <= x2 + 1


def test_every_class_appears_with_many_instances(cache):
    cfg = demo_config()
    counts = np.zeros(len(cfg["names"]), int)
    for i in range(40):
        for cls, *_ in render_demo_image(i, "train", cfg)[1]:
            counts[cls] += 1
    assert counts.min() >= 15, counts  # balanced enough to learn every class


def test_demo_written_as_yolo_and_coco(small):
    root = small.parent
    doc = yaml.safe_load(small.read_text())
    assert doc["names"] == {0: "circle", 1: "square", 2: "triangle"}
    assert Path(doc["path"]) == root and root.name.startswith("demo-v1-")  # non-default settings: own folder
    for split, n in SMALL.items():
        images = sorted((root / "images" / split).glob("*.jpg"))
        labels = sorted((root / "labels" / split).glob("*.txt"))
        assert len(images) == len(labels) == n
        coco = json.loads((root / "annotations" / f"instances_{split}.json").read_text())
        assert [im["file_name"] for im in coco["images"]] == [p.name for p in images]
        assert [c["id"] for c in coco["categories"]] == [1, 2, 3]
        # YOLO rows and COCO boxes describe the same objects
        by_image = {}
        for a in coco["annotations"]:
            by_image.setdefault(a["image_id"], []).append(a)
        for im in coco["images"]:
            rows = _yolo_rows(root / "labels" / split / (Path(im["file_name"]).stem + ".txt"))
            anns = by_image[im["id"]]
            assert len(rows) == len(anns)
            for r, a in zip(rows, anns):
                x, y, w, h = a["bbox"]
                assert int(r[0]) == a["category_id"] - 1
                s = im["width"]
                assert np.allclose(r[1:], [(x + w / 2) / s, (y + h / 2) / s, w / s, h / s], atol=2e-4)
    assert not [p for p in root.parent.iterdir() if p.name.endswith(".tmp")]  # no temp folders left behind


def test_demo_is_cached_and_concurrent_generation_is_safe(cache, tmp_path):
    first = demo_dataset(**SMALL)
    mtime = first.stat().st_mtime_ns
    assert demo_dataset(**SMALL) == first and first.stat().st_mtime_ns == mtime  # reused, not rewritten
    out, errors = [], []

    def gen():
        try:
            out.append(demo_dataset(root=tmp_path, train=5, val=3))
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=gen) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(set(out)) == 1
    assert [p.name for p in tmp_path.iterdir()] == [out[0].parent.name]  # one dataset, no temp folders
    assert len(list((out[0].parent / "images" / "train").glob("*.jpg"))) == 5


def test_default_resolution_is_the_demo(cache):
    info = resolve_data(None)
    assert info.nc == 3 and info.source == "demo"
    assert info.yaml.parent.name == f"demo-v{demo_config()['version']}"
    assert info.coco_annotations["val"].is_file() and info.category_ids == [1, 2, 3]
    assert resolve_data("demo").yaml == info.yaml
    # a copy of configs/data/demo.yaml with other settings is a demo of its own
    cfg = yaml.safe_load((Path(__file__).parents[1] / "configs" / "data" / "demo.yaml").read_text())
    cfg["demo"].update(SMALL)
    other = Path(os.environ["YAS_CACHE_DIR"]) / "my-demo.yaml"
    other.write_text(yaml.safe_dump(cfg))
    assert resolve_data(other).yaml == demo_dataset(**SMALL)


# ---------------------------------------------------------------------------------------------------- COCO JSON
def test_coco_json_converts_once_to_the_same_labels(small, tmp_path):
    root = small.parent
    src = root / "annotations" / "instances_val.json"
    out = coco_to_yolo({"val": src}, {"val": root / "images" / "val"}, root=tmp_path)
    again = coco_to_yolo({"val": src}, {"val": root / "images" / "val"}, root=tmp_path)
    assert out == again and len(list(tmp_path.iterdir())) == 1  # keyed by content hash: converted once
    doc = yaml.safe_load(out.read_text())
    assert doc["names"] == {0: "circle", 1: "square", 2: "triangle"} and doc["category_ids"] == [1, 2, 3]
    for lf in sorted((root / "labels" / "val").glob("*.txt")):
        conv = out.parent / "labels" / "val" / lf.name
        assert np.allclose(_yolo_rows(conv), _yolo_rows(lf), atol=2e-4), lf.name
    # images are linked in, so ultralytics finds labels/ next to images/
    assert (out.parent / "images" / "val" / "000001.jpg").resolve() == (root / "images" / "val" / "000001.jpg")
    # a changed JSON is a new conversion
    data = json.loads(src.read_text())
    data["annotations"] = data["annotations"][1:]
    changed = tmp_path / "changed.json"
    changed.write_text(json.dumps(data))
    assert coco_to_yolo({"val": changed}, {"val": root / "images" / "val"}, root=tmp_path) != out


def test_coco_category_ids_need_not_be_contiguous(small, tmp_path):
    root = small.parent
    data = json.loads((root / "annotations" / "instances_train.json").read_text())
    ids = {1: 7, 2: 11, 3: 90}
    data["categories"] = [{**c, "id": ids[c["id"]]} for c in data["categories"]]
    data["annotations"] = [{**a, "category_id": ids[a["category_id"]]} for a in data["annotations"]]
    (tmp_path / "annotations").mkdir()
    ann = tmp_path / "annotations" / "instances_train.json"
    ann.write_text(json.dumps(data))
    (tmp_path / "images").symlink_to(root / "images")  # COCO-style layout: images/<split>/ next to annotations/
    info = resolve_data(ann)  # a bare JSON: its images are found next to it
    assert info.names == {0: "circle", 1: "square", 2: "triangle"}
    assert info.category_ids == [7, 11, 90]
    conv = info.yaml.parent / "labels" / "train"
    for lf in sorted((root / "labels" / "train").glob("*.txt")):
        assert np.allclose(_yolo_rows(conv / lf.name), _yolo_rows(lf), atol=2e-4)


def test_yaml_with_coco_json_key(small, tmp_path):
    root = small.parent
    cfg = tmp_path / "shapes.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "path": str(root),
                "train": "images/train",
                "val": "images/val",
                "coco_json": {"train": "annotations/instances_train.json", "val": "annotations/instances_val.json"},
            }
        )
    )
    info = resolve_data(cfg)
    assert info.nc == 3 and set(info.splits) == {"train", "val"}
    assert info.coco_annotations["val"] == root / "annotations" / "instances_val.json"


# ------------------------------------------------------------------------------------------------------ bad data
def _write(p: Path, doc) -> Path:
    p.write_text(yaml.safe_dump(doc) if not isinstance(doc, str) else doc)
    return p


def test_bad_data_messages(small, tmp_path):
    root = small.parent
    cases = {
        "missing": ({"path": str(tmp_path / "nowhere"), "train": "images", "val": "images", "names": ["a"]},
                    "images not found"),
        "no-val": ({"path": str(root), "train": "images/train", "names": ["a", "b", "c"]}, "'val:' is missing"),
        "bad-yaml": ("train: [a, b\nval: x\n", "invalid YAML"),
    }
    for name, (doc, text) in cases.items():
        with pytest.raises(DataError, match=text) as e:
            resolve_data(_write(tmp_path / f"{name}.yaml", doc))
        assert "\n" not in str(e.value) and name in str(e.value)  # one line naming the file

    (tmp_path / "empty" / "images" / "train").mkdir(parents=True)
    empty = _write(tmp_path / "empty.yaml", {"path": str(tmp_path / "empty"), "train": "images/train",
                                             "val": "images/train", "names": ["a"]})
    with pytest.raises(DataError, match="split is empty"):
        resolve_data(empty)

    # labels out of range: the demo's labels with only two class names
    two = _write(tmp_path / "two.yaml", {"path": str(root), "train": "images/train", "val": "images/val",
                                         "names": ["circle", "square"]})
    with pytest.raises(DataError, match=r"\.txt:\d+: class id 2 is out of range .* 2 classes"):
        resolve_data(two)

    with pytest.raises(DataError, match="not found"):
        resolve_data(tmp_path / "nope.json")
    with pytest.raises(DataError, match="has 80 classes but demo has 3"):
        check_class_count(80, resolve_data(None), "--weights yolov8n.pt")


def _one_line_error(code, err, pattern):
    assert code == 2, (code, err[-2000:])
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("yolo-act-swap: error:"), err[-2000:]
    assert "Traceback" not in err
    assert pattern in lines[0], lines[0]


def test_cli_bad_data_exit_2_one_line(small, tmp_path, capsys):
    from yolo_act_swap.cli import main

    # the real console path once, in a fresh process
    r = subprocess.run([sys.executable, "-m", "yolo_act_swap", "train", "--data", str(tmp_path / "missing.yaml")],
                       capture_output=True, text=True, env=dict(os.environ), timeout=300)
    _one_line_error(r.returncode, r.stderr, "missing.yaml' not found")

    # the same dispatcher in-process for the other mistakes
    def run(*args):
        capsys.readouterr()
        code = main(["train", *args])
        return code, capsys.readouterr().err

    root = small.parent
    two = _write(tmp_path / "two.yaml", {"path": str(root), "train": "images/train", "val": "images/val",
                                         "names": ["circle", "square"]})
    _one_line_error(*run("--data", str(two), "--cfg", "yolov8n.yaml", "--project", str(tmp_path)), "out of range")
    _one_line_error(*run("--cfg", "yolov8n.yaml", "epochz=3"), "unknown ultralytics option 'epochz'")
    _one_line_error(*run("--cfg", "yolov8n.yaml", "epochs=3"), "pass epochs with --epochs")
    empty = tmp_path / "empty"
    (empty / "images" / "train").mkdir(parents=True)
    e = _write(tmp_path / "e.yaml", {"path": str(empty), "train": "images/train", "val": "images/train",
                                     "names": ["a"]})
    _one_line_error(*run("--data", str(e), "--cfg", "yolov8n.yaml"), "split is empty")
    truncated = tmp_path / "last.pt"  # what a run killed while ultralytics wrote last.pt in place leaves behind
    truncated.write_bytes(b"PK\x03\x04" + bytes(200))
    _one_line_error(*run("--resume", str(truncated)), "checkpoint is truncated")
    _one_line_error(*run("--resume", str(tmp_path / "gone.pt")), "not found")

    # --weights trained for another class count than the data
    import torch
    from ultralytics.nn.tasks import DetectionModel

    w = tmp_path / "nc80.pt"
    torch.save({"model": DetectionModel("yolov8n.yaml", nc=80, verbose=False).half(), "train_args": {}}, w)
    _one_line_error(*run("--weights", str(w), "--project", str(tmp_path)), "has 80 classes but demo has 3")
    assert not list(tmp_path.glob("exp*")), "no run folder is made for a run that cannot start"


def test_is_demo():
    from yolo_act_swap.data import is_demo

    assert is_demo(None) and is_demo("demo") and is_demo("demo.yaml") and is_demo(Path("demo.yaml"))
    assert not is_demo("coco.yaml") and not is_demo("configs/data/demo.yaml")
