"""channels_last (NHWC) end to end on CPU: training, the trainer's own validation, resume, checkpoints, ``val``.

One real run on the demo data (FReLU: a depthwise conv and a BatchNorm inside the activation) trains with
``channels_last=True``, is interrupted after its first epoch and resumed from ``last.pt``; the tests inspect what the
trainer and the validator saw on the way and the checkpoints it left (``engine.layout``).
"""

import json
from pathlib import Path

import pytest
import torch
from ultralytics.utils.torch_utils import unwrap_model

from yolo_act_swap.engine.layout import (
    batch_to_layout,
    defer_cpu_channels_last,
    is_channels_last,
    restore_channels_last,
)
from yolo_act_swap.engine.run import prepare_run, with_spec
from yolo_act_swap.engine.trainer import ActSwapTrainer
from yolo_act_swap.engine.validator import ActSwapValidator, val
from yolo_act_swap.models import load_model_cfg

IMGSZ = 64
RUN = dict(cfg="yolov8n.yaml", act="frelu", epochs=2, imgsz=IMGSZ, batch=8, fraction=0.5, optimizer="AdamW",
           lr0=0.005, warmup_epochs=0, close_mosaic=0, plots=False, device="cpu", workers=0, seed=0)


def _nhwc(t: torch.Tensor) -> bool:
    return t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous()


def _record(trainer, log: list) -> None:
    """Per training batch: the model's and the EMA's layout and the ``channels_last`` arg in force."""
    def on_batch_end(tr):
        log.append((tr.epoch, is_channels_last(unwrap_model(tr.model)), is_channels_last(tr.ema.ema),
                    tr.args.channels_last))

    trainer.add_callback("on_train_batch_end", on_batch_end)


def _stop_after_first_epoch(trainer):
    if trainer.epoch == 1:
        raise KeyboardInterrupt  # as Ctrl-C: last.pt of epoch 0 stays, with its optimizer state


@pytest.fixture(scope="module")
def run(cache, tmp_path_factory):
    """Train 1 epoch with channels_last, stop, resume the second epoch from last.pt; record what was seen."""
    seen = {"train": [], "resumed": [], "val": []}
    real_preprocess = ActSwapValidator.preprocess

    def preprocess(self, batch):  # the real method; note the layout of the images it hands to the model
        batch = real_preprocess(self, batch)
        seen["val"].append((bool(self.training), _nhwc(batch["img"])))
        return batch

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ActSwapValidator, "preprocess", preprocess)
        args = prepare_run(project=str(tmp_path_factory.mktemp("runs")), name="cl", channels_last=True, **RUN)
        first = ActSwapTrainer(overrides=args)
        _record(first, seen["train"])
        first.add_callback("on_train_epoch_start", _stop_after_first_epoch)
        with pytest.raises(KeyboardInterrupt):
            first.train()
        last = Path(first.last)
        ckpt_args = dict(torch.load(last, weights_only=False)["train_args"])
        resumed = ActSwapTrainer(overrides={"resume": str(last)})
        _record(resumed, seen["resumed"])
        resumed.train()
    result = json.loads((Path(resumed.save_dir) / "act_swap_result.json").read_text())
    return {"first": first, "resumed": resumed, "seen": seen, "last_args": ckpt_args, "result": result}


def test_conv_weights_are_channels_last_during_training(run):
    for key, epoch in (("train", 0), ("resumed", 1)):
        log = run["seen"][key]
        assert log and {e for e, *_ in log} == {epoch}, key
        assert all(model and ema and arg is True for _, model, ema, arg in log), (key, log[:3])


def test_batches_follow_the_model_layout(run):
    trainer = run["resumed"]
    batch = trainer.preprocess_batch(next(iter(trainer.train_loader)))
    assert _nhwc(batch["img"]) and batch["img"].shape[1] == 3
    plain = batch_to_layout({"img": torch.rand(2, 3, 32, 32), "cls": torch.zeros(3, 1)}, channels_last=False)
    assert plain["img"].is_contiguous()


def test_trainer_validation_and_final_eval_run_channels_last(run):
    during = [nhwc for training, nhwc in run["seen"]["val"] if training]
    final = [nhwc for training, nhwc in run["seen"]["val"] if not training]  # final_eval validates best.pt
    assert during and all(during)
    assert final and all(final)
    assert run["result"]["status"] == "finished" and run["result"]["epochs"] == 2


def test_resume_keeps_channels_last(run):
    assert run["last_args"]["channels_last"] is True  # what ultralytics' resume rebuilds its args from
    assert run["resumed"].args.channels_last is True and run["resumed"].start_epoch == 1


