"""Pointwise activations (torch.nn), softmax & co over the channel dimension, and glu.

Each factory takes the block's channel count first (ignored by all but per-channel ``prelu``) and then its own
keywords, listed explicitly so that the registry can name the valid ones. Every call builds a new module, always with
``inplace=False``: an in-place activation overwrites the conv output that forward hooks and shape verification read.
Keyword values are checked here, so a bad value fails when the swap is built, not at the first forward.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from .functional import as_bool, same_layout
from .keywords import Bounds
from .registry import register_activation

# --- keyword value checks (a ValueError becomes ActivationArgError in create_activation) ---------------------------


def _num(key: str, value, *, positive: bool = False, nonneg: bool = False, nonzero: bool = False) -> float:
    """``value`` as a finite float: a number, or a string holding one (``--act`` inline values arrive as text)."""
    ok = not isinstance(value, bool)
    try:
        v = float(value) if ok else math.nan
    except (TypeError, ValueError):
        v = math.nan
    if not math.isfinite(v):
        raise ValueError(f"{key} must be a finite number, got {value!r}")
    if positive and v <= 0:
        raise ValueError(f"{key} must be > 0, got {value!r}")
    if nonneg and v < 0:
        raise ValueError(f"{key} must be >= 0, got {value!r}")
    if nonzero and v == 0:
        raise ValueError(f"{key} must not be 0, got {value!r}")
    return v


# --- modules torch has no plain-op / exportable form of --------------------------------------------------------------


class Threshold(nn.Threshold):
    """``y = x if x > threshold else value``, written with ``torch.where``.

    Same function and gradient as ``nn.Threshold``, but it exports to ONNX for any threshold (torch's exporter only
    handles ``aten::threshold`` with threshold 0).
    """

    def __init__(self, threshold: float = 0.0, value: float = 0.0):
        """Args: threshold (float): values at or below it are replaced. value (float): what they are replaced by."""
        super().__init__(threshold, value, inplace=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the threshold."""
        return torch.where(x > self.threshold, x, torch.full_like(x, self.value))


class _KeepsLayout:
    """Mixin for torch modules whose kernels return NCHW for a channels_last input: the result (and so the input
    gradient) gets the input's layout back, with the same values."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The torch module's forward, in the input's memory format."""
        return same_layout(super().forward(x), x)


class LogSigmoid(_KeepsLayout, nn.LogSigmoid):
    """``nn.LogSigmoid`` that keeps a channels_last input's layout."""


class Softmax(_KeepsLayout, nn.Softmax):
    """``nn.Softmax`` that keeps a channels_last input's layout."""


class Softmin(_KeepsLayout, nn.Softmin):
    """``nn.Softmin`` that keeps a channels_last input's layout."""


class LogSoftmax(_KeepsLayout, nn.LogSoftmax):
    """``nn.LogSoftmax`` that keeps a channels_last input's layout."""


class RReLU(nn.RReLU):
    """``nn.RReLU`` that keeps a channels_last input's layout; its random slopes are drawn in NCHW order, so that a
    channels_last input gets the same values as the same input in NCHW under the same seed."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The torch module's forward, in the input's memory format."""
        return same_layout(super().forward(x.contiguous()), x)


# --- factories: (channels, **explicit keywords) -> a new module ------------------------------------------------------


def identity(channels=None) -> nn.Module:
    """No activation: y = x."""
    return nn.Identity()


def relu(channels=None) -> nn.Module:
    """max(0, x)."""
    return nn.ReLU(inplace=False)


def rrelu(channels=None, lower: float = 1.0 / 8, upper: float = 1.0 / 3) -> nn.Module:
    """Randomized leaky ReLU: negative slope ~ U(lower, upper) in training, (lower + upper) / 2 in eval."""
    lo, hi = _num("lower", lower), _num("upper", upper)
    if lo > hi:
        raise ValueError(f"lower must be <= upper, got lower={lower!r}, upper={upper!r}")
    return RReLU(lo, hi, inplace=False)


def hardtanh(channels=None, min_val: float = -1.0, max_val: float = 1.0) -> nn.Module:
    """clamp(x, min_val, max_val)."""
    lo, hi = _num("min_val", min_val), _num("max_val", max_val)
    if lo >= hi:
        raise ValueError(f"min_val must be < max_val, got min_val={min_val!r}, max_val={max_val!r}")
    return nn.Hardtanh(lo, hi, inplace=False)


def relu6(channels=None) -> nn.Module:
    """clamp(x, 0, 6)."""
    return nn.ReLU6(inplace=False)


def sigmoid(channels=None) -> nn.Module:
    """1 / (1 + exp(-x))."""
    return nn.Sigmoid()


