"""Exported graphs that ONNX Runtime keeps in its blocked layout, and ACON-C folded into its conv by ``fuse()``.

Real exports and real ONNX Runtime sessions; no timing (that is ``benchmarks/export_graphs.py``).
"""

from __future__ import annotations

import collections
import copy
import inspect
import io
import tempfile
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from helpers import randomize

from yolo_act_swap import patch_model
from yolo_act_swap.activations import create_activation
from yolo_act_swap.activations.acon import AconC, acon_formula
from yolo_act_swap.activations.graphs import FoldedAconC, acon_graph
from yolo_act_swap.activations.registry import is_activation_module
from yolo_act_swap.models import build_detection_model
from yolo_act_swap.nn.fold import C_MIN, fold_acon_into_convs

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

AXES = {0: "batch", 2: "height", 3: "width"}


def to_onnx(m: nn.Module, x: torch.Tensor, dynamic: bool = True) -> bytes:
    f = io.BytesIO()
    legacy = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
    axes = {"x": AXES, "y": AXES} if dynamic else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(m, (x,), f, opset_version=17, input_names=["x"], output_names=["y"], dynamic_axes=axes,
                          **legacy)
    return f.getvalue()


def nodes(data: bytes) -> collections.Counter:
    return collections.Counter(n.op_type for n in onnx.load_from_string(data).graph.node)


def ort_run(data: bytes, x: torch.Tensor) -> torch.Tensor:
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return torch.from_numpy(sess.run(None, {"x": x.numpy()})[0])


def ort_optimized(data: bytes) -> collections.Counter:
    """Node types of the graph ONNX Runtime runs after all its optimisations."""
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    with tempfile.TemporaryDirectory() as tmp:
        so.optimized_model_filepath = str(Path(tmp) / "opt.onnx")
        ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
        return collections.Counter(n.op_type for n in onnx.load(so.optimized_model_filepath).graph.node)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


# --- one activation ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("beta", [0.0, 1e-12, 1e-8, 1e-6, 1e-3, -2.0, 7.0])
def test_acon_graph_is_the_formula(beta):
    """(1/beta) silu(beta d x) + p2 x equals d x sigmoid(beta d x) + p2 x, including beta = 0 and tiny beta."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 8, 5, 6, generator=g, dtype=torch.float64) * 3
    p1, p2, b = (torch.randn(1, 8, 1, 1, generator=g, dtype=torch.float64) for _ in range(3))
    b[:, :4] = beta
    torch.testing.assert_close(acon_graph(x, p1, p2, b), acon_formula(x, p1, p2, b), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "name,fused,expected",
    [
        ("acon_c", False, {"Mul": 4, "Sigmoid": 1, "Add": 1}),
        ("frelu", False, {"Conv": 1, "Relu": 1, "Add": 1}),
        ("frelu", True, {"Conv": 1, "Relu": 1, "Add": 1}),
    ],
    ids=["acon_c", "frelu", "frelu-fused"],
)
def test_activation_graph_is_lean_and_equal(name, fused, expected):
    """ACON-C exports as Mul, Sigmoid, Mul, Mul, Mul, Add (no Mul of two feature maps); FReLU as one conv, Relu and
    Add (no Max; BN folded into the conv in the graph even when the module is not fused). Dynamic batch and size;
    ONNX Runtime equals PyTorch within 1e-4."""
    m = randomize(create_activation(name, 16)).eval()
    if fused:
        m.fuse()
    x = torch.randn(2, 16, 10, 12)
    data = to_onnx(m, x)
    assert dict(nodes(data)) == expected
    with torch.no_grad():
        want = m(x)
    for xi in (x, torch.randn(3, 16, 7, 9)):  # another batch and size through the same graph
        with torch.no_grad():
            want = m(xi)
        assert rel(ort_run(data, xi), want) < 1e-4


def test_folded_acon_graph_and_values():
    """FoldedAconC is a silu(z) + b z: five nodes, and the same values as ACON-C of z / c (eval in NCHW and
    channels_last, autograd, ONNX Runtime)."""
    act = randomize(AconC(16)).eval()
    c = (act.beta * (act.p1 - act.p2)).detach()
    folded = FoldedAconC((1 / act.beta).detach(), (act.p2 / c).detach()).eval()
    x = torch.randn(2, 16, 10, 12)
    with torch.no_grad():
        want = act(x)
        assert rel(folded(x * c), want) < 1e-5  # the one-pass eval kernel
        y_cl = folded((x * c).contiguous(memory_format=torch.channels_last))
        assert y_cl.is_contiguous(memory_format=torch.channels_last) and rel(y_cl, want) < 1e-5
        folded.train()
        assert rel(folded(x * c), want) < 1e-5  # the autograd form too
    data = to_onnx(folded.eval(), x * c)
    assert dict(nodes(data)) == {"Sigmoid": 1, "Mul": 3, "Add": 1}
    assert rel(ort_run(data, x * c), want) < 1e-4


# --- a detector ---------------------------------------------------------------------------------------------------


def detector(act: str) -> nn.Module:
    torch.manual_seed(0)
    model = build_detection_model("yolov8n.yaml", nc=3, verbose=False)
    if act != "silu":
        patch_model(model, act, verify=False, flops=False)
    return randomize(model, 1).eval()


def first(out):
    while isinstance(out, (tuple, list, dict)):
        out = next(iter(out.values())) if isinstance(out, dict) else out[0]
    return out


def params(model: nn.Module) -> dict:
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def acon_detector():
    """yolov8n with ACON-C whose parameters look trained: p1, p2 ~ N(0, 1) (the paper's init), beta ~ 1 + N(0, 0.1)."""
    model = detector("acon_c")
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for m in model.modules():
            if type(m) is AconC:
                for p in (m.p1, m.p2):
                    p.copy_(torch.randn(p.shape, generator=g))
                m.beta.copy_(1 + 0.1 * torch.randn(m.beta.shape, generator=g))
    return model


def test_fuse_folds_every_acon_into_its_conv(acon_detector):
    """fuse() folds yolov8n's ACON-C into the convs (all whose scales are in range); outputs within 1e-4; a second
    fuse() changes nothing."""
    model = copy.deepcopy(acon_detector)
    n_acon = sum(type(m) is AconC for m in model.modules())
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        want = first(model(x))
    model.fuse(verbose=False)
    folded = [m for m in model.modules() if type(m) is FoldedAconC]
    kept = [m for m in model.modules() if type(m) is AconC]
    assert len(folded) + len(kept) == n_acon and len(folded) >= 50, (len(folded), len(kept))
    for m in kept:  # only where some channel's scale c = beta (p1 - p2) or beta is out of the safe range
        c = (m.beta * (m.p1 - m.p2)).abs()
        assert (c < C_MIN).any() or (m.beta.abs() < C_MIN).any() or (c > 1 / C_MIN).any()
    assert all(is_activation_module(m) and m._yas_act == "acon_c" for m in folded)  # still tagged as the swap
    with torch.no_grad():
        got = first(model(x))
    assert rel(got, want) < 1e-4
    state = params(model)
    model.fuse(verbose=False)
    assert fold_acon_into_convs(model) == 0
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    with torch.no_grad():
        assert torch.equal(first(model(x)), got)


def test_unfused_and_training_models_are_untouched(acon_detector):
    """Folding needs a fused block: on an unfused model (eval or training) it changes no value and no module."""
    for training in (False, True):
        model = copy.deepcopy(acon_detector).train(training)
        state, kinds = params(model), [type(m) for m in model.modules()]
        assert fold_acon_into_convs(model) == 0
        assert [type(m) for m in model.modules()] == kinds
        assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())  # BN statistics too


