"""The argument checks and ctypes calls of FReLU's fused C kernels (``kernels.c``, built by ``native.py``), block by
block: the conv-statistics pass, the forward pass, and the backward's two passes (``frelu_fused.py`` runs them)."""

from __future__ import annotations

import torch

from .native import check_block, check_rows, check_strides, library

__all__ = ["frelu_backward", "frelu_backward_sums", "frelu_forward", "frelu_stats"]


def _channel_params(cb: int, k: int, weight, bias, *rows) -> list:
    """Pointers to the per-channel parameters of a FReLU block: weight (cb, k, k), bias (cb,) or None, and each of
    ``rows`` ((cb, width), width given) contiguous float32 on CPU; raises ValueError otherwise."""
    ptrs = []
    for t, shape, name in ((weight, (cb, k, k), "weight"), (bias, (cb,), "bias"),
                           *((r, (cb, width), "coefficients") for r, width in rows)):
        if t is None and name == "bias":
            ptrs.append(None)
            continue
        if tuple(t.shape) != shape or t.dtype != torch.float32 or t.device.type != "cpu" or not t.is_contiguous():
            raise ValueError(f"{name}: a contiguous float32 CPU tensor of shape {shape} expected, got "
                             f"{tuple(t.shape)} {t.dtype}")
        ptrs.append(t.data_ptr())
    return ptrs


def _frelu_block(xs: torch.Tensor, hw: tuple, weight: torch.Tensor) -> tuple:
    nb, cb, length = check_block(xs)
    h, w = (int(v) for v in hw)
    k = int(weight.shape[-1]) if weight.dim() == 3 else -1
    if h * w != length or h < 1 or w < 1 or k < 1 or k % 2 == 0:
        raise ValueError(
            f"planes of {h}x{w} and an odd kernel expected, got {length} elements and {tuple(weight.shape)}"
        )
    return nb, cb, h, w, k


def _check(status: int) -> None:
    if status != 0:
        raise MemoryError("the fused FReLU kernel could not allocate its row buffers")


def frelu_stats(xs, hw, weight, bias, sums) -> None:
    """Per plane of an (nb, cb, H*W) block, ``sums`` (nb, cb, 2, float64) gets ``sum c`` and ``sum c^2`` of the
    depthwise conv output ``c`` (weight (cb, k, k), bias (cb,) or None)."""
    nb, cb, h, w, k = _frelu_block(xs, hw, weight)
    ptrs = _channel_params(cb, k, weight, bias)
    strides = (*check_strides(xs, (nb, cb, h * w), "x"), *check_rows(sums, (nb, cb, 2), "sums", torch.float64))
    _check(library().yas_frelu_stats(xs.data_ptr(), *ptrs, sums.data_ptr(), nb, cb, h, w, k, *strides))


def frelu_forward(xs, hw, weight, bias, ab, out) -> None:
    """``out = max(x, A conv(x) + B)`` for an (nb, cb, H*W) block; ``ab`` (cb, 2) rows of (A, B)."""
    nb, cb, h, w, k = _frelu_block(xs, hw, weight)
    if out.shape != xs.shape:
        raise ValueError(f"output {tuple(out.shape)} does not match the input {tuple(xs.shape)}")
    ptrs = _channel_params(cb, k, weight, bias, (ab, 2))
    strides = (*check_strides(xs, (nb, cb, h * w), "x"), *check_rows(out, (nb, cb, h * w), "out"))
    _check(library().yas_frelu_forward(xs.data_ptr(), *ptrs, out.data_ptr(), nb, cb, h, w, k, *strides))


def frelu_backward_sums(xs, gs, hw, weight, bias, ab, sums) -> None:
    """Per plane, ``sums`` (nb, cb, 2, float64) gets ``sum gt`` and ``sum gt c`` (gt: g where the funnel won)."""
    nb, cb, h, w, k = _frelu_block(xs, hw, weight)
    if gs.shape != xs.shape:
        raise ValueError("the gradient must match the input block")
    x_ptr, g_ptr = xs.data_ptr(), gs.data_ptr()
    ptrs = _channel_params(cb, k, weight, bias, (ab, 2))
    plane = (nb, cb, h * w)
    strides = (*check_strides(xs, plane, "x"), *check_strides(gs, plane, "g"),
               *check_rows(sums, (nb, cb, 2), "sums", torch.float64))
    _check(library().yas_frelu_backward_sums(x_ptr, g_ptr, *ptrs, sums.data_ptr(), nb, cb, h, w, k, *strides))


def frelu_backward(xs, gs, hw, weight, bias, ab, kab, gxs, gw, gb) -> None:
    """FReLU's backward for a block, ``kab`` (cb, 3) rows of the BN backward's (k, a, b): ``gxs`` (or None) gets the
    input gradient; per plane ``gw`` (nb, cb, k*k, float64, or None) the conv weight's and ``gb`` (nb, cb, 1, float64,
    or None) the conv bias's gradient."""
    nb, cb, h, w, k = _frelu_block(xs, hw, weight)
    if gs.shape != xs.shape or (gxs is not None and gxs.shape != xs.shape):
        raise ValueError("the gradient and the input gradient must match the input block")
    ptrs = _channel_params(cb, k, weight, bias, (ab, 2), (kab, 3))
    plane = (nb, cb, h * w)
    outs, strides = [], [*check_strides(xs, plane, "x"), *check_strides(gs, plane, "g")]
    for t, shape, name, dtype in ((gxs, plane, "gx", torch.float32), (gw, (nb, cb, k * k), "gw", torch.float64),
                                  (gb, (nb, cb, 1), "gb", torch.float64)):
        st = check_rows(t, shape, name, dtype) if t is not None else (0, 0)
        outs.append(t.data_ptr() if t is not None else None)
        strides += st
    _check(library().yas_frelu_backward(xs.data_ptr(), gs.data_ptr(), *ptrs, *outs, nb, cb, h, w, k, *strides))
