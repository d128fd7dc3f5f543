"""FReLU (Funnel ReLU, Ma et al. 2020): ``y = max(x, BN(depthwise_conv_kxk(x)))``.

Float32 NCHW maps on CPU run the fused C kernels of ``frelu_fused.py`` (training and eval; only ``x`` is kept).
Otherwise, training on large maps uses one custom autograd function for conv -> BN -> max. It keeps ``x`` (which SiLU
keeps too), a one-byte mask of the max's winner and the BN's per-channel statistics, and recomputes the depthwise
conv in the backward pass instead of keeping its output; at one thread an NCHW input's funnel runs in channels_last
inside it (the depthwise conv's fast layout on CPU), its copy of ``x`` saved in place of ``x``. Small maps (and
``recompute=False``) run conv and BN through autograd and only the max through a custom function that keeps the byte
mask. The straightforward module keeps the conv output, the BN output and both max inputs, and PyTorch's ``maximum``
backward is several full passes; see ``benchmarks/activations.py`` for the figures.
Eval mode and ``torch.no_grad()`` without the fused kernels, and ONNX export, run plain ops; ``fuse()`` folds the BN
into the conv.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .frelu_fused import FusedFReLUFunction, bn_backward_coefs, fused_eval
from .frelu_fused import usable as fused_usable
from .functional import (
    affine,
    as_bool,
    batch_norm,
    bn_momentum,
    bn_uses_batch_stats,
    chunk_slices,
    compute_dtype,
    exporting,
    fold_bn,
    pool_workers,
    run_blocks,
)
from .graphs import frelu_graph
from .keywords import Bounds
from .registry import register_activation

__all__ = ["FReLU", "RECOMPUTE_MIN_ELEMENTS"]

RECOMPUTE_MIN_ELEMENTS = 1 << 18  # smaller inputs take the plain-autograd path (see FReLU's ``recompute``)


def _conv_backward(grad, x, weight, has_bias, padding, groups, mask):
    """Depthwise-conv backward (grad_input, grad_weight, grad_bias) through ATen's own kernel."""
    return torch.ops.aten.convolution_backward(
        grad, x, weight, [weight.shape[0]] if has_bias else None, [1, 1], [padding, padding], [1, 1], False, [0, 0],
        groups, mask,
    )


# NCHW inputs on CPU whose passes the worker pool would not run (one thread, or a map under POOL_MIN_ELEMENTS, whose
# NCHW blocks would run one after the other on this thread): run the funnel in channels_last, where the depthwise conv
# is 2-3x faster (forward and backward); one extra pass converts x, the rest folds into passes that run anyway. Its
# whole-tensor ops use torch's threads; at 2 threads on [8, 256, 20, 20] and [8, 128, 40, 40] that took 0.67x the
# time of the single-threaded NCHW blocks idle and 0.71-0.82x beside two CPU burners. Where the pool runs (large maps,
# 2+ threads) the NCHW blocks stay: they keep their speed beside other processes, whole-tensor ops do not.
CHANNELS_LAST_CONV = True


def _channels_last_conv(x: torch.Tensor) -> bool:
    return (
        CHANNELS_LAST_CONV and x.device.type == "cpu" and x.dim() == 4 and x.shape[1] > 1 and x.is_contiguous()
        and not x.is_contiguous(memory_format=torch.channels_last) and pool_workers(x.device, 2, x.numel()) == 0
    )


