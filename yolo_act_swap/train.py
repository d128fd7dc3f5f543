"""Train patched detectors with the ultralytics engine: ``yolo-act-swap train`` / ``python -m yolo_act_swap.train``.

``ActSwapTrainer`` is an ultralytics ``DetectionTrainer`` that

- builds the model from a YAML dict whose ``act_swap:`` key carries the swap spec, so the swap is re-applied every
  time the engine builds the model: fresh runs, ``Model.train()`` rebuilds, ``--resume`` and DDP workers alike, and
  every checkpoint describes its own activations;
- moves activation parameters into optimizer groups of their own (shape parameters without weight decay, nothing to
  Muon under MuSGD, every parameter in exactly one group);
- checks AMP without downloading anything, validates with ``ActSwapValidator`` (official COCO mAP for COCO-JSON data),
  and writes ``act_swap_result.json`` at the end of a run.

Examples:
    >>> from yolo_act_swap.train import train
    >>> result = train(cfg="yolov8n.yaml", act="frelu", epochs=3, imgsz=160, device="cpu")
"""

from __future__ import annotations

import argparse
import copy
import difflib
import json
import math
import sys
import time
from pathlib import Path

import torch
import yaml

from .errors import ActSwapError, ModelError

DEFAULT_CFG_NAME = "yolov7-tiny.yaml"  # upstream YOLOv7's small model; yolov8n.yaml until that config exists
FALLBACK_CFG_NAME = "yolov8n.yaml"
RESULT_FILE = "act_swap_result.json"
ACT_GROUP_KEY = "act_swap"  # marks the optimizer groups this trainer adds

# Ultralytics train args that have a flag of their own: key -> flag (``key=value`` is refused for them).
TRAIN_FLAGS = {"model": "--cfg", "pretrained": "--weights", "data": "--data", "epochs": "--epochs",
               "batch": "--batch-size", "imgsz": "--img-size", "device": "--device", "workers": "--workers",
               "project": "--project", "name": "--name", "resume": "--resume", "seed": "--seed",
               "exist_ok": "--exist-ok", "save_dir": "--project/--name"}


# --------------------------------------------------------------------------------------------------- model building
def default_cfg_name() -> str:
    """``yolov7-tiny.yaml`` when the package ships it, else ``yolov8n.yaml``."""
    from .io import configs_dir

    return DEFAULT_CFG_NAME if (configs_dir() / "models" / DEFAULT_CFG_NAME).is_file() else FALLBACK_CFG_NAME


def load_model_cfg(cfg) -> dict:
    """Resolve ``--cfg`` (dict, YAML path, a name in ``configs/models/`` or an ultralytics model name) to a model dict.

    Returns:
        (dict): a fresh model dict (``yaml_file`` set; ``act_swap:`` kept when present).

    Raises:
        ModelError: the config cannot be found or parsed.
    """
    from .models import read_model_yaml
    from .io import configs_dir

    if isinstance(cfg, dict):
        return copy.deepcopy(cfg)
    name = str(cfg)
    if name.endswith((".pt", ".pth")):
        raise ModelError(f"--cfg {name} is a checkpoint; pass it with --weights (--cfg takes a model YAML)")
    for p in (Path(name).expanduser(), configs_dir() / "models" / name, configs_dir() / "models" / f"{name}.yaml"):
        if p.is_file():
            return read_model_yaml(p)
    from ultralytics.nn.tasks import yaml_model_load

    try:
        return yaml_model_load(name)
    except (FileNotFoundError, OSError):
        raise ModelError(
            f"model config {name!r} not found; pass a YAML path, a name in configs/models/, or an ultralytics name "
            "such as yolov8n.yaml"
        ) from None


def build_model(cfg: dict, nc: int | None = None, ch: int = 3, verbose: bool = False):
    """Build a detection model from a model dict, applying its ``act_swap:`` spec (``models.build_detection_model``)."""
    from .models import build_detection_model

    return build_detection_model(cfg, ch=ch, nc=nc, verbose=verbose)


def load_weights(weights):
    """Load ``--weights`` with ``yolo_act_swap.models.load_model`` (ultralytics and yolo-act-swap checkpoints)."""
    from .models import load_model

    return load_model(weights=weights)


