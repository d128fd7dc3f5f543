"""The patcher on real models: every shape-preserving activation on ultralytics yolov5n / yolov8n / yolo11n, rules,
bare activations, rollback after forced failures (bit-identical), no shared instances, no class-level defaults."""

import contextlib
import copy

import pytest
import torch
import torch.nn as nn
from ultralytics.nn.modules import Conv, ConvTranspose, RepConv
from ultralytics.nn.modules.block import BottleneckCSP
from ultralytics.nn.tasks import DetectionModel

from yolo_act_swap import PatchError, ShapeMismatch, SpecError, load_spec, patch_model
from yolo_act_swap.activations import ACT_TAG, create_activation, list_activations, temporary_activation
from yolo_act_swap.blocks import find_blocks
from yolo_act_swap.nn.tasks import ActSwapDetectionModel

IMGSZ = 64
MODELS = ("yolov5n.yaml", "yolov8n.yaml", "yolo11n.yaml")
SHAPE_PRESERVING = [i.name for i in list_activations() if i.shape_preserving]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def models():
    """Each model built once per module (plain ultralytics DetectionModel); tests deepcopy what they patch."""
    torch.manual_seed(0)
    return {cfg: DetectionModel(cfg, verbose=False) for cfg in MODELS}


def ultralytics_blocks(model: nn.Module) -> dict:
    """Activated conv blocks found independently, by ultralytics class: path -> output channels."""
    out = {}
    for path, m in model.named_modules():
        if isinstance(m, (Conv, RepConv)) and not isinstance(m.act, nn.Identity):  # DWConv is a Conv subclass
            out[path] = m.conv2.conv.out_channels if isinstance(m, RepConv) else m.conv.out_channels
        elif isinstance(m, ConvTranspose) and not isinstance(m.act, nn.Identity):
            out[path] = m.conv_transpose.out_channels
    return out


def snapshot(model: nn.Module):
    return type(model), repr(model), {k: v.clone() for k, v in model.state_dict().items()}, copy.deepcopy(model.yaml)


def assert_identical(model: nn.Module, snap):
    cls, text, sd, yml = snap
    assert type(model) is cls
    assert repr(model) == text
    now = model.state_dict()
    assert list(now) == list(sd)
    assert all(torch.equal(now[k], sd[k]) for k in sd)
    assert model.yaml == yml


@pytest.mark.parametrize("act", SHAPE_PRESERVING)
@pytest.mark.parametrize("cfg", MODELS)
def test_every_activation_on_every_model(models, cfg, act):
    default_act = Conv.default_act
    model = copy.deepcopy(models[cfg])
    expected = ultralytics_blocks(model)
    report = patch_model(model, act, imgsz=IMGSZ, flops=False)

    assert report.verification is not None and report.verification.ok, report.verification
    assert report.n_blocks == report.n_swapped == len(expected) > 40
    assert {b.path: b.channels for b in report.blocks} == expected  # the block's output channels
    acts = [model.get_submodule(p).act for p in expected]
    assert all(getattr(a, ACT_TAG) == report.spec[0].act.name for a in acts)
    assert len({id(a) for a in acts}) == len(acts)  # one fresh module per block, never shared
    assert Conv.default_act is default_act and type(default_act) is nn.SiLU  # class-level default untouched
    assert type(model) is ActSwapDetectionModel and model.yaml["act_swap"] == {"act": report.spec[0].act.name}
    assert report.params_after - report.params_before == sum(b.params_added for b in report.blocks)
    assert report.params_after == sum(p.numel() for p in model.parameters())
    assert {b.stage for b in report.blocks} == {"backbone", "neck", "head"}


