"""Test-wide settings: offline, no auto-install, a private ultralytics settings dir, a non-interactive plot backend."""

import os
import tempfile

# Set before anything imports ultralytics: these are read once at import time.
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "false")
os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="yas-ultra-cfg-"))
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("YOLO_VERBOSE", "false")
# the fused CPU kernels build once per test run into a private folder (subprocesses inherit it)
os.environ.setdefault("YOLO_ACT_SWAP_CACHE", tempfile.mkdtemp(prefix="yas-kernels-"))


import sys

import pytest


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


FAKE_YOLO = '''
import torch.nn as nn
import yaml


class Conv(nn.Module):
    def __init__(self, c1, c2):
        super().__init__()
        self.conv, self.bn, self.act = nn.Conv2d(c1, c2, 3, 1, 1, bias=False), nn.BatchNorm2d(c2), nn.SiLU()

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class Model(nn.Module):
    """Stands in for upstream models.yolo.Model: built from a YAML path, layers in self.model."""

    def __init__(self, cfg, ch=3, nc=None, anchors=None):
        super().__init__()
        self.yaml = yaml.safe_load(open(cfg))
        self.yaml_file = cfg
        widths = [ch] + [row[3][0] for row in self.yaml["backbone"] + self.yaml["head"]]
        self.model = nn.Sequential(*(Conv(a, b) for a, b in zip(widths, widths[1:])))

    def forward(self, x):
        return self.model(x)
'''


@pytest.fixture
def fake_upstream(tmp_path):
    """A minimal upstream-shaped checkout (models/yolo.py + models/common.py), removed from sys.modules afterwards."""
    repo = tmp_path / "yolov5"
    (repo / "models").mkdir(parents=True)
    (repo / "models" / "__init__.py").write_text("")
    (repo / "models" / "common.py").write_text("")
    (repo / "models" / "yolo.py").write_text(FAKE_YOLO)
    (repo / "models" / "tiny.yaml").write_text(
        "nc: 2\nanchors: [[10, 13]]\nbackbone:\n  [[-1, 1, Conv, [8]], [-1, 1, Conv, [16]]]\nhead:\n  [[-1, 1, Conv, [4]]]\n"
    )
    yield repo
    for name in [n for n in sys.modules if n == "models" or n.startswith("models.")]:
        del sys.modules[name]
    while str(repo.resolve()) in sys.path:
        sys.path.remove(str(repo.resolve()))