def with_spec(cfg: dict, spec=None, act: str | None = None) -> dict:
    """Return ``cfg`` with its ``act_swap:`` key set from ``--spec`` / ``--act`` (unchanged when both are None)."""
    if spec is None and act is None:
        return cfg
    from .spec import load_spec, spec_file_or_error

    if isinstance(spec, (str, Path)):  # --spec is a file: a path or a name in configs/acts/, never an activation
        spec = spec_file_or_error(spec)
    cfg = dict(cfg)
    cfg["act_swap"] = load_spec(spec, act=act).to_dict()
    return cfg


# ------------------------------------------------------------------------------------------------------- optimizer
def regroup_activation_params(optimizer, model, decay: float) -> list[dict]:
    """Move activation parameters out of ultralytics' groups into groups of their own.

    Shape parameters (ACON p1/p2/beta, PReLU slopes, biases, BatchNorm affine inside activations) get no weight decay;
    conv/linear weights inside activations (FReLU's depthwise conv, coefficient nets) get ``decay``. None of them goes
    to Muon under MuSGD. Each new group copies the optimizer options (betas, momentum, nesterov, lr) of the group its
    parameters came from, so MuSGD's boosted-lr head groups stay boosted. The new groups are appended after
    ultralytics' groups, so the warmup's special bias group keeps its index and tag; the decayed one is tagged
    ``param_group="weight"`` so that ultralytics rescales its decay together with the other weights.

    Returns:
        (list[dict]): the groups added.
    """
    from .optim import split_activation_parameters

    decay_p, shape_p = split_activation_parameters(model)
    kind = {id(p): "decay" for p in decay_p} | {id(p): "shape" for p in shape_p}
    if not kind:
        return []
    buckets: dict = {}  # (kind, lr) -> (template group options, params)
    for group in optimizer.param_groups:
        keep = []
        for p in group["params"]:
            k = kind.get(id(p))
            if k is None:
                keep.append(p)
                continue
            options = {key: v for key, v in group.items() if key != "params"}
            buckets.setdefault((k, group["lr"]), (options, []))[1].append(p)
        group["params"] = keep
    added = []
    for (k, lr), (options, params) in buckets.items():
        group = {**options, "params": params, "lr": lr, ACT_GROUP_KEY: True}
        group["weight_decay"] = decay if k == "decay" else 0.0
        group["param_group"] = "weight" if k == "decay" else "act"
        if "use_muon" in group:
            group["use_muon"] = False
        optimizer.add_param_group(group)
        added.append(optimizer.param_groups[-1])
    return added


# ----------------------------------------------------------------------------------------------------------- AMP
def amp_allclose(model: torch.nn.Module, device, dtype=torch.float16, imgsz: int = 256) -> bool:
    """Run ``model`` on a fixed random batch in FP32 and under autocast; True when both are finite and close.

    Needs no download: it checks the model being trained, which also catches activations that overflow in half
    precision (an FP32-only ``exp`` or ``pow``).
    """
    m = copy.deepcopy(model).to(device).float().eval()
    g = torch.Generator().manual_seed(0)
    ch = int(m.yaml.get("channels", 3)) if isinstance(getattr(m, "yaml", None), dict) else 3
    x = torch.rand(2, ch, imgsz, imgsz, generator=g).to(device)

    def first(y):
        while isinstance(y, (list, tuple)):
            y = y[0]
        if isinstance(y, dict):
            y = next(iter(y.values()))
        return y

    with torch.no_grad():
        a = first(m(x)).float()
        with torch.autocast(device_type=torch.device(device).type, dtype=dtype):
            b = first(m(x)).float()
    del m
    return bool(a.shape == b.shape and torch.isfinite(b).all() and torch.allclose(a, b, atol=0.5, rtol=0.02))


def check_amp(model, device) -> bool:
    """AMP check that never downloads: ultralytics' own check when its reference weights are already on disk, else
    ``amp_allclose`` on the model itself. Returns whether to train with AMP."""
    from ultralytics.utils import LOGGER, WEIGHTS_DIR, colorstr
    from ultralytics.utils.checks import check_amp as ultralytics_check_amp

    prefix = colorstr("AMP: ")
    device = torch.device(device)
    if device.type != "cuda" or (WEIGHTS_DIR / "yolo26n.pt").is_file():
        return bool(ultralytics_check_amp(model))
    LOGGER.info(
        f"{prefix}ultralytics' AMP check needs yolo26n.pt, which is not in {WEIGHTS_DIR} (yolo-act-swap never "
        "downloads); checking FP32 vs AMP outputs of the model itself instead..."
    )
    try:
        ok = amp_allclose(model, device)
    except Exception as e:  # noqa: BLE001 - a failing check must not stop training; it only decides AMP
        LOGGER.warning(f"{prefix}check could not run ({type(e).__name__}: {e}); keeping amp=True. Pass amp=False if "
                       "losses turn NaN.")
        return True
    if ok:
        LOGGER.info(f"{prefix}checks passed ✅")
    else:
        LOGGER.warning(f"{prefix}FP32 and AMP outputs of this model differ or are not finite, so AMP is disabled "
                       "(amp=False). An activation may overflow in half precision.")
    return ok


