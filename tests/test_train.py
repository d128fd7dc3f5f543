"""Training and validation of patched models with the ultralytics engine, on the offline demo data (CPU).

One short training run is shared by the module (``run`` fixture); the other tests inspect its checkpoints, validate
them again, reload them in fresh processes, or exercise the trainer's pieces (optimizer groups, rebuilds) directly.
"""

import copy
import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from yolo_act_swap.activations.registry import is_activation_module
from yolo_act_swap.engine.amp import amp_allclose
from yolo_act_swap.engine.optim import add_activation_param_groups
from yolo_act_swap.engine.result import RESULT_FILE
from yolo_act_swap.engine.run import train, with_spec
from yolo_act_swap.engine.trainer import ActSwapTrainer
from yolo_act_swap.models import build_detection_model, load_model_cfg

ROOT = Path(__file__).resolve().parents[1]
build_model = functools.partial(build_detection_model, verbose=False)
# The shared run: small enough for CI on 2 CPU cores, long enough to learn the demo's shapes.
# acon_c starting as SiLU: per-channel parameters that the optimizer must train, at about the cost of SiLU.
# Validation runs once, at the end (val=False), as the tests only need the final metrics.
RUN = dict(cfg="yolov8n.yaml", act="acon_c:init=silu", epochs=4, imgsz=128, batch=8, optimizer="AdamW", lr0=0.005,
           warmup_epochs=1, close_mosaic=4, val=False, plots=False, device="cpu", workers=0, seed=0)


@pytest.fixture(scope="module")
def run(cache, tmp_path_factory):
    """One training run on the demo data; returns its act_swap_result.json."""
    project = tmp_path_factory.mktemp("runs")
    result = train(project=str(project), name="acon", **RUN)
    assert result["status"] == "finished"
    return result


def _act_modules(model):
    return [m for m in model.modules() if is_activation_module(m)]


def _trainer(cache, tmp_path, model, **over):
    """An ActSwapTrainer on the demo data without training (for its building blocks)."""
    from yolo_act_swap.data import resolve_data

    return ActSwapTrainer(overrides={"model": model, "data": str(resolve_data(None).yaml), "device": "cpu",
                                     "project": str(tmp_path), "name": "t", "plots": False, **over})


# ------------------------------------------------------------------------------------------------- the shared run
def test_training_learns_the_demo(run):
    from yolo_act_swap.data import resolve_data
    from yolo_act_swap.engine.validator import ActSwapValidator

    m = run["metrics"]
    # the same architecture, untrained, validated the same way
    cfg = yaml.safe_load(Path(run["save_dir"], "yolov8n.yaml").read_text())
    untrained = build_model(cfg, nc=3)
    untrained.names = {0: "circle", 1: "square", 2: "triangle"}
    v = ActSwapValidator(args={"data": str(resolve_data(None).yaml), "imgsz": RUN["imgsz"], "batch": 16,
                               "device": "cpu", "plots": False, "mode": "val"})
    base = v(model=untrained)["metrics/mAP50(B)"]
    assert m["mAP50"] > max(0.05, base + 0.04), (m, base)
    assert m["mAP50-95"] > 0.02 and 0 < m["precision"] <= 1 and 0 < m["recall"] <= 1
    rows = (Path(run["save_dir"]) / "results.csv").read_text().splitlines()
    head = rows[0].split(",")
    first, last = (dict(zip(head, r.split(","))) for r in (rows[1], rows[-1]))
    assert float(last["train/box_loss"]) < float(first["train/box_loss"])
    assert len(rows) - 1 == RUN["epochs"]