def test_report_table_and_flops(models):
    model = copy.deepcopy(models["yolov8n.yaml"])
    report = patch_model(model, "frelu", imgsz=IMGSZ)
    text = str(report)
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["stage", "layers", "module"]
    assert [ln.split()[0] for ln in lines[2:] if ln[:1].strip()][:3] == ["backbone", "neck", "head"]
    assert "swapped 57 of 57 activated conv blocks (backbone 27, neck 18, head 12)" in text
    assert report.gflops_before and report.gflops_after > report.gflops_before  # FReLU adds a depthwise conv
    assert f"at {IMGSZ}" in text and "verification: passed" in text
    per_block = report.table(per_block=True)
    assert "model.22.cv3.2.1" in per_block and "SiLU → frelu" in per_block
    d = report.to_dict()
    assert d["n_swapped"] == 57 and d["verified"] is True and d["spec"] == [{"act": "frelu"}]


def test_bn_settings_copied_and_frelu_fuses(models):
    model = copy.deepcopy(models["yolov8n.yaml"])
    patch_model(model, "frelu", verify=False)
    bns = [m.act.bn for m in model.modules() if isinstance(m, Conv) and getattr(m.act, ACT_TAG, "") == "frelu"]
    assert bns and all((b.eps, b.momentum) == (1e-3, 0.03) for b in bns)  # ultralytics' BN settings, not torch's
    model.eval()
    x = torch.rand(1, 3, IMGSZ, IMGSZ)
    with torch.no_grad():
        y = model(x)[0]
        fused = copy.deepcopy(model).fuse(verbose=False)
        assert torch.allclose(fused(x)[0], y, atol=1e-3, rtol=1e-3)
    frelus = [m for m in fused.modules() if getattr(m, ACT_TAG, "") == "frelu"]
    assert frelus and all(m.bn is None for m in frelus)  # the model's fuse() folds the BN inside every FReLU too


def test_ultralytics_yolo_wrapper_and_eval_mode():
    from ultralytics import YOLO

    yolo = YOLO("yolov8n.yaml")
    yolo.model.eval()
    report = patch_model(yolo, "leaky_relu:negative_slope=0.1", imgsz=IMGSZ, flops=False)
    assert report.n_swapped == 57 and type(yolo.model) is ActSwapDetectionModel
    assert all(not m.training for m in yolo.model.modules())  # new activations follow the model's mode


# --- rules ------------------------------------------------------------------------------------------------------------


def _acts_by_path(model):
    return {b.path: getattr(b.act, ACT_TAG, type(b.act).__name__) for b in find_blocks(model)}


def test_rules_layers_stages_types_modules_keep(models):
    model = copy.deepcopy(models["yolov8n.yaml"])
    spec = {
        "act": "relu",
        "rules": [
            {"stages": "head", "act": "keep"},
            {"layers": "0-1", "act": "frelu"},
            {"types": "SPPF", "act": "mish"},  # an enclosing module's class
            {"modules": "model.2.m.*", "act": "gelu"},
            {"types": "Bottleneck", "layers": 4, "act": "elu"},  # both selectors must match
            {"layers": [-1, 30], "act": "silu", "optional": True} if False else {"layers": -2, "act": "celu"},
        ],
    }
    report = patch_model(model, spec, imgsz=IMGSZ, flops=False)
    acts = _acts_by_path(model)
    assert acts["model.0"] == acts["model.1"] == "frelu"
    assert acts["model.9.cv1"] == acts["model.9.cv2"] == "mish"
    assert acts["model.2.m.0.cv1"] == "gelu" and acts["model.2.cv1"] == "relu"
    assert acts["model.4.m.0.cv1"] == "elu" and acts["model.4.cv1"] == "relu"
    assert all(a == "celu" for p, a in acts.items() if p.startswith("model.21."))
    assert all(a == "SiLU" for p, a in acts.items() if p.startswith("model.22."))  # kept
    assert report.n_swapped == 57 - 12 and report.n_blocks == 57


def test_later_rules_win_and_keep_means_unchanged(models):
    model = copy.deepcopy(models["yolov8n.yaml"])
    patch_model(model, {"act": "frelu", "rules": [{"layers": "0-3", "act": "relu"}, {"layers": 2, "act": "keep"}]},
                verify=False)  # fmt: skip
    acts = _acts_by_path(model)
    assert acts["model.0"] == acts["model.3"] == "relu" and acts["model.2.cv1"] == "SiLU" and acts["model.5"] == "frelu"


