"""YOLOv7 / YOLOv7x / YOLOv7-tiny configs built as ultralytics detection models (yolo_act_swap.nn.yolov7)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from copy import deepcopy
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from ultralytics.nn.modules import Conv, Detect
from ultralytics.nn.tasks import DetectionModel

from yolo_act_swap.errors import ModelError
from yolo_act_swap.nn.yolov7 import (
    SPPCSPC,
    RepConv,
    YOLOv7DetectionModel,
    is_yolov7_cfg,
    load_yolov7_cfg,
    parse_act,
)

REPO = Path(__file__).resolve().parents[1]

# Official body parameter counts: every layer before IDetect, i.e. sum(p.numel() for l in model.model[:-1] for p in
# l.parameters()), of models.yolo.Model(cfg/training/<name>.yaml, ch=3, nc=80) from yolov7-wky-package==2024.9.23.1
# (byte-identical to WongKinYiu/yolov7), measured in a subprocess with PYTHONPATH=<that package>:<pandas/scipy/seaborn>.
# test_body_matches_upstream_weights re-measures them whenever tests/upstream/install.sh has run.
OFFICIAL_BODY_PARAMS = {"yolov7": 37_162_400, "yolov7x": 70_772_424, "yolov7-tiny": 5_997_856}
OFFICIAL_LAYERS = {"yolov7": 106, "yolov7x": 122, "yolov7-tiny": 78}  # rows incl. the head; head index = rows - 1
NAMES = tuple(OFFICIAL_BODY_PARAMS)


@pytest.fixture(scope="module")
def models():
    """Each config built once for the module (yolov7x only for build/param/small-forward checks)."""
    torch.manual_seed(0)
    return {name: YOLOv7DetectionModel(f"{name}.yaml", verbose=False) for name in NAMES}


def _randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm non-trivial statistics and affine params so that fusing is a real test."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.rand(n, generator=g) - 0.5)
    return model


def _synthetic_batch(bs: int = 2, imgsz: int = 64, seed: int = 0) -> dict:
    """A detection batch in the ultralytics collate format: two boxes per image, normalised xywh."""
    g = torch.Generator().manual_seed(seed)
    n = 2 * bs
    xy = torch.rand(n, 2, generator=g) * 0.5 + 0.25
    wh = torch.rand(n, 2, generator=g) * 0.3 + 0.1
    return {
        "img": torch.rand(bs, 3, imgsz, imgsz, generator=g),
        "batch_idx": torch.arange(bs).repeat_interleave(2).float(),
        "cls": torch.randint(0, 80, (n, 1), generator=g).float(),
        "bboxes": torch.cat([xy, wh], 1),
    }


# --------------------------------------------------------------------------------------------------- build & fidelity


@pytest.mark.parametrize("name", NAMES)
def test_builds_with_official_body(models, name):
    m = models[name]
    assert isinstance(m, DetectionModel)
    assert len(m.model) == OFFICIAL_LAYERS[name]
    assert isinstance(m.model[-1], Detect) and type(m.model[-1]) is Detect
    ours = sum(p.numel() for layer in m.model[:-1] for p in layer.parameters())
    assert ours == m.body_parameters() == OFFICIAL_BODY_PARAMS[name]
    assert m.stride.tolist() == [8.0, 16.0, 32.0]
    assert [layer.i for layer in m.model] == list(range(len(m.model)))
    assert all(hasattr(layer, "f") and hasattr(layer, "type") and hasattr(layer, "np") for layer in m.model)
    assert m.yaml["builder"] == "yolov7" and is_yolov7_cfg(m.yaml)
    assert m.yaml["head"][-1][2] == "Detect"  # what ultralytics' guess_model_task reads


def test_layer_kinds_follow_upstream(models):
    v7, tiny, x = models["yolov7"], models["yolov7-tiny"], models["yolov7x"]
    assert isinstance(v7.model[51], SPPCSPC) and isinstance(x.model[59], SPPCSPC)
    assert [type(v7.model[i]) for i in (102, 103, 104)] == [RepConv] * 3
    assert not any(isinstance(mod, RepConv) for mod in x.modules())  # yolov7x ends in plain 3x3 Convs
    assert v7.model[-1].f == [102, 103, 104] and x.model[-1].f == [118, 119, 120] and tiny.model[-1].f == [74, 75, 76]
    # yolov7-tiny: LeakyReLU(0.1) in every body conv and in the Detect head, each a module of its own
    tiny_acts = [mod.act for mod in tiny.modules() if isinstance(mod, Conv)]
    assert all(isinstance(a, nn.LeakyReLU) and a.negative_slope == 0.1 for a in tiny_acts)
    assert len({id(a) for a in tiny_acts}) == len(tiny_acts)
    # SiLU models: one fresh SiLU per block, never ultralytics' shared Conv.default_act
    v7_acts = [mod.act for mod in v7.modules() if isinstance(mod, (Conv, RepConv))]
    assert all(isinstance(a, nn.SiLU) for a in v7_acts)
    assert len({id(a) for a in v7_acts}) == len(v7_acts)
    assert all(a is not Conv.default_act for a in v7_acts)


# ------------------------------------------------------------------------------------------------------------ forward


@pytest.mark.parametrize("name", ["yolov7-tiny", "yolov7"])
def test_forward_eval_640(models, name):
    m = models[name].eval()
    with torch.no_grad():
        y, preds = m(torch.rand(1, 3, 640, 640))
    assert y.shape == (1, 4 + 80, 80 * 80 + 40 * 40 + 20 * 20)
    assert [tuple(f.shape[-2:]) for f in preds["feats"]] == [(80, 80), (40, 40), (20, 20)]
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("name,imgsz", [("yolov7-tiny", 160), ("yolov7", 160), ("yolov7x", 64)])
def test_forward_train(models, name, imgsz):
    m = deepcopy(models[name]).train()  # a copy: training-mode BN updates must not leak into other tests
    with torch.no_grad():
        out = m(torch.rand(2, 3, imgsz, imgsz))
    sizes = [imgsz // s for s in (8, 16, 32)]
    n = sum(s * s for s in sizes)
    assert out["boxes"].shape == (2, 4 * 16, n)
    assert out["scores"].shape == (2, 80, n)
    assert [tuple(f.shape[-2:]) for f in out["feats"]] == [(s, s) for s in sizes]
    assert [imgsz / f.shape[-1] for f in out["feats"]] == [8, 16, 32]


# --------------------------------------------------------------------------------------------------------------- fuse


@pytest.mark.parametrize("name", ["yolov7-tiny", "yolov7"])
def test_fuse_keeps_outputs(models, name):
    m = _randomize_bn(deepcopy(models[name])).eval()
    x = torch.rand(1, 3, 64, 64)  # folding is size-independent; keep it cheap
    with torch.no_grad():
        before = m(x)[0]
        assert not m.is_fused()
        m.fuse(verbose=False)
        after = m(x)[0]
    assert m.is_fused()
    assert not any(isinstance(mod, nn.BatchNorm2d) for mod in m.model[:-1].modules())
    assert all(mod.fused for mod in m.modules() if isinstance(mod, RepConv))
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("c1,c2,s,g", [(16, 16, 1, 1), (16, 16, 1, 4), (8, 16, 1, 1), (16, 16, 2, 2)])
def test_repconv_fuse_all_branches(c1, c2, s, g):
    m = _randomize_bn(RepConv(c1, c2, 3, s, g=g, act=nn.LeakyReLU(0.1)), seed=c1 + c2 + s + g).eval()
    assert (m.rbr_identity is not None) == (c1 == c2 and s == 1)
    x = torch.randn(2, c1, 12, 12)
    with torch.no_grad():
        before = m(x)
        m.fuse_convs()
        m.fuse_convs()  # idempotent
        after = m(x)
    assert m.fused and not hasattr(m, "rbr_dense") and isinstance(m.act, nn.LeakyReLU)
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------------------------------- train


@pytest.mark.parametrize("name", ["yolov7-tiny", "yolov7"])
def test_one_training_step_through_ultralytics_loss(models, name):
    from ultralytics.cfg import get_cfg

    m = deepcopy(models[name]).train()
    m.args = get_cfg()  # the hyperparameters v8DetectionLoss reads (box, cls, dfl)
    batch = _synthetic_batch()
    opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
    loss, items = m.loss(batch)
    assert torch.isfinite(loss).all() and loss.sum() > 0
    loss.sum().backward()
    first = m.model[0].conv.weight
    assert first.grad is not None and first.grad.abs().sum() > 0  # gradient reaches the stem
    if name == "yolov7":
        rep = m.model[102]
        assert rep.rbr_dense[0].weight.grad.abs().sum() > 0 and rep.rbr_1x1[0].weight.grad.abs().sum() > 0
    w0 = first.detach().clone()
    opt.step()
    assert not torch.equal(w0, first.detach())
    loss2, _ = m.loss(batch)
    assert torch.isfinite(loss2).all()


# ------------------------------------------------------------------------------------- checkpoint, reload, ONNX export


@pytest.fixture(scope="module")
def tiny_ckpt(models, tmp_path_factory):
    """yolov7-tiny (nc=3) saved the way the ultralytics trainer saves and finalises best.pt."""
    from datetime import datetime

    from ultralytics import __version__
    from ultralytics.cfg import get_cfg
    from ultralytics.utils.torch_utils import strip_optimizer

    torch.manual_seed(0)
    model = YOLOv7DetectionModel("yolov7-tiny.yaml", nc=3, verbose=False)
    model.names = {0: "a", 1: "b", 2: "c"}
    args = get_cfg(overrides={"imgsz": 64, "model": "yolov7-tiny.yaml"})
    model.args = args
    path = tmp_path_factory.mktemp("ckpt") / "best.pt"
    torch.save(
        {
            "epoch": 0,
            "best_fitness": 0.0,
            "model": None,
            "ema": deepcopy(model).half(),
            "updates": 1,
            "optimizer": None,
            "train_args": vars(args),
            "date": datetime.now().isoformat(),
            "version": __version__,
        },
        path,
    )
    strip_optimizer(path)  # what the trainer does to best.pt/last.pt at the end of training
    return path


def test_checkpoint_reloads_in_fresh_process(tiny_ckpt, tmp_path):
    code = textwrap.dedent(
        f"""
        import json, numpy as np
        import yolo_act_swap
        from ultralytics import YOLO
        m = YOLO({str(tiny_ckpt)!r})
        res = m.predict(np.full((64, 64, 3), 114, np.uint8), imgsz=64, verbose=False)
        used = getattr(m.predictor.model, "backend", m.predictor.model)  # AutoBackend -> PyTorch backend
        used = getattr(used, "model", used)
        print(json.dumps({{"cls": type(m.model).__name__, "task": m.task, "names": m.names, "n": len(res),
                          "box_cols": int(res[0].boxes.data.shape[-1]), "used": type(used).__name__,
                          "fused": bool(used.is_fused())}}))
        """
    )
    env = {**os.environ, "YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "false"}
    p = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["cls"] == "YOLOv7DetectionModel" and out["task"] == "detect"
    assert out["names"] == {"0": "a", "1": "b", "2": "c"} and out["n"] == 1 and out["box_cols"] == 6
    assert out["used"] == "YOLOv7DetectionModel" and out["fused"]  # the predictor fused it through our fuse()


def test_onnx_export_tiny(tiny_ckpt, tmp_path):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    import shutil

    from ultralytics import YOLO

    ckpt = Path(shutil.copy(tiny_ckpt, tmp_path / "tiny.pt"))
    f = YOLO(ckpt).export(format="onnx", imgsz=64, simplify=False, verbose=False)
    assert Path(f).is_file()
    x = torch.rand(1, 3, 64, 64)
    sess = ort.InferenceSession(str(f), providers=["CPUExecutionProvider"])
    (onnx_out,) = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})
    assert onnx_out.shape == (1, 4 + 3, 8 * 8 + 4 * 4 + 2 * 2)
    ref = YOLO(ckpt).model.float().eval()
    with torch.no_grad():
        torch_out = ref(x)[0]
    torch.testing.assert_close(torch.from_numpy(onnx_out), torch_out, rtol=1e-3, atol=1e-3)


# ----------------------------------------------------------------------------------------------- overrides & act_swap


def test_nc_and_width_overrides_like_ultralytics():
    m = YOLOv7DetectionModel("yolov7-tiny.yaml", nc=3, verbose=False)
    assert m.yaml["nc"] == 3 and m.model[-1].nc == 3 and len(m.names) == 3
    assert m.body_parameters() == OFFICIAL_BODY_PARAMS["yolov7-tiny"]  # nc never changes the body
    d = load_yolov7_cfg("yolov7-tiny.yaml")
    d["width_multiple"] = 0.25
    half = YOLOv7DetectionModel(d, verbose=False)
    assert half.model[0].conv.out_channels == 8  # make_divisible(32 * 0.25, 8)
    assert half.model[28].conv.out_channels == 128  # 512 * 0.25
    assert half.stride.tolist() == [8.0, 16.0, 32.0]
    assert d["width_multiple"] == 0.25 and "channels" not in d  # the caller's dict is not mutated


def test_build_leaves_ultralytics_globals_alone():
    act, legacy = Conv.default_act, Detect.__dict__["legacy"]
    m = YOLOv7DetectionModel("yolov7-tiny.yaml", verbose=False)
    assert Conv.default_act is act and Detect.__dict__["legacy"] == legacy
    assert m.model[-1].legacy is True  # v5u/v8-style head, pinned on the instance only
    assert len(m.model[-1].cv3[0]) == 3 and isinstance(m.model[-1].cv3[0][0], Conv)


def test_act_swap_key_is_honoured():
    from yolo_act_swap.activations import ACT_TAG

    d = load_yolov7_cfg("yolov7-tiny.yaml")
    d["act_swap"] = "hard_swish"
    try:
        m = YOLOv7DetectionModel(d, verbose=False)
    except NotImplementedError:
        pytest.skip("yolo_act_swap.patch.patch_model is not implemented yet (raises NotImplementedError)")
    acts = [mod.act for mod in m.model[:-1].modules() if isinstance(mod, Conv)]
    assert acts and all(getattr(a, ACT_TAG, None) == "hard_swish" for a in acts)
    assert not any(isinstance(a, nn.LeakyReLU) for a in acts)
    assert m.yaml["act_swap"] == "hard_swish"  # carried with the model, so rebuilds and checkpoints re-apply it
    with torch.no_grad():
        assert m.eval()(torch.rand(1, 3, 64, 64))[0].shape == (1, 84, 84)


# ----------------------------------------------------------------------------------------------------- config errors


def test_parse_act_is_safe():
    a = parse_act("nn.LeakyReLU(0.1)")
    assert isinstance(a, nn.LeakyReLU) and a.negative_slope == 0.1 and a is not parse_act("nn.LeakyReLU(0.1)")
    assert isinstance(parse_act("nn.ELU(alpha=0.5)"), nn.ELU)
    assert parse_act(True) is True and parse_act("False") is False and parse_act(None) is False
    for bad in ("__import__('os').system('echo pwned')", "nn.Conv2d(3, 3, 1)", "nn.LeakyReLU(x)", "LeakyReLU(", 3):
        with pytest.raises(ModelError, match="act"):
            parse_act(bad, "act")


@pytest.mark.parametrize(
    "edit,match",
    [
        (lambda d: d.pop("builder"), "builder: yolov7"),
        (lambda d: d["backbone"].__setitem__(1, [-1, 1, "Focus", [64, 3, 2]]), "layer 1: unknown module 'Focus'"),
        (lambda d: d["backbone"].__setitem__(2, [5, 1, "Conv", [32, 1, 1]]), "layer 2: 'from' 5"),
        (lambda d: d["backbone"].__setitem__(0, [-1, 1, "Conv", [32, 3, 2, None, 1, "os.system(1)"]]), "layer 0"),
        (lambda d: d["head"].__setitem__(-4, [57, 1, "RepConv", [128, 5, 1]]), "layer 74: RepConv supports only k=3"),
    ],
)
def test_config_errors_are_one_line_model_errors(edit, match):
    d = load_yolov7_cfg("yolov7-tiny.yaml")
    edit(d)
    with pytest.raises(ModelError, match=match) as e:
        YOLOv7DetectionModel(d, verbose=False)
    assert "\n" not in str(e.value)


def test_missing_config_names_the_builtins():
    with pytest.raises(ModelError, match="yolov7-tiny.yaml"):
        load_yolov7_cfg("yolov9-nope.yaml")


# ------------------------------------------------------------------------------------------ upstream (WongKinYiu) body

UPSTREAM = Path(os.environ.get("YAS_UPSTREAM_DIR", REPO / ".upstream"))

_UPSTREAM_PROBE = """
import json, sys, torch
from models.yolo import Model
out = {}
for name in sys.argv[2:]:
    torch.manual_seed(0)
    m = Model(f"cfg/training/{name}.yaml", ch=3, nc=80).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for mod in m.modules():  # non-trivial BN statistics, so eval outputs depend on every buffer
            if isinstance(mod, torch.nn.BatchNorm2d):
                n = mod.num_features
                mod.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
                mod.running_var.copy_(torch.rand(n, generator=g) + 0.5)
    feats = []
    m.model[-1].register_forward_pre_hook(lambda mod, inp: feats.extend(t.clone() for t in inp[0]))
    x = torch.rand(1, 3, 128, 128, generator=g)
    with torch.no_grad():
        m(x)
    head = len(m.model) - 1
    body = {k: v for k, v in m.state_dict().items() if not k.startswith(f"model.{head}.")}
    nb = sum(p.numel() for layer in m.model[:-1] for p in layer.parameters())
    torch.save({"body": body, "x": x, "feats": feats}, f"{sys.argv[1]}/{name}.pt")
    out[name] = {"body_params": nb, "layers": len(m.model)}