def test_result_file(run):
    doc = json.loads((Path(run["save_dir"]) / RESULT_FILE).read_text())
    assert doc == run
    assert doc["epochs"] == RUN["epochs"] and doc["status"] == "finished"
    assert Path(doc["best"]).is_file() and Path(doc["last"]).is_file()
    assert set(doc["metrics"]) == {"precision", "recall", "mAP50", "mAP50-95"}
    assert doc["train_time_s"] >= doc["epoch_time_s"] * RUN["epochs"] * 0.99 > 0
    assert doc["train_images_per_s"] > 0 and doc["peak_mem_mb"] > 100
    assert doc["act_swap"] == {"act": {"name": "acon_c", "init": "silu"}}
    assert doc["amp"] is False and doc["imgsz"] == RUN["imgsz"]


def test_checkpoint_keeps_the_patched_activations(run):
    from ultralytics.nn.tasks import load_checkpoint

    model, ckpt = load_checkpoint(run["best"])
    fresh = build_model(with_spec(load_model_cfg("yolov8n.yaml"), act="acon_c:init=silu"), nc=3)
    acts = _act_modules(model)
    assert len(acts) == len(_act_modules(fresh)) > 50
    assert {m._yas_act for m in acts} == {"acon_c"}
    assert not any(isinstance(m, torch.nn.SiLU) for m in model.modules())  # every SiLU in conv blocks was swapped
    assert model.yaml["act_swap"] == {"act": {"name": "acon_c", "init": "silu"}}
    # the activation parameters were trained away from their SiLU start (p1 = 1, p2 = 0, beta = 1)
    trained = torch.cat([p.detach().flatten() for m in acts for p in m.parameters()])
    initial = torch.cat([p.detach().flatten() for m in _act_modules(fresh) for p in m.parameters()])
    assert trained.shape == initial.shape and not torch.allclose(trained, initial.to(trained.dtype), atol=1e-3)
    assert ckpt["train_args"]["model"].endswith("yolov8n.yaml")


def test_rebuild_from_checkpoint_reproduces_the_model(run, cache, tmp_path):
    """What Model.train() and resume do: rebuild from the checkpoint's YAML and copy its weights over."""
    from ultralytics.nn.tasks import load_checkpoint

    model, _ = load_checkpoint(run["last"])
    trainer = _trainer(cache, tmp_path, str(Path(run["save_dir"]) / "yolov8n.yaml"))
    rebuilt = trainer.get_model(cfg=copy.deepcopy(model.yaml), weights=model, verbose=False)
    assert [type(m) for m in rebuilt.modules()] == [type(m) for m in model.modules()]
    x = torch.rand(2, 3, 128, 128)
    with torch.no_grad():
        a, b = model.eval()(x), rebuilt.eval()(x)
    assert torch.allclose(a[0] if isinstance(a, (list, tuple)) else a, b[0] if isinstance(b, (list, tuple)) else b)


def test_val_script_reproduces_the_final_metrics(run, tmp_path):
    r = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "val.py"), "--weights", run["best"], "--img-size", str(RUN["imgsz"]),
         "--batch-size", str(2 * RUN["batch"]), "--device", "cpu", "--project", str(tmp_path), "--name", "v"],
        capture_output=True, text=True, timeout=300, env=dict(os.environ),
    )
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads((tmp_path / "v" / "act_swap_val.json").read_text())
    for k, v in run["metrics"].items():
        assert out["metrics"][k] == pytest.approx(v, abs=1e-5), k
    assert set(out["per_class"]) == {"circle", "square", "triangle"}
    assert "circle" in r.stdout and "mAP50-95" in r.stdout  # the per-class table is printed


