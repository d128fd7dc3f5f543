"""Command-line mistakes, table-driven: each one through ``yolo_act_swap.cli.main`` exits 2 with one line on stderr
that names what is wrong, before any work is printed, and leaves no file behind (run in an empty folder)."""

from __future__ import annotations

import os

import pytest
import torch

from yolo_act_swap.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")

# (argv, a piece of the one stderr line). {in} is a folder of prepared inputs (see ``inputs``); the current folder is
# an empty one.
MISTAKES = [
    # the default (patch) command
    (["--nc", "-3"], "--nc -3: must be at least 1"),
    (["--nc", "0"], "--nc 0: must be at least 1"),
    (["--save", "/nonexistent/dir/out.pt"], "folder /nonexistent/dir does not exist"),
    (["--save", "{in}"], "is a folder; give a file name"),
    (["--save-yaml", "{in}"], "--save-yaml {in}: is a folder"),
    (["--save-yaml", "/nonexistent/dir/m.yaml"], "folder /nonexistent/dir does not exist"),
    (["--imgsz", "abc"], "argument --imgsz: invalid int value: 'abc'"),
    (["--imgsz", "7"], "--imgsz 7: too small"),
    (["--imgsz", "0"], "--imgsz 0: too small"),
    (["--imgsz", "-64"], "--imgsz -64: too small"),
    (["--bogus"], "unrecognized arguments: --bogus"),
    (["--act"], "argument --act: expected one argument"),
    (["--act", "nosuch"], "nosuch"),
    (["--spec", "nosuch-spec"], "nosuch-spec"),
    (["--cfg", "nosuch.yaml"], "model config 'nosuch.yaml' not found"),
    (["--cfg", "yolov8n.pt"], "is a checkpoint; pass it with --weights"),
    (["--weights", "{in}/missing.pt"], "file not found"),
    (["--weights", "{in}/text.pt"], "not a torch checkpoint"),
    (["--weights", "{in}/empty.pt"], "not a torch checkpoint"),
    (["--weights", "{in}/truncated.pt"], "not a torch checkpoint"),
    (["--repo", "{in}"], "not a YOLOv5/YOLOv7 checkout"),
    (["--weights", "{in}/upstream.pt"], "pass --repo PATH"),
    # train
    (["train", "--epochs", "-1"], "--epochs -1: must be at least 1"),
    (["train", "--epochs", "0"], "--epochs 0: must be at least 1"),
    (["train", "--img-size", "7"], "--img-size 7: too small"),
    (["train", "--imgsz", "abc"], "invalid int value: 'abc'"),
    (["train", "--batch-size", "0"], "--batch-size 0: must be at least 1"),
    (["train", "--batch-size", "-3"], "--batch-size -3: must be at least 1"),
    (["train", "--workers", "-1"], "--workers -1: must be at least 0"),
    (["train", "--bogus"], "unrecognized arguments: --bogus"),
    (["train", "epochs=3"], "pass epochs with --epochs"),
    (["train", "nosuchkey=1"], "unknown ultralytics option 'nosuchkey'"),
    (["train", "lr0"], "cannot read argument 'lr0'"),
    (["train", "--resume", "{in}/missing.pt"], "--resume checkpoint not found"),
    (["train", "--resume", "{in}/saved.pt"], "the run is finished"),
    (["train", "--resume", "{in}/all_epochs.pt"], "all 3 epochs are trained, nothing to resume"),
    (["train", "--resume", "{in}/truncated.pt"], "truncated or not a torch checkpoint"),
    (["train", "--resume"], "no last.pt under the current folder"),
    (["train", "--data", "nosuch.yaml", "--epochs", "1"], "nosuch.yaml"),
    (["train", "--act", "nosuch", "--epochs", "1"], "nosuch"),
    (["train", "--weights", "{in}/text.pt"], "not a torch checkpoint"),
    # val
    (["val"], "the following arguments are required: --weights"),
    (["val", "--weights", "{in}/missing.pt"], "weights file not found"),
    (["val", "--weights", "{in}/saved.pt", "--batch-size", "0"], "--batch-size 0: must be at least 1"),
    (["val", "--weights", "{in}/saved.pt", "--img-size", "7"], "--img-size 7: too small"),
    (["val", "--weights", "{in}/saved.pt", "--task", "nope"], "argument --task: invalid choice: 'nope'"),
    (["val", "--weights", "{in}/saved.pt", "--bogus"], "unrecognized arguments: --bogus"),
    # sweep and plot
    (["sweep", "--bogus"], "unexpected argument '--bogus'"),
    (["sweep", "--epochs", "0"], "--epochs 0: must be at least 1"),
    (["sweep", "--img-size", "7"], "--img-size 7: too small"),
    (["sweep", "--resume", "{in}"], "no plan.json there"),
    (["plot", "--bogus"], "unrecognized arguments: --bogus"),
    (["plot", "--points", "abc"], "invalid int value: 'abc'"),
]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Prepared inputs: a --save'd checkpoint, one whose run trained all its epochs (killed before its final
    validation), a truncated, an empty and a text file named .pt, and an upstream-looking checkpoint."""
    from yolo_act_swap import patch_model
    from yolo_act_swap.checkpoints import save_checkpoint
    from yolo_act_swap.models import load_model

    d = tmp_path_factory.mktemp("cli-inputs")
    model = load_model("yolov8n.yaml")
    patch_model(model, "relu", verify=False)
    saved = save_checkpoint(model, d / "saved.pt", cfg="yolov8n.yaml", imgsz=64)
    ckpt = torch.load(saved, map_location="cpu", weights_only=False)
    ckpt.update(epoch=2, optimizer={"state": {}, "param_groups": []}, train_args={**ckpt["train_args"], "epochs": 3})
    torch.save(ckpt, d / "all_epochs.pt")
    (d / "truncated.pt").write_bytes(saved.read_bytes()[:5000])
    (d / "empty.pt").write_bytes(b"")
    (d / "text.pt").write_text("not a checkpoint\n")
    import importlib
    import sys

    up = d / "checkout"  # upstream's models.yolo, importable only while the file is written
    (up / "models").mkdir(parents=True)
    (up / "models" / "__init__.py").write_text("")
    (up / "models" / "yolo.py").write_text("import torch.nn as nn\n\n\nclass DetectionModel(nn.Module):\n    pass\n")
    sys.path.insert(0, str(up))
    try:
        torch.save({"model": importlib.import_module("models.yolo").DetectionModel()}, d / "upstream.pt")
    finally:
        sys.path.remove(str(up))
        for name in [n for n in sys.modules if n == "models" or n.startswith("models.")]:
            del sys.modules[name]
    return d


def _files(folder) -> dict:
    out = {}
    for root, _, files in os.walk(folder):
        for f in files:
            p = os.path.join(root, f)
            out[p] = os.path.getmtime(p)
    return out


@pytest.mark.parametrize("argv,expected", MISTAKES, ids=[" ".join(a) for a, _ in MISTAKES])
def test_mistake_is_one_line_and_exit_2(argv, expected, inputs, tmp_path, cache, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv = [a.replace("{in}", str(inputs)) for a in argv]
    before = _files(inputs)
    rc = main(argv)
    out, err = capsys.readouterr()
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2, err
    assert len(lines) == 1, lines
    assert lines[0].startswith("yolo-act-swap: error: ") and expected.replace("{in}", str(inputs)) in lines[0]
    assert len(lines[0]) < 400
    assert "swapped" not in out, "the report was printed before the error"
    assert _files(inputs) == before and not list(tmp_path.iterdir()), "files were written"


def test_rounded_image_size_is_one_notice(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["--cfg", "yolov8n.yaml", "--act", "relu", "--imgsz", "40", "--no-verify"]) == 0
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert err == ["yolo-act-swap: note: --imgsz 40 is not a multiple of the stride 32: using 64"]
