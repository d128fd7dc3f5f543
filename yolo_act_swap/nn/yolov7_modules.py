"""The YOLOv7 building blocks ultralytics lacks (MP and SP pooling, SPPCSPC, the re-parameterisable RepConv) and the
torch.nn activations a YOLOv7 config may name (``parse_act``: literal arguments only, never evaluated).

Parameter names follow the official WongKinYiu/yolov7 modules, so official weights load by name. ``nn.yolov7`` builds
models from them.
"""

from __future__ import annotations

import ast
from copy import deepcopy

import torch
import torch.nn as nn
import torch.nn.functional as F
from ultralytics.nn.modules import Conv

from ..errors import ModelError

__all__ = ("MP", "SAFE_ACTS", "SP", "SPPCSPC", "RepConv", "fresh_act", "parse_act")

# torch.nn activations a config may name, e.g. ``nn.LeakyReLU(0.1)``; built from literal arguments only, never eval'd.
SAFE_ACTS = frozenset(
    {
        "CELU",
        "ELU",
        "GELU",
        "Hardsigmoid",
        "Hardswish",
        "Hardtanh",
        "Identity",
        "LeakyReLU",
        "Mish",
        "PReLU",
        "ReLU",
        "ReLU6",
        "SELU",
        "SiLU",
        "Sigmoid",
        "Softplus",
        "Tanh",
    }
)


def fresh_act(act) -> nn.Module:
    """A new activation module: SiLU for ``True``, a copy of a given module, Identity for ``False``/``None``."""
    if act is True:
        return nn.SiLU()
    if isinstance(act, nn.Module):
        return deepcopy(act)
    return nn.Identity()


