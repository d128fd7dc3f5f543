"""Model resolution: ``--cfg`` / ``--weights`` / ``--repo`` (``yolo_act_swap.models``)."""

import sys

import pytest

from yolo_act_swap.cli import main
from yolo_act_swap.errors import ModelError

pytestmark = pytest.mark.usefixtures("one_thread")


def test_cfg_names_paths_and_dicts(tmp_path):
    from yolo_act_swap.io import configs_dir
    from yolo_act_swap.models import builtin_models, default_cfg, load_model, read_model_yaml
    from yolo_act_swap.nn.tasks import ActSwapDetectionModel

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


# --- load_model_cfg / default_cfg: the one resolver the train command uses too --------------------------------------


def test_load_model_cfg(tmp_path):
    from yolo_act_swap.io import configs_dir
    from yolo_act_swap.models import DEFAULT_CFG, default_cfg, load_model_cfg

    assert default_cfg() == DEFAULT_CFG == "yolov7-tiny.yaml"
    d = load_model_cfg("yolov7-tiny")  # a built-in name, with or without .yaml
    assert d["builder"] == "yolov7" and d["yaml_file"] == str(configs_dir() / "models" / "yolov7-tiny.yaml")
    d["act_swap"] = {"act": "relu"}
    copy = load_model_cfg(d)
    assert copy == d and copy is not d and copy["backbone"] is not d["backbone"]  # a deep copy, act_swap kept
    v8 = load_model_cfg("yolov8s.yaml")  # an ultralytics name
    assert v8["scale"] == "s" and "backbone" in v8
    p = tmp_path / "mine.yaml"
    p.write_text("nc: 2\nbackbone: []\nhead: []\n")
    assert load_model_cfg(p)["yaml_file"] == str(p)
    with pytest.raises(ModelError, match="--cfg yolov8n.pt is a checkpoint; pass it with --weights"):
        load_model_cfg("yolov8n.pt")
    with pytest.raises(ModelError, match="model config 'yolov9000.yaml' not found: looked for a file, in configs/"):
        load_model_cfg("yolov9000.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("nc: 2\nbackbone: [a, b\nhead: []\n")
    with pytest.raises(ModelError, match=rf"{bad}:3:\d+: malformed YAML"):
        load_model_cfg(bad)
    bad.write_text("nc: 2\n")
    with pytest.raises(ModelError, match="not a model YAML"):
        load_model_cfg(bad)


# --- import_upstream: sys.path and sys.modules afterwards -----------------------------------------------------------


def test_import_upstream_restores_sys_path_and_modules(fake_upstream, tmp_path, monkeypatch):
    import types

    from yolo_act_swap.models import import_upstream

    foreign = types.ModuleType("utils")
    foreign.__file__ = str(tmp_path / "elsewhere" / "utils" / "__init__.py")
    monkeypatch.setitem(sys.modules, "utils", foreign)  # another project's top-level utils, already imported
    path = list(sys.path)
    with import_upstream(fake_upstream) as yolo:
        assert yolo.__name__ == "models.yolo" and sys.path[0] == str(fake_upstream.resolve())
        assert "utils" not in sys.modules  # set aside: the checkout's own would be imported
        model = yolo.Model(str(fake_upstream / "models" / "tiny.yaml"))
    assert sys.path == path and sys.modules["utils"] is foreign  # the checkout has no utils: the foreign one is back
    assert sys.modules["models.yolo"] is yolo  # kept: the model's class must stay picklable
    import pickle

    assert type(pickle.loads(pickle.dumps(model))) is yolo.Model

    broken = tmp_path / "broken"
    (broken / "models").mkdir(parents=True)
    (broken / "models" / "__init__.py").write_text("")
    (broken / "models" / "common.py").write_text("")
    (broken / "models" / "yolo.py").write_text("import no_such_package_here\n")
    modules = dict(sys.modules)
    with pytest.raises(ModelError, match="cannot import the upstream model code from .*broken"):
        with import_upstream(broken):
            pass
    assert sys.path == path and sys.modules["models.yolo"] is yolo  # a failed import leaves everything as it was
    assert {n for n in sys.modules if n.split(".")[0] in ("models", "utils")} == {
        n for n in modules if n.split(".")[0] in ("models", "utils")
    }
