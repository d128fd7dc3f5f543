"""The dataset cache: where generated and converted datasets live, written atomically."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

import yaml

SPLITS = ("train", "val", "test")


def cache_root() -> Path:
    """The cache folder: ``$YAS_CACHE_DIR`` or ``~/.cache/yolo_act_swap``."""
    env = os.environ.get("YAS_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "yolo_act_swap"


@contextlib.contextmanager
def atomic_dir(final: Path):
    """Yield a fresh temporary folder next to ``final``; on success rename it to ``final`` in one step.

    If another process finished the same folder first, its copy is kept and ours is discarded.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        yield tmp
        try:
            os.rename(tmp, final)
        except OSError:
            if not final.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_yaml(path: Path, data: dict) -> None:
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")


