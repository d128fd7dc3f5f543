"""Turn ``--cfg`` / ``--weights`` / ``--repo`` into a model.

``cfg`` may be:

- a path to a model YAML;
- a name under the built-in ``configs/models/`` (``yolov7.yaml``, ``yolov7-tiny``, ...);
- an ultralytics model name (``yolov5s.yaml``, ``yolov8n.yaml``, ``yolo11n.yaml``, ...), resolved by ultralytics'
  own ``yaml_model_load``;
- an upstream YOLOv5/YOLOv7 YAML, when ``repo`` (or the current directory) is an upstream checkout (it has
  ``models/yolo.py`` and ``models/common.py``). The upstream ``models.yolo.Model`` is imported from that checkout.

YAML dicts with ``builder: yolov7`` are built by ``yolo_act_swap.nn.yolov7.YOLOv7DetectionModel``, every other
ultralytics YAML by ``ActSwapDetectionModel``; both re-apply an ``act_swap:`` key. ``weights`` is an ultralytics
checkpoint or, with an upstream ``repo``, an upstream one.

This is the one resolver of model configs: ``load_model_cfg`` turns ``--cfg`` into a model dict (what the trainer
builds from), ``default_cfg`` is the default ``--cfg`` of every command, and ``import_upstream`` is the only place
that puts an upstream checkout on ``sys.path`` (for the ``with`` block only).
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import sys
from pathlib import Path
from typing import Any

import torch.nn as nn

from .errors import ModelError, warn
from .io import YAML_SUFFIXES, configs_dir, find_config, quiet, read_yaml
from .patch import stale_record
from .safe_load import UpstreamCheckpoint, load_checkpoint, model_from_checkpoint

DEFAULT_CFG = "yolov7-tiny.yaml"  # upstream YOLOv7's small model, when the package ships its config
FALLBACK_CFG = "yolov8n.yaml"
UPSTREAM_PACKAGES = ("models", "utils")  # the top-level packages of a YOLOv5/YOLOv7 checkout


# --- where a cfg lives ------------------------------------------------------------------------------------------------


def builtin_models() -> list[str]:
    """Names of the model YAMLs under ``configs/models/``."""
    return sorted(p.name for p in (configs_dir() / "models").glob("*.yaml"))


def default_cfg() -> str:
    """The default ``--cfg`` of every command: ``yolov7-tiny.yaml`` when it ships in ``configs/models/``, else
    ``yolov8n.yaml``."""
    return DEFAULT_CFG if (configs_dir() / "models" / DEFAULT_CFG).is_file() else FALLBACK_CFG


def is_upstream_repo(path: str | Path | None) -> bool:
    """True for a YOLOv5/YOLOv7 checkout (or install folder): it has ``models/yolo.py`` and ``models/common.py``."""
    if path is None:
        return False
    p = Path(path)
    return (p / "models" / "yolo.py").is_file() and (p / "models" / "common.py").is_file()


def _upstream_repo(repo: str | Path | None) -> tuple[Path | None, bool]:
    """``(checkout, explicit)``: the given ``repo`` (validated), else the current directory if it is a checkout."""
    if repo is not None:
        p = Path(repo).expanduser()
        if not is_upstream_repo(p):
            raise ModelError(
                f"--repo {repo}: not a YOLOv5/YOLOv7 checkout (no models/yolo.py and models/common.py there); "
                f"pass the root of the cloned repository"
            )
        return p.resolve(), True
    cwd = Path.cwd()
    return (cwd.resolve(), False) if is_upstream_repo(cwd) else (None, False)


def _with_suffixes(name: str) -> list[str]:
    return [name] if name.endswith(YAML_SUFFIXES) else [name, f"{name}.yaml", f"{name}.yml"]


def _find_in_repo(cfg: str, repo: Path) -> Path | None:
    """An upstream YAML: the path itself, or the name under the checkout's usual folders."""
    p = Path(cfg).expanduser()
    if p.is_file():
        return p
    for name in _with_suffixes(str(cfg)):
        for folder in ("", "models", "cfg/training", "cfg/deploy", "cfg"):
            q = repo / folder / name
            if q.is_file():
                return q
    return None


