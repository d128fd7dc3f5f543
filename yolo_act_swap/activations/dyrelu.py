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

The K-expanded (N, C, H, W, K) tensor of the published code is never built: the training function
(``dyrelu_autograd.py``) works through the input in cache-sized chunks, keeps only ``x`` (plus a one-byte argmax index
when K > 2; for K = 2 the winning piece is recomputed from the sign of ``(a_1 - a_0) x + b_1 - b_0``, which may pick
the other piece only where both pieces agree to rounding, a kink where either slope is a valid subgradient), and
recomputes the pieces in the backward pass.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import native
from .dyrelu_autograd import DyReLUFunction, Spatial
from .functional import (
    affine,
    as_bool,
    batch_norm,
    bn_momentum,
    bn_uses_batch_stats,
    chunk_slices,
    compiled,
    exporting,
    fold_bn,
    global_avg_pool,
    one_thread_graph,
    one_thread_if_small,
    planes,
    run_blocks,
    small_pass,
)
from .hyper import MlpHyper
from .keywords import Bounds
from .registry import register_activation

__all__ = ["DyReLU", "dy_relu_formula"]

LAMBDA_A, LAMBDA_B = 1.0, 0.5  # the paper's residual ranges for the slopes and the intercepts


def _dy_relu_inference(x, a, b, pi):
    """The forward alone (no graph): a running max in one output buffer, no K-expanded tensor; on CPU in cache-sized
    blocks (one pass over memory, the result in the input's layout, NCHW or channels_last)."""
    k = a.shape[-1]
    view = planes(x) if x.device.type == "cpu" else None
    if view is None:
        a4, b4 = a.to(x.dtype)[..., None, None], b.to(x.dtype)[..., None, None]  # (N, 1|C, K, 1, 1)
        y = torch.addcmul(b4[:, :, 0], x, a4[:, :, 0])
        for i in range(1, k):
            torch.maximum(y, torch.addcmul(b4[:, :, i], x, a4[:, :, i]), out=y)
        return y.mul_(pi.to(x.dtype)) if pi is not None else y
    x3, per_channel, nchw = view
    n, c = x.shape[:2]
    # 2K views (N, C, 1) or (N, 1, C) of the coefficients, broadcast over C for DY-ReLU-A (no copies: on a small map
    # every extra small op is a few percent of the pass)
    a, b = (t.to(x.dtype).expand(n, c, k) for t in (a, b))
    cf3 = [per_channel(t) for t in (*a.unbind(-1), *b.unbind(-1))]
    pi3 = planes(pi.to(x.dtype).contiguous(memory_format=torch.contiguous_format))[0] if pi is not None else None
    if pi3 is not None and not nchw:
        pi3 = pi3.reshape(n, -1, 1)  # (N, HW, 1) against (N, HW, C)
    y = torch.empty_like(x)
    y3 = planes(y)[0]
    fused = k == 2 and pi3 is None and nchw and native.usable(x3)
    coef = torch.cat(cf3, -1) if fused else None  # (N, C, 4) rows (a0, a1, b0, b1) for the C kernel (native.py)

    def block(ns_ms):
        ns, ms = ns_ms
        if fused:
            return native.dyrelu2_forward(x3[ns, ms], coef[ns, ms], y3[ns, ms])
        i = (ns, ms) if nchw else (ns,)
        xs, out = x3[ns, ms], y3[ns, ms]
        affine(xs, cf3[0][i], cf3[k][i], out=out)
        if k > 1:
            t = torch.empty_like(xs)
            for j in range(1, k):
                torch.maximum(out, affine(xs, cf3[j][i], cf3[k + j][i], out=t), out=out)
        if pi3 is not None:
            out.mul_(pi3[ns] if nchw else pi3[ns, ms])

    # a small map in one block: on one thread the whole-tensor ops cost fewer per-op overheads than cache-sized
    # blocks save (no gradient temporaries here: one map-sized buffer besides the output)
    small = small_pass(x.device, x3.numel())
    run_blocks(block, native.blocks(x3, True) if fused else chunk_slices(x3, x3.numel() if small else None), x.device)
    return y


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


