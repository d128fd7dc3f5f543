"""The training function of DY-ReLU (``dyrelu.py``): ``y = pi * max_k (a_k x + b_k)`` through the input in cache-sized
chunks, keeping only ``x`` (plus a one-byte argmax index when K > 2), with DY-ReLU-C's spatial attention optionally
fused in (its 1x1 conv's input gradient is added into the returned one block by block).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from . import native
from .functional import (
    affine,
    chunk_slices,
    compute_dtype,
    one_thread,
    one_thread_if_small,
    pool_workers,
    run_blocks,
    same_layout,
)
from .hyper import PooledHyper

__all__ = ["DyReLUFunction", "Spatial"]


class Spatial(NamedTuple):
    """DY-ReLU-C's attention settings handed to the fused function (BN statistics are updated in its forward)."""

    running_mean: torch.Tensor | None
    running_var: torch.Tensor | None
    batch_stats: bool
    momentum: float
    eps: float
    temperature: float
    gamma: float


def _attention_tail(z, bn_weight, bn_bias, sp: Spatial, hw: int):
    """``min(gamma HW softmax(BN(z) / tau), 1)`` for the (N, 1, HW) logits ``z`` (small tensors, plain autograd)."""
    if bn_weight is not None:
        z = F.batch_norm(z, sp.running_mean, sp.running_var, bn_weight, bn_bias, sp.batch_stats, sp.momentum, sp.eps)
    return (torch.softmax(z / sp.temperature, dim=-1) * (sp.gamma * hw)).clamp(max=1.0)


# The backward of DyReLUFunction, in parts: the coefficient pack, one block of the piecewise max (per K), the
# reduction to the coefficients' gradients, and the fused DY-ReLU-C attention tail.
def _backward_coefs(a, b, k: int, cdt) -> torch.Tensor:
    """(N, 1|C, 1, M) pack the backward slices per block: K = 2: a_0, b_0, a_1 - a_0, b_1 - b_0; else a, b."""
    if k == 2:
        coef = torch.stack([a[..., 0], b[..., 0], a[..., 1] - a[..., 0], b[..., 1] - b[..., 0]], -1)
    else:
        coef = torch.cat([a, b], -1)
    return coef.to(cdt).unsqueeze(2).contiguous()


def _block_one_piece(xs, gp, cf, gxs, need_pi):
    """K = 1: ``y = a_0 x + b_0``."""
    sums = torch.stack((torch.mul(gp, xs).sum(-1), gp.sum(-1)), -1)
    if gxs is not None:
        torch.mul(gp, cf[0], out=gxs)
    return sums, affine(xs, cf[0], cf[1]) if need_pi else None


def _block_two_pieces(xs, gp, cf, gxs, need_pi):
    """K = 2: the winner is recomputed from the sign of ``(a_1 - a_0) x + b_1 - b_0``."""
    z = affine(xs, cf[2], cf[3])  # > 0 where piece 1 wins (t1 > t0)
    gm = torch.ops.aten.threshold_backward(gp, z, 0)  # gp where piece 1 wins, else 0
    sums = torch.stack((torch.mul(gp, xs).sum(-1), torch.mul(gm, xs).sum(-1), gp.sum(-1), gm.sum(-1)), -1)
    if gxs is not None:
        torch.mul(gp, cf[0], out=gxs).addcmul_(gm, cf[2])
    return sums, z.clamp_min_(0).addcmul_(xs, cf[0]).add_(cf[1]) if need_pi else None


def _block_k_pieces(xs, gp, cf, ids, gxs, need_pi):
    """K > 2: the winner is the saved one-byte index ``ids``."""
    k = len(cf) // 2
    if gxs is not None:
        gxs.zero_()
    yb = torch.zeros_like(xs) if need_pi else None
    parts = []
    for i in range(k):
        mf = torch.empty_like(xs).copy_(torch.eq(ids, i).view(torch.uint8))  # 0/1 where piece i wins
        gm = torch.mul(mf, gp)
        parts.append(torch.mul(gm, xs).sum(-1))
        parts.append(gm.sum(-1))
        if gxs is not None:
            gxs.addcmul_(gm, cf[i])
        if need_pi:
            yb.addcmul_(mf, affine(xs, cf[i], cf[k + i]))
    return torch.stack(parts[0::2] + parts[1::2], -1), yb


