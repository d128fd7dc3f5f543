"""``ActSwapTrainer``: ultralytics' ``DetectionTrainer`` for patched models, extended through public hooks only.

Attributes added to ultralytics' trainer:
    data_info (DataInfo): the checked ``--data`` (rank 0).
    resume_ckpt (dict | None): the checkpoint a resumed run started from.

Hooks overridden (all public ultralytics methods): ``get_dataset`` (one-line ``DataError``s), ``get_model`` (build
from a model dict whose ``act_swap:`` key is re-applied at every build: fresh runs, ``Model.train()`` rebuilds,
``--resume`` and DDP workers alike), ``setup_model`` (``pretrained=`` through ``models.load_model``; the run folder's
model YAML; AMP deferral; channels_last on CPU), ``build_optimizer`` (activation parameters in groups of their own,
``engine.optim``), ``preprocess_batch`` (images in the model's memory layout, ``engine.layout``), ``train`` (DDP
workers get the model dict), ``get_validator`` (``ActSwapValidator``), ``final_eval`` (writes
``act_swap_result.json``). Callbacks: ``engine.callbacks.CALLBACKS`` (AMP decision, channels_last restore, epoch
timing, and ``engine.transition``: the blended transition's ramp and collapse, BN recalibration).

Examples:
    >>> trainer = ActSwapTrainer(overrides={"model": "runs/train/exp/yolov8n.yaml", "data": "demo", "epochs": 3})
    >>> trainer.train()
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import torch
import yaml
from ultralytics.models.yolo.detect import DetectionTrainer
from ultralytics.utils import DEFAULT_CFG, LOGGER, RANK, colorstr
from ultralytics.utils.torch_utils import unwrap_model

from ..blend import load_old_activations
from ..data.resolve import resolve_data
from ..io import atomic_write_text
from ..models import build_detection_model, load_model, load_model_cfg
from .amp import defer_amp_check
from .callbacks import add_callbacks
from .layout import batch_to_layout, defer_cpu_channels_last, is_channels_last
from .optim import ACT_GROUP_KEY, add_activation_param_groups
from .result import write_result
from .validator import ActSwapValidator


class ActSwapTrainer(DetectionTrainer):
    """Ultralytics ``DetectionTrainer`` for patched models.

    Pass ``model=`` a model YAML (path or dict) whose ``act_swap:`` key holds the swap spec, or a checkpoint to resume;
    ``pretrained=`` a checkpoint to start from. Everything else is ultralytics' train args; ``channels_last=True``
    trains in NHWC on CPU too, where ultralytics alone ignores it (``engine.layout``).
    """

    def __init__(self, cfg=None, overrides=None, _callbacks=None):
        overrides = dict(overrides or {})
        if isinstance(overrides.get("model"), dict):  # a model dict: keep it, give the args a printable name
            model_dict = overrides.pop("model")
            overrides["model"] = str(model_dict.get("yaml_file") or "act_swap.yaml")
        else:
            model_dict = None
        super().__init__(cfg or DEFAULT_CFG, overrides, _callbacks)
        if model_dict is not None:
            self.model = model_dict
        self.resume_ckpt = None
        add_callbacks(self)

    # --- data
    def get_dataset(self):
        """Check ``data`` (demo, YAML, COCO JSON) with one-line ``DataError``s, then let ultralytics load it."""
        if RANK in {-1, 0}:
            self.data_info = resolve_data(self.args.data)
            self.args.data = str(self.data_info.yaml)
        return super().get_dataset()

    # --- model
    def get_model(self, cfg=None, weights=None, verbose=True):
        """Build the model from ``cfg`` (its ``act_swap:`` applied at build time) and load ``weights`` into it (the
        trained activations of ``weights`` go into the ``old`` side of blends, ``blend.load_old_activations``)."""
        model = build_detection_model(load_model_cfg(cfg), nc=self.data["nc"], ch=self.data.get("channels", 3),
                                      verbose=verbose and RANK == -1)
        model = self.set_model_names_for_load(model)
        if weights:
            model.load(weights)
            if isinstance(weights, torch.nn.Module):
                load_old_activations(model, weights)
        return model

    def setup_model(self):
        """Ultralytics' first setup step: keep the model YAML in the run folder, defer the AMP check (``engine.amp``),
        load ``pretrained=`` with ``models.load_model``, keep the checkpoint of a resume, and move the model to
        channels_last on CPU when ``channels_last=True`` (``engine.layout``; ultralytics does it on CUDA)."""
        self._write_model_yaml()
        defer_amp_check(self)
        nhwc = defer_cpu_channels_last(self)
        ckpt = self._load_model()
        if nhwc and isinstance(self.model, torch.nn.Module):
            self.model = self.model.to(memory_format=torch.channels_last)  # before the EMA copy is made
        return ckpt

    def _load_model(self):
        """The model from ``pretrained=`` (``models.load_model``), or ultralytics' setup (fresh run or resume)."""
        if isinstance(self.model, torch.nn.Module):
            return None
        pretrained = self.args.pretrained
        if isinstance(pretrained, (str, Path)) and not self.resume and not str(self.model).endswith(".pt"):
            self.model = self.get_model(cfg=self.model, weights=load_model(weights=pretrained), verbose=RANK in {-1, 0})
            return None
        self.resume_ckpt = super().setup_model()
        return self.resume_ckpt

    def _write_model_yaml(self):
        """Keep ``{save_dir}/<cfg>.yaml`` (the model dict with its ``act_swap:`` key) in the run folder."""
        if RANK not in {-1, 0} or not isinstance(self.model, dict):
            return
        path = self.save_dir / Path(str(self.model.get("yaml_file") or "model.yaml")).name
        if not path.is_file():
            atomic_write_text(path, yaml.safe_dump(self.model, sort_keys=False))

    # --- optimizer
    def build_optimizer(self, model, name="auto", lr=0.001, momentum=0.9, decay=1e-5, iterations=1e5):
        """Ultralytics' optimizer, with activation parameters moved into groups of their own.

        Each new group keeps the options of ultralytics' group its parameters came from (MuSGD's boosted head lr
        stays boosted) and is appended after ultralytics' groups, so the warmup's bias group keeps its index; the
        decayed one is tagged ``param_group="weight"`` so that ultralytics rescales its decay with the other weights.
        """
        optimizer = super().build_optimizer(model, name=name, lr=lr, momentum=momentum, decay=decay,
                                            iterations=iterations)
        added = add_activation_param_groups(optimizer, unwrap_model(model), weight_decay=decay, groups="own")
        for g in added:
            g["param_group"] = "weight" if g[ACT_GROUP_KEY] == "weight" else "act"
        if added:
            sizes = ", ".join(f"{g['param_group']}={len(g['params'])}" for g in added)
            LOGGER.info(f"{colorstr('act-swap:')} activation parameters in {len(added)} group(s) of their own "
                        f"({sizes}); none to Muon, no weight decay on shape parameters")
        return optimizer

    # --- training
    def preprocess_batch(self, batch: dict) -> dict:
        """Ultralytics' preprocessing, with the images in channels_last when the model is (``engine.layout``)."""
        batch = super().preprocess_batch(batch)
        return batch_to_layout(batch, is_channels_last(unwrap_model(self.model)))

    def train(self):
        """Train; DDP workers receive the model dict itself, since the launcher deletes the run folder first."""
        if self.ddp and isinstance(self.model, (str, Path)) and str(self.model).endswith((".yaml", ".yml")):
            self.model = load_model_cfg(self.model)
        return super().train()

    # --- validation and results
    def get_validator(self):
        """``ActSwapValidator`` (ultralytics' detection validator plus official COCO eval on COCO-JSON data)."""
        return ActSwapValidator(self.test_loader, save_dir=self.save_dir, args=copy.copy(self.args),
                                _callbacks=self.callbacks)

    def final_eval(self):
        """Ultralytics' final validation of best.pt, then ``act_swap_result.json``."""
        train_time = time.time() - self.train_time_start
        super().final_eval()
        if RANK in {-1, 0}:
            write_result(self, train_time)
