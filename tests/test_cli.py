"""The ``yolo-act-swap`` default command, through real subprocesses (plus a few fast in-process error paths)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from yolo_act_swap.cli import main, run_guarded
from yolo_act_swap.errors import SpecError

SCRIPT = Path(sys.executable).with_name("yolo-act-swap")
CMD = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "yolo_act_swap.cli"]


pytestmark = pytest.mark.usefixtures("one_thread")


def cli(*args, cwd=None, timeout=300):
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    return subprocess.run([*CMD, *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout)


def one_line_error(r, code=2):
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("yolo-act-swap: error: "), r.stderr
    assert "Traceback" not in r.stderr
    return lines[0]


RELOAD = r"""
import json, sys
import torch
import yolo_act_swap
from ultralytics import YOLO
from yolo_act_swap.models import load_model
from yolo_act_swap.patch import find_blocks

yolo = YOLO(sys.argv[1])
res = yolo.predict(torch.rand(1, 3, 64, 64), imgsz=64, verbose=False)
rebuilt = load_model(sys.argv[2])
acts = lambda m: {b.path: getattr(b.act, "_yas_act", type(b.act).__name__) for b in find_blocks(m)}
print(json.dumps({
    "class": type(yolo.model).__name__, "n_results": len(res),
    "acts": acts(yolo.model), "rebuilt_acts": acts(rebuilt), "rebuilt_class": type(rebuilt).__name__,
    "params": sum(p.numel() for p in yolo.model.parameters()),
    "rebuilt_params": sum(p.numel() for p in rebuilt.parameters()),
    "rebuilt_shapes": {k: list(v.shape) for k, v in rebuilt.state_dict().items()},
    "shapes": {k: list(v.shape) for k, v in yolo.model.state_dict().items()},
    "act_swap": yolo.model.yaml.get("act_swap"),
}))
"""


def test_patch_save_and_reload_in_a_fresh_process(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text("act: frelu\nrules:\n  - stages: head\n    act: acon_c:init=silu\n")
    out, out_yaml = tmp_path / "out.pt", tmp_path / "out.yaml"
    r = cli("--cfg", "yolov8n.yaml", "--spec", spec, "--imgsz", 64, "--save", out, "--save-yaml", out_yaml)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("yolo-act-swap: ActSwapDetectionModel (yolov8n.yaml) from yolov8n.yaml: frelu + 1 rule")
    assert lines[1].split() == ["stage", "layers", "module", "blocks", "channels", "activation", "+params"]
    assert any(ln.startswith("backbone") for ln in lines) and any(ln.startswith("head ") for ln in lines)
    assert "swapped 57 of 57 activated conv blocks (backbone 27, neck 18, head 12)" in r.stdout
    assert "SiLU → acon_c(init=silu)" in r.stdout and "GFLOPs" in r.stdout
    assert "verification: passed" in r.stdout and f"saved {out}" in r.stdout and f"saved {out_yaml}" in r.stdout
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporaries

    fresh = subprocess.run([sys.executable, "-c", RELOAD, str(out), str(out_yaml)], capture_output=True, text=True,
                           env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)  # fmt: skip
    assert fresh.returncode == 0, fresh.stderr
    d = json.loads(fresh.stdout.strip().splitlines()[-1])
    assert d["class"] == d["rebuilt_class"] == "ActSwapDetectionModel" and d["n_results"] == 1
    assert set(d["acts"].values()) == {"frelu", "acon_c"} and len(d["acts"]) == 57
    assert all(a == "acon_c" for p, a in d["acts"].items() if p.startswith("model.22."))
    assert d["rebuilt_acts"] == d["acts"]  # the saved YAML rebuilds the patched model
    assert d["rebuilt_params"] == d["params"] and d["rebuilt_shapes"] == d["shapes"]
    assert d["act_swap"] == {"act": "frelu", "rules": [{"stages": ["head"], "act": {"name": "acon_c", "init": "silu"}}]}


def test_default_model_and_activation():
    r = cli("--imgsz", 64, "--no-verify")  # default cfg (yolov7-tiny.yaml when built in) and --act frelu
    assert r.returncode == 0, r.stderr
    from yolo_act_swap.models import default_cfg

    first = r.stdout.splitlines()[0]
    assert f"from {default_cfg()}: frelu [--act]" in first
    assert "verification: skipped" in r.stdout and "head" in r.stdout


def test_unknown_activation_is_one_line_exit_2():
    line = one_line_error(cli("--cfg", "yolov8n.yaml", "--act", "frelo"))
    assert line.startswith("yolo-act-swap: error: --act: unknown activation 'frelo': did you mean 'frelu'")


def test_verbose_shows_the_traceback():
    r = cli("--cfg", "yolov8n.yaml", "--act", "frelu:kernel=3", "--verbose")
    assert r.returncode == 2 and "Traceback" in r.stderr
    assert r.stderr.strip().splitlines()[-1] == (
        "yolo-act-swap: error: --act: activation 'frelu' takes no keyword 'kernel'; valid keywords: kernel_size, recompute"
    )


def test_malformed_yaml_names_the_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("act: frelu\nrules:\n  - layers: [0, 3\n    act: relu\n")
    line = one_line_error(cli("--spec", bad))
    assert f"{bad}:4:" in line and "malformed YAML" in line


def test_list():
    r = cli("--list")
    assert r.returncode == 0 and r.stdout.splitlines()[0].split()[:2] == ["name", "kind"]
    assert "frelu" in r.stdout and "glu" in r.stdout and "CHANGES" in r.stdout


# --- in-process: the same dispatcher, for the cheap error paths -------------------------------------------------------


@pytest.mark.parametrize(
    "argv, pattern",
    [
        (["--cfg", "yolov9000.yaml"], "model config 'yolov9000.yaml' not found: looked for a file, in configs/models"),
        (["--spec", "no-such-spec"], "spec file 'no-such-spec' not found .*backbone-frelu-head-silu"),
        (["--imgsz", "0"], "--imgsz 0: give a positive image size"),
        (["--weights", "missing.pt"], "--weights missing.pt: file not found"),
        (["--cfg", "yolov8n.pt"], "--cfg yolov8n.pt is a checkpoint; pass it with --weights"),
        (["--repo", "."], "--repo .: not a YOLOv5/YOLOv7 checkout"),
        (["--cfg", "yolov8n.yaml", "--act", "frelu", "--spec", "frelu"], None),
    ],
)
def test_user_errors_exit_2(argv, pattern, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    if pattern is None:  # a valid combination: --act replaces the spec's default; --no-verify keeps it quick
        assert main([*argv, "--no-verify", "--imgsz", "64"]) == 0
        assert "frelu" in capsys.readouterr().out
        return
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("yolo-act-swap: error: ")
    import re

    assert re.search(pattern, err[0]), err[0]


def test_internal_errors_exit_1(capsys):
    def boom(argv):
        raise RuntimeError("kaput")

    def user(argv):
        raise SpecError("a user error")

    assert run_guarded(boom, []) == 1
    assert "internal error: RuntimeError: kaput (rerun with --verbose" in capsys.readouterr().err
    assert run_guarded(user, []) == 2


# --- model resolution (--cfg / --weights / --repo) --------------------------------------------------------------------

FAKE_YOLO = '''
import torch.nn as nn
import yaml


class Conv(nn.Module):
    def __init__(self, c1, c2):
        super().__init__()
        self.conv, self.bn, self.act = nn.Conv2d(c1, c2, 3, 1, 1, bias=False), nn.BatchNorm2d(c2), nn.SiLU()

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class Model(nn.Module):
    """Stands in for upstream models.yolo.Model: built from a YAML path, layers in self.model."""

    def __init__(self, cfg, ch=3, nc=None, anchors=None):
        super().__init__()
        self.yaml = yaml.safe_load(open(cfg))
        self.yaml_file = cfg
        widths = [ch] + [row[3][0] for row in self.yaml["backbone"] + self.yaml["head"]]
        self.model = nn.Sequential(*(Conv(a, b) for a, b in zip(widths, widths[1:])))

    def forward(self, x):
        return self.model(x)
'''


@pytest.fixture
def fake_upstream(tmp_path):
    """A minimal upstream-shaped checkout (models/yolo.py + models/common.py), removed from sys.modules afterwards."""
    repo = tmp_path / "yolov5"
    (repo / "models").mkdir(parents=True)
    (repo / "models" / "__init__.py").write_text("")
    (repo / "models" / "common.py").write_text("")
    (repo / "models" / "yolo.py").write_text(FAKE_YOLO)
    (repo / "models" / "tiny.yaml").write_text(
        "nc: 2\nanchors: [[10, 13]]\nbackbone:\n  [[-1, 1, Conv, [8]], [-1, 1, Conv, [16]]]\nhead:\n  [[-1, 1, Conv, [4]]]\n"
    )
    yield repo
    for name in [n for n in sys.modules if n == "models" or n.startswith("models.")]:
        del sys.modules[name]
    while str(repo.resolve()) in sys.path:
        sys.path.remove(str(repo.resolve()))


def test_cfg_names_paths_and_dicts(tmp_path):
    from yolo_act_swap.models import builtin_models, default_cfg, load_model, read_model_yaml
    from yolo_act_swap.nn.tasks import ActSwapDetectionModel
    from yolo_act_swap.io import configs_dir

    assert {"yolov7.yaml", "yolov7-tiny.yaml"} <= set(builtin_models()) and default_cfg() == "yolov7-tiny.yaml"
    tiny = load_model("yolov7-tiny")  # a built-in name without .yaml
    assert type(tiny).__name__ == "YOLOv7DetectionModel" and len(tiny.model) == 78
    d = read_model_yaml(configs_dir() / "models" / "yolov7-tiny.yaml")
    d["act_swap"] = {"act": "relu"}
    from_dict = load_model(d)  # a dict with builder: yolov7 and an act_swap key
    assert type(from_dict).__name__ == "YOLOv7DetectionModel"
    assert {type(b.act).__name__ for b in __import__("yolo_act_swap").find_blocks(from_dict)} == {"ReLU"}
    v8 = load_model("yolov8s.yaml", nc=3)  # an ultralytics name: scale s from the file name
    assert type(v8) is ActSwapDetectionModel and v8.yaml["scale"] == "s" and v8.model[-1].nc == 3
    p = tmp_path / "mine.yaml"
    p.write_text((configs_dir() / "models" / "yolov7-tiny.yaml").read_text())
    assert type(load_model(str(p))).__name__ == "YOLOv7DetectionModel"  # a path


def test_weights_ultralytics_checkpoint(tmp_path):
    import torch

    from yolo_act_swap import patch_model
    from yolo_act_swap.checkpoints import save_checkpoint
    from yolo_act_swap.models import load_model

    model = load_model("yolov8n.yaml")
    patch_model(model, "relu", verify=False)
    out = save_checkpoint(model, tmp_path / "w.pt", cfg="yolov8n.yaml", imgsz=64)
    loaded = load_model(weights=out)
    assert type(loaded).__name__ == "ActSwapDetectionModel" and not loaded.training
    pairs = zip(model.state_dict().values(), loaded.state_dict().values())
    assert all(torch.equal(a.half().float() if a.is_floating_point() else a, b) for a, b in pairs)  # saved in fp16
    onto = load_model("yolov8n.yaml", weights=out)  # cfg + weights: tensors transferred by name and shape
    assert torch.equal(onto.model[0].conv.weight, loaded.model[0].conv.weight)


def test_upstream_checkout_in_process(fake_upstream, tmp_path, monkeypatch, capsys):
    import torch

    from yolo_act_swap.models import is_upstream_repo, load_model

    assert is_upstream_repo(fake_upstream) and not is_upstream_repo(tmp_path)
    model = load_model("tiny.yaml", repo=fake_upstream)  # found under models/
    assert type(model).__module__ == "models.yolo" and len(model.model) == 3
    torch.save({"model": model, "epoch": 3}, tmp_path / "up.pt")
    assert type(load_model(weights=tmp_path / "up.pt", repo=fake_upstream)).__name__ == "Model"
    monkeypatch.chdir(fake_upstream)  # the current directory is a checkout: found without --repo
    assert main(["--cfg", "models/tiny.yaml", "--act", "mish", "--imgsz", "64"]) == 0
    out = capsys.readouterr().out
    assert "Model (tiny.yaml) from models/tiny.yaml: mish" in out and "swapped 3 of 3" in out
    assert "backbone" in out and "head " in out  # the last layer is the head
    assert main(["--cfg", "nope.yaml", "--repo", str(fake_upstream)]) == 2
    assert "not found in the upstream checkout" in capsys.readouterr().err


UPSTREAM = Path(os.environ.get("YAS_UPSTREAM_DIR", Path(__file__).resolve().parents[1] / ".upstream"))


@pytest.mark.upstream
@pytest.mark.skipif(not (UPSTREAM / "yolov7" / "models" / "yolo.py").is_file(), reason="run tests/upstream/install.sh")
def test_real_upstream_yolov7_with_repo():
    env = {**os.environ, "PYTHONPATH": f"{UPSTREAM / 'yolov7'}{os.pathsep}{UPSTREAM / 'deps'}", "OMP_NUM_THREADS": "1"}
    r = subprocess.run([*CMD, "--repo", str(UPSTREAM / "yolov7"), "--cfg", "yolov7-tiny.yaml", "--imgsz", "64"],
                       capture_output=True, text=True, env=env, timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "Model (yolov7-tiny.yaml)" in r.stdout and "LeakyReLU(negative_slope=0.1) → frelu" in r.stdout
    assert "swapped 55 of 55 activated conv blocks (backbone 22, neck 33)" in r.stdout
    assert "verification: passed" in r.stdout