class _FReLUFunction(torch.autograd.Function):
    """Training forward/backward of ``max(x, BN_batchstats(dwconv(x)))`` that keeps x, a byte mask and BN stats.

    The backward works through the batch in cache-sized blocks (depthwise conv and BN are per channel): a first pass
    collects the BN's two per-channel sums, a second one forms the BN input gradient and runs the conv backward block
    by block, so no full-size temporary besides the recomputed conv output (and the returned gradient) is needed.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, bn_weight, bn_bias, running_mean, running_var, factor, eps, recompute):
        padding = weight.shape[-1] // 2
        to_cl = _channels_last_conv(x)  # NCHW on CPU: conv, BN and mask in channels_last, the output in NCHW
        xc = x.contiguous(memory_format=torch.channels_last) if to_cl else x
        with torch.autocast(x.device.type, enabled=False):
            c = F.conv2d(xc, weight.to(x.dtype), None if bias is None else bias.to(x.dtype), 1, padding, 1, x.shape[1])
            t, mean, invstd = torch.ops.aten.native_batch_norm(
                c, bn_weight, bn_bias, running_mean, running_var, True, factor, eps
            )
            mask = torch.gt(t, xc)  # 1 byte per element: where the funnel branch wins
            y = torch.maximum(x, t, out=torch.empty_like(x) if to_cl else t)
        ctx.geom = (padding, bias is not None, to_cl)
        # the channels_last copy replaces x (which the caller may then free): no more memory than keeping x
        ctx.save_for_backward(xc, weight, bias, bn_weight, mean, invstd, mask, None if recompute else c)
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):
        x, weight, bias, bn_weight, mean, invstd, mask, c = ctx.saved_tensors
        padding, has_bias, to_cl = ctx.geom
        need = ctx.needs_input_grad
        n, ch, h, w = x.shape
        cdt = compute_dtype(x.dtype)
        wx = weight.to(x.dtype)
        if c is None:  # recompute the funnel conv instead of having kept it
            c = F.conv2d(x, wx, None if bias is None else bias.to(x.dtype), 1, padding, 1, ch)
        nchw = x.is_contiguous() and c.is_contiguous() and mask.is_contiguous()
        if not nchw:  # channels_last (the depthwise conv's fast layout): whole-tensor ops in that layout
            g = g if to_cl else g.contiguous(memory_format=torch.channels_last)
            return _frelu_backward_whole(x, g, c, mask, wx, weight, bias, bn_weight, mean, invstd, padding, need, cdt)
        g = g.contiguous()
        # 3-D (N, C, HW) views: long inner loops for the elementwise work; 4-D blocks only for the conv
        x3, g3, c3, m3 = (t.view(n, ch, h * w) for t in (x, g, c, mask.view(torch.uint8)))
        blocks = chunk_slices(x3)

        def funnel_grad(ns, cs):  # g where the funnel branch won, else 0 (a uint8 -> float copy beats torch.where)
            return torch.empty(m3[ns, cs].shape, dtype=cdt, device=x.device).copy_(m3[ns, cs]).mul_(g3[ns, cs])

        def bn_sums(ns_cs):  # per channel: sum of the BN output gradient, and of it times the conv output
            ns, cs = ns_cs
            gt = funnel_grad(ns, cs)
            return gt.sum((0, 2)), gt.mul_(c3[ns, cs]).sum((0, 2))

        s1 = torch.zeros(ch, dtype=cdt, device=x.device)  # sum of the BN output gradient, per channel
        s2 = torch.zeros_like(s1)  # sum of (BN output gradient) * (conv output), per channel
        for (_, cs), (p1, p2) in zip(blocks, run_blocks(bn_sums, blocks, x.device)):
            s1[cs] += p1
            s2[cs] += p2
        k, a, b, s2 = bn_backward_coefs(s1, s2, mean, invstd, bn_weight, n * h * w, cdt)
        a, b, k = (t.view(1, ch, 1) for t in (a, b, k))
        gx = torch.empty_like(x, memory_format=torch.contiguous_format) if need[0] else None
        gx3 = gx.view(n, ch, h * w) if gx is not None else None
        mask_w = [gx is not None, need[1], need[2] and has_bias]

        def conv_back(ns_cs):
            ns, cs = ns_cs
            gt = funnel_grad(ns, cs)
            gc = affine(c3[ns, cs], a[:, cs], b[:, cs]).addcmul_(gt, k[:, cs])
            gxc, gwc, gbc = _conv_backward(
                gc.to(x.dtype).view(x[ns, cs].shape), x[ns, cs], wx[cs], has_bias, padding, cs.stop - cs.start, mask_w
            )
            if gx is not None:  # conv branch + identity branch (g where x won)
                gxc = gxc.view(gt.shape)
                if cdt == x.dtype:
                    torch.add(gxc, g3[ns, cs], out=gx3[ns, cs]).sub_(gt)
                else:
                    gx3[ns, cs] = gxc.to(cdt).add_(g3[ns, cs]).sub_(gt)
            return gwc, gbc

        gw = torch.zeros(weight.shape, dtype=cdt, device=x.device) if need[1] else None
        gb = torch.zeros(ch, dtype=cdt, device=x.device) if need[2] and has_bias else None
        for (_, cs), (gwc, gbc) in zip(blocks, run_blocks(conv_back, blocks, x.device)):
            if gw is not None:
                gw[cs] += gwc
            if gb is not None:
                gb[cs] += gbc
        return _frelu_grads(gx, gw, gb, s1, s2, weight, bias, bn_weight, need)


def _frelu_grads(gx, gw, gb, s1, s2, weight, bias, bn_weight, need):
    return (
        gx,
        gw.to(weight.dtype) if gw is not None else None,
        gb.to(bias.dtype) if gb is not None else None,
        s2.to(bn_weight.dtype) if need[3] else None,
        s1.to(bn_weight.dtype) if need[4] else None,
        None, None, None, None, None,
    )


def _frelu_backward_whole(x, g, c, mask, wx, weight, bias, bn_weight, mean, invstd, padding, need, cdt):
    """FReLU's backward on whole channels_last tensors: a dozen large ops, results in ``g``'s layout (a NCHW ``g``
    is read once, by the first and the last op, which also write the layout change)."""
    n, ch, h, w = x.shape
    gt = torch.empty_like(mask, dtype=cdt).copy_(mask.view(torch.uint8)).mul_(g)  # g where the funnel branch won
    s1 = gt.sum((0, 2, 3))
    s2 = torch.mul(gt, c).sum((0, 2, 3))
    k, a, b, s2 = bn_backward_coefs(s1, s2, mean, invstd, bn_weight, n * h * w, cdt)
    gc = torch.addcmul(b.view(1, ch, 1, 1), c, a.view(1, ch, 1, 1)).addcmul_(gt, k.view(1, ch, 1, 1))
    has_bias = bias is not None
    gxc, gw, gb = _conv_backward(
        gc.to(x.dtype), x, wx, has_bias, padding, ch, [bool(need[0]), bool(need[1]), bool(need[2] and has_bias)]
    )
    gx = None
    if need[0]:  # conv branch + identity branch (g where x won)
        same = g.is_contiguous(memory_format=torch.channels_last) or not g.is_contiguous()
        gx = gxc.sub_(gt).add_(g) if same else torch.add(gxc.sub_(gt), g, out=torch.empty_like(g))
    return _frelu_grads(gx, gw, gb, s1, s2, weight, bias, bn_weight, need)


class _MaskedMax(torch.autograd.Function):
    """``torch.maximum(x, t)`` that keeps a byte mask instead of both inputs (used by a fused FReLU in training)."""

    @staticmethod
    def forward(ctx, x, t):
        mask = torch.gt(t, x)
        ctx.save_for_backward(mask)
        return torch.maximum(x, t)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):
        (mask,) = ctx.saved_tensors
        gt = torch.empty_like(g).copy_(mask.view(torch.uint8)).mul_(g)
        return torch.sub(g, gt), gt


class FReLU(nn.Module):
    """Funnel ReLU: ``y = max(x, BN(depthwise_conv_kxk(x)))`` (Ma et al., "Funnel Activation for Visual Recognition").

    Args:
        channels (int): channels of the block.
        kernel_size (int): odd size of the depthwise funnel window.
        recompute (bool): keep only a byte mask and recompute the depthwise conv in the backward pass (one feature map
            less per FReLU during training, for one more depthwise conv). Maps under ``RECOMPUTE_MIN_ELEMENTS``
            elements, where per-op overhead outweighs the saving, and ``recompute=False`` keep the conv output (as the
            BN's input) and a byte mask of the max instead of both of its inputs.

    Attributes:
        conv (nn.Conv2d): depthwise k x k conv, no bias (gets one when ``fuse()`` folds the BN).
        bn (nn.BatchNorm2d | None): the funnel's BN; ``None`` after ``fuse()``.
    """

    def __init__(self, channels: int, kernel_size: int = 3, recompute: bool = True):
        super().__init__()
        channels, kernel_size = int(channels), int(kernel_size)
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd integer, got {kernel_size}")
        self.conv = nn.Conv2d(channels, channels, kernel_size, 1, kernel_size // 2, groups=channels, bias=False)
        self.bn = nn.BatchNorm2d(channels)
        self.recompute = as_bool(recompute, "recompute")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply FReLU to an (N, C, H, W) tensor."""
        bn = self.bn
        if exporting():  # x + relu(conv'(x)) where ONNX Runtime allows (see graphs.py), else the plain max
            y = frelu_graph(x, self.conv, bn)
            if y is not None:
                return y
            t = self.conv(x)
            return torch.maximum(x, t if bn is None else batch_norm(bn, t))
        if not torch.is_grad_enabled():  # inference: one fused pass (frelu_fused.py), or the max into the conv's buffer
            y = fused_eval(x, self.conv, bn)
            if y is not None:
                return y
            t = self.conv(x)
            t = t if bn is None else batch_norm(bn, t)
            return torch.maximum(x, t, out=t) if t.dtype == x.dtype and t.shape == x.shape else torch.maximum(x, t)
        if bn is None:  # fused, and training again
            return _MaskedMax.apply(x, self.conv(x))
        if type(bn) is not nn.BatchNorm2d or not bn_uses_batch_stats(bn, x) or bn.weight is None:
            return _MaskedMax.apply(x, batch_norm(bn, self.conv(x)))  # conv and BN through autograd
        args = (x, self.conv.weight, self.conv.bias, bn.weight, bn.bias, bn.running_mean, bn.running_var)
        if fused_usable(x, self.conv.weight):  # the C kernels, keeping x alone (any size, recompute or not)
            return FusedFReLUFunction.apply(*args, bn_momentum(bn), bn.eps)
        if not self.recompute or x.numel() < RECOMPUTE_MIN_ELEMENTS:  # the BN keeps the conv output; a byte mask
            return _MaskedMax.apply(x, batch_norm(bn, self.conv(x)))
        return _FReLUFunction.apply(*args, bn_momentum(bn), bn.eps, self.recompute)

    @torch.no_grad()
    def fuse(self) -> "FReLU":
        """Fold the BN (its running statistics) into the depthwise conv; idempotent. Returns self."""
        if self.bn is not None:
            fold_bn(self.conv, self.bn)
            self.bn = None
        return self

    def extra_repr(self) -> str:
        """Channels, kernel size, whether the BN is folded."""
        k = self.conv.kernel_size[0]
        return f"channels={self.conv.in_channels}, kernel_size={k}, fused={self.bn is None}, recompute={self.recompute}"


def _frelu(channels: int, kernel_size: int = 3, recompute: bool = True) -> FReLU:
    return FReLU(channels, kernel_size=kernel_size, recompute=recompute)


register_activation(
    "frelu",
    _frelu,
    kind="channel-aware",
    channel_aware=True,
    onnx_exportable=True,
    aliases=("funnel_relu",),
    bounds={"kernel_size": Bounds(min=1, max=31, odd=True)},
    description="Funnel ReLU max(x, BN(dwconv_kxk(x))); kernel_size=3; BN folds into the conv on fuse()",
)