class _Hyper:
    """DY-ReLU's hyper-function as the training function takes it: ``(a, b)`` from the (N, C) pooled input when
    called, and ``pooled_hyper``, the same as an ``MlpHyper`` with its backward written out (``hyper.py``)."""

    def __init__(self, m: "DyReLU"):
        self.m = m

    def __call__(self, pooled: torch.Tensor):
        return self.m._hyper(pooled)

    def pooled_hyper(self, x: torch.Tensor, need_x: bool) -> MlpHyper:
        m, k = self.m, self.m.k
        lam = torch.tensor([LAMBDA_A] * k + [LAMBDA_B] * k, dtype=torch.float64, device=x.device)
        init = torch.cat([m.init_a, m.init_b]).to(torch.float64)
        shape = (x.shape[0], m.fc2.out_features // (2 * k), 2 * k)  # theta as (N, G, 2K): a_0..a_K-1, b_0..b_K-1
        return MlpHyper(m.fc1, m.fc2, x, need_x, shape, 2 * lam, init - lam, k)


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
        return self._slopes(one_thread_graph(self._theta, global_avg_pool(x), self._hyper_params()))

    def _hyper(self, pooled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(a, b)`` from the (N, C) spatial mean (the training function's hyper-function, ``hyper.PooledHyper``)."""
        return self._slopes(self._theta(pooled))

    def _hyper_params(self) -> list:
        return [*self.fc1.parameters(), *self.fc2.parameters()]

    def _slopes(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``a = init_a + lambda_a theta_a`` and ``b = init_b + lambda_b theta_b`` from the (N, G*2K) ``theta``."""
        theta = theta.view(theta.shape[0], -1, 2 * self.k)
        a = self.init_a.to(theta.dtype) + LAMBDA_A * theta[..., : self.k]
        b = self.init_b.to(theta.dtype) + LAMBDA_B * theta[..., self.k :]
        return a, b

    def _theta(self, pooled: torch.Tensor) -> torch.Tensor:
        """``2 sigmoid(fc2(relu(fc1(pooled)))) - 1`` on the (N, C) pooled input (on one thread, forward and backward,
        where torch has more: ``one_thread_graph``)."""
        return 2.0 * torch.sigmoid(self.fc2(F.relu(self.fc1(pooled)))) - 1.0

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

    def export_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The forward as a lean graph for ONNX and tracing: no shape arithmetic, no per-piece Gather/Slice/Unsqueeze.

        ``a_k, b_k = init + lambda (2 sigmoid(fc2(...)) - 1)`` is one Mul and one Add with constant vectors, the
        (N, G*2K) result is reshaped once to (N, G, 2K, 1) (constant target shape) and split into 2K (N, G, 1, 1)
        coefficient maps by one Split node; then K Mul+Add pieces and K-1 Max.
        """
        k, groups = self.k, self.fc2.out_features // (2 * self.k)
        t = torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean((2, 3))))))
        lam = torch.cat([torch.full((k,), LAMBDA_A), torch.full((k,), LAMBDA_B)]).to(t)
        init = torch.cat([self.init_a, self.init_b]).to(t)
        coef = t.view(-1, groups, 2 * k, 1) * (2 * lam).view(-1, 1) + (init - lam).view(-1, 1)
        cf = torch.split(coef, 1, dim=2)  # 2K maps (N, G, 1, 1): a_0..a_K-1, b_0..b_K-1
        y = x * cf[0] + cf[k]
        for i in range(1, k):
            y = torch.maximum(y, x * cf[i] + cf[k + i])
        pi = self.spatial_attention(x)
        return y * pi if pi is not None else y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply DY-ReLU to an (N, C, H, W) tensor."""
        if exporting():
            return self.export_forward(x)
        if self.use_compile:
            a, b = self.coefficients(x)
            return compiled(dy_relu_formula)(x, a, b, self.spatial_attention(x))
        with one_thread_if_small(x):  # a small map: the whole forward on one thread (see pool.py)
            return self._forward(x)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        """``forward`` without export and compile: the inference path or the training function."""
        if not torch.is_grad_enabled():
            a, b = self.coefficients(x)
            return _dy_relu_inference(x, a, b, self.spatial_attention(x))
        hyper = (_Hyper(self), *self._hyper_params())  # a and b are computed inside the function, from x's mean
        bn = self.spatial_bn
        if self.spatial is None or (bn is not None and (type(bn) is not nn.BatchNorm2d or bn.weight is None)):
            return DyReLUFunction.apply(x, None, None, self.spatial_attention(x), None, None, None, None, None, *hyper)
        batch = bn is not None and bn_uses_batch_stats(bn, x)
        spatial = Spatial(
            bn.running_mean if bn is not None else None,
            bn.running_var if bn is not None else None,
            batch,
            bn_momentum(bn) if batch else 0.0,
            bn.eps if bn is not None else 0.0,
            self.temperature,
            self.gamma,
        )
        return DyReLUFunction.apply(
            x, None, None, None, self.spatial.weight, self.spatial.bias,
            bn.weight if bn is not None else None, bn.bias if bn is not None else None, spatial, *hyper,
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
_AB = {"k": Bounds(min=1, max=8), "reduction": Bounds(min=1, max=1024, at_most_channels=True)}
_C = {**_AB, "temperature": Bounds(min=1e-3, max=1e4), "gamma": Bounds(min=1e-4, max=1e4)}
register_activation(
    "dy_relu_a", _dy_relu_a, aliases=("dyrelu_a",), bounds=_AB, **_COMMON,
    description="DY-ReLU-A max_k(a_k x+b_k), coefficients per sample (shared over space+channels); starts as ReLU",
)
register_activation(
    "dy_relu_b", _dy_relu_b, aliases=("dyrelu_b", "dy_relu", "dyrelu"), bounds=_AB, **_COMMON,
    description="DY-ReLU-B max_k(a_k x+b_k), coefficients per sample and channel; k=2, reduction=4; starts as ReLU",
)
register_activation(
    "dy_relu_c", _dy_relu_c, aliases=("dyrelu_c",), bounds=_C, **_COMMON,
    description="DY-ReLU-C: B times spatial attention min(gamma*HW*softmax(z/tau),1); starts as min(gamma,1)*ReLU",
)