def _find_local(cfg: str) -> Path | None:
    """A model YAML on disk: a path from the current directory, else a built-in one under ``configs/models/``."""
    return find_config(cfg, "models")


def read_model_yaml(path: str | Path) -> dict:
    """A model YAML file as a dict (``yaml.safe_load``), with ``yaml_file`` set and the ultralytics ``scale`` guessed
    from the file name when the file has ``scales`` but no ``scale``."""
    path = Path(path)
    d = read_yaml(path, ModelError, what="model config")
    if not isinstance(d, dict) or not isinstance(d.get("backbone"), list) or not isinstance(d.get("head"), list):
        raise ModelError(f"{path}: not a model YAML (it needs 'backbone' and 'head' lists)")
    if d.get("scales") and not d.get("scale"):
        from ultralytics.nn.tasks import guess_model_scale

        d["scale"] = guess_model_scale(path)
    d.setdefault("yaml_file", str(path))
    return d


def _ultralytics_yaml(cfg: str) -> dict:
    """An ultralytics model name through ``yaml_model_load`` (``yolov8n.yaml`` -> ``yolov8.yaml`` at scale n)."""
    from ultralytics.nn.tasks import yaml_model_load

    try:
        with quiet():
            return yaml_model_load(cfg)
    except (FileNotFoundError, OSError, ValueError, TypeError) as e:
        raise ModelError(
            f"model config {cfg!r} not found: looked for a file, in configs/models ({', '.join(builtin_models())}) "
            f"and among ultralytics' model YAMLs (e.g. yolov8n.yaml, yolo11n.yaml, yolov5su.yaml); for an upstream "
            f"YOLOv5/YOLOv7 YAML pass --repo PATH ({type(e).__name__})"
        ) from None


def _reject_checkpoint(cfg: Any) -> None:
    if isinstance(cfg, (str, Path)) and str(cfg).endswith((".pt", ".pth")):
        raise ModelError(f"--cfg {cfg} is a checkpoint; pass it with --weights (--cfg takes a model YAML)")


def load_model_cfg(cfg: Any) -> dict:
    """Resolve ``--cfg`` (a dict, a YAML path, a name in ``configs/models/`` or an ultralytics model name) to a dict.

    Returns:
        (dict): a fresh model dict (a deep copy of a given dict; ``yaml_file`` set; ``act_swap:`` kept when present).

    Raises:
        ModelError: a checkpoint passed as a config, or a config that cannot be found or parsed.
    """
    if isinstance(cfg, dict):
        return copy.deepcopy(cfg)
    _reject_checkpoint(cfg)
    path = _find_local(str(cfg))
    return read_model_yaml(path) if path is not None else _ultralytics_yaml(str(cfg))


# --- building ---------------------------------------------------------------------------------------------------------


def build_detection_model(cfg: Any, ch: int = 3, nc: int | None = None, verbose: bool = True) -> nn.Module:
    """Build an ultralytics-engine detection model from a YAML path, name or dict (as the trainer's ``get_model``).

    Args:
        cfg (str | Path | dict): model YAML (see the module docstring for accepted names).
        ch (int): input channels.
        nc (int, optional): number of classes (overrides the YAML).
        verbose (bool): print the model table.

    Returns:
        (ActSwapDetectionModel): a ``YOLOv7DetectionModel`` for ``builder: yolov7`` YAMLs; any ``act_swap:`` is applied.
    """
    from .nn.tasks import ActSwapDetectionModel

    d = cfg if isinstance(cfg, dict) else load_model_cfg(cfg)
    if str(d.get("builder", "")).strip().lower() == "yolov7":
        from .nn.yolov7 import YOLOv7DetectionModel

        return YOLOv7DetectionModel(d, ch=ch, nc=nc, verbose=verbose)
    try:
        return ActSwapDetectionModel(d, ch=ch, nc=nc, verbose=verbose)
    except (KeyError, IndexError, TypeError, ValueError, NameError, AttributeError) as e:
        where = d.get("yaml_file", "model dict")
        raise ModelError(
            f"{where}: ultralytics cannot build this YAML ({type(e).__name__}: {e}); check its layers"
        ) from e


