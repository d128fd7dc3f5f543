"""The fast channel-aware activations (FReLU, ACON-C, Meta-ACON-C, DY-ReLU A/B/C) against the references written the
published way in ``benchmarks/reference.py``: same forward and gradients (float64, 1e-5) across shapes, K, batch
size 1, train/eval, CPU chunking and bf16 autocast (looser tolerance: bf16 keeps 8 significant bits, so 3e-2); BN
folding; the function-preserving starts; what the custom autograd functions keep for the backward pass.
Performance itself is measured in ``benchmarks/``, not here.
"""

from __future__ import annotations

import copy
import importlib.util
import os
import time
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from helpers import randomize
from torch.utils._python_dispatch import TorchDispatchMode

from yolo_act_swap.activations import create_activation, functional, fuse_activations, native, pool
from yolo_act_swap.activations import frelu as frelu_module
from yolo_act_swap.errors import ActivationArgError

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny tensors, one torch thread

_REF_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "reference.py"
_spec = importlib.util.spec_from_file_location("_yas_reference_fast", _REF_PATH)
reference = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(reference)

C = 6
NAMES = ["frelu", "acon_c", "meta_acon_c", "dy_relu_a", "dy_relu_b", "dy_relu_c"]
SHAPES = [(2, C, 5, 7), (1, C, 4, 3), (3, C, 1, 1), (1, C, 1, 1)]  # batch size 1, 1x1 maps (one value per channel)
CASES = [(n, {}) for n in NAMES] + [
    ("frelu", {"kernel_size": 5}),
    ("frelu", {"recompute": True}),  # with RECOMPUTE_MIN_ELEMENTS lowered by the fixture below: the fused function
    ("frelu", {"recompute": False}),
    ("meta_acon_c", {"bn": False, "reduction": 2}),
    *[(f"dy_relu_{v}", {"k": k}) for v in "abc" for k in (1, 3)],
    ("dy_relu_c", {"temperature": 1.0, "gamma": 2.0}),
]
IDS = [n + "".join(f"-{k}={v}" for k, v in kw.items()) for n, kw in CASES]


@pytest.fixture(autouse=True)
def _recompute_small_maps(request, monkeypatch):
    """Cases that name recompute=True run FReLU's fused function even on these tiny inputs."""
    if "recompute=True" in request.node.name:
        monkeypatch.setattr(frelu_module, "RECOMPUTE_MIN_ELEMENTS", 0)


def build(name, channels=C, seed=0, **kwargs):
    torch.manual_seed(seed)
    return randomize(create_activation(name, channels, **kwargs), seed)


def ref_fn(name):
    return reference.REFERENCES[name]


def run(fn, x, w):
    """Forward, then backward of sum(y * w); returns y and dL/dx (parameter gradients stay on the module)."""
    x = x.detach().clone().requires_grad_()
    y = fn(x)
    (y * w).sum().backward()
    return y.detach(), x.grad


def grads(m):
    return {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}


def compare(name, kwargs, shape, train, dtype=torch.float64, atol=1e-5, rtol=1e-5, seed=0):
    m = build(name, shape[1], seed, **kwargs).to(dtype).train(train)
    mr = copy.deepcopy(m)
    g = torch.Generator().manual_seed(seed + 1)
    x = (torch.randn(shape, generator=g, dtype=torch.float64) * 2).to(dtype)
    w = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
    y, gx = run(m, x, w)
    yr, gxr = run(lambda t: ref_fn(name)(mr, t), x, w)
    torch.testing.assert_close(y, yr, atol=atol, rtol=rtol)
    torch.testing.assert_close(gx, gxr, atol=atol, rtol=rtol)
    gp, gpr = grads(m), grads(mr)
    assert gp.keys() == gpr.keys() and gp
    for k in gp:
        torch.testing.assert_close(gp[k], gpr[k], atol=atol, rtol=rtol, msg=lambda s: f"{k}: {s}")
    return m, mr


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("name,kwargs", CASES, ids=IDS)
def test_matches_reference_float64(name, kwargs, train):
    for shape in SHAPES:
        compare(name, kwargs, shape, train)
        if train:
            check_running_stats(name, kwargs, shape)


def _plain_bn_path(name, m, x):
    """Run the BNs of ``m`` as plain nn.Modules on their inputs (training mode), as the paper code would."""

    def bn(layer, t):  # one value per channel: our rule uses (and keeps) the running statistics
        return layer(t) if t.numel() // t.shape[1] > 1 else F.batch_norm(
            t, layer.running_mean, layer.running_var, layer.weight, layer.bias, False, 0.0, layer.eps)

    if name == "frelu":
        bn(m.bn, m.conv(x))
    elif name == "meta_acon_c" and m.bn1 is not None:
        bn(m.bn2, m.fc2(bn(m.bn1, m.fc1(x.mean((2, 3), keepdim=True)))))
    elif name == "dy_relu_c":
        bn(m.spatial_bn, m.spatial(x))


