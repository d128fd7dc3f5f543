"""Deploy-time folding of ACON-C's per-channel scale into the conv in front of it (run by a fused model's ``fuse()``).

ACON-C ``d x sigmoid(beta d x) + p2 x`` (``d = p1 - p2``) of a conv output ``x`` equals ``a silu(z) + b z`` of
``z = c x`` with ``c = beta d``, ``a = 1 / beta`` and ``b = p2 / c``. Scaling the conv's weight and bias by ``c``
makes the conv emit ``z``, and the activation becomes ``FoldedAconC(a, b)``, which ONNX Runtime runs as one fused
``x sigmoid(x)`` kernel and two depthwise 1x1 convs in its blocked layout (see ``activations/graphs.py``).

A block is folded only when all of these hold, else it is left exactly as it was:

- it holds no BatchNorm (ultralytics' fuse folded it) and computes ``act(conv(x))``: checked by running it on a small random
  input, so any block type that ends that way qualifies and nothing else does;
- ``act`` is an ``AconC`` (per-channel beta; Meta-ACON's beta depends on the input) and the conv is float32/float64
  with values (not on the meta device);
- every ``|c|`` and ``|beta|`` lies in [``C_MIN``, ``1 / C_MIN``], so that the scaled weights, ``a = 1 / beta`` and
  ``b = p2 / c`` stay well inside FP16's range too (an export with ``half=True`` converts the folded model);
- the folded block gives the same output on that input within ``TOL`` (relative).

Folding is idempotent (a folded block has no ``AconC`` left) and touches only what ``fuse()`` is asked to fuse.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ..activations.acon import AconC
from ..activations.graphs import FoldedAconC
from ..activations.registry import ACT_TAG

__all__ = ["C_MIN", "TOL", "fold_acon_into_convs"]

C_MIN = 1e-3  # |c| and |beta| must lie in [C_MIN, 1 / C_MIN]: scaled weights and b = p2 / c stay in FP16 range
TOL = 1e-5  # largest relative difference the check input may show, before and after


def _probe(block: nn.Module, conv: nn.Conv2d) -> torch.Tensor:
    """A small random input for ``block`` (batch 1, fixed seed), on the conv's device and dtype."""
    g = torch.Generator().manual_seed(0)
    size = 8 + max(k * d for k, d in zip(conv.kernel_size, conv.dilation))
    x = torch.randn(1, conv.in_channels, size, size, generator=g, dtype=torch.float64)
    return x.to(device=conv.weight.device, dtype=conv.weight.dtype)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


def _foldable(block: nn.Module):
    """(conv, act) of a block that ends ``act(conv(x))`` with a foldable ``AconC``, else None."""
    conv, act = getattr(block, "conv", None), getattr(block, "act", None)
    if type(act) is not AconC or not isinstance(conv, nn.Conv2d) or type(conv) is not nn.Conv2d:
        return None
    if conv.weight.dtype not in (torch.float32, torch.float64) or act.p1.shape[1] != conv.out_channels:
        return None
    if conv.weight.is_meta or act.beta.is_meta:  # a shape-check copy (verify/) has no values to fold
        return None
    if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in block.modules()):
        return None  # not fused (and a probe would move a training BN's statistics)
    c = (act.beta * (act.p1 - act.p2)).detach()
    for v in (c, act.beta.detach()):
        m = v.abs()
        if not (torch.isfinite(v).all() and (m >= C_MIN).all() and (m <= 1 / C_MIN).all()):
            return None
    return conv, act


@torch.no_grad()
def _fold_block(block: nn.Module) -> bool:
    """Fold one block's ACON-C scale into its conv; True if done (the block is unchanged otherwise)."""
    pair = _foldable(block)
    if pair is None:
        return False
    conv, act = pair
    x = _probe(block, conv)
    try:
        y = block(x)
    except RuntimeError:  # a block that does not take a plain (1, C, H, W) input
        return False
    if _rel(act(conv(x)), y) > TOL:  # the block is not act(conv(x)) (e.g. a BN still in between)
        return False
    c = (act.beta * (act.p1 - act.p2)).reshape(-1)
    folded = FoldedAconC(1.0 / act.beta, act.p2 / c.reshape(act.p2.shape)).to(conv.weight.device)
    folded.requires_grad_(act.beta.requires_grad)
    setattr(folded, ACT_TAG, getattr(act, ACT_TAG, "acon_c"))
    weight, bias = conv.weight.detach().clone(), None if conv.bias is None else conv.bias.detach().clone()
    conv.weight.mul_(c.to(conv.weight.dtype).reshape(-1, *([1] * (conv.weight.dim() - 1))))
    if conv.bias is not None:
        conv.bias.mul_(c.to(conv.bias.dtype))
    block.act = folded
    if _rel(block(x), y) <= TOL:
        return True
    conv.weight.copy_(weight)  # put everything back
    if bias is not None:
        conv.bias.copy_(bias)
    block.act = act
    return False


def fold_acon_into_convs(model: nn.Module) -> int:
    """Fold every foldable ACON-C of ``model`` into the conv before it (see the module docstring); idempotent.

    Returns how many blocks were folded.
    """
    return sum(_fold_block(m) for m in list(model.modules()) if type(getattr(m, "act", None)) is AconC)