print(json.dumps(out))
"""


@pytest.mark.upstream
def test_body_matches_upstream_weights(tmp_path):
    """Official weights load into our body by name and give the same features (tiny and yolov7; x is pinned above)."""
    up, deps = UPSTREAM / "yolov7", UPSTREAM / "deps"
    if not (up / "models" / "yolo.py").is_file():
        pytest.skip(f"upstream YOLOv7 not installed in {up}: run bash tests/upstream/install.sh")
    names = ["yolov7-tiny", "yolov7"]
    env = {**os.environ, "PYTHONPATH": f"{up}{os.pathsep}{deps}"}
    p = subprocess.run(
        [sys.executable, "-c", _UPSTREAM_PROBE, str(tmp_path), *names],
        cwd=up,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    measured = json.loads(p.stdout.strip().splitlines()[-1])
    for name in names:
        assert measured[name] == {"body_params": OFFICIAL_BODY_PARAMS[name], "layers": OFFICIAL_LAYERS[name]}
        ref = torch.load(tmp_path / f"{name}.pt", weights_only=True)
        ours = YOLOv7DetectionModel(f"{name}.yaml", verbose=False).eval()
        head = f"model.{len(ours.model) - 1}."
        ours_body = {k for k in ours.state_dict() if not k.startswith(head)}
        assert ours_body == set(ref["body"])  # same parameter and buffer names, layer by layer
        ours.load_state_dict(ref["body"], strict=False)
        feats = []
        ours.model[-1].register_forward_pre_hook(lambda mod, inp: feats.extend(inp[0]))
        with torch.no_grad():
            ours(ref["x"])
        assert len(feats) == len(ref["feats"]) == 3
        for a, b in zip(feats, ref["feats"]):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