def test_checkpoints_are_nchw_and_run_in_stock_ultralytics(run):
    from ultralytics import YOLO as StockYOLO

    best = run["result"]["best"]
    ckpt = torch.load(best, weights_only=False)
    model = ckpt.get("ema") or ckpt["model"]  # the final strip moves the EMA to "model"
    assert not is_channels_last(model)
    assert all(p.is_contiguous() for p in model.parameters())
    img = str(Path(run["first"].data["val"]) / "000001.jpg")
    boxes = [StockYOLO(best).predict(img, imgsz=IMGSZ, device="cpu", conf=0.001, channels_last=cl, verbose=False)[0]
             for cl in (False, True)]
    a, b = (r.boxes.data for r in boxes)
    assert a.shape == b.shape
    torch.testing.assert_close(a, b, atol=1e-3, rtol=1e-3)


def test_val_channels_last_gives_the_same_map(run, tmp_path):
    best = run["result"]["best"]
    out = {cl: val(best, imgsz=IMGSZ, batch=16, device="cpu", save_json=True, channels_last=cl,
                   project=str(tmp_path), name=f"cl{int(cl)}") for cl in (False, True)}
    for k, v in out[False]["metrics"].items():
        assert out[True]["metrics"][k] == pytest.approx(v, abs=1e-3), k
    preds = {cl: json.loads((Path(r["save_dir"]) / "predictions.json").read_text()) for cl, r in out.items()}
    assert preds[False], "no predictions at all: the comparison would be vacuous"
    assert len(preds[True]) == pytest.approx(len(preds[False]), rel=0.01)
    score = {cl: sum(p["score"] for p in ps) for cl, ps in preds.items()}
    assert score[True] == pytest.approx(score[False], rel=1e-3)


def test_cli_val_and_train_flags(run, tmp_path, capsys):
    from yolo_act_swap.cli import main

    best = run["result"]["best"]
    assert main(["val", "--weights", best, "--img-size", str(IMGSZ), "--device", "cpu", "--no-channels-last",
                 "--project", str(tmp_path), "--name", "v"]) == 0
    assert "mAP50-95" in capsys.readouterr().out
    assert main(["train", "channels_last=True"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["yolo-act-swap: error: pass channels_last with --channels-last, not as channels_last="]


def test_layout_decision_follows_the_device(cache, tmp_path):
    """CPU + True: the trainer moves the model itself and hides the value from ultralytics' setup until its end;
    CUDA (ultralytics converts there), None (ultralytics' automatic choice) and False are left to ultralytics."""
    from yolo_act_swap.data import resolve_data

    def trainer(**over):
        return ActSwapTrainer(overrides={"model": with_spec(load_model_cfg("yolov8n.yaml"), act="relu"),
                                         "data": str(resolve_data(None).yaml), "device": "cpu",
                                         "project": str(tmp_path), "name": "t", **over})

    t = trainer(channels_last=True)
    assert defer_cpu_channels_last(t) is True and t.args.channels_last is False
    restore_channels_last(t)
    assert t.args.channels_last is True
    for over in ({"channels_last": None}, {"channels_last": False}):
        t = trainer(**over)
        assert defer_cpu_channels_last(t) is False and t.args.channels_last is over["channels_last"]
    t = trainer(channels_last=True)
    t.device = torch.device("cuda")  # the decision only: nothing runs on the device
    assert defer_cpu_channels_last(t) is False and t.args.channels_last is True


def test_is_channels_last_skips_kernels_that_cannot_tell():
    """A depthwise or 1x1 weight is contiguous in both layouts; the first conv that tells them apart decides."""
    m = torch.nn.Sequential(torch.nn.Conv2d(8, 8, 3, groups=8), torch.nn.Conv2d(8, 8, 1), torch.nn.Conv2d(8, 4, 3))
    assert not is_channels_last(m)
    assert is_channels_last(m.to(memory_format=torch.channels_last))
    assert not is_channels_last(torch.nn.Sequential(torch.nn.Conv2d(8, 8, 1)).to(memory_format=torch.channels_last))


def test_train_and_val_parsers_take_the_flag():
    from yolo_act_swap.cli import train as train_cli
    from yolo_act_swap.cli import val as val_cli

    for parser, extra in ((train_cli.build_parser(), []), (val_cli.build_parser(), ["--weights", "best.pt"])):
        assert parser.parse_args(extra).channels_last is None  # ultralytics' own choice
        assert parser.parse_args([*extra, "--channels-last"]).channels_last is True
        assert parser.parse_args([*extra, "--no-channels-last"]).channels_last is False
