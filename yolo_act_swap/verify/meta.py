"""Meta copies of a model (structure without data) and the shape of one activation on meta, a context that undoes
what a real forward changes in a model (BatchNorm statistics, train/eval flags, anchor caches), and one that pauses
the cyclic garbage collector while verification churns through short-lived modules."""

from __future__ import annotations

import contextlib
import copy
import gc
import types
from collections import OrderedDict
from typing import Any

import torch
import torch.nn as nn

META = torch.device("meta")
_MODULE_SLOTS = ("_parameters", "_buffers", "_modules")


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


@contextlib.contextmanager
def paused_gc():
    """Pause the cyclic garbage collector (reference counting goes on), then restore it as it was.

    Patching and verifying make thousands of short-lived modules and tensors (meta copies, hooks, traces), enough to
    trigger full collections, and a full collection walks every object the process holds: about 0.14 s each with
    torch and ultralytics imported (230,000 objects). Nothing of that work lives long, so the collector finds nothing
    to free there; what it leaves is collected at the next collection after the pause.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


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
