"""Apply a swap: one fresh activation per chosen slot, verified, recorded, and rolled back exactly on any failure.

The path a patch takes, one module per step: ``blocks`` finds the activation slots, ``select`` decides what each gets
from the spec's rules, this module swaps them in (checking each new activation on its input shape, matching the
block's BatchNorm settings, device, dtype and mode) and records the spec in ``model.yaml["act_swap"]``, ``verify``
checks the forward, and ``report`` tells what was done. No class-level default such as ``Conv.default_act`` is
touched, and no activation instance is shared between blocks.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from .activations.registry import get_activation_info, is_activation_module
from .blend import BLEND_KEY, Blend
from .blocks import Block, Site, find_blocks, first_bn, layer_type, n_params, unwrap_model
from .checkpoints import restore_activations
from .errors import ActivationArgError, ActSwapError, PatchError, ShapeMismatch
from .report import BlockReport, PatchReport
from .select import as_specs, decide
from .spec import ActSpec, SwapSpec, load_spec
from .verify import (
    Reference,
    act_name,
    act_output_shape,
    fmt_shape,
    model_flops,
    one_thread,
    paused_gc,
    reference_shapes,
    verify_shapes,
)

__all__ = ["PatchReport", "find_blocks", "patch_model", "register_patched_class", "unwrap_model"]

_MISSING = object()
# After a swap, a model whose class is exactly a key here becomes the value (same state, extra behaviour).
# ``nn/tasks.py`` registers ultralytics' DetectionModel -> ActSwapDetectionModel; ``import yolo_act_swap`` imports it.
_PATCHED_CLASS: dict[type, type] = {}


def register_patched_class(base: type, patched: type) -> None:
    """After a swap, turn a model of exactly class ``base`` into ``patched`` (a subclass adding behaviour, no state)."""
    if not issubclass(patched, base):
        raise TypeError(f"{patched.__name__} must subclass {base.__name__}")
    _PATCHED_CLASS[base] = patched


# --- one slot ---------------------------------------------------------------------------------------------------------


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


def stale_record(model: Any) -> bool:
    """True when the model's YAML carries an ``act_swap:`` record but none of the activations this package makes is
    in the model: something rebuilt it without the swap (stock ``YOLO(ckpt).train()``), so the record misdescribes it."""
    root = unwrap_model(model)
    y = getattr(root, "yaml", None)
    if not isinstance(y, dict) or not y.get("act_swap"):
        return False
    return not any(is_activation_module(m) for m in root.modules())


# --- the whole model --------------------------------------------------------------------------------------------------


@dataclass
class _Trace:
    """The unpatched model's shapes (None without a trace), activation input shapes per slot, GFLOPs before."""

    reference: Reference | None = None
    inputs: dict = field(default_factory=dict)
    gflops: float | None = None


def _trace_before(root: nn.Module, sites: list[Site], imgsz, batch: int, verify: bool, flops: bool, need: bool):
    """Trace the unpatched model on meta (when verifying, or when bare slots need their channels) and its GFLOPs."""
    if not need:
        return _Trace(gflops=model_flops(root, imgsz) if flops else None)
    reference, ref_copy, inputs = reference_shapes(root, sites, imgsz, batch)
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
    return _Trace(reference, inputs, model_flops(ref_copy, imgsz) if flops else None)


class _Undo:
    """What a patch changed, put back exactly when the ``with`` block fails: the swapped modules, the YAML record,
    the class and the global torch RNG state (building activations draws from it: FReLU's conv init). Any exception
    (KeyboardInterrupt too) rolls back and propagates."""

    def __init__(self, root: nn.Module):
        self.root, self.cls = root, type(root)
        self.swaps: list[tuple[nn.Module, str, nn.Module]] = []
        self.prev_yaml, self.recorded = _MISSING, False
        y = getattr(root, "yaml", None)
        self.prev_blend = y.get(BLEND_KEY, _MISSING) if isinstance(y, dict) else _MISSING
        self.rng = torch.random.get_rng_state()
        self.cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None

    def swap(self, owner: nn.Module, attr: str, new: nn.Module) -> nn.Module:
        old = owner._modules[attr]
        owner._modules[attr] = new
        self.swaps.append((owner, attr, old))
        return old

    def record(self, specs: list[SwapSpec], blend: bool = False):
        self.prev_yaml, self.recorded = _record_spec(self.root, specs), True
        y = getattr(self.root, "yaml", None)
        if blend and isinstance(y, dict):  # rebuilds from the YAML install the last spec as blends again
            y.setdefault(BLEND_KEY, {})
        patched = _PATCHED_CLASS.get(type(self.root))
        if patched is not None:
            self.root.__class__ = patched

    def __enter__(self) -> _Undo:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            return False
        for owner, attr, old in reversed(self.swaps):
            owner._modules[attr] = old
        y = getattr(self.root, "yaml", None)
        if self.recorded and isinstance(y, dict):
            if self.prev_yaml is _MISSING:
                y.pop("act_swap", None)
            else:
                y["act_swap"] = self.prev_yaml
            y.pop(BLEND_KEY, None)
            if self.prev_blend is not _MISSING:
                y[BLEND_KEY] = self.prev_blend
        self.root.__class__ = self.cls
        torch.random.set_rng_state(self.rng)
        if self.cuda_rng is not None:
            torch.cuda.set_rng_state_all(self.cuda_rng)
        return False


