"""BatchNorm recalibration on a real yolov8n after an abrupt swap: running statistics change, nothing else does."""

import copy

import pytest
import torch
from helpers import randomize
from ultralytics.nn.tasks import DetectionModel

from yolo_act_swap import patch_model
from yolo_act_swap.bn import batchnorms, recalibrate_bn

pytestmark = pytest.mark.usefixtures("one_thread")
BN_STATS = ("running_mean", "running_var", "num_batches_tracked")


def _model():
    torch.manual_seed(0)
    m = randomize(DetectionModel("yolov8n.yaml", nc=3, verbose=False), seed=2)
    patch_model(m, "frelu", imgsz=64, verify=False)  # frelu has BatchNorms of its own: they are refreshed too
    return m.eval()


def test_recalibration_changes_running_statistics_and_nothing_else():
    m = _model()
    before = copy.deepcopy(m.state_dict())
    g = torch.Generator().manual_seed(0)
    batches = [torch.rand(4, 3, 64, 64, generator=g) for _ in range(3)] + [torch.rand(1, 3, 64, 64)]
    assert recalibrate_bn(m, iter(batches), n=10) == 3  # the batch of one image is skipped
    after = m.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.endswith(BN_STATS) for k in changed)
    assert {k.rsplit(".", 1)[0] for k in changed if k.endswith("running_mean")} == {
        n for n, mod in m.named_modules() if mod in batchnorms(m)}  # every BatchNorm, FReLU's included
    assert not m.training and all(not mod.training for mod in m.modules())  # the mode is restored
    assert all(bn.momentum == 0.03 for bn in batchnorms(m))
    assert all(int(bn.num_batches_tracked) == 3 for bn in batchnorms(m))


def test_the_statistics_are_the_average_over_the_batches():
    bn = torch.nn.BatchNorm2d(3, momentum=0.1)
    xs = [torch.randn(8, 3, 4, 4) * (i + 1) + i for i in range(3)]
    recalibrate_bn(torch.nn.Sequential(bn), xs)
    means = torch.stack([x.mean((0, 2, 3)) for x in xs]).mean(0)
    assert torch.allclose(bn.running_mean, means, atol=1e-5) and bn.momentum == 0.1


def test_no_usable_batch_leaves_the_statistics_alone():
    m = _model()
    before = copy.deepcopy(m.state_dict())
    assert recalibrate_bn(m, [torch.rand(1, 3, 64, 64)]) == 0
    assert all(torch.equal(v, m.state_dict()[k]) for k, v in before.items())
