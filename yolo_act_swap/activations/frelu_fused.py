"""FReLU on the fused C kernels (``native.py``): ``max(x, BN(dwconv(x)))`` in two passes forward and two backward,
each one sweep over the feature map, for float32 NCHW input on CPU.

Training forward: the first pass computes the depthwise conv a row at a time and sums it and its square per plane
(the BN's batch statistics, in float64); the second recomputes the conv and writes ``max(x, A c + B)``. Only ``x`` is
kept: the backward recomputes the conv (and from it which branch won) instead of keeping the conv output or a mask.
Its first pass sums the funnel's gradient and its product with the conv output per plane (the BN's backward); the
second forms the conv output's gradient for one plane at a time in a scratch buffer and writes the input gradient
(the identity branch's part plus the transposed conv) and the plane's parts of the weight and bias gradients.

Eval (``torch.no_grad()``, the BN's running statistics or ``fuse()``) is the second forward pass alone. The BN's
running statistics and ``num_batches_tracked`` update as ``nn.BatchNorm2d`` updates them.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from . import native, native_frelu
from .functional import bn_uses_batch_stats, run_blocks

__all__ = ["FusedFReLUFunction", "bn_backward_coefs", "fused_eval", "usable"]


def usable(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether FReLU's pass over ``x`` runs the fused kernels: a float32 NCHW CPU map, a float32 square kernel."""
    return (
        x.dim() == 4 and x.is_contiguous() and weight.dtype == torch.float32 and weight.shape[-1] == weight.shape[-2]
        and native.usable(x.view(x.shape[0], x.shape[1], -1))
    )


def bn_backward_coefs(s1, s2, mean, invstd, bn_weight, m: int, cdt):
    """From the per-channel sums of ``gt`` and ``gt * c``: ``dL/dc = k gt + a c + b`` (batch-statistics BN), and the
    BN weight's gradient ``sum gt * c_hat``. Returns (k, a, b, s2_hat), each (C,)."""
    mu, inv = mean.to(cdt), invstd.to(cdt)
    s2 = (s2 - mu * s1) * inv  # sum of gt * c_hat
    k = bn_weight.to(cdt) * inv
    a = -k * inv * s2 / m
    b = k * (inv * s2 * mu - s1) / m
    return k, a, b, s2


