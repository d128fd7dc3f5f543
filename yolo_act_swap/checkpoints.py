"""Model files: writing patched checkpoints and model YAMLs, and the classes torch may rebuild when loading them.

``save_checkpoint`` writes the ultralytics (or upstream) checkpoint layout with a ``yolo_act_swap`` entry;
``save_model_yaml`` writes a model YAML whose ``act_swap:`` key rebuilds the patched model. ``register_safe_globals``
puts the package's classes on torch's ``weights_only`` allow-list (ultralytics' ``ULTRALYTICS_SAFE_LOAD=1``).
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from pathlib import Path

import torch
import torch.nn as nn
import yaml

from .activations.registry import ACT_TAG, is_activation_module, list_activations
from .blocks import unwrap_model
from .errors import ModelError
from .io import atomic_torch_save, atomic_write_text

# Packages (and modules) whose nn.Module classes can end up inside a checkpoint.
_CLASS_PACKAGES = ("yolo_act_swap.activations", "yolo_act_swap.nn", "yolo_act_swap.blend")

# Classes that moved: (module they now live in, the module older checkpoints name).
_MOVED = (("yolo_act_swap.nn.yolov7_modules", "yolo_act_swap.nn.yolov7"),)

_registered: set = set()


def _module_classes(package: str) -> list[type]:
    """``nn.Module`` subclasses defined in ``package`` (a package or a module) and its direct submodules (imports them)."""
    pkg = importlib.import_module(package)
    subs = pkgutil.iter_modules(pkg.__path__) if hasattr(pkg, "__path__") else ()
    mods = [pkg] + [importlib.import_module(f"{package}.{m.name}") for m in subs]
    found = []
    for mod in mods:
        for _, obj in inspect.getmembers(mod, inspect.isclass):
            if issubclass(obj, nn.Module) and obj.__module__ == mod.__name__:
                found.append(obj)
    return found


def package_classes() -> list[type]:
    """Every class ``register_safe_globals()`` allows: the ``nn.Module`` classes defined in the package's activation
    and model modules, and the classes registered with ``register_activation(factory=SomeClass)``. Nothing is built."""
    classes = []
    for package in _CLASS_PACKAGES:
        classes += _module_classes(package)
    for info in list_activations():
        if isinstance(info.factory, type) and issubclass(info.factory, nn.Module):
            classes.append(info.factory)
    return [c for c in dict.fromkeys(classes) if not c.__module__.startswith("torch.")]


def package_aliases() -> list[tuple[type, str]]:
    """``(class, "old.module.Name")`` allow-list entries for the package classes that moved module, so that
    checkpoints written before the move load (e.g. ``yolo_act_swap.nn.yolov7.RepConv``)."""
    out = []
    for new, old in _MOVED:
        for cls in package_classes():
            if cls.__module__ == new:
                out.append((cls, f"{old}.{cls.__qualname__}"))
    return out


def register_safe_globals(*extra: type) -> list[type]:
    """Add the package's classes (and ``extra`` ones) to torch's ``weights_only`` allow-list; idempotent.

    Args:
        *extra (type): more classes to allow, e.g. a custom activation class used in a checkpoint.

    Returns:
        (list): the entries (classes, and ``(class, old name)`` aliases) newly registered by this call.
    """
    if not hasattr(torch.serialization, "add_safe_globals"):  # torch < 2.4: no restricted loading to prepare for
        return []
    new = [c for c in [*package_classes(), *package_aliases(), *extra] if c not in _registered]
    if new:
        torch.serialization.add_safe_globals(new)
        _registered.update(new)
    return new


def save_checkpoint(model, path: str | Path, report=None, cfg=None, imgsz: int = 640) -> Path:
    """Write a patched model as a checkpoint (atomically).

    An ultralytics model gets the ultralytics layout (``model`` in half precision, ``train_args``, ``date``,
    ``version``, ...) so that ``ultralytics.YOLO(path)`` loads and runs it after ``import yolo_act_swap``; an upstream
    YOLOv5/YOLOv7 model gets upstream's layout (``model``, ``epoch``, ``optimizer``...). Both carry a
    ``yolo_act_swap`` entry with the spec and the report.
    """
    from copy import deepcopy
    from datetime import datetime

    from . import __version__
    model = unwrap_model(model)
    meta = {"version": __version__, "report": report.to_dict() if report is not None else None}
    if isinstance(getattr(model, "yaml", None), dict) and "act_swap" in model.yaml:
        meta["act_swap"] = model.yaml["act_swap"]
    m = deepcopy(model).half()
    try:
        from ultralytics.nn.tasks import BaseModel
    except ImportError:  # pragma: no cover
        BaseModel = ()
    if BaseModel and isinstance(model, BaseModel):
        import ultralytics

        args = dict(getattr(model, "args", None) or {})
        args.update(task="detect", model=str(cfg) if cfg else args.get("model"), imgsz=imgsz)
        ckpt = {
            "date": datetime.now().isoformat(),
            "version": ultralytics.__version__,
            "license": "AGPL-3.0 License (https://ultralytics.com/license)",
            "docs": "https://docs.ultralytics.com",
            "epoch": -1,
            "best_fitness": None,
            "model": m,
            "ema": None,
            "updates": None,
            "optimizer": None,
            "train_args": {k: v for k, v in args.items() if isinstance(v, (str, int, float, bool, type(None)))},
            "train_metrics": None,
            "train_results": None,
            "yolo_act_swap": meta,
        }
    else:
        ckpt = {"epoch": -1, "best_fitness": None, "model": m, "ema": None, "updates": None, "optimizer": None,
                "date": datetime.now().isoformat(), "yolo_act_swap": meta}  # fmt: skip
    return atomic_torch_save(ckpt, path)


def _plain(v):
    """YAML-safe copy: tuples become lists, everything else stays."""
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def dump_model_yaml(d: dict) -> str:
    """YAML text of a model dict, with layer rows and other short lists on one line each, as in model YAMLs."""
    class _Dumper(yaml.SafeDumper):
        pass

    def lists(dumper, data):
        flat = all(not isinstance(x, (list, dict)) or (isinstance(x, list) and all(
            not isinstance(y, (list, dict)) for y in x)) for x in data)  # fmt: skip
        return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flat)

    _Dumper.add_representer(list, lists)
    return yaml.dump(_plain(d), Dumper=_Dumper, sort_keys=False, width=120, allow_unicode=True)


def save_model_yaml(model, path: str | Path) -> Path:
    """Write the model's YAML dict, with its ``act_swap:`` spec, so that ``--cfg path`` rebuilds the patched model."""
    model = unwrap_model(model)
    d = getattr(model, "yaml", None)
    if not isinstance(d, dict):
        raise ModelError(f"{type(model).__name__} has no model YAML to save (--save-yaml needs a model built from one)")
    d = {k: v for k, v in _plain(d).items() if k != "yaml_file"}
    head = (f"# Written by yolo-act-swap from {model.yaml.get('yaml_file', 'a model YAML')}. The act_swap key is the "
            f"swap spec;\n# any yolo-act-swap build (yolo-act-swap --cfg THIS_FILE, train, val) re-applies it.\n")  # fmt: skip
    return atomic_write_text(path, head + dump_model_yaml(d))


