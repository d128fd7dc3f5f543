"""Numerics shared by the channel-aware activation families (FReLU, ACON, DY-ReLU).

The families import this module and the registry, never each other:

- switches: ``as_bool`` (boolean keywords that arrive as text), ``exporting`` / ``plain_ops`` (when to run plain ops);
- BatchNorm: ``bn_uses_batch_stats``, ``bn_momentum``, ``batch_norm`` (batch-size-1 safe) and ``fold_bn``;
- chunking: ``chunk_slices`` and ``compute_dtype`` for the hand-written autograd functions that work through a
  feature map in cache-sized blocks;
- ``global_avg_pool`` with a memory-lean backward, and ``compiled`` (the ``compile=True`` option's cache).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "CHUNK_ELEMENTS",
    "COMPILE_BACKEND",
    "MIN_CHUNK_ELEMENTS",
    "as_bool",
    "batch_norm",
    "bn_momentum",
    "bn_uses_batch_stats",
    "chunk_slices",
    "compiled",
    "compute_dtype",
    "exporting",
    "fold_bn",
    "global_avg_pool",
    "plain_ops",
]


# ---------------------------------------------------------------------------------------------------------------------
# Switches and BatchNorm
# ---------------------------------------------------------------------------------------------------------------------
def as_bool(value, name: str) -> bool:
    """A boolean keyword (True/False, 0/1, or text: true/false/yes/no/on/off, as from an inline ``--act`` spec)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"{name} must be true or false, got {value!r}")


def exporting() -> bool:
    """True while scripting, tracing or exporting to ONNX: activations then run plain, exportable ops."""
    return torch.jit.is_scripting() or torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()


def plain_ops(x: torch.Tensor) -> bool:
    """True when no custom autograd function is needed: exporting, or no gradient will be recorded."""
    return exporting() or not torch.is_grad_enabled()


def bn_uses_batch_stats(bn: nn.BatchNorm2d, x: torch.Tensor) -> bool:
    """Whether ``bn`` normalises ``x`` with the batch's statistics (training) or with its running statistics.

    A BN in training mode that sees a single value per channel (batch size 1 on a 1x1 map, e.g. MetaAconC's pooled
    input) cannot compute a variance; it then uses its running statistics for that forward and leaves them unchanged.
    """
    if not bn.training and bn.running_mean is not None:
        return False
    if bn.running_mean is not None and x.numel() // max(x.shape[1], 1) <= 1:
        return False
    return True


def bn_momentum(bn: nn.BatchNorm2d) -> float:
    """Advance ``num_batches_tracked`` and return the running-stat update factor, exactly as ``nn.BatchNorm2d``."""
    factor = 0.0 if bn.momentum is None else bn.momentum
    if bn.training and bn.track_running_stats and bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
        factor = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
    return factor


def batch_norm(bn: nn.BatchNorm2d, x: torch.Tensor) -> torch.Tensor:
    """``bn(x)`` that also works in training mode with one value per channel (then it uses the running statistics).

    Args:
        bn (nn.BatchNorm2d): the layer (its parameters, buffers, eps and momentum are used).
        x (torch.Tensor): input of shape (N, C, ...).

    Returns:
        (torch.Tensor): the normalised input.
    """
    if bn_uses_batch_stats(bn, x):
        return bn(x)
    return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)


@torch.no_grad()
def fold_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    """Fold an eval-mode ``bn`` that follows ``conv`` into the conv's weight and bias, in place.

    Args:
        conv (nn.Conv2d): the convolution; it gets a bias if it had none.
        bn (nn.BatchNorm2d): the BatchNorm on the conv's output (its running statistics are used).
    """
    w = conv.weight
    std = (bn.running_var.to(torch.float64) + bn.eps).sqrt()
    gamma = bn.weight.to(torch.float64) if bn.weight is not None else torch.ones_like(std)
    beta = bn.bias.to(torch.float64) if bn.bias is not None else torch.zeros_like(std)
    scale = gamma / std
    b0 = conv.bias.to(torch.float64) if conv.bias is not None else torch.zeros_like(std)
    conv.weight.copy_((w.to(torch.float64) * scale.view(-1, *([1] * (w.dim() - 1)))).to(w.dtype))
    bias = (b0 - bn.running_mean.to(torch.float64)) * scale + beta
    if conv.bias is None:
        conv.bias = nn.Parameter(bias.to(w.dtype), requires_grad=w.requires_grad)
    else:
        conv.bias.copy_(bias.to(conv.bias.dtype))


