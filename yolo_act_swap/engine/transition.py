"""Trainer callbacks that move a trained model to another activation: the blended ramp and BN recalibration.

Both are driven by keys of the model YAML, because that is what every rebuild (``--resume``, DDP workers) sees:

- ``act_swap_blend: {epochs: E}`` or ``{iterations: N}`` (``blend.BLEND_KEY``): the model holds ``Blend`` modules,
  and ``a`` ramps linearly from 0 to 1, per iteration, over the first ``E`` epochs (``N`` iterations): batch ``ni``
  (0-based, counted from the start of the run) trains with ``a = min(1, (ni + 1) / N)``. After the batch that reaches
  ``a = 1`` the blends of the model and of its EMA collapse to the pure new activation (``blend.collapse_blends``
  drops the key), and the trainer's best fitness and early-stopping record are reset, so that ``best.pt`` is chosen
  only among models validated after the ramp. A resumed run rebuilds the blends from the checkpoint's YAML and
  continues the ramp from its epoch.
- ``act_swap_recalibrate_bn: N`` (``RECALIBRATE_KEY``): before the first batch of a fresh run (not a resume), ``N``
  training batches in train mode without gradients refresh every BatchNorm's running statistics (``bn.recalibrate_bn``),
  in the model and its EMA; then the key is dropped.

The functions are registered through ``engine.callbacks.CALLBACKS``.
"""

from __future__ import annotations

from ultralytics.utils import LOGGER, colorstr
from ultralytics.utils.torch_utils import unwrap_model

from ..blend import BLEND_KEY, collapse_blends, find_blends, set_blend
from ..bn import batchnorms, recalibrate_bn
from ..errors import ActSwapError

RECALIBRATE_KEY = "act_swap_recalibrate_bn"
_RAMP = "_yas_ramp_iters"  # trainer attribute: iterations of the ramp (None: no ramp running)
_BATCH = "_yas_batch_index"  # trainer attribute: index of the current batch within the epoch
PREFIX = colorstr("act-swap:")


def ramp_iterations(schedule, nb: int) -> int:
    """Iterations of a ramp ``{epochs: E}`` / ``{iterations: N}`` with ``nb`` batches per epoch."""
    if not isinstance(schedule, dict) or not schedule:
        raise ActSwapError(f"{BLEND_KEY}: {schedule!r} has no schedule; give {{epochs: E}} or {{iterations: N}}")
    if "iterations" in schedule:
        return max(1, int(schedule["iterations"]))
    return max(1, round(float(schedule["epochs"]) * nb))


def blend_alpha(ni: int, n_iters: int) -> float:
    """``a`` of batch ``ni`` (0-based, from the start of the run) in a ramp of ``n_iters`` iterations."""
    return min(1.0, (ni + 1) / n_iters)


def _yaml(trainer) -> dict:
    y = getattr(unwrap_model(trainer.model), "yaml", None)
    return y if isinstance(y, dict) else {}


def _models(trainer) -> list:
    """The trained model and its EMA (when there is one)."""
    ema = getattr(getattr(trainer, "ema", None), "ema", None)
    return [unwrap_model(trainer.model)] + ([ema] if ema is not None else [])


def on_train_start(trainer):
    """Recalibrate BatchNorm (fresh runs that ask for it) and start the blend ramp (when the model holds blends)."""
    _maybe_recalibrate(trainer)
    setattr(trainer, _RAMP, None)
    schedule = _yaml(trainer).get(BLEND_KEY)
    if schedule is None or not find_blends(trainer.model):
        return
    nb = len(trainer.train_loader)
    n = ramp_iterations(schedule, nb)
    total = trainer.epochs * nb
    if n > total:
        raise ActSwapError(f"the blended transition ({n} iterations) is longer than the run ({trainer.epochs} epochs of "
                           f"{nb} batches = {total} iterations); shorten --transition or train more epochs")
    setattr(trainer, _RAMP, n)
    done = trainer.start_epoch * nb
    LOGGER.info(f"{PREFIX} blended transition over {n} iterations ({n / nb:.3g} epochs); "
                f"{'resuming at a=' + format(blend_alpha(done - 1, n), '.4g') if done else 'starting at a=0'}")


def on_train_epoch_start(trainer):
    """Count batches from 0 in each epoch (also when ultralytics restarts an epoch)."""
    setattr(trainer, _BATCH, 0)


def on_train_batch_start(trainer):
    """Set ``a`` of every blend, in the model and its EMA, for this batch."""
    n = getattr(trainer, _RAMP, None)
    if n is None:
        return
    a = blend_alpha(trainer.epoch * len(trainer.train_loader) + getattr(trainer, _BATCH, 0), n)
    for m in _models(trainer):
        set_blend(m, a)


def on_train_batch_end(trainer):
    """After the batch that reached ``a = 1``: collapse the blends and restart the choice of ``best.pt``."""
    i = getattr(trainer, _BATCH, 0)
    setattr(trainer, _BATCH, i + 1)
    n = getattr(trainer, _RAMP, None)
    if n is None or blend_alpha(trainer.epoch * len(trainer.train_loader) + i, n) < 1.0:
        return
    count = [collapse_blends(m) for m in _models(trainer)][0]
    setattr(trainer, _RAMP, None)
    trainer.best_fitness = None  # best.pt: only models validated from here on
    stopper = getattr(trainer, "stopper", None)
    if stopper is not None:
        stopper.best_fitness, stopper.best_epoch = 0.0, trainer.epoch
    LOGGER.info(f"{PREFIX} blended transition done at epoch {trainer.epoch + 1}: {count} blends (and the EMA's) "
                "collapsed to the new activation; best.pt is chosen among the epochs from here on")


def _train_images(trainer, n: int):
    """Preprocessed training images, batch by batch, for up to ``n`` batches (more than one pass when needed)."""
    nb = max(1, len(trainer.train_loader))
    for _ in range(-(-n // nb) + 1):
        for batch in trainer.train_loader:
            yield trainer.preprocess_batch(batch)["img"]


def _maybe_recalibrate(trainer) -> None:
    """``act_swap_recalibrate_bn: N`` on a fresh run: refresh BN statistics from N training batches, copy them into
    the EMA, and drop the key."""
    n = _yaml(trainer).get(RECALIBRATE_KEY)
    if n is None:
        return
    for m in _models(trainer):
        y = getattr(m, "yaml", None)
        if isinstance(y, dict):
            y.pop(RECALIBRATE_KEY, None)
    if trainer.resume or not int(n):
        return
    model = unwrap_model(trainer.model)
    used = recalibrate_bn(model, _train_images(trainer, int(n)), n=int(n))
    ema = getattr(getattr(trainer, "ema", None), "ema", None)
    if ema is not None:  # the EMA was copied from the model before this point: give it the same statistics
        names = {id(m) for m in batchnorms(model)}
        state = {f"{p}.{k}": v for p, m in model.named_modules() if id(m) in names for k, v in m.state_dict().items()}
        ema.load_state_dict(state, strict=False)
    LOGGER.info(f"{PREFIX} BatchNorm statistics recalibrated on {used} training batches ({len(batchnorms(model))} "
                "BatchNorm layers)")