def _checkpoint_module(weights) -> tuple[nn.Module | None, str]:
    """The model inside ``weights`` (a checkpoint path, a loaded checkpoint dict or a module) and its name."""
    name = str(weights) if isinstance(weights, (str, Path)) else type(weights).__name__
    if isinstance(weights, (str, Path)):
        if not Path(weights).is_file():
            raise ModelError(f"weights {weights}: no such file; pass the checkpoint the model was loaded from")
        # the same file the training script has just unpickled (torch.load of an upstream checkpoint needs it)
        weights = torch.load(weights, map_location="cpu", weights_only=False)
    if isinstance(weights, dict):
        weights = weights.get("model") or weights.get("ema")
    return (weights if isinstance(weights, nn.Module) else None), name


def restore_activations(model: nn.Module, weights) -> list[str]:
    """Copy the state of every swapped-in activation of ``model`` from the same activation in a patched checkpoint.

    Upstream YOLOv5/YOLOv7 ``train.py`` (``--resume``, fine-tuning) build the plain model and load only the entries it
    has, so a patched checkpoint's activation weights would start fresh. An activation is restored when the
    checkpoint's model has the same activation (name and class) at the same path with the same state shapes; others
    (a checkpoint without swaps, or swapped to something else there) keep their fresh state. Parameters and buffers
    are copied as stored, so upstream's half-precision checkpoints continue exactly as ``ckpt['model'].float()``.

    Args:
        model (nn.Module): the patched model.
        weights (str | Path | dict | nn.Module): the checkpoint (upstream ``train.py``'s ``weights``); falsy: none.

    Returns:
        (list[str]): the paths of the activations restored.
    """
    if not weights:
        return []
    src, name = _checkpoint_module(weights)
    if src is None:
        raise ModelError(f"weights {name}: no model in it (a checkpoint needs a 'model' or 'ema' entry)")
    theirs = dict(src.named_modules())
    restored = []
    for path, act in unwrap_model(model).named_modules():
        other = theirs.get(path)
        if not is_activation_module(act) or other is None or type(other) is not type(act):
            continue
        if getattr(other, ACT_TAG, None) != getattr(act, ACT_TAG):
            continue
        state, mine = other.state_dict(), act.state_dict()
        if state.keys() == mine.keys() and all(state[k].shape == mine[k].shape for k in state):
            act.load_state_dict(state)
            restored.append(path)
    return restored
