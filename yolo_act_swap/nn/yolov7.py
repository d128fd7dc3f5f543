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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
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
from ..io import configs_dir, read_yaml
from .tasks import ActSwapDetectionModel
from .yolov7_modules import MP, SP, SPPCSPC, RepConv, fresh_act, parse_act

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
        d = read_yaml(path, ModelError, what="model config")
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


@dataclass(frozen=True)
class _Settings:
    """What every row of a config is built with: the scaling, the default activation and the head options."""

    where: str
    nc: int
    depth: float
    width: float
    max_channels: float
    act: Any
    reg_max: int
    end2end: bool


def _settings(d: dict) -> _Settings:
    where = d.get("yaml_file") or "model dict"
    nc = d["nc"]
    depth, width = d.get("depth_multiple", 1.0), d.get("width_multiple", 1.0)
    max_channels = float("inf")
    if d.get("scales"):
        scale = d.get("scale") or next(iter(d["scales"]))
        depth, width, max_channels = d["scales"][scale]
    act = parse_act(d.get("act", True), f"{where}: act")
    return _Settings(where, nc, depth, width, max_channels, act, d.get("reg_max", 16), bool(d.get("end2end", False)))


def _check_row(row, i: int, here: str) -> tuple:
    """``(from, from-list, number, module name, args)`` of a valid ``[from, number, module, args]`` row."""
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
    return f, froms, n, name, args


def _layer_args(name: str, args: list, cin: list[int], s: _Settings, here: str) -> tuple[list, int | None, Any]:
    """The constructor args, the output channels and the activation of one row (widths scaled, per-layer act)."""
    if name in _WIDTH_MODULES:
        act = s.act
        c2 = make_divisible(min(args[0], s.max_channels) * s.width, 8)
        if name in _ACT_INDEX and len(args) > _ACT_INDEX[name]:
            layer_act = parse_act(args[_ACT_INDEX[name]], f"{here} ({name})")
            act = s.act if layer_act is True else layer_act
            args = args[: _ACT_INDEX[name]]
        return [cin[0], c2, *args[1:]], c2, act
    if name == "Concat":
        return args, sum(cin), s.act
    if name == "Detect":
        if len(args) != 1:
            raise ModelError(f"{here}: Detect takes [nc] only, got {args!r}")
        return args, None, s.act
    return args, cin[0], s.act  # MP, SP, nn.Upsample keep the channels


def _make_blocks(name: str, args: list, n: int, act, cin: list[int], s: _Settings) -> list[nn.Module]:
    m = _MODULES[name]
    if name == "Detect":
        head = _make_detect(args[0], s.reg_max, s.end2end, cin)
        for sub in head.modules():  # fresh head activations: the model's act, never Conv.default_act
            if isinstance(sub, Conv):
                sub.act = fresh_act(s.act)
        return [head]
    if name in _WIDTH_MODULES:
        return [m(*args, act=fresh_act(act)) for _ in range(n)]
    return [m(*args) for _ in range(n)]


def _build_row(row, i: int, ch: int, chs: list, s: _Settings, verbose: bool) -> tuple[nn.Module, list[int], Any]:
    """Layer ``i``: the module (with ``.i``, ``.f``, ``.type``, ``.np``), the layers it reads and its output width."""
    here = f"{s.where}: layer {i}"
    f, froms, n, name, args = _check_row(row, i, here)
    args = _resolve_args(list(args or []), s.nc)
    cin = [ch if i == 0 else chs[x] for x in froms]  # input channels per source
    n = max(round(n * s.depth), 1) if n > 1 else n
    try:
        args, c2, act = _layer_args(name, args, cin, s, here)
        blocks = _make_blocks(name, args, n, act, cin, s)
    except ModelError as e:
        msg = str(e)
        raise ModelError(msg if msg.startswith(s.where) else f"{here}: {msg}") from None
    except (TypeError, ValueError, IndexError) as e:
        raise ModelError(f"{here}: {name}{args} cannot be built ({e}): fix its args") from None
    m = _MODULES[name]
    m_ = nn.Sequential(*blocks) if n > 1 else blocks[0]
    m_.np = sum(p.numel() for p in m_.parameters())
    m_.i, m_.f, m_.type = i, f, f"{m.__module__}.{m.__qualname__}"
    if verbose:
        LOGGER.info(f"{i:>3}{f!s:>20}{n:>3}{m_.np:10.0f}  {m_.type:<45}{args!s:<30}")
    return m_, froms, c2


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
    s = _settings(d)
    if verbose:
        LOGGER.info(f"\n{'':>3}{'from':>20}{'n':>3}{'params':>10}  {'module':<45}{'arguments':<30}")
    chs, layers, save = [], [], []
    for i, row in enumerate(list(d["backbone"]) + list(d["head"])):
        layer, froms, c2 = _build_row(row, i, ch, chs, s, verbose)
        save.extend(x % i for x in froms if x != -1)
        layers.append(layer)
        chs.append(c2)
    if not isinstance(layers[-1], Detect):
        raise ModelError(f"{s.where}: the last head row must be [[P3, P4, P5], 1, Detect, [nc]]")
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
