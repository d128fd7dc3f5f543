"""Shape verification: the shape-only fast paths agree with real meta kernels, meta copies share no state, the real
forward leaves no trace, and mismatches are reported with block path, activation, mode, size and shapes."""

import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from ultralytics.nn.modules import Conv
from ultralytics.nn.tasks import DetectionModel

from yolo_act_swap import PatchError, ShapeMismatch, patch_model, verify_shapes
from yolo_act_swap.verify import ShapeOnly, act_output_shape, check_sizes, meta_copy, preserved_state

META = "meta"


pytestmark = pytest.mark.usefixtures("one_thread")


def m(*shape):
    return torch.empty(shape, device=META)


CASES = {
    "conv": lambda: F.conv2d(m(2, 8, 17, 20), m(16, 4, 3, 3), m(16), stride=2, padding=1, groups=2),
    "conv_dilated": lambda: F.conv2d(m(1, 4, 15, 15), m(4, 1, 3, 3), None, 1, 2, 2, 4),
    "cat": lambda: torch.cat([m(2, 3, 5, 5), m(2, 4, 5, 5)], 1),
    "cat_neg": lambda: torch.cat((m(2, 3, 5), m(2, 3, 2)), dim=-1),
    "stack": lambda: torch.stack([m(3, 4), m(3, 4)], -1),
    "add_bcast": lambda: m(2, 1, 5, 1) + m(3, 1, 7),
    "mul_scalar": lambda: 2 * m(2, 3),
    "maximum": lambda: torch.maximum(m(2, 3, 4, 4), m(1, 3, 1, 1)),
    "compare": lambda: m(2, 3) > 0.5,
    "where": lambda: torch.where(m(2, 3) > 0, m(2, 3), m(1, 3)),
    "silu_inplace": lambda: F.silu(m(2, 3), inplace=True),
    "batch_norm": lambda: F.batch_norm(m(2, 3, 4, 4), m(3), m(3), m(3), m(3), True, 0.1, 1e-3),
    "maxpool": lambda: F.max_pool2d(m(2, 3, 13, 9), 5, 1, 2),
    "maxpool_s2": lambda: nn.MaxPool2d(3, 2, 1)(m(2, 3, 13, 9)),
    "upsample": lambda: F.interpolate(m(2, 3, 5, 7), scale_factor=2.0, mode="nearest"),
    "matmul": lambda: m(2, 4, 5, 6) @ m(2, 1, 6, 3),
    "linear": lambda: F.linear(m(2, 7, 5), m(9, 5), m(9)),
    "mean": lambda: m(2, 3, 4, 5).mean((2, 3), keepdim=True),
    "sum": lambda: m(2, 3, 4, 5).sum(-1),
    "prelu": lambda: F.prelu(m(2, 3, 4, 4), m(3)),
    "new_full": lambda: m(2, 3).new_full((4, 1), 2.0),
    "new_zeros_varargs": lambda: m(2, 3).new_zeros(4, 5),
    # layouts: results must be laid out as real kernels lay them out, or a later .view() behaves differently
    "sigmoid_transposed": lambda: m(2, 4, 6, 5).transpose(1, 2).sigmoid(),
    "softmax_transposed": lambda: m(2, 4, 6, 5).transpose(1, 2).softmax(1),
    "mul_slice": lambda: m(2, 4, 6, 5)[..., :2] * 2.0,
    "add_channels_last": lambda: m(2, 4, 6, 5).contiguous(memory_format=torch.channels_last) + m(1, 4, 1, 1),
    "conv_chunk": lambda: F.conv2d(m(2, 8, 9, 9).chunk(2, 1)[1], m(4, 4, 3, 3)),
    "cat_channels_last": lambda: torch.cat([m(2, 4, 6, 5).contiguous(memory_format=torch.channels_last)] * 2, 1),
    "cat_mixed": lambda: torch.cat([m(2, 4, 6, 5).contiguous(memory_format=torch.channels_last), m(2, 4, 6, 5)], 1),
    "cat_permuted_3d": lambda: torch.cat([m(3, 2, 5).transpose(0, 1)] * 2, 1),
    "bn_transposed": lambda: F.batch_norm(m(2, 6, 4, 5).transpose(2, 3), m(6), m(6)),
    "gt_transposed": lambda: m(2, 4, 6).transpose(1, 2) > 0,
}
ERRORS = {
    "conv_channels": lambda: F.conv2d(m(2, 8, 9, 9), m(16, 3, 3, 3)),
    "cat_mismatch": lambda: torch.cat([m(2, 3, 5, 5), m(2, 4, 6, 5)], 1),
    "broadcast": lambda: m(2, 3) + m(4),
    "batch_norm_channels": lambda: F.batch_norm(m(2, 4, 3, 3), m(3), m(3), training=False),
    "linear_in": lambda: F.linear(m(2, 6), m(9, 5)),
    "matmul_inner": lambda: m(2, 4, 5) @ m(2, 6, 3),
    "inplace_bcast": lambda: m(1, 3).add_(m(2, 3)),
}


