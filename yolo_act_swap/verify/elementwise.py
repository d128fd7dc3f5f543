"""Shape rules for elementwise ops on meta tensors (part of ``ShapeOnly``, see ``shapeonly.py``).

Each rule takes ``(func, args, kwargs)`` and returns the result tensor (an empty meta tensor of the right shape, dtype
and layout), or None to let torch run the op as usual. A shape mismatch raises the RuntimeError a real kernel raises.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .meta import META

F = nn.functional
T = torch.Tensor
UNARY = (
    torch.sigmoid, T.sigmoid, torch.tanh, T.tanh, torch.relu, T.relu, torch.exp, T.exp, torch.abs, T.abs, torch.neg,
    T.neg, T.__neg__, torch.sqrt, T.sqrt, torch.rsqrt, T.rsqrt, torch.clamp, T.clamp, torch.clip, T.clip, T.softmax,
    torch.softmax, torch.zeros_like, torch.ones_like, T.float, T.half, torch.reciprocal, T.reciprocal,
    F.silu, F.relu, F.relu6, F.leaky_relu, F.hardswish, F.hardsigmoid, F.gelu, F.mish, F.elu, F.selu, F.celu,
    F.softplus, F.hardtanh, F.softmax, F.log_softmax, F.tanhshrink, F.softsign, F.logsigmoid, F.dropout,
    torch.hardshrink, T.hardshrink, F.hardshrink, F.softshrink, F.rrelu, F.softmin, torch.full_like, T.contiguous,
    torch.erf, T.erf, torch.log, T.log, torch.log1p, T.log1p, torch.square, T.square, torch.pow, T.pow, T.__pow__,
)  # fmt: skip
_CONTIGUOUS_OUT = (T.softmax, torch.softmax, F.softmax, F.log_softmax, F.softmin)  # not layout-preserving
COMPARE = (T.gt, T.lt, T.ge, T.le, T.__gt__, T.__lt__, T.__ge__, T.__le__, torch.gt, torch.lt, torch.ge, torch.le)
BINARY = (
    torch.add, T.add, T.__add__, T.__radd__, torch.sub, T.sub, T.__sub__, T.__rsub__, torch.mul, T.mul, T.__mul__,
    T.__rmul__, torch.div, T.div, T.__truediv__, T.__rtruediv__, torch.maximum, T.maximum, torch.minimum, T.minimum,
)  # fmt: skip
INPLACE = (T.add_, T.sub_, T.mul_, T.div_, T.__iadd__, T.__isub__, T.__imul__, T.__itruediv__)


def broadcast(a: torch.Size, b: torch.Size) -> tuple:
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


def like(t: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
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


def contiguous(*ts) -> bool:
    """No input is a non-contiguous dense permutation (channels_last, a transpose), whose layout a real kernel may
    carry into its output; contiguous ones and strided views such as ``chunk`` slices give contiguous outputs."""
    for t in ts:
        if isinstance(t, torch.Tensor) and not t.is_contiguous():
            perm = sorted(range(t.dim()), key=lambda i: -t.stride(i))
            if t.permute(perm).is_contiguous():
                return False
    return True


def meta_args(args, kwargs) -> list | None:
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


def unary(func, args, kwargs):
    ts = meta_args(args, kwargs)
    x = args[0]
    if ts is None or len(ts) != 1 or ts[0] is not x:
        return None
    if func is torch.full_like:
        return None if kwargs else like(x)
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
    return like(x)


def binary(func, args, kwargs, inplace=False):
    out = kwargs.get("out")
    if out is not None and (not isinstance(out, torch.Tensor) or out.device.type != "meta" or len(kwargs) != 1):
        return None
    ts = meta_args(args, {} if out is not None else kwargs)
    if ts is None or len(ts) > 2 or len(args) < 2:
        return None
    a, b = args[0], args[1]
    sa = a.shape if isinstance(a, torch.Tensor) else ()
    sb = b.shape if isinstance(b, torch.Tensor) else ()
    shape = broadcast(sa, sb)
    if inplace:
        if shape != tuple(sa):
            raise RuntimeError(f"output with shape {list(sa)} doesn't match the broadcast shape {list(shape)}")
        return a
    dtype = torch.result_type(a, b)
    if out is not None:
        return out if tuple(out.shape) == shape and out.dtype == dtype else None
    full = [t for t in ts if tuple(t.shape) == shape and t.device.type == "meta"]
    if full and full[0].dtype == dtype:
        return like(full[0])
    return torch.empty(shape, dtype=dtype, device=META)


def compare(func, args, kwargs):
    ts = meta_args(args, kwargs)
    if ts is None or len(args) != 2 or kwargs:
        return None
    sa = args[0].shape if isinstance(args[0], torch.Tensor) else ()
    sb = args[1].shape if isinstance(args[1], torch.Tensor) else ()
    shape = broadcast(sa, sb)
    full = [t for t in ts if tuple(t.shape) == shape and t.device.type == "meta"]
    return like(full[0], torch.bool) if full else torch.empty(shape, dtype=torch.bool, device=META)


def where(func, args, kwargs):
    ts = meta_args(args, kwargs)
    if ts is None or len(args) != 3 or kwargs:
        return None
    shape = ()
    for a in args:
        shape = broadcast(shape, a.shape if isinstance(a, torch.Tensor) else ())
    vals = [a for a in args[1:] if isinstance(a, torch.Tensor)]
    if not vals or len({v.dtype for v in vals}) != 1 or len(vals) != 2 or not contiguous(*args):
        return None
    return torch.empty(shape, dtype=vals[0].dtype, device=META)


def prelu(func, args, kwargs):
    ts = meta_args(args, kwargs)
    if ts is None or len(args) != 2 or kwargs:
        return None
    x, w = args
    if w.numel() != 1 and (x.dim() < 2 or w.numel() != x.shape[1]):
        raise RuntimeError(f"prelu: {w.numel()} weights for an input with {x.shape[1]} channels")
    return like(x)


def to(func, args, kwargs):
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
