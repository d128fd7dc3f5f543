"""Put activation parameters in the optimizer correctly, for any training loop (the one optimizer regrouping).

Upstream YOLOv5 groups parameters by name and puts ACON's p1/p2/beta in the weight-decay group; upstream YOLOv7
enumerates known attributes and never includes them at all; ultralytics decays them, and under MuSGD sends every 4-D
one to Muon. The rule here: inside an activation module, the ``weight`` of a conv or linear layer (FReLU's depthwise
conv, the coefficient nets of MetaAconC and DY-ReLU) is an ordinary weight and is decayed; everything else (ACON's
p1/p2/beta, PReLU slopes, biases, BatchNorm affine) is a shape parameter and is not decayed.

``add_activation_param_groups`` is the one implementation: upstream scripts call it directly (docs/upstream.md), and
the parameters join the script's own groups, whose number upstream code relies on; ``ActSwapTrainer.build_optimizer``
calls it on ultralytics' optimizer with ``groups="own"``, which adds groups of their own.
"""

from __future__ import annotations

import torch.nn as nn

from ..activations.registry import is_activation_module

_WEIGHT_LAYERS = (nn.modules.conv._ConvNd, nn.Linear)
_NORM_LAYERS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm)
ACT_GROUP_KEY = "act_swap"  # every added group carries it: "weight" (decayed) or "shape" (not decayed)
GROUPS = ("existing", "own")  # add_activation_param_groups(groups=...): join the script's groups, or add new ones


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


def _take_out(optimizer, kind: dict) -> tuple[dict, set]:
    """Remove the parameters in ``kind`` (id -> "shape"/"weight") from their groups.

    Returns ``{(kind, lr): (options of the group they came from, params)}`` and the ids that were in some group.
    """
    buckets: dict = {}
    placed = set()
    for group in optimizer.param_groups:
        keep = []
        for p in group["params"]:
            k = kind.get(id(p))
            if k is None:
                keep.append(p)
                continue
            placed.add(id(p))
            options = {key: v for key, v in group.items() if key != "params"}
            buckets.setdefault((k, group["lr"]), (options, []))[1].append(p)
        group["params"] = keep
    return buckets, placed


def _host_groups(optimizer, model: nn.Module, kind: dict, weight_decay: float) -> dict:
    """The optimizer's own groups that activation parameters can join: ``{"shape": the undecayed group that holds the
    model's norm weights, "weight": the group with ``weight_decay`` that holds its conv/linear weights}`` (a kind is
    missing when the script has no such group)."""
    members = {"shape": set(), "weight": set()}
    for m in model.modules():
        w = getattr(m, "weight", None)
        if not isinstance(w, nn.Parameter) or id(w) in kind:
            continue
        if isinstance(m, _NORM_LAYERS):
            members["shape"].add(id(w))
        elif isinstance(m, _WEIGHT_LAYERS):
            members["weight"].add(id(w))
    hosts = {}
    for k, ids in members.items():
        counts = [(sum(id(p) in ids for p in g["params"]), i) for i, g in enumerate(optimizer.param_groups)]
        n, i = max(counts, default=(0, -1))
        decay = weight_decay if k == "weight" else 0.0
        if n and float(optimizer.param_groups[i].get("weight_decay", 0.0)) == float(decay):
            hosts[k] = optimizer.param_groups[i]
    return hosts


def add_activation_param_groups(
    optimizer, model: nn.Module, weight_decay: float = 0.0, *, groups: str = "existing", **group_options
) -> list[dict]:
    """Put the activation parameters of ``model`` where they belong in ``optimizer``, each in exactly one group.

    Removes them from whatever group the training script put them in (YOLOv5 puts them in its decay group, YOLOv7 in
    none, ultralytics in its decay or Muon groups). Shape parameters (ACON's p1/p2/beta, PReLU slopes, biases,
    BatchNorm affine) get no weight decay; conv/linear weights inside activations get ``weight_decay``.

    With ``groups="existing"`` (the default, for upstream train.py scripts) they join the script's own groups, so the
    number of groups does not change (YOLOv5's results CSV has one lr column per group): shape parameters the
    undecayed group of the model's norm weights (never the bias group, which the warmup treats apart), conv/linear
    weights the group of the model's conv weights, when its decay is ``weight_decay``. A kind with no such group
    gets a group of its own, as with ``groups="own"``: new groups, appended after the script's, each copying the
    options (lr, betas, momentum ...) of the group its parameters came from, one per kind and learning rate, with
    ``use_muon`` off and tagged ``act_swap: "shape"`` or ``"weight"`` (ultralytics' trainer uses these).

    Args:
        optimizer (torch.optim.Optimizer): an optimizer already built over the rest of the model.
        model (nn.Module): the patched model.
        weight_decay (float): decay for the conv/linear weights inside activations (use the script's own value).
        groups (str): ``"existing"`` or ``"own"``.
        **group_options: extra keys for new groups (e.g. ``lr``).

    Returns:
        (list[dict]): the groups added (none when every kind joined an existing group).

    Examples:
        >>> optimizer = smart_optimizer(model, opt.optimizer, hyp["lr0"], hyp["momentum"], hyp["weight_decay"])
        >>> add_activation_param_groups(optimizer, model, weight_decay=hyp["weight_decay"])
    """
    if groups not in GROUPS:
        raise ValueError(f"groups={groups!r}: use one of {', '.join(GROUPS)}")
    decay, no_decay = split_activation_parameters(model)
    kind = {id(p): "shape" for p in no_decay} | {id(p): "weight" for p in decay}
    if not kind:
        return []
    hosts = _host_groups(optimizer, model, kind, weight_decay) if groups == "existing" else {}
    buckets, placed = _take_out(optimizer, kind)
    for p in no_decay + decay:
        if kind[id(p)] in hosts:
            hosts[kind[id(p)]]["params"].append(p)
    default_lr = optimizer.defaults.get("lr")
    for p in no_decay + decay:  # in no group yet: the optimizer's defaults
        if id(p) not in placed and kind[id(p)] not in hosts:
            buckets.setdefault((kind[id(p)], default_lr), ({}, []))[1].append(p)
    added = []
    for (k, _), (options, params) in sorted(buckets.items(), key=lambda kv: kv[0][0] == "weight"):
        if k in hosts:
            continue
        group = {**options, **group_options, "params": params, ACT_GROUP_KEY: k}
        group["weight_decay"] = weight_decay if k == "weight" else 0.0
        if "use_muon" in group:
            group["use_muon"] = False
        optimizer.add_param_group(group)
        added.append(optimizer.param_groups[-1])
    return added
