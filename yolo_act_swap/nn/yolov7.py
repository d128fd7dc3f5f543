"""YOLOv7, YOLOv7x and YOLOv7-tiny as ultralytics detection models.

The body (every layer before the head) is the official WongKinYiu/yolov7 network: same layers, order, indices, widths
and kernels as its ``cfg/training/*.yaml``, and the same parameter names, so an official body state dict loads as is.
The head is ultralytics' anchor-free ``Detect``, so the ultralytics trainer, loss, validator, NMS and exporter work
unchanged. Ultralytics' own YAML parser knows neither SPPCSPC nor YOLOv7's RepConv, so these configs (top-level
``builder: yolov7``) are built by the small parser below, which never evaluates YAML text and never touches
ultralytics' module globals or class defaults.

Usage:
    >>> from yolo_act_swap.nn.yolov7 import YOLOv7DetectionModel
    >>> model = YOLOv7DetectionModel("yolov7-tiny.yaml", nc=3)
"""

from __future__ import annotations

import ast
import contextlib
import inspect
from copy import deepcopy
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
import yaml
from ultralytics.nn.modules import Concat, Conv, Detect
from ultralytics.utils import LOGGER
from ultralytics.utils.ops import make_divisible
from ultralytics.utils.torch_utils import initialize_weights

try:
    from ultralytics.utils.torch_utils import is_qat
except ImportError:  # ultralytics releases without QAT support

    def is_qat(model) -> bool:
        """No QAT in this ultralytics release."""
        return False


from ..errors import ModelError
from ..io import configs_dir
from .tasks import ActSwapDetectionModel

__all__ = (
    "MP",
    "SP",
    "SPPCSPC",
    "RepConv",
    "YOLOv7DetectionModel",
    "is_yolov7_cfg",
    "load_yolov7_cfg",
    "parse_act",
    "parse_yolov7_model",
)

BUILDER = "yolov7"

# torch.nn activations a config may name, e.g. ``nn.LeakyReLU(0.1)``; built from literal arguments only, never eval'd.
SAFE_ACTS = frozenset(
    {
        "CELU",
        "ELU",
        "GELU",
        "Hardsigmoid",
        "Hardswish",
        "Hardtanh",
        "Identity",
        "LeakyReLU",
        "Mish",
        "PReLU",
        "ReLU",
        "ReLU6",
        "SELU",
        "SiLU",
        "Sigmoid",
        "Softplus",
        "Tanh",
    }
)


def _fresh_act(act) -> nn.Module:
    """A new activation module: SiLU for ``True``, a copy of a given module, Identity for ``False``/``None``."""
    if act is True:
        return nn.SiLU()
    if isinstance(act, nn.Module):
        return deepcopy(act)
    return nn.Identity()