def test_val_save_json_gives_official_coco_map(run, tmp_path):
    from yolo_act_swap.engine.validator import val

    out = val(run["best"], imgsz=RUN["imgsz"], batch=2 * RUN["batch"], device="cpu", save_json=True,
              project=str(tmp_path), name="coco")
    coco = out["coco"]
    assert coco["evaluator"] in {"faster-coco-eval", "pycocotools"}
    # official COCO AP and ultralytics' AP interpolate differently but measure the same predictions
    assert out["metrics"]["mAP50"] == pytest.approx(run["metrics"]["mAP50"], abs=1e-5)  # "metrics": ultralytics'
    assert coco["mAP50"] > 0 and abs(coco["mAP50"] - out["metrics"]["mAP50"]) < 0.05
    assert abs(coco["mAP50-95"] - out["metrics"]["mAP50-95"]) < 0.05
    preds = json.loads((tmp_path / "coco" / "predictions.json").read_text())
    ann = json.loads((Path(os.environ["YAS_CACHE_DIR"]) / "demo-v1" / "annotations" / "instances_val.json").read_text())
    assert {p["image_id"] for p in preds} <= {im["id"] for im in ann["images"]}
    assert {p["category_id"] for p in preds} <= {1, 2, 3}


SAFE_LOAD = """
import sys
{imp}
from ultralytics import YOLO
from ultralytics.nn.tasks import torch_safe_load
ckpt, _ = torch_safe_load(sys.argv[1], safe_only=True)
model = YOLO(sys.argv[1])
acts = [m for m in model.model.modules() if isinstance(getattr(m, "_yas_act", None), str)]
res = model.predict(sys.argv[2], imgsz=128, device="cpu", verbose=False)
print("OK", len(acts), type(model.model).__name__, len(res[0].boxes))
"""


def test_reload_under_safe_load_in_a_fresh_process(run):
    image = next((Path(os.environ["YAS_CACHE_DIR"]) / "demo-v1" / "images" / "val").glob("*.jpg"))
    env = {**os.environ, "ULTRALYTICS_SAFE_LOAD": "1"}
    ok = subprocess.run([sys.executable, "-c", SAFE_LOAD.format(imp="import yolo_act_swap"), run["best"], str(image)],
                        capture_output=True, text=True, timeout=300, env=env)
    assert ok.returncode == 0, ok.stderr[-3000:]
    line = next(ln for ln in ok.stdout.splitlines() if ln.startswith("OK"))
    assert int(line.split()[1]) > 50 and line.split()[2] == "ActSwapDetectionModel"
    # without the package's safe globals the restricted loader refuses the checkpoint
    bad = subprocess.run([sys.executable, "-c", SAFE_LOAD.format(imp=""), run["best"], str(image)],
                         capture_output=True, text=True, timeout=300, env=env)
    assert bad.returncode != 0 and "OK" not in bad.stdout


# ---------------------------------------------------------------------------------------------- trainer pieces
SPEC = {
    "act": "frelu",
    "rules": [
        {"layers": "0-3", "act": "acon_c"},
        {"layers": "4-6", "act": "meta_acon_c"},
        {"layers": "7-9", "act": "prelu"},
        {"layers": "10-15", "act": "dy_relu_b"},
    ],
}


