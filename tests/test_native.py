"""The fused CPU kernels (``activations/native.py`` + ``kernels.c``): the same numbers as the eager blocks in every
path that uses them (training, eval, the worker pool, strided blocks, broadcast coefficients, NaN and infinity), the
argument checks that guard the C code, and the build cache treated as hostile (other users' folders, symlinks,
concurrent builds, no compiler). Speed is measured in ``benchmarks/activations.py --eager``."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import randomize

from yolo_act_swap.activations import create_activation, functional, native, pool

pytestmark = pytest.mark.usefixtures("one_thread")

needs_kernels = pytest.mark.skipif(native._compiler() is None or os.name != "posix", reason="no C compiler here")
FUSED = [("acon_c", {}), ("meta_acon_c", {}), ("meta_acon_c", {"bn": False}), ("dy_relu_a", {}), ("dy_relu_b", {}),
         ("dy_relu_c", {}), ("dy_relu_c", {"temperature": 1.0, "gamma": 2.0}),
         ("frelu", {}), ("frelu", {"kernel_size": 5}), ("frelu", {"kernel_size": 1}), ("frelu", {"recompute": False})]
IDS = [n + "".join(f"-{k}={v}" for k, v in kw.items()) for n, kw in FUSED]
SHAPES = [(2, 6, 5, 7), (1, 6, 4, 3), (3, 6, 1, 1), (2, 5, 9, 13)]  # odd plane sizes: the kernels' tail loops


def _step(m, x, w):
    x = x.detach().clone().requires_grad_()
    m.zero_grad(set_to_none=True)
    y = m(x)
    (y * w).sum().backward()
    with torch.no_grad():
        ye = copy.deepcopy(m).eval()(x)
        folded = copy.deepcopy(m).eval()
        yf = folded.fuse()(x) if hasattr(folded, "fuse") else ye
    buffers = [b for b in m.buffers() if b.is_floating_point()]  # BN running statistics
    return [y.detach(), ye, yf, x.grad, *buffers] + [p.grad for p in m.parameters() if p.grad is not None]


def _both(name, kwargs, shape, layout=torch.contiguous_format, seed=0):
    torch.manual_seed(seed)
    m = randomize(create_activation(name, shape[1], **kwargs), seed).train()
    g = torch.Generator().manual_seed(seed + 1)
    x = (torch.randn(shape, generator=g) * 3).contiguous(memory_format=layout)
    w = torch.randn(shape, generator=g)
    with native.use_native(True):
        fused = _step(copy.deepcopy(m), x, w)
    with native.use_native(False):
        eager = _step(copy.deepcopy(m), x, w)
    return fused, eager


def _close(fused, eager):
    assert len(fused) == len(eager)
    for a, b in zip(fused, eager):  # gradients of biases ahead of a BN are ~0 (noise): scale by the largest value
        torch.testing.assert_close(a, b, atol=1e-5 * max(float(b.abs().max()), 1.0), rtol=1e-5)


@needs_kernels
def test_kernels_build_and_load():
    assert native.available()
    lib = native.library()
    assert all(hasattr(lib, f) for f in native._SIGNATURES)


@needs_kernels
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name,kwargs", FUSED, ids=IDS)
def test_fused_equals_eager(name, kwargs, shape):
    """Forward, eval forward, input and parameter gradients: the C kernels give the eager blocks' numbers."""
    _close(*_both(name, kwargs, shape))


@needs_kernels
@pytest.mark.parametrize("name,kwargs", FUSED, ids=IDS)
def test_fused_equals_eager_channels_last(name, kwargs):
    fused, eager = _both(name, kwargs, (2, 6, 5, 7), torch.channels_last)
    assert fused[0].is_contiguous(memory_format=torch.channels_last)
    _close(fused, eager)


@needs_kernels
@pytest.mark.parametrize("name,kwargs", FUSED, ids=IDS)
def test_fused_equals_eager_on_the_pool(name, kwargs, monkeypatch):
    """Two threads, tiny blocks: channel ranges of one sample (strided views) go to the pool's workers, which call the
    C code with the GIL released."""
    n = torch.get_num_threads()
    torch.set_num_threads(2)
    monkeypatch.setattr(functional, "CHUNK_ELEMENTS", 40)
    monkeypatch.setattr(functional, "MIN_CHUNK_ELEMENTS", 1)
    monkeypatch.setattr(pool, "POOL_MIN_ELEMENTS", 0)
    monkeypatch.setattr(pool, "_threads_can_spread", lambda: True)
    try:
        if not pool.pool_workers(torch.device("cpu"), 4):
            pytest.skip("torch's parallel backend is not OpenMP: blocks run in the calling thread")
        _close(*_both(name, kwargs, (3, 8, 5, 6)))
    finally:
        torch.set_num_threads(n)


