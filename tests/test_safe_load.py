"""Checkpoints never run code: payload files through every entry point, with and without the opt-in, and the
checkpoints that must load with the allow-list (ultralytics', this package's, upstream's) (``yolo_act_swap.safe_load``).

The payload is harmless: its pickle calls ``open(marker, "w")``, which creates an empty marker file when it runs.
"""

from __future__ import annotations

import pytest
import torch

from yolo_act_swap.cli import main
from yolo_act_swap.safe_load import (
    TRUST_ENV,
    UnsafeCheckpoint,
    load_checkpoint,
    needed_globals,
)

pytestmark = pytest.mark.usefixtures("one_thread")


class Payload:
    """Creates ``marker`` when unpickled by the full unpickler."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def write_payload(path, marker, ckpt: dict | None = None):
    torch.save({**(ckpt or {}), "model" if ckpt is None else "extra": Payload(marker)}, path)
    return path


def _argv(entry: str, weights, tmp_path, repo) -> list[str]:
    runs = str(tmp_path / "runs")
    return {
        "patch --weights": ["--weights", str(weights), "--imgsz", "64"],
        "val --weights": ["val", "--weights", str(weights), "--project", runs],
        "train --weights": ["train", "--weights", str(weights), "--epochs", "1", "--img-size", "64", "--project", runs],
        "train --resume": ["train", "--resume", str(weights)],
        "--repo": ["--repo", str(repo), "--weights", str(weights), "--imgsz", "64"],
        "cwd checkout": ["--weights", str(weights), "--imgsz", "64"],
    }[entry]


ENTRIES = ("patch --weights", "val --weights", "train --weights", "train --resume", "--repo", "cwd checkout")


@pytest.mark.parametrize("opt_in", ["none", "flag", "env"])
@pytest.mark.parametrize("entry", ENTRIES)
def test_payload_through_every_entry_point(entry, opt_in, tmp_path, fake_upstream, cache, monkeypatch, capsys):
    marker = tmp_path / "MARKER"
    weights = tmp_path / "run" / "weights" / "last.pt"  # a run folder's last.pt, so that --resume takes it too
    weights.parent.mkdir(parents=True)
    write_payload(weights, marker)
    argv = _argv(entry, weights, tmp_path, fake_upstream)
    monkeypatch.delenv(TRUST_ENV, raising=False)
    if entry == "cwd checkout":
        monkeypatch.chdir(fake_upstream)  # a folder that looks like an upstream checkout
    if opt_in == "flag":
        argv.append("--trust-checkpoint")
    elif opt_in == "env":
        monkeypatch.setenv(TRUST_ENV, "1")
    rc = main(argv)
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert rc == 2
    if opt_in == "none":
        assert not marker.exists(), "the payload ran"
        assert len(err) == 1, err
        assert "refused to load: it needs io.open" in err[0] and "--trust-checkpoint" in err[0] and TRUST_ENV in err[0]
    else:  # the opt-in: one warning, then the full unpickler runs the file (which holds no model, hence exit 2)
        assert marker.exists()
        warnings = [ln for ln in err if "warning:" in ln]
        assert len(warnings) == 1 and "needs io.open" in warnings[0] and "it can run code" in warnings[0]
    assert not (tmp_path / "runs").exists(), "a run folder was left behind"


def test_valid_checkpoint_with_a_payload_inside(tmp_path, capsys):
    from yolo_act_swap import patch_model
    from yolo_act_swap.checkpoints import save_checkpoint
    from yolo_act_swap.models import load_model

    model = load_model("yolov8n.yaml")
    patch_model(model, "frelu", verify=False)
    good = save_checkpoint(model, tmp_path / "good.pt", cfg="yolov8n.yaml", imgsz=64)
    assert set(load_checkpoint(good)) >= {"model", "train_args", "yolo_act_swap"}  # our own files load as they are
    ckpt = torch.load(good, map_location="cpu", weights_only=False)  # our own file, trusted here
    bad = write_payload(tmp_path / "bad.pt", tmp_path / "MARKER", ckpt)
    assert "io.open" in needed_globals(bad)
    assert main(["--weights", str(bad), "--imgsz", "64", "--no-verify"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{bad}: refused to load: it needs io.open" in err[0]
    assert not (tmp_path / "MARKER").exists()
    with pytest.raises(UnsafeCheckpoint):
        load_checkpoint(bad)


def test_official_ultralytics_and_moved_package_classes_load(tmp_path):
    from ultralytics import YOLO

    from yolo_act_swap.models import load_model
    from yolo_act_swap.nn import yolov7_modules

    YOLO("yolov8n.yaml").save(tmp_path / "official.pt")  # ultralytics' own writer: the official layout
    m = load_model(weights=tmp_path / "official.pt")
    assert type(m).__name__ == "DetectionModel" and not m.training and m.args["imgsz"] == 640
    # a checkpoint written before the YOLOv7 layers moved to nn.yolov7_modules names yolo_act_swap.nn.yolov7.*
    tiny = load_model("yolov7-tiny")
    moved = [c for c in (yolov7_modules.MP, yolov7_modules.SP, yolov7_modules.SPPCSPC, yolov7_modules.RepConv)]
    try:
        for c in moved:
            c.__module__ = "yolo_act_swap.nn.yolov7"
        torch.save({"model": tiny, "epoch": -1}, tmp_path / "old.pt")
    finally:
        for c in moved:
            c.__module__ = "yolo_act_swap.nn.yolov7_modules"
    assert type(load_model(weights=tmp_path / "old.pt")).__name__ == "YOLOv7DetectionModel"


def test_upstream_checkpoint_loads_with_the_checkout_classes(fake_upstream, tmp_path, monkeypatch):
    import numpy as np

    from yolo_act_swap.errors import ModelError
    from yolo_act_swap.models import load_model

    model = load_model("tiny.yaml", repo=fake_upstream)
    ckpt = {"epoch": 0, "best_fitness": np.array([0.5]), "model": model, "ema": None, "opt": {"epochs": 3}}
    torch.save(ckpt, tmp_path / "up.pt")
    assert {"models.yolo.Model", "models.yolo.Conv"} <= set(needed_globals(tmp_path / "up.pt"))
    assert type(load_model(weights=tmp_path / "up.pt", repo=fake_upstream)).__name__ == "Model"
    with pytest.raises(ModelError, match="is an upstream YOLOv5/YOLOv7 checkpoint .* pass --repo PATH"):
        load_model(weights=tmp_path / "up.pt")  # not in a checkout, no --repo
    monkeypatch.chdir(fake_upstream)  # a checkout in the current folder is used without --repo
    assert type(load_model(weights=tmp_path / "up.pt")).__name__ == "Model"


def test_trusting_is_scoped(tmp_path, monkeypatch):
    from yolo_act_swap.safe_load import is_trusted, trusting

    monkeypatch.delenv(TRUST_ENV, raising=False)
    assert not is_trusted()
    with trusting(True):
        assert is_trusted()
    assert not is_trusted()
    monkeypatch.setenv(TRUST_ENV, "0")
    assert not is_trusted()


def test_loading_keeps_the_registered_safe_globals(tmp_path):
    from yolo_act_swap.checkpoints import save_checkpoint
    from yolo_act_swap.models import load_model

    before = set(torch.serialization.get_safe_globals())
    model = load_model("yolov8n.yaml")
    load_checkpoint(save_checkpoint(model, tmp_path / "m.pt", cfg="yolov8n.yaml", imgsz=64))
    assert before <= set(torch.serialization.get_safe_globals())  # ULTRALYTICS_SAFE_LOAD=1 loads still find them
