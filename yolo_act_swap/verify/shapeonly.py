"""``ShapeOnly``: shapes of the common ops of a meta forward, computed directly.

Many of torch's meta kernels are Python decompositions whose first use imports ``torch._dynamo`` and sympy, which
alone costs more than building a model; ``benchmarks/verify.py`` measures what these rules save against plain meta
tensors and against ``FakeTensorMode``. Elementwise rules live in ``elementwise.py``; conv, batch norm, cat, stack,
pooling, interpolation, matmul, linear and reductions here. Every op without a rule runs as usual.

Measured (``benchmarks/verify.py --modes --repeats 3 --threads 1``; 2-CPU x86_64 shared with other jobs, torch 2.14,
frelu at 640): warm verification of yolov7 2.55 s vs 8.87 s on plain meta (3.5x) and yolov8n 0.78 s vs 4.55 s (5.8x);
a fresh process's first patch_model 1.6 s vs 17.3 s / 14.1 s (dynamo + sympy imports). FakeTensorMode is slower
still (yolov8n 8.68 s warm, no GFLOPs) and cannot fuse yolov7 (``_apply(): Couldn't swap Conv2d.weight``).
"""

from __future__ import annotations

from typing import Callable, ContextManager

import torch
import torch.nn as nn

from .elementwise import (
    BINARY,
    COMPARE,
    INPLACE,
    UNARY,
    binary,
    broadcast,
    compare,
    contiguous,
    like,
    meta_args,
    prelu,
    to,
    unary,
    where,
)
from .meta import META

F = nn.functional
T = torch.Tensor


def _batch_norm(func, args, kwargs):
    if meta_args(args, kwargs) is None:
        return None
    x = args[0]
    for t in (*args[1:5], *[kwargs.get(k) for k in ("running_mean", "running_var", "weight", "bias")]):
        if isinstance(t, torch.Tensor) and (x.dim() < 2 or t.numel() != x.shape[1]):
            raise RuntimeError(f"batch_norm: expected {t.numel()} channels, got input of shape {list(x.shape)}")
    return like(x)


def _cat(func, args, kwargs):
    ts = args[0] if args else kwargs.get("tensors")
    dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
    if not isinstance(ts, (list, tuple)) or not ts or not all(isinstance(t, torch.Tensor) for t in ts):
        return None
    if not all(t.device.type == "meta" for t in ts) or len(kwargs) > (0 if len(args) > 1 else 1):
        return None
    ts = [t for t in ts if not (t.dim() == 1 and t.numel() == 0)]
    ref = ts[0]
    d = dim % ref.dim()
    for t in ts:
        if t.dtype != ref.dtype:
            return None  # type promotion: let torch decide
        if t.dim() != ref.dim() or any(a != b for i, (a, b) in enumerate(zip(t.shape, ref.shape)) if i != d):
            raise RuntimeError(
                f"Sizes of tensors must match except in dimension {d}: {list(ref.shape)} vs {list(t.shape)}"
            )
    shape = list(ref.shape)
    shape[d] = sum(t.shape[d] for t in ts)
    # as torch's cat: channels_last out only when every input suggests channels_last, else contiguous
    cl = all(t.dim() == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last) for t in ts)
    fmt = torch.channels_last if cl else torch.contiguous_format
    return torch.empty(shape, dtype=ref.dtype, device=META, memory_format=fmt)


def _conv(func, args, kwargs):
    if meta_args(args, kwargs) is None or not contiguous(args[0]):
        return None
    try:
        return _conv2d(*args, **kwargs)
    except _Fallback:
        return None


def _new_filled(func, args, kwargs):
    x = args[0]
    if func is T.new_full or len(args) == 2:
        size = args[1] if len(args) > 1 else kwargs.get("size")
    else:
        size = args[1:] or kwargs.get("size")
    if (
        not isinstance(x, torch.Tensor)
        or x.device.type != "meta"
        or size is None
        or set(kwargs) - {"dtype", "fill_value"}
    ):
        return None
    size = tuple(size) if isinstance(size, (list, tuple, torch.Size)) else (size,)
    return torch.empty(size, dtype=kwargs.get("dtype") or x.dtype, device=META)


