"""Put activation parameters in the optimizer correctly, for any training loop.

Upstream YOLOv5 groups parameters by name and puts ACON's p1/p2/beta in the weight-decay group; upstream YOLOv7
enumerates known attributes and never includes them at all; ultralytics decays them, and under MuSGD sends every 4-D
one to Muon. The rule here: inside an activation module, the ``weight`` of a conv or linear layer (FReLU's depthwise
conv, the coefficient nets of MetaAconC and DY-ReLU) is an ordinary weight and is decayed; everything else (ACON's
p1/p2/beta, PReLU slopes, biases, BatchNorm affine) is a shape parameter and is not decayed.
"""

from __future__ import annotations

import torch.nn as nn

from .activations.registry import is_activation_module

_WEIGHT_LAYERS = (nn.modules.conv._ConvNd, nn.Linear)


def activation_modules(model: nn.Module) -> list[nn.Module]:
    """The outermost activation modules that the patcher (``create_activation``) put into ``model``."""
    found, inside = [], set()
    for m in model.modules():
        if id(m) in inside:
            continue
        if is_activation_module(m):
            found.append(m)
            inside.update(id(s) for s in m.modules())
    return found


def split_activation_parameters(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """Activation parameters as ``(decay, no_decay)``: conv/linear weights vs shape parameters."""
    decay, no_decay, seen = [], [], set()
    for act in activation_modules(model):
        for m in act.modules():
            for name, p in m.named_parameters(recurse=False):
                if id(p) in seen:
                    continue
                seen.add(id(p))
                (decay if isinstance(m, _WEIGHT_LAYERS) and name == "weight" else no_decay).append(p)
    return decay, no_decay


def activation_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Every parameter that lives in a swapped-in activation module, each once."""
    decay, no_decay = split_activation_parameters(model)
    return decay + no_decay


def add_activation_param_groups(optimizer, model: nn.Module, weight_decay: float = 0.0, **group_options) -> list[dict]:
    """Move the activation parameters of ``model`` into groups of their own in ``optimizer``.

    Removes them from whatever group the training script put them in (YOLOv5 puts them in its decay group, YOLOv7 in
    none), then adds one group of shape parameters with no weight decay and one group of conv/linear weights with
    ``weight_decay``. After this every parameter is in exactly one group.

    Args:
        optimizer (torch.optim.Optimizer): an optimizer already built over the rest of the model.
        model (nn.Module): the patched model.
        weight_decay (float): decay for the conv/linear weights inside activations (use the script's own value).
        **group_options: extra keys for the new groups (e.g. ``lr``, or ultralytics' ``param_group``).

    Returns:
        (list[dict]): the groups added (empty ones are not added).

    Examples:
        >>> optimizer = smart_optimizer(model, opt.optimizer, hyp["lr0"], hyp["momentum"], hyp["weight_decay"])
        >>> add_activation_param_groups(optimizer, model, weight_decay=hyp["weight_decay"])
    """
    decay, no_decay = split_activation_parameters(model)
    ids = {id(p) for p in decay + no_decay}
    for group in optimizer.param_groups:
        group["params"] = [p for p in group["params"] if id(p) not in ids]
    added = []
    for params, wd in ((no_decay, 0.0), (decay, weight_decay)):
        if params:
            group = {"params": params, "weight_decay": wd, **group_options}
            optimizer.add_param_group(group)
            added.append(optimizer.param_groups[-1])
    return added
