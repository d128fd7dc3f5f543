"""Forward-shape verification of patched models.

Shapes are checked on copies of the model whose parameters live on the ``meta`` device: a meta forward computes every
shape at full resolution without doing any arithmetic, and the copies share no state with the real model. Inside those
forwards ``ShapeOnly`` computes the shapes of the common ops (elementwise, batch norm, conv, cat, pooling, matmul, ...)
directly: many of torch's meta kernels are Python decompositions whose first use imports ``torch._dynamo`` and sympy,
which alone costs more than building the model. Activations that cannot run on meta at all are checked on a small
real tensor instead. One small real forward then checks that the outputs stay finite.

What is compared, before vs after, per activated conv block (forward hooks) and for each activation (its input and
output): eval and train mode, at ``imgsz`` and at a non-square multiple of the stride, and the fused model in eval mode;
plus the detector's whole nested output structure (ultralytics returns tensors, tuples, lists and dicts).
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import io
import logging
import math
import time
import types
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn

from .activations.registry import ACT_TAG, fuse_activations
from .errors import PatchError, ShapeMismatch

META = torch.device("meta")


# --- copies and shapes ------------------------------------------------------------------------------------------------


def meta_copy(module: nn.Module) -> nn.Module:
    """A structural copy of ``module`` whose parameters and buffers are empty ``meta`` tensors (no data is copied).

    Like ``copy.deepcopy`` for the module tree (modules inside plain lists and dicts, and methods bound to a module,
    follow the copy), but leaves other attributes shared, which is several times faster on large models. Falls back
    to ``copy.deepcopy`` for modules that define their own ``__deepcopy__``.
    """
    memo: dict[int, Any] = {}

    def tensor(t):
        if t is None:
            return None
        if id(t) not in memo:
            mt = torch.empty_like(t, device=META)
            memo[id(t)] = nn.Parameter(mt, requires_grad=t.requires_grad) if isinstance(t, nn.Parameter) else mt
        return memo[id(t)]

    def value(v, depth=0):
        if isinstance(v, nn.Module):
            return mod(v)
        if isinstance(v, types.MethodType) and isinstance(v.__self__, nn.Module):
            return types.MethodType(v.__func__, mod(v.__self__))
        if depth < 3 and type(v) in (list, tuple, dict, set, OrderedDict):
            if isinstance(v, dict):
                return type(v)((k, value(x, depth + 1)) for k, x in v.items())
            return type(v)(value(x, depth + 1) for x in v)
        return v

    def mod(m: nn.Module) -> nn.Module:
        if id(m) in memo:
            return memo[id(m)]
        if hasattr(type(m), "__deepcopy__"):
            new = copy.deepcopy(m, memo)
            memo[id(m)] = new
            return new
        new = type(m).__new__(type(m))
        memo[id(m)] = new
        d = {}
        for k, v in m.__dict__.items():
            if k in ("_parameters", "_buffers"):
                d[k] = {n: tensor(t) for n, t in v.items()}
            elif k == "_modules":
                d[k] = {n: (mod(c) if c is not None else None) for n, c in v.items()}
            else:
                d[k] = value(v)
        new.__dict__.update(d)
        return new

    return mod(module)


F = nn.functional
T = torch.Tensor
_UNARY = (
    torch.sigmoid, T.sigmoid, torch.tanh, T.tanh, torch.relu, T.relu, torch.exp, T.exp, torch.abs, T.abs, torch.neg,
    T.neg, T.__neg__, torch.sqrt, T.sqrt, torch.rsqrt, T.rsqrt, torch.clamp, T.clamp, torch.clip, T.clip, T.softmax,
    torch.softmax, torch.zeros_like, torch.ones_like, T.float, T.half, torch.reciprocal, T.reciprocal,
    F.silu, F.relu, F.relu6, F.leaky_relu, F.hardswish, F.hardsigmoid, F.gelu, F.mish, F.elu, F.selu, F.celu,
    F.softplus, F.hardtanh, F.softmax, F.log_softmax, F.tanhshrink, F.softsign, F.logsigmoid, F.dropout,
    torch.hardshrink, T.hardshrink, F.hardshrink, F.softshrink, F.rrelu, F.softmin, torch.full_like, T.contiguous,
    torch.erf, T.erf, torch.log, T.log, torch.log1p, T.log1p, torch.square, T.square, torch.pow, T.pow, T.__pow__,
)  # fmt: skip
_CONTIGUOUS_OUT = (T.softmax, torch.softmax, F.softmax, F.log_softmax, F.softmin)  # not layout-preserving
_COMPARE = (T.gt, T.lt, T.ge, T.le, T.__gt__, T.__lt__, T.__ge__, T.__le__, torch.gt, torch.lt, torch.ge, torch.le)
_BINARY = (
    torch.add, T.add, T.__add__, T.__radd__, torch.sub, T.sub, T.__sub__, T.__rsub__, torch.mul, T.mul, T.__mul__,
    T.__rmul__, torch.div, T.div, T.__truediv__, T.__rtruediv__, torch.maximum, T.maximum, torch.minimum, T.minimum,
)  # fmt: skip
_INPLACE = (T.add_, T.sub_, T.mul_, T.div_, T.__iadd__, T.__isub__, T.__imul__, T.__itruediv__)


def _broadcast(a: torch.Size, b: torch.Size) -> tuple:
    """``torch.broadcast_shapes`` for two shapes, without its Python-reference overhead."""
    if a == b:
        return tuple(a)
    n = max(len(a), len(b))
    a, b = (1,) * (n - len(a)) + tuple(a), (1,) * (n - len(b)) + tuple(b)
    out = []
    for x, y in zip(a, b):
        if x != y and x != 1 and y != 1:
            raise RuntimeError(
                f"The size of tensor a ({x}) must match the size of tensor b ({y}) at non-singleton dimension"
            )
        out.append(y if x == 1 else x)
    return tuple(out)


def _like(t: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A result with the shape and layout an elementwise op on ``t`` gives: a free view when ``t`` is contiguous, the
    same dimension order when ``t`` is a dense permutation (a transpose), else contiguous, as real kernels do. (Not
    ``empty_like``: on a non-contiguous meta tensor it runs a Python reference that imports sympy.)"""
    dtype = dtype or t.dtype
    if t.is_contiguous():
        return t.expand(t.shape) if dtype == t.dtype else torch.empty(t.shape, dtype=dtype, device=META)
    perm = sorted(range(t.dim()), key=lambda i: -t.stride(i))
    p = t.permute(perm)
    if p.is_contiguous():
        inverse = [0] * len(perm)
        for i, d in enumerate(perm):
            inverse[d] = i
        return torch.empty(p.shape, dtype=dtype, device=META).permute(inverse)
    return torch.empty(t.shape, dtype=dtype, device=META)


