"""Loading checkpoints without running their code: torch's ``weights_only`` unpickler and an allow-list.

A ``.pt`` file is a pickle, and a pickle can call any function while it loads. Every checkpoint this package reads
(``--weights`` of every command, ``train --resume``, the upstream path) goes through ``load_checkpoint``, which lists
the globals the file needs without running it (``torch.serialization.get_unsafe_globals_in_checkpoint``) and allows:

- ``torch.nn`` layers (classes under ``torch.nn.modules``);
- ultralytics' own types, judged by ultralytics' restricted loader (``torch_safe_load(path, safe_only=True)``);
- this package's classes (``checkpoints.package_classes``, with their old module names);
- for upstream YOLOv5/YOLOv7 checkpoints, the model classes of the checkout in use (``nn.Module`` subclasses of its
  already-imported modules) and the numpy types ``train.py`` stores (``best_fitness`` is an array).

Anything else is refused with one line naming the global and the opt-in: ``--trust-checkpoint`` (``trusting()``) or
``YOLO_ACT_SWAP_TRUST_CHECKPOINT=1``, which load such a file with the full unpickler after a one-line warning.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import re
import sys
import zipfile
from pathlib import Path

import torch
import torch.nn as nn

from .errors import ModelError

TRUST_ENV = "YOLO_ACT_SWAP_TRUST_CHECKPOINT"
TRUST_FLAG = "--trust-checkpoint"
UPSTREAM_MODULES = ("models.yolo", "models.common", "models.experimental")  # names upstream pickles carry
_TRUE = ("1", "true", "yes", "on")
_trust = [False]  # set by trusting() for the duration of a command
_warned: set = set()


class UnsafeCheckpoint(ModelError):
    """A checkpoint needs a global outside the allow-list (loading it could run code)."""


class UpstreamCheckpoint(ModelError):
    """A YOLOv5/YOLOv7 checkpoint given without the checkout its classes come from."""


@contextlib.contextmanager
def trusting(enabled: bool = True):
    """Within the block, checkpoints outside the allow-list load with the full unpickler (``--trust-checkpoint``)."""
    old = _trust[0]
    _trust[0] = bool(enabled) or old
    try:
        yield
    finally:
        _trust[0] = old


def is_trusted() -> bool:
    """``--trust-checkpoint`` is in effect, or ``YOLO_ACT_SWAP_TRUST_CHECKPOINT`` is set to a true value."""
    return _trust[0] or os.environ.get(TRUST_ENV, "").strip().lower() in _TRUE


# --- the allow-list ---------------------------------------------------------------------------------------------------


def _numpy_entries() -> list:
    """The numpy types upstream ``train.py`` checkpoints carry (``best_fitness`` is an ndarray or a numpy scalar), under
    numpy 1's and numpy 2's module names."""
    import numpy as np

    reconstruct = np.ndarray.__reduce__(np.zeros(1))[0]
    scalar = np.float64(0).__reduce__()[0]
    entries = [np.ndarray, np.dtype]
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        entries += [(reconstruct, f"{mod}._reconstruct"), (scalar, f"{mod}.scalar")]
    # dtype classes (numpy.dtypes.Float64DType ...) are rebuilt by numpy.dtype and missing from the global scan
    entries += [type(np.dtype(t)) for t in (np.float16, np.float32, np.float64, np.int32, np.int64, np.bool_)]
    return entries


def _package_entries() -> list:
    from .checkpoints import package_aliases, package_classes

    return [*package_classes(), *package_aliases()]


def _loaded_class(name: str):
    """The class ``module.Qualname`` from an already-imported module (nothing is imported), else None."""
    module, _, attr = name.rpartition(".")
    obj = getattr(sys.modules.get(module), attr, None) if module else None
    return obj if isinstance(obj, type) else None


def _torch_entry(name: str):
    obj = _loaded_class(name) if name.startswith("torch.nn.modules.") else None
    return obj if obj is not None and issubclass(obj, nn.Module) else None


def _upstream_entry(name: str, root: Path | None):
    """An ``nn.Module`` class defined in the checkout ``root`` (its modules must already be imported)."""
    if root is None:
        return None
    obj = _loaded_class(name)
    f = getattr(sys.modules.get(name.rpartition(".")[0]), "__file__", None)
    if obj is None or not f or not issubclass(obj, nn.Module):
        return None
    return obj if Path(root).resolve() in Path(f).resolve().parents else None


def _looks_upstream(name: str) -> bool:
    module = name.rpartition(".")[0]
    return module in UPSTREAM_MODULES or module.endswith(tuple(f".{m}" for m in UPSTREAM_MODULES))


def needed_globals(path: str | Path) -> list[str]:
    """The globals ``path`` needs beyond torch's defaults, read without running the pickle."""
    if not zipfile.is_zipfile(path):
        raise ModelError(f"{path}: not a torch checkpoint (torch.save writes a zip archive); the file is truncated, "
                         f"empty or of another format")  # fmt: skip
    try:
        return list(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    except Exception as e:  # noqa: BLE001 - any damage shows up here, before anything is unpickled
        raise ModelError(f"{path}: not a readable torch checkpoint ({type(e).__name__}); re-save or re-download it") from None


def _refused_line(path, name: str) -> str:
    return (f"{path}: refused to load: it needs {name}, which is not on the allow-list of checkpoint types (loading "
            f"it could run code); if you trust this file pass {TRUST_FLAG} or set {TRUST_ENV}=1")  # fmt: skip


def check_globals(path: str | Path, upstream_root: str | Path | None = None) -> tuple[list, list[str]]:
    """The allow-list entries ``path`` needs and the globals it needs that are refused (nothing is unpickled).

    Names under ``ultralytics.`` are left to ultralytics' restricted loader and are in neither list.

    Raises:
        UpstreamCheckpoint: the file holds upstream YOLOv5/YOLOv7 classes and no checkout was given.
    """
    entries, refused = [*_package_entries(), *_numpy_entries()], []
    known = {e[1] if isinstance(e, tuple) else f"{e.__module__}.{e.__qualname__}" for e in entries}
    root = Path(upstream_root) if upstream_root is not None else None
    for name in needed_globals(path):
        if name in known or name.startswith("ultralytics."):
            continue
        obj = _torch_entry(name) or _upstream_entry(name, root)
        if obj is not None:
            entries.append(obj if f"{obj.__module__}.{obj.__qualname__}" == name else (obj, name))
        elif root is None and _looks_upstream(name):
            raise UpstreamCheckpoint(f"{path} is an upstream YOLOv5/YOLOv7 checkpoint (it needs {name}): pass "
                                     f"--repo PATH, the checkout it was trained with")  # fmt: skip
        else:
            refused.append(name)
    return entries, refused


# --- loading ----------------------------------------------------------------------------------------------------------


def _warn_trusted(path, name: str) -> None:
    if str(path) not in _warned:
        _warned.add(str(path))
        print(f"yolo-act-swap: warning: {path} needs {name}, which is not on the allow-list; loading it with the full "
              f"unpickler because of {TRUST_FLAG}/{TRUST_ENV} (it can run code)", file=sys.stderr)  # fmt: skip


def _refused_name(e: BaseException) -> str | None:
    """The global torch's weights_only unpickler refused, from its message (also inside ultralytics' TypeError)."""
    while e is not None:
        m = re.search(r"GLOBAL (\S+) was not an allowed global", str(e)) or re.search(r"Unsupported global: (\S+)",
                                                                                    str(e))  # fmt: skip
        if m:
            return m.group(1)
        e = e.__cause__ or e.__context__
    return None


def _weights_only_load(path: Path, entries: list, ultralytics: bool):
    registered = set(torch.serialization.get_safe_globals())  # kept as they are: safe_globals() removes its own on exit
    with torch.serialization.safe_globals([e for e in entries if e not in registered]):
        if ultralytics and path.suffix == ".pt":
            from ultralytics.nn.tasks import torch_safe_load

            return torch_safe_load(str(path), safe_only=True)[0]  # ultralytics' allow-list and legacy module names
        return torch.load(path, map_location="cpu", weights_only=True)


def _full_load(path: Path, ultralytics: bool):
    if ultralytics and path.suffix == ".pt":
        from ultralytics.nn.tasks import torch_safe_load

        return torch_safe_load(str(path), safe_only=False)[0]
    return torch.load(path, map_location="cpu", weights_only=False)


def load_checkpoint(path: str | Path, upstream_root: str | Path | None = None) -> dict:
    """Load a checkpoint without running code (see the module docstring) and return its dict.

    Args:
        path (str | Path): the ``.pt`` file.
        upstream_root (str | Path, optional): the YOLOv5/YOLOv7 checkout whose classes the file may use; its
            ``models.yolo`` must already be imported (``models.import_upstream``).

    Raises:
        UnsafeCheckpoint: the file needs a global outside the allow-list (and no opt-in was given).
        UpstreamCheckpoint: an upstream checkpoint without ``upstream_root``.
        ModelError: the file is not a readable checkpoint.
    """
    path = Path(path)
    entries, refused = check_globals(path, upstream_root)
    ultralytics = upstream_root is None
    if refused and not is_trusted():
        raise UnsafeCheckpoint(_refused_line(path, refused[0]))
    try:
        if refused:
            _warn_trusted(path, refused[0])
            ckpt = _full_load(path, ultralytics)
        else:
            ckpt = _weights_only_load(path, entries, ultralytics)
    except (TypeError, RuntimeError, EOFError, pickle.UnpicklingError, ModuleNotFoundError, AttributeError) as e:
        name = _refused_name(e)
        if name and not is_trusted():
            raise UnsafeCheckpoint(_refused_line(path, name)) from None
        if name:
            _warn_trusted(path, name)
            return _as_dict(_full_load(path, ultralytics))
        raise ModelError(f"cannot load checkpoint {path}: {type(e).__name__}: {' '.join(str(e).split())[:200]}") from None
    return _as_dict(ckpt)


def _as_dict(ckpt) -> dict:
    return ckpt if isinstance(ckpt, dict) else {"model": ckpt}


def model_from_checkpoint(ckpt: dict, path: str | Path) -> nn.Module:
    """The FP32 eval-mode model of an ultralytics checkpoint dict (its EMA when there is one), with ``args``,
    ``pt_path`` and ``task`` set as ultralytics' own loader sets them."""
    from ultralytics.nn.tasks import guess_model_task
    from ultralytics.utils import DEFAULT_CFG_DICT

    model = ckpt.get("ema") or ckpt.get("model")
    if not isinstance(model, nn.Module):
        raise ModelError(f"{path}: no model in this checkpoint (keys: {', '.join(map(str, list(ckpt)[:8]))})")
    model = model.float()
    model.args = {**DEFAULT_CFG_DICT, **(ckpt.get("train_args") or {})}
    model.pt_path = str(path)
    model.task = getattr(model, "task", None) or guess_model_task(model)
    if not hasattr(model, "stride"):
        model.stride = torch.tensor([32.0])
    for m in model.modules():
        if hasattr(m, "inplace"):
            m.inplace = True
        elif isinstance(m, nn.Upsample) and not hasattr(m, "recompute_scale_factor"):
            m.recompute_scale_factor = None
    return model.eval()
