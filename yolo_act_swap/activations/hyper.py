"""A dynamic activation's hyper-function (coefficients from the input's spatial mean), recorded inside the activation's
own autograd Function, so that the input has one consumer and one gradient.

DY-ReLU and Meta-ACON-C compute their coefficients from ``x.mean((2, 3))``. With the mean outside their Function, x
feeds two nodes of the graph and autograd adds the pooled branch's gradient into the dense input gradient itself: one
more full pass over the feature map, run with all of torch's threads whatever thread the Function's backward ran on.
Beside other processes that one parallel region waits for a descheduled thread (DY-ReLU-B at [8, 256, 20, 20], 2
threads, 2 CPU burners: 7.5 to 16 ms per training step, 7.6 to 8.0 ms with the pooled branch cut). Inside the Function
the mean's gradient is added block by block, on the Function's own thread or pool (``add_pooled_grad``).
"""

from __future__ import annotations

import torch

from .functional import chunk_slices, one_thread, pool_workers, pooled_mean, run_blocks

__all__ = ["MlpHyper", "PooledHyper"]


class PooledHyper:
    """``fn(x.mean((2, 3)))`` as its own small graph, forward and backward on one thread (``pool.one_thread_graph``
    does the same for a hyper-function outside a Function).

    Args:
        fn: the hyper-function, (N, C) pooled input -> a tensor or a tuple of tensors (the coefficients).
        x (torch.Tensor): the (N, C, H, W) input.
        params: the parameters ``fn`` uses.
        need_x (bool): the input needs its gradient (then the pooled input is a leaf of the small graph).
    """

    def __init__(self, fn, x: torch.Tensor, params, need_x: bool):
        self.leaf = pooled_mean(x).detach().requires_grad_(need_x)
        self.params = list(params)  # as given to the Function, in order: None where a module has no such tensor
        self.hw = x.shape[2] * x.shape[3]
        with torch.enable_grad(), one_thread():
            out = fn(self.leaf)
        self.outs = tuple(out) if isinstance(out, (tuple, list)) else (out,)

    def values(self) -> tuple:
        """The coefficients, detached from the small graph."""
        return tuple(o.detach() for o in self.outs)

    def backward(self, grads, need_params) -> tuple:
        """The gradients of the pooled input ((N, C), or None) and of each parameter (None where not needed), from
        the coefficients' gradients ``grads``. The small graph is kept for another backward through the same outer
        graph (``retain_graph``, gradcheck); it goes with the Function's node."""
        need = [bool(n) and p is not None for p, n in zip(self.params, need_params)]
        wrt = ([self.leaf] if self.leaf.requires_grad else []) + [p for p, n in zip(self.params, need) if n]
        pairs = [(o, g) for o, g in zip(self.outs, grads) if g is not None and o.requires_grad]
        got = iter(())
        if wrt and pairs:
            with one_thread():
                got = iter(torch.autograd.grad([o for o, _ in pairs], wrt, [g for _, g in pairs], retain_graph=True,
                                               allow_unused=True))
        g_pooled = next(got, None) if self.leaf.requires_grad else None
        g_params = tuple(next(got, None) if n else None for n in need)
        return g_pooled, g_params

    def add_pooled_grad(self, gx3: torch.Tensor, g_pooled: torch.Tensor | None, device: torch.device) -> None:
        """``gx += g_pooled / (H W)`` broadcast over the pixels of the dense input gradient, given as its (N, C, HW)
        NCHW view ``gx3`` (how both training functions hold it), in the Function's blocks."""
        if g_pooled is None:
            return
        g = (g_pooled / self.hw).to(gx3.dtype).unsqueeze(-1)  # (N, C, 1)
        blocks = chunk_slices(gx3)
        if not pool_workers(device, len(blocks), blocks.elements):  # its blocks would run in turn here: one op
            gx3.add_(g)
            return
        run_blocks(lambda b: gx3[b].add_(g[b]), blocks, device)


class MlpHyper(PooledHyper):
    """``PooledHyper`` for ``t = sigmoid(fc2(relu(fc1(mean))))`` (``nn.Linear`` layers with bias), mapped by
    ``t.view(shape) * scale + shift`` and split along the last dimension into ``split``-wide coefficients (DY-ReLU's
    hyper-function), with both directions written out: four small ops forward, about ten backward, and no autograd
    graph. On a small map the engine's cost per node was most of the hyper-function: DY-ReLU-B's forward and
    backward of it took 0.78 ms of a 2.05 ms training step at [8, 256, 20, 20], one thread.

    Runs with autocast off, in the pooled input's dtype (float32 under CPU autocast, where the input is float32).
    """

    def __init__(self, fc1, fc2, x: torch.Tensor, need_x: bool, shape, scale, shift, split: int):
        self.params = [fc1.weight, fc1.bias, fc2.weight, fc2.bias]
        self.hw = x.shape[2] * x.shape[3]
        self.need_x, self.shape, self.split = need_x, tuple(shape), split
        with torch.no_grad(), torch.autocast(x.device.type, enabled=False), one_thread():
            p = pooled_mean(x)
            w1, b1, w2, b2 = (t.detach().to(p.dtype) for t in self.params)
            h = torch.addmm(b1, p, w1.t()).relu_()
            t = torch.addmm(b2, h, w2.t()).sigmoid_()
            self.scale = scale.to(p.dtype)
            out = torch.addcmul(shift.to(p.dtype), t.view(self.shape), self.scale)
        self.saved = (p, h, t, w1, w2)
        self.outs = out.split(split, -1)

    def values(self) -> tuple:
        """The coefficients (no graph to detach from)."""
        return self.outs

    def backward(self, grads, need_params) -> tuple:
        """As ``PooledHyper.backward``, by hand: through the affine map, the sigmoid, fc2, the ReLU and fc1."""
        p, h, t, w1, w2 = self.saved
        need = [bool(n) for n in need_params]
        if not (self.need_x or any(need)) or all(g is None for g in grads):
            return None, (None,) * len(self.params)
        with torch.no_grad(), torch.autocast(p.device.type, enabled=False), one_thread():
            parts = [g.to(p.dtype) if g is not None else torch.zeros_like(o) for g, o in zip(grads, self.outs)]
            g_out = torch.cat(parts, -1)
            dz2 = (g_out * self.scale).view(t.shape).mul_(t).mul_(1 - t)  # through the sigmoid
            dh = (dz2 @ w2).mul_(h > 0) if self.need_x or need[0] or need[1] else None
            g_params = (
                dh.t() @ p if need[0] else None,
                dh.sum(0) if need[1] else None,
                dz2.t() @ h if need[2] else None,
                dz2.sum(0) if need[3] else None,
            )
            g_pooled = dh @ w1 if self.need_x else None
        return g_pooled, tuple(g.to(q.dtype) if g is not None else None for g, q in zip(g_params, self.params))