# -------------------------------------------------------------------------------------------------------- callbacks
# Plain module-level functions (not bound methods): the DDP launcher pickles trainer.callbacks by reference.
def _on_train_epoch_start(trainer):
    trainer._yas_epoch_t0 = time.time()


def _on_train_epoch_end(trainer):
    t0 = getattr(trainer, "_yas_epoch_t0", None)
    if t0 is not None:
        trainer._yas_train_s = getattr(trainer, "_yas_train_s", 0.0) + time.time() - t0
        trainer._yas_train_imgs = getattr(trainer, "_yas_train_imgs", 0) + len(trainer.train_loader.dataset)


def peak_memory_mb(device) -> float:
    """Peak memory of this process: GPU max allocated on CUDA, else the CPU's max resident set size."""
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        import resource

        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return rss / 2**20 if sys.platform == "darwin" else rss / 2**10  # bytes on macOS, KiB on Linux
    except ImportError:  # Windows
        import psutil

        return psutil.Process().memory_info().peak_wset / 2**20


# ---------------------------------------------------------------------------------------------------------- trainer
def _trainer_base():
    from ultralytics.models.yolo.detect import DetectionTrainer

    return DetectionTrainer


class ActSwapTrainer(_trainer_base()):
    """Ultralytics ``DetectionTrainer`` for patched models.

    Pass ``model=`` a model YAML (path or dict) whose ``act_swap:`` key holds the swap spec, or a checkpoint to resume;
    ``pretrained=`` a checkpoint to start from. Everything else is ultralytics' train args.

    Examples:
        >>> trainer = ActSwapTrainer(overrides={"model": "runs/train/exp/yolov8n.yaml", "data": "demo", "epochs": 3})
        >>> trainer.train()
    """

    def __init__(self, cfg=None, overrides=None, _callbacks=None):
        from ultralytics.utils import DEFAULT_CFG

        overrides = dict(overrides or {})
        if isinstance(overrides.get("model"), dict):  # a model dict: keep it, give the args a printable name
            model_dict = overrides.pop("model")
            overrides["model"] = str(model_dict.get("yaml_file") or "act_swap.yaml")
        else:
            model_dict = None
        super().__init__(cfg or DEFAULT_CFG, overrides, _callbacks)
        if model_dict is not None:
            self.model = model_dict
        self.add_callback("on_train_epoch_start", _on_train_epoch_start)
        self.add_callback("on_train_epoch_end", _on_train_epoch_end)
        self._resume_ckpt = None

    # --- data
    def get_dataset(self):
        """Check ``data`` (demo, YAML, COCO JSON) with one-line ``DataError``s, then let ultralytics load it."""
        from ultralytics.utils import RANK

        from .data import resolve_data

        if RANK in {-1, 0}:
            self.data_info = resolve_data(self.args.data)
            self.args.data = str(self.data_info.yaml)
        return super().get_dataset()

    # --- model
    def get_model(self, cfg=None, weights=None, verbose=True):
        """Build the model from ``cfg`` (its ``act_swap:`` applied at build time) and load ``weights`` into it."""
        from ultralytics.utils import RANK

        model = build_model(load_model_cfg(cfg), nc=self.data["nc"], ch=self.data.get("channels", 3),
                            verbose=verbose and RANK == -1)
        model = self.set_model_names_for_load(model)
        if weights:
            model.load(weights)
        return model

    def setup_model(self):
        """Load ``pretrained=`` weights with ``yolo_act_swap.models.load_model``; keep the checkpoint of a resume."""
        if isinstance(self.model, torch.nn.Module):
            return None
        pretrained = self.args.pretrained
        if isinstance(pretrained, (str, Path)) and not self.resume and not str(self.model).endswith(".pt"):
            from ultralytics.utils import RANK

            self.model = self.get_model(cfg=self.model, weights=load_weights(pretrained), verbose=RANK in {-1, 0})
            return None
        self._resume_ckpt = super().setup_model()
        return self._resume_ckpt

    # --- optimizer
    def build_optimizer(self, model, name="auto", lr=0.001, momentum=0.9, decay=1e-5, iterations=1e5):
        """Ultralytics' optimizer, with activation parameters moved into groups of their own."""
        from ultralytics.utils import LOGGER, colorstr
        from ultralytics.utils.torch_utils import unwrap_model

        optimizer = super().build_optimizer(model, name=name, lr=lr, momentum=momentum, decay=decay,
                                            iterations=iterations)
        added = regroup_activation_params(optimizer, unwrap_model(model), decay)
        if added:
            sizes = ", ".join(f"{g['param_group']}={len(g['params'])}" for g in added)
            LOGGER.info(f"{colorstr('act-swap:')} activation parameters in {len(added)} group(s) of their own "
                        f"({sizes}); none to Muon, no weight decay on shape parameters")
        return optimizer

    # --- AMP, run folder
    def _setup_train(self):
        """Ultralytics' setup, with the AMP check done by ``check_amp`` (no download) on CUDA."""
        from ultralytics.utils import RANK

        self._write_model_yaml()
        requested = self.args.amp
        if requested in {False, "fp32", "bf16"} or self.device.type != "cuda":
            return super()._setup_train()
        self.args.amp = False  # skip ultralytics' downloading AMP check; decided below instead
        try:
            super()._setup_train()
        finally:
            self.args.amp = requested
        from ultralytics.utils.torch_utils import unwrap_model

        ok = check_amp(unwrap_model(self.model), self.device) if RANK in {-1, 0} else True
        amp = torch.tensor(ok, device=self.device)
        if RANK > -1 and self.world_size > 1:
            amp = amp.int()
            torch.distributed.broadcast(amp, src=0)
        self.amp = bool(amp)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        ckpt = self._resume_ckpt
        if self.resume and ckpt and ckpt.get("scaler") and self.amp:
            self.scaler.load_state_dict(ckpt["scaler"])

    def _write_model_yaml(self):
        """Keep ``{save_dir}/<cfg>.yaml`` (the model dict with its ``act_swap:`` key) in the run folder."""
        from ultralytics.utils import RANK

        from .io import atomic_write_text

        if RANK not in {-1, 0} or not isinstance(self.model, dict):
            return
        name = Path(str(self.model.get("yaml_file") or "model.yaml")).name
        path = self.save_dir / name
        if not path.is_file():
            atomic_write_text(path, yaml.safe_dump(self.model, sort_keys=False))

    def train(self):
        """Train; DDP workers receive the model dict itself, since the launcher deletes the run folder first."""
        if self.ddp and isinstance(self.model, (str, Path)) and str(self.model).endswith((".yaml", ".yml")):
            self.model = load_model_cfg(self.model)
        return super().train()

    # --- validation and results
    def get_validator(self):
        """``ActSwapValidator`` (ultralytics' detection validator plus official COCO eval on COCO-JSON data)."""
        from .val import ActSwapValidator

        return ActSwapValidator(self.test_loader, save_dir=self.save_dir, args=copy.copy(self.args),
                                _callbacks=self.callbacks)

    def final_eval(self):
        """Ultralytics' final validation of best.pt, then ``act_swap_result.json``."""
        from ultralytics.utils import RANK

        train_time = time.time() - self.train_time_start
        super().final_eval()
        if RANK in {-1, 0}:
            self.write_result(train_time)

    def write_result(self, train_time: float) -> Path:
        """Write ``{save_dir}/act_swap_result.json`` atomically (consumed by ``yolo-act-swap sweep``)."""
        from ultralytics.utils.torch_utils import unwrap_model

        from .io import atomic_write_text

        epochs = max(self.epoch - self.start_epoch + 1, 1)  # run in this session (fewer after a resume)
        m = self.metrics or {}
        train_s = getattr(self, "_yas_train_s", 0.0)
        result = {
            "status": "finished",
            "save_dir": str(self.save_dir),
            "best": str(self.best) if self.best.exists() else None,
            "last": str(self.last) if self.last.exists() else None,
            "epochs": self.epoch + 1,  # trained in total
            "metrics": {
                "precision": _f(m.get("metrics/precision(B)")),
                "recall": _f(m.get("metrics/recall(B)")),
                "mAP50": _f(m.get("metrics/mAP50(B)")),
                "mAP50-95": _f(m.get("metrics/mAP50-95(B)")),
            },
            "train_time_s": round(train_time, 3),
            "epoch_time_s": round(train_time / epochs, 3),
            "train_images_per_s": round(getattr(self, "_yas_train_imgs", 0) / train_s, 2) if train_s else None,
            "peak_mem_mb": round(peak_memory_mb(self.device), 1),
            "device": str(self.device),
            "amp": bool(self.amp),
            "batch": int(self.batch_size),
            "imgsz": int(self.args.imgsz),
            "act_swap": (getattr(unwrap_model(self.model), "yaml", None) or {}).get("act_swap"),
        }
        path = self.save_dir / RESULT_FILE
        atomic_write_text(path, json.dumps(result, indent=2, default=str) + "\n")
        return path


