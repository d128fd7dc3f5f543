"""Straightforward reference implementations of the channel-aware activations, written the way the papers' code does.

Each ``ref_*(module, x)`` computes the activation with plain autograd ops from the parameters of one of our modules
(``yolo_act_swap.activations``), so the fast implementation and the reference share their weights exactly. They never
update the module's BN running statistics. ``ReferenceModule`` wraps one for timing, and ``REFERENCES`` maps registry
names to the functions.

Formulas (checked against the papers):
- FReLU (Ma et al. 2020, eq. 1): ``max(x, T(x))``, ``T`` = depthwise k x k conv + BN.
- ACON-C (Ma et al. 2021, eq. 6): ``(p1 - p2) x sigmoid(beta (p1 - p2) x) + p2 x``.
- Meta-ACON-C: the same with ``beta = sigmoid(BN(fc2(BN(fc1(mean_hw x)))))``.
- DY-ReLU (Chen et al. 2020, eqs. 2-4): ``y_c = max_k (a_c^k x_c + b_c^k)`` with ``a^k = alpha^k + lambda_a da^k``,
  ``b^k = beta^k + lambda_b db^k`` and residuals from ``2 sigmoid(fc2(relu(fc1(gap(x))))) - 1``; C multiplies the
  coefficients by ``min(gamma HW softmax(z / tau), 1)``. Built with the K-expanded tensor, as the published code
  (``ref_dy_relu``, with its permutes) or simply vectorised (``ref_dy_relu_vectorised``).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from yolo_act_swap.activations.functional import bn_uses_batch_stats

__all__ = [
    "REFERENCES",
    "VECTORISED",
    "ReferenceModule",
    "ref_acon_c",
    "ref_dy_relu",
    "ref_dy_relu_vectorised",
    "ref_frelu",
    "ref_meta_acon_c",
]


def _bn(bn: nn.BatchNorm2d | None, x: torch.Tensor) -> torch.Tensor:
    """BatchNorm as the module would apply it, on copies of the running statistics (the module is left unchanged)."""
    if bn is None:
        return x
    batch = bn_uses_batch_stats(bn, x)
    rm = bn.running_mean.clone() if bn.running_mean is not None else None
    rv = bn.running_var.clone() if bn.running_var is not None else None
    return F.batch_norm(x, rm, rv, bn.weight, bn.bias, batch, 0.1, bn.eps)


def ref_frelu(m, x: torch.Tensor) -> torch.Tensor:
    """FReLU: ``torch.max(x, BN(dwconv(x)))`` as in the paper code."""
    conv = m.conv
    t = F.conv2d(x, conv.weight, conv.bias, 1, conv.padding, 1, conv.groups)
    return torch.max(x, _bn(m.bn, t))


def ref_acon_c(m, x: torch.Tensor) -> torch.Tensor:
    """ACON-C exactly as the paper code writes it."""
    p1, p2, beta = m.p1, m.p2, m.beta
    return (p1 * x - p2 * x) * torch.sigmoid(beta * (p1 * x - p2 * x)) + p2 * x


def ref_meta_acon_c(m, x: torch.Tensor) -> torch.Tensor:
    """Meta-ACON-C exactly as the paper code writes it (BNs optional, as in our module)."""
    pooled = x.mean(dim=2, keepdim=True).mean(dim=3, keepdim=True)
    beta = torch.sigmoid(_bn(m.bn2, m.fc2(_bn(m.bn1, m.fc1(pooled)))))
    p1, p2 = m.p1, m.p2
    return (p1 * x - p2 * x) * torch.sigmoid(beta * (p1 * x - p2 * x)) + p2 * x


def _dy_relu_coefs(m, x: torch.Tensor) -> torch.Tensor:
    """(N, 1|C, 2K) coefficients ``[a_1..a_K, b_1..b_K]`` from the hyper-function, as the published code has them."""
    n, c = x.shape[:2]
    k = m.k
    theta = x.mean(dim=-1).mean(dim=-1)
    theta = torch.relu(F.linear(theta, m.fc1.weight, m.fc1.bias))
    theta = 2 * torch.sigmoid(F.linear(theta, m.fc2.weight, m.fc2.bias)) - 1
    lambdas = torch.tensor([1.0] * k + [0.5] * k, dtype=theta.dtype, device=x.device)
    init_v = torch.tensor([1.0] + [0.0] * (2 * k - 1), dtype=theta.dtype, device=x.device)
    return theta.view(n, 1 if m.mode == "a" else c, 2 * k) * lambdas + init_v


def _dy_relu_attention(m, x: torch.Tensor) -> torch.Tensor:
    """DY-ReLU-C's spatial attention (N, H, W): min(gamma HW softmax(BN(conv1x1 x) / tau), 1)."""
    n, _, h, w = x.shape
    z = _bn(m.spatial_bn, F.conv2d(x, m.spatial.weight, m.spatial.bias))
    att = torch.softmax(z.view(n, -1) / m.temperature, dim=1)
    return torch.minimum(m.gamma * h * w * att, torch.ones_like(att)).view(n, h, w)