def hard_sigmoid(channels=None) -> nn.Module:
    """clamp(x / 6 + 1/2, 0, 1)."""
    return nn.Hardsigmoid(inplace=False)


def tanh(channels=None) -> nn.Module:
    """tanh(x)."""
    return nn.Tanh()


def silu(channels=None) -> nn.Module:
    """x * sigmoid(x), the YOLOv5/v8 default (a.k.a. swish)."""
    return nn.SiLU(inplace=False)


def mish(channels=None) -> nn.Module:
    """x * tanh(softplus(x))."""
    return nn.Mish(inplace=False)


def hard_swish(channels=None) -> nn.Module:
    """x * clamp(x + 3, 0, 6) / 6."""
    return nn.Hardswish(inplace=False)


def elu(channels=None, alpha: float = 1.0) -> nn.Module:
    """x if x > 0 else alpha * (exp(x) - 1)."""
    return nn.ELU(_num("alpha", alpha), inplace=False)


def celu(channels=None, alpha: float = 1.0) -> nn.Module:
    """max(0, x) + min(0, alpha * (exp(x / alpha) - 1))."""
    return nn.CELU(_num("alpha", alpha, nonzero=True), inplace=False)


def selu(channels=None) -> nn.Module:
    """scale * (max(0, x) + min(0, alpha * (exp(x) - 1))) with the fixed self-normalising constants."""
    return nn.SELU(inplace=False)


def gelu(channels=None, approximate: str = "none") -> nn.Module:
    """x * Phi(x), exact (``approximate="none"``) or with the tanh approximation (``"tanh"``)."""
    a = str(approximate).strip().lower()
    if a not in ("none", "tanh"):
        raise ValueError(f"approximate must be 'none' or 'tanh', got {approximate!r}")
    return nn.GELU(approximate=a)


