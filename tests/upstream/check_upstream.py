"""Patch real upstream YOLOv5 / YOLOv7 models with yolo-act-swap and record what happened, as JSON.

Run by tests/test_upstream.py in a subprocess, with one upstream tree on PYTHONPATH (never both: YOLOv7 installs the
top-level packages ``models`` and ``utils``, and YOLOv5 puts its own on sys.path). This script only measures; the
test file asserts. For every model and activation it records:

- the activated conv blocks, found independently from the upstream classes (Conv/DWConv with a non-Identity ``act``,
  BottleneckCSP's own ``act``, RepConv's ``act``, RepConv_OREPA's ``nonlinearity``), and which of them were swapped;
- the nested output shapes before and after, in train and in eval mode;
- the upstream optimizer grouping (YOLOv5's ``smart_optimizer``; YOLOv7's inline loop from its train.py, restated
  below) before and after ``add_activation_param_groups``;
- one real training step with the upstream loss: gradients of every activation parameter and whether the step moved
  them (and, where upstream's grouping leaves activation parameters out, the same step without the snippet), with
  upstream's ModelEMA following the patched model;
- on request (``--reload``), a patched checkpoint through train.py's ``pretrained`` branch: which of its entries the
  docs' line (2) restores with ``weights=`` (and without it).

Usage:
    PYTHONPATH=.upstream/yolov5:.upstream/deps python tests/upstream/check_upstream.py yolov5 --acts frelu,acon_c
    PYTHONPATH=.upstream/yolov7:.upstream/deps python tests/upstream/check_upstream.py yolov7 --out result.json
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib.metadata
import io
import json
import sys
import time
import traceback
from pathlib import Path

import torch
import torch.nn as nn
import yaml

from yolo_act_swap import add_activation_param_groups, patch_model
from yolo_act_swap.activations import is_activation_module

# Plain activation classes that upstream code builds; after patching none may be left outside swapped-in modules.
PLAIN_ACTS = (
    nn.SiLU, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.Hardswish, nn.Hardsigmoid, nn.Mish, nn.GELU, nn.ELU, nn.PReLU,
    nn.Sigmoid, nn.Tanh,
)  # fmt: skip
# The rbr_dense attributes that YOLOv7 train.py puts in its no-decay group, in its order.
OREPA_PARAMS = (
    "weight_rbr_origin", "weight_rbr_avg_conv", "weight_rbr_pfir_conv", "weight_rbr_1x1_kxk_idconv1",
    "weight_rbr_1x1_kxk_conv2", "weight_rbr_gconv_dw", "weight_rbr_gconv_pw", "vector",
)  # fmt: skip
WEIGHT_LAYERS = (nn.modules.conv._ConvNd, nn.Linear)
# Batch, class, x, y, w, h (normalised): two boxes per image of a batch of 2.
TARGETS = [
    [0, 1, 0.5, 0.5, 0.3, 0.4], [0, 7, 0.25, 0.3, 0.2, 0.2], [1, 3, 0.6, 0.55, 0.5, 0.3], [1, 0, 0.2, 0.7, 0.1, 0.2],
]  # fmt: skip


# --- the two upstream trees -------------------------------------------------------------------------------------------


class YOLOv5:
    """PyPI ``yolov5==7.0.14``: its own models/yolov5s.yaml, plus the same net with C3 replaced by BottleneckCSP."""

    name = "yolov5"

    def __init__(self):
        import yolov5
        from yolov5.models import common
        from yolov5.models.yolo import Model
        from yolov5.utils.general import intersect_dicts
        from yolov5.utils.loss import ComputeLoss
        from yolov5.utils.torch_utils import ModelEMA, smart_optimizer

        self.root = Path(yolov5.__file__).parent
        self.common, self.Model, self.ComputeLoss, self.smart_optimizer = common, Model, ComputeLoss, smart_optimizer
        self.ModelEMA, self.intersect_dicts = ModelEMA, intersect_dicts
        self.version = yolov5.__version__
        self.hyp = yaml.safe_load((self.root / "data/hyps/hyp.scratch-low.yaml").read_text())

    def model_cfgs(self) -> dict:
        """Model name -> YAML path or dict, as upstream ``Model(cfg)`` takes it."""
        v5s = self.root / "models/yolov5s.yaml"
        csp = yaml.safe_load(v5s.read_text())  # upstream's pre-C3 design: BottleneckCSP has an act over its own BN
        for layer in csp["backbone"] + csp["head"]:
            if layer[2] == "C3":
                layer[2] = "BottleneckCSP"
        return {"yolov5s": str(v5s), "yolov5s-bottleneckcsp": csp}

    def activated_blocks(self, model: nn.Module) -> list[dict]:
        """Activated conv blocks by upstream class, with the attribute that holds the activation and its channels."""
        c = self.common
        blocks = []
        for path, m in model.named_modules():
            if isinstance(m, c.Conv) and not isinstance(m.act, nn.Identity):  # DWConv is a Conv subclass
                blocks.append(_block(path, m, "act", m.conv.out_channels))
            elif isinstance(m, c.BottleneckCSP) and not isinstance(m.act, nn.Identity):
                blocks.append(_block(path, m, "act", m.bn.num_features))  # BN over cat(cv2, cv3): 2*c_ channels
        return blocks

    def optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        """What upstream train.py does: ``smart_optimizer(model, opt.optimizer, lr0, momentum, weight_decay)``."""
        h = self.hyp
        with contextlib.redirect_stdout(io.StringIO()):
            return self.smart_optimizer(model, "SGD", h["lr0"], h["momentum"], h["weight_decay"])

    def loss(self, model: nn.Module, preds, targets: torch.Tensor) -> torch.Tensor:
        """Upstream ComputeLoss, with the attributes train.py attaches to the model first."""
        model.nc, model.hyp = 80, self.hyp
        return self.ComputeLoss(model)(preds, targets)[0]


class YOLOv7:
    """PyPI ``yolov7-wky-package`` (top-level models/utils/cfg): cfg/training/yolov7.yaml and yolov7-tiny.yaml."""

    name = "yolov7"

    def __init__(self):
        import cfg
        from models import common
        from models.yolo import Model
        from utils.loss import ComputeLoss
        from utils.torch_utils import ModelEMA, intersect_dicts

        self.root = Path(cfg.__file__).parent.parent
        self.common, self.Model, self.ComputeLoss = common, Model, ComputeLoss
        self.ModelEMA, self.intersect_dicts = ModelEMA, intersect_dicts
        self.version = importlib.metadata.version("yolov7-wky-package")
        self.hyp = yaml.safe_load((self.root / "data/hyp.scratch.p5.yaml").read_text())

    def model_cfgs(self) -> dict:
        """Model name -> YAML path or dict, as upstream ``Model(cfg)`` takes it."""
        v7 = self.root / "cfg/training/yolov7.yaml"
        orepa = yaml.safe_load(v7.read_text())  # the head's three RepConv as RepConv_OREPA (act in `nonlinearity`)
        for layer in orepa["head"]:
            if layer[2] == "RepConv":
                layer[2] = "RepConv_OREPA"
        return {
            "yolov7": str(v7),
            "yolov7-tiny": str(self.root / "cfg/training/yolov7-tiny.yaml"),
            "yolov7-repconv-orepa": orepa,
        }

    def activated_blocks(self, model: nn.Module) -> list[dict]:
        """Activated conv blocks by upstream class, with the attribute that holds the activation and its channels."""
        c = self.common
        blocks = []
        for path, m in model.named_modules():
            if isinstance(m, c.Conv) and not isinstance(m.act, nn.Identity):
                blocks.append(_block(path, m, "act", m.conv.out_channels))
            elif isinstance(m, c.RepConv) and not isinstance(m.act, nn.Identity):
                blocks.append(_block(path, m, "act", m.out_channels))
            elif isinstance(m, c.RepConv_OREPA) and not isinstance(m.nonlinearity, nn.Identity):
                blocks.append(_block(path, m, "nonlinearity", m.out_channels))
        return blocks

    def optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        """YOLOv7 train.py's parameter grouping, restated line for line (python_scripts/train.py lines 115-186 of
        yolov7-wky-package, the same as train.py in WongKinYiu/yolov7): attributes are looked up by name, so any
        parameter called something else (ACON's p1/p2/beta) lands in no group at all."""
        h = self.hyp
        pg0, pg1, pg2 = [], [], []  # optimizer parameter groups
        for _, v in model.named_modules():
            if hasattr(v, "bias") and isinstance(v.bias, nn.Parameter):
                pg2.append(v.bias)  # biases
            if isinstance(v, nn.BatchNorm2d):
                pg0.append(v.weight)  # no decay
            elif hasattr(v, "weight") and isinstance(v.weight, nn.Parameter):
                pg1.append(v.weight)  # apply decay
            for attr in ("im", "imc", "imb", "imo", "ia"):  # train.py spells out these five blocks one by one
                if hasattr(v, attr):
                    im = getattr(v, attr)
                    if hasattr(im, "implicit"):
                        pg0.append(im.implicit)
                    else:
                        for iv in im:
                            pg0.append(iv.implicit)
            if hasattr(v, "attn"):
                for attr in ("logit_scale", "q_bias", "v_bias", "relative_position_bias_table"):
                    if hasattr(v.attn, attr):
                        pg0.append(getattr(v.attn, attr))
            if hasattr(v, "rbr_dense"):
                for attr in OREPA_PARAMS:
                    if hasattr(v.rbr_dense, attr):
                        pg0.append(getattr(v.rbr_dense, attr))
        optimizer = torch.optim.SGD(pg0, lr=h["lr0"], momentum=h["momentum"], nesterov=True)  # train.py without --adam
        optimizer.add_param_group({"params": pg1, "weight_decay": h["weight_decay"]})  # add pg1 with weight_decay
        optimizer.add_param_group({"params": pg2})  # add pg2 (biases)
        return optimizer

    def loss(self, model: nn.Module, preds, targets: torch.Tensor) -> torch.Tensor:
        """Upstream ComputeLoss, with the attributes train.py attaches to the model first."""
        model.nc, model.hyp, model.gr = 80, self.hyp, 1.0
        return self.ComputeLoss(model)(preds, targets)[0]


# --- measurements -------------------------------------------------------------------------------------------------


def build(up, cfg) -> nn.Module:
    """``Model(cfg)`` as upstream train.py calls it, quietly (upstream prints its layer table and RepVGG notes)."""
    with contextlib.redirect_stdout(io.StringIO()):
        return up.Model(copy.deepcopy(cfg) if isinstance(cfg, dict) else cfg)


def _block(path: str, module: nn.Module, attr: str, channels: int) -> dict:
    return {"path": path, "type": type(module).__name__, "attr": attr, "channels": int(channels)}


def _get(model: nn.Module, path: str) -> nn.Module:
    return model.get_submodule(path) if path else model


def shapes(obj):
    """Nested output structure as plain lists of shapes (tensors) and type names (anything else)."""
    if isinstance(obj, torch.Tensor):
        return list(obj.shape)
    if isinstance(obj, (list, tuple)):
        return [shapes(o) for o in obj]
    if isinstance(obj, dict):
        return {str(k): shapes(v) for k, v in obj.items()}
    return type(obj).__name__


def forward_shapes(model: nn.Module, inputs: list[torch.Tensor]) -> dict:
    """Output shapes in train and in eval mode for each input (train mode first; it leaves the model in eval)."""
    out = {}
    with torch.no_grad():
        for mode in ("train", "eval"):
            model.train(mode == "train")
            for x in inputs:
                out[f"{mode}@{x.shape[2]}x{x.shape[3]}"] = shapes(model(x))
    return out


def plain_activations(model: nn.Module) -> list[str]:
    """Paths of plain torch activation modules that are not inside a swapped-in activation (duplicates included:
    YOLOv5's Conv shares one class-level SiLU instance between all blocks)."""
    inside = set()
    for m in model.modules():
        if is_activation_module(m):
            inside.update(id(s) for s in m.modules())
    modules = model.named_modules(remove_duplicate=False)
    return [p for p, m in modules if isinstance(m, PLAIN_ACTS) and id(m) not in inside]


def activation_params(model: nn.Module) -> dict[str, tuple[nn.Parameter, bool]]:
    """Every parameter inside a swapped-in activation: name -> (parameter, is a conv/linear weight)."""
    out, roots = {}, []
    for path, m in model.named_modules():
        if not is_activation_module(m) or any(path.startswith(f"{r}.") for r in roots):
            continue
        roots.append(path)
        for sub, s in m.named_modules(prefix=path):
            for name, p in s.named_parameters(recurse=False):
                out.setdefault(f"{sub}.{name}", (p, isinstance(s, WEIGHT_LAYERS) and name == "weight"))
    return out


def grouping(model: nn.Module, optimizer: torch.optim.Optimizer, act_params: dict) -> dict:
    """How the optimizer's groups cover the model: params in none or several groups, and activation params' decay."""
    where: dict[int, list[int]] = {}
    for gi, g in enumerate(optimizer.param_groups):
        for p in g["params"]:
            where.setdefault(id(p), []).append(gi)
    names = {id(p): n for n, p in model.named_parameters()}
    wd = [float(g.get("weight_decay", 0.0)) for g in optimizer.param_groups]
    missing = [n for n, p in model.named_parameters() if not where.get(id(p))]
    multi = [n for n, p in model.named_parameters() if len(where.get(id(p), [])) > 1]
    shape_decay = {n: [wd[g] for g in where.get(id(p), [])] for n, (p, is_w) in act_params.items() if not is_w}
    weight_decay = {n: [wd[g] for g in where.get(id(p), [])] for n, (p, is_w) in act_params.items() if is_w}
    n_model = sum(1 for _ in model.parameters())
    n_groups = sum(len(g["params"]) for g in optimizer.param_groups)
    foreign = [gi for gi, g in enumerate(optimizer.param_groups) for p in g["params"] if id(p) not in names]
    return {
        "missing": missing,
        "multi": multi,
        "foreign": len(foreign),
        "n_model_params": n_model,
        "n_group_entries": n_groups,
        "act_shape_param_decay": shape_decay,
        "act_weight_decay": weight_decay,
        "group_weight_decay": wd,
    }


def check_model(up, name: str, cfg, acts: list[str], imgsz: int, reload: tuple = ()) -> dict:
    """Build one upstream model and run every check for every activation on a fresh copy of it (and the checkpoint
    reload check for the activations in ``reload``)."""
    torch.manual_seed(0)
    base = build(up, cfg)
    blocks = up.activated_blocks(base)
    block_attr_paths = {f"{b['path']}.{b['attr']}" for b in blocks}
    inputs = [torch.rand(2, 3, imgsz, imgsz), torch.rand(2, 3, imgsz, imgsz + 32)]
    before = forward_shapes(base, inputs)
    result = {
        "blocks": blocks,
        "block_types": sorted({b["type"] for b in blocks}),
        # plain activations that are not some counted block's act: should be none, else the count above is short
        "uncounted_before": sorted(set(plain_activations(base)) - block_attr_paths),
        "n_params": sum(p.numel() for p in base.parameters()),
        "acts": {},
    }
    for act in acts:
        try:
            r = check_act(up, base, blocks, inputs, before, act, imgsz)
            trained = r.pop("_trained")
            if act in reload:
                r["reload"] = check_reload(up, cfg, trained, act, imgsz)
            result["acts"][act] = r
        except Exception as e:  # noqa: BLE001 - recorded per model and activation, so the test names the failing pair
            result["acts"][act] = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-3000:]}
    return result