def _stack(func, args, kwargs):
    ts = args[0] if args else kwargs.get("tensors")
    dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
    if not isinstance(ts, (list, tuple)) or not ts or not all(isinstance(t, torch.Tensor) for t in ts):
        return None
    if not all(t.device.type == "meta" for t in ts) or len({t.dtype for t in ts}) != 1 or not contiguous(*ts):
        return None
    if any(t.shape != ts[0].shape for t in ts):
        raise RuntimeError(f"stack expects each tensor to be equal size, but got {[list(t.shape) for t in ts]}")
    shape = list(ts[0].shape)
    shape.insert(dim % (len(shape) + 1), len(ts))
    return torch.empty(shape, dtype=ts[0].dtype, device=META)


def _max_pool2d(func, args, kwargs):
    if meta_args(args, kwargs) is None or not contiguous(args[0]):
        return None
    names = ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")
    a = dict(zip(names, args), **kwargs)
    x = a["input"]
    if x.dim() != 4 or a.get("ceil_mode") or a.get("return_indices") or set(a) - set(names):
        return None
    (kh, kw) = _pair(a["kernel_size"])
    (sh, sw) = _pair(a.get("stride") or a["kernel_size"])
    (ph, pw), (dh, dw) = _pair(a.get("padding", 0)), _pair(a.get("dilation", 1))
    if ph > kh // 2 or pw > kw // 2:
        raise RuntimeError(f"pad should be at most half of effective kernel size, but got pad={ph}, kernel_size={kh}")
    h = (x.shape[2] + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    w = (x.shape[3] + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    if h < 1 or w < 1:
        raise RuntimeError(f"max_pool2d: output size is too small ({h}x{w}) for input of shape {list(x.shape)}")
    return torch.empty((*x.shape[:2], h, w), dtype=x.dtype, device=META)


def _interpolate(func, args, kwargs):
    if meta_args(args, kwargs) is None or not contiguous(args[0]):
        return None
    names = ("input", "size", "scale_factor", "mode", "align_corners", "recompute_scale_factor", "antialias")
    a = dict(zip(names, args), **kwargs)
    x, size, scale = a["input"], a.get("size"), a.get("scale_factor")
    if (
        x.dim() != 4
        or a.get("mode", "nearest") != "nearest"
        or set(a) - set(names)
        or (size is None) == (scale is None)
    ):
        return None
    if size is not None:
        h, w = _pair(size)
    else:
        fh, fw = (scale, scale) if isinstance(scale, (int, float)) else tuple(scale)
        h, w = int(x.shape[2] * fh), int(x.shape[3] * fw)
    return torch.empty((*x.shape[:2], h, w), dtype=x.dtype, device=META)


def _matmul(func, args, kwargs):
    ts = meta_args(args, kwargs)
    if ts is None or len(args) != 2 or kwargs or len(ts) != 2:
        return None
    a, b = args
    if a.dim() < 2 or b.dim() < 2 or a.dtype != b.dtype or (func is torch.bmm and (a.dim() != 3 or b.dim() != 3)):
        return None
    if a.shape[-1] != b.shape[-2]:
        raise RuntimeError(
            f"mat1 and mat2 shapes cannot be multiplied "
            f"({'x'.join(map(str, a.shape))} and {'x'.join(map(str, b.shape))})"
        )
    batch = broadcast(a.shape[:-2], b.shape[:-2])
    return torch.empty((*batch, a.shape[-2], b.shape[-1]), dtype=a.dtype, device=META)


def _linear(func, args, kwargs):
    if meta_args(args, kwargs) is None:
        return None
    x, w = args[0], args[1] if len(args) > 1 else kwargs.get("weight")
    b = args[2] if len(args) > 2 else kwargs.get("bias")
    if w is None or w.dim() != 2 or x.dim() < 1:
        return None
    if x.shape[-1] != w.shape[1] or (b is not None and b.numel() != w.shape[0]):
        raise RuntimeError(
            f"mat1 and mat2 shapes cannot be multiplied "
            f"({x.shape[:-1].numel()}x{x.shape[-1]} and {w.shape[1]}x{w.shape[0]})"
        )
    return torch.empty((*x.shape[:-1], w.shape[0]), dtype=x.dtype, device=META)


def _reduce(func, args, kwargs):
    """mean/sum/amax/amin over given dims (not the full reduction, not the (values, indices) forms)."""
    if meta_args(args, kwargs) is None or not contiguous(args[0]):
        return None
    x = args[0]
    dim = args[1] if len(args) > 1 else kwargs.get("dim")
    keepdim = args[2] if len(args) > 2 else kwargs.get("keepdim", False)
    if dim is None or set(kwargs) - {"dim", "keepdim"} or not isinstance(keepdim, bool) or x.dim() == 0:
        return None
    dims = {d % x.dim() for d in ((dim,) if isinstance(dim, int) else tuple(dim))}
    shape = [1 if i in dims else n for i, n in enumerate(x.shape) if keepdim or i not in dims]
    return torch.empty(shape, dtype=x.dtype, device=META)


class _Fallback(Exception):
    """The fast path does not handle these arguments."""


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    if isinstance(padding, str) or x.dim() != 4:
        raise _Fallback
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    co, ci, kh, kw = weight.shape
    if x.shape[1] != ci * groups:
        raise RuntimeError(
            f"Given groups={groups}, weight of size {list(weight.shape)}, expected input{list(x.shape)} to have "
            f"{ci * groups} channels, but got {x.shape[1]} channels instead"
        )
    if bias is not None and bias.numel() != co:
        raise RuntimeError(f"conv2d: bias has {bias.numel()} elements, expected {co}")
    h = (x.shape[2] + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    w = (x.shape[3] + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    if h < 1 or w < 1:
        raise RuntimeError(f"conv2d: output size is too small ({h}x{w}) for input of shape {list(x.shape)}")
    return torch.empty((x.shape[0], co, h, w), dtype=x.dtype, device=META)


_FAST = {
    **{f: unary for f in UNARY},
    **{f: binary for f in BINARY},
    **{f: (lambda func, a, k: binary(func, a, k, inplace=True)) for f in INPLACE},
    F.batch_norm: _batch_norm,
    torch.batch_norm: _batch_norm,
    torch.cat: _cat,
    torch.concat: _cat,
    F.conv2d: _conv,
    torch.conv2d: _conv,
    T.new_full: _new_filled,
    T.new_zeros: _new_filled,
    T.new_ones: _new_filled,
    torch.stack: _stack,
    F.max_pool2d: _max_pool2d,
    F.interpolate: _interpolate,
    torch.matmul: _matmul,
    T.matmul: _matmul,
    T.__matmul__: _matmul,
    torch.bmm: _matmul,
    T.bmm: _matmul,
    F.linear: _linear,
    **{f: compare for f in COMPARE},
    torch.where: where,
    torch.prelu: prelu,
    F.prelu: prelu,
    T.to: to,
    torch.mean: _reduce,
    T.mean: _reduce,
    torch.sum: _reduce,
    T.sum: _reduce,
    torch.amax: _reduce,
    T.amax: _reduce,
    torch.amin: _reduce,
    T.amin: _reduce,
}


class ShapeOnly(torch.overrides.TorchFunctionMode):
    """Inside a meta forward, compute the shapes of common ops directly instead of through their (slow, Python)
    meta kernels: elementwise ops, batch norm, concatenation and 2-D convolution. A mismatch raises the same
    RuntimeError a real forward would; every other op runs as usual."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        fast = _FAST.get(func)
        if fast is not None:
            out = fast(func, args, kwargs)
            if out is not None:
                return out
        return func(*args, **kwargs)


_MODE: Callable[[], ContextManager] = ShapeOnly


def shape_mode() -> ContextManager:
    """The context every meta forward of verification runs in: ``ShapeOnly()`` (``set_shape_mode`` changes it)."""
    return _MODE()


def set_shape_mode(factory: Callable[[], ContextManager]) -> Callable[[], ContextManager]:
    """Run meta forwards under ``factory()`` instead (benchmarks compare plain meta and ``FakeTensorMode``); returns
    the previous factory."""
    global _MODE
    prev, _MODE = _MODE, factory
    return prev
