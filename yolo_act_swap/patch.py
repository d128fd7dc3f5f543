"""The patcher: find activated conv blocks in any model, swap in fresh activations, verify, roll back on failure.

An *activated conv block* is a module that holds a conv (``nn.Conv2d``, ``nn.ConvTranspose2d``, ..., possibly nested,
as in ``RepConv``) and a non-Identity activation in its ``act`` attribute (``nonlinearity`` for YOLOv7's
``RepConv_OREPA``). That covers ultralytics ``Conv``/``DWConv``/``ConvTranspose``/``RepConv``/``GhostConv``'s and
``LightConv``'s convs and every conv inside C2f, C3, SPPF and the heads; upstream YOLOv5's ``Conv``/``DWConv`` and
``BottleneckCSP`` (whose own ``act`` follows a BN over 2·c_ channels); upstream YOLOv7's ``Conv``, ``RepConv`` and
``RepConv_OREPA``. Gates (a Sigmoid over an attention map) are not activations to swap. Blocks built with ``act=False``
(Identity) stay as they are. Each swapped block gets its own fresh module for its output channels; no class-level
default such as ``Conv.default_act`` is touched.
"""

from __future__ import annotations

import time
from pathlib import Path
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

import torch.nn as nn

from .activations.registry import get_activation_info, is_activation_module
from .errors import ActivationArgError, ActSwapError, ModelError, PatchError, ShapeMismatch, SpecError
from .spec import ActSpec, Rule, SwapSpec, load_spec
from .verify import (
    Site,
    VerifyReport,
    act_name,
    act_output_shape,
    fmt_shape,
    model_flops,
    reference_shapes,
    verify_shapes,
)

ACT_ATTRS = ("act", "nonlinearity")
_CONTAINERS = ("C2f", "C3", "C3k2", "C2PSA", "SPPF", "SPPCSPC", "Detect", "BottleneckCSP", "ELAN")  # one row each
CONV_TYPES = (nn.modules.conv._ConvNd,)
# Activations whose output is a gate or a distribution, not a feature map: never swapped as a block's activation.
GATE_TYPES = (nn.Sigmoid, nn.Hardsigmoid, nn.Softmax, nn.Softmax2d, nn.LogSoftmax, nn.Softmin, nn.LogSigmoid)
# Plain activation modules that a ``bare: true`` rule may target outside conv blocks.
BARE_TYPES = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.SiLU, nn.GELU, nn.Hardswish, nn.Mish, nn.ELU, nn.CELU,
    nn.SELU, nn.Softplus, nn.Tanh, nn.Hardtanh, nn.Tanhshrink, nn.Softsign,
)  # fmt: skip
_MISSING = object()


# --- finding blocks ---------------------------------------------------------------------------------------------------


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
        """The slot as verify.py sees it."""
        return Site(self.path, self.owner_path, self.attr)

    def static_channels(self) -> int | None:
        """The activation's channel count read from the block: its ``bn`` (BatchNorm) or its last conv's outputs."""
        if self.kind == "bare":
            return None
        bn = self.owner._modules.get("bn")
        if isinstance(bn, nn.modules.batchnorm._BatchNorm):
            return bn.num_features
        convs = [m for m in _block_modules(self.owner, self.attr) if isinstance(m, CONV_TYPES)]
        return convs[-1].out_channels if convs else None

    def own_bn(self) -> nn.Module | None:
        """The block's BatchNorm (``bn``, else its last one), whose eps/momentum new activations copy."""
        if self.kind == "bare":
            return None
        bn = self.owner._modules.get("bn")
        if isinstance(bn, nn.modules.batchnorm._BatchNorm):
            return bn
        bns = [m for m in _block_modules(self.owner, self.attr) if isinstance(m, nn.modules.batchnorm._BatchNorm)]
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
        try:
            from ultralytics.engine.model import Model
        except ImportError:  # pragma: no cover - ultralytics is a dependency
            Model = ()
        if Model and isinstance(model, Model):
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


def _stage_fn(root: nn.Module):
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
    stage = _stage_fn(root)
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


# --- deciding what each block gets ------------------------------------------------------------------------------------


