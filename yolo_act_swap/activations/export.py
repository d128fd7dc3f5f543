"""YOLOv5-style variants: export-friendly SiLU and Hard-Swish written with plain ops.

``ExportSiLU`` and ``ExportHardSwish`` compute the same function as ``nn.SiLU`` / ``nn.Hardswish`` using only
``sigmoid``, ``hardtanh``, ``+``, ``*`` and ``/``, ops that every TorchScript, ONNX and CoreML converter knows.

``memory_efficient_mish`` (YOLOv5's name) is an alias of ``mish``: ``nn.Mish`` already keeps only its input for the
backward pass and recomputes there (ATen's ``mish_backward``), so its peak is the minimum a non-in-place activation can
have (output + input gradient); the former custom autograd function took 1.2-1.3x its time at 2.5x its peak (see
docs/performance.md). ``MemoryEfficientMish`` stays importable for checkpoints pickled with it.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .registry import register_activation


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


class MemoryEfficientMish(nn.Mish):
    """``nn.Mish`` under its former name, so that checkpoints pickled with the old class still load (see above)."""

    inplace = False  # instances pickled by the old class have no such attribute


def export_silu(channels=None) -> nn.Module:
    """SiLU with plain ops (exactly x * sigmoid(x))."""
    return ExportSiLU()


def export_hard_swish(channels=None) -> nn.Module:
    """Hard-Swish with plain ops."""
    return ExportHardSwish()


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