class _Geometry:
    """A map's (N, C, HW) view, its blocks and its conv parameters as the kernels take them."""

    def __init__(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None):
        n, c, self.h, self.w = x.shape
        self.x3 = x.view(n, c, self.h * self.w)
        self.blocks = native.blocks(self.x3, True)
        self.weight = weight.detach().reshape(c, weight.shape[-2], weight.shape[-1]).contiguous()
        self.bias = bias.detach().to(torch.float32).contiguous() if bias is not None else None

    def conv(self, cs):  # the block's weight and bias
        return self.weight[cs], self.bias[cs] if self.bias is not None else None

    def forward(self, ab: torch.Tensor) -> torch.Tensor:
        """``max(x, A conv(x) + B)`` block by block, ``ab`` (C, 2)."""
        y3 = torch.empty_like(self.x3)
        hw = (self.h, self.w)
        run_blocks(lambda b: native_frelu.frelu_forward(self.x3[b], hw, *self.conv(b[1]), ab[b[1]], y3[b]), self.blocks,
                   self.x3.device)
        return y3

    def stats(self) -> torch.Tensor:
        """Per channel (C, 2), float64: ``sum c`` and ``sum c^2`` of the conv output."""
        return self._sums(lambda b, out: native_frelu.frelu_stats(self.x3[b], (self.h, self.w), *self.conv(b[1]), out))

    def grad_sums(self, g3: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
        """Per channel (C, 2), float64: ``sum gt`` and ``sum gt c`` (gt: the gradient where the funnel won)."""
        return self._sums(lambda b, out: native_frelu.frelu_backward_sums(
            self.x3[b], g3[b], (self.h, self.w), *self.conv(b[1]), ab[b[1]], out))

    def _sums(self, call) -> torch.Tensor:
        n, c, _ = self.x3.shape
        sums = torch.empty(n, c, 2, dtype=torch.float64)
        run_blocks(lambda b: call(b, sums[b]), self.blocks, self.x3.device)
        return sums.sum(0)


class FusedFReLUFunction(torch.autograd.Function):
    """Training forward and backward of ``max(x, BN_batchstats(dwconv(x)))`` that keep only ``x`` (see the module)."""

    @staticmethod
    def forward(ctx, x, weight, bias, bn_weight, bn_bias, running_mean, running_var, factor, eps):
        geo = _Geometry(x, weight, bias)
        n, c, h, w = x.shape
        m = n * h * w
        s = geo.stats()
        mean = s[:, 0] / m
        var = (s[:, 1] / m - mean * mean).clamp_min_(0)
        invstd = torch.rsqrt(var + eps)
        if running_mean is not None:  # as nn.BatchNorm2d: the unbiased variance into the running estimate
            with torch.no_grad():
                running_mean.mul_(1 - factor).add_(mean.to(running_mean.dtype), alpha=factor)
                running_var.mul_(1 - factor).add_((var * (m / max(m - 1, 1))).to(running_var.dtype), alpha=factor)
        a = bn_weight.detach().to(torch.float64) * invstd
        ab = torch.stack((a, bn_bias.detach().to(torch.float64) - mean * a), -1).to(torch.float32).contiguous()
        ctx.save_for_backward(x, weight, bias, bn_weight)
        ctx.stats = (mean, invstd, ab)
        return geo.forward(ab).view(x.shape)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):
        x, weight, bias, bn_weight = ctx.saved_tensors
        mean, invstd, ab = ctx.stats
        need = ctx.needs_input_grad
        geo = _Geometry(x, weight, bias)
        n, c, h, w = x.shape
        g3 = g.to(torch.float32).contiguous().view(n, c, h * w)
        s = geo.grad_sums(g3, ab)
        k, a, b, s2 = bn_backward_coefs(s[:, 0], s[:, 1], mean, invstd, bn_weight, n * h * w, torch.float64)
        kab = torch.stack((k, a, b), -1).to(torch.float32).contiguous()
        gx3 = torch.empty_like(geo.x3) if need[0] else None
        kk = weight.shape[-1]
        gw = torch.zeros(n, c, kk * kk, dtype=torch.float64) if need[1] else None
        gb = torch.zeros(n, c, 1, dtype=torch.float64) if need[2] and bias is not None else None

        def block(bl):
            ns, cs = bl
            native_frelu.frelu_backward(
                geo.x3[bl], g3[bl], (h, w), *geo.conv(cs), ab[cs], kab[cs], gx3[bl] if gx3 is not None else None,
                gw[bl] if gw is not None else None, gb[bl] if gb is not None else None,
            )

        run_blocks(block, geo.blocks, x.device)
        return (
            gx3.view(x.shape) if gx3 is not None else None,
            gw.sum(0).view(weight.shape).to(weight.dtype) if gw is not None else None,
            gb.sum(0).view(bias.shape).to(bias.dtype) if gb is not None else None,
            s2.to(bn_weight.dtype) if need[3] else None,
            s[:, 0].to(bn_weight.dtype) if need[4] else None,
            None, None, None, None,
        )


def fused_eval(x: torch.Tensor, conv: nn.Conv2d, bn: nn.BatchNorm2d | None) -> torch.Tensor | None:
    """FReLU's eval pass on the fused kernels (the BN's running statistics, or none after ``fuse()``), or None where
    it does not apply (a BN that would use batch statistics, another BN type, non-float32 parameters)."""
    if bn is not None and (type(bn) is not nn.BatchNorm2d or bn_uses_batch_stats(bn, x) or bn.running_var is None):
        return None
    if not usable(x, conv.weight) or (conv.bias is not None and conv.bias.dtype != torch.float32):
        return None
    c = x.shape[1]
    if bn is None:
        a, b = torch.ones(c, dtype=torch.float64), torch.zeros(c, dtype=torch.float64)
    else:
        a = torch.rsqrt(bn.running_var.detach().to(torch.float64) + bn.eps)
        if bn.weight is not None:
            a = a * bn.weight.detach().to(torch.float64)
        b = -bn.running_mean.detach().to(torch.float64) * a
        if bn.bias is not None:
            b = b + bn.bias.detach().to(torch.float64)
    ab = torch.stack((a, b), -1).to(torch.float32).contiguous()
    return _Geometry(x, conv.weight, conv.bias).forward(ab).view(x.shape)