# ---------------------------------------------------------------------------------------------------------------------
# Chunked elementwise work, global average pooling, torch.compile
# ---------------------------------------------------------------------------------------------------------------------
CHUNK_ELEMENTS = 1 << 18  # elements per CPU thread per work chunk (1 MiB of float32): its share stays in cache
MIN_CHUNK_ELEMENTS = 1 << 16  # below this, per-op overhead outweighs the smaller temporaries


def chunk_slices(x3: torch.Tensor, target: int | None = None):
    """Split an (N, C, L) tensor into (sample-slice, channel-slice) blocks of about ``target`` elements.

    The default target is ``CHUNK_ELEMENTS`` per intra-op thread, so that each core's share of a block stays in cache.

    Blocks hold whole samples when a sample is small, else channel ranges of one sample. A block is at most an eighth of
    the tensor (but not under ``MIN_CHUNK_ELEMENTS``), so temporaries stay a small fraction of a feature map on small
    maps too. On non-CPU devices one block covers the whole tensor (kernel launches, not caches, are the cost there).

    Args:
        x3 (torch.Tensor): tensor of shape (N, C, L).
        target (int, optional): elements per block; defaults to ``CHUNK_ELEMENTS`` times the intra-op threads.

    Returns:
        (list[tuple[slice, slice]]): blocks covering the tensor in memory order.
    """
    n, c, length = x3.shape
    if x3.device.type != "cpu":
        return [(slice(0, n), slice(0, c))]
    target = min(target or CHUNK_ELEMENTS * torch.get_num_threads(), max(x3.numel() // 8, MIN_CHUNK_ELEMENTS))
    per_sample = max(c * length, 1)
    if per_sample <= target:
        step = max(target // per_sample, 1)
        return [(slice(i, min(i + step, n)), slice(0, c)) for i in range(0, n, step)]
    cstep = max(target // max(length, 1), 1)
    return [(slice(i, i + 1), slice(j, min(j + cstep, c))) for i in range(n) for j in range(0, c, cstep)]


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Dtype the elementwise math runs in: float32 for half types, else the input's (a block is upcast at a time:
    chunk-sized on CPU, the whole tensor on a GPU)."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


class _GlobalAvgPool(torch.autograd.Function):
    """``x.mean((2, 3))`` whose backward returns a broadcast view instead of a dense feature map.

    The engine then adds it in place into the dense input gradient, so the pooled branch costs no extra feature map.
    """

    @staticmethod
    def forward(ctx, x):
        ctx.shape = x.shape
        return x.mean((2, 3))

    @staticmethod
    def backward(ctx, g):
        n, c, h, w = ctx.shape
        return (g / (h * w)).view(n, c, 1, 1).expand(n, c, h, w)


def global_avg_pool(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, C) spatial mean; memory-lean backward when gradients are recorded."""
    if plain_ops(x) or not x.requires_grad:
        return x.mean((2, 3))
    return _GlobalAvgPool.apply(x)


COMPILE_BACKEND = "inductor"  # torch.compile backend of the activations' ``compile=True`` option
_COMPILED: dict = {}


def compiled(fn):
    """``fn`` through ``torch.compile`` (built once per function and backend, on first use), with dynamic shapes so
    that a few compiled graphs serve every layer of a network instead of one per feature-map size."""
    key = (fn, COMPILE_BACKEND)
    if key not in _COMPILED:
        _COMPILED[key] = torch.compile(fn, backend=COMPILE_BACKEND, dynamic=True)
    return _COMPILED[key]
