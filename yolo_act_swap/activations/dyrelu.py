"""Dynamic ReLU (Chen et al. 2020, "Dynamic ReLU"): ``y = max_k (a_k(x) x + b_k(x))`` with coefficients from a
hyper-function of the whole input.

The hyper-function is ``theta = 2 sigmoid(fc2(relu(fc1(mean_hw(x))))) - 1`` and
``a_k = alpha_k + lambda_a theta_a_k``, ``b_k = beta_k + lambda_b theta_b_k`` with the paper's lambda_a = 1.0,
lambda_b = 0.5, alpha = (1, 0, ...), beta = 0. ``fc2`` starts at zero, so a fresh DY-ReLU-A/B is exactly ReLU (K >= 2).

- DY-ReLU-A: one set of coefficients per sample (shared over space and channels).
- DY-ReLU-B: coefficients per sample and channel.
- DY-ReLU-C: as B, times a spatial attention ``pi = min(gamma * H * W * softmax(z / tau), 1)`` with
  ``z = BN(conv1x1(x))`` (one output channel), ``tau = 10`` and ``gamma = 1/3`` as in the official code (the paper
  writes gamma = HW/3 for the un-scaled softmax). Since ``pi >= 0`` this equals ``pi * DY-ReLU-B``. The spatial BN's
  weight starts at zero, so a fresh DY-ReLU-C is ``min(gamma, 1) * ReLU`` everywhere (exactly ReLU with gamma=1).

The K-expanded (N, C, H, W, K) tensor of the published code is never built: the training function works through the
input in cache-sized chunks, keeps only ``x`` (plus a one-byte argmax index when K > 2; for K = 2 the winning piece is
recomputed from the sign of ``(a_1 - a_0) x + b_1 - b_0``, which may pick the other piece only where both pieces agree
to rounding, a kink where either slope is a valid subgradient), and recomputes the pieces in the backward pass.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .acon import chunk_slices, compiled, compute_dtype, global_avg_pool
from .frelu import _momentum, as_bool, batch_norm, bn_uses_batch_stats, exporting, fold_bn
from .registry import register_activation

__all__ = ["DyReLU", "dy_relu_formula"]

LAMBDA_A, LAMBDA_B = 1.0, 0.5  # the paper's residual ranges for the slopes and the intercepts


class _Spatial(NamedTuple):
    """DY-ReLU-C's attention settings handed to the fused function (BN statistics are updated in its forward)."""

    running_mean: torch.Tensor | None
    running_var: torch.Tensor | None
    batch_stats: bool
    momentum: float
    eps: float
    temperature: float
    gamma: float


def _attention_tail(z, bn_weight, bn_bias, sp: _Spatial, hw: int):
    """``min(gamma HW softmax(BN(z) / tau), 1)`` for the (N, 1, HW) logits ``z`` (small tensors, plain autograd)."""
    if bn_weight is not None:
        z = F.batch_norm(z, sp.running_mean, sp.running_var, bn_weight, bn_bias, sp.batch_stats, sp.momentum, sp.eps)
    return (torch.softmax(z / sp.temperature, dim=-1) * (sp.gamma * hw)).clamp(max=1.0)