@pytest.mark.parametrize("iterations", [1e3, 1e6])
def test_optimizer_groups(cache, tmp_path, iterations):
    from ultralytics.models.yolo.detect import DetectionTrainer

    from yolo_act_swap.engine.optim import split_activation_parameters

    cfg = with_spec(load_model_cfg("yolov8n.yaml"), spec=SPEC)
    trainer = _trainer(cache, tmp_path, cfg, optimizer="auto")
    model = trainer.get_model(cfg=cfg, verbose=False)
    decay = 5e-4
    opt = trainer.build_optimizer(model, name="auto", lr=0.01, momentum=0.9, decay=decay, iterations=iterations)
    assert type(opt).__name__ == ("MuSGD" if iterations > 1e4 else "AdamW")

    group_of = {}
    for _i, g in enumerate(opt.param_groups):
        for p in g["params"]:
            assert id(p) not in group_of, "a parameter is in two groups"
            group_of[id(p)] = g
    assert set(group_of) == {id(p) for p in model.parameters()}, "every parameter is in exactly one group"

    wdecay, shape = split_activation_parameters(model)
    assert len(shape) > 50 and len(wdecay) > 10
    for p in wdecay + shape:
        g = group_of[id(p)]
        assert g.get("act_swap") and not g.get("use_muon", False)
        assert g.get("param_group") != "bias"  # warmup ramps our groups from 0, like the weights
    assert all(group_of[id(p)]["weight_decay"] == 0.0 for p in shape)
    assert all(group_of[id(p)]["weight_decay"] == decay for p in wdecay)
    # named spot checks: ACON's p1/p2/beta, MetaAconC's coefficient-net biases, FReLU's depthwise conv weight
    named = dict(model.named_parameters())
    acon = [k for k in named if k.endswith((".p1", ".p2", ".beta")) and named[k].ndim == 4]
    assert acon and all(group_of[id(named[k])]["weight_decay"] == 0.0 for k in acon)
    meta_bias = [k for k in named if ".act." in k and k.endswith(".bias") and "model.5." in k]
    assert meta_bias and all(group_of[id(named[k])]["weight_decay"] == 0.0 for k in meta_bias)
    frelu_w = [k for k in named if k.startswith("model.21.") and k.endswith(".act.conv.weight")]
    assert frelu_w and all(group_of[id(named[k])]["weight_decay"] == decay for k in frelu_w)

    # ultralytics' own grouping, for contrast: under MuSGD it sends 4-D ACON parameters to Muon, with decay
    base = DetectionTrainer.build_optimizer(trainer, model, name="auto", lr=0.01, momentum=0.9, decay=decay,
                                            iterations=iterations)
    muon = {id(p) for g in base.param_groups if g.get("use_muon") for p in g["params"]}
    assert bool(muon & {id(named[k]) for k in acon}) == (iterations > 1e4)

    # the scheduler and a real optimizer step work with the extra groups
    trainer.optimizer = opt
    trainer._setup_scheduler()
    assert all("initial_lr" in g for g in opt.param_groups)
    model.args = trainer.args
    model.train()
    batch = {"img": torch.rand(2, 3, 64, 64), "batch_idx": torch.tensor([0.0, 1.0]),
             "cls": torch.tensor([[0.0], [2.0]]), "bboxes": torch.tensor([[0.5, 0.5, 0.3, 0.3], [0.4, 0.6, 0.2, 0.25]])}
    loss, _ = model(batch)
    loss.sum().backward()
    before = {k: named[k].detach().clone() for k in acon[:3]}
    opt.step()
    assert any(not torch.equal(before[k], named[k]) for k in before), "activation parameters are trained"


def test_regroup_is_a_no_op_without_activation_params():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.SiLU())
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    assert add_activation_param_groups(opt, model, 1e-4) == [] and len(opt.param_groups) == 1


def test_weights_with_silu_init_start_from_unchanged_outputs(cache, tmp_path):
    """--weights from a SiLU checkpoint + acon_c init=silu: the patched model computes what the checkpoint did."""
    from ultralytics.nn.tasks import DetectionModel

    from yolo_act_swap.engine.run import prepare_run

    torch.manual_seed(0)
    src = DetectionModel("yolov8n.yaml", nc=3, verbose=False).eval()
    for m in src.modules():  # make BN statistics non-trivial so the check is not vacuous
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    ckpt = tmp_path / "silu.pt"
    torch.save({"model": copy.deepcopy(src), "train_args": {}}, ckpt)

    args = prepare_run(cfg="yolov8n.yaml", weights=str(ckpt), data=None, act="acon_c:init=silu",
                       project=str(tmp_path), name="ft", device="cpu", plots=False)
    trainer = ActSwapTrainer(overrides=args)
    trainer.setup_model()
    patched = trainer.model.eval()
    assert {m._yas_act for m in _act_modules(patched)} == {"acon_c"}
    x = torch.rand(2, 3, 128, 128)
    with torch.no_grad():
        a, b = src(x), patched(x)
    a, b = (a[0] if isinstance(a, (list, tuple)) else a), (b[0] if isinstance(b, (list, tuple)) else b)
    assert torch.allclose(a, b, atol=1e-4, rtol=1e-4), (a - b).abs().max()