def check_running_stats(name, kwargs, shape):
    """One training forward moves every BN's statistics exactly as nn.BatchNorm2d would (or keeps them at N*H*W=1)."""
    m = build(name, shape[1], 3, **kwargs).double().train()
    plain = copy.deepcopy(m)
    x = torch.randn(shape, dtype=torch.float64)
    m(x.clone().requires_grad_())  # with gradients recorded: the custom autograd functions update the statistics
    with torch.no_grad():
        _plain_bn_path(name, plain, x)
    for a, b in zip(m.modules(), plain.modules()):
        if isinstance(a, nn.BatchNorm2d):
            torch.testing.assert_close(a.running_mean, b.running_mean, atol=1e-12, rtol=1e-10)
            torch.testing.assert_close(a.running_var, b.running_var, atol=1e-12, rtol=1e-10)
            assert a.num_batches_tracked.item() == b.num_batches_tracked.item()


@pytest.mark.parametrize("name,kwargs", CASES, ids=IDS)
def test_chunking_matches_reference(name, kwargs, monkeypatch):
    """Small CPU chunks: blocks of whole samples, and channel ranges within one sample, give the same numbers."""
    for target in (1 << 30, 2 * C * 12, 12, 1):  # one block (as on a GPU); 2 samples; 1 channel; 1 channel
        monkeypatch.setattr(functional, "CHUNK_ELEMENTS", target)
        compare(name, kwargs, (3, C, 3, 4), True)


@pytest.mark.parametrize("name", NAMES)
def test_float32_close_to_reference(name):
    compare(name, {}, (4, 16, 10, 10), True, dtype=torch.float32, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("in_dtype", [torch.float32, torch.bfloat16], ids=["f32-in", "bf16-in"])
@pytest.mark.parametrize("name", NAMES + ["frelu-recompute=True"])
def test_bf16_autocast_close_to_reference(name, in_dtype):
    """Under CPU bf16 autocast ours stays within bf16 precision of the float64 reference: outputs and input gradients
    within 3e-2 of their scale; parameter gradients within 3x the reference's own error under the same autocast (or 5e-2
    relative). BN-weight gradients are sums with cancellation, and bf16 makes exact ties of a max common (PyTorch's
    max splits a tie's gradient, ours gives it to x), so their error is of the order of 0.1 for both."""
    name = name.split("-")[0]  # frelu-recompute=True: the fused function (see the fixture)
    m = build(name, 8).train()
    m_ref, m64 = copy.deepcopy(m), copy.deepcopy(m).double()
    x = torch.randn(2, 8, 6, 6, generator=torch.Generator().manual_seed(5))
    w = torch.randn(2, 8, 6, 6, generator=torch.Generator().manual_seed(6))
    xb = x.to(in_dtype).clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = m(xb)
        y_bf = ref_fn(name)(m_ref, x.to(in_dtype).clone())
    assert y.dtype in (torch.bfloat16, torch.float32)
    (y.float() * w).sum().backward()
    (y_bf.float() * w).sum().backward()
    y64, gx64 = run(lambda t: ref_fn(name)(m64, t), xb.detach().double(), w.double())
    assert_close_bf16(y, y64)
    assert_close_bf16(xb.grad, gx64)
    g_bf, g64 = grads(m_ref), grads(m64)
    for n, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), n
        scale = g64[n].norm().item()
        if scale < 1e-6:  # e.g. a bias right before a BN: its true gradient is 0
            continue
        err = (p.grad.double() - g64[n]).norm().item() / scale
        err_ref = (g_bf[n].double() - g64[n]).norm().item() / scale
        assert err <= max(3 * err_ref, 5e-2), f"{n}: relative error {err:.3g} (reference under autocast: {err_ref:.3g})"


def assert_close_bf16(a, ref, tol=3e-2, frac=0.02):
    """Within ``tol`` of the reference's scale, except at most ``frac`` of the elements: at a kink of a max (FReLU's
    and DY-ReLU's winner) bf16 rounding may pick the other piece, which flips that element's gradient."""
    bad = ((a.double() - ref).abs() > tol * ref.abs().max()).double().mean().item()
    assert bad <= frac, f"{bad:.1%} of the elements differ by more than {tol} of the scale"