def _upstream_modules() -> dict:
    """The loaded modules under the checkout package names (``models``, ``models.yolo``, ``utils.general``, ...)."""
    return {n: m for n, m in sys.modules.items() if n.split(".")[0] in UPSTREAM_PACKAGES}


def _outside(module, repo: Path) -> bool:
    f = getattr(module, "__file__", None)
    return bool(f) and repo not in Path(f).resolve().parents


@contextlib.contextmanager
def import_upstream(repo: str | Path):
    """Import ``models.yolo`` from an upstream checkout for the duration of a ``with`` block, and yield it.

    Inside the block the checkout goes first on ``sys.path`` and top-level ``models``/``utils`` modules loaded from
    another place are set aside, so the checkout's own are used (also by ``torch.load``, whose pickles name
    ``models.yolo.Model`` & co). Afterwards ``sys.path`` is restored exactly, and so is ``sys.modules`` when the block
    failed. When it succeeded, the checkout's modules stay loaded: the models built inside the block are instances of
    their classes, and ``pickle``/``torch.save`` look those classes up in ``sys.modules`` by module name (lazy
    ``from utils.x import y`` inside upstream code keeps working through the packages' ``__path__``). The set-aside
    modules come back wherever the checkout took none of their package names.

    Raises:
        ModelError: the checkout's code cannot be imported (its requirements are missing, say).
    """
    repo = Path(repo).resolve()
    saved_path, before = list(sys.path), _upstream_modules()
    for name, module in before.items():
        if _outside(module, repo):
            del sys.modules[name]
    if str(repo) not in sys.path:
        sys.path.insert(0, str(repo))
    ok = False
    try:
        try:
            yolo = importlib.import_module("models.yolo")
        except Exception as e:  # noqa: BLE001 - any import failure of third-party code is a setup problem
            raise ModelError(
                f"cannot import the upstream model code from {repo} ({type(e).__name__}: {e}); install that "
                f"checkout's requirements (pip install -r {repo / 'requirements.txt'})"
            ) from None
        yield yolo
        ok = True
    finally:
        sys.path[:] = saved_path
        _restore_modules(before, keep_checkout=ok)


def _restore_modules(before: dict, keep_checkout: bool) -> None:
    """Put ``sys.modules``' checkout-named entries back as they were (see ``import_upstream``)."""
    now = _upstream_modules()
    if not keep_checkout:
        for name, module in now.items():
            if before.get(name) is not module:
                del sys.modules[name]
        sys.modules.update(before)
        return
    taken = {n.split(".")[0] for n in now}
    for name, module in before.items():
        if name.split(".")[0] not in taken:
            sys.modules[name] = module


def build_upstream_model(cfg: str | Path | dict, repo: Path, nc: int | None = None, verbose: bool = False) -> nn.Module:
    """An upstream YOLOv5/YOLOv7 ``models.yolo.Model`` built from its YAML, with the checkout's own code."""
    with import_upstream(repo) as yolo:
        try:
            with quiet(not verbose):
                return yolo.Model(str(cfg) if isinstance(cfg, Path) else cfg, ch=3, nc=nc)
        except Exception as e:
            raise ModelError(f"upstream Model({cfg}) failed: {type(e).__name__}: {e}") from e


def _load_upstream_checkpoint(weights: Path, repo: Path) -> nn.Module:
    """An upstream checkpoint's model, unpickled with the checkout's classes on the allow-list (``safe_load``)."""
    with import_upstream(repo):  # the pickle names models.yolo.Model & co
        ckpt = load_checkpoint(weights, upstream_root=repo)
    model = ckpt.get("ema") or ckpt.get("model")
    if not isinstance(model, nn.Module):
        raise ModelError(f"{weights}: no model in this checkpoint (keys: {', '.join(map(str, list(ckpt)[:8]))})")
    return model.float()


