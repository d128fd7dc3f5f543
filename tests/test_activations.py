"""One battery over every registered activation, in the manner of PyTorch's OpInfo tests.

Every entry of ``list_activations()`` gets the same checks: forward against a reference formula written here with plain
tensor math, gradcheck in float64 (input and parameters), shapes, train/eval and batch size 1, deepcopy/pickle, bf16
autocast on large inputs, ONNX export checked with onnxruntime, the SiLU-preserving init, and the registry's errors.
An activation that is registered without a reference formula here fails the battery: add its formula to ``REFS``.
Where a property does not apply (glu changes the shape, rrelu is random in training, an entry is not exportable), the
test asserts the documented refusal instead of skipping.
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import inspect
import io
import math
import pickle
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from helpers import randomize

from yolo_act_swap.activations import (
    ACT_TAG,
    activation_table,
    all_names,
    create_activation,
    get_activation_info,
    list_activations,
    register_activation,
    temporary_activation,
    unregister_activation,
)
from yolo_act_swap.errors import ActivationArgError, ActSwapError, UnknownActivation

C = 4  # channels of every test input: even (glu halves it), tiny (CI budget)
INFOS = list_activations()
IDS = [i.name for i in INFOS]
KINDS = {"pointwise", "channel", "export", "channel-aware"}
RANDOM_IN_TRAINING = {"rrelu": "draws a random negative slope in U(lower, upper) on every training forward"}
SHAPE_RULES = {"glu": lambda s: (s[0], s[1] // 2, *s[2:])}  # entries with shape_preserving=False: expected shape
KINKS = (0.0, 0.5, -0.5, 1.0, -1.0, 3.0, -3.0, 6.0, -6.0)  # where some pointwise activation is not differentiable
REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("one_thread")


# --- inputs -----------------------------------------------------------------------------------------------------------


def grid(shape=(2, C, 5, 5), dtype=torch.float64) -> torch.Tensor:
    """A fixed grid over [-8, 8] plus the kink points and a few large values, shuffled into ``shape``."""
    n = math.prod(shape)
    special = torch.tensor([0.0, 0.5, -0.5, 1.0, -1.0, 3.0, -3.0, 6.0, -6.0, 1e-3, -1e-3, 20.0, -20.0])
    v = torch.cat([special, torch.linspace(-8.0, 8.0, n - len(special))])
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    return v[perm].reshape(shape).to(dtype)


def randn(shape=(2, C, 5, 5), scale=2.0, dtype=torch.float64, seed=1) -> torch.Tensor:
    """Seeded normal input, nudged at least 0.04 away from every kink so that finite differences are valid."""
    x = torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * scale
    dist = (x[..., None] - torch.tensor(KINKS, dtype=torch.float64)).abs().min(-1).values
    return torch.where(dist < 0.04, x + 0.05, x).to(dtype)


def build(info, channels: int = C, **kwargs) -> nn.Module:
    """A fresh module; channel-aware ones get random parameters."""
    torch.manual_seed(0)
    m = create_activation(info.name, channels, **kwargs)
    return randomize(m) if info.channel_aware else m


# --- reference formulas (plain tensor math; float64) ------------------------------------------------------------------


def _sig(x):
    return 1.0 / (1.0 + torch.exp(-x))


def _tanh(x):
    e = torch.exp(-2.0 * x.abs())
    return torch.sign(x) * (1.0 - e) / (1.0 + e)


def _softplus(x, beta=1.0, threshold=20.0):
    return torch.where(beta * x > threshold, x, torch.log1p(torch.exp(beta * x)) / beta)


def _relu(x):
    return torch.where(x > 0, x, torch.zeros_like(x))


def _softmax(x):
    e = torch.exp(x - x.amax(1, keepdim=True))
    return e / e.sum(1, keepdim=True)


def _log_softmax(x):
    z = x - x.amax(1, keepdim=True)
    return z - torch.log(torch.exp(z).sum(1, keepdim=True))


def _c(t):
    """A per-channel vector or (1,C,1,1) tensor broadcast over [N,C,H,W]."""
    return t.reshape(1, -1, 1, 1)


def _bn(bn, t):
    """BatchNorm by hand: batch statistics in training, running statistics in eval."""
    if bn is None or isinstance(bn, nn.Identity):
        return t
    if bn.training or bn.running_mean is None:
        mean, var = t.mean((0, 2, 3), keepdim=True), t.var((0, 2, 3), unbiased=False, keepdim=True)
    else:
        mean, var = _c(bn.running_mean), _c(bn.running_var)
    y = (t - mean) / torch.sqrt(var + bn.eps)
    return y * _c(bn.weight) + _c(bn.bias) if bn.affine else y


def ref_frelu(m, x):
    """max(x, BN(depthwise conv(x)))."""
    cv = m.conv
    t = F.conv2d(x, cv.weight, cv.bias, cv.stride, cv.padding, cv.dilation, cv.groups)
    return torch.maximum(x, _bn(getattr(m, "bn", None), t))


def ref_acon_c(m, x):
    """(p1 - p2) x sigmoid(beta (p1 - p2) x) + p2 x."""
    d = (m.p1 - m.p2) * x
    return d * _sig(m.beta * d) + m.p2 * x


_EXTERNAL = REPO / "benchmarks" / "reference.py"


@functools.lru_cache(maxsize=1)
def _load_external():
    spec = importlib.util.spec_from_file_location("_yas_bench_reference", _EXTERNAL)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _external(fn_name):
    """A reference from ``benchmarks/reference.py`` (the channel-aware implementations written the published way)."""

    def ref(m, x):
        if not _EXTERNAL.is_file():
            pytest.skip(f"{fn_name}: benchmarks/reference.py is missing, so there is no reference to compare with")
        mod = _load_external()
        if not hasattr(mod, fn_name):
            pytest.skip(f"benchmarks/reference.py has no {fn_name}(module, x)")
        return getattr(mod, fn_name)(m, x)

    return ref


SELU_ALPHA, SELU_SCALE = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946

# name -> ref(module, x, **the factory's keywords with their documented defaults)
REFS = {
    "identity": lambda m, x: x,
    "relu": lambda m, x: _relu(x),
    "rrelu": lambda m, x, lower=1 / 8, upper=1 / 3: torch.where(x >= 0, x, x * (lower + upper) / 2),  # eval
    "hardtanh": lambda m, x, min_val=-1.0, max_val=1.0: torch.clamp(x, min_val, max_val),
    "relu6": lambda m, x: torch.clamp(x, 0.0, 6.0),
    "sigmoid": lambda m, x: _sig(x),
    "hard_sigmoid": lambda m, x: torch.clamp(x / 6 + 0.5, 0.0, 1.0),
    "tanh": lambda m, x: _tanh(x),
    "silu": lambda m, x: x * _sig(x),
    "mish": lambda m, x: x * _tanh(_softplus(x)),
    "hard_swish": lambda m, x: x * torch.clamp(x + 3, 0.0, 6.0) / 6,
    "elu": lambda m, x, alpha=1.0: torch.where(x > 0, x, alpha * (torch.exp(x) - 1)),
    "celu": lambda m, x, alpha=1.0: _relu(x) - _relu(-alpha * (torch.exp(x / alpha) - 1)),
    "selu": lambda m, x: SELU_SCALE * torch.where(x > 0, x, SELU_ALPHA * (torch.exp(x) - 1)),
    "gelu": lambda m, x, approximate="none": (
        0.5 * x * (1 + torch.erf(x / math.sqrt(2)))
        if approximate == "none"
        else 0.5 * x * (1 + _tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    ),
    "gelu_tanh": lambda m, x: 0.5 * x * (1 + _tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3))),
    "hardshrink": lambda m, x, lambd=0.5: torch.where(x.abs() > lambd, x, torch.zeros_like(x)),
    "leaky_relu": lambda m, x, negative_slope=0.01: torch.where(x >= 0, x, negative_slope * x),
    "log_sigmoid": lambda m, x: -_softplus(-x, threshold=math.inf),
    "softplus": lambda m, x, beta=1.0, threshold=20.0: _softplus(x, beta, threshold),
    "softshrink": lambda m, x, lambd=0.5: torch.where(
        x > lambd, x - lambd, torch.where(x < -lambd, x + lambd, torch.zeros_like(x))
    ),
    "prelu": lambda m, x, per_channel=False, init=0.25: torch.where(x >= 0, x, init * x),
    "softsign": lambda m, x: x / (1 + x.abs()),
    "tanhshrink": lambda m, x: x - _tanh(x),
    "threshold": lambda m, x, threshold=0.0, value=0.0: torch.where(x > threshold, x, torch.full_like(x, value)),
    "softmax": lambda m, x: _softmax(x),
    "softmin": lambda m, x: _softmax(-x),
    "log_softmax": lambda m, x: _log_softmax(x),
    "glu": lambda m, x: x[:, : x.shape[1] // 2] * _sig(x[:, x.shape[1] // 2 :]),
    "export_silu": lambda m, x: x * _sig(x),
    "export_hard_swish": lambda m, x: x * torch.clamp(x + 3, 0.0, 6.0) / 6,
    "frelu": ref_frelu,
    "acon_c": ref_acon_c,
    "meta_acon_c": _external("ref_meta_acon_c"),
    "dy_relu_a": _external("ref_dy_relu"),
    "dy_relu_b": _external("ref_dy_relu"),
    "dy_relu_c": _external("ref_dy_relu"),
}

# non-default keywords: (name, kwargs); the reference gets the same kwargs
KWARG_CASES = [
    ("leaky_relu", {"negative_slope": 0.1}),  # yolov7-tiny
    ("gelu", {"approximate": "tanh"}),
    ("elu", {"alpha": 0.5}),
    ("celu", {"alpha": 2.0}),
    ("hardtanh", {"min_val": -2.0, "max_val": 3.0}),
    ("rrelu", {"lower": 0.1, "upper": 0.3}),
    ("softplus", {"beta": 2.0, "threshold": 5.0}),
    ("hardshrink", {"lambd": 1.0}),
    ("softshrink", {"lambd": 1.0}),
    ("threshold", {"threshold": 0.5, "value": -1.0}),
    ("prelu", {"init": 0.1}),
]


def reference(info, m, x, **kwargs):
    if info.name not in REFS:
        pytest.fail(f"activation {info.name!r} has no reference formula: add one to REFS in {Path(__file__).name}")
    kwargs = {k: float(v) if isinstance(v, str) and k != "approximate" else v for k, v in kwargs.items()}
    return REFS[info.name](m, x, **kwargs)


# --- forward against the formula --------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("info", INFOS, ids=IDS)
def test_forward_matches_formula(info, dtype, mode):
    m = build(info).to(dtype).train(mode == "train")
    x = grid(dtype=dtype)
    m64 = copy.deepcopy(m).double()  # the reference reads the module's own parameters, in float64
    y = m(x)
    assert y.dtype == dtype
    if mode == "train" and info.name in RANDOM_IN_TRAINING:  # rrelu: slope in [lower, upper] on negatives
        neg = x < 0
        assert torch.equal(y[~neg], x[~neg])
        slope = y[neg] / x[neg]
        assert ((slope >= m.lower - 1e-6) & (slope <= m.upper + 1e-6)).all()
        assert slope.unique().numel() > 1, "rrelu should draw different slopes in training"
        return
    ref = reference(info, m64, x.double())
    tol = dict(atol=1e-9, rtol=1e-7) if dtype == torch.float64 else dict(atol=2e-5, rtol=2e-5)
    torch.testing.assert_close(y.double(), ref, **tol)


@pytest.mark.parametrize("name,kwargs", KWARG_CASES, ids=[f"{n}-{'-'.join(k)}" for n, k in KWARG_CASES])
def test_forward_with_keywords(name, kwargs):
    info = get_activation_info(name)
    m = create_activation(name, C, **kwargs).double().eval()
    x = grid()
    torch.testing.assert_close(m(x), reference(info, m, x, **kwargs), atol=1e-9, rtol=1e-7)


def test_prelu_per_channel():
    m = create_activation("prelu", C, per_channel=True, init=0.1)
    assert m.weight.shape == (C,) and torch.all(m.weight == 0.1)
    assert get_activation_info("prelu").params_per_channel(64, per_channel=True) == 1
    assert get_activation_info("prelu").params_per_channel(64) == 1 / 64
    with torch.no_grad():
        m.weight.copy_(torch.arange(1, C + 1) / 10)
    x = grid(dtype=torch.float32)
    torch.testing.assert_close(m(x), torch.where(x >= 0, x, _c(m.weight) * x))


def test_gelu_tanh_entry_is_gelu_approximate_tanh():
    x = grid()
    a = create_activation("gelu_tanh").double()
    b = create_activation("gelu", approximate="tanh").double()
    assert torch.equal(a(x), b(x))
    assert not torch.equal(a(x), create_activation("gelu").double()(x))


# --- gradients --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("info", INFOS, ids=IDS)
def test_gradcheck_float64(info, mode):
    """Input and parameter gradients: fast gradcheck (random projections of the whole Jacobian) on [2, C, 5, 5], then
    the full input Jacobian, element by element, on a smaller [2, C, 3, 3]."""
    m = build(info).double().train(mode == "train")
    x = randn().requires_grad_()
    if mode == "train" and info.name in RANDOM_IN_TRAINING:  # not a function in training: refuse to gradcheck
        with torch.no_grad():
            assert not torch.equal(m(x), m(x)), RANDOM_IN_TRAINING[info.name]
        return
    names = [n for n, _ in m.named_parameters()]
    params = [p.detach().clone().requires_grad_() for _, p in m.named_parameters()]

    def fn(x, *ps):
        return torch.func.functional_call(m, dict(zip(names, ps)), (x,))

    assert torch.autograd.gradcheck(fn, (x, *params), eps=1e-6, atol=1e-5, rtol=1e-3, fast_mode=True)
    assert torch.autograd.gradcheck(m, (randn((2, C, 3, 3), seed=5).requires_grad_(),), eps=1e-6, atol=1e-5, rtol=1e-3)


def test_memory_efficient_mish_is_mish_and_saves_only_input():
    """``memory_efficient_mish`` is an alias of ``mish``: nn.Mish already keeps only its input (docs/performance.md)."""
    assert get_activation_info("memory_efficient_mish").name == "mish"
    saved = []

    def pack(t):
        saved.append(t)
        return t

    x = randn(dtype=torch.float32).requires_grad_()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = create_activation("memory_efficient_mish")(x)
    assert len(saved) == 1 and saved[0].data_ptr() == x.data_ptr()
    y.sum().backward()
    xr = x.detach().clone().requires_grad_()
    F.mish(xr).sum().backward()
    torch.testing.assert_close(x.grad, xr.grad)


def test_old_memory_efficient_mish_pickles_still_load():
    from yolo_act_swap.activations.export import MemoryEfficientMish

    old = MemoryEfficientMish.__new__(MemoryEfficientMish)
    nn.Module.__init__(old)  # what an instance of the former class carried: no ``inplace`` attribute
    m = pickle.loads(pickle.dumps(old))
    x = randn(dtype=torch.float32)
    torch.testing.assert_close(m(x), F.mish(x))


# --- shapes, modes, batch size 1 --------------------------------------------------------------------------------------


@pytest.mark.parametrize("info", INFOS, ids=IDS)
def test_shape(info):
    m = build(info).eval()
    for shape in [(2, C, 5, 5), (1, C, 2, 2), (3, C, 7, 3)]:
        y = m(randn(shape, dtype=torch.float32))
        if info.shape_preserving:
            assert y.shape == shape
        else:
            assert info.name in SHAPE_RULES, f"{info.name!r} changes the shape: add its rule to SHAPE_RULES"
            assert y.shape == SHAPE_RULES[info.name](shape) != shape
    if info.name == "glu":
        assert "halves the channels" in info.description.lower()


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("info", INFOS, ids=IDS)
def test_train_eval_and_batch_size(info, mode, batch):
    m = build(info).train(mode == "train")
    x = randn((batch, C, 6, 6), dtype=torch.float32).requires_grad_()
    y = m(x)
    assert torch.isfinite(y).all()
    (y * randn(y.shape, dtype=torch.float32, seed=2)).sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape and torch.isfinite(x.grad).all()
    for n, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), f"no finite gradient for parameter {n}"
    if mode == "eval":  # eval is deterministic and does not move BN statistics
        with torch.no_grad():
            assert torch.equal(m(x), m(x))


# --- copies -----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("info", INFOS, ids=IDS)
def test_deepcopy_and_pickle(info):
    m = build(info).eval()
    x = randn(dtype=torch.float32)
    with torch.no_grad():
        y = m(x)
        for m2 in (copy.deepcopy(m), pickle.loads(pickle.dumps(m))):
            assert type(m2) is type(m) and getattr(m2, ACT_TAG) == info.name
            assert torch.equal(m2(x), y)
            for p, p2 in zip(m.parameters(), m2.parameters()):
                assert p.data_ptr() != p2.data_ptr()
    assert repr(m)  # extra_repr must not raise


# --- mixed precision --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("in_dtype", [torch.float32, torch.bfloat16], ids=["f32-in", "bf16-in"])
@pytest.mark.parametrize("info", INFOS, ids=IDS)
def test_bf16_autocast_finite(info, in_dtype):
    m = build(info).train()
    x = (randn((2, C, 6, 6), scale=10.0, dtype=torch.float32)).to(in_dtype).requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = m(x)
    assert torch.isfinite(y).all(), "non-finite forward under bf16 autocast on N(0, 10^2)"
    (y.float() * randn(y.shape, dtype=torch.float32, seed=3)).sum().backward()
    assert torch.isfinite(x.grad).all(), "non-finite input gradient under bf16 autocast"
    for n, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), f"non-finite gradient for {n} under bf16 autocast"


# --- channels_last ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("info", INFOS, ids=IDS)
def test_channels_last_in_and_out(info, mode, monkeypatch):
    """A channels_last input gives a channels_last output and input gradient with the same values as NCHW."""
    from yolo_act_swap.activations import frelu

    monkeypatch.setattr(frelu, "RECOMPUTE_MIN_ELEMENTS", 0)  # FReLU's fused function too, not only the small path
    m = build(info).double().train(mode == "train")
    m_cl = copy.deepcopy(m)
    x = randn((2, C, 6, 5))
    w = randn((2, C, 6, 5), seed=2)
    if info.name in RANDOM_IN_TRAINING and mode == "train":
        torch.manual_seed(5)
    xa = x.clone().requires_grad_()
    ya = m(xa)
    (ya * w[:, : ya.shape[1]]).sum().backward()
    if info.name in RANDOM_IN_TRAINING and mode == "train":
        torch.manual_seed(5)
    xb = x.contiguous(memory_format=torch.channels_last).requires_grad_()
    yb = m_cl(xb)
    (yb * w[:, : yb.shape[1]]).sum().backward()
    if info.shape_preserving and ya.shape[1] == C:
        assert yb.is_contiguous(memory_format=torch.channels_last), f"{info.name} returned NCHW for channels_last"
        assert xb.grad.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(yb, ya, atol=1e-9, rtol=1e-9)
    torch.testing.assert_close(xb.grad, xa.grad, atol=1e-9, rtol=1e-9)
    for (n, p), (_, q) in zip(m.named_parameters(), m_cl.named_parameters()):
        torch.testing.assert_close(q.grad, p.grad, atol=1e-9, rtol=1e-9, msg=lambda s: f"{n}: {s}")


# --- ONNX -------------------------------------------------------------------------------------------------------------


# the TorchScript-based exporter (what ultralytics uses); torch >= 2.5 has a ``dynamo`` switch that must be off
_LEGACY_EXPORTER = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}


def _onnx_roundtrip(m, x):
    """Export ``m`` (dynamic batch, height, width) and run it with onnxruntime on ``x`` and on a second shape."""
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    f = io.BytesIO()
    axes = {0: "batch", 2: "height", 3: "width"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(m, (x,), f, opset_version=17, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": axes, "y": axes}, **_LEGACY_EXPORTER)
    onnx.checker.check_model(onnx.load_from_string(f.getvalue()))
    sess = ort.InferenceSession(f.getvalue(), providers=["CPUExecutionProvider"])
    worst = 0.0
    for xi in (x, randn((1, C, 7, 9), dtype=torch.float32, seed=4)):
        with torch.no_grad():
            ref = m(xi)
        out = torch.from_numpy(sess.run(None, {"x": xi.numpy()})[0])
        if out.shape != ref.shape:
            return math.inf
        worst = max(worst, float((out - ref).abs().max()))
    return worst


@pytest.mark.parametrize("info", INFOS, ids=IDS)
def test_onnx_export(info):
    m = build(info).eval()
    x = randn(dtype=torch.float32)
    if info.onnx_exportable:
        assert _onnx_roundtrip(m, x) < 1e-4
        return
    # not exportable: the reason is documented (shown by --list) and export really fails or disagrees
    assert "onnx" in info.description.lower(), f"{info.name!r} is not ONNX-exportable: say why in its description"
    try:
        err = _onnx_roundtrip(m, x)
    except pytest.skip.Exception:
        raise
    except Exception:  # noqa: BLE001 - the documented refusal
        return
    assert err > 1e-4, f"{info.name!r} exports and matches: set onnx_exportable=True"


# --- SiLU-preserving init ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("info", INFOS, ids=IDS)
def test_silu_init(info):
    x = grid(dtype=torch.float32)
    silu = x * torch.sigmoid(x)
    if info.silu_init:
        m = create_activation(info.name, C, **({"init": "silu"} if "init" in info.kwargs else {}))
        for mode in (True, False):
            torch.testing.assert_close(m.train(mode)(x), silu, atol=1e-6, rtol=0)
        return
    if "init" not in info.kwargs:  # the documented refusal: init is not a keyword of this entry
        with pytest.raises(ActivationArgError, match="valid keywords"):
            create_activation(info.name, C, init="silu")
        return
    try:  # has an init keyword (e.g. prelu's slope): "silu" is rejected, or it is accepted but not exactly SiLU
        m = create_activation(info.name, C, init="silu").eval()
    except ActivationArgError:
        return
    with torch.no_grad():
        assert not torch.allclose(m(x), silu, atol=1e-6, rtol=0), f"{info.name!r} starts as SiLU: set silu_init=True"


# --- registry ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("info", INFOS, ids=IDS)
def test_metadata(info):
    assert info.kind in KINDS and info.description
    assert info.channel_aware == (info.kind == "channel-aware")
    n_params = sum(p.numel() for p in build(info).parameters())
    if info.channel_aware:
        assert n_params > 0 and info.params_per_channel(64) > 0
        with pytest.raises(ActivationArgError, match="channel"):
            create_activation(info.name)
    elif info.name != "prelu":
        assert n_params == 0, "only channel-aware activations (and prelu) add parameters"
    if not info.shape_preserving:
        assert info.name in SHAPE_RULES


@pytest.mark.parametrize("info", INFOS, ids=IDS)
def test_names_are_case_insensitive_and_aliases_resolve(info):
    for name in (info.name, *info.aliases):
        for variant in (name, name.upper(), name.title().replace("_", "-"), f"  {name} "):
            assert get_activation_info(variant) is info
    m = create_activation(info.aliases[0] if info.aliases else info.name.upper(), C)
    assert getattr(m, ACT_TAG) == info.name


@pytest.mark.parametrize(
    "alias,name",
    [("swish", "silu"), ("SiLU", "silu"), ("HardSwish", "hard_swish"), ("hard-swish", "hard_swish"),
     ("hardsigmoid", "hard_sigmoid"), ("LeakyReLU", "leaky_relu"), ("lrelu", "leaky_relu"),
     ("logsigmoid", "log_sigmoid"), ("ReLU6", "relu6"), ("PReLU", "prelu"), ("GELU", "gelu")],
)
def test_usual_aliases(alias, name):
    assert get_activation_info(alias).name == name


@pytest.mark.parametrize("info", INFOS, ids=IDS)
def test_every_call_returns_a_fresh_module(info):
    a, b = create_activation(info.name, C), create_activation(info.name, C)
    assert a is not b
    ta = {id(t) for t in [*a.parameters(), *a.buffers()]}
    assert not ta & {id(t) for t in [*b.parameters(), *b.buffers()]}
    with torch.no_grad():
        for p in a.parameters():
            p.add_(1.0)
    c = create_activation(info.name, C)
    for pb, pc in zip(b.parameters(), c.parameters()):
        assert torch.equal(pb, pc) or info.channel_aware  # a's change leaked nowhere (channel-aware may init randomly)


@pytest.mark.parametrize("info", INFOS, ids=IDS)
def test_bad_keyword_names_the_valid_ones(info):
    with pytest.raises(ActivationArgError) as e:
        create_activation(info.name, C, not_a_keyword=1)
    msg = str(e.value)
    assert "not_a_keyword" in msg and info.name in msg
    for k in info.kwargs or ("none",):
        assert k in msg
    assert isinstance(e.value, ActSwapError)


@pytest.mark.parametrize(
    "name,kwargs,channels",
    [("leaky_relu", {"negative_slope": "steep"}, C), ("leaky_relu", {"negative_slope": True}, C),
     ("gelu", {"approximate": "fast"}, C), ("prelu", {"per_channel": True}, None), ("prelu", {"init": "silu"}, C),
     ("prelu", {"per_channel": "maybe"}, C), ("hardtanh", {"min_val": 2.0, "max_val": 1.0}, C),
     ("rrelu", {"lower": 0.5, "upper": 0.1}, C), ("softplus", {"beta": 0}, C), ("celu", {"alpha": 0.0}, C),
     ("elu", {"alpha": float("nan")}, C), ("hardshrink", {"lambd": -1.0}, C)],
)
def test_bad_keyword_values(name, kwargs, channels):
    with pytest.raises(ActivationArgError, match=name):
        create_activation(name, channels, **kwargs)


@pytest.mark.parametrize("typo,suggestion", [("frlu", "frelu"), ("swsh", "swish"), ("leaky_rel", "leaky_relu"),
                                             ("hardswsh", "hardswish"), ("acon", "acon_c")])
def test_unknown_name_suggests_close_names(typo, suggestion):
    with pytest.raises(UnknownActivation) as e:
        create_activation(typo, C)
    assert repr(suggestion) in str(e.value) and typo in str(e.value)
    assert isinstance(e.value, ActSwapError)


def test_unknown_name_without_close_match_points_to_list():
    with pytest.raises(UnknownActivation, match="--list"):
        get_activation_info("zzqqxx")


class _Cube(nn.Module):
    def __init__(self, scale: float = 1.0):
        super().__init__()
        self.scale = scale

    def forward(self, x):
        return self.scale * x**3


@pytest.fixture
def unregister():
    """Names registered by a test, removed (with their aliases) afterwards."""
    names = []
    yield names.append
    for name in names:
        unregister_activation(name)


def test_register_user_activation(unregister):
    def cube(channels=None, scale: float = 1.0):
        return _Cube(float(scale))

    info = register_activation("My_Cube", cube, aliases=("Cube3",), description="scale * x^3")
    unregister("my_cube")
    assert info.name == "my_cube" and info.aliases == ("cube3",) and info.kwargs == ("scale",)
    m = create_activation("MY-CUBE", 8, scale=2.0)
    assert isinstance(m, _Cube) and getattr(m, ACT_TAG) == "my_cube"
    assert torch.equal(m(torch.full((1, 8, 2, 2), 2.0)), torch.full((1, 8, 2, 2), 16.0))
    assert create_activation("cube3") is not create_activation("cube3")
    assert "my_cube" in activation_table() and info in list_activations()
    with pytest.raises(ValueError, match="already registered"):
        register_activation("my_cube", cube)
    with pytest.raises(ValueError, match="already registered"):
        register_activation("other_cube", cube, aliases=("swish",))  # alias taken by silu
    with pytest.raises(TypeError, match="explicitly"):
        register_activation("kw_cube", lambda channels, **kw: _Cube())
    with pytest.raises(ActivationArgError, match="scale"):
        create_activation("my_cube", 8, alpha=1.0)
    assert register_activation("my_cube", cube, description="replaced", overwrite=True).description == "replaced"


def test_unregister_activation_removes_entry_and_aliases():
    before = (all_names(), activation_table())
    register_activation("gone_cube", lambda channels=None: _Cube(), aliases=("gone3",))
    assert unregister_activation("GONE3").name == "gone_cube"  # by alias, case-insensitive
    for name in ("gone_cube", "gone3"):
        with pytest.raises(UnknownActivation):
            get_activation_info(name)
    assert (all_names(), activation_table()) == before
    with pytest.raises(UnknownActivation, match="gone_cube"):
        unregister_activation("gone_cube")


def test_temporary_activation_restores_what_it_replaced():
    before = (all_names(), activation_table(), get_activation_info("silu"), get_activation_info("frelu"))
    with temporary_activation("tmp_cube", lambda channels=None: _Cube(), aliases=("tmp3",)) as info:
        assert get_activation_info("tmp3") is info and isinstance(create_activation("tmp_cube"), _Cube)
    with pytest.raises(UnknownActivation):
        get_activation_info("tmp3")
    with temporary_activation("frelu", lambda channels=None: _Cube(), overwrite=True, aliases=("swish",)):
        assert isinstance(create_activation("frelu", 8), _Cube) and isinstance(create_activation("swish"), _Cube)
        assert isinstance(create_activation("funnel_relu", 8), _Cube)  # the old alias names the replaced entry
    with pytest.raises(RuntimeError, match="boom"), temporary_activation("tmp_cube", lambda channels=None: _Cube()):
        raise RuntimeError("boom")
    after = (all_names(), activation_table(), get_activation_info("silu"), get_activation_info("frelu"))
    assert after == before and get_activation_info("swish").name == "silu"


def test_cli_list_prints_every_name():
    script = Path(sys.executable).with_name("yolo-act-swap")
    cmd = [str(script), "--list"] if script.exists() else [sys.executable, "-m", "yolo_act_swap", "--list"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    listed = {line.split()[0] for line in lines[2:] if line.strip()}
    assert listed == set(all_names(include_aliases=False))
    for alias in all_names(include_aliases=True):
        assert alias in r.stdout
    assert lines[0].split()[:2] == ["name", "kind"]