@pytest.mark.parametrize("name", CASES)
def test_fast_paths_agree_with_meta_kernels(name):
    with torch.no_grad():
        real = CASES[name]()
        with ShapeOnly():
            fast = CASES[name]()
    assert fast.device.type == META and fast.shape == real.shape and fast.dtype == real.dtype
    assert fast.stride() == real.stride()


@pytest.mark.parametrize("name", ERRORS)
def test_fast_paths_raise_like_meta_kernels(name):
    with pytest.raises(RuntimeError):
        ERRORS[name]()
    with pytest.raises(RuntimeError), ShapeOnly():
        ERRORS[name]()


def test_fast_paths_leave_real_tensors_alone():
    x = torch.ones(2, 3)
    with ShapeOnly():
        y = x + x
        z = torch.cat([x, x]) * torch.tensor(2.0)
    assert y.device.type == "cpu" and torch.equal(y, torch.full((2, 3), 2.0)) and z.sum() == 24


@pytest.fixture(scope="module")
def v8():
    torch.manual_seed(0)
    return DetectionModel("yolov8n.yaml", verbose=False)


def test_meta_copy_shares_no_state(v8):
    model = copy.deepcopy(v8)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    mc = meta_copy(model)
    assert all(t.device.type == META for t in [*mc.parameters(), *mc.buffers()])
    assert {k: v.shape for k, v in mc.state_dict().items()} == {k: v.shape for k, v in before.items()}
    head, mhead = model.model[-1], mc.model[-1]
    assert mhead is not head and mhead.cv2 is not head.cv2
    assert mhead.one2many["box_head"] is mhead.cv2  # modules held in plain dicts follow the copy
    mc.eval()
    with torch.no_grad(), ShapeOnly():
        out = mc(torch.empty(1, 3, 640, 480, device=META))
    assert out[0].shape == (1, 84, 6300)
    assert head.shape is None or head.anchors.device.type == "cpu"  # the real head's anchor cache is untouched
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_preserved_state_restores_buffers_flags_and_caches(v8):
    model = copy.deepcopy(v8)
    model.train()
    handle = model.model[0].register_forward_hook(lambda *a: None)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with preserved_state(model), torch.no_grad():
        model(torch.rand(2, 3, 64, 64))  # train mode: BatchNorm statistics move
        model.eval()
        model(torch.rand(1, 3, 64, 64))  # eval mode: Detect caches anchors
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert all(mod.training for mod in model.modules())
    assert model.model[-1].shape is None
    handle.remove()  # hook dicts were restored in place, so old handles still work
    assert not model.model[0]._forward_hooks


def test_verify_against_a_reference_module(v8):
    ref = copy.deepcopy(v8)
    model = copy.deepcopy(v8)
    patch_model(model, "mish", verify=False)
    report = verify_shapes(model, ref, imgsz=64)
    assert report.ok and "57 blocks, eval+train at 64x64 and 32x64" in str(report)
    assert any(c.startswith("fused") for c in report.checks) and any("finite" in c for c in report.checks)
    assert verify_shapes(model, imgsz=64, fused=False, finite=False).ok  # no reference: activations keep shapes


class _Crop(nn.Module):
    def forward(self, x):
        return x[..., :-1] if x.shape[-1] != x.shape[-2] else x  # only at the non-square size


def test_mismatch_names_block_activation_mode_size_and_shapes():
    torch.manual_seed(0)
    ref = nn.Sequential(Conv(3, 8, 3, 2), Conv(8, 8, 3))
    bad = copy.deepcopy(ref)
    bad[1].act = _Crop()
    with pytest.raises(
        ShapeMismatch,
        match=r"^1 \(Conv, _Crop\): activation output \(2, 8, 16, 31\) in eval 32x64, "
        r"expected \(2, 8, 16, 32\)$",
    ):
        verify_shapes(bad, ref, imgsz=64)
    report = verify_shapes(bad, ref, imgsz=64, strict=False)
    assert not report.ok and str(report).startswith("FAILED: 1 (Conv, _Crop)")


def test_forward_failure_names_the_block():
    ref = nn.Sequential(Conv(3, 8, 3), Conv(8, 8, 3))
    bad = copy.deepcopy(ref)
    bad[0].act = nn.Conv2d(8, 4, 1)  # not an activation at all: the next conv gets 4 channels
    with pytest.raises(ShapeMismatch, match=r"^0 \(Conv, Conv2d\): activation output \(2, 4, 64, 64\) in eval 64x64"):
        verify_shapes(bad, ref, imgsz=64)
    bad[0].act = nn.Identity()
    bad[1].act = nn.Conv2d(7, 7, 1)
    with pytest.raises(PatchError, match=r"the forward fails in eval 64x64 in 1 \(activation\): RuntimeError"):
        verify_shapes(bad, ref, imgsz=64, sites=None)