class _DyReLUFunction(torch.autograd.Function):
    """``y = pi * max_k (a_k x + b_k)`` for coefficients a, b of shape (N, 1|C, K).

    ``pi`` (N, 1, H, W) is given (or None), or, for the fused DY-ReLU-C, computed here from the 1x1 conv's weight and
    bias and the BN's parameters: then its input gradient is added into the returned one block by block, instead of
    the conv's backward allocating a second dense gradient.
    """

    @staticmethod
    def forward(ctx, x, a, b, pi, sp_weight, sp_bias, bn_weight, bn_bias, spatial):
        n, c, h, w = x.shape
        k = a.shape[-1]
        cdt = compute_dtype(x.dtype)
        x3 = x.contiguous().view(n, c, h * w)
        ctx.attention = None
        if spatial is not None:  # z = w . x per pixel (a batched matrix-vector product), then the small tail
            with torch.autocast(x.device.type, enabled=False):
                z = torch.matmul(sp_weight.to(x.dtype).view(1, c), x3).to(cdt)
                if sp_bias is not None:
                    z = z + sp_bias.to(cdt)
                with torch.enable_grad():
                    leaves = [t.detach().requires_grad_() if t is not None else None for t in (z, bn_weight, bn_bias)]
                    att = _attention_tail(*leaves, spatial, h * w)
            ctx.attention = (att, leaves)
            pi = att.detach()
        # all coefficients in one (N, 1|C, 1, 2K) tensor: one slice per block, then unbind into (n, c, 1) views
        coef = torch.cat([a, b], -1).to(cdt).unsqueeze(2).contiguous()
        shared = coef.shape[1] == 1
        pi3 = pi.to(cdt).reshape(n, 1, h * w) if pi is not None else None
        y = torch.empty_like(x, memory_format=torch.contiguous_format)
        y3 = y.view(n, c, h * w)
        idx = torch.empty(x3.shape, dtype=torch.uint8, device=x.device) if k > 2 else None
        same = cdt == x.dtype
        with torch.autocast(x.device.type, enabled=False):
            for ns, cs in chunk_slices(x3):
                xs = x3[ns, cs] if same else x3[ns, cs].to(cdt)
                cf = (coef[ns] if shared else coef[ns, cs]).unbind(-1)  # a_0..a_K-1, b_0..b_K-1
                out = torch.addcmul(cf[k], xs, cf[0], out=y3[ns, cs] if same else None)
                if k == 2:
                    torch.maximum(out, torch.addcmul(cf[3], xs, cf[1]), out=out)
                elif k > 2:  # running max with the winner's index
                    ids = torch.zeros(xs.shape, dtype=torch.uint8, device=x.device)
                    for i in range(1, k):
                        t = torch.addcmul(cf[k + i], xs, cf[i])
                        m = torch.gt(t, out)
                        torch.maximum(out, t, out=out)
                        ids.masked_fill_(m, i)
                    idx[ns, cs] = ids
                if pi3 is not None:
                    out.mul_(pi3[ns])
                if not same:
                    y3[ns, cs] = out
        ctx.save_for_backward(x, a, b, pi, idx, sp_weight)
        ctx.has_sp_bias = sp_bias is not None
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):
        x, a, b, pi, idx, sp_weight = ctx.saved_tensors
        n, c, h, w = x.shape
        k = a.shape[-1]
        cdt = compute_dtype(x.dtype)
        x3, g3 = x.contiguous().view(n, c, h * w), g.contiguous().view(n, c, h * w)
        if k == 2:  # a_0, b_0, a_1 - a_0, b_1 - b_0
            coef = torch.stack([a[..., 0], b[..., 0], a[..., 1] - a[..., 0], b[..., 1] - b[..., 0]], -1)
        else:
            coef = torch.cat([a, b], -1)
        coef = coef.to(cdt).unsqueeze(2).contiguous()  # (N, 1|C, 1, M)
        shared = coef.shape[1] == 1
        pi3 = pi.to(cdt).reshape(n, 1, h * w) if pi is not None else None
        need = ctx.needs_input_grad
        need_x = need[0]
        need_pi = pi is not None and (need[3] or (ctx.attention is not None and any(need[i] for i in (0, 4, 5, 6, 7))))
        gx = torch.empty_like(x, memory_format=torch.contiguous_format) if need_x else None
        gx3 = gx.view(n, c, h * w) if gx is not None else None  # write through a view, return the base
        # per (sample, channel): sum_hw of g*x and of g for each piece (K=2: all pieces, then piece 1)
        sums = torch.zeros(n, c, 2 * k, dtype=cdt, device=x.device)
        gpi = torch.zeros(n, 1, h * w, dtype=cdt, device=x.device) if need_pi else None
        same = cdt == x.dtype
        for ns, cs in chunk_slices(x3):
            xs, gs = (x3[ns, cs], g3[ns, cs]) if same else (x3[ns, cs].to(cdt), g3[ns, cs].to(cdt))
            cf = (coef[ns] if shared else coef[ns, cs]).unbind(-1)
            gp = gs * pi3[ns] if pi3 is not None else gs  # gradient w.r.t. the un-attended output
            gxs = (gx3[ns, cs] if same else torch.empty_like(xs)) if need_x else None
            yb = None  # the un-attended output, rebuilt only when pi needs its gradient
            if k == 1:
                sums[ns, cs] = torch.stack((torch.mul(gp, xs).sum(-1), gp.sum(-1)), -1)
                if gxs is not None:
                    torch.mul(gp, cf[0], out=gxs)
                if need_pi:
                    yb = torch.addcmul(cf[1], xs, cf[0])
            elif k == 2:
                z = torch.addcmul(cf[3], xs, cf[2])  # > 0 where piece 1 wins (t1 > t0)
                gm = torch.ops.aten.threshold_backward(gp, z, 0)  # gp where piece 1 wins, else 0
                sums[ns, cs] = torch.stack(
                    (torch.mul(gp, xs).sum(-1), torch.mul(gm, xs).sum(-1), gp.sum(-1), gm.sum(-1)), -1
                )
                if gxs is not None:
                    torch.mul(gp, cf[0], out=gxs).addcmul_(gm, cf[2])
                if need_pi:
                    yb = z.clamp_min_(0).addcmul_(xs, cf[0]).add_(cf[1])
            else:
                ids = idx[ns, cs]
                if gxs is not None:
                    gxs.zero_()
                if need_pi:
                    yb = torch.zeros_like(xs)
                parts = []
                for i in range(k):
                    mf = torch.empty_like(xs).copy_(torch.eq(ids, i).view(torch.uint8))  # 0/1 where piece i wins
                    gm = torch.mul(mf, gp)
                    parts.append(torch.mul(gm, xs).sum(-1))
                    parts.append(gm.sum(-1))
                    if gxs is not None:
                        gxs.addcmul_(gm, cf[i])
                    if need_pi:
                        yb.addcmul_(mf, torch.addcmul(cf[k + i], xs, cf[i]))
                sums[ns, cs] = torch.stack(parts[0::2] + parts[1::2], -1)
            if gxs is not None and not same:
                gx3[ns, cs] = gxs
            if yb is not None:
                gpi[ns] += yb.mul_(gs).sum(1, keepdim=True)
        if k == 2:  # piece 0 = all - piece 1
            ga = torch.stack((sums[..., 0] - sums[..., 1], sums[..., 1]), -1)
            gb = torch.stack((sums[..., 2] - sums[..., 3], sums[..., 3]), -1)
        else:
            ga, gb = sums[..., :k], sums[..., k:]
        if a.shape[1] == 1:
            ga, gb = ga.sum(1, keepdim=True), gb.sum(1, keepdim=True)
        g_spw = g_spb = g_bnw = g_bnb = None
        if ctx.attention is not None:  # backprop through the attention tail, then the 1x1 conv, into gx
            att, (z, bnw, bnb) = ctx.attention
            wrt = [t for t in (z, bnw, bnb) if t is not None]  # the tail's graph is small: keep it for retain_graph
            grads = dict(zip(map(id, wrt), torch.autograd.grad(att, wrt, gpi, retain_graph=True)))
            gz = grads[id(z)]  # (N, 1, HW)
            g_bnw, g_bnb = (grads.get(id(t)) if t is not None else None for t in (bnw, bnb))
            wv = sp_weight.to(cdt).view(1, c, 1)
            if need_x:
                for ns, cs in chunk_slices(x3):
                    if same:
                        gx3[ns, cs].addcmul_(gz[ns], wv[:, cs])
                    else:
                        gx3[ns, cs] = (gx3[ns, cs].to(cdt)).addcmul_(gz[ns], wv[:, cs])
            if need[4]:
                g_spw = torch.matmul(x3, gz.transpose(1, 2).to(x.dtype)).sum(0)  # sum_{n,hw} gz * x, per channel
                g_spw = g_spw.view(sp_weight.shape).to(sp_weight.dtype)
            if need[5] and ctx.has_sp_bias:
                g_spb = gz.sum().view(1).to(sp_weight.dtype)
        return (
            gx,
            ga.to(a.dtype) if need[1] else None,
            gb.to(b.dtype) if need[2] else None,
            gpi.view(n, 1, h, w).to(pi.dtype) if need_pi and need[3] else None,
            g_spw,
            g_spb,
            g_bnw if need[6] else None,
            g_bnb if need[7] else None,
            None,
        )


