"""BatchNorm recalibration: refresh every BatchNorm's running statistics from data, changing nothing else.

After an abrupt activation swap the network's BatchNorm statistics describe the old activation's features, so the
first validations of a fine-tune run on statistics that no longer fit. Forwarding a few training batches in train
mode, without gradients, and averaging their batch statistics (``momentum=None``: a cumulative average, as in
``torch.optim.swa_utils.update_bn``) is the cheapest repair and a baseline for the blended transition.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn as nn

__all__ = ["batchnorms", "recalibrate_bn"]

_BN = nn.modules.batchnorm._BatchNorm


def batchnorms(model: nn.Module) -> list[nn.Module]:
    """The BatchNorm layers of ``model`` that keep running statistics."""
    return [m for m in model.modules() if isinstance(m, _BN) and m.track_running_stats and m.running_mean is not None]


@torch.no_grad()
def recalibrate_bn(model: nn.Module, batches: Iterable[torch.Tensor], n: int | None = None) -> int:
    """Recompute every BatchNorm's running mean and variance as the average over ``n`` batches of ``batches``.

    The model runs in train mode without gradients; parameters, other buffers and the model's mode are left as they
    were, and each BatchNorm's momentum is restored. Batches of one image are skipped (train-mode BatchNorm cannot
    use them); when no batch is used the statistics stay as they were.

    Args:
        model (nn.Module): the model (its forward takes the batch tensor).
        batches (Iterable[torch.Tensor]): preprocessed input batches, on the model's device.
        n (int, optional): how many batches to use (default: all of ``batches``).

    Returns:
        (int): the number of batches used.

    Examples:
        >>> images = (b["img"].float().div(255).to(device) for b in train_loader)
        >>> recalibrate_bn(model, images, n=50)
    """
    bns = batchnorms(model)
    momenta = [m.momentum for m in bns]
    saved = [{k: v.clone() for k, v in m.state_dict().items()} for m in bns]  # put back if no batch is used
    modes = {m: m.training for m in model.modules()}
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average over the batches below
    used = 0
    try:
        model.train()
        for x in batches:
            if n is not None and used >= n:
                break
            if x.shape[0] < 2:
                continue
            model(x)
            used += 1
    finally:
        for m, momentum, state in zip(bns, momenta, saved):
            m.momentum = momentum
            if not used:
                m.load_state_dict(state)
        for m, training in modes.items():
            m.training = training
    return used