def _matches(rule: Rule, b: Block, layer_set: set | None) -> bool:
    if b.kind == "bare" and not rule.bare:
        return False
    if rule.layers is not None and (b.layer is None or b.layer not in layer_set):
        return False
    if rule.stages is not None and b.stage not in rule.stages:
        return False
    if rule.modules is not None:
        candidates = (b.path, b.act_path, *b.ancestors)
        if not any(fnmatchcase(p, g) for g in rule.modules for p in candidates if p):
            return False
    if rule.types is not None and not any(t == b.type or t in b.enclosing for t in rule.types):
        return False
    return True


def _no_match_hint(rule: Rule, blocks: list[Block]) -> str:
    pool = [b for b in blocks if b.kind == "block" or rule.bare]
    what = "activated conv block or bare activation" if rule.bare else "activated conv block"
    hints = []
    if rule.types is not None:
        types = sorted({b.type for b in pool})
        enclosing = sorted(
            {t for b in pool for t in b.enclosing[1:]} - set(types) - {"Sequential", "ModuleList", "ModuleDict"}
        )
        hints.append(
            f"block types here: {', '.join(types) or 'none'}; enclosing types: {', '.join(enclosing) or 'none'}"
        )
    if rule.modules is not None:
        hints.append(f"block paths look like {', '.join(b.path for b in pool[:3]) or 'nothing'}")
    if rule.layers is not None:
        layers = sorted({b.layer for b in pool if b.layer is not None})
        hints.append(f"layers with blocks: {_ranges(layers) or 'none'}")
    if rule.stages is not None:
        stages = sorted({b.stage for b in pool})
        hints.append(f"stages here: {', '.join(stages) or 'none'} ('model' when the model has no YOLO YAML)")
    sel = ", ".join(
        f"{k} {v if k != 'layers' else rule.to_dict()['layers']}"
        for k, v in (
            ("layers", rule.layers),
            ("stages", list(rule.stages or ())),
            ("modules", list(rule.modules or ())),
            ("types", list(rule.types or ())),
        )  # fmt: skip
        if getattr(rule, k) is not None
    )
    return f"{rule.source}: the rule ({sel}) matches no {what}; {'; '.join(hints)}; add 'optional: true' to allow that"


def _ranges(ints: list[int]) -> str:
    out, start, prev = [], None, None
    for i in ints + [None]:
        if start is None:
            start = prev = i
        elif i is not None and i == prev + 1:
            prev = i
        else:
            out.append(f"{start}" if start == prev else f"{start}-{prev}")
            start = prev = i
    return ", ".join(out)


def decide(specs: list[SwapSpec], blocks: list[Block], root: nn.Module) -> list[ActSpec | None]:
    """The activation each slot gets (None: unchanged) after applying ``specs`` in order; validates every rule."""
    layers = layer_list(root)
    final: list[ActSpec | None] = [None] * len(blocks)
    for spec in specs:
        cur = [spec.act if b.kind == "block" else None for b in blocks]
        for rule in spec.rules:
            layer_set = None
            if rule.layers is not None:
                if layers is None:
                    raise SpecError(
                        f"{rule.source}: 'layers' needs a model with a top-level layer list (model.model), "
                        f"which {type(root).__name__} has not; select with modules or types instead"
                    )
                layer_set = rule.layer_set(layers[1])
            hits = 0
            for i, b in enumerate(blocks):
                if _matches(rule, b, layer_set):
                    cur[i] = rule.act
                    hits += 1
            if not hits and not rule.optional:
                raise SpecError(_no_match_hint(rule, blocks))
        for i, a in enumerate(cur):
            if a is not None and not a.keep:
                final[i] = a
    return final


def as_specs(spec: Any, act: str | None = None) -> list[SwapSpec]:
    """A spec or a chain of specs (a list, as a model YAML's ``act_swap`` may hold) as a list of SwapSpecs."""
    if isinstance(spec, (list, tuple)):
        if not spec:
            raise SpecError("the spec list is empty; give at least one spec")
        specs = [load_spec(s) for s in spec]
        if act is not None:
            specs[-1] = load_spec(specs[-1], act=act)
        return specs
    return [load_spec(spec, act=act)]


# --- the report -------------------------------------------------------------------------------------------------------


@dataclass
class BlockReport:
    """One swapped slot: path, type, stage, layer, channels, old and new activation, parameters added."""

    path: str
    type: str
    stage: str
    layer: int | None
    channels: int | None
    old: str
    new: str
    params_added: int
    kind: str = "block"
    layer_type: str = ""