@pytest.mark.parametrize(
    "rule, pattern",
    [
        (
            {"types": "Bottleneck2", "act": "relu"},
            r"matches no activated conv block; block types here: Conv; enclosing types: Bottleneck, C2f, Detect, SPPF;",
        ),
        (
            {"modules": "model.99.*", "act": "relu"},
            r"matches no activated conv block; block paths look like model.0, model.1, model.2.cv1",
        ),
        ({"layers": "10-11", "act": "relu"}, r"matches no .*layers with blocks: 0-9, 12, 15-16, 18-19, 21-22"),
        ({"layers": "0-50", "act": "relu"}, r"layer range 0-50 is outside the model, which has layers 0-22"),
        ({"types": "GELU", "bare": True, "act": "relu"}, r"matches no activated conv block or bare activation"),
    ],
)
def test_rule_errors_leave_model_untouched(models, rule, pattern):
    model = copy.deepcopy(models["yolov8n.yaml"])
    snap = snapshot(model)
    with pytest.raises(SpecError, match=pattern):
        patch_model(model, {"act": "frelu", "rules": [rule]}, imgsz=IMGSZ)
    assert_identical(model, snap)
    rule = {**rule, "optional": True}
    if "0-50" not in str(rule):
        patch_model(model, {"act": "frelu", "rules": [rule]}, verify=False)  # optional: fine


# --- rollback ---------------------------------------------------------------------------------------------------------


def test_glu_is_refused_and_rolled_back(models):
    model = copy.deepcopy(models["yolov8n.yaml"])
    snap = snapshot(model)
    with pytest.raises(
        ShapeMismatch,
        match=r"model\.0 \(Conv\): glu halves the channels \(16 → 8\), so it cannot "
        r"replace a Conv activation \(expected \(2, 16, 32, 32\), got \(2, 8, 32, 32\)\)",
    ):
        patch_model(model, "glu", imgsz=IMGSZ)
    assert_identical(model, snap)
    # mid-way: 21 blocks are swapped to frelu before the first glu block fails
    with pytest.raises(ShapeMismatch, match=r"model\.8\.cv1 \(Conv\): glu halves the channels \(256 → 128\)"):
        patch_model(model, {"act": "frelu", "rules": [{"layers": "8-9", "act": "glu"}]}, imgsz=IMGSZ)
    assert_identical(model, snap)
    # an already patched model keeps its own spec and class when the next patch fails
    patch_model(model, "mish", verify=False)
    snap = snapshot(model)
    with pytest.raises(ShapeMismatch):
        patch_model(model, {"act": "relu", "rules": [{"layers": -1, "act": "glu"}]}, imgsz=IMGSZ)
    assert_identical(model, snap)
    assert model.yaml["act_swap"] == {"act": "mish"} and type(model) is ActSwapDetectionModel


class _TrainCrop(nn.Module):
    """Shape-preserving in eval mode (and on the patcher's first probe), but drops a row in training mode."""

    def forward(self, x):
        return x[:, :, :-1] if self.training and x.shape[2] != x.shape[3] else x


class _NaNInTrain(nn.Module):
    def forward(self, x):
        return x * float("nan") if self.training else x


@pytest.fixture
def injected():
    """Register failing test activations for one test, and remove them afterwards."""
    with contextlib.ExitStack() as stack:

        def add(name, factory):
            stack.enter_context(temporary_activation(name, factory, overwrite=True))

        yield add


