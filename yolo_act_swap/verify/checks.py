"""The checks beside the shape trace: a small real forward stays finite, the model still fuses, and its GFLOPs."""

from __future__ import annotations

import inspect
from typing import Any

import torch
import torch.nn as nn

from ..activations.registry import fuse_activations
from ..blocks import Site
from ..io import quiet
from .meta import META, meta_copy, preserved_state
from .shapeonly import shape_mode


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
        a = s.act_in(model)
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
    with torch.device(META), torch.no_grad(), shape_mode(), quiet():
        if callable(fuse):
            kw = {"verbose": False} if "verbose" in inspect.signature(fuse).parameters else {}
            n = fuse_activations(model)  # ultralytics' own fuse() knows nothing of ours
            fuse(**kw)
            return "fused" if not n else "fused (with activations)"
        fuse_activations(model)
        return "activations fused (the model has no fuse())"


def model_flops(model: nn.Module, imgsz: int | tuple = 640) -> float | None:
    """GFLOPs at ``imgsz`` through ultralytics' ``get_flops`` (thop), run on a meta copy (``model`` itself if it is
    already one); None when thop cannot profile it."""
    try:
        from ultralytics.utils.torch_utils import get_flops
    except ImportError:  # pragma: no cover - ultralytics is a dependency
        return None
    on_meta = next(iter(model.parameters()), torch.empty(0)).device.type == "meta"
    with shape_mode():
        try:
            return float(get_flops(model if on_meta else meta_copy(model), imgsz)) or None
        except Exception:  # noqa: BLE001 - GFLOPs are informative only
            return None
