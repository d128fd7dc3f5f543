"""Rules to blocks: which activation each slot gets after a chain of swap specs, and why a rule matched nothing."""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any

import torch.nn as nn

from .blocks import Block, layer_list
from .errors import SpecError
from .spec import ActSpec, Rule, SwapSpec, load_spec


def _matches(rule: Rule, b: Block, layer_set: set | None) -> bool:
    if b.kind == "bare" and not rule.bare:
        return False
    if rule.layers is not None and (b.layer is None or b.layer not in layer_set):
        return False
    if rule.stages is not None and b.stage not in rule.stages:
        return False
    if rule.modules is not None:
        candidates = (b.path, b.act_path, *b.ancestors)
        if not any(fnmatchcase(p, g) for g in rule.modules for p in candidates if p):
            return False
    if rule.types is not None and not any(t == b.type or t in b.enclosing for t in rule.types):
        return False
    return True


def _no_match_hint(rule: Rule, blocks: list[Block]) -> str:
    pool = [b for b in blocks if b.kind == "block" or rule.bare]
    what = "activated conv block or bare activation" if rule.bare else "activated conv block"
    hints = []
    if rule.types is not None:
        types = sorted({b.type for b in pool})
        enclosing = sorted(
            {t for b in pool for t in b.enclosing[1:]} - set(types) - {"Sequential", "ModuleList", "ModuleDict"}
        )
        hints.append(
            f"block types here: {', '.join(types) or 'none'}; enclosing types: {', '.join(enclosing) or 'none'}"
        )
    if rule.modules is not None:
        hints.append(f"block paths look like {', '.join(b.path for b in pool[:3]) or 'nothing'}")
    if rule.layers is not None:
        layers = sorted({b.layer for b in pool if b.layer is not None})
        hints.append(f"layers with blocks: {_ranges(layers) or 'none'}")
    if rule.stages is not None:
        stages = sorted({b.stage for b in pool})
        hints.append(f"stages here: {', '.join(stages) or 'none'} ('model' when the model has no YOLO YAML)")
    sel = ", ".join(
        f"{k} {v if k != 'layers' else rule.to_dict()['layers']}"
        for k, v in (
            ("layers", rule.layers),
            ("stages", list(rule.stages or ())),
            ("modules", list(rule.modules or ())),
            ("types", list(rule.types or ())),
        )  # fmt: skip
        if getattr(rule, k) is not None
    )
    return f"{rule.source}: the rule ({sel}) matches no {what}; {'; '.join(hints)}; add 'optional: true' to allow that"


def _ranges(ints: list[int]) -> str:
    out, start, prev = [], None, None
    for i in ints + [None]:
        if start is None:
            start = prev = i
        elif i is not None and i == prev + 1:
            prev = i
        else:
            out.append(f"{start}" if start == prev else f"{start}-{prev}")
            start = prev = i
    return ", ".join(out)


def decide(specs: list[SwapSpec], blocks: list[Block], root: nn.Module) -> list[ActSpec | None]:
    """The activation each slot gets (None: unchanged) after applying ``specs`` in order; validates every rule."""
    layers = layer_list(root)
    final: list[ActSpec | None] = [None] * len(blocks)
    for spec in specs:
        cur = [spec.act if b.kind == "block" else None for b in blocks]
        for rule in spec.rules:
            layer_set = None
            if rule.layers is not None:
                if layers is None:
                    raise SpecError(
                        f"{rule.source}: 'layers' needs a model with a top-level layer list (model.model), "
                        f"which {type(root).__name__} has not; select with modules or types instead"
                    )
                layer_set = rule.layer_set(layers[1])
            hits = 0
            for i, b in enumerate(blocks):
                if _matches(rule, b, layer_set):
                    cur[i] = rule.act
                    hits += 1
            if not hits and not rule.optional:
                raise SpecError(_no_match_hint(rule, blocks))
        for i, a in enumerate(cur):
            if a is not None and not a.keep:
                final[i] = a
    return final


def as_specs(spec: Any, act: str | None = None) -> list[SwapSpec]:
    """A spec or a chain of specs (a list, as a model YAML's ``act_swap`` may hold) as a list of SwapSpecs."""
    if isinstance(spec, (list, tuple)):
        if not spec:
            raise SpecError("the spec list is empty; give at least one spec")
        specs = [load_spec(s) for s in spec]
        if act is not None:
            specs[-1] = load_spec(specs[-1], act=act)
        return specs
    return [load_spec(spec, act=act)]