def _f(v):
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else round(float(v), 6)


# ----------------------------------------------------------------------------------------------------------- YOLO
def _task_model(cfg, ch=3, nc=None, verbose=True):
    """``task_map`` model entry: ultralytics calls it with a model dict (or a path) when it builds from YAML."""
    return build_model(load_model_cfg(cfg), nc=nc, ch=ch, verbose=verbose)


def _yolo_base():
    from ultralytics import YOLO as UltralyticsYOLO

    return UltralyticsYOLO


class YOLO(_yolo_base()):
    """Ultralytics ``YOLO`` whose detect task builds, trains and validates with yolo-act-swap's classes.

    ``YOLO(path).train(...)`` keeps the swap: YAML builds honour ``act_swap:``, a model patched in memory trains from
    its own model dict (which the patcher updated), and checkpoints rebuild through ``ActSwapTrainer.get_model``.

    Examples:
        >>> from yolo_act_swap import patch_model
        >>> model = YOLO("yolov8n.yaml")
        >>> patch_model(model, "frelu", imgsz=160)
        >>> model.train(data="demo", epochs=3, imgsz=160)  # data=None or "demo": the built-in demo dataset
    """

    @property
    def task_map(self) -> dict:
        """Ultralytics' map with the detect entries pointing at ``ActSwapTrainer`` / ``ActSwapValidator``."""
        from .val import ActSwapValidator

        m = super().task_map
        m["detect"] = {**m["detect"], "model": _task_model, "trainer": ActSwapTrainer, "validator": ActSwapValidator}
        return m

    def train(self, trainer=None, **kwargs):
        """Ultralytics' ``Model.train``; a YAML-built model trains from its in-memory model dict (swap included)."""
        if not self.ckpt and isinstance(getattr(self.model, "yaml", None), dict) and "model" not in kwargs:
            kwargs["model"] = copy.deepcopy(self.model.yaml)
        if not kwargs.get("data") and not self.overrides.get("data"):
            kwargs["data"] = "demo"  # never ultralytics' default coco8.yaml, which would be downloaded
        return super().train(trainer=trainer, **kwargs)