def test_yolo_wrapper_trains_an_in_memory_patch(cache, tmp_path):
    """YOLO(yaml) patched in memory keeps its swap through Model.train(), which rebuilds the network."""
    from yolo_act_swap import patch_model
    from yolo_act_swap.engine.model import YOLO

    model = YOLO("yolov8n.yaml")
    patch_model(model, "hard_swish", verify=False)
    model.train(epochs=1, imgsz=64, batch=8, fraction=0.05, device="cpu", workers=0, plots=False, val=False,
                project=str(tmp_path), name="y")
    trained = model.trainer.model
    assert {m._yas_act for m in _act_modules(trained)} == {"hard_swish"}
    assert {m._yas_act for m in _act_modules(model.model)} == {"hard_swish"}  # the reloaded best.pt too


def test_amp_check_runs_without_downloads():
    from yolo_act_swap.engine.amp import check_amp

    model = build_model(load_model_cfg("yolov8n.yaml"), nc=3)
    assert amp_allclose(model, "cpu", dtype=torch.bfloat16, imgsz=64)
    assert check_amp(model, "cpu") is False  # ultralytics' rule: no AMP on CPU, decided without any download


def test_amp_hooks_pin_ultralytics_setup_order(cache, tmp_path, monkeypatch):
    """What engine.amp relies on in ultralytics' (private) _setup_train, simulated on CPU: setup_model runs before the
    AMP check, args.amp=False set there skips ultralytics' own (downloading) check_amp, and on_pretrain_routine_end
    runs after ultralytics has set amp and the scaler, so the decision made there is the one training uses."""
    import ultralytics.engine.trainer as ultralytics_trainer

    from yolo_act_swap.engine import amp

    calls = []
    monkeypatch.setattr(ultralytics_trainer, "check_amp", lambda model: calls.append("ultralytics") or True)
    monkeypatch.setattr(amp, "needs_own_check", lambda trainer: True)  # as on CUDA without yolo26n.pt
    monkeypatch.setattr(amp, "check_amp", lambda model, device: calls.append("ours") or True)
    cfg = with_spec(load_model_cfg("yolov8n.yaml"), act="relu")
    trainer = _trainer(cache, tmp_path, cfg, amp=True, workers=0, epochs=1, batch=4, imgsz=64, val=False)
    trainer._setup_train()
    assert calls == ["ours"], "ultralytics ran its own AMP check although args.amp was False during its setup"
    assert trainer.args.amp is True and trainer.amp is True  # the user's value is back; our decision is in force
    assert (trainer.save_dir / "yolov8n.yaml").is_file()  # setup_model kept the model YAML in the run folder


def test_val_metrics_table_text():
    from yolo_act_swap.engine.validator import metrics_table

    r = {"instances": 1234, "metrics": {"precision": 0.5, "recall": 0.25, "mAP50": 0.125, "mAP50-95": 0.0625},
         "per_class": {"circle": {"instances": 7, "precision": 1, "recall": 0.5, "mAP50": 0.3333, "mAP50-95": 0.2},
                       "a_long_class_name": {"instances": 1227, "precision": 0, "recall": 0, "mAP50": 0,
                                             "mAP50-95": 0}},
         "coco": {"evaluator": "faster-coco-eval", "mAP50-95": 0.1, "mAP50": 0.2}}
    assert metrics_table(r) == (
        "class              instances      P      R  mAP50  mAP50-95\n"
        "-----------------------------------------------------------\n"
        "all                     1234  0.500  0.250  0.125     0.062\n"
        "circle                     7  1.000  0.500  0.333     0.200\n"
        "a_long_class_name       1227  0.000  0.000  0.000     0.000\n"
        "official COCO mAP (faster-coco-eval): mAP50-95 0.100  mAP50 0.200"
    )


