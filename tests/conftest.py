"""Test-wide settings: offline, no auto-install, a private ultralytics settings dir, a non-interactive plot backend."""

import os
import tempfile

# Set before anything imports ultralytics: these are read once at import time.
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "false")
os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="yas-ultra-cfg-"))
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("YOLO_VERBOSE", "false")


import pytest  # noqa: E402


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: one torch thread is faster and avoids OpenMP spin-waits on a shared 2-core runner."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A cache folder for this module, exported as YAS_CACHE_DIR (subprocesses inherit it)."""
    d = tmp_path_factory.mktemp("yas-cache")
    old = os.environ.get("YAS_CACHE_DIR")
    os.environ["YAS_CACHE_DIR"] = str(d)
    yield d
    if old is None:
        os.environ.pop("YAS_CACHE_DIR", None)
    else:
        os.environ["YAS_CACHE_DIR"] = old