@pytest.mark.parametrize("name", ["frelu", "meta_acon_c", "dy_relu_c"])
def test_fuse_keeps_outputs(name):
    m = build(name, 8).eval()
    x = torch.randn(2, 8, 7, 5)
    with torch.no_grad():
        y = m(x)
        model = nn.Sequential(m)
        assert fuse_activations(model) == 1
        assert not any(isinstance(b, nn.BatchNorm2d) for b in m.modules())
        torch.testing.assert_close(m(x), y, atol=1e-5, rtol=1e-5)
        fuse_activations(model)  # idempotent
        torch.testing.assert_close(m(x), y, atol=1e-5, rtol=1e-5)
    assert "fused=True" in repr(m) or "bn=folded" in repr(m)
    m.train()  # a fused module still trains
    xg = x.clone().requires_grad_()
    m(xg).sum().backward()
    assert torch.isfinite(xg.grad).all()


def test_fused_frelu_matches_reference():
    m = build("frelu", 8).eval().fuse()
    assert m.bn is None and m.conv.bias is not None
    x = torch.randn(2, 8, 5, 5, dtype=torch.float64)
    m = m.double()
    torch.testing.assert_close(m(x), reference.ref_frelu(m, x))


@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("mode", ["a", "b"])
def test_fresh_dy_relu_is_relu(mode, k):
    m = create_activation(f"dy_relu_{mode}", C, k=k)
    x = torch.randn(2, C, 5, 5) * 3
    for train in (True, False):
        assert torch.equal(m.train(train)(x), F.relu(x))


def test_fresh_dy_relu_c_is_scaled_relu():
    x = torch.randn(2, C, 5, 5) * 3
    m = create_activation("dy_relu_c", C)
    torch.testing.assert_close(m(x), F.relu(x) / 3, atol=1e-6, rtol=1e-6)
    assert torch.equal(create_activation("dy_relu_c", C, gamma=1.0)(x), F.relu(x))


