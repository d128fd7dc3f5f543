"""Find the activation slots of any model: activated conv blocks and (on request) bare activations.

An *activated conv block* is a module that holds a conv (``nn.Conv2d``, ``nn.ConvTranspose2d``, ..., possibly nested,
as in ``RepConv``) and a non-Identity activation in its ``act`` attribute (``nonlinearity`` for YOLOv7's
``RepConv_OREPA``). That covers ultralytics ``Conv``/``DWConv``/``ConvTranspose``/``RepConv``/``GhostConv``'s and
``LightConv``'s convs and every conv inside C2f, C3, SPPF and the heads; upstream YOLOv5's ``Conv``/``DWConv`` and
``BottleneckCSP`` (whose own ``act`` follows a BN over 2·c_ channels); upstream YOLOv7's ``Conv``, ``RepConv`` and
``RepConv_OREPA``. Gates (a Sigmoid over an attention map) are not activations to swap. Blocks built with ``act=False``
(Identity) stay as they are. This module knows nothing of specs: ``select`` maps rules to these blocks.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import torch.nn as nn

from .activations.registry import is_activation_module
from .errors import ModelError, PatchError

ACT_ATTRS = ("act", "nonlinearity")
CONV_TYPES = (nn.modules.conv._ConvNd,)
# Activations whose output is a gate or a distribution, not a feature map: never swapped as a block's activation.
GATE_TYPES = (nn.Sigmoid, nn.Hardsigmoid, nn.Softmax, nn.Softmax2d, nn.LogSoftmax, nn.Softmin, nn.LogSigmoid)
# Plain activation modules that a ``bare: true`` rule may target outside conv blocks.
BARE_TYPES = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.SiLU, nn.GELU, nn.Hardswish, nn.Mish, nn.ELU, nn.CELU,
    nn.SELU, nn.Softplus, nn.Tanh, nn.Hardtanh, nn.Tanhshrink, nn.Softsign,
)  # fmt: skip
_BN = nn.modules.batchnorm._BatchNorm


@dataclass
class Site:
    """Where an activation sits: ``path`` names the block (or the bare activation); ``owner.attr`` holds it."""

    path: str
    owner_path: str
    attr: str

    @property
    def is_block(self) -> bool:
        """The slot is a block's activation (hooked as a block), not a bare activation."""
        return self.path != f"{self.owner_path}.{self.attr}".lstrip(".")

    def owner_in(self, model: nn.Module) -> nn.Module:
        """The module of ``model`` (or of a copy of it) that holds the activation."""
        return model.get_submodule(self.owner_path) if self.owner_path else model

    def act_in(self, model: nn.Module) -> nn.Module:
        """The activation module in this slot of ``model``."""
        return self.owner_in(model)._modules[self.attr]


@dataclass
class Block:
    """One activation slot: an activated conv block (``kind="block"``) or a bare activation (``kind="bare"``).

    Attributes:
        path (str): module path of the block (of the activation itself for bare ones), e.g. ``model.2.m.0.cv1``.
        owner_path (str): path of the module that holds the activation.
        attr (str): attribute of ``owner`` that holds it (``act``, ``nonlinearity``, or a child name for bare ones).
        owner (nn.Module): that module.
        kind (str): ``block`` or ``bare``.
        type (str): class name of the block (of the activation for bare ones).
        enclosing (tuple[str, ...]): class names of the modules that contain it, outermost first.
        ancestors (tuple[str, ...]): their paths.
        layer (int | None): index in the top-level layer list (``model.model``), if the model has one.
        stage (str): ``backbone`` / ``neck`` / ``head`` for YOLO YAML models, else ``model``.
    """

    path: str
    owner_path: str
    attr: str
    owner: nn.Module
    kind: str
    type: str
    enclosing: tuple = ()
    ancestors: tuple = ()
    layer: int | None = None
    stage: str = "model"

    @property
    def act(self) -> nn.Module:
        """The activation module currently in the slot."""
        return self.owner._modules[self.attr]

    @property
    def act_path(self) -> str:
        """Path of the activation module."""
        return f"{self.owner_path}.{self.attr}" if self.owner_path else self.attr

    @property
    def site(self) -> Site:
        """The slot as verification sees it."""
        return Site(self.path, self.owner_path, self.attr)

    def static_channels(self) -> int | None:
        """The activation's channel count read from the block: its ``bn`` (BatchNorm) or its last conv's outputs."""
        if self.kind == "bare":
            return None
        bn = self.owner._modules.get("bn")
        if isinstance(bn, _BN):
            return bn.num_features
        convs = [m for m in _block_modules(self.owner, self.attr) if isinstance(m, CONV_TYPES)]
        return convs[-1].out_channels if convs else None

    def own_bn(self) -> nn.Module | None:
        """The block's BatchNorm (``bn``, else its last one), whose eps/momentum new activations copy."""
        if self.kind == "bare":
            return None
        bn = self.owner._modules.get("bn")
        if isinstance(bn, _BN):
            return bn
        bns = [m for m in _block_modules(self.owner, self.attr) if isinstance(m, _BN)]
        return bns[-1] if bns else None


