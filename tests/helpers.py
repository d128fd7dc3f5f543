"""Plain helpers shared by several test modules (fixtures live in conftest.py)."""

import torch
import torch.nn as nn


@torch.no_grad()
def randomize(m: nn.Module, seed: int = 0) -> nn.Module:
    """Random parameters and BN statistics, so that a formula check exercises every term (not just a ReLU-like init)."""
    g = torch.Generator().manual_seed(seed)
    for p in m.parameters():
        p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    for mod in m.modules():
        if isinstance(mod, nn.modules.batchnorm._BatchNorm) and mod.running_mean is not None:
            mod.running_mean.copy_(torch.randn(mod.running_mean.shape, generator=g) * 0.2)
            mod.running_var.copy_(torch.rand(mod.running_var.shape, generator=g) + 0.5)
    return m
