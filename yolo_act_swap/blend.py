"""Blended activations: move a trained model to another activation gradually instead of in one abrupt swap.

A ``Blend`` computes ``(1 - a) * old(x) + a * new(x)`` where ``old`` is the block's trained activation and ``new`` the
one it moves to. At ``a = 0`` only ``old`` runs, so the model computes exactly what it computed before; at ``a = 1``
only ``new`` runs. ``patch_model(model, spec, blend=True)`` installs blends instead of the plain swap; ``set_blend``
is the one call that moves ``a`` (for every blend of a model, in any training loop); ``collapse_blends`` replaces each
blend with its pure new activation when the transition is over.

``a`` is a Python number on the module, saved in the state dict (and so in checkpoints) as the module's extra state.
It is deliberately not a floating-point buffer: EMA helpers (ultralytics' and upstream YOLOv5/YOLOv7's ``ModelEMA``)
average every floating-point buffer, which would drag ``a`` behind the schedule, and reading a GPU buffer to choose
the branch would synchronise the device at every blend. Only ``set_blend`` (or ``load_state_dict``) changes it.

While a model holds blends its ``model.yaml`` has the key ``act_swap_blend`` (see ``BLEND_KEY``), so that every
rebuild from the YAML (trainer rebuilds, ``--resume``, DDP workers) installs the last spec of ``act_swap`` as blends
again; ``collapse_blends`` removes the key, so a rebuild then gives the pure new activation.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn as nn

from .activations.registry import ACT_TAG
from .blocks import unwrap_model
from .errors import ActSwapError

__all__ = ["BLEND_KEY", "Blend", "blend_value", "collapse_blends", "find_blends", "load_old_activations",
           "parse_transition", "set_blend"]

# model.yaml key present while the model holds blends: {} (set by hand), {"epochs": E} or {"iterations": N}
BLEND_KEY = "act_swap_blend"


def _name(m: nn.Module) -> str:
    tag = getattr(m, ACT_TAG, None)
    return tag if isinstance(tag, str) else type(m).__name__.lower()


def _check_a(a: Any) -> float:
    try:
        v = float(a)
    except (TypeError, ValueError):
        raise ActSwapError(f"blend weight a={a!r} is not a number; pass a value in [0, 1]") from None
    if not 0.0 <= v <= 1.0:  # also rejects NaN
        raise ActSwapError(f"blend weight a={v} is outside [0, 1]; pass a value in [0, 1]")
    return v


def parse_transition(value) -> dict:
    """``--transition``: epochs (``3``, ``"3"``, ``"1.5ep"``) or iterations (``"300it"``) as the ``act_swap_blend``
    schedule (``{"epochs": 3}``, ``{"iterations": 300}``) that the trainer's ramp follows."""
    text = str(value).strip().lower()
    unit = "iterations" if text.endswith("it") else "epochs"
    number = text[:-2] if text.endswith(("it", "ep")) else text
    try:
        n = float(number)
    except ValueError:
        n = float("nan")
    if not (math.isfinite(n) and n > 0) or (unit == "iterations" and n != int(n)):
        raise ActSwapError(f"--transition {str(value)[:40]!r}: give epochs (3, 1.5) or iterations (300it), above 0")
    return {unit: int(n) if n == int(n) else n}