@dataclass
class PatchReport:
    """What ``patch_model`` did.

    Attributes:
        blocks (list[BlockReport]): the swapped slots, in module order.
        n_blocks (int): activated conv blocks found (swapped or not).
        n_bare (int): bare activations found (only searched for when a rule has ``bare: true``).
        params_before, params_after (int): parameter counts.
        gflops_before, gflops_after (float | None): GFLOPs at ``imgsz`` (ultralytics' thop profile), if computed.
        imgsz (int | tuple): the image size of the checks and the GFLOPs.
        verification (VerifyReport | None): the verification verdict; None with ``verify=False``.
        spec (list[SwapSpec]): the specs applied, in order.
        model (str): the model's class name (and YAML file).
        seconds (float): wall time of the patch (with verification).
    """

    blocks: list = field(default_factory=list)
    n_blocks: int = 0
    n_bare: int = 0
    params_before: int = 0
    params_after: int = 0
    gflops_before: float | None = None
    gflops_after: float | None = None
    imgsz: Any = 640
    verification: VerifyReport | None = None
    spec: list = field(default_factory=list)
    model: str = ""
    seconds: float = 0.0

    @property
    def n_swapped(self) -> int:
        """Slots swapped."""
        return len(self.blocks)

    @property
    def params_added(self) -> int:
        """Parameters added by the swap."""
        return self.params_after - self.params_before

    def by_stage(self) -> dict[str, list[BlockReport]]:
        """Swapped slots grouped by stage, in stage order."""
        out: dict[str, list] = {}
        for b in self.blocks:
            out.setdefault(b.stage, []).append(b)
        order = {"backbone": 0, "neck": 1, "head": 2}
        return dict(sorted(out.items(), key=lambda kv: order.get(kv[0], 3)))

    def table(self, per_block: bool = False) -> str:
        """The report as text: one row per layer (or per block), grouped by stage, then totals and the verdict."""
        if per_block or all(b.layer is None for b in self.blocks):
            head = ("stage", "block", "type", "ch", "activation", "+params")
            rows = [
                (b.stage, b.path, b.type, str(b.channels or "-"), f"{b.old} → {b.new}", f"{b.params_added:,}")
                for blocks in self.by_stage().values()
                for b in blocks
            ]
        else:
            head = ("stage", "layers", "module", "blocks", "channels", "activation", "+params")
            rows = []
            for stage, blocks in self.by_stage().items():
                groups: list[list] = []  # consecutive layers of one module type and one change merge into one row
                for b in blocks:
                    key = (b.layer_type, b.old, b.new)
                    last = groups[-1] if groups else None
                    if last and last[0] == key and (b.layer == last[1][-1].layer or last[0][0] not in _CONTAINERS):
                        last[1].append(b)
                    else:
                        groups.append([key, [b]])
                for key, bs in groups:
                    chs = sorted({b.channels for b in bs if b.channels})
                    ch = "-" if not chs else str(chs[0]) if len(chs) == 1 else f"{chs[0]}-{chs[-1]}"
                    lo, hi = bs[0].layer, bs[-1].layer
                    rows.append((stage, f"{lo}" if lo == hi else f"{lo}-{hi}", key[0], str(len(bs)), ch,
                                 f"{key[1]} → {key[2]}", f"{sum(b.params_added for b in bs):,}"))  # fmt: skip
        lines = _format_table(head, rows, right={1, 3, 4, 6} if len(head) == 7 else {3, 5})
        return "\n".join([*lines, *self.summary_lines()])

    def summary_lines(self) -> list[str]:
        """Totals and verdict lines."""
        stages = ", ".join(f"{k} {len(v)}" for k, v in self.by_stage().items())
        what = f"{self.n_swapped} of {self.n_blocks} activated conv blocks"
        if self.n_bare:
            what = f"{self.n_swapped} of {self.n_blocks} activated conv blocks + {self.n_bare} bare activations"
        lines = [f"swapped {what}" + (f" ({stages})" if stages else "")]
        pct = 100 * self.params_added / self.params_before if self.params_before else 0.0
        p = f"params {self.params_before:,} → {self.params_after:,} ({self.params_added:+,}, {pct:+.2f}%)"
        if self.gflops_before is not None and self.gflops_after is not None:
            sz = self.imgsz if isinstance(self.imgsz, int) else "x".join(map(str, self.imgsz))
            p += f"; GFLOPs {self.gflops_before:.2f} → {self.gflops_after:.2f} at {sz}"
        lines.append(p)
        v = self.verification
        lines.append(f"verification: {v}" if v is not None else "verification: skipped (verify=False)")
        return lines

    def __str__(self) -> str:
        return self.table()

    def to_dict(self) -> dict:
        """Plain data (for JSON logs)."""
        return {
            "model": self.model,
            "spec": [s.to_dict() for s in self.spec],
            "n_blocks": self.n_blocks,
            "n_swapped": self.n_swapped,
            "n_bare": self.n_bare,
            "params_before": self.params_before,
            "params_after": self.params_after,
            "gflops_before": self.gflops_before,
            "gflops_after": self.gflops_after,
            "imgsz": self.imgsz,
            "verified": None if self.verification is None else self.verification.ok,
            "verification": None if self.verification is None else str(self.verification),
            "blocks": [b.__dict__.copy() for b in self.blocks],
            "seconds": round(self.seconds, 3),
        }