def _load_ultralytics_checkpoint(weights: Path) -> nn.Module:
    """An ultralytics (or yolo-act-swap) checkpoint's model, loaded without running code (``safe_load``)."""
    with quiet():
        ckpt = load_checkpoint(weights)
    model = model_from_checkpoint(ckpt, weights)
    if stale_record(model):
        warn(
            f"{weights}: its model YAML says act_swap: {str(model.yaml['act_swap'])[:80]} but the model has its "
            "original activations (stock ultralytics training rebuilt it without the swap), so the record is ignored; to "
            "keep a swap, train with yolo-act-swap train or trainer=yolo_act_swap.engine.trainer.ActSwapTrainer"
        )
        model.yaml.pop("act_swap")
    return model


def load_model(
    cfg: Any = None, weights: str | Path | None = None, *, repo: str | Path | None = None, nc: int | None = None,
    verbose: bool = False,
) -> nn.Module:  # fmt: skip
    """Resolve ``--cfg`` / ``--weights`` / ``--repo`` into a model (see the module docstring).

    Args:
        cfg (str | Path | dict, optional): model YAML path, built-in or ultralytics name, or dict.
        weights (str | Path, optional): a checkpoint; alone it gives the model, with ``cfg`` its weights are
            transferred where names and shapes match.
        repo (str | Path, optional): an upstream YOLOv5/YOLOv7 checkout (default: the current directory if it is one).
        nc (int, optional): number of classes for a model built from ``cfg``.
        verbose (bool): print what the builders print.

    Returns:
        (nn.Module): the model, in training mode when built from a YAML, eval mode when loaded from a checkpoint.

    Raises:
        ModelError: unknown cfg (with where it looked and the built-in names), missing weights, bad checkout.
    """
    if cfg is None and weights is None:
        raise ModelError("no model given: pass --cfg YAML or --weights CHECKPOINT")
    _reject_checkpoint(cfg)
    upstream, explicit = _upstream_repo(repo)
    wpath = None
    if weights is not None:
        wpath = Path(weights).expanduser()
        if not wpath.is_file():
            raise ModelError(f"--weights {weights}: file not found (nothing is downloaded; give a local checkpoint)")

    model, built_upstream = None, False
    if cfg is not None:
        src = cfg if isinstance(cfg, dict) else None
        up_path = _find_in_repo(str(cfg), upstream) if upstream is not None and src is None else None
        if upstream is not None and up_path is None and src is None and explicit:
            raise ModelError(
                f"--cfg {cfg}: not found in the upstream checkout {upstream} (looked in ., models/, cfg/training/, "
                f"cfg/deploy/); pass a path to the YAML"
            )
        if up_path is not None and (explicit or _is_upstream_yaml(up_path)):
            model, built_upstream = build_upstream_model(up_path, upstream, nc=nc, verbose=verbose), True
        else:
            with quiet(not verbose):
                model = build_detection_model(cfg, nc=nc, verbose=verbose)
    if wpath is not None:
        if upstream is not None and (explicit or built_upstream):
            loaded = _load_upstream_checkpoint(wpath, upstream)
        else:
            try:
                loaded = _load_ultralytics_checkpoint(wpath)
            except UpstreamCheckpoint:
                if upstream is None:
                    raise
                loaded = _load_upstream_checkpoint(wpath, upstream)  # the checkout in the current directory
        if model is None:
            return loaded
        _transfer(loaded, model, wpath)
    return model


def _is_upstream_yaml(path: Path) -> bool:
    """Inside an auto-detected checkout, a YAML without ultralytics/yolo-act-swap markers is upstream's."""
    try:
        d = read_yaml(path, ModelError, what="model config")
    except ModelError:
        return False
    return isinstance(d, dict) and "builder" not in d and "scales" not in d and "anchors" in d


def _transfer(src: nn.Module, dst: nn.Module, where: Path):
    """Copy the tensors whose names and shapes match from ``src`` into ``dst``; ModelError when none do."""
    sd = dst.state_dict()
    csd = {k: v for k, v in src.float().state_dict().items() if k in sd and sd[k].shape == v.shape}
    if not csd:
        raise ModelError(f"--weights {where}: no tensor matches the --cfg model; they are different architectures")
    dst.load_state_dict(csd, strict=False)
