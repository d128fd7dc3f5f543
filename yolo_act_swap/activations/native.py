"""Fused CPU kernels for FReLU, ACON-C and two-piece DY-ReLU, with or without C's attention (``kernels.c``): built
once per machine, called per block.

The eager block functions of ``acon.py``, ``dyrelu_autograd.py`` and ``frelu.py`` run five to fourteen whole-block ops
each, and on CPU every op costs about a pass over memory. ``kernels.c`` does a block's forward, or its backward with
the per-channel sums, in one pass (FReLU: two each way, see ``frelu_fused.py``). It is plain C with no torch headers:
a C compiler builds it once per machine (2-3 s), ctypes calls it (and releases the GIL, so the worker pool of
``pool.py`` still shares a pass's blocks among threads), and on x86-64 GCC builds AVX-512, AVX2 and baseline versions
that the loader picks from at run time.

When it is used: float32 CPU tensors whose (sample, channel) planes are contiguous, that is NCHW (the training
functions make their input NCHW anyway); everything else runs the eager blocks. ``YOLO_ACT_SWAP_NATIVE`` chooses:
``auto`` (the default: build on first use, fall back to the eager blocks, with one warning, where no compiler works),
``0`` (never) or ``1`` (required: a failed build raises). ``use_native(False)`` switches it off in code.

The library is built from the packaged source only, into ``$YOLO_ACT_SWAP_CACHE`` (default
``~/.cache/yolo_act_swap``, or under ``$XDG_CACHE_HOME``) as ``kernels-<hash>.so``, where the hash covers the source,
the compiler and its flags. That folder is created owner-only; a folder or library that another user owns or can
write is refused (a library loaded from it runs as your code). A build goes to a temporary file and is renamed into
place, so processes that build at once (DDP ranks, sweep trials) never load a half-written file.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import platform
import shutil
import stat
import subprocess
import tempfile
import threading
from pathlib import Path

import torch

from ..errors import ActSwapError, warn
from .functional import chunk_slices, small_pass

__all__ = [
    "FLAGS",
    "NativeError",
    "SOURCE",
    "acon_backward",
    "acon_forward",
    "available",
    "blocks",
    "cache_dir",
    "check_block",
    "check_rows",
    "check_strides",
    "dyrelu2_backward",
    "dyrelu2_forward",
    "dyrelu2_pi_backward",
    "dyrelu2_pi_forward",
    "library",
    "usable",
    "use_native",
]

SOURCE = Path(__file__).with_name("kernels.c")
# -fno-trapping-math lets GCC vectorise the exponential's clamps (no floating-point exceptions are relied on);
# YAS_CLONES builds the AVX-512 / AVX2 / baseline clones on x86-64 GCC
FLAGS = (
    "-O3", "-std=c11", "-shared", "-fPIC", "-fopenmp-simd", "-fno-trapping-math", "-fno-math-errno", "-DYAS_CLONES",
)
BUILD_TIMEOUT_S = 120
_P, _I = ctypes.c_void_p, ctypes.c_int64
_SIGNATURES = {  # pointers, then int64 sizes and strides (see kernels.c); the FReLU kernels return 0 or -1
    "yas_acon_forward": (3, 9),
    "yas_acon_backward": (5, 13),
    "yas_dyrelu2_forward": (3, 9),
    "yas_dyrelu2_backward": (5, 13),
    "yas_dyrelu2_pi_forward": (4, 10),
    "yas_dyrelu2_pi_backward": (7, 15),
    "yas_frelu_stats": (4, 9),
    "yas_frelu_forward": (5, 9),
    "yas_frelu_backward_sums": (6, 11),
    "yas_frelu_backward": (9, 15),
}
_LOCK = threading.Lock()
_STATE: dict = {}  # "lib": the loaded library or None after a failed build; "enabled": use_native's switch


class NativeError(ActSwapError, RuntimeError):
    """The fused kernels were required (``YOLO_ACT_SWAP_NATIVE=1``) but could not be built or loaded, or the switch
    has a value it does not know (the CLI prints the one line and exits with code 2)."""


def _mode() -> str:
    value = os.environ.get("YOLO_ACT_SWAP_NATIVE", "auto").strip().lower()
    if value in ("0", "false", "no", "off"):
        return "off"
    if value in ("1", "true", "yes", "on"):
        return "on"
    if value in ("", "auto"):
        return "auto"
    raise NativeError(f"YOLO_ACT_SWAP_NATIVE must be auto, 0 or 1, got {value!r}")


def cache_dir() -> Path:
    """Where built libraries go: ``$YOLO_ACT_SWAP_CACHE``, else ``$XDG_CACHE_HOME/yolo_act_swap``, else
    ``~/.cache/yolo_act_swap``."""
    if os.environ.get("YOLO_ACT_SWAP_CACHE"):
        return Path(os.environ["YOLO_ACT_SWAP_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "yolo_act_swap"


def _compiler() -> str | None:
    return shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc") or shutil.which("clang")


def _private(path: Path, directory: bool) -> None:
    """Raise unless ``path`` is ours and no one else can write it (a library loaded from it runs as our code)."""
    st = os.lstat(path)
    kind_ok = stat.S_ISDIR(st.st_mode) if directory else stat.S_ISREG(st.st_mode)
    if not kind_ok:
        raise NativeError(f"{path} is not a {'folder' if directory else 'regular file'}")
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        raise NativeError(f"{path} belongs to another user")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise NativeError(f"{path} is writable by other users; remove it or run chmod go-w on it")


def _library_path(compiler: str) -> Path:
    key = hashlib.sha256()
    for part in (SOURCE.read_bytes(), os.path.realpath(compiler).encode(), " ".join(FLAGS).encode(),
                 platform.machine().encode(), platform.system().encode()):
        key.update(part)
        key.update(b"\0")
    return cache_dir() / f"kernels-{key.hexdigest()[:16]}.so"


def _build(compiler: str, target: Path) -> None:
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    _private(target.parent, directory=True)
    fd, tmp = tempfile.mkstemp(prefix=".build-", suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        run = subprocess.run(  # our packaged source, a compiler from PATH, no shell
            [compiler, *FLAGS, str(SOURCE), "-o", tmp], capture_output=True, text=True, timeout=BUILD_TIMEOUT_S
        )
        if run.returncode != 0:
            raise NativeError(f"{compiler} failed to build {SOURCE.name}: {run.stderr.strip()[-500:]}")
        os.chmod(tmp, 0o700)
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _load() -> ctypes.CDLL:
    if os.name != "posix":
        raise NativeError("the fused kernels are built on POSIX systems only")
    compiler = _compiler()
    if compiler is None:
        raise NativeError("no C compiler found (set CC, or install gcc or clang)")
    path = _library_path(compiler)
    if not path.exists():
        _build(compiler, path)
    _private(path.parent, directory=True)
    _private(path, directory=False)
    lib = ctypes.CDLL(str(path))
    for name, (pointers, ints) in _SIGNATURES.items():
        fn = getattr(lib, name)
        fn.argtypes = [_P] * pointers + [_I] * ints
        fn.restype = ctypes.c_int if name.startswith("yas_frelu") else None
    return lib


def library() -> ctypes.CDLL | None:
    """The loaded kernels, building them on first use; None when switched off or (mode ``auto``) not buildable."""
    if _mode() == "off" or not _STATE.get("enabled", True):
        return None
    if "lib" not in _STATE:
        with _LOCK:
            if "lib" not in _STATE:
                try:
                    _STATE["lib"] = _load()
                except (NativeError, OSError, subprocess.SubprocessError) as e:
                    if _mode() == "on":
                        raise NativeError(f"YOLO_ACT_SWAP_NATIVE=1 but the fused kernels are unavailable: {e}; "
                                          "set YOLO_ACT_SWAP_NATIVE=auto to run without them") from e
                    warn(f"fused CPU kernels unavailable, using the eager blocks ({e})")
                    _STATE["lib"] = None
    return _STATE["lib"]


def available() -> bool:
    """Whether the fused kernels are in use in this process (building them if needed)."""
    return library() is not None


@contextlib.contextmanager
def use_native(enabled: bool):
    """Switch the fused kernels on or off inside the block (tests, benchmarks: the eager blocks side by side)."""
    before = _STATE.get("enabled", True)
    _STATE["enabled"] = bool(enabled)
    try:
        yield
    finally:
        _STATE["enabled"] = before


def usable(x: torch.Tensor) -> bool:
    """Whether a pass over ``x`` (an (N, C, L) block view source) runs the fused kernels: float32, CPU, NCHW planes,
    not while tracing, and the library loads."""
    return (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and x.stride(-1) == 1
        and not torch.jit.is_tracing()
        and not torch.jit.is_scripting()
        and library() is not None
    )


def blocks(x3: torch.Tensor, fused: bool):
    """``functional.chunk_slices(x3)``, except with the fused kernels: a pass too small for the worker pool is one
    block (one call, and no temporaries that cache-sized blocks would keep in cache), a larger one about eight. A
    kernel call costs about 17 us of Python (slicing and argument checks, under the GIL); the pool's 16 blocks of a
    [8, 64, 80, 80] map took 1.26 ms at 2 threads against 0.77-0.99 ms in 8 blocks."""
    if not fused:
        return chunk_slices(x3)
    return chunk_slices(x3, x3.numel() if small_pass(x3.device, x3.numel()) else max(x3.numel() // 8, 1))


def check_strides(t: torch.Tensor, shape: tuple, name: str, dtype: torch.dtype = torch.float32) -> tuple:
    """``t``'s first two strides for a block of ``shape`` (nb, cb, L|M); a size-1 dimension broadcasts (stride 0).
    Checks what the C code relies on: the dtype, CPU, the sizes, and a contiguous last dimension."""
    if t.dtype != dtype or t.device.type != "cpu" or t.dim() != 3:
        raise ValueError(f"{name}: a 3-D {dtype} CPU tensor expected, got {tuple(t.shape)} {t.dtype} {t.device}")
    if t.shape[-1] != shape[2] or (t.shape[-1] > 1 and t.stride(-1) != 1):
        raise ValueError(f"{name}: last dimension of {shape[2]} contiguous elements expected, got {tuple(t.shape)}")
    out = []
    for d in (0, 1):
        if t.shape[d] == shape[d]:
            out.append(t.stride(d) if shape[d] > 1 else 0)
        elif t.shape[d] == 1:
            out.append(0)
        else:
            raise ValueError(f"{name}: shape {tuple(t.shape)} does not broadcast to {shape[:2]}")
    return tuple(out)


def check_block(xs: torch.Tensor) -> tuple:
    if xs.dim() != 3:
        raise ValueError(f"x: a 3-D (samples, channels, pixels) block expected, got shape {tuple(xs.shape)}")
    return tuple(xs.shape)


def check_rows(t: torch.Tensor, shape: tuple, name: str, dtype: torch.dtype = torch.float32) -> tuple:
    """``check_strides`` for an output the C code writes one row per plane of: no broadcast dimension (two planes would
    write the same row)."""
    st = check_strides(t, shape, name, dtype)
    if (shape[0] > 1 and st[0] == 0) or (shape[1] > 1 and st[1] == 0):
        raise ValueError(f"{name} must have one row per plane")
    return st


def _forward(fn: str, width: int, xs, coef, out) -> None:
    nb, cb, length = check_block(xs)
    plane = (nb, cb, length)
    if out.shape != xs.shape:
        raise ValueError(f"output {tuple(out.shape)} does not match the input {tuple(xs.shape)}")
    strides = (*check_strides(xs, plane, "x"), *check_rows(out, plane, "out"),
               *check_strides(coef, (nb, cb, width), "coef"))
    getattr(library(), fn)(xs.data_ptr(), out.data_ptr(), coef.data_ptr(), nb, cb, length, *strides)


def _backward(fn: str, width: int, xs, gs, coef, gxs, sums) -> None:
    nb, cb, length = check_block(xs)
    plane = (nb, cb, length)
    if gs.shape != xs.shape or (gxs is not None and gxs.shape != xs.shape) or sums.shape != (nb, cb, width):
        raise ValueError("gradient, input gradient and sums must match the input block")
    gx_strides = check_rows(gxs, plane, "gx") if gxs is not None else (0, 0)
    strides = (*check_strides(xs, plane, "x"), *check_strides(gs, plane, "g"), *gx_strides,
               *check_strides(coef, (nb, cb, width), "coef"), *check_rows(sums, (nb, cb, width), "sums"))
    gx_ptr = gxs.data_ptr() if gxs is not None else None
    getattr(library(), fn)(xs.data_ptr(), gs.data_ptr(), gx_ptr, coef.data_ptr(), sums.data_ptr(), nb, cb, length,
                           *strides)


def acon_forward(xs: torch.Tensor, coef: torch.Tensor, out: torch.Tensor) -> None:
    """``out = x (d sigmoid(beta d x) + p2)`` for an (nb, cb, L) block; ``coef`` (1|nb, 1|cb, 3) rows of
    (beta d, d, p2)."""
    _forward("yas_acon_forward", 3, xs, coef, out)


def acon_backward(xs, gs, coef, gxs, sums) -> None:
    """ACON-C's backward for a block: ``gxs`` (or None) gets ``g (d q + p2)``; ``sums`` (nb, cb, 3) gets per plane
    ``sum g x``, ``sum g x q`` and ``sum g x^2 s (1 - s)`` (``q = s + v s (1 - s)``, ``s = sigmoid(v)``,
    ``v = beta d x``)."""
    _backward("yas_acon_backward", 3, xs, gs, coef, gxs, sums)


def dyrelu2_forward(xs: torch.Tensor, coef: torch.Tensor, out: torch.Tensor) -> None:
    """``out = max(a0 x + b0, a1 x + b1)`` for an (nb, cb, L) block; ``coef`` (1|nb, 1|cb, 4) rows of
    (a0, a1, b0, b1)."""
    _forward("yas_dyrelu2_forward", 4, xs, coef, out)


def dyrelu2_backward(xs, gs, coef, gxs, sums) -> None:
    """Two-piece DY-ReLU's backward for a block, ``coef`` rows of (a0, b0, a1 - a0, b1 - b0): ``gxs`` (or None)
    gets ``a0 g + (a1 - a0) gm`` (``gm``: g where piece 1 wins, else 0); ``sums`` (nb, cb, 4) gets per plane
    ``sum g x``, ``sum gm x``, ``sum g`` and ``sum gm``."""
    _backward("yas_dyrelu2_backward", 4, xs, gs, coef, gxs, sums)


def dyrelu2_pi_forward(xs, pis, coef, out) -> None:
    """``out = pi max(a0 x + b0, a1 x + b1)`` for an (nb, cb, L) block, ``pis`` (nb, 1, L) DY-ReLU-C's attention of
    the block's samples."""
    nb, cb, length = check_block(xs)
    plane = (nb, cb, length)
    if out.shape != xs.shape:
        raise ValueError(f"output {tuple(out.shape)} does not match the input {tuple(xs.shape)}")
    ps0 = check_rows(pis, (nb, 1, length), "pi")[0]
    strides = (*check_strides(xs, plane, "x"), ps0, *check_rows(out, plane, "out"),
               *check_strides(coef, (nb, cb, 4), "coef"))
    library().yas_dyrelu2_pi_forward(xs.data_ptr(), pis.data_ptr(), out.data_ptr(), coef.data_ptr(), nb, cb, length,
                                     *strides)


