"""Export formats: what each needs installed, whether it runs here, and which ops an exported model contains.

The facts per format live in ``FORMATS``; ``missing_packages`` checks them with ``importlib.util.find_spec`` (nothing
is imported or installed), and ``graph_ops`` reads an exported model back into a histogram of op types, so that the
ops an activation became are the difference between a model with that activation and the same model without one.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

DEPLOY_EXTRA = "pip install 'yolo-act-swap[deploy]'"


@dataclass(frozen=True)
class FormatInfo:
    """One export format.

    Attributes:
        name (str): the ultralytics ``format=`` argument.
        title (str): the name shown in tables.
        modules (tuple[str, ...]): import names the export and the runtime need.
        runs_here (str): empty when ultralytics' AutoBackend can run it on this machine, else why not.
    """

    name: str
    title: str
    modules: tuple = ()
    runs_here: str = ""
    skip_ops: frozenset = field(default_factory=frozenset)


def _coreml_runs() -> str:
    return "" if sys.platform == "darwin" else "conversion only: CoreML runs on macOS"


FORMATS = {
    f.name: f
    for f in (
        FormatInfo("torchscript", "TorchScript"),
        FormatInfo("onnx", "ONNX Runtime", ("onnx", "onnxslim", "onnxruntime"), skip_ops=frozenset({"Constant"})),
        FormatInfo("openvino", "OpenVINO", ("openvino",), skip_ops=frozenset({"Constant", "Parameter", "Result"})),
        FormatInfo("ncnn", "ncnn", ("ncnn", "pnnx"), skip_ops=frozenset({"Input", "MemoryData"})),
        FormatInfo("coreml", "CoreML", ("coremltools",), _coreml_runs(), frozenset({"const"})),
        FormatInfo("litert", "LiteRT", ("litert_torch", "ai_edge_litert")),
    )
}
DEFAULT_FORMATS = ("onnx", "openvino", "torchscript")


def format_info(name: str) -> FormatInfo:
    """The ``FormatInfo`` of ``name`` (``tflite`` means LiteRT); raise ``KeyError`` naming the known formats."""
    key = {"tflite": "litert", "mlpackage": "coreml"}.get(name.strip().lower(), name.strip().lower())
    if key not in FORMATS:
        raise KeyError(f"unknown format {name!r}; known: {', '.join(FORMATS)}")
    return FORMATS[key]


def missing_packages(fmt: FormatInfo) -> list[str]:
    """The import names of ``fmt.modules`` that are not installed (found without importing them)."""
    return missing_modules(fmt.modules)


def missing_modules(modules) -> list[str]:
    """The import names in ``modules`` that are not installed (found without importing them)."""
    out = []
    for mod in modules:
        try:
            found = importlib.util.find_spec(mod) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            out.append(mod)
    return out


@contextmanager
def no_installs():
    """Keep ultralytics' exporter from installing packages at run time, whatever ``YOLO_AUTOINSTALL`` says.

    ``ULTRALYTICS_SKIP_REQUIREMENTS_CHECKS`` makes ``check_requirements`` return at once; we check the packages
    ourselves beforehand (``missing_packages``), so a missing one is our one-line message, never a ``pip install``.
    """
    key = "ULTRALYTICS_SKIP_REQUIREMENTS_CHECKS"
    old = os.environ.get(key)
    os.environ[key] = "1"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old


# ------------------------------------------------------------------------------------------------- op histograms
def _onnx_ops(path: Path) -> Counter:
    import onnx

    def walk(graph, out):
        for node in graph.node:
            out[node.op_type] += 1
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    walk(attr.g, out)
        return out

    return walk(onnx.load(str(path), load_external_data=False).graph, Counter())


def _openvino_ops(path: Path) -> Counter:
    import openvino as ov

    xml = next(Path(path).glob("*.xml"))
    return Counter(op.get_type_name() for op in ov.Core().read_model(str(xml)).get_ordered_ops())


def _torchscript_ops(path: Path) -> Counter:
    import torch

    graph = torch.jit.load(str(path), map_location="cpu").inlined_graph
    return Counter(n.kind() for n in graph.nodes() if n.kind().startswith("aten::"))


# ncnn folds an activation into the layer before it: Convolution's param 9 is its activation_type
_NCNN_FUSED = {"1": "ReLU", "2": "LeakyReLU", "3": "Clip", "4": "Sigmoid", "5": "Mish", "6": "HardSwish"}


def _ncnn_ops(path: Path) -> Counter:
    lines = (Path(path) / "model.ncnn.param").read_text().splitlines()[2:]  # magic number, then layer/blob counts
    out = Counter()
    for line in lines:
        parts = line.split()
        if not parts:
            continue
        out[parts[0]] += 1
        fused = next((p[2:] for p in parts if p.startswith("9=")), None)
        if fused in _NCNN_FUSED:
            out[f"{_NCNN_FUSED[fused]} (fused in {parts[0]})"] += 1
    return out


def _coreml_ops(path: Path) -> Counter:
    import coremltools as ct

    spec = ct.utils.load_spec(str(path))
    out = Counter()
    for fn in spec.mlProgram.functions.values():
        for block in fn.block_specializations.values():
            out.update(op.type for op in block.operations)
    return out


def _pytorch_ops(model) -> Counter:
    return Counter(type(m).__name__ for m in model.modules() if not list(m.children()) or _is_activation(m))


def _is_activation(m) -> bool:
    from ..activations.registry import is_activation_module

    return is_activation_module(m)


_READERS = {
    "onnx": _onnx_ops,
    "openvino": _openvino_ops,
    "torchscript": _torchscript_ops,
    "ncnn": _ncnn_ops,
    "coreml": _coreml_ops,
    "pytorch": _pytorch_ops,
}


def graph_ops(fmt: str, artifact) -> Counter:
    """Histogram of op types in an exported model (a path), or of module types for ``fmt="pytorch"`` (a module).

    Bookkeeping ops (constants, inputs, results) are left out. Formats without a reader give an empty histogram.
    """
    reader = _READERS.get(fmt)
    if reader is None:
        return Counter()
    ops = reader(artifact)
    skip = FORMATS[fmt].skip_ops if fmt in FORMATS else frozenset()
    return Counter({k: v for k, v in ops.items() if k not in skip})


def added_ops(ops: Counter, base: Counter) -> list[str]:
    """Op types that ``ops`` has more of than ``base``, most frequent first (what an activation became)."""
    extra = ops - base
    return [_short(k) for k, _ in sorted(extra.items(), key=lambda kv: (-kv[1], kv[0]))]


def _short(op: str) -> str:
    return re.sub(r"^aten::", "", op)