class Blend(nn.Module):
    """``(1 - a) * old(x) + a * new(x)``: a trained activation (``old``) on its way to another one (``new``).

    Args:
        old (nn.Module): the block's current activation (its trained parameters are kept and keep training).
        new (nn.Module): the activation to move to (shape-preserving).
        a (float): blend weight in [0, 1]; 0 computes ``old`` alone, 1 ``new`` alone, exactly.

    Attributes:
        a (float): the current weight; change it with ``set_blend`` (or ``set_a``), which every blend of a model
            shares.
    """

    def __init__(self, old: nn.Module, new: nn.Module, a: float = 0.0):
        super().__init__()
        self.old, self.new = old, new
        self.a = _check_a(a)
        setattr(self, ACT_TAG, f"blend({_name(old)}->{_name(new)})")

    def set_a(self, a: float) -> None:
        """Set the blend weight (0: old only, 1: new only)."""
        self.a = _check_a(a)

    @staticmethod
    def _safe_input(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """``x`` for the activation that runs first: a copy when it works in place (the other still needs ``x``)."""
        return x.clone() if getattr(m, "inplace", False) else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.a <= 0.0:
            return self.old(x)
        if self.a >= 1.0:
            return self.new(x)
        y_new = self.new(self._safe_input(self.new, x))
        y_old = self.old(x)
        return torch.lerp(y_old, y_new.to(y_old.dtype), self.a)

    # ``a`` travels in the state dict as a 0-d float64 tensor; a fresh one each time, so in-place EMA updates of
    # state-dict tensors leave the module's value alone.
    def get_extra_state(self) -> torch.Tensor:
        return torch.tensor(self.a, dtype=torch.float64)

    def set_extra_state(self, state) -> None:
        self.a = _check_a(state.item() if isinstance(state, torch.Tensor) else state)

    def extra_repr(self) -> str:
        return f"a={self.a:.4g}"


def find_blends(model: Any) -> list[tuple[str, nn.Module, str, Blend]]:
    """``(path, parent, attr, blend)`` for every ``Blend`` in ``model`` (a module or an ultralytics ``YOLO``)."""
    root = unwrap_model(model)
    out = []
    for path, parent in root.named_modules():
        for attr, child in parent._modules.items():
            if isinstance(child, Blend):
                out.append((f"{path}.{attr}" if path else attr, parent, attr, child))
    return out


def set_blend(model: Any, a: float) -> int:
    """Set the weight ``a`` of every blend in ``model`` (call it on an EMA copy too); returns how many were set.

    Examples:
        >>> patch_model(model, "relu", blend=True)           # a = 0: the model computes what it did before
        >>> for i, batch in enumerate(loader):
        ...     set_blend(model, min(1.0, (i + 1) / ramp_iters))
        ...     if ema: set_blend(ema.ema, min(1.0, (i + 1) / ramp_iters))
        ...     ...
        >>> collapse_blends(model)                            # pure relu from here on
    """
    v = _check_a(a)
    blends = find_blends(model)
    for *_, b in blends:
        b.set_a(v)
    return len(blends)


def blend_value(model: Any) -> float | None:
    """The common ``a`` of the model's blends (None without blends); ActSwapError when they disagree."""
    values = {b.a for *_, b in find_blends(model)}
    if len(values) > 1:
        raise ActSwapError(f"the model's blends have different weights {sorted(values)[:4]}; set one with set_blend")
    return values.pop() if values else None


def collapse_blends(model: Any) -> int:
    """Replace every blend with its pure new activation and drop ``act_swap_blend`` from ``model.yaml``.

    Afterwards the model holds only the new activations (the old ones and their parameters are gone), and a rebuild
    from its YAML gives the same modules. Returns how many blends were collapsed.
    """
    root = unwrap_model(model)
    blends = find_blends(root)
    for _, parent, attr, b in blends:
        parent._modules[attr] = b.new
    y = getattr(root, "yaml", None)
    if isinstance(y, dict):
        y.pop(BLEND_KEY, None)
    return len(blends)


@torch.no_grad()
def load_old_activations(model: Any, weights: nn.Module) -> int:
    """Copy the trained activations' tensors of ``weights`` (a model without blends) into the blends' ``old``.

    A blend at ``P`` keeps the trained activation at ``P.old``, so a state-dict load by name (ultralytics'
    ``model.load``) misses the tensors that ``weights`` holds at ``P`` (FReLU's conv, ACON's p1/p2/beta ...).
    Returns how many tensors were copied.
    """
    src = unwrap_model(weights).state_dict()
    n = 0
    for path, _, _, b in find_blends(model):
        for key, t in b.old.state_dict().items():
            v = src.get(f"{path}.{key}")
            if isinstance(v, torch.Tensor) and isinstance(t, torch.Tensor) and v.shape == t.shape:
                t.copy_(v)
                n += 1
    return n