def _contiguous(*ts) -> bool:
    """No input is a non-contiguous dense permutation (channels_last, a transpose), whose layout a real kernel may
    carry into its output; contiguous ones and strided views such as ``chunk`` slices give contiguous outputs."""
    for t in ts:
        if isinstance(t, torch.Tensor) and not t.is_contiguous():
            perm = sorted(range(t.dim()), key=lambda i: -t.stride(i))
            if t.permute(perm).is_contiguous():
                return False
    return True


def _meta_args(args, kwargs) -> list | None:
    """The tensor arguments when at least one is on meta and the others are meta or 0-dim; else None."""
    tensors = [a for a in args if isinstance(a, torch.Tensor)]
    if kwargs:
        if "out" in kwargs:
            return None
        tensors += [a for a in kwargs.values() if isinstance(a, torch.Tensor)]
    meta = False
    for t in tensors:
        if t.device.type == "meta":
            meta = True
        elif t.dim():
            return None
    return tensors if meta else None


def _unary(func, args, kwargs):
    ts = _meta_args(args, kwargs)
    x = args[0]
    if ts is None or len(ts) != 1 or ts[0] is not x:
        return None
    if func is torch.full_like:
        return None if kwargs else _like(x)
    if kwargs.get("dtype") is not None:
        return None
    if kwargs.get("inplace") is True or any(a is True for a in args[1:]):
        return x
    if func in (T.float, T.half):
        return None if x.dtype != (torch.float32 if func is T.float else torch.float16) else x
    if func is T.contiguous:
        return x if x.is_contiguous() and not kwargs and len(args) == 1 else None
    if func in _CONTIGUOUS_OUT and not x.is_contiguous():
        return torch.empty(x.shape, dtype=x.dtype, device=META)
    return _like(x)


def _binary(func, args, kwargs, inplace=False):
    out = kwargs.get("out")
    if out is not None and (not isinstance(out, torch.Tensor) or out.device.type != "meta" or len(kwargs) != 1):
        return None
    ts = _meta_args(args, {} if out is not None else kwargs)
    if ts is None or len(ts) > 2 or len(args) < 2:
        return None
    a, b = args[0], args[1]
    sa = a.shape if isinstance(a, torch.Tensor) else ()
    sb = b.shape if isinstance(b, torch.Tensor) else ()
    shape = _broadcast(sa, sb)
    if inplace:
        if shape != tuple(sa):
            raise RuntimeError(f"output with shape {list(sa)} doesn't match the broadcast shape {list(shape)}")
        return a
    dtype = torch.result_type(a, b)
    if out is not None:
        return out if tuple(out.shape) == shape and out.dtype == dtype else None
    full = [t for t in ts if tuple(t.shape) == shape and t.device.type == "meta"]
    if full and full[0].dtype == dtype:
        return _like(full[0])
    return torch.empty(shape, dtype=dtype, device=META)