def test_injected_failures_roll_back_bit_identically(models, injected):
    injected("test_train_crop", lambda channels: _TrainCrop())
    injected("test_nan_in_train", lambda channels: _NaNInTrain())
    model = copy.deepcopy(models["yolo11n.yaml"])
    model.eval()
    snap = snapshot(model)
    with pytest.raises(
        ShapeMismatch,
        match=r"model\.0 \(Conv, test_train_crop\): activation output \(2, 16, 15, 32\) in "
        r"train 32x64, expected \(2, 16, 16, 32\)",
    ):
        patch_model(model, "test_train_crop", imgsz=IMGSZ)
    assert_identical(model, snap)
    assert all(not m.training for m in model.modules())
    with pytest.raises(
        PatchError,
        match=r"non-finite values \(NaN/Inf\) in a real train forward at batch 2, 32x32, first at "
        r"the activation of model\.0 \(Conv, test_nan_in_train\)",
    ):
        patch_model(model, {"act": "frelu", "rules": [{"layers": 0, "act": "test_nan_in_train"}]}, imgsz=IMGSZ)
    assert_identical(model, snap)
    with pytest.raises(ShapeMismatch):  # a plain nn.Module model too (no yaml, no class switch)
        seq = nn.Sequential(Conv(3, 8, 3), Conv(8, 8, 3))
        s2 = (repr(seq), {k: v.clone() for k, v in seq.state_dict().items()})
        patch_model(seq, "test_train_crop", imgsz=IMGSZ)
    assert repr(seq) == s2[0] and all(torch.equal(v, s2[1][k]) for k, v in seq.state_dict().items())


class _PooledBN(nn.Module):
    """A coefficient net with BatchNorm1d over pooled features: fine at batch 2, fails at batch 1 in training mode
    (ultralytics' last train batch can be 1)."""

    def __init__(self, c):
        super().__init__()
        self.bn = nn.BatchNorm1d(c)

    def forward(self, x):
        return x * torch.sigmoid(self.bn(x.mean((2, 3))))[..., None, None]


class _FailsOnRealTrain(nn.Module):
    """Passes every shape check (meta), raises a RuntimeError in a real training forward."""

    def forward(self, x):
        if self.training and x.device.type != "meta":
            raise RuntimeError("value cannot be converted to type float without overflow")
        return x


def test_runtime_failures_are_patch_errors_naming_block_and_activation(models, injected):
    injected("test_pooled_bn", lambda channels: _PooledBN(channels))
    injected("test_fails_on_real_train", lambda channels: _FailsOnRealTrain())
    model = copy.deepcopy(models["yolov8n.yaml"])
    snap = snapshot(model)
    spec = {"act": "frelu", "rules": [{"layers": 2, "act": "test_pooled_bn"}]}
    with pytest.raises(PatchError, match=r"a real train forward at batch 1, 64x64 fails at model\.2\.cv1 \(Conv, "
                                         r"test_pooled_bn\): ValueError: Expected more than 1 value per channel"):
        patch_model(model, spec, imgsz=IMGSZ)
    assert_identical(model, snap)
    patch_model(copy.deepcopy(model), spec, imgsz=IMGSZ, verify=False)  # unverified, it would have been accepted
    spec = {"act": "relu", "rules": [{"layers": 4, "act": "test_fails_on_real_train"}]}
    with pytest.raises(PatchError, match=r"^a real train forward at batch 2, 32x32 fails at model\.4\.cv1 \(Conv, "
                                         r"test_fails_on_real_train\): RuntimeError: value cannot be converted"):
        patch_model(model, spec, imgsz=IMGSZ)
    assert_identical(model, snap)


def test_failed_patch_restores_the_global_rng(models, injected):
    injected("test_nan_in_train", lambda channels: _NaNInTrain())
    model = copy.deepcopy(models["yolov8n.yaml"])
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    with pytest.raises(PatchError):  # frelu's conv init draws from the global RNG before the last layer fails
        patch_model(model, {"act": "frelu", "rules": [{"layers": -1, "act": "test_nan_in_train"}]}, imgsz=IMGSZ)
    assert torch.equal(torch.random.get_rng_state(), state)
    patch_model(model, "frelu", imgsz=IMGSZ, verify=False)  # a successful patch does draw from it
    assert not torch.equal(torch.random.get_rng_state(), state)