def _format_table(head: tuple, rows: list[tuple], right: set) -> list[str]:
    widths = [max(len(str(r[c])) for r in [head, *rows]) for c in range(len(head))]
    out = []
    for r in [head, *rows]:
        cells = [str(v).rjust(w) if c in right else str(v).ljust(w) for c, (v, w) in enumerate(zip(r, widths))]
        out.append("  ".join(cells).rstrip())
    out.insert(1, "-" * max(len(line) for line in out))
    prev = None
    for i in range(2, len(out)):  # print each stage name once
        stage = rows[i - 2][0]
        if stage == prev:
            out[i] = " " * len(stage) + out[i][len(stage) :]
        prev = stage
    return out


# --- patching ---------------------------------------------------------------------------------------------------------


def _n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def _describe_change(a: tuple, b: tuple) -> str:
    if len(a) == len(b) and len(a) > 1 and a[:1] + a[2:] == b[:1] + b[2:]:
        c1, c2 = a[1], b[1]
        verb = "halves" if c2 * 2 == c1 else "doubles" if c2 == 2 * c1 else "changes"
        return f"{verb} the channels ({c1} → {c2})"
    return f"changes the shape ({fmt_shape(a)} → {fmt_shape(b)})"


def _check_act_shape(new: nn.Module, spec: ActSpec, b: Block, x_shape: tuple, cache: dict):
    """Run the new activation alone (on meta); ShapeMismatch if it changes the shape of its input."""
    key = (str(spec), x_shape)
    if key not in cache:
        try:
            cache[key] = act_output_shape(new, x_shape, cache=cache.setdefault("real", {}))[0]
        except Exception as e:  # noqa: BLE001 - it cannot even run alone on its input
            raise PatchError(
                f"{b.path} ({b.type}): {spec} fails on an input of shape {fmt_shape(x_shape)}: {type(e).__name__}: "
                f"{' '.join(str(e).split())[:200]}"
            ) from None
    out = cache[key]
    if out != x_shape:
        raise ShapeMismatch(
            f"{b.path} ({b.type}): {spec.name} {_describe_change(x_shape, out)}, so it cannot replace a {b.type} "
            f"activation (expected {fmt_shape(x_shape)}, got {fmt_shape(out)}); choose a shape-preserving activation "
            f"(yolo-act-swap --list)"
        )


def _channels(b: Block, traced: dict, spec: ActSpec) -> tuple[int | None, tuple | None]:
    """The slot's channel count (traced input shapes win over the static guess) and one traced input shape."""
    shapes = traced.get(b.path) or []
    info = get_activation_info(spec.name)
    if shapes:
        chans = {s[1] for s in shapes if isinstance(s, tuple) and len(s) >= 2}
        if info.channel_aware and any(len(s) != 4 for s in shapes):
            raise PatchError(
                f"{b.path} ({b.type}): {spec.name} is channel-aware and needs NCHW feature maps, but this activation "
                f"sees {fmt_shape(shapes[0])}; use a pointwise activation here"
            )
        if info.channel_aware and len(chans) > 1:
            raise PatchError(
                f"{b.path} ({b.type}): its activation runs on tensors with {sorted(chans)} channels; a channel-aware "
                f"activation cannot serve all of them; use a pointwise one there or a rule with act: keep"
            )
        return (min(chans) if chans else None), shapes[0]
    ch = b.static_channels()
    if ch is None and info.channel_aware:
        raise PatchError(
            f"{b.path} ({b.type}): cannot tell the channel count that {spec.name} needs (the slot never ran in a "
            f"forward pass); use a pointwise activation here"
        )
    return ch, None