def _compare(func, args, kwargs):
    ts = _meta_args(args, kwargs)
    if ts is None or len(args) != 2 or kwargs:
        return None
    sa = args[0].shape if isinstance(args[0], torch.Tensor) else ()
    sb = args[1].shape if isinstance(args[1], torch.Tensor) else ()
    shape = _broadcast(sa, sb)
    full = [t for t in ts if tuple(t.shape) == shape and t.device.type == "meta"]
    return _like(full[0], torch.bool) if full else torch.empty(shape, dtype=torch.bool, device=META)


def _where(func, args, kwargs):
    ts = _meta_args(args, kwargs)
    if ts is None or len(args) != 3 or kwargs:
        return None
    shape = ()
    for a in args:
        shape = _broadcast(shape, a.shape if isinstance(a, torch.Tensor) else ())
    vals = [a for a in args[1:] if isinstance(a, torch.Tensor)]
    if not vals or len({v.dtype for v in vals}) != 1 or len(vals) != 2 or not _contiguous(*args):
        return None
    return torch.empty(shape, dtype=vals[0].dtype, device=META)


def _prelu(func, args, kwargs):
    ts = _meta_args(args, kwargs)
    if ts is None or len(args) != 2 or kwargs:
        return None
    x, w = args
    if w.numel() != 1 and (x.dim() < 2 or w.numel() != x.shape[1]):
        raise RuntimeError(f"prelu: {w.numel()} weights for an input with {x.shape[1]} channels")
    return _like(x)


def _to(func, args, kwargs):
    x = args[0]
    if not isinstance(x, torch.Tensor) or x.device.type != "meta":
        return None
    target = [a for a in (*args[1:], *kwargs.values())]
    for a in target:
        if isinstance(a, torch.dtype) and a != x.dtype:
            return None
        if isinstance(a, torch.Tensor) and (a.dtype != x.dtype or a.device.type != "meta"):
            return None
        if isinstance(a, (str, torch.device)) and torch.device(a).type != "meta":
            return None
    return x


def _batch_norm(func, args, kwargs):
    if _meta_args(args, kwargs) is None:
        return None
    x = args[0]
    for t in (*args[1:5], *[kwargs.get(k) for k in ("running_mean", "running_var", "weight", "bias")]):
        if isinstance(t, torch.Tensor) and (x.dim() < 2 or t.numel() != x.shape[1]):
            raise RuntimeError(f"batch_norm: expected {t.numel()} channels, got input of shape {list(x.shape)}")
    return _like(x)


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
    if _meta_args(args, kwargs) is None or not _contiguous(args[0]):
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
    if not all(t.device.type == "meta" for t in ts) or len({t.dtype for t in ts}) != 1 or not _contiguous(*ts):
        return None
    if any(t.shape != ts[0].shape for t in ts):
        raise RuntimeError(f"stack expects each tensor to be equal size, but got {[list(t.shape) for t in ts]}")
    shape = list(ts[0].shape)
    shape.insert(dim % (len(shape) + 1), len(ts))
    return torch.empty(shape, dtype=ts[0].dtype, device=META)


def _max_pool2d(func, args, kwargs):
    if _meta_args(args, kwargs) is None or not _contiguous(args[0]):
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
    if _meta_args(args, kwargs) is None or not _contiguous(args[0]):
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
    ts = _meta_args(args, kwargs)
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
    batch = _broadcast(a.shape[:-2], b.shape[:-2])
    return torch.empty((*batch, a.shape[-2], b.shape[-1]), dtype=a.dtype, device=META)


def _linear(func, args, kwargs):
    if _meta_args(args, kwargs) is None:
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
    if _meta_args(args, kwargs) is None or not _contiguous(args[0]):
        return None
    x = args[0]
    dim = args[1] if len(args) > 1 else kwargs.get("dim")
    keepdim = args[2] if len(args) > 2 else kwargs.get("keepdim", False)
    if dim is None or set(kwargs) - {"dim", "keepdim"} or not isinstance(keepdim, bool) or x.dim() == 0:
        return None
    dims = {d % x.dim() for d in ((dim,) if isinstance(dim, int) else tuple(dim))}
    shape = [1 if i in dims else n for i, n in enumerate(x.shape) if keepdim or i not in dims]
    return torch.empty(shape, dtype=x.dtype, device=META)