def _block_modules(owner: nn.Module, act_attr: str):
    """Modules inside ``owner`` except its activation's subtree."""
    for name, child in owner._modules.items():
        if name != act_attr and child is not None:
            yield from child.modules()


def block_act_attr(m: nn.Module) -> str | None:
    """The attribute holding ``m``'s activation if ``m`` is an activated conv block, else None."""
    if is_activation_module(m):
        return None
    for attr in ACT_ATTRS:
        act = m._modules.get(attr)
        if act is None or isinstance(act, (nn.Identity, *GATE_TYPES)):
            continue
        if any(isinstance(c, CONV_TYPES) for c in _block_modules(m, attr)):
            return attr
    return None


def _is_bare_act(m: nn.Module) -> bool:
    return is_activation_module(m) or isinstance(m, BARE_TYPES)


def unwrap_model(model: Any) -> nn.Module:
    """The ``nn.Module`` to patch: ``model`` itself, or the ``.model`` of an ultralytics ``YOLO``/``Model``."""
    if isinstance(model, nn.Module):
        engine = sys.modules.get("ultralytics.engine.model")  # not imported yet: no YOLO object exists
        Model = getattr(engine, "Model", None)
        if Model is not None and isinstance(model, Model):
            inner = model.model
            if not isinstance(inner, nn.Module):
                raise ModelError(
                    f"this YOLO object wraps {type(inner).__name__}, not a PyTorch model; load a .pt or .yaml"
                )
            return inner
        return model
    raise PatchError(f"patch_model needs an nn.Module or an ultralytics YOLO, got {type(model).__name__}")


def layer_list(root: nn.Module) -> tuple[str, int] | None:
    """``(path prefix, number of layers)`` of the top-level layer list (``model.model``), or None."""
    if isinstance(root, (nn.Sequential, nn.ModuleList)):
        return "", len(root)
    inner = getattr(root, "_modules", {}).get("model")
    if isinstance(inner, (nn.Sequential, nn.ModuleList)):
        return "model.", len(inner)
    return None


def stage_fn(root: nn.Module):
    """Map a layer index to backbone/neck/head from a YOLO YAML (``backbone`` length; the last layer is the head)."""
    layers = layer_list(root)
    y = getattr(root, "yaml", None)
    n_backbone = len(y["backbone"]) if isinstance(y, dict) and isinstance(y.get("backbone"), list) else None
    if layers is None or n_backbone is None:
        return lambda i: "model"
    n = layers[1]
    return lambda i: "model" if i is None else "head" if i == n - 1 else "backbone" if i < n_backbone else "neck"


def find_blocks(model: Any, bare: bool = False) -> list[Block]:
    """Every activated conv block of ``model`` in module order (and, with ``bare``, every activation outside them).

    Args:
        model (nn.Module | YOLO): the model.
        bare (bool): also list plain activation modules that are not a conv block's activation.

    Returns:
        (list[Block]): the slots; those of kind ``block`` are what a default spec swaps.
    """
    root = unwrap_model(model)
    layers = layer_list(root)
    stage = stage_fn(root)
    out: list[Block] = []
    seen: set[tuple] = set()

    def layer_of(path: str) -> int | None:
        if layers is None or not path.startswith(layers[0]):
            return None
        head = path[len(layers[0]) :].split(".", 1)[0]
        return int(head) if head.isdigit() else None

    def visit(m: nn.Module, path: str, types: tuple, paths: tuple):
        if is_activation_module(m):
            return
        attr = block_act_attr(m)
        if attr and (id(m), attr) not in seen:
            seen.add((id(m), attr))
            li = layer_of(path)
            out.append(Block(path, path, attr, m, "block", type(m).__name__, types, paths, li, stage(li)))
        inner_types, inner_paths = (*types, type(m).__name__), (*paths, path) if path else paths
        for name, child in m._modules.items():
            if child is None or name == attr:
                continue
            cpath = f"{path}.{name}" if path else name
            if bare and _is_bare_act(child) and block_act_attr(child) is None:
                if (id(m), name) not in seen:
                    seen.add((id(m), name))
                    li = layer_of(cpath)
                    out.append(
                        Block(
                            cpath, path, name, m, "bare", type(child).__name__, inner_types, inner_paths, li, stage(li)
                        )
                    )
                continue
            visit(child, cpath, inner_types, inner_paths)

    visit(root, "", (), ())
    return out


def layer_type(root: nn.Module, b: Block) -> str:
    """Class name of the top-level layer that holds block ``b`` (``""`` when the model has no layer list)."""
    layers = layer_list(root)
    if layers is None or b.layer is None:
        return ""
    seq = root if layers[0] == "" else root._modules["model"]
    return type(seq[b.layer]).__name__


def first_bn(root: nn.Module) -> nn.Module | None:
    """The model's first BatchNorm (whose eps/momentum a block without its own BatchNorm follows)."""
    return next((m for m in root.modules() if isinstance(m, _BN)), None)


def n_params(m: nn.Module) -> int:
    """Number of parameters of ``m``."""
    return sum(p.numel() for p in m.parameters())
