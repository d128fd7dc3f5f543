"""ACON-C and Meta-ACON-C (Ma et al. 2021, "Activate or Not: Learning Customized Activation").

Both compute ``y = (p1 - p2) * x * sigmoid(beta * (p1 - p2) * x) + p2 * x``. ACON-C learns ``beta`` per channel;
Meta-ACON-C produces it per sample and channel from the pooled input through a small 1x1-conv bottleneck.

Training runs one fused autograd function that keeps only ``x`` (SiLU keeps ``x`` too) and recomputes the sigmoid in
the backward pass, working through the tensor in cache-sized chunks on CPU; the straightforward formula keeps about six
intermediate feature maps. Also here: the chunk planner and the global-average-pool function that DY-ReLU shares.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import native
from .functional import (
    affine,
    as_bool,
    batch_norm,
    chunk_slices,
    compiled,
    compute_dtype,
    exporting,
    fold_bn,
    global_avg_pool,
    one_thread_graph,
    one_thread_if_small,
    planes,
    run_blocks,
    same_layout,
    small_batch_norm,
    small_pass,
)
from .graphs import acon_graph
from .hyper import PooledHyper
from .keywords import Bounds
from .registry import register_activation

__all__ = ["AconC", "MetaAconC", "acon_formula"]


def _acon_coefs(p1, p2, beta, c: int, dtype) -> torch.Tensor:
    """(1|N, C, 1, 3) pack of ``beta * d``, ``d = p1 - p2`` and ``p2``: one slice per block, unbound into views."""
    d = (p1 - p2).reshape(1, c)
    b = beta.reshape(-1, c)
    return torch.stack(torch.broadcast_tensors(b * d, d, p2.reshape(1, c)), -1).to(dtype).unsqueeze(2).contiguous()


class _AconFunction(torch.autograd.Function):
    """``y = d x sigmoid(beta d x) + p2 x`` with ``d = p1 - p2``; keeps only x and recomputes the rest.

    With ``hyper`` (Meta-ACON-C: a function of the (N, C) spatial mean returning beta (N, C, 1, 1); its parameters
    follow as ``*params``) beta is None and computed here, so that x has no other consumer (``hyper.PooledHyper``).
    """

    @staticmethod
    def forward(ctx, x, p1, p2, beta, hyper=None, *params):
        ctx.hyper = None
        if hyper is not None:
            ctx.hyper = PooledHyper(hyper, x, params, x.requires_grad)
            (beta,) = ctx.hyper.values()
        n, c, h, w = x.shape
        cdt = compute_dtype(x.dtype)
        x3 = x.contiguous().view(n, c, h * w)
        coef = _acon_coefs(p1, p2, beta, c, cdt)
        shared = coef.shape[0] == 1
        y = torch.empty_like(x, memory_format=torch.contiguous_format)
        y3 = y.view(n, c, h * w)
        same = cdt == x.dtype
        fused = native.usable(x3)  # one pass per block in C (native.py), else the eager ops below

        def block(ns_cs):
            ns, cs = ns_cs
            if fused:
                return native.acon_forward(x3[ns, cs], coef[:, cs, 0] if shared else coef[ns, cs, 0], y3[ns, cs])
            xs = x3[ns, cs] if same else x3[ns, cs].to(cdt)
            bd, d, p2c = (coef[:, cs] if shared else coef[ns, cs]).unbind(-1)
            s = torch.mul(xs, bd).sigmoid_()
            # x (d s + p2), straight into the output block (functional.affine: addcmul with the two broadcast
            # operands d and p2 runs a scalar loop)
            if same:
                affine(s, d, p2c, out=y3[ns, cs]).mul_(xs)
            else:
                y3[ns, cs] = affine(s, d, p2c).mul_(xs)

        run_blocks(block, native.blocks(x3, fused), x.device)
        ctx.save_for_backward(x, p1, p2, beta)
        return same_layout(y, x)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):
        with one_thread_if_small(g):
            return _acon_backward(ctx, g)


def _acon_backward(ctx, g):
    """``_AconFunction.backward``: the gradients of x, p1, p2 and beta from the saved x and the parameters."""
    x, p1, p2, beta = ctx.saved_tensors
    n, c, h, w = x.shape
    cdt = compute_dtype(x.dtype)
    x3, g3 = x.contiguous().view(n, c, h * w), g.contiguous().view(n, c, h * w)
    coef = _acon_coefs(p1, p2, beta, c, cdt)
    shared = coef.shape[0] == 1
    gx = torch.empty_like(x, memory_format=torch.contiguous_format) if ctx.needs_input_grad[0] else None
    gx3 = gx.view(n, c, h * w) if gx is not None else None  # write through a view, return the base
    same = cdt == x.dtype
    # per (sample, channel): sum_hw g x, sum_hw g x q with q = d/du [u sigmoid(beta u)], sum_hw g x^2 s (1 - s)
    sums = torch.zeros(n, c, 3, dtype=cdt, device=x.device)
    fused = native.usable(x3) and g3.dtype == x3.dtype

    def block(ns_cs):
        ns, cs = ns_cs
        if fused:
            cf = coef[:, cs, 0] if shared else coef[ns, cs, 0]
            return native.acon_backward(x3[ns, cs], g3[ns, cs], cf, gx3[ns, cs] if gx3 is not None else None,
                                        sums[ns, cs])
        xs, gs = (x3[ns, cs], g3[ns, cs]) if same else (x3[ns, cs].to(cdt), g3[ns, cs].to(cdt))
        bd, d, p2c = (coef[:, cs] if shared else coef[ns, cs]).unbind(-1)
        v = torch.mul(xs, bd)  # beta u
        s = torch.sigmoid(v)
        sp = torch.addcmul(s, s, s, value=-1)  # s (1 - s)
        q = torch.addcmul(s, v, sp)  # s + v s (1 - s)
        gxp = torch.mul(gs, xs)  # g x
        sums[ns, cs] = torch.stack((gxp.sum(-1), torch.mul(gxp, q).sum(-1), sp.mul_(xs).mul_(gxp).sum(-1)), -1)
        if gx3 is not None:  # g (d q + p2)
            if same:
                affine(q, d, p2c, out=gx3[ns, cs]).mul_(gs)
            else:
                gx3[ns, cs] = affine(q, d, p2c).mul_(gs)

    run_blocks(block, native.blocks(x3, fused), x.device)
    dd = (p1 - p2).to(cdt).reshape(1, c)
    g_p1 = sums[..., 1]
    g_p2 = sums[..., 0] - sums[..., 1]
    g_beta = sums[..., 2] * dd * dd

    def _as(grad, like):  # reduce (N, C) sums to the parameter's (1|N, C, 1, 1) shape
        if like.shape[0] == 1:
            grad = grad.sum(0, keepdim=True)
        return grad.reshape(like.shape).to(like.dtype)

    need = ctx.needs_input_grad
    g_params = ()
    if ctx.hyper is not None:  # through the hyper-function, and its mean's gradient into gx
        g_pooled, g_params = ctx.hyper.backward((_as(g_beta, beta),), need[5:])
        if gx3 is not None:
            ctx.hyper.add_pooled_grad(gx3, g_pooled, x.device)
    return (
        same_layout(gx, x) if gx is not None else None,
        _as(g_p1, p1) if need[1] else None,
        _as(g_p2, p2) if need[2] else None,
        _as(g_beta, beta) if need[3] else None,
        None,
        *g_params,
    )


def acon_formula(x: torch.Tensor, p1: torch.Tensor, p2: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """The ACON-C formula with plain ops (export, tracing); ``beta`` broadcasts as (1|N, C, 1, 1)."""
    d = p1 - p2
    return x * (d * torch.sigmoid(beta * d * x) + p2)


def _acon_inference(x, p1, p2, beta):
    """The forward alone (no graph), in one pass over memory: cache-sized blocks, each finished before the next.

    NCHW-contiguous and channels_last inputs run block by block (the result has the input's layout); other layouts
    run the same in-place ops on the whole tensor.
    """
    d = (p1 - p2).to(x.dtype)
    bd = beta.to(x.dtype) * d
    p2 = p2.to(x.dtype)
    view = planes(x) if x.dim() == 4 and x.device.type == "cpu" else None
    if view is None:
        return torch.mul(x, bd).sigmoid_().mul_(d).add_(p2).mul_(x)
    x3, per_channel, nchw = view
    bd3, d3, p23 = (per_channel(t) for t in torch.broadcast_tensors(bd, d, p2))
    shared = bd3.shape[0] == 1
    y = torch.empty_like(x)
    y3 = planes(y)[0]
    fused = nchw and native.usable(x3)
    coef = torch.cat((bd3, d3, p23), -1) if fused else None  # (1|N, C, 3) rows for the C kernel

    def block(ns_ms):
        ns, ms = ns_ms
        if fused:
            return native.acon_forward(x3[ns, ms], coef[:, ms] if shared else coef[ns, ms], y3[ns, ms])
        i = (slice(None) if shared else ns, ms) if nchw else (slice(None) if shared else ns,)
        xs, out = x3[ns, ms], y3[ns, ms]
        torch.mul(xs, bd3[i], out=out).sigmoid_().mul_(d3[i]).add_(p23[i]).mul_(xs)

    small = small_pass(x.device, x3.numel())  # a small map in one block (see dyrelu._dy_relu_inference)
    run_blocks(block, native.blocks(x3, True) if fused else chunk_slices(x3, x3.numel() if small else None), x.device)
    return y


def _acon(x, p1, p2, beta, compile=False):
    if exporting():  # per-channel beta: the graph ONNX Runtime keeps in its blocked layout (see graphs.py)
        return acon_graph(x, p1, p2, beta) if isinstance(beta, nn.Parameter) else acon_formula(x, p1, p2, beta)
    if compile and torch.is_grad_enabled():  # one fused kernel per pass; the compiler decides what to keep
        # views, not Parameters: dynamo keeps Parameter shapes static, which would compile once per channel count
        return compiled(acon_formula)(x, p1.view(p1.shape), p2.view(p2.shape), beta.view(beta.shape))
    with one_thread_if_small(x):  # a small map: its whole forward on one thread (see pool.py)
        if not torch.is_grad_enabled():
            return _acon_inference(x, p1, p2, beta)
        return _AconFunction.apply(x, p1, p2, beta)


def _init_p(channels: int, init: str, allowed: tuple) -> tuple:
    if init not in allowed:
        raise ValueError(f"init must be one of {', '.join(repr(a) for a in allowed)}, got {init!r}")
    if init == "default":  # the paper code: p1, p2 ~ N(0, 1)
        return torch.randn(1, channels, 1, 1), torch.randn(1, channels, 1, 1)
    return torch.ones(1, channels, 1, 1), torch.zeros(1, channels, 1, 1)  # p1 = 1, p2 = 0: x * sigmoid(beta x)


class AconC(nn.Module):
    """ACON-C: ``(p1 - p2) x sigmoid(beta (p1 - p2) x) + p2 x`` with learned p1, p2, beta of shape (1, C, 1, 1).

    Args:
        channels (int): channels of the block.
        init (str): ``"default"`` as the paper code (p1, p2 ~ N(0, 1), beta = 1) or ``"silu"`` (p1 = 1, p2 = 0,
            beta = 1), which is exactly ``x * sigmoid(x)``.
        compile (bool): run the formula through ``torch.compile`` instead of the fused autograd function (faster on
            CPU once compiled; needs a working compiler toolchain, and compiling takes a while).
    """

    def __init__(self, channels: int, init: str = "default", compile: bool = False):
        super().__init__()
        p1, p2 = _init_p(int(channels), init, ("default", "silu"))
        self.p1, self.p2 = nn.Parameter(p1), nn.Parameter(p2)
        self.beta = nn.Parameter(torch.ones(1, int(channels), 1, 1))
        self.init, self.use_compile = init, as_bool(compile, "compile")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply ACON-C to an (N, C, H, W) tensor."""
        return _acon(x, self.p1, self.p2, self.beta, self.use_compile)

    def extra_repr(self) -> str:
        """Channels and init."""
        return f"channels={self.p1.shape[1]}, init={self.init!r}" + (", compile=True" if self.use_compile else "")


class MetaAconC(nn.Module):
    """Meta-ACON-C: ACON-C whose beta = sigmoid(fc2(fc1(mean_hw(x)))) is computed per sample and channel.

    As in the paper code, fc1 and fc2 are 1x1 convs with bias, hidden width ``max(reduction, channels // reduction)``,
    each followed by a BatchNorm when ``bn=True`` (no other nonlinearity in between).

    In training, a BN that sees one value per channel (batch size 1: the pooled input is 1x1) uses its running
    statistics for that forward instead of failing; with batch size > 1 the paper formula is computed exactly.
    ``fuse()`` folds both BNs into fc1/fc2.

    Args:
        channels (int): channels of the block.
        reduction (int): bottleneck reduction r.
        bn (bool): BatchNorm after fc1 and fc2, as in the paper code.
        init (str): ``"default"`` (p1, p2 ~ N(0, 1)) or ``"swish"`` (p1 = 1, p2 = 0: x * sigmoid(beta x)). Meta-ACON
            cannot start exactly as SiLU: beta is a sigmoid output and never reaches 1.
        compile (bool): run the ACON formula through ``torch.compile`` (see ``AconC``).
    """

    def __init__(
        self, channels: int, reduction: int = 16, bn: bool = True, init: str = "default", compile: bool = False
    ):
        super().__init__()
        channels, reduction = int(channels), int(reduction)
        if reduction < 1:
            raise ValueError(f"reduction must be >= 1, got {reduction}")
        if init == "silu":
            raise ValueError(
                "meta_acon_c cannot start exactly as SiLU (beta = sigmoid(...) never reaches 1); use init='swish' "
                "(p1=1, p2=0) or acon_c with init='silu'"
            )
        hidden = max(reduction, channels // reduction)
        self.fc1 = nn.Conv2d(channels, hidden, 1, 1, bias=True)
        bn = as_bool(bn, "bn")
        self.bn1 = nn.BatchNorm2d(hidden) if bn else None
        self.fc2 = nn.Conv2d(hidden, channels, 1, 1, bias=True)
        self.bn2 = nn.BatchNorm2d(channels) if bn else None
        p1, p2 = _init_p(channels, init, ("default", "swish"))
        self.p1, self.p2 = nn.Parameter(p1), nn.Parameter(p2)
        self.reduction, self.init, self.use_compile = reduction, init, as_bool(compile, "compile")

    def beta(self, x: torch.Tensor) -> torch.Tensor:
        """The switching factor beta, shape (N, C, 1, 1), from the spatial mean of ``x``."""
        b = global_avg_pool(x)[:, :, None, None]
        b = self.fc1(b)
        if self.bn1 is not None:
            b = batch_norm(self.bn1, b)
        b = self.fc2(b)
        if self.bn2 is not None:
            b = batch_norm(self.bn2, b)
        return torch.sigmoid(b)

    def _lean_beta(self, x: torch.Tensor) -> torch.Tensor:
        """``beta(x)`` with fc1/fc2 as matrix products on (N, C) (the same weights and values): oneDNN runs a 1x1
        conv of a (N, C, 1, 1) tensor as OpenMP regions, which cost a scheduler slice each beside other processes
        (92 ms against 0.12 ms for fwd+bwd at 2 threads, load 11); a small matrix product stays on one thread, and
        so does ``small_batch_norm``; their backward too (``one_thread_graph``)."""
        return one_thread_graph(self._beta_head, global_avg_pool(x), self._hyper_params())[:, :, None, None]

    def _hyper_params(self) -> list:
        return [p for m in (self.fc1, self.bn1, self.fc2, self.bn2) if m is not None for p in m.parameters()]

    def _hyper(self, pooled: torch.Tensor) -> torch.Tensor:
        """beta (N, C, 1, 1) from the (N, C) spatial mean (the training function's hyper-function)."""
        return self._beta_head(pooled)[:, :, None, None]

    def _beta_head(self, pooled: torch.Tensor) -> torch.Tensor:
        """fc1 (+ bn1), fc2 (+ bn2) and the sigmoid on the (N, C) pooled input."""
        b = F.linear(pooled, self.fc1.weight.flatten(1), self.fc1.bias)
        if self.bn1 is not None:
            b = small_batch_norm(self.bn1, b)
        b = F.linear(b, self.fc2.weight.flatten(1), self.fc2.bias)
        if self.bn2 is not None:
            b = small_batch_norm(self.bn2, b)
        return torch.sigmoid(b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply Meta-ACON-C to an (N, C, H, W) tensor."""
        if exporting() or x.device.type != "cpu":
            return _acon(x, self.p1, self.p2, self.beta(x), self.use_compile)
        with one_thread_if_small(x):  # the hyper-function too (see pool.py)
            if torch.is_grad_enabled() and not self.use_compile:  # beta computed inside, from x's mean
                return _AconFunction.apply(x, self.p1, self.p2, None, self._hyper, *self._hyper_params())
            return _acon(x, self.p1, self.p2, self._lean_beta(x), self.use_compile)

    @torch.no_grad()
    def fuse(self) -> "MetaAconC":
        """Fold bn1 into fc1 and bn2 into fc2 (running statistics); idempotent. Returns self."""
        if self.bn1 is not None:
            fold_bn(self.fc1, self.bn1)
            self.bn1 = None
        if self.bn2 is not None:
            fold_bn(self.fc2, self.bn2)
            self.bn2 = None
        return self

    def extra_repr(self) -> str:
        """Channels, bottleneck width, BN state, init."""
        bn = "folded" if self.bn1 is None and self.bn2 is None else "yes"
        return (
            f"channels={self.p1.shape[1]}, reduction={self.reduction}, hidden={self.fc1.out_channels}, "
            f"bn={bn}, init={self.init!r}" + (", compile=True" if self.use_compile else "")
        )


def _acon_c(channels: int, init: str = "default", compile: bool = False) -> AconC:
    return AconC(channels, init=init, compile=compile)


def _meta_acon_c(
    channels: int, reduction: int = 16, bn: bool = True, init: str = "default", compile: bool = False
) -> MetaAconC:
    return MetaAconC(channels, reduction=reduction, bn=bn, init=init, compile=compile)


register_activation(
    "acon_c",
    _acon_c,
    kind="channel-aware",
    channel_aware=True,
    onnx_exportable=True,
    silu_init=True,
    aliases=("aconc",),
    description="ACON-C (p1-p2)x*sigmoid(beta(p1-p2)x)+p2x, per-channel p1,p2,beta; init=silu is exactly SiLU",
)
register_activation(
    "meta_acon_c",
    _meta_acon_c,
    kind="channel-aware",
    channel_aware=True,
    onnx_exportable=True,
    silu_init=False,
    aliases=("metaaconc", "meta_aconc"),
    bounds={"reduction": Bounds(min=1, max=1024, at_most_channels=True)},
    description="Meta-ACON-C: beta=sigmoid(BN(fc2(BN(fc1(mean_hw x))))), reduction=16; beta<1 so no exact SiLU start",
)