class MP(nn.Module):
    """YOLOv7 max-pool downsampling: ``MaxPool2d(k, stride=k)``.

    Args:
        k (int): kernel size and stride.
    """

    def __init__(self, k: int = 2):
        super().__init__()
        self.m = nn.MaxPool2d(kernel_size=k, stride=k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Downsample ``x`` by ``k``."""
        return self.m(x)


class SP(nn.Module):
    """YOLOv7 'same' max-pool (yolov7-tiny's SPP branches): ``MaxPool2d(k, stride=s, padding=k // 2)``.

    Args:
        k (int): kernel size.
        s (int): stride.
    """

    def __init__(self, k: int = 3, s: int = 1):
        super().__init__()
        self.m = nn.MaxPool2d(kernel_size=k, stride=s, padding=k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pool ``x``; spatial size is kept when ``s == 1``."""
        return self.m(x)


class SPPCSPC(nn.Module):
    """YOLOv7 spatial pyramid pooling inside a cross-stage-partial block.

    A 1x1 -> 3x3 -> 1x1 stem, max-pools of kernels ``k`` concatenated with it, a 1x1 -> 3x3 fuse, then a concat with a
    1x1 shortcut branch and a final 1x1. Hidden width ``c_ = int(2 * c2 * e)``.

    Args:
        c1 (int): input channels.
        c2 (int): output channels.
        n (int): unused; kept so that upstream argument lists parse the same.
        shortcut (bool): unused; kept for upstream argument compatibility.
        g (int): unused; kept for upstream argument compatibility.
        e (float): hidden-width ratio.
        k (tuple[int, ...]): max-pool kernel sizes.
        act (bool | nn.Module): activation of every conv (a fresh copy each); True means SiLU.
    """

    def __init__(self, c1, c2, n=1, shortcut=False, g=1, e=0.5, k=(5, 9, 13), act=True):
        super().__init__()
        c_ = int(2 * c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1, act=_fresh_act(act))
        self.cv2 = Conv(c1, c_, 1, 1, act=_fresh_act(act))
        self.cv3 = Conv(c_, c_, 3, 1, act=_fresh_act(act))
        self.cv4 = Conv(c_, c_, 1, 1, act=_fresh_act(act))
        self.m = nn.ModuleList(nn.MaxPool2d(kernel_size=x, stride=1, padding=x // 2) for x in k)
        self.cv5 = Conv((len(k) + 1) * c_, c_, 1, 1, act=_fresh_act(act))
        self.cv6 = Conv(c_, c_, 3, 1, act=_fresh_act(act))
        self.cv7 = Conv(2 * c_, c2, 1, 1, act=_fresh_act(act))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the pooled CSP features, ``c2`` channels at the input's resolution."""
        x1 = self.cv4(self.cv3(self.cv1(x)))
        y1 = self.cv6(self.cv5(torch.cat([x1, *(m(x1) for m in self.m)], 1)))
        return self.cv7(torch.cat((y1, self.cv2(x)), 1))


class RepConv(nn.Module):
    """YOLOv7's re-parameterisable 3x3 conv (RepVGG style) with its own activation.

    Training: ``act(BN(conv3x3(x)) + BN(conv1x1(x)) [+ BN(x) when c1 == c2 and s == 1])``. ``fuse_convs()`` folds the
    branches into one biased 3x3 conv (``rbr_reparam``) with the same output. Parameter names follow upstream so that
    official weights load by name.

    Args:
        c1 (int): input channels.
        c2 (int): output channels.
        k (int): kernel size; must be 3.
        s (int): stride.
        p (int, optional): padding; must resolve to 1.
        g (int): groups.
        act (bool | nn.Module): activation; True means a fresh SiLU, a module is used as given, False means none.
    """

    def __init__(self, c1, c2, k=3, s=1, p=None, g=1, act=True):
        super().__init__()
        if k != 3 or p not in (None, 1):
            raise ModelError(f"RepConv supports only k=3 with padding 1, got k={k}, p={p}: use Conv for other kernels")
        self.in_channels, self.out_channels, self.groups = c1, c2, g
        self.act = nn.SiLU() if act is True else act if isinstance(act, nn.Module) else nn.Identity()
        self.rbr_identity = nn.BatchNorm2d(c1) if c1 == c2 and s == 1 else None
        self.rbr_dense = nn.Sequential(nn.Conv2d(c1, c2, 3, s, 1, groups=g, bias=False), nn.BatchNorm2d(c2))
        self.rbr_1x1 = nn.Sequential(nn.Conv2d(c1, c2, 1, s, 0, groups=g, bias=False), nn.BatchNorm2d(c2))

    @property
    def fused(self) -> bool:
        """True once ``fuse_convs()`` has replaced the branches by ``rbr_reparam``."""
        return "rbr_reparam" in self._modules

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Sum of the three branches, activated (or the fused conv, activated, after ``fuse_convs()``)."""
        if self.fused:
            return self.forward_fuse(x)
        y = self.rbr_dense(x) + self.rbr_1x1(x)
        if self.rbr_identity is not None:
            y = y + self.rbr_identity(x)
        return self.act(y)

    def forward_fuse(self, x: torch.Tensor) -> torch.Tensor:
        """Forward through the single fused 3x3 conv."""
        return self.act(self.rbr_reparam(x))

    @staticmethod
    def _fold_bn(kernel: torch.Tensor, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
        """Kernel and bias of ``bn(conv(x))`` as one biased conv."""
        scale = bn.weight / (bn.running_var + bn.eps).sqrt()
        return kernel * scale.reshape(-1, 1, 1, 1), bn.bias - bn.running_mean * scale

    def get_equivalent_kernel_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The 3x3 kernel and bias equal to the three branches in eval mode."""
        k3, b3 = self._fold_bn(self.rbr_dense[0].weight, self.rbr_dense[1])
        k1, b1 = self._fold_bn(self.rbr_1x1[0].weight, self.rbr_1x1[1])
        kernel, bias = k3 + F.pad(k1, [1, 1, 1, 1]), b3 + b1
        if self.rbr_identity is not None:
            cpg = self.in_channels // self.groups  # input channels per group
            eye = torch.zeros_like(k3)
            idx = torch.arange(self.in_channels, device=eye.device)
            eye[idx, idx % cpg, 1, 1] = 1.0
            ki, bi = self._fold_bn(eye, self.rbr_identity)
            kernel, bias = kernel + ki, bias + bi
        return kernel, bias

    @torch.no_grad()
    def fuse_convs(self) -> None:
        """Replace the branches by one biased 3x3 conv with the same eval-mode output; idempotent."""
        if self.fused:
            return
        kernel, bias = self.get_equivalent_kernel_bias()
        conv = self.rbr_dense[0]
        fused = nn.Conv2d(self.in_channels, self.out_channels, 3, conv.stride, 1, groups=self.groups, bias=True)
        fused = fused.to(device=kernel.device, dtype=kernel.dtype).requires_grad_(False)
        fused.weight.copy_(kernel.to(conv.weight.dtype))
        fused.bias.copy_(bias.to(conv.weight.dtype))
        del self.rbr_dense, self.rbr_1x1, self.rbr_identity
        self.rbr_reparam = fused


# ----------------------------------------------------------------------------------------------------------- parsing


def is_yolov7_cfg(d) -> bool:
    """True when ``d`` is a model-YAML dict with top-level ``builder: yolov7`` (built by this module)."""
    return isinstance(d, dict) and str(d.get("builder", "")).strip().lower() == BUILDER


def _cfg_path(cfg: str | Path) -> Path:
    """Resolve a config name or path: an existing file, else ``configs/models/<name>[.yaml]``."""
    p = Path(cfg)
    if p.is_file():
        return p
    models = configs_dir() / "models"
    for cand in (models / p.name, models / f"{p.name}.yaml"):
        if cand.is_file():
            return cand
    known = ", ".join(sorted(x.name for x in models.glob("yolov7*.yaml"))) or "none"
    raise ModelError(f"model config {str(cfg)!r} not found: pass a YAML path or a built-in name ({known})")


def load_yolov7_cfg(cfg: str | Path | dict) -> dict:
    """Load a YOLOv7 model YAML (path, built-in name or dict) with ``yaml.safe_load``.

    Args:
        cfg (str | Path | dict): path, built-in name such as ``yolov7-tiny.yaml``, or an already loaded dict.

    Returns:
        (dict): a fresh copy of the config, with ``yaml_file`` set when read from a file.
    """
    if isinstance(cfg, dict):
        d = deepcopy(cfg)
        where = d.get("yaml_file") or "model dict"
    else:
        path = _cfg_path(cfg)
        where = str(path)
        try:
            d = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            line = f":{mark.line + 1}" if mark is not None else ""
            raise ModelError(f"{path}{line}: invalid YAML ({getattr(e, 'problem', e)}): fix the syntax") from None
        if not isinstance(d, dict):
            raise ModelError(f"{path}: a model config must be a YAML mapping with backbone/head lists")
        d["yaml_file"] = str(path)
    if not is_yolov7_cfg(d):
        raise ModelError(f"{where}: not a YOLOv7 config (no top-level 'builder: yolov7'): add it or use another model")
    for key in ("backbone", "head"):
        if not isinstance(d.get(key), list) or not d[key]:
            raise ModelError(f"{where}: '{key}' must be a non-empty list of [from, number, module, args] rows")
    if "nc" not in d:
        raise ModelError(f"{where}: missing top-level 'nc' (number of classes): add e.g. 'nc: 80'")
    return d


def parse_act(spec, where: str = "act"):
    """Turn a config's activation value into ``True``/``False`` or a fresh ``nn.Module``, without eval.

    Accepts YAML booleans, ``None`` (no activation, as in upstream), and calls of whitelisted ``torch.nn`` activations
    with literal arguments, e.g. ``nn.LeakyReLU(0.1)`` or ``nn.ELU(alpha=0.5)``.

    Args:
        spec (bool | str | None): the value from the config.
        where (str): what to name in an error message (file, layer).

    Returns:
        (bool | nn.Module): ``True`` (the model's default), ``False`` (no activation) or a new module.
    """
    if spec is None:
        return False
    if isinstance(spec, bool):
        return spec
    if isinstance(spec, str):
        text = spec.strip()
        if text in ("True", "False", "None"):
            return {"True": True, "False": False, "None": False}[text]
        hint = f"use e.g. nn.LeakyReLU(0.1) with one of {', '.join(sorted(SAFE_ACTS))}"
        try:
            node = ast.parse(text, mode="eval").body
        except SyntaxError:
            raise ModelError(f"{where}: activation {text!r} is not a call like nn.Name(args): {hint}") from None
        if isinstance(node, (ast.Name, ast.Attribute)):  # allow a bare nn.SiLU
            node = ast.Call(func=node, args=[], keywords=[])
        if not isinstance(node, ast.Call):
            raise ModelError(f"{where}: activation {text!r} is not a call like nn.Name(args): {hint}")
        func = node.func
        if isinstance(func, ast.Attribute) and ast.unparse(func.value) in ("nn", "torch.nn"):
            name = func.attr
        elif isinstance(func, ast.Name):
            name = func.id
        else:
            name = None
        if name not in SAFE_ACTS:
            raise ModelError(
                f"{where}: activation {text!r} is not a torch.nn activation: {hint} (swap in others with act_swap:)"
            )
        try:
            args = [ast.literal_eval(a) for a in node.args]
            kwargs = {k.arg: ast.literal_eval(k.value) for k in node.keywords}
        except ValueError:
            raise ModelError(f"{where}: activation {text!r} must have literal arguments only: {hint}") from None
        if None in kwargs:
            raise ModelError(f"{where}: activation {text!r} must not use **kwargs: {hint}")
        try:
            return getattr(nn, name)(*args, **kwargs)
        except (TypeError, ValueError) as e:
            raise ModelError(f"{where}: activation {text!r} has bad arguments ({e}): fix them") from None
    raise ModelError(f"{where}: activation must be true, false or a string like 'nn.LeakyReLU(0.1)', got {spec!r}")


def _make_detect(nc: int, reg_max: int, end2end: bool, ch: list[int]) -> Detect:
    """An ultralytics ``Detect`` with the v5u/v8 (``legacy``) classification branch, whatever ``Detect.legacy`` is.

    ultralytics' parser sets the class attribute ``Detect.legacy`` on every build, so its value depends on the last
    model built in the process. We pin the choice on this instance only (an instance attribute read by ``__init__``),
    which leaves the class untouched and the module's type exactly ``Detect``.
    """
    kwargs = {"nc": nc, "ch": ch, "reg_max": reg_max, "end2end": end2end}
    params = inspect.signature(Detect.__init__).parameters  # older ultralytics: Detect(nc, ch) only
    m = Detect.__new__(Detect)
    m.__dict__["legacy"] = True
    Detect.__init__(m, **{k: v for k, v in kwargs.items() if k in params})
    return m


_WIDTH_MODULES = ("Conv", "RepConv", "SPPCSPC")  # their first arg is c2, scaled by width_multiple
_ACT_INDEX = {"Conv": 5, "RepConv": 5}  # position of upstream's per-layer act in [c2, k, s, p, g, act]
_MODULES = {
    "Conv": Conv,
    "RepConv": RepConv,
    "SPPCSPC": SPPCSPC,
    "MP": MP,
    "SP": SP,
    "Concat": Concat,
    "nn.Upsample": nn.Upsample,
    "Detect": Detect,
}


def _resolve_args(args: list, nc: int) -> list:
    """Strings in args: ``nc`` -> nc, Python literals (``None``, ``(5, 9, 13)``) -> values, others stay strings."""
    out = []
    for a in args:
        if isinstance(a, str):
            if a == "nc":
                a = nc
            else:
                with contextlib.suppress(ValueError, SyntaxError):
                    a = ast.literal_eval(a)
        out.append(a)
    return out


def parse_yolov7_model(d: dict, ch: int = 3, verbose: bool = True) -> tuple[nn.Sequential, list[int]]:
    """Build the layers of a ``builder: yolov7`` config.

    Rows are ``[from, number, module, args]`` as in upstream YOLOv7. ``Conv``/``RepConv`` args are upstream's
    ``[c2, k, s, p, g, act]``; ``act`` may be ``nn.LeakyReLU(0.1)``-style text (see ``parse_act``). Blocks that name no
    activation get the config's top-level ``act`` (default SiLU), a fresh module each, the ``Detect`` head included.
    Output widths scale like ultralytics: ``make_divisible(min(c2, max_channels) * width_multiple, 8)``.

    Args:
        d (dict): the config (see ``load_yolov7_cfg``).
        ch (int): input channels.
        verbose (bool): log one line per layer.

    Returns:
        (nn.Sequential): the layers, each with ``.i``, ``.f``, ``.type``, ``.np`` attributes.
        (list[int]): sorted indices of layers whose outputs later layers read.
    """
    where = d.get("yaml_file") or "model dict"
    nc = d["nc"]
    depth, width = d.get("depth_multiple", 1.0), d.get("width_multiple", 1.0)
    max_channels = float("inf")
    if d.get("scales"):
        scale = d.get("scale") or next(iter(d["scales"]))
        depth, width, max_channels = d["scales"][scale]
    default_act = parse_act(d.get("act", True), f"{where}: act")
    reg_max, end2end = d.get("reg_max", 16), bool(d.get("end2end", False))

    if verbose:
        LOGGER.info(f"\n{'':>3}{'from':>20}{'n':>3}{'params':>10}  {'module':<45}{'arguments':<30}")
    rows = list(d["backbone"]) + list(d["head"])
    chs, layers, save = [], [], []
    for i, row in enumerate(rows):
        here = f"{where}: layer {i}"
        if not (isinstance(row, (list, tuple)) and len(row) == 4):
            raise ModelError(f"{here}: expected [from, number, module, args], got {row!r}")
        f, n, name, args = row
        if name not in _MODULES:
            raise ModelError(f"{here}: unknown module {name!r}: use one of {', '.join(_MODULES)}")
        froms = [f] if isinstance(f, int) else list(f) if isinstance(f, (list, tuple)) else None
        ok = froms == [-1] if i == 0 else froms and all(isinstance(x, int) and -i <= x < i for x in froms)
        if not ok:
            raise ModelError(f"{here}: 'from' {f!r} must name earlier layers (negative = relative, e.g. -1 or [-1, 6])")
        if not isinstance(n, int) or n < 1:
            raise ModelError(f"{here}: 'number' must be a positive integer, got {n!r}")
        args = _resolve_args(list(args or []), nc)
        cin = [ch if i == 0 else chs[x] for x in froms]  # input channels per source
        m = _MODULES[name]
        n = max(round(n * depth), 1) if n > 1 else n
        act = default_act
        try:
            if name in _WIDTH_MODULES:
                c2 = make_divisible(min(args[0], max_channels) * width, 8)
                if name in _ACT_INDEX and len(args) > _ACT_INDEX[name]:
                    layer_act = parse_act(args[_ACT_INDEX[name]], f"{here} ({name})")
                    act = default_act if layer_act is True else layer_act
                    args = args[: _ACT_INDEX[name]]
                args = [cin[0], c2, *args[1:]]
            elif name == "Concat":
                c2 = sum(cin)
            elif name == "Detect":
                if len(args) != 1:
                    raise ModelError(f"{here}: Detect takes [nc] only, got {args!r}")
                c2 = None
            else:  # MP, SP, nn.Upsample keep the channels
                c2 = cin[0]
            if name == "Detect":
                m_ = _make_detect(args[0], reg_max, end2end, cin)
                for sub in m_.modules():  # fresh head activations: the model's act, never Conv.default_act
                    if isinstance(sub, Conv):
                        sub.act = _fresh_act(default_act)
                blocks = [m_]
            elif name in _WIDTH_MODULES:
                blocks = [m(*args, act=_fresh_act(act)) for _ in range(n)]
            else:
                blocks = [m(*args) for _ in range(n)]
        except ModelError as e:
            msg = str(e)
            raise ModelError(msg if msg.startswith(where) else f"{here}: {msg}") from None
        except (TypeError, ValueError, IndexError) as e:
            raise ModelError(f"{here}: {name}{args} cannot be built ({e}): fix its args") from None
        m_ = nn.Sequential(*blocks) if n > 1 else blocks[0]
        m_.np = sum(p.numel() for p in m_.parameters())
        m_.i, m_.f, m_.type = i, f, f"{m.__module__}.{m.__qualname__}"
        if verbose:
            LOGGER.info(f"{i:>3}{f!s:>20}{n:>3}{m_.np:10.0f}  {m_.type:<45}{args!s:<30}")
        save.extend(x % i for x in froms if x != -1)
        layers.append(m_)
        chs.append(c2)
    if not isinstance(layers[-1], Detect):
        raise ModelError(f"{where}: the last head row must be [[P3, P4, P5], 1, Detect, [nc]]")
    return nn.Sequential(*layers), sorted(set(save))


# ------------------------------------------------------------------------------------------------------------- model


class YOLOv7DetectionModel(ActSwapDetectionModel):
    """YOLOv7 body + ultralytics anchor-free ``Detect`` head, as an ultralytics ``DetectionModel``.

    Built by ``parse_yolov7_model`` instead of ultralytics' parser; everything after the build (strides, bias init,
    ``initialize_weights``, ``act_swap:``, ``fuse()``, loss, export) is ultralytics' own.

    Args:
        cfg (str | Path | dict): ``yolov7.yaml``, ``yolov7x.yaml``, ``yolov7-tiny.yaml``, a path, or a loaded dict.
        ch (int): input channels.
        nc (int, optional): number of classes; overrides the YAML's ``nc``.
        verbose (bool): log the layer table and model info.
    """

    def __init__(self, cfg="yolov7.yaml", ch=3, nc=None, verbose=True):
        nn.Module.__init__(self)  # skip DetectionModel.__init__: its parser cannot build these configs
        self.yaml = load_yolov7_cfg(cfg)
        self.yaml["channels"] = ch
        if nc and nc != self.yaml["nc"]:
            LOGGER.info(f"Overriding model.yaml nc={self.yaml['nc']} with nc={nc}")
            self.yaml["nc"] = nc
        self.model, self.save = parse_yolov7_model(deepcopy(self.yaml), ch=ch, verbose=verbose)
        self.names = {i: f"{i}" for i in range(self.yaml["nc"])}
        self.inplace = self.yaml.get("inplace", True)

        # Strides and bias init as ultralytics' DetectionModel does them. It probes at 256 px; any multiple of the
        # largest stride gives the same strides, and 64 px costs 1/16 of the compute on every (re)build.
        m = self.model[-1]
        s = 64
        m.inplace = self.inplace
        self.model.eval()  # keep BN statistics untouched by the probe
        m.training = True  # the head returns raw feature maps in training mode
        with torch.no_grad():
            out = self.forward(torch.zeros(1, ch, s, s))
        if isinstance(out, dict):  # ultralytics >= 8.4 returns a dict, older releases the list of maps
            out = out.get("one2many", out)["feats"]
        m.stride = torch.tensor([s / x.shape[-2] for x in out])
        self.stride = m.stride
        self.model.train()
        m.bias_init()
        initialize_weights(self)
        if verbose:
            self.info()
            LOGGER.info("")
        self.apply_act_swap(verbose=verbose)

    def body_parameters(self) -> int:
        """Number of parameters before the ``Detect`` head (the part that is official YOLOv7)."""
        return sum(p.numel() for layer in self.model[:-1] for p in layer.parameters())

    def is_fused(self) -> bool:
        """True once ultralytics' fusion and our RepConv re-parameterisation have nothing left to do."""
        return super().is_fused() and not any(isinstance(m, RepConv) and not m.fused for m in self.modules())

    def fuse(self, verbose=True, imgsz=640):
        """Re-parameterise every RepConv into one 3x3 conv, then fuse as ultralytics does (conv+BN, activations)."""
        if not is_qat(self):  # like ultralytics: a QAT model keeps its merged-branch convs as trained
            for m in self.model.modules():
                if isinstance(m, RepConv):
                    m.fuse_convs()
        return super().fuse(verbose=verbose, imgsz=imgsz)
