"""One training run from plain arguments: ``train()``, ``resume()`` and the run folder they prepare.

Examples:
    >>> from yolo_act_swap.engine.run import train
    >>> result = train(cfg="yolov8n.yaml", act="frelu", epochs=3, imgsz=160, device="cpu")
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import yaml

from ..blend import BLEND_KEY, find_blends, parse_transition
from ..checkpoints import register_safe_globals
from ..data.resolve import check_class_count, resolve_data
from ..errors import ActSwapError, TrainingInterrupted, warn
from ..io import atomic_write_text, checkpoint_complete
from ..models import build_detection_model, default_cfg, load_model, load_model_cfg
from ..safe_load import load_checkpoint
from ..spec import load_spec, spec_file_or_error
from .result import read_result
from .trainer import ActSwapTrainer
from .transition import RECALIBRATE_KEY


def with_spec(cfg: dict, spec=None, act: str | None = None, chain: bool = False) -> dict:
    """Return ``cfg`` with its ``act_swap:`` key set from ``--spec`` / ``--act`` (unchanged when both are None).

    ``chain``: append the spec to the ``act_swap`` chain ``cfg`` already has instead of replacing it (a blended
    transition moves from the activations the weights were trained with).
    """
    if spec is None and act is None:
        return cfg
    if isinstance(spec, (str, Path)):  # --spec is a file: a path or a name in configs/acts/, never an activation
        spec = spec_file_or_error(spec)
    cfg = dict(cfg)
    new = load_spec(spec, act=act).to_dict()
    prior = cfg.get("act_swap") if chain else None
    cfg["act_swap"] = [*(prior if isinstance(prior, list) else [prior]), new] if prior else new
    return cfg


def _transfer_keys(model_dict: dict, weights, act, spec, transition, recalibrate_bn, epochs) -> dict:
    """Add the keys of a transfer from trained weights: the blended transition or BN recalibration."""
    if transition is None and not recalibrate_bn:
        return model_dict
    flag = "--transition" if transition is not None else "--recalibrate-bn"
    if not weights:
        raise ActSwapError(f"{flag} moves a trained model to another activation: pass --weights TRAINED.pt")
    if act is None and spec is None:
        raise ActSwapError(f"{flag}: pass --act or --spec, the activation to move to")
    if transition is not None and recalibrate_bn:
        raise ActSwapError("--transition and --recalibrate-bn are alternatives (the transition starts from the trained "
                           "model's own statistics); pick one")
    if recalibrate_bn:
        if int(recalibrate_bn) < 0:
            raise ActSwapError(f"--recalibrate-bn {recalibrate_bn}: give a number of batches above 0")
        model_dict[RECALIBRATE_KEY] = int(recalibrate_bn)
        return model_dict
    schedule = parse_transition(transition)
    if epochs is not None and schedule.get("epochs", 0) > epochs:
        raise ActSwapError(f"--transition {transition} is longer than the run (--epochs {epochs}); the ramp must end "
                           "within the run")
    model_dict[BLEND_KEY] = schedule
    return model_dict


def _model_dict(cfg, weights, info, act, spec, new_head: bool, transfer: dict | None = None) -> dict:
    """The run's model dict: ``cfg`` (default: the weights' own config, else ``models.default_cfg()``) with the spec,
    checked against the data's class count and built once so that mistakes surface before a run folder exists.
    ``transfer``: ``_transfer_keys`` arguments (a blended transition chains the spec onto the weights' own)."""
    wmodel = load_model(weights=weights) if weights else None
    if wmodel is not None and find_blends(wmodel):
        raise ActSwapError(f"--weights {weights} holds a blended transition in progress (a checkpoint from the middle "
                           "of a ramp): resume that run with --resume, or pass a checkpoint saved after the ramp")
    if wmodel is not None:
        wnc = int(getattr(wmodel, "nc", 0) or len(getattr(wmodel, "names", {}) or {}))
        if wnc and not new_head:
            check_class_count(wnc, info, f"--weights {weights}")
    if cfg is None:
        own = getattr(wmodel, "yaml", None) if wmodel is not None else None
        cfg = own if isinstance(own, dict) else default_cfg()
    transfer = transfer or {}
    model_dict = with_spec(load_model_cfg(cfg), spec=spec, act=act, chain=transfer.get("transition") is not None)
    model_dict = _transfer_keys(model_dict, weights, act, spec, **transfer) if transfer else model_dict
    build_detection_model(dict(model_dict), nc=info.nc, verbose=False)
    return model_dict


def prepare_run(cfg=None, weights=None, data=None, act: str | None = None, spec=None, new_head: bool = False,
                transition=None, recalibrate_bn: int = 0, **overrides) -> dict:
    """Resolve data and model, write the model YAML into the run folder, and return the trainer overrides.

    Args:
        cfg (str | dict, optional): model config (default: the weights' own config, else ``models.default_cfg()``).
        weights (str, optional): checkpoint to start from.
        data (str, optional): ``--data`` (default: the demo dataset).
        act (str, optional): ``--act`` shorthand spec, e.g. ``frelu`` or ``leaky_relu:negative_slope=0.1``.
        spec (str | dict, optional): swap spec YAML path or dict.
        new_head (bool): allow ``weights`` with another class count (the detection head is then trained anew).
        transition (int | float | str, optional): move from the weights' activations to ``act``/``spec`` through a
            blended transition: epochs (``3``) or iterations (``"300it"``), see ``engine.transition``.
        recalibrate_bn (int): after the abrupt swap, refresh BatchNorm statistics from this many training batches.
        **overrides: ultralytics train args (``epochs``, ``imgsz``, ``batch``, ``project``, ``name`` ...).

    Returns:
        (dict): overrides for ``ActSwapTrainer`` with ``model`` = the run folder's model YAML and ``save_dir`` set.
    """
    from ultralytics.cfg import get_cfg, get_save_dir

    register_safe_globals()
    info = resolve_data(data)
    transfer = {"transition": transition, "recalibrate_bn": recalibrate_bn, "epochs": overrides.get("epochs")}
    model_dict = _model_dict(cfg, weights, info, act, spec, new_head, transfer)
    args = {**overrides, "data": str(info.yaml), "mode": "train", "task": "detect"}
    if weights:
        args["pretrained"] = str(weights)
    save_dir = Path(get_save_dir(get_cfg(overrides=args)))
    name = Path(str(model_dict.get("yaml_file") or "model.yaml")).stem + ".yaml"
    model_dict["yaml_file"] = str(save_dir / name)
    atomic_write_text(save_dir / name, yaml.safe_dump(model_dict, sort_keys=False))
    args["model"] = str(save_dir / name)
    args["save_dir"] = str(save_dir)
    return args


def train(cfg=None, weights=None, data=None, act=None, spec=None, new_head=False, transition=None, recalibrate_bn=0,
          **overrides) -> dict:
    """Train a patched model; returns the ``act_swap_result.json`` contents. Arguments as in ``prepare_run``."""
    args = prepare_run(cfg=cfg, weights=weights, data=data, act=act, spec=spec, new_head=new_head,
                       transition=transition, recalibrate_bn=recalibrate_bn, **overrides)
    trainer = ActSwapTrainer(overrides=args)
    _run(trainer)
    return read_result(trainer.save_dir)


def _run(trainer) -> None:
    """``trainer.train()``; Ctrl-C becomes ``TrainingInterrupted`` naming the checkpoint that resumes the run."""
    try:
        trainer.train()
    except KeyboardInterrupt:
        last = Path(trainer.last) if getattr(trainer, "last", None) else None
        raise TrainingInterrupted(last if last is not None and last.is_file() else None) from None


def _latest_last(checkpoint) -> Path:
    """The ``last.pt`` to resume: the given one, or (``True``) the newest under the current folder, as ultralytics
    picks it."""
    if checkpoint is not True:
        return Path(checkpoint)
    from ultralytics.utils.files import get_latest_run

    last = get_latest_run(".")
    if not last:
        raise ActSwapError("--resume: no last.pt under the current folder; pass the run's weights/last.pt")
    return Path(last)


def check_resumable(checkpoint=True) -> Path:
    """The ``last.pt`` a resume would start from, checked before ultralytics reads it: it loads without running
    code (``safe_load``; the run's ``best.pt`` too, which the final validation loads) and still has epochs to train.

    Raises:
        ActSwapError: missing, truncated or unsafe file, or a finished run (with how to train it longer).
    """
    ckpt_path = _latest_last(checkpoint)
    if not ckpt_path.is_file():
        raise ActSwapError(f"--resume {ckpt_path}: no such checkpoint; pass the run's weights/last.pt")
    if not zipfile.is_zipfile(ckpt_path):  # torch.save writes a zip archive; ultralytics writes last.pt in place
        raise ActSwapError(f"--resume {ckpt_path}: the checkpoint is truncated or not a torch checkpoint (the run was "
                           "probably killed while saving it); resume from weights/best.pt or start the run again")
    ckpt = load_checkpoint(ckpt_path)
    best = ckpt_path.with_name("best.pt")
    if best.is_file() and best != ckpt_path:
        if checkpoint_complete(best):
            load_checkpoint(best)
        else:  # killed while ultralytics rewrote it after last.pt: the resumed run saves a new one at its best epoch
            best.unlink()
            warn(f"{best} was cut short when the run was killed; removed it (the resumed run writes it again)")
    why = finished_training(ckpt)
    if why:
        raise ActSwapError(f"--resume {ckpt_path}: {why}, nothing to resume; to train longer start a new run from it: "
                           f"yolo-act-swap train --weights {ckpt_path} --epochs N")
    return ckpt_path


def finished_training(ckpt: dict) -> str | None:
    """Why a checkpoint's training is over (no optimizer state: finished and stripped, or a ``--save``d file; or
    every epoch trained), or None when it can be resumed."""
    epoch, epochs = ckpt.get("epoch", -1), (ckpt.get("train_args") or {}).get("epochs")
    if not isinstance(epoch, int) or epoch < 0 or ckpt.get("optimizer") is None:
        return "the run is finished (the checkpoint has no optimizer state)"
    if isinstance(epochs, int) and epoch + 1 >= epochs:
        return f"all {epochs} epochs are trained"
    return None


def collect(run_dir, device=None) -> dict:
    """The result of a run whose training ended but whose ``act_swap_result.json`` is missing (killed during the
    final "Validating best.pt"): validate its ``best.pt`` as ultralytics' final evaluation does, write the result
    file and return it. Nothing is trained.

    Raises:
        ActSwapError: the run has no complete ``best.pt``/``last.pt``, or its training is not over.
    """
    from ..io import read_results_csv
    from .result import RESULT_FILE
    from .validator import val

    run_dir = Path(run_dir)
    best, last = run_dir / "weights" / "best.pt", run_dir / "weights" / "last.pt"
    ckpt = load_checkpoint(last)
    if not finished_training(ckpt) or not best.is_file():
        raise ActSwapError(f"{run_dir}: training is not over (or best.pt is missing); resume it instead")
    targs = ckpt.get("train_args") or {}
    r = val(best, data=targs.get("data"), imgsz=targs.get("imgsz"), batch=int(targs.get("batch") or 16),
            device=device, channels_last=targs.get("channels_last"), project=str(run_dir), name="final_val",
            exist_ok=True)
    rows = read_results_csv(run_dir / "results.csv")
    train_time = float(rows[-1].get("time") or 0.0) if rows else 0.0
    result = {
        "status": "finished", "save_dir": str(run_dir), "best": str(best), "last": str(last),
        "epochs": len(rows) or targs.get("epochs"), "metrics": {k: round(v, 6) for k, v in r["metrics"].items()},
        "train_time_s": round(train_time, 3), "epoch_time_s": round(train_time / max(len(rows), 1), 3),
        "train_images_per_s": None, "peak_mem_mb": None, "device": str(device or targs.get("device")),
        "amp": targs.get("amp"), "batch": targs.get("batch"), "imgsz": targs.get("imgsz"),
        "act_swap": (getattr(load_model(weights=best), "yaml", None) or {}).get("act_swap"),
        "collected": "validated best.pt after the run was stopped during its final validation",
    }  # fmt: skip
    atomic_write_text(run_dir / RESULT_FILE, json.dumps(result, indent=2) + "\n")
    return result


def resume(checkpoint=True, **overrides) -> dict:
    """Resume an interrupted run from ``last.pt`` (``True``: the newest under the current folder)."""
    register_safe_globals()
    ckpt = check_resumable(checkpoint)
    try:
        trainer = ActSwapTrainer(overrides={**overrides, "resume": str(ckpt)})
    except FileNotFoundError as e:
        raise ActSwapError(f"--resume: {str(e).strip().splitlines()[0]}") from None
    _run(trainer)
    return read_result(trainer.save_dir)