def _piece_block(k, xs, gp, cf, ids, gxs, need_pi):
    """One block of the piecewise max's backward.

    Returns the per-(sample, channel) sums of ``g x`` and of ``g`` for each piece (K = 2: all pieces, then piece 1)
    and the un-attended output (only when pi needs its gradient, else None); fills ``gxs`` in place when given.
    """
    if k == 1:
        return _block_one_piece(xs, gp, cf, gxs, need_pi)
    if k == 2:
        return _block_two_pieces(xs, gp, cf, gxs, need_pi)
    return _block_k_pieces(xs, gp, cf, ids, gxs, need_pi)


def _coef_grads(sums, k: int, a):
    """The gradients of a and b, each (N, 1|C, K), from the per-(sample, channel) sums."""
    if k == 2:  # piece 0 = all - piece 1
        ga = torch.stack((sums[..., 0] - sums[..., 1], sums[..., 1]), -1)
        gb = torch.stack((sums[..., 2] - sums[..., 3], sums[..., 3]), -1)
    else:
        ga, gb = sums[..., :k], sums[..., k:]
    if a.shape[1] == 1:
        ga, gb = ga.sum(1, keepdim=True), gb.sum(1, keepdim=True)
    return ga, gb


def _attention_backward(attention, gpi, x3, gx3, sp_weight, has_sp_bias, need, cdt):
    """Backprop ``gpi`` through the fused attention tail, then the 1x1 conv: its input gradient is added into ``gx3``
    block by block. Returns the gradients of the conv's weight and bias and of the BN's weight and bias."""
    att, (z, bnw, bnb) = attention
    wrt = [t for t in (z, bnw, bnb) if t is not None]  # the tail's graph is small: keep it for retain_graph
    with one_thread(x3.device):  # the tail's tensors are (N, 1, HW): small
        grads = dict(zip(map(id, wrt), torch.autograd.grad(att, wrt, gpi, retain_graph=True)))
    gz = grads[id(z)]  # (N, 1, HW)
    g_bnw, g_bnb = (grads.get(id(t)) if t is not None else None for t in (bnw, bnb))
    c = x3.shape[1]
    wv = sp_weight.to(cdt).view(1, c, 1)
    gzt = gz.transpose(1, 2).to(x3.dtype) if need[4] else None  # (N, HW, 1)
    same = cdt == x3.dtype

    def block(ns_cs):  # this block's input gradient, and its channels' part of the conv weight's gradient
        ns, cs = ns_cs
        if gx3 is not None and same:
            gx3[ns, cs].addcmul_(gz[ns], wv[:, cs])
        elif gx3 is not None:
            gx3[ns, cs] = (gx3[ns, cs].to(cdt)).addcmul_(gz[ns], wv[:, cs])
        return torch.matmul(x3[ns, cs], gzt[ns]).sum(0) if gzt is not None else None  # sum_{n,hw} gz * x

    g_spw = g_spb = None
    if gx3 is not None or gzt is not None:
        blocks = chunk_slices(x3)
        parts = run_blocks(block, blocks, x3.device)
        if gzt is not None:
            g_spw = torch.zeros(c, 1, dtype=x3.dtype, device=x3.device)
            for (_, cs), part in zip(blocks, parts):
                g_spw[cs] += part
            g_spw = g_spw.view(sp_weight.shape).to(sp_weight.dtype)
    if need[5] and has_sp_bias:
        g_spb = gz.sum().view(1).to(sp_weight.dtype)
    return g_spw, g_spb, g_bnw, g_bnb