def _default_bn(root: nn.Module) -> nn.Module | None:
    return next((m for m in root.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)), None)


def _adopt(new: nn.Module, b: Block, fallback_bn: nn.Module | None):
    """Match the block: BatchNorm eps/momentum, device, dtype, train/eval mode."""
    ref_bn = b.own_bn() or fallback_bn
    if ref_bn is not None:
        for m in new.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eps, m.momentum = ref_bn.eps, ref_bn.momentum
    t = next(iter(b.owner.parameters()), None)
    if t is None:
        t = next(iter(b.owner.buffers()), None)
    if t is not None:
        new.to(device=t.device, dtype=t.dtype if t.is_floating_point() else None)
    new.train(b.owner.training)


def _chain(value: Any) -> list:
    if value is _MISSING or value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _normalized(value: Any) -> Any:
    try:
        return load_spec(value).to_dict()
    except ActSwapError:
        return value


def _record_spec(root: nn.Module, specs: list[SwapSpec]) -> Any:
    """Store the spec chain under ``root.yaml["act_swap"]``; returns the previous value (or _MISSING)."""
    y = getattr(root, "yaml", None)
    if not isinstance(y, dict):
        return _MISSING
    prev = y.get("act_swap", _MISSING)
    new = [s.to_dict() for s in specs]
    chain = [_normalized(v) for v in _chain(prev)]
    if chain[-len(new) :] != new:  # re-applying the spec the model was built with changes nothing
        chain = chain + new
        y["act_swap"] = chain[0] if len(chain) == 1 else chain
    return prev