def test_acon_c_silu_init_is_silu():
    """Bit for bit with the eager blocks; within float rounding with the fused kernels (their own exp, ~1 ulp)."""
    m = create_activation("acon_c", C, init="silu")
    x = torch.randn(2, C, 5, 5) * 4
    for train in (True, False):
        with native.use_native(False):
            assert torch.equal(m.train(train)(x), x * torch.sigmoid(x))
        torch.testing.assert_close(m.train(train)(x), x * torch.sigmoid(x), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(m(x), F.silu(x), atol=1e-6, rtol=1e-6)


def test_meta_acon_c_shape_and_init():
    m = create_activation("meta_acon_c", 64)
    assert m.fc1.out_channels == max(16, 64 // 16) == 16 and m.fc2.in_channels == 16
    assert create_activation("meta_acon_c", 512).fc1.out_channels == 32
    s = create_activation("meta_acon_c", C, init="swish")
    assert torch.equal(s.p1, torch.ones_like(s.p1)) and torch.equal(s.p2, torch.zeros_like(s.p2))
    with pytest.raises(ActivationArgError, match="never reaches 1"):
        create_activation("meta_acon_c", C, init="silu")


def test_meta_acon_c_batch_size_1_uses_running_stats():
    m = build("meta_acon_c", C).train()
    before = copy.deepcopy(m)
    x = torch.randn(1, C, 4, 4, requires_grad=True)
    y = m(x)
    y.sum().backward()  # would fail with "Expected more than 1 value per channel" in a plain BN
    assert torch.equal(m.bn1.running_mean, before.bn1.running_mean) and m.bn1.num_batches_tracked.item() == 0
    with torch.no_grad():
        torch.testing.assert_close(y, before.eval()(x))  # exactly the eval-mode (running statistics) function
    x2 = torch.randn(2, C, 4, 4)
    m(x2)
    assert m.bn1.num_batches_tracked.item() == 1  # N > 1: batch statistics, as the paper code


@pytest.mark.parametrize(
    "name,kwargs,match",
    [("frelu", {"kernel_size": 2}, "odd"), ("dy_relu_b", {"k": 0}, "k must"), ("dy_relu_c", {"gamma": 0}, "gamma"),
     ("meta_acon_c", {"reduction": 0}, "reduction"), ("acon_c", {"init": "zeros"}, "init")],
)
def test_bad_values(name, kwargs, match):
    with pytest.raises(ActivationArgError, match=match):
        create_activation(name, C, **kwargs)


class _Allocations(TorchDispatchMode):
    """Records the number of elements of every tensor an op returns."""

    def __init__(self):
        super().__init__()
        self.sizes = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.sizes.append(t.numel())
        return out


@pytest.mark.parametrize("k", [2, 3, 4])
@pytest.mark.parametrize("mode", ["a", "b", "c"])
def test_dy_relu_never_builds_the_k_expanded_tensor(mode, k):
    m = build(f"dy_relu_{mode}", 8, k=k).train()
    x = torch.randn(2, 8, 6, 6, requires_grad=True)
    with _Allocations() as rec:
        m(x).sum().backward()
    assert max(rec.sizes) <= x.numel()  # nothing larger than one feature map
    with _Allocations() as rec:
        ReferenceModule = reference.ReferenceModule
        ReferenceModule(m)(x).sum().backward()
    assert max(rec.sizes) >= k * x.numel()  # the published way does build it


def saved_by(m, x):
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        y = m(x)
    return y, saved


@pytest.mark.parametrize("name,kwargs", [("dy_relu_b", {}), ("dy_relu_a", {}), ("acon_c", {}), ("meta_acon_c", {})])
def test_keeps_only_the_input(name, kwargs):
    """ACON and K=2 DY-ReLU keep x and per-channel tensors only: no other feature map lives until backward."""
    m = build(name, 8, **kwargs).train()
    x = torch.randn(2, 8, 6, 6, requires_grad=True)
    _, saved = saved_by(m, x)
    big = [t for t in saved if t.numel() >= x.numel()]
    assert len(big) == 1 and big[0].data_ptr() == x.data_ptr()


def test_dy_relu_k3_keeps_a_byte_index():
    m = build("dy_relu_b", 8, k=3).train()
    x = torch.randn(2, 8, 6, 6, requires_grad=True)
    _, saved = saved_by(m, x)
    big = sorted((t for t in saved if t.numel() >= x.numel()), key=lambda t: t.element_size())
    assert [t.dtype for t in big] == [torch.uint8, torch.float32] and big[1].data_ptr() == x.data_ptr()


@pytest.mark.parametrize("recompute", [True, False])
def test_frelu_keeps_a_mask(recompute, monkeypatch):
    monkeypatch.setattr(frelu_module, "RECOMPUTE_MIN_ELEMENTS", 0)  # the recompute path on a tiny input
    m = build("frelu", 8, recompute=recompute).train()
    x = torch.randn(2, 8, 6, 6, requires_grad=True)
    with native.use_native(False):  # the eager paths (the fused kernels keep x alone: tests/test_native.py)
        _, saved = saved_by(m, x)
    big = [t for t in saved if t.numel() >= x.numel()]
    floats = [t for t in big if t.is_floating_point()]
    assert [t.dtype for t in big if not t.is_floating_point()] == [torch.bool]
    # x itself, or (NCHW on CPU, where the conv runs in channels_last) its channels_last copy in x's place
    assert any(t.data_ptr() == x.data_ptr() or (t.is_contiguous(memory_format=torch.channels_last) and
                                                torch.equal(t, x)) for t in floats)
    assert len({t.data_ptr() for t in floats}) == (1 if recompute else 2)  # x, plus the conv output without recompute


def test_gradcheck_dy_relu_k3():
    """First-order gradcheck of the K > 2 path (the battery gradchecks every module with its default K = 2)."""
    m = build("dy_relu_c", 2, k=3).double().train()
    names = [n for n, _ in m.named_parameters()]
    params = [p.detach().clone().requires_grad_() for _, p in m.named_parameters()]
    x = torch.randn(2, 2, 3, 3, dtype=torch.float64, requires_grad=True)

    def fn(x, *ps):
        return torch.func.functional_call(m, dict(zip(names, ps)), (x,))

    assert torch.autograd.gradcheck(fn, (x, *params), eps=1e-6, atol=1e-5, rtol=1e-3)


@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("mode", ["a", "b", "c"])
def test_published_and_vectorised_references_agree(mode, k):
    m = build(f"dy_relu_{mode}", C, k=k).double().train()
    x = torch.randn(2, C, 4, 5, dtype=torch.float64)
    torch.testing.assert_close(reference.ref_dy_relu(m, x), reference.ref_dy_relu_vectorised(m, x))


class _SubclassBN(nn.BatchNorm2d):
    """A BN the fused DY-ReLU-C path does not recognise (as SyncBatchNorm): the generic path runs instead."""


def test_dy_relu_c_generic_attention_path():
    m = build("dy_relu_c", C)
    bn = _SubclassBN(1)
    bn.load_state_dict(m.spatial_bn.state_dict())
    m.spatial_bn = bn
    for shape in [(2, C, 4, 5), (1, C, 1, 1)]:
        mm = copy.deepcopy(m).double().train()
        mr = copy.deepcopy(mm)
        x = torch.randn(shape, dtype=torch.float64)
        w = torch.randn(shape, dtype=torch.float64)
        y, gx = run(mm, x, w)
        yr, gxr = run(lambda t: reference.ref_dy_relu(mr, t), x, w)
        torch.testing.assert_close(y, yr)
        torch.testing.assert_close(gx, gxr)
        for k, v in grads(mm).items():
            torch.testing.assert_close(v, grads(mr)[k], msg=lambda s: f"{k}: {s}")


@pytest.mark.parametrize("name", ["acon_c", "meta_acon_c", "dy_relu_a", "dy_relu_b", "dy_relu_c"])
def test_compile_option_runs_the_formula(name, monkeypatch):
    """compile=True routes through torch.compile (the eager backend here: real tracing, no C++ build in CI)."""
    monkeypatch.setattr(functional, "COMPILE_BACKEND", "eager")
    m = build(name, C, compile="true")  # inline --act values arrive as text
    assert m.use_compile and "compile=True" in repr(m)
    plain = copy.deepcopy(m)
    plain.use_compile = False
    m2, plain2 = copy.deepcopy(m), copy.deepcopy(plain)
    x = torch.randn(2, C, 4, 4)
    w = torch.randn(2, C, 4, 4)
    y, gx = run(m2, x, w)
    yp, gxp = run(plain2, x, w)
    torch.testing.assert_close(y, yp, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(gx, gxp, atol=1e-5, rtol=1e-5)
    for k, v in grads(m2).items():
        torch.testing.assert_close(v, grads(plain2)[k], atol=1e-5, rtol=1e-5, msg=lambda s: f"{k}: {s}")
    assert any(backend == "eager" for _, backend in functional._COMPILED)
    with pytest.raises(ActivationArgError, match="compile must be true or false"):
        create_activation(name, C, compile="maybe")


def test_boolean_keywords_accept_text():
    assert create_activation("frelu", C, recompute="false").recompute is False
    assert create_activation("meta_acon_c", C, bn="no").bn1 is None


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("name,kwargs", CASES, ids=IDS)
def test_inference_path_matches_reference(name, kwargs, train):
    """Under torch.no_grad() the activations run a graph-free forward: same outputs (and BN statistics) as the
    reference."""
    for shape in SHAPES[:2]:
        m = build(name, shape[1], **kwargs).double().train(train)
        mr = copy.deepcopy(m)
        x = torch.randn(shape, dtype=torch.float64)
        with torch.no_grad():
            y = m(x)
            yr = ref_fn(name)(mr, x)
        torch.testing.assert_close(y, yr, atol=1e-10, rtol=1e-8)


@pytest.fixture
def two_workers(monkeypatch):
    """Two torch threads and tiny blocks: the block functions run on the worker pool (``functional.run_blocks``)."""
    n = torch.get_num_threads()
    torch.set_num_threads(2)
    monkeypatch.setattr(functional, "CHUNK_ELEMENTS", 12)
    monkeypatch.setattr(functional, "MIN_CHUNK_ELEMENTS", 1)
    monkeypatch.setattr(functional, "POOL_MIN_ELEMENTS", 0)  # tiny tensors on the pool all the same
    monkeypatch.setattr(pool, "POOL_MIN_ELEMENTS", 0)
    monkeypatch.setattr(pool, "_threads_can_spread", lambda: True)  # the pool's code path, also on a 1-CPU runner
    if not functional.pool_workers(torch.device("cpu"), 4):
        pytest.skip("torch's parallel backend is not OpenMP: blocks run in the calling thread")
    yield
    torch.set_num_threads(n)


BOUND = """
import os, threading, torch
from yolo_act_swap.activations import pool
torch.set_num_threads(2)
x = torch.randn(1000, 1000)
(x @ x).sum()  # an OpenMP region: with OMP_PROC_BIND the runtime binds this thread to one core
seen = []
t = threading.Thread(target=lambda: seen.append(len(os.sched_getaffinity(0))))
t.start(); t.join()
print(seen[0], pool.pool_workers(torch.device("cpu"), 8, 1 << 22))
"""


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPUs")
@pytest.mark.parametrize("bind", [False, True], ids=["unbound", "omp_proc_bind"])
def test_pool_stays_off_when_new_threads_would_share_one_core(bind):
    """With OMP_PROC_BIND the OpenMP runtime binds the main thread to one core and every thread started later
    inherits that mask: the pool's workers would share one core. The pool is then not used (torch's own bound
    threads do the work); unbound, a large pass goes to 2 workers."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("OMP_PROC_BIND", "OMP_PLACES")}
    env["OMP_NUM_THREADS"] = "2"
    if bind:
        env.update(OMP_PROC_BIND="close", OMP_PLACES="cores")
    r = subprocess.run([sys.executable, "-c", BOUND], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    cpus, workers = map(int, r.stdout.split())
    if "OpenMP" not in torch.__config__.parallel_info():
        pytest.skip("torch's parallel backend is not OpenMP")
    assert (cpus, workers) == ((1, 0) if bind else (cpus, 2)) and (bind or cpus >= 2)


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("name,kwargs", CASES, ids=IDS)
def test_worker_pool_matches_reference(name, kwargs, train, two_workers):
    """Blocks shared out to the pool's workers (one join per pass) give the reference's numbers, in both layouts."""
    compare(name, kwargs, (3, C, 3, 4), train)
    m = build(name, **kwargs).to(torch.float64).train(train)
    x = torch.randn(3, C, 4, 5, dtype=torch.float64)
    with torch.no_grad():
        y, y_cl = copy.deepcopy(m)(x), copy.deepcopy(m)(x.contiguous(memory_format=torch.channels_last))
    assert y_cl.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(y_cl, y, atol=1e-12, rtol=1e-12)


def test_worker_pool_leaves_the_thread_settings_alone(two_workers):
    """The pool's workers run single-threaded without changing the caller's thread count or the default of threads
    started later."""
    import threading

    functional.run_blocks(lambda b: torch.ones(4).sum(), [0, 1, 2, 3], torch.device("cpu"))
    assert torch.get_num_threads() == 2
    seen = []
    t = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    t.start()
    t.join()
    assert seen == [2]
    workers = functional.run_blocks(lambda b: torch.get_num_threads(), [0, 1, 2, 3], torch.device("cpu"))
    assert workers == [1, 1, 1, 1]


def test_small_pass_runs_on_one_thread_in_order():
    """A pass under ``POOL_MIN_ELEMENTS`` runs its blocks on the calling thread, single-threaded, in order (the pool's
    GIL hand-overs cost more than such blocks' work); a large one is shared out to the pool."""
    import threading

    n = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        if not functional.pool_workers(torch.device("cpu"), 4):
            pytest.skip("torch's parallel backend is not OpenMP: blocks run in the calling thread")
        me = threading.get_ident()
        small = functional.Blocks(range(4), elements=functional.POOL_MIN_ELEMENTS - 1)
        seen = functional.run_blocks(lambda b: (b, threading.get_ident(), torch.get_num_threads()), small,
                                     torch.device("cpu"))  # fmt: skip
        assert seen == [(b, me, 1) for b in range(4)]
        assert torch.get_num_threads() == 2
        assert functional.pool_workers(torch.device("cpu"), 4, functional.POOL_MIN_ELEMENTS) == 2
        x3 = torch.zeros(2, 8, functional.POOL_MIN_ELEMENTS // 16)
        blocks = functional.chunk_slices(x3)
        assert blocks.elements == x3.numel() and len(blocks) >= 8  # an eighth at most: blocks to share out
        assert len(functional.chunk_slices(torch.zeros(2, 8, 1000))) == 1  # small: blocks of SERIAL_CHUNK_ELEMENTS
        small = functional.chunk_slices(torch.zeros(8, 256, 400))
        assert len(small) == 8 and small.elements == 8 * 256 * 400  # one sample (102,400 elements) per block
    finally:
        torch.set_num_threads(n)


def _upstream(node):
    """Every (node, input nr) edge reachable from the inputs of ``node``'s inputs (not ``node``'s own edges)."""
    seen, todo, edges = set(), [f for f, _ in node.next_functions if f is not None], []
    while todo:
        f = todo.pop()
        if id(f) in seen:
            continue
        seen.add(id(f))
        for e in f.next_functions:
            edges.append(e)
            if e[0] is not None:
                todo.append(e[0])
    return edges


@pytest.mark.parametrize("name", ["dy_relu_b", "dy_relu_c", "meta_acon_c"])
def test_hyper_function_on_one_thread_same_gradients(name, monkeypatch):
    """At 2 threads the hyper-function (pooled features -> coefficients) runs forward and backward on one thread,
    inside the activation's own autograd function (``hyper.PooledHyper``; DY-ReLU's ``hyper.MlpHyper`` by hand), with
    the gradients of plain autograd
    through the plain formula for the input and every parameter; and the input has that function as its only
    consumer (no dense gradient for autograd to add up, see hyper.py)."""
    from yolo_act_swap.activations import acon, dyrelu

    n = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        m = build(name, C, 0).to(torch.float64).train()
        mr = copy.deepcopy(m)
        x = torch.randn(4, C, 5, 6, dtype=torch.float64)
        w = torch.randn_like(x)
        seen = []
        if name.startswith("dy"):  # hyper.MlpHyper: two addmm forward, four matrix products backward, by hand
            addmm, matmul = torch.addmm, torch.Tensor.__matmul__
            monkeypatch.setattr(torch, "addmm", lambda *a: seen.append(torch.get_num_threads()) or addmm(*a))
            monkeypatch.setattr(torch.Tensor, "__matmul__",
                                lambda a, b: seen.append(torch.get_num_threads()) or matmul(a, b))
            y, gx = run(m, x, w)
            monkeypatch.setattr(torch, "addmm", addmm)
            monkeypatch.setattr(torch.Tensor, "__matmul__", matmul)
            assert seen == [1] * 6 and torch.get_num_threads() == 2
        else:
            head = m._beta_head

            def spy(t):  # threads inside the small graph, forward and backward
                seen.append(torch.get_num_threads())
                if t.requires_grad:
                    t.register_hook(lambda g: seen.append(torch.get_num_threads()))
                return head(t)

            monkeypatch.setattr(m, "_beta_head", spy)
            y, gx = run(m, x, w)
            assert seen == [1, 1] and torch.get_num_threads() == 2
        xl = x.clone().requires_grad_()
        node = m(xl).grad_fn
        assert [f for f, _ in node.next_functions if f is not None][0].variable is xl  # x's AccumulateGrad, first
        assert sum(f is not None and getattr(f, "variable", None) is xl for f, _ in node.next_functions) == 1
        assert all(getattr(f, "variable", None) is not xl for f, _ in _upstream(node) if f is not None)
        for mod in (acon, dyrelu):
            monkeypatch.setattr(mod, "one_thread_graph", lambda fn, t, params: fn(t))
        if name.startswith("dy"):
            yr, gxr = run(lambda t: dyrelu.dy_relu_formula(t, *mr.coefficients(t), mr.spatial_attention(t)), x, w)
        else:
            yr, gxr = run(lambda t: acon.acon_formula(t, mr.p1, mr.p2, mr._lean_beta(t)), x, w)
        torch.testing.assert_close(y, yr, atol=1e-12, rtol=1e-12)
        torch.testing.assert_close(gx, gxr, atol=1e-12, rtol=1e-12)
        gp, gpr = grads(m), grads(mr)
        assert gp.keys() == gpr.keys() and gp
        for k in gp:
            torch.testing.assert_close(gp[k], gpr[k], atol=1e-12, rtol=1e-12, msg=lambda s: f"{k}: {s}")
    finally:
        torch.set_num_threads(n)


@pytest.mark.parametrize("name", ["dy_relu_b", "dy_relu_c", "meta_acon_c"])
def test_two_threads_under_bf16_autocast_same_as_one(name):
    """Under CPU bf16 autocast, 2 threads (hyper-function on ``one_thread_graph``, small map on one thread) give the
    1-thread outputs and gradients exactly, and every parameter gets its gradient."""
    n = torch.get_num_threads()
    m = build(name, C, 0).train()
    x = torch.randn(4, C, 6, 5)
    res = {}
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            mm, xx = copy.deepcopy(m), x.clone().requires_grad_()
            with torch.autocast("cpu", dtype=torch.bfloat16):
                y = mm(xx)
            y.float().square().sum().backward()
            res[threads] = y.detach().float(), xx.grad, grads(mm)
    finally:
        torch.set_num_threads(n)
    (y1, g1, p1), (y2, g2, p2) = res[1], res[2]
    torch.testing.assert_close(y2, y1, atol=0, rtol=0)
    torch.testing.assert_close(g2, g1, atol=0, rtol=0)
    assert p1.keys() == p2.keys() == {k for k, p in m.named_parameters() if p.requires_grad}
    for k in p1:
        torch.testing.assert_close(p2[k], p1[k], atol=0, rtol=0, msg=lambda s: f"{k}: {s}")


# --- exported graphs ----------------------------------------------------------------------------------------------


def _export_nodes(m, x):
    """ONNX node types of ``m`` exported with dynamic batch/height/width, and ONNX Runtime's output on ``x``."""
    import inspect
    import io
    import warnings
    from collections import Counter

    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    f = io.BytesIO()
    axes = {0: "batch", 2: "height", 3: "width"}
    legacy = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(m, (x,), f, opset_version=17, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": axes, "y": axes}, **legacy)
    nodes = Counter(n.op_type for n in onnx.load_from_string(f.getvalue()).graph.node)
    sess = ort.InferenceSession(f.getvalue(), providers=["CPUExecutionProvider"])
    return nodes, torch.from_numpy(sess.run(None, {"x": x.numpy()})[0])


@pytest.mark.parametrize(
    "name,kwargs,most",
    [("acon_c", {}, 6), ("dy_relu_a", {}, 18), ("dy_relu_b", {}, 18), ("dy_relu_b", {"k": 3}, 22)],
    ids=["acon_c", "dy_relu_a", "dy_relu_b", "dy_relu_b-k=3"],
)
def test_export_graph_is_lean_and_equal(name, kwargs, most):
    """ACON-C exports as four Mul, a Sigmoid and an Add (why: tests/test_export_graphs.py); DY-ReLU A/B as one
    coefficient Reshape + Split and K Mul+Add pieces (no Shape/Gather/Slice/Unsqueeze chains: formerly 55 nodes for
    B); outputs equal within 1e-4."""
    m = build(name, 16, **kwargs).eval()
    x = torch.randn(2, 16, 10, 12)
    nodes, y_ort = _export_nodes(m, x)
    assert sum(nodes.values()) <= most, dict(nodes)
    assert not {"Gather", "Slice", "Unsqueeze", "Shape", "Concat"} & set(nodes), dict(nodes)
    with torch.no_grad():
        torch.testing.assert_close(y_ort, m(x), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(m.export_forward(x) if hasattr(m, "export_forward") else m(x), m(x),
                                   atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("threads, pooled", [(1, False), (2, False), (2, True)])
@pytest.mark.parametrize("kernel_size", [3, 5])
def test_frelu_channels_last_funnel_matches_reference(kernel_size, threads, pooled, monkeypatch):
    """NCHW input on CPU whose passes the worker pool does not run (one thread, or a map too small for the pool at two
    threads): the funnel's conv runs in channels_last inside the function (its fast layout); output and input gradient
    stay NCHW and equal the reference's. Where the pool runs the passes (``pooled``), the NCHW blocks stay."""
    monkeypatch.setattr(frelu_module, "RECOMPUTE_MIN_ELEMENTS", 0)
    if pooled:
        monkeypatch.setattr(pool, "POOL_MIN_ELEMENTS", 0)
        monkeypatch.setattr(pool, "_threads_can_spread", lambda: True)
    n = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        x = torch.randn(3, C, 7, 6, dtype=torch.float64)
        on_pool = functional.pool_workers(x.device, 2, x.numel()) > 0
        assert on_pool == (pooled and functional.pool_workers(x.device, 2) > 0)  # OpenMP: per-thread settings
        assert frelu_module._channels_last_conv(x) == (not on_pool)
        compare("frelu", {"kernel_size": kernel_size, "recompute": True}, (3, C, 7, 6), True)
        m = build("frelu", kernel_size=kernel_size).to(torch.float64).train()
        xi = x.clone().requires_grad_()
        y = m(xi)
        y.backward(torch.ones_like(y))
        assert y.is_contiguous() and xi.grad.is_contiguous()
    finally:
        torch.set_num_threads(n)


def test_pooled_mean_on_the_pool_equals_mean(two_workers):
    """Meta-ACON-C's and DY-ReLU's pooled input, block by block on the worker pool: the whole-tensor mean's values."""
    x = torch.randn(3, C, 5, 4, dtype=torch.float64)
    torch.testing.assert_close(functional.pooled_mean(x), x.mean((2, 3)), atol=1e-14, rtol=1e-14)
    xl = x.contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(functional.pooled_mean(xl), x.mean((2, 3)), atol=1e-14, rtol=1e-14)


def test_benchmark_prints_clones_and_the_spread():
    """benchmarks/activations.py (a short run): every row has its x.clone() ratio, and each table its run-to-run
    spread; the clock follows the thread count (CPU time at one thread). No timing is asserted."""
    import os
    import subprocess
    import sys

    script = _REF_PATH.parent / "activations.py"
    env = {**os.environ, "PYTHONPATH": str(_REF_PATH.parents[1])}
    out = subprocess.run(
        [sys.executable, str(script), "--quick", "--only", "acon_c", "--no-memory", "--no-fused", "--runs", "2",
         "--threads", "1", "--no-reexec"], capture_output=True, text=True, env=env, timeout=300, check=True,
    ).stdout
    assert "clones [range]" in out and "ratios repeat within +-" in out and "cpu clock" in out
    row = next(line for line in out.splitlines() if line.startswith("acon_c"))
    assert len(row.split()) >= 6


def test_harness_runs_short_calls_back_to_back_with_min_time():
    """benchmarks/harness.interleave: with ``min_time`` a short case runs several calls per repetition (the same
    number in every run) and its time per call is reported; without it, one call per repetition."""
    import sys

    sys.path.insert(0, str(_REF_PATH.parents[1]))
    from benchmarks import harness

    calls = {"fast": 0, "slow": 0}

    def fast():
        calls["fast"] += 1

    def slow():
        calls["slow"] += 1
        t = time.perf_counter()
        while time.perf_counter() - t < 0.004:
            pass

    out = harness.interleave({"fast": fast, "slow": slow}, reps=3, warmup=1, runs=2, min_time=0.002)
    assert calls["slow"] == 2 * (1 + 3)  # 4 ms >= 2 ms: one call per repetition
    assert calls["fast"] > 2 * (1 + 3 * 2)  # several back to back per repetition
    assert (calls["fast"] - 2) % 6 == 0  # the same count in every repetition of both runs
    assert all(t < 0.004 for t in out["fast"]) and all(t >= 0.004 for t in out["slow"])
    calls.update(fast=0, slow=0)
    harness.interleave({"fast": fast, "slow": slow}, reps=3, warmup=1, runs=2)
    assert calls == {"fast": 8, "slow": 8}
    assert harness.calls_for(0.02, 0.001) == 20 and harness.calls_for(0.02, 0.05) == 1
    assert harness.calls_for(0.0, 1e-6) == 1 and harness.calls_for(1.0, 0.0) == 1000
