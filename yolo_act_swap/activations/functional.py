"""Numerics shared by the channel-aware activation families (FReLU, ACON, DY-ReLU).

The families import this module and the registry, never each other:

- switches: ``as_bool`` (boolean keywords that arrive as text), ``exporting`` / ``plain_ops`` (when to run plain ops);
- BatchNorm: ``bn_uses_batch_stats``, ``bn_momentum``, ``batch_norm`` (batch-size-1 safe) and ``fold_bn``;
- ``affine``: ``x * a + b`` with per-channel ``a`` and ``b`` in two vectorised passes (see there);
- chunking: ``chunk_slices``, ``run_blocks`` and ``compute_dtype`` for the hand-written autograd functions that work
  through a feature map in cache-sized blocks (on CPU, single-threaded blocks shared out to a small worker pool);
- ``global_avg_pool`` with a memory-lean backward, and ``compiled`` (the ``compile=True`` option's cache).
"""

from __future__ import annotations

import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

from .pool import (
    POOL_MIN_ELEMENTS,
    Blocks,
    one_thread,
    one_thread_graph,
    one_thread_if_small,
    pool_workers,
    run_blocks,
    small_pass,
)

__all__ = [
    "CHUNK_ELEMENTS",
    "COMPILE_BACKEND",
    "MIN_CHUNK_ELEMENTS",
    "POOL_MIN_ELEMENTS",
    "SERIAL_CHUNK_ELEMENTS",
    "Blocks",
    "affine",
    "as_bool",
    "batch_norm",
    "bn_momentum",
    "bn_uses_batch_stats",
    "chunk_slices",
    "compiled",
    "compute_dtype",
    "exporting",
    "fold_bn",
    "one_thread",
    "one_thread_graph",
    "one_thread_if_small",
    "global_avg_pool",
    "plain_ops",
    "pool_workers",
    "pooled_mean",
    "run_blocks",
    "same_layout",
    "small_batch_norm",
    "planes",
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
    # torch imports torch.onnx on first use (25-30 ms); an export that has not imported it is not running
    onnx = sys.modules.get("torch.onnx")
    return torch.jit.is_scripting() or torch.jit.is_tracing() or (onnx is not None and onnx.is_in_onnx_export())


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


def small_batch_norm(bn: nn.BatchNorm2d, b: torch.Tensor) -> torch.Tensor:
    """``batch_norm(bn, b)`` for an (N, C) tensor of a few values (a hyper-function's), with plain small ops.

    ATen's BatchNorm kernel runs even a (8, 16) input as OpenMP regions, which cost a scheduler slice each beside
    other processes (fwd+bwd 137 ms at 2 threads, load 11); these ops stay on one thread. Same statistics, running
    updates and ``num_batches_tracked`` as ``nn.BatchNorm2d`` (and its running statistics at batch size 1).
    """
    if type(bn) is not nn.BatchNorm2d:
        return batch_norm(bn, b[:, :, None, None]).flatten(1)
    b = b.to(compute_dtype(b.dtype))  # statistics of half types in float32 (as ATen's kernel computes them)
    if bn_uses_batch_stats(bn, b):
        mean, var = b.mean(0), b.var(0, unbiased=False)
        factor = bn_momentum(bn)
        if bn.training and bn.running_mean is not None:
            with torch.no_grad():
                n = b.shape[0]
                bn.running_mean.mul_(1 - factor).add_(mean.detach().to(bn.running_mean.dtype), alpha=factor)
                unbiased = var.detach().to(bn.running_var.dtype) * (n / max(n - 1, 1))
                bn.running_var.mul_(1 - factor).add_(unbiased, alpha=factor)
    else:
        mean, var = bn.running_mean.to(b.dtype), bn.running_var.to(b.dtype)
    y = (b - mean) * torch.rsqrt(var + bn.eps)
    return y * bn.weight + bn.bias if bn.weight is not None else y


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
CHUNK_ELEMENTS = 1 << 18  # elements per work block (1 MiB of float32): a block's temporaries stay in a core's cache
MIN_CHUNK_ELEMENTS = 1 << 15  # below this, per-op overhead outweighs the smaller temporaries
# blocks of a pass run on one thread (a map under POOL_MIN_ELEMENTS): 512 KiB of float32, a block with its temporaries
# in one core's L2; 3-10 % faster than 1 MiB blocks at [8, 256, 20, 20], [8, 128, 40, 40] and [4, 64, 80, 80]
SERIAL_CHUNK_ELEMENTS = 1 << 17


def chunk_slices(x3: torch.Tensor, target: int | None = None):
    """Split an (N, C, L) tensor into (sample-slice, channel-slice) blocks of about ``target`` elements.

    Blocks hold whole (N, C) planes: whole samples when a sample is small, else channel ranges of one sample. On the
    worker pool (a tensor of ``POOL_MIN_ELEMENTS`` or more) a block is at most an eighth of the tensor (but not under
    ``MIN_CHUNK_ELEMENTS``), so that ``run_blocks`` has several blocks per worker to balance; a smaller tensor, whose
    blocks run one after the other on one thread, gets blocks of ``SERIAL_CHUNK_ELEMENTS`` (or ``CHUNK_ELEMENTS`` if
    that is smaller). On non-CPU devices one block covers the whole tensor (kernel launches, not caches, are the cost
    there).

    Args:
        x3 (torch.Tensor): tensor of shape (N, C, L).
        target (int, optional): elements per block; defaults to ``CHUNK_ELEMENTS`` (on the pool) or the smaller of it
            and ``SERIAL_CHUNK_ELEMENTS``.

    Returns:
        (Blocks): blocks ``(slice, slice)`` covering the tensor in memory order; ``.elements`` is its size.
    """
    n, c, length = x3.shape
    if x3.device.type != "cpu":
        return Blocks([(slice(0, n), slice(0, c))], x3.numel())
    if small_pass(x3.device, x3.numel()):
        target = target or min(CHUNK_ELEMENTS, SERIAL_CHUNK_ELEMENTS)
    else:
        target = min(target or CHUNK_ELEMENTS, max(x3.numel() // 8, MIN_CHUNK_ELEMENTS))
    per_sample = max(c * length, 1)
    if per_sample <= target:
        step = max(target // per_sample, 1)
        return Blocks([(slice(i, min(i + step, n)), slice(0, c)) for i in range(0, n, step)], x3.numel())
    cstep = max(target // max(length, 1), 1)
    return Blocks([(slice(i, i + 1), slice(j, min(j + cstep, c))) for i in range(n) for j in range(0, c, cstep)],
                  x3.numel())


def affine(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``x * a + b`` where ``a`` and ``b`` broadcast along ``x``'s innermost dimension (per-channel coefficients of an
    (N, C, HW) block), as ``mul`` then in-place ``add_``.

    ``torch.addcmul(b, x, a)`` computes the same in one pass, but on CPU TensorIterator vectorises a loop only when at
    most one operand is broadcast along the inner dimension; with two it runs scalar code, about 3x the time of these
    two passes together (a (256, 400) float block, one thread: 54 us against 18 us; one ``clone`` is 10 us).
    """
    return torch.mul(x, a, out=out).add_(b)


def same_layout(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``t`` (NCHW-contiguous, computed block by block) in ``like``'s memory format: a channels_last input gets a
    channels_last result with the same values (one copy); anything else is returned as is."""
    if like.dim() == 4 and not like.is_contiguous() and like.is_contiguous(memory_format=torch.channels_last):
        return t.contiguous(memory_format=torch.channels_last)
    return t


def planes(x: torch.Tensor):
    """A 3-D view of an (N, C, H, W) tensor for block-wise elementwise work, or None when it has no such view.

    Returns ``(x3, per_channel, nchw)``: NCHW-contiguous gives (N, C, HW) and ``per_channel(t)`` turns an
    (N|1, C, ...) per-channel tensor into (N|1, C, 1); channels_last gives (N, HW, C) and (N|1, 1, C). ``chunk_slices``
    of ``x3`` then blocks along dim 1 (channels, or pixels), and a per-channel tensor is indexed ``[ns, ms]`` when
    ``nchw``, else ``[ns]``.
    """
    n, c, h, w = x.shape
    if x.is_contiguous():
        return x.view(n, c, h * w), lambda t: t.reshape(t.shape[0], c, 1), True
    if x.is_contiguous(memory_format=torch.channels_last):
        return x.permute(0, 2, 3, 1).view(n, h * w, c), lambda t: t.reshape(t.shape[0], 1, c), False
    return None


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Dtype the elementwise math runs in: float32 for half types, else the input's (a block is upcast at a time:
    chunk-sized on CPU, the whole tensor on a GPU)."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def pooled_mean(x: torch.Tensor) -> torch.Tensor:
    """``x.mean((2, 3))`` of an (N, C, H, W) tensor; NCHW on CPU with the worker pool: block by block on the pool
    (one join instead of a parallel region that waits for a descheduled thread), each block's means exact as the
    whole-tensor op's."""
    view = planes(x) if x.dim() == 4 and x.device.type == "cpu" and not torch.jit.is_scripting() else None
    if view is None or not view[2]:
        return x.mean((2, 3))
    x3 = view[0]
    blocks = chunk_slices(x3)
    if not pool_workers(x.device, len(blocks), blocks.elements):
        return x.mean((2, 3))
    out = torch.empty(x.shape[:2], dtype=x.dtype, device=x.device)
    for (ns, cs), part in zip(blocks, run_blocks(lambda b: x3[b].mean(-1), blocks, x.device)):
        out[ns, cs] = part
    return out


class _GlobalAvgPool(torch.autograd.Function):
    """``x.mean((2, 3))`` whose backward returns a broadcast view instead of a dense feature map.

    The engine then adds it in place into the dense input gradient, so the pooled branch costs no extra feature map.
    """

    @staticmethod
    def forward(ctx, x):
        ctx.shape = x.shape
        return pooled_mean(x)

    @staticmethod
    def backward(ctx, g):
        n, c, h, w = ctx.shape
        return (g / (h * w)).view(n, c, 1, 1).expand(n, c, h, w)


def global_avg_pool(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, C) spatial mean; memory-lean backward when gradients are recorded."""
    if exporting():
        return x.mean((2, 3))
    if not torch.is_grad_enabled() or not x.requires_grad:
        return pooled_mean(x)
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