def patch_model(
    model: Any,
    spec: Any = None,
    imgsz: int | tuple = 640,
    verify: bool = True,
    *,
    act: str | None = None,
    flops: bool | None = None,
    batch: int = 2,
) -> PatchReport:
    """Swap the activations of ``model`` in place, verify the forward, and report; roll back on any failure.

    Args:
        model (nn.Module | YOLO): any module, or an ultralytics ``YOLO``/``Model`` (its ``.model`` is patched).
        spec: a swap spec (see ``load_spec``): a name (``"frelu"``), a YAML path or text, a dict, a SwapSpec, or a
            list of those applied in order.
        imgsz (int | tuple): image size of the shape checks and of the GFLOPs.
        verify (bool): verify shapes (eval/train, two sizes, fused) and a finite real forward.
        act (str, optional): the ``--act`` shorthand; replaces the spec's default activation.
        flops (bool, optional): compute GFLOPs before/after (default: when verifying).
        batch (int): batch size of the checks.

    Returns:
        (PatchReport): per swapped block its path, type, stage, channels, old/new activation and params added; totals;
            the verification verdict. ``print(report)`` shows the table.

    Raises:
        SpecError: the spec is invalid for this model (layer out of range, a rule that matches nothing, ...).
        ShapeMismatch: an activation changes a block's output shape (e.g. glu); the model was rolled back.
        PatchError: any other failure; the model was rolled back (module tree and state_dict bit-identical).

    Examples:
        >>> from ultralytics import YOLO
        >>> model = YOLO("yolov8n.yaml")
        >>> print(patch_model(model, "frelu", imgsz=320))
    """
    t0 = time.perf_counter()
    root = unwrap_model(model)
    specs = as_specs(spec, act)
    bare = any(r.bare for s in specs for r in s.rules)
    blocks = find_blocks(root, bare=bare)
    n_blocks = sum(b.kind == "block" for b in blocks)
    if n_blocks == 0 and any(s.act is not None for s in specs):
        raise PatchError(
            f"no activated conv blocks in {type(root).__name__} (a module with a conv and a non-Identity 'act' or "
            f"'nonlinearity'); to swap other activations use a rule with 'bare: true'"
        )
    decisions = decide(specs, blocks, root)
    chosen = [(b, a) for b, a in zip(blocks, decisions) if a is not None]
    flops = verify if flops is None else flops
    sites = [b.site for b, a in zip(blocks, decisions) if b.kind == "block" or a is not None]
    need_trace = verify or any(b.kind == "bare" for b, _ in chosen)

    reference, traced, gflops_before = None, {}, None
    if need_trace:
        reference, ref_copy, traced = reference_shapes(root, sites, imgsz, batch)
        bad = next((r for r in reference.runs if r.error), None)
        if bad is not None:
            why = (
                "pass verify=False (--no-verify) to skip verification"
                if verify
                else "it is needed to find the channels of bare activations; target conv blocks instead"
            )
            raise PatchError(
                f"cannot trace {type(root).__name__} on the meta device in {bad.label} ({bad.error}"
                f"{', in ' + bad.where if bad.where else ''}); {why}"
            )
        gflops_before = model_flops(ref_copy, imgsz) if flops else None
    elif flops:
        gflops_before = model_flops(root, imgsz)

    params_before = _n_params(root)
    swaps: list[tuple[nn.Module, str, nn.Module]] = []
    prev_yaml, prev_class, recorded = _MISSING, type(root), False
    rows: list[BlockReport] = []
    try:
        fallback_bn = _default_bn(root)
        cache: dict = {}
        layers = layer_list(root)
        for b, a in chosen:
            ch, x_shape = _channels(b, traced, a)
            try:
                new = a.create(ch)
            except ActivationArgError as e:
                raise ActivationArgError(f"{b.path} ({b.type}, {ch} channels): {e}") from None
            _adopt(new, b, fallback_bn)
            _check_act_shape(new, a, b, x_shape or (batch, ch or 8, 8, 8), cache)
            old = b.act
            b.owner._modules[b.attr] = new
            swaps.append((b.owner, b.attr, old))
            layer_type = ""
            if layers is not None and b.layer is not None:
                seq = root if layers[0] == "" else root._modules["model"]
                layer_type = type(seq[b.layer]).__name__
            rows.append(
                BlockReport(
                    path=b.path, type=b.type, stage=b.stage, layer=b.layer, channels=ch, old=act_name(old), new=str(a),
                    params_added=_n_params(new) - _n_params(old), kind=b.kind, layer_type=layer_type,
                )  # fmt: skip
            )
        prev_yaml, recorded = _record_spec(root, specs), True
        _switch_class(root)
        verification = None
        if verify:
            names = {b.path: f"{b.type}, {act_name(b.act)}" for b in blocks}
            verification = verify_shapes(root, reference, imgsz, sites=sites, names=names, batch=batch, flops=flops)
    except BaseException:
        for owner, attr, old in reversed(swaps):
            owner._modules[attr] = old
        y = getattr(root, "yaml", None)
        if recorded and isinstance(y, dict):
            if prev_yaml is _MISSING:
                y.pop("act_swap", None)
            else:
                y["act_swap"] = prev_yaml
        root.__class__ = prev_class
        raise

    report = PatchReport(
        blocks=rows,
        n_blocks=n_blocks,
        n_bare=sum(b.kind == "bare" for b in blocks),
        params_before=params_before,
        params_after=_n_params(root),
        imgsz=imgsz,
        verification=verification,
        spec=specs,
        model=_model_name(root),
    )
    if flops:
        report.gflops_before = gflops_before
        report.gflops_after = verification.gflops if verification is not None else model_flops(root, imgsz)
    report.seconds = time.perf_counter() - t0
    return report


def _model_name(root: nn.Module) -> str:
    y = getattr(root, "yaml", None)
    f = (y.get("yaml_file") if isinstance(y, dict) else None) or getattr(root, "yaml_file", None)
    return type(root).__name__ + (f" ({Path(str(f)).name})" if isinstance(f, (str, Path)) and f else "")


def _switch_class(root: nn.Module):
    """A plain ultralytics ``DetectionModel`` becomes an ``ActSwapDetectionModel`` (same state, extra behaviour)."""
    try:
        from ultralytics.nn.tasks import DetectionModel

        from .nn.tasks import ActSwapDetectionModel
    except ImportError:  # pragma: no cover
        return
    if type(root) is DetectionModel:
        root.__class__ = ActSwapDetectionModel