def check_act(up, base: nn.Module, blocks: list[dict], inputs: list, before: dict, act: str, imgsz: int) -> dict:
    """Patch a copy of ``base`` with ``act``, then measure blocks, shapes, optimizer groups and one training step."""
    model = copy.deepcopy(base)
    n_params = sum(p.numel() for p in base.parameters())
    t0 = time.perf_counter()
    report = patch_model(model, act, imgsz=imgsz)
    r: dict = {"patch_s": round(time.perf_counter() - t0, 3)}
    r["report_blocks"], r["report_swapped"] = report.n_blocks, report.n_swapped  # the patcher's own count
    r["report_channels"] = {b.path: b.channels for b in report.blocks}  # the channels it built each activation for
    acts_now = [getattr(_get(model, b["path"]), b["attr"]) for b in blocks]
    r["swapped"] = sum(is_activation_module(a) for a in acts_now)
    r["unique_instances"] = len({id(a) for a in acts_now})
    r["swapped_names"] = sorted({getattr(a, "_yas_act", type(a).__name__) for a in acts_now})
    r["plain_left"] = plain_activations(model)
    r["added_params"] = sum(p.numel() for p in model.parameters()) - n_params
    r["shapes_before"], r["shapes_after"] = before, forward_shapes(model, inputs)

    # The optimizer as upstream train.py builds it, then our snippet.
    aps = activation_params(model)
    r["n_act_params"] = len(aps)
    optimizer = up.optimizer(model)
    r["groups_before"] = grouping(model, optimizer, aps)
    add_activation_param_groups(optimizer, model, weight_decay=up.hyp["weight_decay"])
    r["groups_after"] = grouping(model, optimizer, aps)
    r["hyp_weight_decay"] = up.hyp["weight_decay"]

    # One real training step, with the snippet, and (where upstream's grouping leaves activation parameters out) the
    # same step on a copy with upstream's grouping alone.
    shadow = copy.deepcopy(model) if any(n in r["groups_before"]["missing"] for n in aps) else None
    ema = up.ModelEMA(model)  # train.py makes its EMA after the optimizer, so from the patched model
    r.update(train_step(up, model, optimizer, inputs[0], aps))
    ema.update(model)
    r["ema_keys_match"] = list(ema.ema.state_dict()) == list(model.state_dict())
    r["ema_swapped"] = sum(is_activation_module(getattr(_get(ema.ema, b["path"]), b["attr"])) for b in blocks)
    r["_trained"] = model  # for check_reload; popped before JSON
    if shadow is not None:
        shadow_aps = activation_params(shadow)
        alone = train_step(up, shadow, up.optimizer(shadow), inputs[0], shadow_aps)
        r["not_updated_without_snippet"] = alone["not_updated"]
    return r


