"""Shims that let 2022-era upstream YOLOv5/YOLOv7 scripts run on current numpy, Pillow and torch, offline.

Only the upstream subprocesses of tests/test_upstream_train.py see this file (it is on their PYTHONPATH, so Python
imports it at startup); nothing here touches yolo-act-swap. The runner also sets ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``
(upstream's bare ``torch.load`` of its label cache and checkpoints) and points ``YOLOV5_CONFIG_DIR`` at a folder with a
local font (YOLOv5 downloads Arial.ttf otherwise). docs/upstream.md lists the ones a user meets.
"""

import importlib.util
import sys
import types

import numpy as np

if not hasattr(np, "trapz"):  # removed in numpy 2.4; both upstream metrics.py integrate AP with it
    np.trapz = np.trapezoid

try:
    from PIL import ImageFont

    if not hasattr(ImageFont.FreeTypeFont, "getsize"):  # removed in Pillow 10; upstream plots size labels with it

        def _getsize(self, text, *args, **kwargs):
            left, top, right, bottom = self.getbbox(text, *args, **kwargs)
            return right - left, bottom - top

        ImageFont.FreeTypeFont.getsize = _getsize
except ImportError:
    pass


def _stub(modules: dict) -> None:
    """Put stand-in modules ``{dotted name: {attribute: value}}`` into sys.modules (parents made packages)."""
    for name, attrs in modules.items():
        mod = types.ModuleType(name)
        mod.__path__ = []  # a package, so that submodule imports resolve through sys.modules
        mod.__dict__.update(attrs)
        sys.modules[name] = mod


class HFValidationError(ValueError):
    pass


class RepositoryNotFoundError(Exception):
    pass


def _not_a_repo(repo_id, *args, **kwargs):
    raise HFValidationError(f"not a Hub repo id here: {repo_id!r}")


class _Unavailable:
    def __init__(self, *args, **kwargs):
        raise RuntimeError(f"{type(self).__name__} is not installed in the upstream test environment")


# PyPI yolov5 imports two of its wheel's dependencies that the isolated install (--no-deps) lacks, at the top of
# train.py: huggingface_hub (pinned < 0.25; it looks --weights up on the Hub, and a local path or '' is not a valid repo
# id, so the real one raises HFValidationError without any network, as this stand-in does) and roboflow (for
# roboflow.com datasets). Neither is used by these runs.
if importlib.util.find_spec("huggingface_hub") is None:
    _stub({
        "huggingface_hub": {"list_repo_files": _not_a_repo, "hf_hub_download": _not_a_repo},
        "huggingface_hub.utils": {},
        "huggingface_hub.utils._errors": {"RepositoryNotFoundError": RepositoryNotFoundError},
        "huggingface_hub.utils._validators": {"HFValidationError": HFValidationError},
    })  # fmt: skip
if importlib.util.find_spec("roboflow") is None:
    _stub({"roboflow": {"Roboflow": type("Roboflow", (_Unavailable,), {})}, "roboflow.core": {},
           "roboflow.core.version": {"Version": type("Version", (_Unavailable,), {})}})  # fmt: skip


class _NoSummaryWriter:
    """Takes every SummaryWriter call and writes nothing."""

    def __init__(self, *args, **kwargs):
        pass

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


# YOLOv7's train.py imports torch.utils.tensorboard at the top (tensorboard is in its requirements, not here).
if importlib.util.find_spec("tensorboard") is None:
    _stub({"torch.utils.tensorboard": {"SummaryWriter": _NoSummaryWriter}})