# ------------------------------------------------------------------------------------------------------------- API
def prepare_run(
    cfg=None,
    weights=None,
    data=None,
    act: str | None = None,
    spec=None,
    new_head: bool = False,
    **overrides,
) -> dict:
    """Resolve data and model, write the model YAML into the run folder, and return the trainer overrides.

    Args:
        cfg (str | dict, optional): model config (default: the weights' own config, else ``yolov7-tiny.yaml``).
        weights (str, optional): checkpoint to start from.
        data (str, optional): ``--data`` (default: the demo dataset).
        act (str, optional): ``--act`` shorthand spec, e.g. ``frelu`` or ``leaky_relu:negative_slope=0.1``.
        spec (str | dict, optional): swap spec YAML path or dict.
        new_head (bool): allow ``weights`` with another class count (the detection head is then trained anew).
        **overrides: ultralytics train args (``epochs``, ``imgsz``, ``batch``, ``project``, ``name`` ...).

    Returns:
        (dict): overrides for ``ActSwapTrainer`` with ``model`` = the run folder's model YAML and ``save_dir`` set.
    """
    from ultralytics.cfg import get_cfg, get_save_dir

    from .data import check_class_count, resolve_data
    from .checkpoints import register_safe_globals

    register_safe_globals()
    info = resolve_data(data)
    wmodel = load_weights(weights) if weights else None
    if wmodel is not None:
        wnc = int(getattr(wmodel, "nc", 0) or len(getattr(wmodel, "names", {}) or {}))
        if wnc and not new_head:
            check_class_count(wnc, info, f"--weights {weights}")
    if cfg is None:
        own = getattr(wmodel, "yaml", None) if wmodel is not None else None
        cfg = own if isinstance(own, dict) else default_cfg_name()
    model_dict = with_spec(load_model_cfg(cfg), spec=spec, act=act)
    build_model(dict(model_dict), nc=info.nc, verbose=False)  # fail early, before a run folder exists

    args = {**overrides, "data": str(info.yaml), "mode": "train", "task": "detect"}
    if weights:
        args["pretrained"] = str(weights)
    resolved = get_cfg(overrides=args)
    save_dir = Path(get_save_dir(resolved))
    name = Path(str(model_dict.get("yaml_file") or "model.yaml")).stem + ".yaml"
    model_dict["yaml_file"] = str(save_dir / name)
    from .io import atomic_write_text

    atomic_write_text(save_dir / name, yaml.safe_dump(model_dict, sort_keys=False))
    args["model"] = str(save_dir / name)
    args["save_dir"] = str(save_dir)
    return args