def test_channel_near_zero_keeps_the_formula(acon_detector):
    """A block with a channel whose scale c = beta (p1 - p2) is ~0 keeps its ACON-C (and its conv); others fold."""
    model = copy.deepcopy(acon_detector)
    act = model.model[1].act
    with torch.no_grad():
        act.p1[0, 3] = act.p2[0, 3]  # d = 0 in one channel
    weight = None
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        want = first(model(x))
    model.fuse(verbose=False)
    weight = model.model[1].conv.weight.clone()
    assert type(model.model[1].act) is AconC and type(model.model[0].act) is FoldedAconC
    model.fuse(verbose=False)
    assert torch.equal(model.model[1].conv.weight, weight)
    with torch.no_grad():
        assert rel(first(model(x)), want) < 1e-4


@pytest.mark.parametrize("act", ["acon_c", "frelu"])
def test_detector_runs_in_the_blocked_layout(act):
    """In ONNX Runtime's optimised graph of the fused detector, ACON-C and FReLU add no NCHW <-> NCHWc copies over
    the SiLU model (ReorderInput/ReorderOutput: formerly 183 and 183 against SiLU's 47 at 320), and no Max or Mul of
    two feature maps is left; ONNX Runtime equals PyTorch within 1e-4."""
    x = torch.rand(1, 3, 64, 64)
    counts = {}
    for name in ("silu", act):
        model = detector(name)
        model.fuse(verbose=False)
        data = to_onnx(model, x, dynamic=False)
        opt = ort_optimized(data)
        counts[name] = opt["ReorderInput"] + opt["ReorderOutput"]
        with torch.no_grad():
            assert rel(ort_run(data, x), first(model(x))) < 1e-4
    assert counts[act] == counts["silu"], counts
    assert "Max" not in opt, dict(opt)


def test_meta_copy_fuses_without_folding(acon_detector):
    """verify/'s shape checks fuse a meta-device copy: there is nothing to fold and nothing fails."""
    model = copy.deepcopy(acon_detector).to("meta")
    model.fuse(verbose=False)
    assert sum(type(m) is AconC for m in model.modules()) == sum(type(m) is AconC for m in acon_detector.modules())


def test_folded_acon_loads_with_weights_only(tmp_path):
    """A pickled fused model holding FoldedAconC loads through torch's weights_only unpickler (the allow-list)."""
    from yolo_act_swap.checkpoints import register_safe_globals

    register_safe_globals()
    m = FoldedAconC(torch.full((4,), 0.5), torch.arange(4.0))
    torch.save({"model": m}, tmp_path / "m.pt")
    back = torch.load(tmp_path / "m.pt", weights_only=True)["model"]
    assert type(back) is FoldedAconC and torch.equal(back.b, m.b)


def test_benchmark_profile_attributes_kernel_time_to_op_types():
    """benchmarks/export_graphs.py --profile: ONNX Runtime's own profile of real runs, kernel time per op type of the
    optimised graph (per run, warm-up left out), and the table of differences from the SiLU model. No timing is
    asserted, only that every run's kernels are counted once."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks.export_graphs import profile_ops, profile_table

    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = 1, 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    x = torch.rand(1, 16, 24, 24)
    profiles = {}
    for name in ("silu", "dy_relu_b"):
        m = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), create_activation(name, 16)).eval()
        data = to_onnx(m, x, dynamic=False)
        ops, total = profile_ops(data, so, {"x": x.numpy()}, runs=4)
        assert ops["Conv"][1] == pytest.approx(1.0) and total >= ops["Conv"][0] > 0, ops
        profiles[name] = (ops, total)
    assert profiles["dy_relu_b"][0]["Max"][1] == pytest.approx(1.0)  # its two pieces' maximum, once per run
    table = profile_table(profiles)
    assert table.splitlines()[1].startswith("dy_relu_b") and "Max +" in table