def _spatial_logits(x3: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``w @ x3`` per sample, (1, C) x (N, C, HW) -> (N, 1, HW): on CPU with the pool, one product per block, the
    blocks' partial sums added in block order."""
    blocks = chunk_slices(x3)
    if not pool_workers(x3.device, len(blocks), blocks.elements):
        return torch.matmul(w, x3)
    z = torch.zeros(x3.shape[0], 1, x3.shape[2], dtype=x3.dtype, device=x3.device)
    for (ns, _), part in zip(blocks, run_blocks(lambda b: torch.matmul(w[:, b[1]], x3[b]), blocks, x3.device)):
        z[ns] += part
    return z


class DyReLUFunction(torch.autograd.Function):
    """``y = pi * max_k (a_k x + b_k)`` for coefficients a, b of shape (N, 1|C, K).

    ``pi`` (N, 1, H, W) is given (or None), or, for the fused DY-ReLU-C, computed here from the 1x1 conv's weight and
    bias and the BN's parameters: then its input gradient is added into the returned one block by block, instead of
    the conv's backward allocating a second dense gradient.

    With ``hyper`` (a function of the (N, C) spatial mean returning ``(a, b)``; its parameters follow as ``*params``)
    a and b are None and computed here, so that x has no other consumer (``hyper.PooledHyper``).
    """

    @staticmethod
    def forward(ctx, x, a, b, pi, sp_weight, sp_bias, bn_weight, bn_bias, spatial, hyper=None, *params):
        n, c, h, w = x.shape
        ctx.hyper = None
        if hyper is not None:
            make = getattr(hyper, "pooled_hyper", None)  # a hyper-function with its own written-out backward
            ctx.hyper = make(x, x.requires_grad) if make is not None else PooledHyper(hyper, x, params, x.requires_grad)
            a, b = ctx.hyper.values()
        k = a.shape[-1]
        cdt = compute_dtype(x.dtype)
        x3 = x.contiguous().view(n, c, h * w)
        ctx.attention = None
        if spatial is not None:  # z = w . x per pixel (a batched matrix-vector product), then the small tail
            with torch.autocast(x.device.type, enabled=False):
                z = _spatial_logits(x3, sp_weight.to(x.dtype).view(1, c)).to(cdt)
                if sp_bias is not None:
                    z = z + sp_bias.to(cdt)
                with torch.enable_grad():
                    leaves = [t.detach().requires_grad_() if t is not None else None for t in (z, bn_weight, bn_bias)]
                    with one_thread(x.device):
                        att = _attention_tail(*leaves, spatial, h * w)
            ctx.attention = (att, leaves)
            pi = att.detach()
        # all coefficients in one (N, 1|C, 1, 2K) tensor: one slice per block, then unbind into (n, c, 1) views
        coef = torch.cat([a, b], -1).to(cdt).unsqueeze(2).contiguous()
        shared = coef.shape[1] == 1
        pi3 = pi.to(cdt).reshape(n, 1, h * w).contiguous() if pi is not None else None
        y = torch.empty_like(x, memory_format=torch.contiguous_format)
        y3 = y.view(n, c, h * w)
        idx = torch.empty(x3.shape, dtype=torch.uint8, device=x.device) if k > 2 else None
        same = cdt == x.dtype
        fused = k == 2 and native.usable(x3)  # one pass per block in C (native.py)

        def block(ns_cs):
            ns, cs = ns_cs
            if fused:
                cf = coef[ns, :, 0] if shared else coef[ns, cs, 0]
                if pi3 is None:
                    return native.dyrelu2_forward(x3[ns, cs], cf, y3[ns, cs])
                return native.dyrelu2_pi_forward(x3[ns, cs], pi3[ns], cf, y3[ns, cs])
            xs = x3[ns, cs] if same else x3[ns, cs].to(cdt)
            cf = (coef[ns] if shared else coef[ns, cs]).unbind(-1)  # a_0..a_K-1, b_0..b_K-1
            out = affine(xs, cf[0], cf[k], out=y3[ns, cs] if same else None)
            if k == 2:
                torch.maximum(out, affine(xs, cf[1], cf[3]), out=out)
            elif k > 2:  # running max with the winner's index
                ids = torch.zeros(xs.shape, dtype=torch.uint8, device=x.device)
                for i in range(1, k):
                    t = affine(xs, cf[i], cf[k + i])
                    m = torch.gt(t, out)
                    torch.maximum(out, t, out=out)
                    ids.masked_fill_(m, i)
                idx[ns, cs] = ids
            if pi3 is not None:
                out.mul_(pi3[ns])
            if not same:
                y3[ns, cs] = out

        run_blocks(block, native.blocks(x3, fused), x.device)
        ctx.save_for_backward(x, a, b, pi, idx, sp_weight)
        ctx.has_sp_bias = sp_bias is not None
        return same_layout(y, x)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):
        with one_thread_if_small(g):  # a small map: the whole backward on one thread (see pool.py)
            return _dy_relu_backward(ctx, g)