def test_rollback_on_keyboard_interrupt(models, injected):
    class Boom(nn.Module):
        def forward(self, x):
            raise KeyboardInterrupt

    injected("test_boom", lambda channels: Boom())
    model = copy.deepcopy(models["yolov5n.yaml"])
    snap = snapshot(model)
    with pytest.raises((KeyboardInterrupt, PatchError)):
        patch_model(model, {"act": "relu", "rules": [{"layers": -1, "act": "test_boom"}]}, imgsz=IMGSZ)
    assert_identical(model, snap)


# --- other block kinds and bare activations ---------------------------------------------------------------------------


class _MLPBlock(nn.Module):
    """A conv block plus an MLP with a bare GELU and a Sigmoid gate (not a block activation)."""

    def __init__(self, c=16):
        super().__init__()
        self.cv = Conv(3, c, 3, 2)
        self.fc1, self.gelu, self.fc2 = nn.Linear(c, 2 * c), nn.GELU(), nn.Linear(2 * c, c)
        self.gate_conv, self.act = nn.Conv2d(c, c, 1), nn.Sigmoid()  # conv + Sigmoid 'act': a gate, never swapped
        self.post = nn.Conv2d(c, c, 3, padding=1)
        self.relu = nn.ReLU()  # bare, after a conv: channels come from a traced forward

    def forward(self, x):
        x = self.cv(x)
        x = x * self.act(self.gate_conv(x))
        t = x.flatten(2).transpose(1, 2)
        x = x + self.fc2(self.gelu(self.fc1(t))).transpose(1, 2).reshape(x.shape)
        return self.relu(self.post(x))


def test_bare_activations_only_by_explicit_rule():
    torch.manual_seed(0)
    m = _MLPBlock()
    r = patch_model(m, "frelu", imgsz=IMGSZ, flops=False)
    assert r.n_blocks == r.n_swapped == 1 and isinstance(m.gelu, nn.GELU) and isinstance(m.act, nn.Sigmoid)
    r = patch_model(m, {"act": "keep", "rules": [{"types": "ReLU", "bare": True, "act": "frelu"},
                                                 {"types": "GELU", "bare": True, "act": "mish"}]}, imgsz=IMGSZ)  # fmt: skip
    assert getattr(m.relu, ACT_TAG) == "frelu" and m.relu.conv.in_channels == 16  # traced channels
    assert getattr(m.gelu, ACT_TAG) == "mish" and isinstance(m.act, nn.Sigmoid)
    assert {b.kind for b in r.blocks} == {"bare"} and r.n_bare == 2
    with pytest.raises(
        PatchError,
        match=r"gelu \(Mish\): frelu is channel-aware and needs NCHW feature maps, but this "
        r"activation sees \(2, 1024, 32\)",
    ):
        patch_model(m, {"act": "keep", "rules": [{"modules": "gelu", "bare": True, "act": "frelu"}]}, imgsz=IMGSZ)


def test_bottleneckcsp_act_uses_its_bn_channels():
    model = nn.Sequential(Conv(3, 16, 3, 2), BottleneckCSP(16, 32, n=1))
    blocks = {b.path: b for b in find_blocks(model)}
    assert blocks["1"].attr == "act" and blocks["1"].static_channels() == 32  # bn over cat(cv2, cv3): 2 * c_
    r = patch_model(model, "acon_c", imgsz=IMGSZ, flops=False)
    assert {b.path: b.channels for b in r.blocks}["1"] == 32 and model[1].act.p1.shape[1] == 32


class _OREPALike(nn.Module):
    """YOLOv7 RepConv_OREPA's layout: branches with nested convs, the activation in ``nonlinearity``."""

    def __init__(self, c1, c2):
        super().__init__()
        self.nonlinearity = nn.SiLU()
        self.rbr_identity = nn.BatchNorm2d(c1) if c1 == c2 else None
        self.rbr_dense = nn.Sequential(nn.Conv2d(c1, c2, 3, 1, 1, bias=False), nn.BatchNorm2d(c2))
        self.rbr_1x1 = nn.Sequential(nn.Conv2d(c1, c2, 1, bias=False), nn.BatchNorm2d(c2))

    def forward(self, x):
        idt = 0 if self.rbr_identity is None else self.rbr_identity(x)
        return self.nonlinearity(self.rbr_dense(x) + self.rbr_1x1(x) + idt)