def _dy_relu_inference(x, a, b, pi):
    """The forward alone (no graph): a running max in one output buffer, no K-expanded tensor."""
    a4, b4 = a.to(x.dtype)[..., None, None], b.to(x.dtype)[..., None, None]  # (N, 1|C, K, 1, 1)
    y = torch.addcmul(b4[:, :, 0], x, a4[:, :, 0])
    for i in range(1, a.shape[-1]):
        torch.maximum(y, torch.addcmul(b4[:, :, i], x, a4[:, :, i]), out=y)
    return y.mul_(pi.to(x.dtype)) if pi is not None else y


def dy_relu_formula(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor, pi: torch.Tensor | None = None) -> torch.Tensor:
    """``pi * max_k (a_k x + b_k)`` with plain ops (export, tracing): a running max, no K-expanded tensor.

    Args:
        x (torch.Tensor): input (N, C, H, W).
        a, b (torch.Tensor): slopes and intercepts of shape (N, 1|C, K).
        pi (torch.Tensor, optional): spatial attention (N, 1, H, W).
    """
    a4, b4 = a.unsqueeze(-1).unsqueeze(-1), b.unsqueeze(-1).unsqueeze(-1)  # (N, 1|C, K, 1, 1)
    y = x * a4[:, :, 0] + b4[:, :, 0]
    for i in range(1, a.shape[-1]):
        y = torch.maximum(y, x * a4[:, :, i] + b4[:, :, i])
    return y * pi if pi is not None else y


