"""Forward-shape verification of patched models.

Shapes are checked on copies of the model whose parameters live on the ``meta`` device (``meta.py``): a meta forward
computes every shape at full resolution without doing any arithmetic, and the copies share no state with the real
model. Inside those forwards ``ShapeOnly`` (``shapeonly.py``) computes the shapes of the common ops directly, which
spares torch's Python meta kernels and their first-use imports of ``torch._dynamo`` and sympy. Activations that cannot
run on meta at all are checked on a small real tensor instead. ``trace.py`` records and compares the shapes per block
and activation; ``checks.py`` runs one small real forward (finite outputs), the fused model, and the GFLOPs.

The package knows nothing of why a block was swapped: it takes the activation slots (``blocks.Site``) it is given, or
finds them with ``blocks.find_blocks``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch.nn as nn

from ..activations.pool import one_thread
from ..blocks import Site, find_blocks, unwrap_model
from ..errors import PatchError
from .checks import check_finite, fuse_copy, model_flops
from .meta import META, meta_copy, paused_gc, preserved_state
from .shapeonly import ShapeOnly, set_shape_mode, shape_mode
from .shapes import fmt_shape, shape_of
from .trace import (
    Reference,
    ShapeRun,
    act_name,
    act_output_shape,
    check_runs,
    check_sizes,
    input_channels,
    instrument,
    reference_shapes,
    run_shapes,
    stride_of,
)

__all__ = [
    "META", "Reference", "ShapeOnly", "ShapeRun", "Site", "VerifyReport", "act_name", "act_output_shape",
    "check_finite", "check_sizes", "fmt_shape", "fuse_copy", "meta_copy", "model_flops", "one_thread", "paused_gc",
    "preserved_state",
    "reference_shapes", "set_shape_mode", "shape_mode", "shape_of", "verify_shapes",
]  # fmt: skip


@dataclass
class VerifyReport:
    """What was verified and the verdict.

    Attributes:
        ok (bool): every check passed.
        checks (list[str]): the checks that ran.
        failure (str | None): the first failure, one line.
        notes (list[str]): checks skipped and why.
        seconds (float): wall time of the verification.
    """

    ok: bool = True
    checks: list = field(default_factory=list)
    failure: str | None = None
    notes: list = field(default_factory=list)
    seconds: float = 0.0
    gflops: float | None = None

    def __str__(self) -> str:
        if not self.ok:
            return f"FAILED: {self.failure}"
        s = "passed: " + "; ".join(self.checks)
        return s + (f" (note: {'; '.join(self.notes)})" if self.notes else "") + f" [{self.seconds:.2f}s]"


def verify_shapes(
    model: nn.Module,
    reference: nn.Module | Reference | None = None,
    imgsz: int | tuple = 640,
    *,
    sites: list[Site] | None = None,
    names: dict[str, str] | None = None,
    batch: int = 2,
    fused: bool = True,
    finite: bool = True,
    finite_imgsz: int = 32,
    flops: bool = False,
    strict: bool = True,
) -> VerifyReport:
    """Check a (patched) model's forward shapes against a reference, and that a small real forward stays finite.

    Args:
        model (nn.Module): the model to check (an ultralytics ``YOLO`` is unwrapped).
        reference (nn.Module | Reference, optional): the same model before patching (a module, or the ``Reference``
            that ``patch_model`` traced). Without one, every activation must map its input shape to itself and every
            forward must run.
        imgsz (int | tuple): image size for the shape checks (the second size is a non-square stride multiple).
        sites (list[Site], optional): activation slots to probe; found with ``find_blocks`` when omitted.
        names (dict, optional): path -> "Type, act" labels for messages.
        batch (int): batch size of the shape checks and of the real train-mode forward (BatchNorm inside some
            activations needs more than one value per channel).
        fused (bool): also check the fused model (eval mode).
        finite (bool): run the small real forwards (eval at batch 1, train at ``batch`` and at batch 1).
        finite_imgsz (int): its image size (rounded up to the stride).
        flops (bool): also measure GFLOPs at ``imgsz`` (``report.gflops``), on the same meta copy.
        strict (bool): raise ``ShapeMismatch`` / ``PatchError`` on failure instead of returning a failed report.

    Returns:
        (VerifyReport): checks run and verdict.

    Raises:
        ShapeMismatch: a block or activation output differs from the reference (message: path, activation,
            expected vs actual shape, mode and size).
        PatchError: a forward fails or produces non-finite values.
    """
    t0 = time.perf_counter()
    model = unwrap_model(model)
    if sites is None:
        sites = [b.site for b in find_blocks(model)]
    if names is None:
        names = {s.path: f"{type(s.owner_in(model)).__name__}, {act_name(s.act_in(model))}" for s in sites}
    if isinstance(reference, nn.Module):
        reference = reference_shapes(unwrap_model(reference), sites, imgsz, batch)[0]
    report = VerifyReport()
    try:
        with one_thread(), paused_gc():
            error = _run_checks(model, reference, imgsz, sites, names, batch, report, fused=fused, flops=flops,
                                finite=finite, finite_imgsz=finite_imgsz)  # fmt: skip
    finally:
        report.seconds = time.perf_counter() - t0
    if error is not None:
        report.ok, report.failure = False, str(error)
        if strict:
            raise error
    return report


def _run_checks(model, reference, imgsz, sites, names, batch, report, *, fused, flops, finite, finite_imgsz):
    """The checks of ``verify_shapes`` in order, stopping at the first failure (returned as the error to raise);
    appends what ran to ``report.checks`` and the notes of the trace to ``report.notes``."""
    sizes = reference.sizes if isinstance(reference, Reference) else check_sizes(imgsz, stride_of(model))
    ch = reference.ch if isinstance(reference, Reference) else input_channels(model)
    sz = " and ".join(f"{h}x{w}" for h, w in sizes)
    new = meta_copy(model)
    rec = instrument(new, sites, model)
    try:
        error = check_runs(reference, run_shapes(new, rec, sizes, ("eval", "train"), batch, ch), names)
        report.checks.append(f"{len(sites)} blocks, eval+train at {sz}")
        if flops:
            rec.active = False
            report.gflops = model_flops(new, imgsz)
            rec.active = True
        if error is None and fused:
            try:
                how = fuse_copy(new)  # in place: the copy is not needed unfused any more
            except Exception as e:  # noqa: BLE001 - the model's own fuse() failing is a finding, reported as one
                return PatchError(f"fusing the patched model fails: {type(e).__name__}: {' '.join(str(e).split())[:200]}")
            error = check_runs(reference, run_shapes(new, rec, sizes, ("eval",), batch, ch), names, "fused ")
            report.checks.append(f"{how}, eval at {sz}")
        if error is None and finite:
            gs = stride_of(model)
            small = (max(gs, math.ceil(finite_imgsz / gs) * gs),) * 2
            failure = check_finite(model, sites, small, batch, ch, gs=gs, names=names)
            error = PatchError(failure) if failure else None
            report.checks.append(f"finite real forward eval+train at {small[0]}x{small[1]}, train at batch 1")
        return error
    finally:
        report.notes = sorted(set(getattr(reference, "notes", [])) | rec.notes)
