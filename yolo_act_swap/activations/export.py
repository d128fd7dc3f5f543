"""YOLOv5-style variants: export-friendly SiLU and Hard-Swish written with plain ops, and a memory-efficient Mish.

``ExportSiLU`` and ``ExportHardSwish`` compute the same function as ``nn.SiLU`` / ``nn.Hardswish`` using only
``sigmoid``, ``hardtanh``, ``+``, ``*`` and ``/``, ops that every TorchScript, ONNX and CoreML converter knows.
``MemoryEfficientMish`` keeps only its input for the backward pass and recomputes the rest there, trading a little
compute for the memory that autograd would otherwise hold for ``softplus(x)`` and ``tanh(softplus(x))``.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .registry import register_activation

_LOW_PRECISION = (torch.float16, torch.bfloat16)


class ExportSiLU(nn.Module):
    """SiLU as ``x * sigmoid(x)`` with plain ops, for TorchScript, ONNX and CoreML export."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply x * sigmoid(x)."""
        return x * torch.sigmoid(x)

    def extra_repr(self) -> str:
        """Readable formula."""
        return "x * sigmoid(x), plain ops"


class ExportHardSwish(nn.Module):
    """Hard-Swish as ``x * hardtanh(x + 3, 0, 6) / 6`` with plain ops, for TorchScript, ONNX and CoreML export."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply x * hardtanh(x + 3, 0, 6) / 6."""
        return x * F.hardtanh(x + 3.0, 0.0, 6.0) / 6.0

    def extra_repr(self) -> str:
        """Readable formula."""
        return "x * hardtanh(x + 3, 0, 6) / 6, plain ops"


def _mish(x: torch.Tensor) -> torch.Tensor:
    """x * tanh(softplus(x)), computed in float32 for half/bfloat16 inputs and returned in the input's dtype."""
    xf = x.float() if x.dtype in _LOW_PRECISION else x
    return (xf * torch.tanh(F.softplus(xf))).to(x.dtype)


class MishFunction(torch.autograd.Function):
    """Mish with a hand-written backward that saves only the input.

    d/dx [x * tanh(sp(x))] = tanh(sp(x)) + x * sigmoid(x) * (1 - tanh(sp(x))^2), since sp'(x) = sigmoid(x).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        """Forward: keep x, nothing else."""
        ctx.save_for_backward(x)
        return _mish(x)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> torch.Tensor:
        """Backward: recompute softplus, tanh and sigmoid from the saved input."""
        (x,) = ctx.saved_tensors
        xf = x.float() if x.dtype in _LOW_PRECISION else x
        t = torch.tanh(F.softplus(xf))
        grad = t + xf * torch.sigmoid(xf) * (1.0 - t * t)
        return (grad_output * grad).to(x.dtype)


class MemoryEfficientMish(nn.Module):
    """Mish, ``x * tanh(softplus(x))``, whose autograd saves only the input (YOLOv5's ``MemoryEfficientMish`` idea).

    When no gradient is needed, or while tracing / exporting to ONNX, it runs the same formula with plain ops, so
    inference and export see an ordinary graph.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply Mish."""
        plain = torch.onnx.is_in_onnx_export() or torch.jit.is_tracing()
        if plain or not (torch.is_grad_enabled() and x.requires_grad):
            return x * torch.tanh(F.softplus(x))
        return MishFunction.apply(x)

    def extra_repr(self) -> str:
        """Readable formula."""
        return "x * tanh(softplus(x)), saves only x for backward"


def export_silu(channels=None) -> nn.Module:
    """SiLU with plain ops (exactly x * sigmoid(x))."""
    return ExportSiLU()


def export_hard_swish(channels=None) -> nn.Module:
    """Hard-Swish with plain ops."""
    return ExportHardSwish()


def memory_efficient_mish(channels=None) -> nn.Module:
    """Mish that saves only its input for backward."""
    return MemoryEfficientMish()


register_activation(
    "export_silu",
    export_silu,
    kind="export",
    silu_init=True,
    aliases=("export_swish",),
    description="x * sigmoid(x) with plain ops, for TorchScript/ONNX/CoreML",
)
register_activation(
    "export_hard_swish",
    export_hard_swish,
    kind="export",
    aliases=("export_hardswish",),
    description="x * hardtanh(x + 3, 0, 6) / 6 with plain ops, for TorchScript/ONNX/CoreML",
)
register_activation(
    "memory_efficient_mish",
    memory_efficient_mish,
    kind="export",
    aliases=("efficient_mish",),
    description="Mish with a custom autograd that saves only the input (recomputes in backward)",
)
