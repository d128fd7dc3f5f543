"""The callbacks ``ActSwapTrainer`` adds to ultralytics' trainer events, in one place.

They are plain module-level functions, not bound methods: ultralytics' DDP launcher pickles ``trainer.callbacks`` by
reference. Features that act during training (activation transitions, BN recalibration, swap summaries) add their
functions to ``CALLBACKS`` rather than overriding trainer methods.
"""

from __future__ import annotations

import time

from . import transition
from .amp import decide_amp
from .layout import restore_channels_last


def on_train_epoch_start(trainer):
    """Start the epoch's clock (training throughput in ``act_swap_result.json``)."""
    trainer._yas_epoch_t0 = time.time()


def on_train_epoch_end(trainer):
    """Add the epoch's training time and images to the trainer's totals."""
    t0 = getattr(trainer, "_yas_epoch_t0", None)
    if t0 is not None:
        trainer._yas_train_s = getattr(trainer, "_yas_train_s", 0.0) + time.time() - t0
        trainer._yas_train_imgs = getattr(trainer, "_yas_train_imgs", 0) + len(trainer.train_loader.dataset)


# ultralytics event -> our callbacks, added after ultralytics' own (and integrations') callbacks
CALLBACKS = {
    "on_pretrain_routine_end": [restore_channels_last, decide_amp],
    "on_train_start": [transition.on_train_start],
    "on_train_epoch_start": [on_train_epoch_start, transition.on_train_epoch_start],
    "on_train_batch_start": [transition.on_train_batch_start],
    "on_train_batch_end": [transition.on_train_batch_end],
    "on_train_epoch_end": [on_train_epoch_end],
}


def add_callbacks(trainer) -> None:
    """Register every function of ``CALLBACKS`` on ``trainer`` (once)."""
    for event, fns in CALLBACKS.items():
        for fn in fns:
            if fn not in trainer.callbacks.get(event, []):
                trainer.add_callback(event, fn)
