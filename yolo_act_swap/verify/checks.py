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
from .trace import act_name


def _finite(obj: Any) -> bool:
    if isinstance(obj, torch.Tensor):
        return not obj.is_floating_point() or bool(torch.isfinite(obj).all())
    if isinstance(obj, dict):
        return all(_finite(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return all(_finite(v) for v in obj)
    return True


def _forwards(size: tuple, batch: int, gs: int) -> list[tuple[str, int, tuple]]:
    """(mode, batch, size) of the real forwards: eval at batch 1; train at ``batch`` (>= 2) and at batch 1, which
    ultralytics' last train batch can be (at twice the stride, so that the model's own BatchNorm sees more than one
    value per channel)."""
    one = (max(size[0], 2 * gs), max(size[1], 2 * gs))
    return [("eval", 1, size), ("train", max(batch, 2), size), ("train", 1, one)]


def check_finite(model: nn.Module, sites: list[Site], size: tuple, batch: int, ch: int, gs: int = 32,
                 names: dict | None = None) -> str | None:
    """Real forwards (``_forwards``; no grad; state restored) at a small size; a message naming the block and
    activation whose output is not finite or whose forward raises, or None."""
    p = next(iter(model.parameters()), None)
    device, dtype = (p.device, p.dtype) if p is not None else (torch.device("cpu"), torch.float32)
    names = names or {}
    acts, counts = [], {}
    for s in sites:
        a = s.act_in(model)
        counts[id(a)] = counts.get(id(a), 0) + 1
        acts.append((s.path, a))
    bad: list[str] = []
    running: list[str] = []  # activations whose forward has started and not finished (innermost last)
    done: list[str] = []

    def post(o, path):
        if running and running[-1] == path:
            running.pop()
        done.append(path)
        if not _finite(o):
            bad.append(path)

    current = dict(acts)

    def where(path: str) -> str:  # the block (its type) and the activation now in it
        kind = (names.get(path) or "").split(",")[0]
        return f"{path} ({kind + ', ' if kind else ''}{act_name(current[path])})"

    with preserved_state(model), torch.no_grad():
        handles = []
        for path, a in acts:
            if counts[id(a)] == 1:  # a shared instance (Conv.default_act) cannot name its block
                handles.append(a.register_forward_pre_hook(lambda m, i, path=path: running.append(path)))
                handles.append(a.register_forward_hook(lambda m, i, o, path=path: post(o, path)))
        try:
            for mode, n, hw in _forwards(size, batch, gs):
                model.train(mode == "train")
                bad.clear(), running.clear(), done.clear()
                g = torch.Generator().manual_seed(0)
                x = torch.rand(n, ch, *hw, generator=g).to(device=device, dtype=dtype)
                run = f"a real {mode} forward at batch {n}, {hw[0]}x{hw[1]}"
                try:
                    out = model(x)
                except Exception as e:  # noqa: BLE001 - any failure of the patched forward is a finding
                    at = (f"at {where(running[-1])}" if running else
                          f"after {where(done[-1])}" if done else "before any swapped activation")  # fmt: skip
                    return f"{run} fails {at}: {type(e).__name__}: {' '.join(str(e).split())[:160]}"
                if not _finite(out) or bad:
                    at = f"first at the activation of {where(bad[0])}" if bad else "in the model output"
                    return f"non-finite values (NaN/Inf) in {run}, {at}"
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