def _fused_backward_block(xs, gs, pis, cf, gxs, sums, need_pi):
    """One block of the K = 2 backward in C (``native.py``); returns the block's part of pi's gradient, or None."""
    if pis is None:
        return native.dyrelu2_backward(xs, gs, cf, gxs, sums)
    part = torch.zeros(xs.shape[0], 1, xs.shape[2], dtype=xs.dtype) if need_pi else None
    native.dyrelu2_pi_backward(xs, gs, pis, cf, gxs, part, sums)
    return part


def _dy_relu_backward(ctx, g):
    """``DyReLUFunction.backward``: the gradients of x, a, b, pi and the fused DY-ReLU-C attention's leaves."""
    x, a, b, pi, idx, sp_weight = ctx.saved_tensors
    (n, c, h, w), k, cdt = x.shape, a.shape[-1], compute_dtype(x.dtype)
    x3, g3 = x.contiguous().view(n, c, h * w), g.contiguous().view(n, c, h * w)
    coef = _backward_coefs(a, b, k, cdt)
    shared = coef.shape[1] == 1
    pi3 = pi.to(cdt).reshape(n, 1, h * w).contiguous() if pi is not None else None
    need = ctx.needs_input_grad
    need_x = need[0]
    need_pi = pi is not None and (need[3] or (ctx.attention is not None and any(need[i] for i in (0, 4, 5, 6, 7))))
    gx = torch.empty_like(x, memory_format=torch.contiguous_format) if need_x else None
    gx3 = gx.view(n, c, h * w) if gx is not None else None  # write through a view, return the base
    sums = torch.zeros(n, c, 2 * k, dtype=cdt, device=x.device)  # sum_hw g x and g per piece (K=2: all, piece 1)
    gpi = torch.zeros(n, 1, h * w, dtype=cdt, device=x.device) if need_pi else None
    same = cdt == x.dtype
    fused = k == 2 and native.usable(x3) and g3.dtype == x3.dtype  # one C call per block (native.py)

    def block(ns_cs):
        ns, cs = ns_cs
        rows = coef[ns] if shared else coef[ns, cs]  # (nb, 1|cb, 1, 2K)
        if fused:
            return _fused_backward_block(x3[ns, cs], g3[ns, cs], pi3[ns] if pi3 is not None else None, rows[:, :, 0],
                                         gx3[ns, cs] if need_x else None, sums[ns, cs], need_pi)
        xs, gs = (x3[ns, cs], g3[ns, cs]) if same else (x3[ns, cs].to(cdt), g3[ns, cs].to(cdt))
        cf = rows.unbind(-1)
        gp = gs * pi3[ns] if pi3 is not None else gs  # gradient w.r.t. the un-attended output
        gxs = (gx3[ns, cs] if same else torch.empty_like(xs)) if need_x else None
        ids = idx[ns, cs] if k > 2 else None
        sums[ns, cs], yb = _piece_block(k, xs, gp, cf, ids, gxs, need_pi)
        if gxs is not None and not same:
            gx3[ns, cs] = gxs
        return yb.mul_(gs).sum(1, keepdim=True) if yb is not None else None  # this block's part of gpi[ns]

    blocks = native.blocks(x3, fused)
    for (ns, _), part in zip(blocks, run_blocks(block, blocks, x.device)):
        if part is not None:
            gpi[ns] += part
    ga, gb = _coef_grads(sums, k, a)
    g_spw = g_spb = g_bnw = g_bnb = None
    if ctx.attention is not None:  # backprop through the attention tail, then the 1x1 conv, into gx
        g_spw, g_spb, g_bnw, g_bnb = _attention_backward(
            ctx.attention, gpi, x3, gx3, sp_weight, ctx.has_sp_bias, need, cdt
        )
    g_params = ()
    if ctx.hyper is not None:  # through the hyper-function, and its mean's gradient into gx
        g_pooled, g_params = ctx.hyper.backward((ga.to(a.dtype), gb.to(b.dtype)), need[10:])
        if gx3 is not None:
            ctx.hyper.add_pooled_grad(gx3, g_pooled, x.device)
    return (
        same_layout(gx, x) if gx is not None else None,
        ga.to(a.dtype) if need[1] else None,
        gb.to(b.dtype) if need[2] else None,
        gpi.view(n, 1, h, w).to(pi.dtype) if need_pi and need[3] else None,
        g_spw,
        g_spb,
        g_bnw if need[6] else None,
        g_bnb if need[7] else None,
        None,
        None,
        *g_params,
    )
