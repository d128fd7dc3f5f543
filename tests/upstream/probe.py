"""Test instrumentation for tests/test_upstream_train.py (not part of the snippet): one line right after the snippet's
line (3) in the copied upstream train.py, ``__import__("probe").attach(model, optimizer, weights)``.

At that point upstream has built the model, loaded ``--weights``/``--resume``, and made the optimizer; nothing has
trained yet. It writes ``$YAS_PROBE_OUT`` (JSON) twice: now, with the optimizer's grouping and, when ``weights`` is a
checkpoint, the largest difference between each activation tensor and the checkpoint's ``model`` entry; and at exit,
which activation parameters training changed and which never received a non-zero gradient.

Both, because a parameter that training reaches can still end where it started: during YOLOv7's warm-up the learning
rate of the weights ramps up from 0, and on the tiny demo set an update of a BatchNorm weight at 1.0 can stay below
float32's resolution there (about 6e-8) for the whole run.
"""

from __future__ import annotations

import atexit
import json
import os
from pathlib import Path

import torch

from yolo_act_swap.activations.registry import is_activation_module


def _activation_state(model) -> dict[str, torch.Tensor]:
    """Every parameter and buffer inside a swapped-in activation (outermost ones), by its state_dict key."""
    roots = [p for p, m in model.named_modules() if is_activation_module(m)]
    roots = [r for r in roots if not any(r.startswith(o + ".") for o in roots)]
    return {k: v for k, v in model.state_dict().items() if any(k.startswith(r + ".") for r in roots)}


def _grouping(model, optimizer, act_names: set) -> dict:
    where: dict[int, list[int]] = {}
    for gi, g in enumerate(optimizer.param_groups):
        for p in g["params"]:
            where.setdefault(id(p), []).append(gi)
    named = dict(model.named_parameters())
    return {
        "n_groups": len(optimizer.param_groups),
        "group_sizes": [len(g["params"]) for g in optimizer.param_groups],
        "group_weight_decay": [float(g.get("weight_decay", 0.0)) for g in optimizer.param_groups],
        "not_once": sorted(n for n, p in named.items() if len(where.get(id(p), [])) != 1),
        "n_act_params": len(act_names),
        "act_groups": {n: where.get(id(named[n]), []) for n in sorted(act_names)},
    }


def _vs_checkpoint(state: dict, weights) -> dict | None:
    if not (isinstance(weights, str) and weights.endswith(".pt") and Path(weights).is_file()):
        return None
    ckpt = torch.load(weights, map_location="cpu", weights_only=False)
    csd = ckpt["model"].float().state_dict()
    missing = sorted(k for k in state if k not in csd)
    diff = {k: float((v.float().cpu() - csd[k].float()).abs().max()) for k, v in state.items() if k in csd}
    worst = max(diff.values(), default=None)
    return {"weights": weights, "epoch": ckpt.get("epoch"), "missing": missing, "max_abs_diff": worst,
            "n_compared": len(diff)}  # fmt: skip


def attach(model, optimizer, weights) -> None:
    out = Path(os.environ["YAS_PROBE_OUT"])
    state = _activation_state(model)
    named = dict(model.named_parameters())
    act_names = {k for k in state if k in named}
    start = {k: named[k].detach().float().cpu().clone() for k in act_names}
    graded: set[str] = set()  # parameters that got a non-zero gradient at least once
    for k in act_names:
        named[k].register_post_accumulate_grad_hook(
            lambda p, k=k: graded.add(k) if k not in graded and p.grad is not None and bool(p.grad.ne(0).any()) else None
        )
    doc = {"grouping": _grouping(model, optimizer, act_names), "checkpoint": _vs_checkpoint(state, weights)}
    out.write_text(json.dumps(doc, indent=1))

    def at_exit():
        changed = {k: bool((named[k].detach().float().cpu() != v).any()) for k, v in start.items()}
        drift = {k: float((named[k].detach().float().cpu() - v).abs().max()) for k, v in start.items()}
        doc["unchanged"] = sorted(k for k, c in changed.items() if not c)
        doc["no_gradient"] = sorted(act_names - graded)
        doc["max_drift"] = max(drift.values(), default=0.0)
        doc["top_drift"] = dict(sorted(drift.items(), key=lambda kv: -kv[1])[:3])
        doc["median_drift"] = sorted(drift.values())[len(drift) // 2] if drift else 0.0
        out.write_text(json.dumps(doc, indent=1))

    atexit.register(at_exit)