def test_nonlinearity_attribute_and_nested_convs():
    model = nn.Sequential(_OREPALike(3, 24), RepConv(24, 24), ConvTranspose(24, 12, 2, 2), Conv(12, 12, act=False))
    blocks = {b.path: b for b in find_blocks(model)}
    assert set(blocks) == {"0", "1", "2"}  # the Conv with act=False (Identity) is not a block
    assert blocks["0"].attr == "nonlinearity"
    r = patch_model(model, "dy_relu_b", imgsz=IMGSZ, flops=False)
    assert {b.path: b.channels for b in r.blocks} == {"0": 24, "1": 24, "2": 12}
    assert isinstance(model[3].act, nn.Identity)


def test_no_blocks_is_an_error():
    with pytest.raises(PatchError, match=r"no activated conv blocks in Sequential .*bare: true"):
        patch_model(nn.Sequential(nn.Linear(4, 4), nn.ReLU()), "frelu")
    with pytest.raises(PatchError, match="needs an nn.Module or an ultralytics YOLO"):
        patch_model("yolov8n.yaml", "frelu")


# --- the spec travels with the model ----------------------------------------------------------------------------------


def test_act_swap_in_yaml_rebuilds_the_same_model(models):
    model = copy.deepcopy(models["yolov8n.yaml"])
    spec = {"act": "frelu", "rules": [{"stages": "head", "act": "acon_c:init=silu"}]}
    patch_model(model, spec, verify=False)
    assert model.yaml["act_swap"] == load_spec(spec).to_dict()
    rebuilt = ActSwapDetectionModel(copy.deepcopy(model.yaml), verbose=False)
    assert _acts_by_path(rebuilt) == _acts_by_path(model)
    assert rebuilt.yaml["act_swap"] == model.yaml["act_swap"]  # re-applying its own spec does not stack it

    # patching again chains the specs; a rebuild applies them in order and reproduces the model
    patch_model(model, {"act": "keep", "rules": [{"layers": "0-4", "act": "relu"}, {"layers": 22, "act": "keep"}]},
                verify=False)  # fmt: skip
    assert isinstance(model.yaml["act_swap"], list) and len(model.yaml["act_swap"]) == 2
    rebuilt = ActSwapDetectionModel(copy.deepcopy(model.yaml), verbose=False)
    acts = _acts_by_path(model)
    assert acts["model.0"] == "relu" and acts["model.5"] == "frelu" and acts["model.22.cv2.0.0"] == "acon_c"
    assert _acts_by_path(rebuilt) == acts


def test_new_activations_follow_device_and_dtype():
    model = nn.Sequential(Conv(3, 8, 3), Conv(8, 8, 3)).double()
    patch_model(model, "frelu", verify=False)
    assert all(p.dtype == torch.float64 for p in model.parameters())
    assert create_activation("frelu", 8).conv.weight.dtype == torch.float32


def test_patched_class_registry_and_no_import_of_model_classes():
    """patch.py learns ActSwapDetectionModel from nn/tasks.py's registration, never by importing it (no cycle)."""
    import ast
    import inspect

    from yolo_act_swap import patch as patch_mod
    from yolo_act_swap.patch import _PATCHED_CLASS, register_patched_class

    assert _PATCHED_CLASS[DetectionModel] is ActSwapDetectionModel
    imported = {n.module for n in ast.walk(ast.parse(inspect.getsource(patch_mod))) if isinstance(n, ast.ImportFrom)}
    assert not any("nn.tasks" in (m or "") or m == "nn" for m in imported)
    with pytest.raises(TypeError, match="must subclass"):
        register_patched_class(ActSwapDetectionModel, nn.Module)
