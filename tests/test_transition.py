"""The trainer's blended transition and BN recalibration, on tiny demo runs (CPU, 64 px, 20 images, 3 batches/epoch).

One run is interrupted in the middle of its ramp and resumed: the test follows ``a`` batch by batch across both
processes' trainers, and checks the collapse, the checkpoints and the choice of ``best.pt``.
"""


import pytest
import torch
from helpers import randomize

from yolo_act_swap import ActSwapError
from yolo_act_swap.blend import BLEND_KEY, blend_value, find_blends, parse_transition
from yolo_act_swap.bn import batchnorms
from yolo_act_swap.engine.run import prepare_run
from yolo_act_swap.engine.trainer import ActSwapTrainer
from yolo_act_swap.engine.transition import RECALIBRATE_KEY, blend_alpha, ramp_iterations
from yolo_act_swap.models import load_model

TINY = dict(imgsz=64, batch=8, fraction=0.1, device="cpu", workers=0, plots=False, optimizer="AdamW", lr0=0.002,
            warmup_epochs=0, close_mosaic=0, seed=0)  # 20 train images: 3 batches per epoch


@pytest.fixture(scope="module")
def silu_ckpt(tmp_path_factory):
    """A SiLU yolov8n checkpoint for the 3 demo classes (random weights, non-trivial BN statistics)."""
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(0)
    m = randomize(DetectionModel("yolov8n.yaml", nc=3, verbose=False), seed=4).eval()
    path = tmp_path_factory.mktemp("w") / "silu.pt"
    torch.save({"model": m, "train_args": {}}, path)
    return path


class _Declining(ActSwapTrainer):
    """Fitness 1.0, 0.9, 0.8 ... by epoch: the blended epoch 1 would be best.pt unless the collapse restarts the
    choice (an untrained model's real fitness is 0 at every epoch, which would not tell)."""

    def validate(self):
        metrics, _ = super().validate()
        fitness = 1.0 - 0.1 * self.epoch
        if self.best_fitness is None or self.best_fitness < fitness:
            self.best_fitness = fitness
        return metrics, fitness


class _Interrupted(Exception):
    pass


def _interrupt(trainer):
    raise _Interrupted


def _record(trainer, log: list):
    """Log ``(epoch, a)`` at every batch (after the transition callback set it) and the blends at each epoch's save (after its validation)."""
    trainer.add_callback("on_train_batch_start", lambda t: log.append((t.epoch, blend_value(t.model))))
    trainer.add_callback("on_model_save", lambda t: log.append(("val", len(find_blends(t.ema.ema)))))


def _acts(model) -> set:
    return {getattr(m, "_yas_act", None) for m in model.modules()} - {None}


def test_ramp_resume_collapse_and_best(cache, tmp_path, silu_ckpt):
    args = prepare_run(weights=str(silu_ckpt), act="relu", transition=2, epochs=3, project=str(tmp_path),
                       name="blend", **TINY)
    log: list = []
    first = _Declining(overrides=args)
    _record(first, log)
    first.add_callback("on_model_save", _interrupt)  # killed right after saving epoch 1
    with pytest.raises(_Interrupted):
        first.train()
    last = first.save_dir / "weights" / "last.pt"
    mid = load_model(weights=last)
    assert len(find_blends(mid)) == 57 and blend_value(mid) == 0.5 and mid.yaml[BLEND_KEY] == {"epochs": 2}

    again = _Declining(overrides={"resume": str(last)})
    _record(again, log)
    again.train()
    a = [v for e, v in log if e != "val"]
    n = ramp_iterations({"epochs": 2}, 3)
    assert n == 6 and a[:6] == [blend_alpha(i, 6) for i in range(6)]  # 1/6 ... 1, across the resume
    assert a[6:] == [None] * 3  # collapsed after the batch that reached a = 1
    assert [v for e, v in log if e == "val"] == [57, 0, 0]  # epoch 1 validated blended, epochs 2-3 collapsed
    for name in ("best.pt", "last.pt"):
        m = load_model(weights=again.save_dir / "weights" / name)
        assert not find_blends(m) and _acts(m) == {"relu"} and BLEND_KEY not in m.yaml, name
    # best.pt is epoch 2, the fittest after the ramp, not the blended (and "fitter") epoch 1
    best = torch.load(again.save_dir / "weights" / "best.pt", weights_only=False)
    assert best["train_metrics"]["fitness"] == pytest.approx(0.9)


def test_recalibration_in_the_trainer(cache, tmp_path, silu_ckpt):
    args = prepare_run(weights=str(silu_ckpt), act="relu", recalibrate_bn=2, epochs=1, val=False,
                       project=str(tmp_path), name="recal", **TINY)
    src = torch.load(silu_ckpt, weights_only=False)["model"].state_dict()
    seen = {}

    def check(t):
        model, ema = t.model, t.ema.ema
        seen["yaml"] = RECALIBRATE_KEY in model.yaml or RECALIBRATE_KEY in ema.yaml
        sd, esd = model.state_dict(), ema.state_dict()
        seen["changed"] = {k for k in src if not torch.equal(src[k], sd[k].to(src[k].dtype))}
        seen["ema_same"] = all(torch.equal(sd[k], esd[k]) for k in sd)
        seen["bns"] = len(batchnorms(model))

    trainer = ActSwapTrainer(overrides=args)
    trainer.add_callback("on_train_start", check)
    trainer.train()
    assert not seen["yaml"] and seen["ema_same"]
    assert seen["changed"] and all(k.endswith(("running_mean", "running_var", "num_batches_tracked"))
                                   for k in seen["changed"])
    assert len({k for k in seen["changed"] if k.endswith("running_mean")}) == seen["bns"]


def test_transfer_arguments_are_checked(cache, tmp_path, silu_ckpt):
    run = dict(project=str(tmp_path), name="x", epochs=2, **TINY)
    with pytest.raises(ActSwapError, match="--weights"):
        prepare_run(cfg="yolov8n.yaml", act="relu", transition=1, **run)
    with pytest.raises(ActSwapError, match="--act or --spec"):
        prepare_run(weights=str(silu_ckpt), transition=1, **run)
    with pytest.raises(ActSwapError, match="longer than the run"):
        prepare_run(weights=str(silu_ckpt), act="relu", transition=3, **run)
    with pytest.raises(ActSwapError, match="alternatives"):
        prepare_run(weights=str(silu_ckpt), act="relu", transition=1, recalibrate_bn=4, **run)
    assert parse_transition("3") == {"epochs": 3} and parse_transition(1.5) == {"epochs": 1.5}
    assert parse_transition("300it") == {"iterations": 300} and ramp_iterations({"iterations": 300}, 7) == 300
    for bad in ("0", "-2", "x", "2.5it"):
        with pytest.raises(ActSwapError, match="--transition"):
            parse_transition(bad)