def train(cfg=None, weights=None, data=None, act=None, spec=None, new_head=False, **overrides) -> dict:
    """Train a patched model; returns the ``act_swap_result.json`` contents. Arguments as in ``prepare_run``."""
    args = prepare_run(cfg=cfg, weights=weights, data=data, act=act, spec=spec, new_head=new_head, **overrides)
    trainer = ActSwapTrainer(overrides=args)
    trainer.train()
    path = trainer.save_dir / RESULT_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {"status": "failed"}


def resume(checkpoint=True, **overrides) -> dict:
    """Resume an interrupted run from ``last.pt`` (``True``: the newest under the current folder)."""
    from .checkpoints import register_safe_globals

    register_safe_globals()
    if checkpoint is not True:
        import zipfile

        ckpt = Path(checkpoint)
        if not ckpt.is_file():
            raise ActSwapError(f"--resume {ckpt}: no such checkpoint; pass the run's weights/last.pt")
        if not zipfile.is_zipfile(ckpt):  # torch.save writes a zip archive; ultralytics writes last.pt in place
            raise ActSwapError(f"--resume {ckpt}: the checkpoint is truncated or not a torch checkpoint (the run was "
                               "probably killed while saving it); resume from weights/best.pt or start the run again")
    try:
        trainer = ActSwapTrainer(overrides={**overrides, "resume": checkpoint if checkpoint is not True else True})
    except FileNotFoundError as e:
        raise ActSwapError(f"--resume: {str(e).strip().splitlines()[0]}") from None
    trainer.train()
    path = trainer.save_dir / RESULT_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {"status": "failed"}


# ------------------------------------------------------------------------------------------------------------- CLI
def parse_overrides(pairs: list[str], flags: dict | None = None) -> dict:
    """Parse ``key=value`` ultralytics args; values are read as YAML scalars (never evaluated).

    Args:
        pairs (list[str]): the ``key=value`` strings.
        flags (dict, optional): keys that have a flag of their own, mapped to the flag (default ``TRAIN_FLAGS``).

    Raises:
        ActSwapError: a malformed pair, an unknown key, a key that has its own flag, or a bad value.
    """
    from ultralytics.cfg import get_cfg
    from ultralytics.utils import DEFAULT_CFG_DICT

    flags = TRAIN_FLAGS if flags is None else flags
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip().lstrip("-").replace("-", "_")
        if not sep or not key or value == "":
            raise ActSwapError(f"cannot read argument {pair!r}: use --flag value for our flags or key=value for "
                               "ultralytics args")
        if key in flags:
            raise ActSwapError(f"pass {key} with {flags[key]}, not as {key}=")
        if key not in DEFAULT_CFG_DICT:
            close = difflib.get_close_matches(key, list(DEFAULT_CFG_DICT), n=3, cutoff=0.6)
            hint = f"did you mean {', '.join(close)}?" if close else "run 'yolo cfg' for the list"
            raise ActSwapError(f"unknown ultralytics option {key!r}: {hint}")
        try:
            v = yaml.safe_load(value)
        except yaml.YAMLError:
            v = value
        out[key] = value if isinstance(v, dict) else v
    try:
        get_cfg(overrides=out)
    except (SyntaxError, TypeError, ValueError) as e:
        raise ActSwapError(str(e).strip().splitlines()[0]) from None
    return out


