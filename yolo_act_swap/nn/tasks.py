"""Detection-model classes that the ultralytics engine builds, trains, validates and exports unchanged.

``ActSwapDetectionModel`` is an ultralytics ``DetectionModel`` that (1) re-applies the ``act_swap:`` spec of its YAML
every time it is built, so rebuilds by the trainer, resumes and DDP workers reproduce the patched model, and (2) folds
foldable activations (FReLU's BatchNorm, ACON-C's scale into its conv) when ``fuse()`` is called, as
ultralytics predict and export do.

Importing this module registers it with the patcher (``patch.register_patched_class``): ``patch_model`` turns a plain
``DetectionModel`` into an ``ActSwapDetectionModel``. ``import yolo_act_swap`` imports it.
"""

from __future__ import annotations

from ultralytics.nn.tasks import DetectionModel, yaml_model_load
from ultralytics.utils import LOGGER

try:
    from ultralytics.utils.torch_utils import is_qat
except ImportError:  # ultralytics releases without QAT support

    def is_qat(model) -> bool:
        """No QAT in this ultralytics release."""
        return False

from ..activations.registry import fuse_activations
from ..blend import BLEND_KEY
from ..patch import patch_model, register_patched_class
from .fold import fold_acon_into_convs


class ActSwapDetectionModel(DetectionModel):
    """Ultralytics ``DetectionModel`` that honours a YAML ``act_swap:`` key and fuses activations in ``fuse()``.

    Args:
        cfg (str | dict): model YAML path or dict (may carry ``act_swap:``).
        ch (int): input channels.
        nc (int, optional): number of classes (overrides the YAML).
        verbose (bool): print model info.
    """

    def __init__(self, cfg="yolov8n.yaml", ch=3, nc=None, verbose=True):
        # with a swap to apply, the summary is printed after it (the unpatched one would misstate the parameters)
        super().__init__(cfg, ch=ch, nc=nc, verbose=verbose and not self._spec_of(cfg))
        self.apply_act_swap(verbose=verbose)

    @staticmethod
    def _spec_of(cfg):
        """The ``act_swap:`` entry of a model dict or YAML file (None when it has none or cannot be read here)."""
        if not isinstance(cfg, dict):
            try:
                cfg = yaml_model_load(cfg)
            except Exception:  # noqa: BLE001 - ultralytics' own build reports a bad config properly
                return None
        return cfg.get("act_swap")

    def apply_act_swap(self, verbose=False):
        """Apply ``self.yaml['act_swap']`` (if any) to this freshly built model; returns the PatchReport or None.

        With ``act_swap_blend`` in the YAML (a blended transition in progress) the last spec of the chain is installed
        as blends (``patch_model(..., blend=True)``) over the activations the earlier specs give. With ``verbose``,
        logs the swap (blocks, activation, parameters) and the patched model's summary, so that a training log
        confirms which activation it trains.
        """
        spec = self.yaml.get("act_swap") if isinstance(self.yaml, dict) else None
        if not spec:
            return None
        report = self._apply_blended(spec) if BLEND_KEY in self.yaml else patch_model(self, spec, verify=False)
        if verbose:
            log_swap(self, report)
        return report

    def _apply_blended(self, spec):
        chain = list(spec) if isinstance(spec, (list, tuple)) else [spec]
        marker = self.yaml.pop(BLEND_KEY)
        try:
            self.yaml.pop("act_swap")
            if chain[:-1]:
                patch_model(self, chain[:-1], verify=False)
            return patch_model(self, chain[-1], verify=False, blend=True)
        finally:  # the record stays exactly as it was
            self.yaml["act_swap"], self.yaml[BLEND_KEY] = spec, marker

    def fuse(self, verbose=True, imgsz=640):
        """Fold the BatchNorms inside activations, fuse conv+BN as ultralytics does, then fold each ACON-C's
        per-channel scale into the conv before it (``nn/fold.py``: the graph ONNX Runtime runs fastest)."""
        fuse_activations(self)
        model = super().fuse(verbose=verbose, imgsz=imgsz)
        if not is_qat(self):  # like ultralytics' own fuse: a QAT model's convs stay as trained
            fold_acon_into_convs(self)
        return model


def log_swap(model, report) -> None:
    """Log a patched model's swap report and its ultralytics summary line (layers, parameters, GFLOPs)."""
    LOGGER.info(f"act_swap: {' + '.join(map(str, report.spec))}: " + "; ".join(report.summary_lines()[:2]))
    model.info()
    LOGGER.info("")


# a plain DetectionModel becomes an ActSwapDetectionModel when patched (same state, the behaviour above)
register_patched_class(DetectionModel, ActSwapDetectionModel)
