"""The patcher: find activated conv blocks in any model, swap in fresh activations, verify, roll back on failure.

(Stub: the patcher work fills this in.)
"""

from __future__ import annotations


def patch_model(model, spec, imgsz=640, verify=True, **kwargs):
    """Swap activations in ``model`` (an nn.Module or an ultralytics ``YOLO``) in place and return a PatchReport."""
    raise NotImplementedError