def gelu_tanh(channels=None) -> nn.Module:
    """GELU with the tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    return nn.GELU(approximate="tanh")


def hardshrink(channels=None, lambd: float = 0.5) -> nn.Module:
    """x if |x| > lambd else 0."""
    return nn.Hardshrink(_num("lambd", lambd, nonneg=True))


def leaky_relu(channels=None, negative_slope: float = 0.01) -> nn.Module:
    """x if x >= 0 else negative_slope * x (yolov7-tiny uses negative_slope=0.1)."""
    return nn.LeakyReLU(_num("negative_slope", negative_slope), inplace=False)


def log_sigmoid(channels=None) -> nn.Module:
    """log(sigmoid(x))."""
    return LogSigmoid()


def softplus(channels=None, beta: float = 1.0, threshold: float = 20.0) -> nn.Module:
    """log(1 + exp(beta * x)) / beta, linear where beta * x > threshold."""
    return nn.Softplus(_num("beta", beta, positive=True), _num("threshold", threshold))


def softshrink(channels=None, lambd: float = 0.5) -> nn.Module:
    """x - lambd if x > lambd, x + lambd if x < -lambd, else 0."""
    return nn.Softshrink(_num("lambd", lambd, nonneg=True))


def prelu(channels=None, per_channel: bool = False, init: float = 0.25) -> nn.Module:
    """x if x >= 0 else a * x with a learned slope ``a``: one for the block, or one per channel.

    Args:
        channels (int, optional): the block's channel count; needed when ``per_channel`` is true.
        per_channel (bool): learn one slope per channel instead of one shared slope.
        init (float): the initial slope (a number; ``init: silu`` is not supported by prelu).
    """
    pc, a = as_bool(per_channel, "per_channel"), _num("init", init)
    if pc and not channels:
        raise ValueError("per_channel=True needs the block's channel count")
    return nn.PReLU(num_parameters=int(channels) if pc else 1, init=a)


def softsign(channels=None) -> nn.Module:
    """x / (1 + |x|)."""
    return nn.Softsign()


def tanhshrink(channels=None) -> nn.Module:
    """x - tanh(x)."""
    return nn.Tanhshrink()


def threshold(channels=None, threshold: float = 0.0, value: float = 0.0) -> nn.Module:
    """x if x > threshold else value (the defaults make it ReLU)."""
    return Threshold(_num("threshold", threshold), _num("value", value))


def softmax(channels=None) -> nn.Module:
    """Softmax over the channel dimension (dim=1)."""
    return Softmax(dim=1)


def softmin(channels=None) -> nn.Module:
    """Softmin over the channel dimension (dim=1): softmax(-x)."""
    return Softmin(dim=1)


def log_softmax(channels=None) -> nn.Module:
    """Log-softmax over the channel dimension (dim=1)."""
    return LogSoftmax(dim=1)


def glu(channels=None) -> nn.Module:
    """Gated linear unit over dim=1: a * sigmoid(b) for the two channel halves a, b. It halves the channels."""
    return nn.GLU(dim=1)


# --- the table: name, factory, aliases, description (and the flags that differ from the defaults) -------------------

_POINTWISE = [
    ("identity", identity, ("linear",), "y = x (no activation)"),
    ("relu", relu, (), "max(0, x)"),
    ("rrelu", rrelu, ("randomized_relu",), "leaky ReLU with a random slope in U(lower, upper) while training"),
    ("hardtanh", hardtanh, ("hard_tanh",), "clamp(x, min_val, max_val)"),
    ("relu6", relu6, (), "clamp(x, 0, 6)"),
    ("sigmoid", sigmoid, (), "1 / (1 + exp(-x))"),
    ("hard_sigmoid", hard_sigmoid, ("hardsigmoid",), "clamp(x / 6 + 0.5, 0, 1)"),
    ("tanh", tanh, (), "tanh(x)"),
    ("silu", silu, ("swish",), "x * sigmoid(x), the YOLOv5/v8 default"),
    ("mish", mish, ("memory_efficient_mish", "efficient_mish"), "x * tanh(softplus(x)), the YOLOv4 default"),
    ("hard_swish", hard_swish, ("hardswish",), "x * clamp(x + 3, 0, 6) / 6"),
    ("elu", elu, (), "x if x > 0 else alpha * (exp(x) - 1)"),
    ("celu", celu, (), "max(0, x) + min(0, alpha * (exp(x / alpha) - 1))"),
    ("selu", selu, (), "scaled ELU with the self-normalising constants"),
    ("gelu", gelu, (), "x * Phi(x); approximate='tanh' for the tanh form"),
    ("gelu_tanh", gelu_tanh, ("gelu_approx",), "GELU with the tanh approximation"),
    ("hardshrink", hardshrink, ("hard_shrink",), "x if |x| > lambd else 0"),
    ("leaky_relu", leaky_relu, ("leakyrelu", "lrelu"), "x if x >= 0 else negative_slope * x (default 0.01)"),
    ("log_sigmoid", log_sigmoid, ("logsigmoid",), "log(sigmoid(x))"),
    ("softplus", softplus, ("soft_plus",), "log(1 + exp(beta * x)) / beta"),
    ("softshrink", softshrink, ("soft_shrink",), "shrink x towards 0 by lambd"),
    ("prelu", prelu, (), "leaky ReLU with a learned slope (per_channel=true: one per channel)"),
    ("softsign", softsign, ("soft_sign",), "x / (1 + |x|)"),
    ("tanhshrink", tanhshrink, ("tanh_shrink",), "x - tanh(x)"),
    ("threshold", threshold, (), "x if x > threshold else value"),
]

_CHANNEL = [
    ("softmax", softmax, ("softmax2d",), "softmax over the channel dim (dim=1)", True),
    ("softmin", softmin, (), "softmin over the channel dim (dim=1)", True),
    ("log_softmax", log_softmax, ("logsoftmax",), "log-softmax over the channel dim (dim=1)", True),
    ("glu", glu, (), "a * sigmoid(b) over dim=1: HALVES the channels, so it cannot replace a Conv activation", False),
]

_SANE = Bounds(min=-1e4, max=1e4)  # far beyond any useful value, far inside float32
_DIVISOR = Bounds(min=-1e4, max=1e4, min_abs=1e-4)  # x / value: not so close to 0 that it overflows
_BOUNDS = {
    "rrelu": {"lower": _SANE, "upper": _SANE},
    "hardtanh": {"min_val": _SANE, "max_val": _SANE},
    "elu": {"alpha": _SANE},
    "celu": {"alpha": _DIVISOR},
    "hardshrink": {"lambd": _SANE},
    "softshrink": {"lambd": _SANE},
    "leaky_relu": {"negative_slope": _SANE},
    "softplus": {"beta": _DIVISOR, "threshold": _SANE},
    "prelu": {"init": _SANE},
    "threshold": {"threshold": _SANE, "value": _SANE},
}

for _name, _factory, _aliases, _desc in _POINTWISE:
    register_activation(
        _name, _factory, kind="pointwise", aliases=_aliases, description=_desc, silu_init=_name == "silu",
        bounds=_BOUNDS.get(_name),
    )
for _name, _factory, _aliases, _desc, _keeps in _CHANNEL:
    register_activation(_name, _factory, kind="channel", aliases=_aliases, description=_desc, shape_preserving=_keeps)