@needs_kernels
@pytest.mark.parametrize("name", ["acon_c", "dy_relu_b"])
def test_nan_and_infinity_propagate_as_in_eager(name):
    m = randomize(create_activation(name, 4), 0).train()
    x = torch.randn(2, 4, 6, 6)
    x[0, 1, 2, 3], x[1, 2, 0, 0], x[1, 3, 5, 5] = float("nan"), float("inf"), -float("inf")
    outs = []
    for on in (True, False):
        with native.use_native(on), torch.no_grad():
            outs.append(copy.deepcopy(m)(x))
    torch.testing.assert_close(outs[0], outs[1], equal_nan=True)


@needs_kernels
@pytest.mark.parametrize("name", ["frelu", "acon_c", "dy_relu_b"])
def test_fused_training_keeps_only_the_input(name):
    """No feature map but x itself lives from forward to backward (FReLU recomputes its conv and which branch won)."""
    m = randomize(create_activation(name, 8), 0).train()
    x = torch.randn(2, 8, 6, 6, requires_grad=True)
    saved = []
    with native.use_native(True), torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        m(x)
    big = [t for t in saved if t.numel() >= x.numel()]
    assert len(big) == 1 and big[0].data_ptr() == x.data_ptr()


@needs_kernels
def test_exp_is_accurate_over_the_range():
    """The kernels' exponential (through ACON-C with d = 1, p2 = 0, beta = 1: x sigmoid(x)) over the float range,
    including saturation: within 5e-7 relative of torch's (4 float32 ulp)."""
    x = torch.cat([torch.linspace(-100, 100, 200001), torch.tensor([-1e30, 1e30, 0.0, -0.0, 1e-30])])
    x3 = x.view(1, 1, -1)
    out = torch.empty_like(x3)
    native.acon_forward(x3, torch.tensor([[[1.0, 1.0, 0.0]]]), out)
    torch.testing.assert_close(out.view(-1), x * torch.sigmoid(x), atol=1e-30, rtol=5e-7)


@needs_kernels
@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: (torch.zeros(1, 2, 5, dtype=torch.float64), torch.zeros(1, 2, 3), torch.zeros(1, 2, 5)), "float32"),
        (lambda: (torch.zeros(1, 2, 5), torch.zeros(1, 2, 2), torch.zeros(1, 2, 5)), "contiguous"),
        (lambda: (torch.zeros(1, 2, 5), torch.zeros(1, 3, 3), torch.zeros(1, 2, 5)), "broadcast"),
        (lambda: (torch.zeros(1, 2, 10)[..., ::2], torch.zeros(1, 2, 3), torch.zeros(1, 2, 5)), "contiguous"),
        (lambda: (torch.zeros(1, 2, 5), torch.zeros(1, 2, 3), torch.zeros(1, 2, 4)), "does not match"),
        (lambda: (torch.zeros(2, 5), torch.zeros(1, 2, 3), torch.zeros(2, 5)), "3-D"),
    ],
    ids=["dtype", "coef-width", "coef-shape", "strided-plane", "out-shape", "dims"],
)
def test_kernel_arguments_are_checked_before_the_call(make, match):
    """What the C code relies on (dtype, sizes, contiguous planes) is checked in Python: a wrong call raises
    instead of reading or writing out of bounds."""
    xs, coef, out = make()
    with pytest.raises(ValueError, match=match):
        native.acon_forward(xs, coef, out)


@needs_kernels
def test_backward_sums_need_one_row_per_plane():
    x = torch.zeros(2, 3, 4)
    with pytest.raises(ValueError, match="one row per plane"):
        native.acon_backward(x, x, torch.zeros(1, 3, 3), None, torch.zeros(1, 3, 3).expand(2, 3, 3))


PROBE = """
import sys
from yolo_act_swap.activations import native
try:
    print(native.available())
except native.NativeError as e:
    print("NativeError:", e)
    sys.exit(3)
"""