def dyrelu2_pi_backward(xs, gs, pis, coef, gxs, gpis, sums) -> None:
    """``dyrelu2_backward`` with the gradient multiplied by ``pis`` (nb, 1, L); ``gpis`` (nb, 1, L, zeroed, or None)
    gets the block's part of pi's gradient, ``sum_c g max(a0 x + b0, a1 x + b1)`` per pixel."""
    nb, cb, length = check_block(xs)
    plane = (nb, cb, length)
    if gs.shape != xs.shape or (gxs is not None and gxs.shape != xs.shape) or sums.shape != (nb, cb, 4):
        raise ValueError("gradient, input gradient and sums must match the input block")
    ps0 = check_rows(pis, (nb, 1, length), "pi")[0]
    gx_strides = check_rows(gxs, plane, "gx") if gxs is not None else (0, 0)
    gps0 = check_rows(gpis, (nb, 1, length), "gpi")[0] if gpis is not None else 0
    strides = (*check_strides(xs, plane, "x"), *check_strides(gs, plane, "g"), ps0, *gx_strides, gps0,
               *check_strides(coef, (nb, cb, 4), "coef"), *check_rows(sums, (nb, cb, 4), "sums"))
    ptrs = [t.data_ptr() if t is not None else None for t in (xs, gs, pis, gxs, gpis, coef, sums)]
    library().yas_dyrelu2_pi_backward(*ptrs, nb, cb, length, *strides)