def _swap(root: nn.Module, b: Block, a: ActSpec, ctx: dict, undo: _Undo) -> BlockReport:
    """Swap one slot: a fresh activation for its channels, matched to the block, checked alone on its input shape."""
    ch, x_shape = _channels(b, ctx["inputs"], a)
    try:
        new = a.create(ch)
    except ActivationArgError as e:
        raise ActivationArgError(f"{b.path} ({b.type}, {ch} channels): {e}") from None
    _adopt(new, b, ctx["bn"])
    _check_act_shape(new, a, b, x_shape or (ctx["batch"], ch or 8, 8, 8), ctx["cache"])
    if ctx["blend"]:
        if isinstance(b.act, Blend):
            raise PatchError(f"{b.path} ({b.type}): already holds a blend; call collapse_blends(model) first")
        new = Blend(b.act, new)
    old = undo.swap(b.owner, b.attr, new)
    return BlockReport(
        path=b.path, type=b.type, stage=b.stage, layer=b.layer, channels=ch, old=act_name(old),
        new=f"{a} (blend)" if ctx["blend"] else str(a),
        params_added=n_params(new) - n_params(old), kind=b.kind, layer_type=layer_type(root, b),
    )  # fmt: skip


def _select(root: nn.Module, specs: list[SwapSpec]) -> tuple[list[Block], list]:
    """The model's slots and what each gets (None: unchanged)."""
    blocks = find_blocks(root, bare=any(r.bare for s in specs for r in s.rules))
    if not any(b.kind == "block" for b in blocks) and any(s.act is not None for s in specs):
        raise PatchError(
            f"no activated conv blocks in {type(root).__name__} (a module with a conv and a non-Identity 'act' or "
            f"'nonlinearity'); to swap other activations use a rule with 'bare: true'"
        )
    return blocks, decide(specs, blocks, root)


def patch_model(
    model: Any,
    spec: Any = None,
    imgsz: int | tuple = 640,
    verify: bool = True,
    *,
    act: str | None = None,
    flops: bool | None = None,
    batch: int = 2,
    blend: bool = False,
    weights: Any = None,
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
        blend (bool): install ``Blend(old, new)`` modules at ``a = 0`` instead of the plain swap (the model then
            computes exactly what it did; move ``a`` with ``blend.set_blend``, end with ``blend.collapse_blends``);
            ``model.yaml`` gets the ``act_swap_blend`` key so that rebuilds install the blends again.
        weights (str | Path | dict, optional): the checkpoint ``model`` was loaded from (upstream ``train.py``'s
            ``weights``). If it is a patched checkpoint, each activation it has at the same place (same name, class
            and shapes) gets its trained state back, which upstream's ``strict=False`` load of a plain model drops on
            ``--resume`` and fine-tuning; a plain checkpoint or ``''`` restores nothing.

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
    with _Undo(root) as undo, one_thread(), paused_gc():  # from the start: the RNG state too is put back on any failure
        specs = as_specs(spec, act)
        blocks, decisions = _select(root, specs)
        chosen = [(b, a) for b, a in zip(blocks, decisions) if a is not None]
        flops = verify if flops is None else flops
        sites = [b.site for b, a in zip(blocks, decisions) if b.kind == "block" or a is not None]
        need = verify or any(b.kind == "bare" for b, _ in chosen)
        before = _trace_before(root, sites, imgsz, batch, verify, flops, need)
        report = PatchReport(n_blocks=sum(b.kind == "block" for b in blocks),
                             n_bare=sum(b.kind == "bare" for b in blocks), params_before=n_params(root), imgsz=imgsz,
                             spec=specs)  # fmt: skip
        ctx = {"inputs": before.inputs, "bn": first_bn(root), "batch": batch, "cache": {}, "blend": blend}
        report.blocks = [_swap(root, b, a, ctx, undo) for b, a in chosen]
        undo.record(specs, blend=blend)
        if verify:
            names = {b.path: f"{b.type}, {act_name(b.act)}" for b in blocks}
            report.verification = verify_shapes(
                root, before.reference, imgsz, sites=sites, names=names, batch=batch, flops=flops
            )
        report.restored = restore_activations(root, weights)
    report.params_after, report.model = n_params(root), _model_name(root)
    if flops:
        report.gflops_before = before.gflops
        v = report.verification
        report.gflops_after = v.gflops if v is not None else model_flops(root, imgsz)
    report.seconds = time.perf_counter() - t0
    return report


def _model_name(root: nn.Module) -> str:
    y = getattr(root, "yaml", None)
    f = (y.get("yaml_file") if isinstance(y, dict) else None) or getattr(root, "yaml_file", None)
    return type(root).__name__ + (f" ({Path(str(f)).name})" if isinstance(f, (str, Path)) and f else "")