def ref_dy_relu(m, x: torch.Tensor) -> torch.Tensor:
    """DY-ReLU A/B/C in the published manner: the input permuted and unsqueezed against the (.., 2K) coefficients,
    a K-expanded tensor, max over the last dim, permuted back (A and B as the widely used public code; C with the
    spatial attention multiplied into the coefficients)."""
    k = m.k
    coefs = _dy_relu_coefs(m, x)
    if m.mode == "a":  # N x C x H x W -> W x C x H x N x 1
        out = x.transpose(0, -1).unsqueeze(-1) * coefs[:, 0, :k] + coefs[:, 0, k:]
        return torch.max(out, dim=-1)[0].transpose(0, -1)
    if m.mode == "c":  # H x W x N x C x 2K coefficients
        coefs = coefs.unsqueeze(0).unsqueeze(0) * _dy_relu_attention(m, x).permute(1, 2, 0)[..., None, None]
    out = x.permute(2, 3, 0, 1).unsqueeze(-1) * coefs[..., :k] + coefs[..., k:]  # H x W x N x C x K
    return torch.max(out, dim=-1)[0].permute(2, 3, 0, 1)


def ref_dy_relu_vectorised(m, x: torch.Tensor) -> torch.Tensor:
    """DY-ReLU simply vectorised: no permutes, but still the (N, C, H, W, K) tensor and a max over it."""
    k = m.k
    coefs = _dy_relu_coefs(m, x)[:, :, None, None, :]  # N x (1|C) x 1 x 1 x 2K
    if m.mode == "c":
        coefs = coefs * _dy_relu_attention(m, x)[:, None, :, :, None]
    return (x.unsqueeze(-1) * coefs[..., :k] + coefs[..., k:]).amax(dim=-1)


REFERENCES = {
    "frelu": ref_frelu,
    "acon_c": ref_acon_c,
    "meta_acon_c": ref_meta_acon_c,
    "dy_relu_a": ref_dy_relu,
    "dy_relu_b": ref_dy_relu,
    "dy_relu_c": ref_dy_relu,
}


VECTORISED = {  # a second, faster straightforward form where the published one is notably slow
    "dy_relu_a": ref_dy_relu_vectorised,
    "dy_relu_b": ref_dy_relu_vectorised,
    "dy_relu_c": ref_dy_relu_vectorised,
}


class ReferenceModule(nn.Module):
    """Runs a reference function with the parameters of one of our activation modules (same weights, for timing).

    Args:
        act (nn.Module): our activation module (FReLU, AconC, MetaAconC or DyReLU).
        fn (Callable, optional): the reference function; looked up from the module's registry name by default.
    """

    def __init__(self, act: nn.Module, fn=None):
        super().__init__()
        self.act = act
        self.fn = fn or REFERENCES[act._yas_act]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the reference formula."""
        return self.fn(self.act, x)