def _probe(tmp_path, **env):
    full = {**os.environ, "YOLO_ACT_SWAP_CACHE": str(tmp_path / "cache"), **env}
    r = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=full, timeout=300)
    return r.returncode, r.stdout.strip(), r.stderr


@needs_kernels
def test_build_cache_is_private_and_reused(tmp_path):
    rc, out, err = _probe(tmp_path)
    assert (rc, out) == (0, "True"), err
    cache = tmp_path / "cache"
    (lib,) = cache.glob("kernels-*.so")
    assert not list(cache.glob(".build-*"))
    assert cache.stat().st_mode & 0o077 == 0 and lib.stat().st_mode & 0o077 == 0
    before = lib.stat().st_mtime_ns
    assert _probe(tmp_path)[:2] == (0, "True")
    assert lib.stat().st_mtime_ns == before  # loaded, not rebuilt


@needs_kernels
@pytest.mark.parametrize("hostile", ["group-writable folder", "symlinked library"])
def test_hostile_cache_is_refused(tmp_path, hostile):
    """A library another user could have written runs as our code when loaded: refused (mode 1: an error; auto:
    the eager blocks, with a warning)."""
    cache = tmp_path / "cache"
    assert _probe(tmp_path)[:2] == (0, "True")
    (lib,) = cache.glob("kernels-*.so")
    if hostile == "group-writable folder":
        cache.chmod(0o777)
        expect = "writable by other users"
    else:
        real = tmp_path / "elsewhere.so"
        lib.rename(real)
        lib.symlink_to(real)
        expect = "not a regular file"
    rc, out, err = _probe(tmp_path, YOLO_ACT_SWAP_NATIVE="1")
    assert rc == 3 and expect in out, (out, err)
    rc, out, err = _probe(tmp_path)
    assert (rc, out) == (0, "False") and expect in err


def test_no_compiler_falls_back_to_the_eager_blocks(tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    env = {"PATH": str(empty), "CC": "no-such-cc"}
    rc, out, err = _probe(tmp_path, **env)
    assert (rc, out) == (0, "False") and "no C compiler found" in err
    rc, out, _ = _probe(tmp_path, YOLO_ACT_SWAP_NATIVE="1", **env)
    assert rc == 3 and "no C compiler found" in out
    assert _probe(tmp_path, YOLO_ACT_SWAP_NATIVE="0")[:2] == (0, "False")


def test_unknown_switch_value_is_one_clear_error(tmp_path):
    rc, out, _ = _probe(tmp_path, YOLO_ACT_SWAP_NATIVE="maybe")
    assert rc == 3 and "YOLO_ACT_SWAP_NATIVE must be auto, 0 or 1, got 'maybe'" in out


def test_required_kernels_without_a_compiler_fail_the_command_in_one_line(tmp_path):
    """``YOLO_ACT_SWAP_NATIVE=1`` where nothing can build them: the patch command's verification stops with one line
    that says how to run without them, exit code 2, no traceback."""
    empty = tmp_path / "bin"
    empty.mkdir()
    env = {**os.environ, "YOLO_ACT_SWAP_CACHE": str(tmp_path / "cache"), "PATH": str(empty), "CC": "no-such-cc",
           "YOLO_ACT_SWAP_NATIVE": "1"}
    r = subprocess.run([sys.executable, "-m", "yolo_act_swap", "--cfg", "yolov8n.yaml", "--act", "acon_c"],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 2, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "no C compiler found" in lines[0] and "YOLO_ACT_SWAP_NATIVE=auto" in lines[0], lines
    assert "Traceback" not in r.stderr


@needs_kernels
def test_concurrent_first_builds_leave_one_whole_library(tmp_path):
    """DDP ranks or sweep trials that build at once: each builds to its own temporary file and renames it into place;
    every process loads a whole library and no temporary file is left behind."""
    env = {**os.environ, "YOLO_ACT_SWAP_CACHE": str(tmp_path / "cache")}
    procs = [subprocess.Popen([sys.executable, "-c", PROBE], stdout=subprocess.PIPE, text=True, env=env)
             for _ in range(4)]
    assert [p.communicate(timeout=300)[0].strip() for p in procs] == ["True"] * 4
    assert len(list((tmp_path / "cache").glob("kernels-*.so"))) == 1
    assert not list((tmp_path / "cache").glob(".build-*"))


def test_source_ships_beside_the_module():
    assert native.SOURCE.is_file() and native.SOURCE.parent == Path(native.__file__).parent