class DyReLU(nn.Module):
    """Dynamic ReLU, variants A, B and C.

    Args:
        channels (int): channels of the block.
        mode (str): ``"a"`` (shared over channels), ``"b"`` (per channel) or ``"c"`` (per channel + spatial attention).
        k (int): number of linear pieces K (paper: 2).
        reduction (int): hyper-function bottleneck reduction (paper: 4); hidden width ``max(channels // reduction, 1)``.
        temperature (float): softmax temperature tau of C's spatial attention (official code: 10).
        gamma (float): C's attention scale, ``pi = min(gamma * HW * softmax(z / tau), 1)`` (official code: 1/3).
        compile (bool): run the piecewise max through ``torch.compile`` (one fused kernel per pass; needs a working
            compiler toolchain) instead of the chunked autograd function.
    """

    def __init__(
        self,
        channels: int,
        mode: str = "b",
        k: int = 2,
        reduction: int = 4,
        temperature: float = 10.0,
        gamma: float = 1.0 / 3.0,
        compile: bool = False,
    ):
        super().__init__()
        channels, k, reduction = int(channels), int(k), int(reduction)
        mode = str(mode).lower()
        if mode not in ("a", "b", "c"):
            raise ValueError(f"mode must be 'a', 'b' or 'c', got {mode!r}")
        if not 1 <= k <= 255:
            raise ValueError(f"k must be an integer in 1..255, got {k}")
        if reduction < 1:
            raise ValueError(f"reduction must be >= 1, got {reduction}")
        if float(temperature) <= 0 or float(gamma) <= 0:
            raise ValueError(f"temperature and gamma must be > 0, got {temperature} and {gamma}")
        self.channels, self.mode, self.k, self.reduction = channels, mode, k, reduction
        self.temperature, self.gamma = float(temperature), float(gamma)
        self.use_compile = as_bool(compile, "compile")
        groups = 1 if mode == "a" else channels
        self.fc1 = nn.Linear(channels, max(channels // reduction, 1))
        self.fc2 = nn.Linear(self.fc1.out_features, 2 * k * groups)
        nn.init.zeros_(self.fc2.weight)  # theta = 0 at start: a = alpha, b = beta, i.e. ReLU
        nn.init.zeros_(self.fc2.bias)
        init_a = torch.zeros(k)
        init_a[0] = 1.0
        self.register_buffer("init_a", init_a, persistent=False)
        self.register_buffer("init_b", torch.zeros(k), persistent=False)
        if mode == "c":
            self.spatial = nn.Conv2d(channels, 1, 1, bias=True)
            self.spatial_bn = nn.BatchNorm2d(1)
            nn.init.zeros_(self.spatial_bn.weight)  # uniform attention at start
        else:
            self.spatial, self.spatial_bn = None, None

    def coefficients(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Slopes ``a`` and intercepts ``b``, each of shape (N, 1|C, K), from the spatial mean of ``x``."""
        theta = 2.0 * torch.sigmoid(self.fc2(F.relu(self.fc1(global_avg_pool(x))))) - 1.0
        theta = theta.view(x.shape[0], -1, 2 * self.k)
        a = self.init_a.to(theta.dtype) + LAMBDA_A * theta[..., : self.k]
        b = self.init_b.to(theta.dtype) + LAMBDA_B * theta[..., self.k :]
        return a, b

    def spatial_attention(self, x: torch.Tensor) -> torch.Tensor | None:
        """DY-ReLU-C's ``pi`` of shape (N, 1, H, W), or None for A and B."""
        if self.spatial is None:
            return None
        z = self.spatial(x)
        if self.spatial_bn is not None:
            z = batch_norm(self.spatial_bn, z)
        n, _, h, w = z.shape
        p = torch.softmax(z.reshape(n, h * w) / self.temperature, dim=1) * (self.gamma * h * w)
        return p.clamp(max=1.0).view(n, 1, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply DY-ReLU to an (N, C, H, W) tensor."""
        a, b = self.coefficients(x)
        if exporting():
            return dy_relu_formula(x, a, b, self.spatial_attention(x))
        if self.use_compile:
            return compiled(dy_relu_formula)(x, a, b, self.spatial_attention(x))
        if not torch.is_grad_enabled():
            return _dy_relu_inference(x, a, b, self.spatial_attention(x))
        bn = self.spatial_bn
        if self.spatial is None or (bn is not None and (type(bn) is not nn.BatchNorm2d or bn.weight is None)):
            return _DyReLUFunction.apply(x, a, b, self.spatial_attention(x), None, None, None, None, None)
        batch = bn is not None and bn_uses_batch_stats(bn, x)
        spatial = _Spatial(
            bn.running_mean if bn is not None else None,
            bn.running_var if bn is not None else None,
            batch,
            _momentum(bn) if batch else 0.0,
            bn.eps if bn is not None else 0.0,
            self.temperature,
            self.gamma,
        )
        return _DyReLUFunction.apply(
            x, a, b, None, self.spatial.weight, self.spatial.bias,
            bn.weight if bn is not None else None, bn.bias if bn is not None else None, spatial,
        )

    @torch.no_grad()
    def fuse(self) -> "DyReLU":
        """Fold C's spatial BN into its 1x1 conv (running statistics); idempotent. Returns self."""
        if self.spatial_bn is not None:
            fold_bn(self.spatial, self.spatial_bn)
            self.spatial_bn = None
        return self

    def extra_repr(self) -> str:
        """Variant, channels, K, reduction (and C's temperature and gamma)."""
        s = f"mode={self.mode!r}, channels={self.channels}, k={self.k}, reduction={self.reduction}"
        if self.mode == "c":
            s += f", temperature={self.temperature:g}, gamma={self.gamma:.4g}, fused={self.spatial_bn is None}"
        return s + (", compile=True" if self.use_compile else "")


def _dy_relu_a(channels: int, k: int = 2, reduction: int = 4, compile: bool = False) -> DyReLU:
    return DyReLU(channels, "a", k=k, reduction=reduction, compile=compile)


def _dy_relu_b(channels: int, k: int = 2, reduction: int = 4, compile: bool = False) -> DyReLU:
    return DyReLU(channels, "b", k=k, reduction=reduction, compile=compile)


def _dy_relu_c(
    channels: int,
    k: int = 2,
    reduction: int = 4,
    temperature: float = 10.0,
    gamma: float = 1 / 3,
    compile: bool = False,
) -> DyReLU:
    return DyReLU(channels, "c", k=k, reduction=reduction, temperature=temperature, gamma=gamma, compile=compile)


_COMMON = dict(kind="channel-aware", channel_aware=True, onnx_exportable=True)
register_activation(
    "dy_relu_a", _dy_relu_a, aliases=("dyrelu_a",), **_COMMON,
    description="DY-ReLU-A max_k(a_k x+b_k), coefficients per sample (shared over space+channels); starts as ReLU",
)
register_activation(
    "dy_relu_b", _dy_relu_b, aliases=("dyrelu_b", "dy_relu", "dyrelu"), **_COMMON,
    description="DY-ReLU-B max_k(a_k x+b_k), coefficients per sample and channel; k=2, reduction=4; starts as ReLU",
)
register_activation(
    "dy_relu_c", _dy_relu_c, aliases=("dyrelu_c",), **_COMMON,
    description="DY-ReLU-C: B times spatial attention min(gamma*HW*softmax(z/tau),1); starts as min(gamma,1)*ReLU",
)