_FAST = {
    **{f: _unary for f in _UNARY},
    **{f: _binary for f in _BINARY},
    **{f: (lambda func, a, k: _binary(func, a, k, inplace=True)) for f in _INPLACE},
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
    **{f: _compare for f in _COMPARE},
    torch.where: _where,
    torch.prelu: _prelu,
    F.prelu: _prelu,
    T.to: _to,
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


def shape_of(obj: Any) -> Any:
    """The nested shape structure of a forward output: tensors become tuples, containers keep their kind."""
    if isinstance(obj, torch.Tensor):
        return tuple(obj.shape)
    if isinstance(obj, dict):
        return {k: shape_of(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [shape_of(v) for v in obj] if isinstance(obj, list) else tuple(shape_of(v) for v in obj)
    return type(obj).__name__


def fmt_shape(s: Any) -> str:
    """Compact text for a shape structure."""
    if isinstance(s, tuple) and all(isinstance(i, int) for i in s):
        return "(" + ", ".join(map(str, s)) + ")"
    if isinstance(s, dict):
        return "{" + ", ".join(f"{k}: {fmt_shape(v)}" for k, v in s.items()) + "}"
    if isinstance(s, (list, tuple)):
        o, c = ("[", "]") if isinstance(s, list) else ("(", ")")
        return o + ", ".join(fmt_shape(v) for v in s) + c
    return str(s)


def _diff(a: Any, b: Any, where: str = "output") -> str | None:
    """First place where two shape structures differ, as ``where: expected X, got Y``; None when equal."""
    if type(a) is not type(b) or (isinstance(a, (list, dict)) and len(a) != len(b)):
        return f"{where}: expected {fmt_shape(a)}, got {fmt_shape(b)}"
    if isinstance(a, dict):
        if list(a) != list(b):
            return f"{where}: expected keys {list(a)}, got {list(b)}"
        for k in a:
            d = _diff(a[k], b[k], f"{where}[{k!r}]")
            if d:
                return d
        return None
    if isinstance(a, (list, tuple)) and not all(isinstance(i, int) for i in a):
        if len(a) != len(b):
            return f"{where}: expected {fmt_shape(a)}, got {fmt_shape(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            d = _diff(x, y, f"{where}[{i}]")
            if d:
                return d
        return None
    return None if a == b else f"{where}: expected {fmt_shape(a)}, got {fmt_shape(b)}"


def act_name(m: nn.Module) -> str:
    """Short name of an activation module: its registry name, or its class with its arguments (no ``inplace``)."""
    tag = getattr(m, ACT_TAG, None)
    if isinstance(tag, str):
        return tag
    if isinstance(m, _Probe):
        return act_name(m.inner)
    args = ", ".join(a.strip() for a in m.extra_repr().split(",") if a.strip() and not a.strip().startswith("inplace"))
    short = args and len(args) <= 30 and "(" not in args
    return f"{type(m).__name__}({args})" if short else type(m).__name__


# --- instrumented forwards --------------------------------------------------------------------------------------------


class _Recorder:
    """Events of one forward: ``("act"|"act_in"|"block", path, shape)`` in call order, the stack of open blocks,
    and notes (activations that had to be checked on real tensors)."""

    def __init__(self):
        self.events: list[tuple[str, str, Any]] = []
        self.stack: list[str] = []
        self.notes: set[str] = set()
        self.cache: dict = {}
        self.active = True

    def add(self, kind: str, path: str, shape: Any):
        if self.active:
            self.events.append((kind, path, shape))


SMALL = 8  # spatial size of the real-tensor stand-in for activations that cannot run on meta
_NO_META: set[type] = set()  # activation classes seen failing on meta in this process (go straight to real tensors)


def act_output_shape(
    act: nn.Module,
    x_shape: tuple,
    real: nn.Module | None = None,
    training: bool | None = None,
    cache: dict | None = None,
) -> tuple[tuple, bool]:
    """The output shape of activation ``act`` for an input of ``x_shape``, computed on the meta device.

    Activations without meta support (a custom autograd function that asks for autocast on the tensor's device, say)
    run instead on a copy of their real module ``real`` (``act`` itself when omitted; put in ``training`` mode when
    given) at a small spatial size, and the result is mapped back to ``x_shape``. ``cache`` (a dict) shares those
    real runs between activations of the same class and configuration.

    Returns:
        (tuple[tuple, bool]): the output shape, and whether it was computed on meta.
    """
    if real is None:
        real = act
    p = next(iter(real.parameters()), None)
    if type(act) not in _NO_META or (p is not None and p.device.type == "meta"):
        try:
            on_meta = next(iter(act.parameters()), torch.empty(0, device=META)).device.type == "meta"
            m = act if on_meta else meta_copy(act)
            with torch.no_grad(), ShapeOnly():
                y = m(torch.empty(x_shape, device=META))
            return tuple(y.shape), True
        except Exception:  # noqa: BLE001 - no meta support: try real tensors next
            if p is not None and p.device.type == "meta":
                raise
            _NO_META.add(type(act))
    small = tuple(x_shape[:2]) + tuple(min(v, SMALL) for v in x_shape[2:])
    key = (type(real), real.extra_repr(), small, real.training if training is None else training)
    if cache is None or key not in cache:
        r = copy.deepcopy(real)  # a copy: a training-mode forward would update BatchNorm statistics
        if training is not None:
            r.train(training)
        dev = p.device if p is not None else torch.device("cpu")
        with torch.no_grad():
            y = r(torch.zeros(small, device=dev, dtype=p.dtype if p is not None else torch.float32))
        if cache is None:
            cache = {}
        cache[key] = tuple(y.shape)
    out = cache[key]
    if len(out) == len(small) and out[2:] == small[2:]:  # spatial dims kept: map them back to the full size
        out = out[:2] + tuple(x_shape[2:])
    return out, False


class _Probe(nn.Module):
    """Stands in a copy's activation slot: runs the activation and records its input and output shapes."""

    def __init__(self, inner: nn.Module, path: str, rec: _Recorder, real: nn.Module | None = None):
        super().__init__()
        self.inner, self.path, self.rec = inner, path, rec
        self.__dict__["real"] = real  # the real model's activation (not a submodule): fallback for no meta support

    def forward(self, x, *args, **kwargs):
        self.rec.stack.append(self.path + " (activation)")
        try:
            y = self.inner(x, *args, **kwargs)
        except Exception:
            if self.real is None or args or kwargs or not isinstance(x, torch.Tensor):
                raise
            shape = act_output_shape(self.inner, tuple(x.shape), self.real, self.training, self.rec.cache)[0]
            self.rec.notes.add(f"{act_name(self.inner)} has no meta support: checked on real {SMALL}x{SMALL} tensors")
            y = torch.empty(shape, dtype=x.dtype, device=META)
        self.rec.stack.pop()
        self.rec.add("act_in", self.path, shape_of(x))
        self.rec.add("act", self.path, shape_of(y))
        return y


@dataclass
class Site:
    """Where an activation sits: ``path`` names the block (or the bare activation); ``owner.attr`` holds it."""

    path: str
    owner_path: str
    attr: str


def instrument(model: nn.Module, sites: list[Site], real: nn.Module | None = None) -> _Recorder:
    """Put a probe in every activation slot of ``model`` (a meta copy of ``real``) and hooks on every block.

    Returns:
        (_Recorder): what the next forwards record.
    """
    rec = _Recorder()
    for s in sites:
        owner = model.get_submodule(s.owner_path) if s.owner_path else model
        act = owner._modules[s.attr]
        real_act = None
        if real is not None:
            real_owner = real.get_submodule(s.owner_path) if s.owner_path else real
            real_act = real_owner._modules[s.attr]
        if not isinstance(act, _Probe):
            owner._modules[s.attr] = _Probe(act, s.path, rec, real_act)
        if s.path != f"{s.owner_path}.{s.attr}".lstrip("."):  # a block: hook its output
            block = owner

            def pre(m, inp, path=s.path):
                rec.stack.append(path)

            def post(m, inp, out, path=s.path):
                if rec.stack and rec.stack[-1] == path:
                    rec.stack.pop()
                rec.add("block", path, shape_of(out))

            block.register_forward_pre_hook(pre)
            block.register_forward_hook(post)
    return rec


def uninstrument(model: nn.Module):
    """Put the original activations back in place of the probes (hooks stay, their recorder is switched off)."""
    for m in list(model.modules()):
        for name, child in list(m._modules.items()):
            if isinstance(child, _Probe):
                child.rec.active = False
                m._modules[name] = child.inner


@dataclass
class Run:
    """One instrumented forward: mode, input shape, events, output shape structure, and the error if it raised."""

    mode: str
    size: tuple
    events: list
    output: Any = None
    error: str | None = None
    where: str = ""

    @property
    def label(self) -> str:
        return f"{self.mode} {self.size[0]}x{self.size[1]}"


def run_shapes(model: nn.Module, rec: _Recorder, sizes: list[tuple], modes: tuple, batch: int, ch: int) -> list[Run]:
    """Forward an instrumented meta copy at every (mode, size); errors are recorded, not raised."""
    runs = []
    was_training = model.training
    p = next(iter(model.parameters()), None)
    dtype = p.dtype if p is not None and p.is_floating_point() else torch.float32
    try:
        for mode in modes:
            model.train(mode == "train")
            for h, w in sizes:
                rec.events, rec.stack = [], []
                run = Run(mode, (h, w), rec.events)
                try:
                    with torch.no_grad(), ShapeOnly():
                        run.output = shape_of(model(torch.empty(batch, ch, h, w, device=META, dtype=dtype)))
                except Exception as e:  # noqa: BLE001 - a failing forward is a verification result
                    run.error = " ".join(f"{type(e).__name__}: {e}".split())[:300]
                    run.where = rec.stack[-1] if rec.stack else ""
                runs.append(run)
    finally:
        model.train(was_training)
    return runs


def compare_runs(ref: Run, new: Run, names: dict[str, str], prefix: str = "") -> str | None:
    """The first difference between two runs in call order, as a one-line message; None when they agree."""
    if ref.error:
        raise PatchError(
            f"verification cannot run the original model in {ref.label} on the meta device ({ref.error}"
            f"{', in ' + ref.where if ref.where else ''}); pass verify=False (--no-verify) to skip it"
        )
    expected: dict[tuple, list] = {}
    for kind, path, shape in ref.events:
        expected.setdefault((kind, path), []).append(shape)
    seen: dict[tuple, int] = {}
    for kind, path, shape in new.events:
        if kind == "act_in":
            continue
        k = seen[(kind, path)] = seen.get((kind, path), -1) + 1
        exp = expected.get((kind, path), [])
        if k < len(exp) and _diff(exp[k], shape):
            what = "activation output" if kind == "act" else "block output"
            return (
                f"{path} ({names.get(path, '?')}): {what} {fmt_shape(shape)} in {prefix}{new.label}, "
                f"expected {fmt_shape(exp[k])}"
            )
    if new.error:
        return f"the forward fails in {prefix}{new.label}{' in ' + new.where if new.where else ''}: {new.error}"
    d = _diff(ref.output, new.output)
    return f"model {d} in {prefix}{new.label}" if d else None


# --- the public check -------------------------------------------------------------------------------------------------


@dataclass
class Reference:
    """The unpatched model's traced shapes, taken before patching (``patch_model`` builds it)."""

    runs: list
    sizes: list
    modes: tuple
    batch: int
    ch: int
    notes: list = field(default_factory=list)


@dataclass
class VerifyReport:
    """What was verified and the verdict.

    Attributes:
        ok (bool): every check passed.
        checks (list[str]): the checks that ran.
        failure (str | None): the first failure, one line.
        notes (list[str]): checks skipped and why.
        seconds (float): wall time of the verification.
    """

    ok: bool = True
    checks: list = field(default_factory=list)
    failure: str | None = None
    notes: list = field(default_factory=list)
    seconds: float = 0.0
    gflops: float | None = None

    def __str__(self) -> str:
        if not self.ok:
            return f"FAILED: {self.failure}"
        s = "passed: " + "; ".join(self.checks)
        return s + (f" (note: {'; '.join(self.notes)})" if self.notes else "") + f" [{self.seconds:.2f}s]"


def stride_of(model: nn.Module) -> int:
    """The largest stride of a detector (``model.stride``), or 32."""
    s = getattr(model, "stride", None)
    try:
        return max(int(torch.as_tensor(s).max()), 1) if s is not None else 32
    except Exception:  # noqa: BLE001 - not a number-like stride
        return 32


def input_channels(model: nn.Module) -> int:
    """Input channels: the YAML's ``ch``, else the first conv's ``in_channels``, else 3."""
    y = getattr(model, "yaml", None)
    if isinstance(y, dict) and isinstance(y.get("ch"), int):
        return y["ch"]
    for m in model.modules():
        if isinstance(m, nn.modules.conv._ConvNd):
            return m.in_channels
    return 3


def check_sizes(imgsz: int | tuple | list, gs: int) -> list[tuple]:
    """``imgsz`` (rounded up to the stride) and a non-square stride multiple about 3/4 of its height."""
    h, w = (imgsz, imgsz) if isinstance(imgsz, int) else (int(imgsz[0]), int(imgsz[1]))
    h, w = (max(gs, math.ceil(v / gs) * gs) for v in (h, w))
    h2 = round(0.75 * h / gs) * gs
    if h2 == w or h2 < gs:
        h2 = h - gs if h - gs >= gs and h - gs != w else h + gs
    return [(h, w), (h2, w)]


def reference_shapes(model: nn.Module, sites: list[Site], imgsz=640, batch: int = 2, modes=("eval", "train")):
    """Trace the shapes of an unpatched ``model`` on a meta copy (call before patching).

    Returns:
        (tuple[Reference, nn.Module, dict]): the reference, the instrumented meta copy (probes removed) and the
            activation input shapes per site path (lists, one per call).
    """
    sizes = check_sizes(imgsz, stride_of(model))
    ch = input_channels(model)
    ref = meta_copy(model)
    rec = instrument(ref, sites, model)
    runs = run_shapes(ref, rec, sizes, modes, batch, ch)
    rec.active = False
    inputs: dict[str, list] = {}
    for run in runs:
        for kind, path, shape in run.events:
            if kind == "act_in":
                inputs.setdefault(path, []).append(shape)
    uninstrument(ref)
    return Reference(runs, sizes, tuple(modes), batch, ch, sorted(rec.notes)), ref, inputs


_MODULE_SLOTS = ("_parameters", "_buffers", "_modules")


@contextlib.contextmanager
def preserved_state(model: nn.Module):
    """Restore buffers (BN statistics), train/eval flags and plain attributes (anchor caches) after a real forward.

    Containers (lists, dicts, sets) are restored in place, so hook handles held elsewhere stay valid.
    """
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    saved = []
    for m in model.modules():
        d = {}
        for k, v in m.__dict__.items():
            if k not in _MODULE_SLOTS:
                d[k] = (v, type(v)(v) if type(v) in (list, dict, set) or isinstance(v, dict) else None)
        saved.append((m, d))
    try:
        yield
    finally:
        with torch.no_grad():
            for b, v in buffers:
                b.copy_(v)
        for m, d in saved:
            for k in [k for k in m.__dict__ if k not in d and k not in _MODULE_SLOTS]:
                del m.__dict__[k]
            for k, (v, content) in d.items():
                m.__dict__[k] = v
                if content is not None:
                    if isinstance(v, list):
                        v[:] = content
                    else:
                        v.clear()
                        v.update(content)


def _finite(obj: Any) -> bool:
    if isinstance(obj, torch.Tensor):
        return not obj.is_floating_point() or bool(torch.isfinite(obj).all())
    if isinstance(obj, dict):
        return all(_finite(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return all(_finite(v) for v in obj)
    return True


def check_finite(model: nn.Module, sites: list[Site], size: tuple, batch: int, ch: int) -> str | None:
    """Real forwards (eval at batch 1, train at ``batch`` >= 2; no grad; state restored) at a small size; a message
    naming the first activation whose output is not finite, or None."""
    p = next(iter(model.parameters()), None)
    device, dtype = (p.device, p.dtype) if p is not None else (torch.device("cpu"), torch.float32)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(max(batch, 2), ch, *size, generator=g).to(device=device, dtype=dtype)
    bad: list[str] = []
    acts, counts = [], {}
    for s in sites:
        owner = model.get_submodule(s.owner_path) if s.owner_path else model
        a = owner._modules[s.attr]
        counts[id(a)] = counts.get(id(a), 0) + 1
        acts.append((s.path, a))

    def hook(m, i, o, path):
        if not _finite(o):
            bad.append(path)

    with preserved_state(model), torch.no_grad():
        handles = [  # a shared instance (Conv.default_act) cannot name its block
            a.register_forward_hook(lambda m, i, o, path=path: hook(m, i, o, path))
            for path, a in acts
            if counts[id(a)] == 1
        ]
        try:
            for mode in ("eval", "train"):
                model.train(mode == "train")
                bad.clear()
                out = model(x if mode == "train" else x[:1])
                if not _finite(out) or bad:
                    where = f"first at the activation of {bad[0]}" if bad else "in the model output"
                    return f"non-finite values (NaN/Inf) in a real {mode} forward at {size[0]}x{size[1]}, {where}"
        finally:
            for h in handles:
                h.remove()
    return None


def fuse_copy(model: nn.Module) -> str:
    """Fuse a meta copy in place the way predict/export do (``model.fuse()``), quietly; returns what was done."""
    fuse = getattr(model, "fuse", None)
    with torch.device(META), torch.no_grad(), ShapeOnly(), contextlib.redirect_stdout(io.StringIO()), _quiet_logging():
        if callable(fuse):
            kw = {"verbose": False} if "verbose" in inspect.signature(fuse).parameters else {}
            n = fuse_activations(model)  # ultralytics' own fuse() knows nothing of ours
            fuse(**kw)
            return "fused" if not n else "fused (with activations)"
        fuse_activations(model)
        return "activations fused (the model has no fuse())"


@contextlib.contextmanager
def _quiet_logging():
    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        yield
    finally:
        logging.disable(previous)


def model_flops(model: nn.Module, imgsz: int | tuple = 640) -> float | None:
    """GFLOPs at ``imgsz`` through ultralytics' ``get_flops`` (thop), run on a meta copy (``model`` itself if it is
    already one); None when thop cannot profile it."""
    try:
        from ultralytics.utils.torch_utils import get_flops
    except ImportError:  # pragma: no cover - ultralytics is a dependency
        return None
    on_meta = next(iter(model.parameters()), torch.empty(0)).device.type == "meta"
    with ShapeOnly():
        try:
            return float(get_flops(model if on_meta else meta_copy(model), imgsz)) or None
        except Exception:  # noqa: BLE001 - GFLOPs are informative only
            return None


def verify_shapes(
    model: nn.Module,
    reference: nn.Module | Reference | None = None,
    imgsz: int | tuple = 640,
    *,
    sites: list[Site] | None = None,
    names: dict[str, str] | None = None,
    batch: int = 2,
    fused: bool = True,
    finite: bool = True,
    finite_imgsz: int = 32,
    flops: bool = False,
    strict: bool = True,
) -> VerifyReport:
    """Check a (patched) model's forward shapes against a reference, and that a small real forward stays finite.

    Args:
        model (nn.Module): the model to check (an ultralytics ``YOLO`` is unwrapped).
        reference (nn.Module | Reference, optional): the same model before patching (a module, or the ``Reference``
            that ``patch_model`` traced). Without one, every activation must map its input shape to itself and every
            forward must run.
        imgsz (int | tuple): image size for the shape checks (the second size is a non-square stride multiple).
        sites (list[Site], optional): activation slots to probe; found with ``find_blocks`` when omitted.
        names (dict, optional): path -> "Type, act" labels for messages.
        batch (int): batch size of the shape checks and of the real train-mode forward (BatchNorm inside some
            activations needs more than one value per channel).
        fused (bool): also check the fused model (eval mode).
        finite (bool): run the small real forward (eval at batch 1, train at ``batch``).
        finite_imgsz (int): its image size (rounded up to the stride).
        flops (bool): also measure GFLOPs at ``imgsz`` (``report.gflops``), on the same meta copy.
        strict (bool): raise ``ShapeMismatch`` / ``PatchError`` on failure instead of returning a failed report.

    Returns:
        (VerifyReport): checks run and verdict.

    Raises:
        ShapeMismatch: a block or activation output differs from the reference (message: path, activation,
            expected vs actual shape, mode and size).
        PatchError: a forward fails or produces non-finite values.
    """
    from .patch import find_blocks, unwrap_model  # late: patch imports this module

    t0 = time.perf_counter()
    model = unwrap_model(model)
    if sites is None:
        sites = [Site(b.path, b.owner_path, b.attr) for b in find_blocks(model)]
    if names is None:
        names = {}
        for s in sites:
            owner = model.get_submodule(s.owner_path) if s.owner_path else model
            names[s.path] = f"{type(owner).__name__}, {act_name(owner._modules[s.attr])}"
    if isinstance(reference, nn.Module):
        reference = reference_shapes(unwrap_model(reference), sites, imgsz, batch)[0]
    sizes = reference.sizes if isinstance(reference, Reference) else check_sizes(imgsz, stride_of(model))
    ch = reference.ch if isinstance(reference, Reference) else input_channels(model)
    sz = " and ".join(f"{h}x{w}" for h, w in sizes)
    report = VerifyReport()
    try:
        new = meta_copy(model)
        rec = instrument(new, sites, model)
        failure = _check_runs(reference, run_shapes(new, rec, sizes, ("eval", "train"), batch, ch), names)
        report.checks.append(f"{len(sites)} blocks, eval+train at {sz}")
        if flops:
            rec.active = False
            report.gflops = model_flops(new, imgsz)
            rec.active = True
        if failure is None and fused:
            try:
                how = fuse_copy(new)  # in place: the copy is not needed unfused any more
            except Exception as e:  # noqa: BLE001 - the model's own fuse() failing is a finding, reported as one
                failure = f"fusing the patched model fails: {type(e).__name__}: {' '.join(str(e).split())[:200]}"
            else:
                failure = _check_runs(reference, run_shapes(new, rec, sizes, ("eval",), batch, ch), names, "fused ")
                report.checks.append(f"{how}, eval at {sz}")
        if failure is None and finite:
            gs = stride_of(model)
            small = (max(gs, math.ceil(finite_imgsz / gs) * gs),) * 2
            failure = check_finite(model, sites, small, batch, ch)
            report.checks.append(f"finite real forward eval+train at {small[0]}x{small[1]}")
    finally:
        report.seconds = time.perf_counter() - t0
    report.notes = sorted(set(getattr(reference, "notes", [])) | rec.notes) if "rec" in locals() else []
    if failure:
        report.ok, report.failure = False, failure
        if strict:
            raise ShapeMismatch(failure) if " expected " in failure else PatchError(failure)
    return report


def _check_runs(reference: Reference | None, runs: list[Run], names: dict, prefix: str = "") -> str | None:
    """Compare runs with the reference's runs of the same mode and size, or check them on their own."""
    for run in runs:
        if reference is not None:
            ref = next(r for r in reference.runs if r.mode == run.mode and r.size == run.size)
            msg = compare_runs(ref, run, names, prefix)
            if msg:
                return msg
            continue
        if run.error:
            return f"the forward fails in {prefix}{run.label}{' in ' + run.where if run.where else ''}: {run.error}"
        ins: dict[str, list] = {}
        for kind, path, shape in run.events:
            if kind == "act_in":
                ins.setdefault(path, []).append(shape)
            elif kind == "act":
                exp = ins[path].pop(0)
                if _diff(exp, shape):
                    return (
                        f"{path} ({names.get(path, '?')}): activation output {fmt_shape(shape)} in {prefix}{run.label}, "
                        f"expected {fmt_shape(exp)} (its input)"
                    )
    return None