class MP(nn.Module):
    """YOLOv7 max-pool downsampling: ``MaxPool2d(k, stride=k)``.

    Args:
        k (int): kernel size and stride.
    """

    def __init__(self, k: int = 2):
        super().__init__()
        self.m = nn.MaxPool2d(kernel_size=k, stride=k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Downsample ``x`` by ``k``."""
        return self.m(x)


class SP(nn.Module):
    """YOLOv7 'same' max-pool (yolov7-tiny's SPP branches): ``MaxPool2d(k, stride=s, padding=k // 2)``.

    Args:
        k (int): kernel size.
        s (int): stride.
    """

    def __init__(self, k: int = 3, s: int = 1):
        super().__init__()
        self.m = nn.MaxPool2d(kernel_size=k, stride=s, padding=k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pool ``x``; spatial size is kept when ``s == 1``."""
        return self.m(x)


class SPPCSPC(nn.Module):
    """YOLOv7 spatial pyramid pooling inside a cross-stage-partial block.

    A 1x1 -> 3x3 -> 1x1 stem, max-pools of kernels ``k`` concatenated with it, a 1x1 -> 3x3 fuse, then a concat with a
    1x1 shortcut branch and a final 1x1. Hidden width ``c_ = int(2 * c2 * e)``.

    Args:
        c1 (int): input channels.
        c2 (int): output channels.
        n (int): unused; kept so that upstream argument lists parse the same.
        shortcut (bool): unused; kept for upstream argument compatibility.
        g (int): unused; kept for upstream argument compatibility.
        e (float): hidden-width ratio.
        k (tuple[int, ...]): max-pool kernel sizes.
        act (bool | nn.Module): activation of every conv (a fresh copy each); True means SiLU.
    """

    def __init__(self, c1, c2, n=1, shortcut=False, g=1, e=0.5, k=(5, 9, 13), act=True):
        super().__init__()
        c_ = int(2 * c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1, act=fresh_act(act))
        self.cv2 = Conv(c1, c_, 1, 1, act=fresh_act(act))
        self.cv3 = Conv(c_, c_, 3, 1, act=fresh_act(act))
        self.cv4 = Conv(c_, c_, 1, 1, act=fresh_act(act))
        self.m = nn.ModuleList(nn.MaxPool2d(kernel_size=x, stride=1, padding=x // 2) for x in k)
        self.cv5 = Conv((len(k) + 1) * c_, c_, 1, 1, act=fresh_act(act))
        self.cv6 = Conv(c_, c_, 3, 1, act=fresh_act(act))
        self.cv7 = Conv(2 * c_, c2, 1, 1, act=fresh_act(act))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the pooled CSP features, ``c2`` channels at the input's resolution."""
        x1 = self.cv4(self.cv3(self.cv1(x)))
        y1 = self.cv6(self.cv5(torch.cat([x1, *(m(x1) for m in self.m)], 1)))
        return self.cv7(torch.cat((y1, self.cv2(x)), 1))


class RepConv(nn.Module):
    """YOLOv7's re-parameterisable 3x3 conv (RepVGG style) with its own activation.

    Training: ``act(BN(conv3x3(x)) + BN(conv1x1(x)) [+ BN(x) when c1 == c2 and s == 1])``. ``fuse_convs()`` folds the
    branches into one biased 3x3 conv (``rbr_reparam``) with the same output. Parameter names follow upstream so that
    official weights load by name.

    Args:
        c1 (int): input channels.
        c2 (int): output channels.
        k (int): kernel size; must be 3.
        s (int): stride.
        p (int, optional): padding; must resolve to 1.
        g (int): groups.
        act (bool | nn.Module): activation; True means a fresh SiLU, a module is used as given, False means none.
    """

    def __init__(self, c1, c2, k=3, s=1, p=None, g=1, act=True):
        super().__init__()
        if k != 3 or p not in (None, 1):
            raise ModelError(f"RepConv supports only k=3 with padding 1, got k={k}, p={p}: use Conv for other kernels")
        self.in_channels, self.out_channels, self.groups = c1, c2, g
        self.act = nn.SiLU() if act is True else act if isinstance(act, nn.Module) else nn.Identity()
        self.rbr_identity = nn.BatchNorm2d(c1) if c1 == c2 and s == 1 else None
        self.rbr_dense = nn.Sequential(nn.Conv2d(c1, c2, 3, s, 1, groups=g, bias=False), nn.BatchNorm2d(c2))
        self.rbr_1x1 = nn.Sequential(nn.Conv2d(c1, c2, 1, s, 0, groups=g, bias=False), nn.BatchNorm2d(c2))

    @property
    def fused(self) -> bool:
        """True once ``fuse_convs()`` has replaced the branches by ``rbr_reparam``."""
        return "rbr_reparam" in self._modules

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Sum of the three branches, activated (or the fused conv, activated, after ``fuse_convs()``)."""
        if self.fused:
            return self.forward_fuse(x)
        y = self.rbr_dense(x) + self.rbr_1x1(x)
        if self.rbr_identity is not None:
            y = y + self.rbr_identity(x)
        return self.act(y)

    def forward_fuse(self, x: torch.Tensor) -> torch.Tensor:
        """Forward through the single fused 3x3 conv."""
        return self.act(self.rbr_reparam(x))

    @staticmethod
    def _fold_bn(kernel: torch.Tensor, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
        """Kernel and bias of ``bn(conv(x))`` as one biased conv."""
        scale = bn.weight / (bn.running_var + bn.eps).sqrt()
        return kernel * scale.reshape(-1, 1, 1, 1), bn.bias - bn.running_mean * scale

    def get_equivalent_kernel_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The 3x3 kernel and bias equal to the three branches in eval mode."""
        k3, b3 = self._fold_bn(self.rbr_dense[0].weight, self.rbr_dense[1])
        k1, b1 = self._fold_bn(self.rbr_1x1[0].weight, self.rbr_1x1[1])
        kernel, bias = k3 + F.pad(k1, [1, 1, 1, 1]), b3 + b1
        if self.rbr_identity is not None:
            cpg = self.in_channels // self.groups  # input channels per group
            eye = torch.zeros_like(k3)
            idx = torch.arange(self.in_channels, device=eye.device)
            eye[idx, idx % cpg, 1, 1] = 1.0
            ki, bi = self._fold_bn(eye, self.rbr_identity)
            kernel, bias = kernel + ki, bias + bi
        return kernel, bias

    @torch.no_grad()
    def fuse_convs(self) -> None:
        """Replace the branches by one biased 3x3 conv with the same eval-mode output; idempotent."""
        if self.fused:
            return
        kernel, bias = self.get_equivalent_kernel_bias()
        conv = self.rbr_dense[0]
        fused = nn.Conv2d(self.in_channels, self.out_channels, 3, conv.stride, 1, groups=self.groups, bias=True)
        fused = fused.to(device=kernel.device, dtype=kernel.dtype).requires_grad_(False)
        fused.weight.copy_(kernel.to(conv.weight.dtype))
        fused.bias.copy_(bias.to(conv.weight.dtype))
        del self.rbr_dense, self.rbr_1x1, self.rbr_identity
        self.rbr_reparam = fused


# ------------------------------------------------------------------------------------------------------ activations


def parse_act(spec, where: str = "act"):
    """Turn a config's activation value into ``True``/``False`` or a fresh ``nn.Module``, without eval.

    Accepts YAML booleans, ``None`` (no activation, as in upstream), and calls of whitelisted ``torch.nn`` activations
    with literal arguments, e.g. ``nn.LeakyReLU(0.1)`` or ``nn.ELU(alpha=0.5)``.

    Args:
        spec (bool | str | None): the value from the config.
        where (str): what to name in an error message (file, layer).

    Returns:
        (bool | nn.Module): ``True`` (the model's default), ``False`` (no activation) or a new module.
    """
    if spec is None:
        return False
    if isinstance(spec, bool):
        return spec
    if isinstance(spec, str):
        text = spec.strip()
        if text in ("True", "False", "None"):
            return {"True": True, "False": False, "None": False}[text]
        hint = f"use e.g. nn.LeakyReLU(0.1) with one of {', '.join(sorted(SAFE_ACTS))}"
        try:
            node = ast.parse(text, mode="eval").body
        except SyntaxError:
            raise ModelError(f"{where}: activation {text!r} is not a call like nn.Name(args): {hint}") from None
        if isinstance(node, (ast.Name, ast.Attribute)):  # allow a bare nn.SiLU
            node = ast.Call(func=node, args=[], keywords=[])
        if not isinstance(node, ast.Call):
            raise ModelError(f"{where}: activation {text!r} is not a call like nn.Name(args): {hint}")
        func = node.func
        if isinstance(func, ast.Attribute) and ast.unparse(func.value) in ("nn", "torch.nn"):
            name = func.attr
        elif isinstance(func, ast.Name):
            name = func.id
        else:
            name = None
        if name not in SAFE_ACTS:
            raise ModelError(
                f"{where}: activation {text!r} is not a torch.nn activation: {hint} (swap in others with act_swap:)"
            )
        try:
            args = [ast.literal_eval(a) for a in node.args]
            kwargs = {k.arg: ast.literal_eval(k.value) for k in node.keywords}
        except ValueError:
            raise ModelError(f"{where}: activation {text!r} must have literal arguments only: {hint}") from None
        if None in kwargs:
            raise ModelError(f"{where}: activation {text!r} must not use **kwargs: {hint}")
        try:
            return getattr(nn, name)(*args, **kwargs)
        except (TypeError, ValueError) as e:
            raise ModelError(f"{where}: activation {text!r} has bad arguments ({e}): fix them") from None
    raise ModelError(f"{where}: activation must be true, false or a string like 'nn.LeakyReLU(0.1)', got {spec!r}")
