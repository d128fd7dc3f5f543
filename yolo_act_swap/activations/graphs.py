"""Exported graphs that ONNX Runtime runs fast, and the folded ACON-C that ``fuse()`` leaves behind a conv.

ONNX Runtime's CPU provider runs convolutions in a blocked layout (NCHWc) and keeps a tensor in it across the ops
it knows in that layout: other convolutions (a Mul by a per-channel constant becomes a 1x1 depthwise conv), the fused
``x * sigmoid(x)`` kernel (QuickGelu), an Add of two tensors (folded into the conv that produces one of them), Concat,
pooling. Any other op (a Mul of two feature maps, Max, a Mul or Add by a per-sample coefficient) makes it copy the
tensor back to NCHW before the op and into NCHWc again before the next conv: two extra full passes per activation,
on top of the op's own. The graphs here avoid those ops:

- ``acon_graph``: ACON-C as ``(1/beta) * silu(u) + p2 * x`` with ``u = beta (p1 - p2) x``; ONNX Runtime runs it as
  three depthwise 1x1 convs and one QuickGelu, all in NCHWc (the plain formula ``x (d sigmoid(beta d x) + p2)``
  ends in a Mul of two feature maps).
- ``FoldedAconC``: what ``yolo_act_swap.nn.fold`` puts in place of an ACON-C that follows a conv once the model is
  fused: the conv emits ``z = beta (p1 - p2) x`` and the activation is ``a * silu(z) + b * z`` with ``a = 1 / beta``
  and ``b = p2 / (beta (p1 - p2))``: one QuickGelu and two depthwise 1x1 convs, no copies.
- ``frelu_graph``: FReLU ``max(x, t)`` as ``x + relu(t - x)`` with ``t - x`` computed by the funnel conv itself (its
  centre tap minus one, the BN folded in): one depthwise conv with a fused ReLU and one Add, no Max.

Every graph is built from the module's parameters with plain ops; the exporter folds the parameter arithmetic into
constants, so each costs no nodes beyond the ones named above. Nothing here changes what a module computes in
PyTorch: the graphs are the export branches of the modules (``functional.exporting()``).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .functional import chunk_slices, exporting, planes, run_blocks

__all__ = ["BETA_MIN", "FoldedAconC", "acon_graph", "frelu_graph"]

BETA_MIN = 1e-8  # acon_graph: 1/beta is taken as beta / (beta^2 + BETA_MIN^2)


def acon_graph(x: torch.Tensor, p1: torch.Tensor, p2: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """ACON-C with per-channel (1, C, 1, 1) parameters as ``(1/beta) silu(beta d x) + p2 x``, ``d = p1 - p2``.

    Equal to ``d x sigmoid(beta d x) + p2 x`` (each term is the same product, regrouped). ``1/beta`` is taken as
    ``beta / (beta^2 + BETA_MIN^2)`` and the part of ``d x / 2`` (the limit as beta -> 0) this leaves out goes to the
    linear term, so a channel with beta = 0 is exact too, with no branch in the graph. All of that is arithmetic on
    parameters, which the exporter folds into two constant vectors.
    """
    d = p1 - p2
    den = beta * beta + BETA_MIN * BETA_MIN
    u = x * (beta * d)
    return (u * torch.sigmoid(u)) * (beta / den) + x * (p2 + d * (0.5 * BETA_MIN * BETA_MIN) / den)


class FoldedAconC(nn.Module):
    """ACON-C after its per-channel scale ``c = beta (p1 - p2)`` went into the preceding conv: ``a silu(z) + b z``.

    With ``z = c x`` (what the scaled conv emits), ``a = 1 / beta`` and ``b = p2 / c`` this equals ACON-C of ``x``.
    Built by ``yolo_act_swap.nn.fold`` when a model is fused, never by the registry; it keeps the registry tag of the
    ACON-C it replaces.

    Args:
        a (torch.Tensor): (1, C, 1, 1) factor of ``silu(z)``.
        b (torch.Tensor): (1, C, 1, 1) factor of ``z``.
    """

    def __init__(self, a: torch.Tensor, b: torch.Tensor):
        super().__init__()
        self.a = nn.Parameter(a.detach().clone().reshape(1, -1, 1, 1), requires_grad=a.requires_grad)
        self.b = nn.Parameter(b.detach().clone().reshape(1, -1, 1, 1), requires_grad=b.requires_grad)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Apply ``a silu(z) + b z`` to an (N, C, H, W) tensor."""
        a, b = self.a.to(z.dtype), self.b.to(z.dtype)
        if exporting() or torch.is_grad_enabled():
            return (z * torch.sigmoid(z)) * a + z * b
        return _folded_inference(z, a, b)

    def extra_repr(self) -> str:
        """Channels."""
        return f"channels={self.a.shape[1]}, a*silu(z)+b*z (ACON-C folded into the preceding conv)"


def _folded_inference(z: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a silu(z) + b z`` without a graph, in one pass over memory: on CPU in cache-sized blocks written straight into
    the output (NCHW or channels_last, the result in the input's layout); elsewhere three in-place ops."""
    view = planes(z) if z.dim() == 4 and z.device.type == "cpu" else None
    if view is None:
        return F.silu(z).mul_(a).addcmul_(z, b)
    z3, per_channel, nchw = view
    a3, b3 = per_channel(a), per_channel(b)
    y = torch.empty_like(z)
    y3 = planes(y)[0]

    def block(ns_ms):
        ns, ms = ns_ms
        i = (slice(None), ms) if nchw else (slice(None),)
        zs = z3[ns, ms]
        torch.sigmoid(zs, out=y3[ns, ms]).mul_(zs).mul_(a3[i]).addcmul_(zs, b3[i])

    run_blocks(block, chunk_slices(z3), z.device)
    return y


def frelu_graph(x: torch.Tensor, conv: nn.Conv2d, bn: nn.BatchNorm2d | None) -> torch.Tensor | None:
    """FReLU ``max(x, BN(conv(x)))`` as ``x + relu(conv'(x))``, ``conv'(x) = BN(conv(x)) - x``; None if unsupported.

    ``conv'`` is the depthwise conv with the BN folded in and one subtracted from its centre tap (stride 1, odd
    kernel, "same" padding). Returns None (the caller keeps the plain formula) for other geometries or a BN that is
    not a plain eval-mode ``BatchNorm2d``.
    """
    k = conv.kernel_size
    if (
        conv.stride != (1, 1) or conv.dilation != (1, 1) or k[0] != k[1] or k[0] % 2 == 0
        or conv.padding != (k[0] // 2, k[1] // 2) or conv.groups != conv.in_channels
        or conv.in_channels != conv.out_channels or conv.padding_mode != "zeros"
    ):
        return None
    w, bias = conv.weight, conv.bias
    if bn is not None:
        if type(bn) is not nn.BatchNorm2d or bn.training or bn.running_var is None:
            return None
        scale = (bn.weight if bn.weight is not None else 1.0) / torch.sqrt(bn.running_var + bn.eps)
        shift = bn.bias if bn.bias is not None else 0.0
        bias = (bias - bn.running_mean if bias is not None else -bn.running_mean) * scale + shift
        w = w * scale.reshape(-1, 1, 1, 1)
    c = k[0] // 2
    centre = F.pad(torch.ones(1, 1, 1, 1, dtype=w.dtype, device=w.device), (c, c, c, c))  # (1, 1, k, k) one-hot
    return x + torch.relu(F.conv2d(x, w - centre, bias, 1, c, 1, conv.groups))
