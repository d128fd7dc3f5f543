"""Shape structures of forward outputs (tensors, tuples, lists, dicts), their text, and where two of them differ."""

from __future__ import annotations

from typing import Any

import torch


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


def diff(a: Any, b: Any, where: str = "output") -> str | None:
    """First place where two shape structures differ, as ``where: expected X, got Y``; None when equal."""
    if type(a) is not type(b) or (isinstance(a, (list, dict)) and len(a) != len(b)):
        return f"{where}: expected {fmt_shape(a)}, got {fmt_shape(b)}"
    if isinstance(a, dict):
        if list(a) != list(b):
            return f"{where}: expected keys {list(a)}, got {list(b)}"
        for k in a:
            d = diff(a[k], b[k], f"{where}[{k!r}]")
            if d:
                return d
        return None
    if isinstance(a, (list, tuple)) and not all(isinstance(i, int) for i in a):
        if len(a) != len(b):
            return f"{where}: expected {fmt_shape(a)}, got {fmt_shape(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            d = diff(x, y, f"{where}[{i}]")
            if d:
                return d
        return None
    return None if a == b else f"{where}: expected {fmt_shape(a)}, got {fmt_shape(b)}"