def build_parser() -> argparse.ArgumentParser:
    """``yolo-act-swap train`` arguments (flag names follow upstream YOLOv5/YOLOv7 train.py)."""
    p = argparse.ArgumentParser(
        prog="yolo-act-swap train",
        description="Train a YOLO detector with swapped activations using the ultralytics engine. Extra ultralytics "
        "train args pass through as key=value (e.g. lr0=0.005 optimizer=SGD amp=False).",
    )
    p.add_argument("--cfg", default=None, help=f"model YAML or name (default: the weights', else {DEFAULT_CFG_NAME})")
    p.add_argument("--weights", default=None, help="checkpoint to start from (its activations are kept unless --act)")
    p.add_argument("--data", default=None, help="data YAML, COCO JSON, or 'demo' (default: the built-in demo)")
    p.add_argument("--act", default=None, help="activation of every block: frelu, leaky_relu:negative_slope=0.1 ...")
    p.add_argument("--spec", default=None, help="swap spec YAML (configs/acts/...); --act overrides its default")
    p.add_argument("--epochs", type=int, default=None, help="epochs (default 300; 30 on the demo)")
    p.add_argument("--batch-size", type=int, default=None, help="total batch size over all GPUs (default 16)")
    p.add_argument("--img-size", "--imgsz", type=int, default=None, help="train/val image size (default 640; demo 160)")
    p.add_argument("--device", default=None, help="cuda device(s) 0 or 0,1,2,3 or cpu (default: GPU 0 if any)")
    p.add_argument("--workers", type=int, default=None, help="dataloader workers per process (default 8)")
    p.add_argument("--project", default="runs/train", help="save to project/name")
    p.add_argument("--name", default="exp", help="save to project/name")
    p.add_argument("--exist-ok", action="store_true", help="reuse project/name instead of incrementing")
    p.add_argument("--resume", nargs="?", const=True, default=False, help="resume the newest (or the given) last.pt")
    p.add_argument("--seed", type=int, default=0, help="global training seed")
    p.add_argument("--new-head", action="store_true", help="allow --weights with another class count (new head)")
    p.add_argument("--verbose", "-v", action="store_true", help="show tracebacks on errors")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="other ultralytics train args")
    return p


def main(argv: list[str] | None = None) -> int:
    """``yolo-act-swap train`` / ``python -m yolo_act_swap.train``."""
    args = build_parser().parse_args(argv)
    extra = parse_overrides(args.overrides)
    if args.resume:
        ckpt = args.resume
        if ckpt is not True and not Path(ckpt).is_file():
            raise ModelError(f"--resume checkpoint not found: {ckpt}; pass a last.pt or use --resume alone")
        over = {k: v for k, v in {"device": args.device, "workers": args.workers, "batch": args.batch_size,
                                  "imgsz": args.img_size}.items() if v is not None}
        result = resume(ckpt, **over, **extra)
    else:
        demo = args.data is None or str(args.data) in {"demo", "demo.yaml"}
        over = {
            "epochs": args.epochs or (30 if demo else 300),
            "batch": args.batch_size or 16,
            "imgsz": args.img_size or (160 if demo else 640),
            "project": str(Path(args.project).resolve()),
            "name": args.name,
            "exist_ok": args.exist_ok,
            "seed": args.seed,
            **({"device": args.device} if args.device is not None else {}),
            **({"workers": args.workers} if args.workers is not None else {}),
        }
        result = train(cfg=args.cfg, weights=args.weights, data=args.data, act=args.act, spec=args.spec,
                       new_head=args.new_head, **over, **extra)
    if result.get("status") == "finished":
        m = result["metrics"]
        print(f"yolo-act-swap: finished {result['epochs']} epochs: P {m['precision']} R {m['recall']} "
              f"mAP50 {m['mAP50']} mAP50-95 {m['mAP50-95']}; results in {result['save_dir']}")
        return 0
    print("yolo-act-swap: training ended without a result file (see the log above)", file=sys.stderr)
    return 1


if __name__ == "__main__":
    from .cli import run_guarded

    sys.exit(run_guarded(main, sys.argv[1:]))
