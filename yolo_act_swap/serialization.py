"""Make patched checkpoints loadable under ``ULTRALYTICS_SAFE_LOAD=1`` (``torch.load(weights_only=True)``).

A ``weights_only`` load only rebuilds classes on torch's allow-list. Ultralytics allows its own and ``torch.nn``
classes; ``register_safe_globals()`` adds ours: the detection-model classes and every ``nn.Module`` class defined in the
package's activation and model modules, plus activation classes registered by users. ``import yolo_act_swap`` calls it.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import torch
import torch.nn as nn

# Modules whose nn.Module classes can end up inside a checkpoint.
_CLASS_PACKAGES = ("yolo_act_swap.activations", "yolo_act_swap.nn")

_registered: set = set()


def _module_classes(package: str) -> list[type]:
    """``nn.Module`` subclasses defined in ``package`` and its direct submodules (imports them)."""
    pkg = importlib.import_module(package)
    mods = [pkg] + [importlib.import_module(f"{package}.{m.name}") for m in pkgutil.iter_modules(pkg.__path__)]
    found = []
    for mod in mods:
        for _, obj in inspect.getmembers(mod, inspect.isclass):
            if issubclass(obj, nn.Module) and obj.__module__ == mod.__name__:
                found.append(obj)
    return found


def package_classes() -> list[type]:
    """Every class ``register_safe_globals()`` allows: the package's model and activation classes and the classes of
    activations added with ``register_activation`` (found by building each registered activation once)."""
    classes = []
    for package in _CLASS_PACKAGES:
        classes += _module_classes(package)
    from .activations.registry import list_activations

    for info in list_activations():
        if isinstance(info.factory, type) and issubclass(info.factory, nn.Module):
            classes.append(info.factory)
            continue
        try:
            module = info.factory(8) if info.channel_aware else info.factory(None)
        except Exception:  # noqa: BLE001 - a factory that needs other arguments: its classes come from _CLASS_PACKAGES
            continue
        classes += [type(m) for m in module.modules()]
    return [c for c in dict.fromkeys(classes) if not c.__module__.startswith("torch.")]


def register_safe_globals(*extra: type) -> list[type]:
    """Add the package's classes (and ``extra`` ones) to torch's ``weights_only`` allow-list; idempotent.

    Args:
        *extra (type): more classes to allow, e.g. a custom activation class used in a checkpoint.

    Returns:
        (list[type]): the classes newly registered by this call.
    """
    if not hasattr(torch.serialization, "add_safe_globals"):  # torch < 2.4: no restricted loading to prepare for
        return []
    new = [c for c in [*package_classes(), *extra] if c not in _registered]
    if new:
        torch.serialization.add_safe_globals(new)
        _registered.update(new)
    return new
