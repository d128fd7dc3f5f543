"""Automatic mixed precision without downloads.

Ultralytics decides AMP with ``check_amp``, which downloads ``yolo26n.pt`` when it is not on disk. yolo-act-swap never
downloads, and the model worth checking is the patched one anyway (an activation can overflow in half precision), so
on CUDA the trainer asks ultralytics to skip its check (``defer_amp_check``, from ``ActSwapTrainer.setup_model``,
the first step of ultralytics' setup) and decides itself once the setup is done (``decide_amp``, an
``on_pretrain_routine_end`` callback). ``tests/test_train.py::test_amp_hooks_pin_ultralytics_setup_order`` pins the
ultralytics behaviour this relies on.
"""

from __future__ import annotations

import copy

import torch

_REQUESTED = "_yas_amp_requested"  # trainer attribute: the amp value the user asked for, while our check is pending


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


def needs_own_check(trainer) -> bool:
    """True when ultralytics would run its (downloading) AMP check: AMP requested in FP16 on a CUDA device."""
    return trainer.args.amp not in {False, "fp32", "bf16"} and trainer.device.type == "cuda"


def defer_amp_check(trainer) -> None:
    """Before ultralytics' setup reads ``args.amp``: turn its own check off when ``decide_amp`` will decide instead."""
    if getattr(trainer, _REQUESTED, None) is None and needs_own_check(trainer):
        setattr(trainer, _REQUESTED, trainer.args.amp)
        trainer.args.amp = False


def decide_amp(trainer) -> None:
    """``on_pretrain_routine_end``: restore ``args.amp``, decide AMP with ``check_amp`` on rank 0, share it with the
    other DDP ranks, and rebuild the gradient scaler (with a resumed run's scaler state)."""
    requested = getattr(trainer, _REQUESTED, None)
    if requested is None:
        return
    from ultralytics.utils import RANK
    from ultralytics.utils.torch_utils import unwrap_model

    trainer.args.amp = requested
    setattr(trainer, _REQUESTED, None)
    ok = check_amp(unwrap_model(trainer.model), trainer.device) if RANK in {-1, 0} else True
    amp = torch.tensor(ok, device=trainer.device)
    if RANK > -1 and trainer.world_size > 1:
        amp = amp.int()
        torch.distributed.broadcast(amp, src=0)
    trainer.amp = bool(amp)
    trainer.scaler = torch.amp.GradScaler("cuda", enabled=trainer.amp)
    ckpt = getattr(trainer, "resume_ckpt", None)
    if trainer.resume and ckpt and ckpt.get("scaler") and trainer.amp:
        trainer.scaler.load_state_dict(ckpt["scaler"])