def check_reload(up, cfg, trained: nn.Module, act: str, imgsz: int) -> dict:
    """train.py's ``pretrained`` branch given a patched checkpoint (``--resume``, fine-tuning): it builds the plain
    model and loads what matches, then the docs' line (2) patches it. Records which checkpoint entries differ from the
    model after line (2) with ``weights=`` (the docs' form) and without it (fresh activations)."""
    csd = {k: v.detach().clone() for k, v in trained.float().state_dict().items()}  # ckpt['model'].float().state_dict()
    out = {}
    for how, weights in (("without_weights", None), ("with_weights", {"model": trained})):
        model = build(up, cfg)
        model.load_state_dict(up.intersect_dicts(csd, model.state_dict(), exclude=["anchor"]), strict=False)
        plain_keys = set(model.state_dict())
        report = patch_model(model, act, imgsz=imgsz, weights=weights)
        sd = model.state_dict()
        out["new_keys"] = len(set(sd) - plain_keys)
        differ = [k for k, v in csd.items() if "anchor" not in k and (k not in sd or not torch.equal(sd[k], v))]
        out[f"differ_{how}"] = differ
        out[f"restored_{how}"] = len(report.restored)
    return out


def train_step(up, model: nn.Module, optimizer, x: torch.Tensor, aps: dict) -> dict:
    """Train-mode forward, upstream loss, backward, optimizer step: the activation parameters' gradients, and those
    with a nonzero gradient that the step did not move."""
    initial = {n: p.detach().clone() for n, (p, _) in aps.items()}
    model.train()
    optimizer.zero_grad()
    loss = up.loss(model, model(x), torch.tensor(TARGETS))
    loss.backward()
    optimizer.step()
    g = {n: p.grad for n, (p, _) in aps.items()}
    return {
        "loss": float(loss.detach()),
        "grad_none": [n for n, v in g.items() if v is None],
        "grad_nonfinite": [n for n, v in g.items() if v is not None and not torch.isfinite(v).all()],
        "grad_zero": [n for n, v in g.items() if v is not None and not v.any()],
        "not_updated": [
            n for n, (p, _) in aps.items() if g[n] is not None and g[n].any() and torch.equal(p, initial[n])
        ],
    }


