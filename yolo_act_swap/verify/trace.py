"""Instrumented meta forwards: a probe in every activation slot and hooks on every block record the shapes of one
forward in call order (``ShapeRun``); the unpatched model's runs are the ``Reference`` that a patched model's runs are
compared with, one difference at a time (``compare_runs``).

What is compared, before vs after, per activated conv block and for each activation (its input and output): eval and
train mode, at ``imgsz`` and at a non-square multiple of the stride; plus the detector's whole nested output
structure (ultralytics returns tensors, tuples, lists and dicts).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn

from ..activations.registry import ACT_TAG
from ..blocks import Site
from ..errors import PatchError, ShapeMismatch
from .meta import META, meta_copy
from .shapeonly import shape_mode
from .shapes import diff, fmt_shape, shape_of

SMALL = 8  # spatial size of the real-tensor stand-in for activations that cannot run on meta
_NO_META: set[type] = set()  # activation classes seen failing on meta in this process (go straight to real tensors)


def act_name(m: nn.Module) -> str:
    """Short name of an activation module: its registry name, or its class with its arguments (no ``inplace``)."""
    tag = getattr(m, ACT_TAG, None)
    if isinstance(tag, str):
        return tag
    if isinstance(m, _Probe):
        return act_name(m.inner)
    args = ", ".join(a.strip() for a in m.extra_repr().split(",") if a.strip() and not a.strip().startswith("inplace"))
    short = args and len(args) <= 30 and "(" not in args
    return f"{type(m).__name__}({args})" if short else type(m).__name__


class _Recorder:
    """Events of one forward: ``("act"|"act_in"|"block", path, shape)`` in call order, the stack of open blocks,
    and notes (activations that had to be checked on real tensors)."""

    def __init__(self):
        self.events: list[tuple[str, str, Any]] = []
        self.stack: list[str] = []
        self.notes: set[str] = set()
        self.cache: dict = {}
        self.active = True

    def add(self, kind: str, path: str, shape: Any):
        if self.active:
            self.events.append((kind, path, shape))


def act_output_shape(
    act: nn.Module,
    x_shape: tuple,
    real: nn.Module | None = None,
    training: bool | None = None,
    cache: dict | None = None,
) -> tuple[tuple, bool]:
    """The output shape of activation ``act`` for an input of ``x_shape``, computed on the meta device.

    Activations without meta support (a custom autograd function that asks for autocast on the tensor's device, say)
    run instead on a copy of their real module ``real`` (``act`` itself when omitted; put in ``training`` mode when
    given) at a small spatial size, and the result is mapped back to ``x_shape``. ``cache`` (a dict) shares those
    real runs between activations of the same class and configuration.

    Returns:
        (tuple[tuple, bool]): the output shape, and whether it was computed on meta.
    """
    if real is None:
        real = act
    p = next(iter(real.parameters()), None)
    if type(act) not in _NO_META or (p is not None and p.device.type == "meta"):
        try:
            on_meta = next(iter(act.parameters()), torch.empty(0, device=META)).device.type == "meta"
            m = act if on_meta else meta_copy(act)
            with torch.no_grad(), shape_mode():
                y = m(torch.empty(x_shape, device=META))
            return tuple(y.shape), True
        except Exception:
            if p is not None and p.device.type == "meta":
                raise
            _NO_META.add(type(act))
    small = tuple(x_shape[:2]) + tuple(min(v, SMALL) for v in x_shape[2:])
    key = (type(real), real.extra_repr(), small, real.training if training is None else training)
    if cache is None or key not in cache:
        r = copy.deepcopy(real)  # a copy: a training-mode forward would update BatchNorm statistics
        if training is not None:
            r.train(training)
        dev = p.device if p is not None else torch.device("cpu")
        with torch.no_grad():
            y = r(torch.zeros(small, device=dev, dtype=p.dtype if p is not None else torch.float32))
        if cache is None:
            cache = {}
        cache[key] = tuple(y.shape)
    out = cache[key]
    if len(out) == len(small) and out[2:] == small[2:]:  # spatial dims kept: map them back to the full size
        out = out[:2] + tuple(x_shape[2:])
    return out, False


class _Probe(nn.Module):
    """Stands in a copy's activation slot: runs the activation and records its input and output shapes."""

    def __init__(self, inner: nn.Module, path: str, rec: _Recorder, real: nn.Module | None = None):
        super().__init__()
        self.inner, self.path, self.rec = inner, path, rec
        self.__dict__["real"] = real  # the real model's activation (not a submodule): fallback for no meta support

    def forward(self, x, *args, **kwargs):
        self.rec.stack.append(self.path + " (activation)")
        try:
            y = self.inner(x, *args, **kwargs)
        except Exception:
            if self.real is None or args or kwargs or not isinstance(x, torch.Tensor):
                raise
            shape = act_output_shape(self.inner, tuple(x.shape), self.real, self.training, self.rec.cache)[0]
            self.rec.notes.add(f"{act_name(self.inner)} has no meta support: checked on real {SMALL}x{SMALL} tensors")
            y = torch.empty(shape, dtype=x.dtype, device=META)
        self.rec.stack.pop()
        self.rec.add("act_in", self.path, shape_of(x))
        self.rec.add("act", self.path, shape_of(y))
        return y


def instrument(model: nn.Module, sites: list[Site], real: nn.Module | None = None) -> _Recorder:
    """Put a probe in every activation slot of ``model`` (a meta copy of ``real``) and hooks on every block.

    Returns:
        (_Recorder): what the next forwards record.
    """
    rec = _Recorder()
    for s in sites:
        owner = s.owner_in(model)
        act = owner._modules[s.attr]
        real_act = s.act_in(real) if real is not None else None
        if not isinstance(act, _Probe):
            owner._modules[s.attr] = _Probe(act, s.path, rec, real_act)
        if s.is_block:  # hook its output
            block = owner

            def pre(m, inp, path=s.path):
                rec.stack.append(path)

            def post(m, inp, out, path=s.path):
                if rec.stack and rec.stack[-1] == path:
                    rec.stack.pop()
                rec.add("block", path, shape_of(out))

            block.register_forward_pre_hook(pre)
            block.register_forward_hook(post)
    return rec


def uninstrument(model: nn.Module):
    """Put the original activations back in place of the probes (hooks stay, their recorder is switched off)."""
    for m in list(model.modules()):
        for name, child in list(m._modules.items()):
            if isinstance(child, _Probe):
                child.rec.active = False
                m._modules[name] = child.inner


@dataclass
class ShapeRun:
    """One instrumented forward: mode, input shape, events, output shape structure, and the error if it raised."""

    mode: str
    size: tuple
    events: list
    output: Any = None
    error: str | None = None
    where: str = ""

    @property
    def label(self) -> str:
        return f"{self.mode} {self.size[0]}x{self.size[1]}"


def run_shapes(model: nn.Module, rec: _Recorder, sizes: list[tuple], modes: tuple, batch: int, ch: int) -> list[ShapeRun]:
    """Forward an instrumented meta copy at every (mode, size); errors are recorded, not raised."""
    runs = []
    was_training = model.training
    p = next(iter(model.parameters()), None)
    dtype = p.dtype if p is not None and p.is_floating_point() else torch.float32
    try:
        for mode in modes:
            model.train(mode == "train")
            for h, w in sizes:
                rec.events, rec.stack = [], []
                run = ShapeRun(mode, (h, w), rec.events)
                try:
                    with torch.no_grad(), shape_mode():
                        run.output = shape_of(model(torch.empty(batch, ch, h, w, device=META, dtype=dtype)))
                except Exception as e:  # noqa: BLE001 - a failing forward is a verification result
                    run.error = " ".join(f"{type(e).__name__}: {e}".split())[:300]
                    run.where = rec.stack[-1] if rec.stack else ""
                runs.append(run)
    finally:
        model.train(was_training)
    return runs


def compare_runs(ref: ShapeRun, new: ShapeRun, names: dict[str, str], prefix: str = "") -> PatchError | None:
    """The first difference between two runs in call order as the error to raise (``ShapeMismatch`` for a shape
    difference, ``PatchError`` for a forward that fails); None when they agree."""
    if ref.error:
        raise PatchError(
            f"verification cannot run the original model in {ref.label} on the meta device ({ref.error}"
            f"{', in ' + ref.where if ref.where else ''}); pass verify=False (--no-verify) to skip it"
        )
    expected: dict[tuple, list] = {}
    for kind, path, shape in ref.events:
        expected.setdefault((kind, path), []).append(shape)
    seen: dict[tuple, int] = {}
    for kind, path, shape in new.events:
        if kind == "act_in":
            continue
        k = seen[(kind, path)] = seen.get((kind, path), -1) + 1
        exp = expected.get((kind, path), [])
        if k < len(exp) and diff(exp[k], shape):
            what = "activation output" if kind == "act" else "block output"
            return ShapeMismatch(
                f"{path} ({names.get(path, '?')}): {what} {fmt_shape(shape)} in {prefix}{new.label}, "
                f"expected {fmt_shape(exp[k])}"
            )
    if new.error:
        return _forward_fails(new, prefix)
    d = diff(ref.output, new.output)
    return ShapeMismatch(f"model {d} in {prefix}{new.label}") if d else None


def _forward_fails(run: ShapeRun, prefix: str) -> PatchError:
    return PatchError(f"the forward fails in {prefix}{run.label}{' in ' + run.where if run.where else ''}: {run.error}")


def _self_check(run: ShapeRun, names: dict, prefix: str) -> PatchError | None:
    """Without a reference: every activation maps its input shape to itself, and the forward runs."""
    ins: dict[str, list] = {}
    for kind, path, shape in run.events:
        if kind == "act_in":
            ins.setdefault(path, []).append(shape)
        elif kind == "act":
            exp = ins[path].pop(0)
            if diff(exp, shape):
                return ShapeMismatch(
                    f"{path} ({names.get(path, '?')}): activation output {fmt_shape(shape)} in {prefix}{run.label}, "
                    f"expected {fmt_shape(exp)} (its input)"
                )
    return _forward_fails(run, prefix) if run.error else None


def check_runs(reference: Reference | None, runs: list[ShapeRun], names: dict, prefix: str = "") -> PatchError | None:
    """Compare runs with the reference's runs of the same mode and size, or check them on their own; the first
    failure as the error to raise, or None."""
    for run in runs:
        if reference is not None:
            ref = next(r for r in reference.runs if r.mode == run.mode and r.size == run.size)
            err = compare_runs(ref, run, names, prefix)
        else:
            err = _self_check(run, names, prefix)
        if err is not None:
            return err
    return None


@dataclass
class Reference:
    """The unpatched model's traced shapes, taken before patching (``patch_model`` builds it)."""

    runs: list  # of ShapeRun
    sizes: list
    modes: tuple
    batch: int
    ch: int
    notes: list = field(default_factory=list)


def stride_of(model: nn.Module) -> int:
    """The largest stride of a detector (``model.stride``), or 32."""
    s = getattr(model, "stride", None)
    try:
        return max(int(torch.as_tensor(s).max()), 1) if s is not None else 32
    except Exception:  # noqa: BLE001 - not a number-like stride
        return 32


def input_channels(model: nn.Module) -> int:
    """Input channels: the YAML's ``ch``, else the first conv's ``in_channels``, else 3."""
    y = getattr(model, "yaml", None)
    if isinstance(y, dict) and isinstance(y.get("ch"), int):
        return y["ch"]
    for m in model.modules():
        if isinstance(m, nn.modules.conv._ConvNd):
            return m.in_channels
    return 3


def check_sizes(imgsz: int | tuple | list, gs: int) -> list[tuple]:
    """``imgsz`` (rounded up to the stride) and a non-square stride multiple about 3/4 of its height."""
    h, w = (imgsz, imgsz) if isinstance(imgsz, int) else (int(imgsz[0]), int(imgsz[1]))
    h, w = (max(gs, math.ceil(v / gs) * gs) for v in (h, w))
    h2 = round(0.75 * h / gs) * gs
    if h2 == w or h2 < gs:
        h2 = h - gs if h - gs >= gs and h - gs != w else h + gs
    return [(h, w), (h2, w)]


def reference_shapes(
    model: nn.Module, sites: list[Site], imgsz=640, batch: int = 2, modes=("eval", "train")
) -> tuple[Reference, nn.Module, dict]:
    """Trace the shapes of an unpatched ``model`` on a meta copy (call before patching).

    Returns:
        (tuple[Reference, nn.Module, dict]): the reference, the instrumented meta copy (probes removed) and the
            activation input shapes per site path (lists, one per call).
    """
    sizes = check_sizes(imgsz, stride_of(model))
    ch = input_channels(model)
    ref = meta_copy(model)
    rec = instrument(ref, sites, model)
    runs = run_shapes(ref, rec, sizes, modes, batch, ch)
    rec.active = False
    inputs: dict[str, list] = {}
    for run in runs:
        for kind, path, shape in run.events:
            if kind == "act_in":
                inputs.setdefault(path, []).append(shape)
    uninstrument(ref)
    return Reference(runs, sizes, tuple(modes), batch, ch, sorted(rec.notes)), ref, inputs
