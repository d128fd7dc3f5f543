"""Blended activations on a real yolov8n: exact at a = 0 for pointwise and channel-aware targets, exact abrupt swap at
a = 1, collapse to the pure new activation, the YAML record that rebuilds blends, the state-dict value of ``a``."""

import copy

import pytest
import torch
import torch.nn as nn
from helpers import randomize
from ultralytics.nn.tasks import DetectionModel

from yolo_act_swap import ActSwapError, ShapeMismatch, patch_model
from yolo_act_swap.blend import (
    BLEND_KEY,
    Blend,
    blend_value,
    collapse_blends,
    find_blends,
    load_old_activations,
    set_blend,
)
from yolo_act_swap.blocks import find_blocks
from yolo_act_swap.checkpoints import package_classes
from yolo_act_swap.models import build_detection_model

IMGSZ = 64
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def silu():
    """A yolov8n (SiLU) with random weights and BN statistics, in eval mode, never run (tests deepcopy it)."""
    torch.manual_seed(0)
    return randomize(DetectionModel("yolov8n.yaml", nc=3, verbose=False), seed=1).eval()


def _out(model, x):
    with torch.no_grad():
        y = model(x)
    return y[0] if isinstance(y, (list, tuple)) else y


def _blended(src, act, **kw):
    m = copy.deepcopy(src)
    patch_model(m, act, imgsz=IMGSZ, verify=False, blend=True, **kw)
    return randomize_new(m).eval()


@torch.no_grad()
def randomize_new(m):
    """Random parameters in the new activations, so that a = 0 being exact is not a coincidence of their init."""
    for i, (*_, b) in enumerate(find_blends(m)):
        randomize(b.new, seed=100 + i)
    return m


@pytest.mark.parametrize("act", ["relu", "frelu", "acon_c", "dy_relu_b"])
def test_a0_equals_the_original_exactly(silu, act):
    x = torch.rand(2, 3, IMGSZ, IMGSZ, generator=torch.Generator().manual_seed(0))
    m = _blended(silu, act)
    blends = find_blends(m)
    assert len(blends) == len(find_blocks(silu)) and blend_value(m) == 0.0
    assert {type(b.old) for *_, b in blends} == {nn.SiLU}
    assert (_out(m, x) - _out(copy.deepcopy(silu), x)).abs().max().item() == 0
    assert m.yaml[BLEND_KEY] == {} and m.yaml["act_swap"]["act"] == act


@pytest.mark.parametrize("act", ["relu", "frelu"])
def test_a1_and_collapse_equal_the_abrupt_swap(silu, act):
    x = torch.rand(2, 3, IMGSZ, IMGSZ, generator=torch.Generator().manual_seed(1))
    m = _blended(silu, act)
    set_blend(m, 1.0)
    y1 = _out(m, x)
    assert collapse_blends(m) == len(find_blocks(silu))
    assert not find_blends(m) and BLEND_KEY not in m.yaml
    assert {getattr(mod, "_yas_act", None) for mod in m.modules()} - {None} == {act}
    assert torch.equal(_out(m, x), y1)
    abrupt = copy.deepcopy(silu)
    patch_model(abrupt, act, imgsz=IMGSZ, verify=False)
    assert abrupt.load_state_dict(m.state_dict(), strict=True)  # the same modules, key for key
    assert torch.equal(_out(abrupt.eval(), x), y1)
    rebuilt = build_detection_model(copy.deepcopy(m.yaml), nc=3, verbose=False)
    assert not find_blends(rebuilt) and rebuilt.load_state_dict(m.state_dict(), strict=True)


def test_blend_formula_and_in_place_activations():
    """Between 0 and 1 the output is (1 - a) old + a new, also when the activations work in place."""
    x = torch.randn(2, 4, 5, 5)
    b = Blend(nn.ReLU(inplace=True), nn.LeakyReLU(0.3, inplace=True), a=0.25)
    y = b(x.clone())
    assert torch.allclose(y, 0.75 * torch.relu(x) + 0.25 * nn.functional.leaky_relu(x, 0.3), atol=1e-6)
    assert "a=0.25" in repr(b) and b._yas_act == "blend(relu->leakyrelu)"


def test_a_lives_in_the_state_dict_and_ignores_ema_updates(silu):
    m = _blended(silu, "relu")
    set_blend(m, 0.4)
    sd = m.state_dict()
    assert sd["model.0.act._extra_state"].item() == 0.4
    for v in m.state_dict().values():  # what ultralytics' ModelEMA.update does to every floating-point entry
        if v.dtype.is_floating_point:
            v *= 0.5
    assert blend_value(m) == 0.4
    other = build_detection_model(copy.deepcopy(m.yaml), nc=3, verbose=False)
    assert blend_value(other) == 0.0
    other.load_state_dict(sd)
    assert blend_value(other) == 0.4


def test_set_blend_checks_its_value(silu):
    m = _blended(silu, "relu")
    for bad in (-0.1, 1.5, float("nan"), "x"):
        with pytest.raises(ActSwapError, match="blend weight"):
            set_blend(m, bad)
    assert set_blend(m, 0.5) == len(find_blends(m))
    find_blends(m)[0][3].set_a(0.2)
    with pytest.raises(ActSwapError, match="different weights"):
        blend_value(m)


def test_rebuild_from_the_yaml_blends_from_the_trained_activation(silu):
    """A frelu-trained model moving to relu: the rebuild blends frelu -> relu and takes frelu's trained tensors."""
    frelu = copy.deepcopy(silu)
    patch_model(frelu, "frelu", imgsz=IMGSZ, verify=False)
    randomize(frelu, seed=3).eval()
    cfg = copy.deepcopy(frelu.yaml)
    cfg["act_swap"] = [cfg["act_swap"], {"act": "relu"}]
    cfg[BLEND_KEY] = {"epochs": 1}
    m = build_detection_model(cfg, nc=3, verbose=False)
    assert m.yaml["act_swap"] == cfg["act_swap"] and m.yaml[BLEND_KEY] == {"epochs": 1}  # the record is unchanged
    assert {b.old._yas_act for *_, b in find_blends(m)} == {"frelu"}
    m.load(frelu)
    assert load_old_activations(m, frelu) > 0
    x = torch.rand(2, 3, IMGSZ, IMGSZ)
    assert (_out(m.eval(), x) - _out(frelu, x)).abs().max().item() == 0


def test_failed_blend_rolls_back_and_blends_do_not_nest(silu):
    m = copy.deepcopy(silu)
    before = copy.deepcopy(m.yaml)
    with pytest.raises(ShapeMismatch):
        patch_model(m, "glu", imgsz=IMGSZ, blend=True)
    assert m.yaml == before and not find_blends(m)
    patch_model(m, "relu", imgsz=IMGSZ, blend=True)  # verification runs on the blended model
    with pytest.raises(ActSwapError, match="already holds a blend"):
        patch_model(m, "frelu", imgsz=IMGSZ, verify=False, blend=True)
    assert len(find_blends(m)) == len(find_blocks(silu)) and {b.new._yas_act for *_, b in find_blends(m)} == {"relu"}


def test_blend_is_allowed_in_safe_checkpoints():
    assert Blend in package_classes()