class _Payload:
    """A pickle payload: loading it with the full unpickler creates the file ``marker``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def check_safe_load(up, cfg, act: str, imgsz: int, folder: Path) -> dict:
    """Checkpoints in train.py's layout, written with upstream's own code (a train step, ``ModelEMA``, numpy
    ``best_fitness``, optimizer state, ``vars(opt)``; ``best.pt`` stripped as ``strip_optimizer`` does) and loaded by
    ``yolo_act_swap.load_model(weights=..., repo=checkout)`` without opt-in; plus the same file with a payload."""
    import argparse as _argparse
    from datetime import datetime

    import numpy as np

    from yolo_act_swap.models import load_model
    from yolo_act_swap.safe_load import UnsafeCheckpoint, needed_globals

    model = build(up, cfg)
    patch_model(model, act, imgsz=imgsz)
    optimizer = up.optimizer(model)
    ema = up.ModelEMA(model)
    train_step(up, model, optimizer, torch.rand(2, 3, imgsz, imgsz), {})
    ema.update(model)
    fi = np.array([0.1, 0.2, 0.3, 0.4]).reshape(1, -1) @ np.array([0.0, 0.0, 0.1, 0.9])  # train.py's fitness: ndarray
    opt = _argparse.Namespace(weights="", cfg=str(cfg), hyp=up.hyp, epochs=3, img_size=[imgsz, imgsz], device="cpu")
    ckpt = {"epoch": 0, "best_fitness": fi, "model": copy.deepcopy(model).half(), "ema": copy.deepcopy(ema.ema).half(),
            "updates": ema.updates, "optimizer": optimizer.state_dict(), "opt": vars(opt),
            "date": datetime.now().isoformat(), "git": {"remote": None, "branch": None, "commit": None}}
    best = dict(ckpt, model=ckpt["ema"], ema=None, updates=None, optimizer=None, epoch=-1)  # strip_optimizer
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, c in (("last.pt", ckpt), ("best.pt", best), ("payload.pt", dict(ckpt, extra=_Payload(folder / "M")))):
        torch.save(c, folder / name)
        r = out[name] = {"needs": sorted(needed_globals(folder / name))}
        try:
            loaded = load_model(weights=folder / name, repo=up.root)
            sd, ref = loaded.state_dict(), ckpt["ema"].float().state_dict()
            r["class"] = type(loaded).__name__
            r["equal_to_ema"] = list(sd) == list(ref) and all(torch.equal(sd[k], ref[k]) for k in ref)
        except UnsafeCheckpoint as e:
            r["refused"] = str(e)
        r["marker"] = (folder / "M").exists()
    return out


def main(argv=None) -> int:
    """Parse arguments, run the checks for one upstream family, write JSON to --out (or print it)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("family", choices=["yolov5", "yolov7"])
    ap.add_argument("--acts", default="frelu,acon_c,dy_relu_b,leaky_relu", help="comma-separated activation names")
    ap.add_argument("--models", default="", help="comma-separated model[:act+act] (default: all, with --acts)")
    ap.add_argument("--reload", default="", help="comma-separated model:act pairs for the checkpoint reload check")
    ap.add_argument("--imgsz", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: steady on a shared machine)")
    ap.add_argument("--out", default="", help="JSON output file (default: stdout)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    t0 = time.perf_counter()
    up = YOLOv5() if args.family == "yolov5" else YOLOv7()
    out = {"family": up.name, "version": up.version, "torch": torch.__version__, "models": {}}
    out["import_s"] = round(time.perf_counter() - t0, 2)
    cfgs = up.model_cfgs()
    wanted = [m for m in args.models.split(",") if m] or list(cfgs)
    acts = [a for a in args.acts.split(",") if a]
    for item in wanted:
        name, _, only = item.partition(":")  # "model:act+act" limits that model to those activations
        t1 = time.perf_counter()
        reload = tuple(a for m, _, a in (x.partition(":") for x in args.reload.split(",")) if m == name)
        out["models"][name] = check_model(up, name, cfgs[name], only.split("+") if only else acts, args.imgsz, reload)
        out["models"][name]["total_s"] = round(time.perf_counter() - t1, 2)
    for name, act in (x.partition(":")[::2] for x in args.reload.split(",") if x):
        out["safe_load"] = check_safe_load(up, cfgs[name], act, args.imgsz, Path(args.out or ".").parent / "ckpt")
    out["total_s"] = round(time.perf_counter() - t0, 2)
    text = json.dumps(out, indent=1)
    if args.out:
        Path(args.out).write_text(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
