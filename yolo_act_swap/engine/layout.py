"""channels_last (NHWC) training and validation, with ultralytics' own ``channels_last`` argument.

Ultralytics 8.4 reads ``channels_last`` (default None: automatic) in two places: its trainer moves the model to
``torch.channels_last`` on CUDA only (None or True) and ignores True elsewhere with a warning, and ``AutoBackend``
(standalone validation, prediction) uses it on CUDA and on x86 CPUs with oneDNN (None there means on). It saves
checkpoints in NCHW either way, so a checkpoint from a channels_last run loads anywhere as usual.

yolo-act-swap keeps all of that and adds the CPU training that ultralytics refuses: every registered activation
takes and returns channels_last tensors with the same values (``tests/test_activations.py``), and FReLU/ACON models
train faster in that layout on CPU (``docs/performance.md``). With ``channels_last=True`` on a CPU device the trainer
moves the model to channels_last itself (``ActSwapTrainer.setup_model``, so that its EMA copy follows), hides the
value from ultralytics' setup so that it does not warn that it is ignored (``defer_cpu_channels_last``), and puts it
back once the setup is done (``restore_channels_last``, an ``on_pretrain_routine_end`` callback), so that the saved
``train_args`` and a ``--resume`` keep it. Batches follow the model's layout in the trainer's ``preprocess_batch``
and in the validator's ``preprocess`` (``batch_to_layout``). MPS stays as ultralytics has it (refused: wrong results).
"""

from __future__ import annotations

import torch

_DEFERRED = "_yas_cpu_channels_last"  # trainer attribute: True while ultralytics' setup must not see the request


def is_channels_last(model: torch.nn.Module) -> bool:
    """True when ``model``'s first conv whose weight tells the layouts apart holds it in ``torch.channels_last``.

    (A 1x1 kernel's weight, or a depthwise one's, is contiguous in both layouts and cannot tell.) ``model`` may be
    ultralytics' ``AutoBackend`` (standalone validation), whose PyTorch model is not a submodule.
    """
    inner = getattr(getattr(model, "backend", None), "model", None)
    model = inner if isinstance(inner, torch.nn.Module) else model
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d) and m.weight.ndim == 4:
            nhwc, nchw = m.weight.is_contiguous(memory_format=torch.channels_last), m.weight.is_contiguous()
            if nhwc != nchw:
                return nhwc
    return False


def batch_to_layout(batch: dict, channels_last: bool) -> dict:
    """``batch["img"]`` in channels_last when ``channels_last`` (other entries unchanged)."""
    img = batch.get("img")
    if channels_last and isinstance(img, torch.Tensor) and img.ndim == 4:
        batch["img"] = img.contiguous(memory_format=torch.channels_last)
    return batch


def defer_cpu_channels_last(trainer) -> bool:
    """Before ultralytics' setup reads ``args.channels_last``: on a CPU device with ``channels_last=True``, hide the
    request from it (ultralytics would ignore it with a warning) and return True: the caller moves the model."""
    if getattr(trainer, _DEFERRED, False):
        return True
    if trainer.args.channels_last is True and trainer.device.type == "cpu":
        setattr(trainer, _DEFERRED, True)
        trainer.args.channels_last = False
        return True
    return False


def restore_channels_last(trainer) -> None:
    """``on_pretrain_routine_end``: give ``args.channels_last`` (and the validator's copy of the args) its value
    back, so that checkpoints record it, a resume keeps it and the final validation of best.pt uses it."""
    if not getattr(trainer, _DEFERRED, False):
        return
    setattr(trainer, _DEFERRED, False)
    trainer.args.channels_last = True
    validator = getattr(trainer, "validator", None)
    if validator is not None and getattr(validator, "args", None) is not None:
        validator.args.channels_last = True