def test_import_does_not_load_the_trainer():
    code = ("import sys, yolo_act_swap; bad = [m for m in sys.modules if m.startswith(('ultralytics.engine.trainer', "
            "'ultralytics.models', 'yolo_act_swap.engine.trainer'))]; print(bad); sys.exit(bool(bad))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=dict(os.environ))
    assert r.returncode == 0, r.stdout + r.stderr[-2000:]


def _three_groups(model, decay):
    """Upstream YOLOv5's smart_optimizer layout: biases, weights with decay, norm weights (by attribute name)."""
    g = [], [], []
    for m in model.modules():
        for name, p in m.named_parameters(recurse=False):
            (g[0] if name == "bias" else g[2] if isinstance(m, torch.nn.BatchNorm2d) else g[1]).append(p)
    opt = torch.optim.SGD(g[0], lr=0.01, momentum=0.9, nesterov=True)
    opt.add_param_group({"params": g[1], "weight_decay": decay})
    opt.add_param_group({"params": g[2], "weight_decay": 0.0})
    return opt


def test_regroup_joins_the_scripts_groups():
    """The default (the upstream snippet) adds no group: shape params join the norm group, weights the decay one."""
    from ultralytics.nn.modules import Conv

    from yolo_act_swap import patch_model
    from yolo_act_swap.engine.optim import split_activation_parameters

    model = torch.nn.Sequential(Conv(3, 8, 3), Conv(8, 8, 3))
    patch_model(model, {"act": "frelu", "rules": [{"layers": "1", "act": "acon_c"}]}, imgsz=32)
    opt = _three_groups(model, 5e-4)
    assert add_activation_param_groups(opt, model, weight_decay=5e-4) == [] and len(opt.param_groups) == 3
    groups = opt.param_groups
    where = {id(p): [i for i, g in enumerate(groups) for q in g["params"] if q is p] for p in model.parameters()}
    assert all(len(v) == 1 for v in where.values()), "every parameter in exactly one group"
    decay, shape = split_activation_parameters(model)
    assert decay and shape
    assert all(where[id(p)] == [1] for p in decay) and all(where[id(p)] == [2] for p in shape)
    # a weight decay the script's groups do not have: a group of its own, as with groups="own"
    opt = _three_groups(model, 5e-4)
    added = add_activation_param_groups(opt, model, weight_decay=1e-3)
    assert [g["act_swap"] for g in added] == ["weight"] and len(opt.param_groups) == 4


def test_patch_model_restores_a_patched_checkpoint(tmp_path):
    """patch_model(weights=) on a plain model loaded with strict=False (upstream --resume): activations come back."""
    from ultralytics.nn.modules import Conv

    from yolo_act_swap import patch_model

    torch.manual_seed(0)
    trained = torch.nn.Sequential(Conv(3, 8, 3), Conv(8, 8, 3))
    patch_model(trained, "meta_acon_c", imgsz=32)
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(torch.rand_like(p))
    torch.save({"model": trained.half()}, tmp_path / "last.pt")
    trained.float()
    fresh = torch.nn.Sequential(Conv(3, 8, 3), Conv(8, 8, 3))
    fresh.load_state_dict(trained.state_dict(), strict=False)  # what upstream keeps: the plain model's keys only
    assert patch_model(fresh, "meta_acon_c", imgsz=32).restored == []
    report = patch_model(fresh, "meta_acon_c", imgsz=32, weights=str(tmp_path / "last.pt"))
    assert report.restored == ["0.act", "1.act"]
    ref = torch.load(tmp_path / "last.pt", weights_only=False)["model"].float().state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in fresh.state_dict().items() if ".act." in k)
    other = torch.nn.Sequential(Conv(3, 8, 3), Conv(8, 8, 3))
    assert patch_model(other, "acon_c", imgsz=32, weights=str(tmp_path / "last.pt")).restored == []  # another act