class _NoMeta(nn.Module):
    """Shape-preserving, but refuses the meta device (as a custom autograd function with autocast may)."""

    def forward(self, x):
        if x.device.type == META:
            raise RuntimeError("unsupported scalarType")
        return torch.relu(x)


def test_activation_without_meta_support_is_checked_on_real_tensors():
    assert act_output_shape(_NoMeta(), (2, 8, 640, 480)) == ((2, 8, 640, 480), False)
    assert act_output_shape(nn.GLU(1), (2, 8, 640, 480)) == ((2, 4, 640, 480), True)
    model = nn.Sequential(Conv(3, 8, 3, 2), Conv(8, 8, 3))
    ref = copy.deepcopy(model)
    model[0].act, model[1].act = _NoMeta(), _NoMeta()
    report = verify_shapes(model, ref, imgsz=64)
    assert report.ok and "_NoMeta has no meta support: checked on real 8x8 tensors" in str(report)


COLD = """
import sys
from ultralytics.nn.tasks import DetectionModel
from yolo_act_swap import patch_model
r = patch_model(DetectionModel(sys.argv[1], verbose=False), "frelu", imgsz=320)
assert r.verification.ok and r.gflops_after
heavy = [m for m in ("torch._dynamo", "sympy", "torch.onnx") if m in sys.modules]
print("heavy:", heavy)
"""


def test_cold_verification_stays_off_the_slow_meta_paths():
    """A fresh process patches and verifies without importing torch._dynamo or sympy (seconds each): every op our
    models run on meta has a shape-only fast path; nor torch.onnx (25-30 ms), which ``exporting()`` asks only once an
    export has imported it. Guards the cost target measured in benchmarks/verify.py."""
    import os
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-c", COLD, "yolo11n.yaml"], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "heavy: []"


def test_sizes():
    assert check_sizes(640, 32) == [(640, 640), (480, 640)]
    assert check_sizes(64, 32) == [(64, 64), (32, 64)]
    assert check_sizes(100, 32) == [(128, 128), (96, 128)]
    assert check_sizes((320, 256), 32) == [(320, 256), (288, 256)]  # 3/4 of 320 is 256 = w: one stride less


def test_shape_mode_is_switchable_and_plain_meta_agrees():
    """benchmarks/verify.py compares ShapeOnly with plain meta kernels through set_shape_mode: same verdicts."""
    import contextlib

    from yolo_act_swap.verify import set_shape_mode, shape_mode

    ref = nn.Sequential(Conv(3, 8, 3, 2), Conv(8, 8, 3))
    bad = copy.deepcopy(ref)
    bad[1].act = _Crop()
    assert isinstance(shape_mode(), ShapeOnly)
    prev = set_shape_mode(contextlib.nullcontext)
    try:
        assert not isinstance(shape_mode(), ShapeOnly)
        assert verify_shapes(copy.deepcopy(ref), ref, imgsz=64).ok
        with pytest.raises(ShapeMismatch, match=r"^1 \(Conv, _Crop\): activation output \(2, 8, 16, 31\)"):
            verify_shapes(bad, ref, imgsz=64)
    finally:
        set_shape_mode(prev)
    assert isinstance(shape_mode(), ShapeOnly)


def test_patching_pauses_the_garbage_collector_and_restores_it(v8):
    """patch_model and verify_shapes run with the cyclic collector paused (a full collection walks every object the
    process holds, about 0.14 s with torch imported) and hand it back as they found it, also after a failure."""
    import gc

    seen = []
    model = copy.deepcopy(v8)
    hook = model.model[0].register_forward_pre_hook(lambda mod, x: seen.append(gc.isenabled()))
    assert gc.isenabled()
    try:
        assert patch_model(model, "relu", imgsz=64).verification.ok
        assert seen and not any(seen) and gc.isenabled()
        with pytest.raises(ShapeMismatch):
            patch_model(copy.deepcopy(v8), "glu", imgsz=64)
        assert gc.isenabled()
        gc.disable()
        verify_shapes(model, imgsz=64)
        assert not gc.isenabled()  # a caller's own pause is left alone
    finally:
        gc.enable()
        hook.remove()


def test_verification_runs_single_threaded_and_restores_the_thread_count(v8):
    """Verification's real forwards are tiny: they run on one thread (on a busy machine each op of a multi-threaded
    region waits for a descheduled thread), and the caller's thread count comes back, also after a failure."""
    model = copy.deepcopy(v8)
    seen = []
    hook = model.model[0].register_forward_pre_hook(lambda mod, x: seen.append(torch.get_num_threads()))
    torch.set_num_threads(2)
    try:
        report = patch_model(model, "relu", imgsz=64)
        assert report.verification.ok and seen and set(seen) == {1}
        assert torch.get_num_threads() == 2
        with pytest.raises(ShapeMismatch):
            patch_model(copy.deepcopy(v8), "glu", imgsz=64)
        assert torch.get_num_threads() == 2
    finally:
        hook.remove()
        torch.set_num_threads(1)
