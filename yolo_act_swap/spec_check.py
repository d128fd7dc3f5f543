"""Validate plain spec data (from YAML, a dict or ``--act`` text) into ``spec_types`` dataclasses.

Every check raises a one-line ``SpecError`` (``UnknownActivation`` / ``ActivationArgError`` for activations) that
starts with where the value came from: ``origin(path)`` turns a key path such as ``("rules", 1, "act")`` into
``file.yaml:7`` or ``spec.rules[1].act``. One function per part of a spec: ``check_act``, ``check_rule``,
``check_spec``, and a small validator per rule selector.
"""

from __future__ import annotations

import re
from typing import Any

from .activations.registry import check_kwargs, create_activation, get_activation_info, min_channels
from .errors import ActivationArgError, SpecError, UnknownActivation, short
from .spec_types import KEEP, RULE_KEYS, SELECTORS, SPEC_KEYS, STAGES, ActSpec, Rule, SwapSpec
from .spec_yaml import load_yaml

PROBE_CHANNELS = 64  # channel count used to validate an activation's keywords before a model is seen
MAX_LAYER = 1_000_000  # layer indices beyond this are mistakes (a model has a few hundred layers)


_RANGE = re.compile(r"^\s*(\d+)\s*-\s*(\d+)\s*$")
_INDEX = re.compile(r"^\s*(-?\d+)\s*$")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# YAML 1.1 (PyYAML) reads a float without a dot, such as 1e-3, as text; YAML 1.2 and every user read it as a number
_EXP_FLOAT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")


def _key(p) -> str:
    """One step of a key path: ``[3]``, ``.act``, or a shortened ``['a very long key...']``."""
    if isinstance(p, int) and not isinstance(p, bool):
        return f"[{p}]"
    return f".{p}" if isinstance(p, str) and len(p) <= 40 and _IDENT.match(p) else f"[{short(p, 40)}]"


class Origin:
    """Turns a key path like ``("rules", 1, "act")`` into a location: ``file.yaml:7`` or ``spec.rules[1].act``.

    Args:
        name (str): the file name, or ``spec`` / ``--act`` for a dict or a string.
        lines (dict, optional): key path -> 1-based line (from the YAML node tree); None names the key path instead.
    """

    def __init__(self, name: str, lines: dict | None = None):
        self.name, self.lines = name, lines

    def __call__(self, path: tuple = ()) -> str:
        if self.lines is None:  # a dict or an --act string: name the key path
            return self.name + "".join(_key(p) for p in path)
        for n in range(len(path), -1, -1):  # the deepest key that has a line
            if path[:n] in self.lines:
                return f"{self.name}:{self.lines[path[:n]]}"
        return self.name


# --- activations ------------------------------------------------------------------------------------------------------


def split_top(s: str, sep: str) -> list[str]:
    """Split ``s`` on ``sep`` outside brackets and quotes: ``split_top("a:x=[1,2],b", ",") == ["a:x=[1,2]", "b"]``."""
    parts, depth, quote, cur = [], 0, "", []
    for ch in s:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append("".join(cur))
            cur = []
            continue
        cur.append(ch)
    parts.append("".join(cur))
    return parts


def parse_act_string(s: str, where: str = "--act") -> tuple[str, dict]:
    """Split ``leaky_relu:negative_slope=0.1,inplace=false`` into a name and keywords (values read as YAML)."""
    name, _, rest = s.strip().partition(":")
    name = name.strip()
    if not name:
        raise SpecError(f"{where}: empty activation in {short(s)}; use NAME or NAME:key=value[,key=value]")
    kwargs = {}
    if rest.strip():
        for item in split_top(rest, ","):
            key, eq, value = item.partition("=")
            key = key.strip()
            if not eq or not _IDENT.match(key):
                raise SpecError(
                    f"{where}: cannot read {short(item.strip())} in {short(s)}; use NAME:key=value[,key=value], "
                    f"e.g. leaky_relu:negative_slope=0.1"
                )
            if key in kwargs:
                raise SpecError(f"{where}: {short(key)} is given twice in {short(s)}; give each keyword once")
            try:
                kwargs[key] = load_yaml(value.strip(), where, lines=False)[0] if value.strip() else None
            except SpecError:
                raise SpecError(
                    f"{where}: cannot read the value of {short(key)} in {short(s)}; quote it or fix it"
                ) from None
    return name, kwargs


def _act_name_kwargs(value: Any, where: str) -> tuple[str, dict] | None:
    """The name and keywords of an activation choice; None for ``keep``."""
    if isinstance(value, str):
        return None if value.strip().lower() == KEEP else parse_act_string(value, where)
    if isinstance(value, dict):
        if "name" not in value:
            raise SpecError(f"{where}: an activation mapping needs a 'name' key, e.g. {{name: acon_c, init: silu}}")
        kwargs = {k: v for k, v in value.items() if k != "name"}
        name = value["name"]
        bad = [k for k in kwargs if not isinstance(k, str)]
        if not isinstance(name, str) or bad:
            what = f"name {short(name)}" if not isinstance(name, str) else f"keyword {short(bad[0])}"
            raise SpecError(f"{where}: activation name and keywords must be strings, got {what}")
        if name.strip().lower() == KEEP:
            if kwargs:
                raise SpecError(f"{where}: 'keep' takes no keywords; remove {', '.join(short(k, 40) for k in kwargs)}")
            return None
        return name, kwargs
    if value is None:
        raise SpecError(f"{where}: act is empty; give an activation name (yolo-act-swap --list) or 'keep'")
    raise SpecError(
        f"{where}: act must be a name, 'name:key=value' or a mapping with 'name', got {type(value).__name__} "
        f"{short(value)}"
    )


def check_act(value: Any, origin: Origin, path: tuple) -> ActSpec:
    """Validate one activation choice (name, dict, ``name:k=v`` string or ``keep``) into an ActSpec.

    Keyword names, types and ranges are checked from the activation's signature and bounds first; only then is one
    probe module built (at ``PROBE_CHANNELS`` channels, or as many as a reduction asks for) for the factory's own
    checks, so a bad value never allocates anything.
    """
    where = origin(path)
    parsed = _act_name_kwargs(value, where)
    if parsed is None:
        return ActSpec(KEEP)
    name, kwargs = parsed
    mapping = isinstance(value, dict)
    try:
        info = get_activation_info(name)
    except UnknownActivation as e:
        raise UnknownActivation(f"{origin((*path, 'name')) if mapping else where}: {e}") from None
    kwargs = {k: _number(v) if isinstance(info.defaults.get(k), float) else v for k, v in kwargs.items()}
    for k, v in kwargs.items():  # one at a time, so that a mapping's error names the line of that key
        try:
            check_kwargs(info, {k: v})
        except ActivationArgError as e:
            raise ActivationArgError(f"{origin((*path, k)) if mapping else where}: {e}") from None
    try:
        create_activation(info.name, max(PROBE_CHANNELS, min_channels(info, kwargs)), **kwargs)
    except ActivationArgError as e:
        raise ActivationArgError(f"{where}: {e}") from None
    return ActSpec(info.name, dict(kwargs))


def _number(value: Any) -> Any:
    """``1e-3`` read as text by YAML 1.1 becomes the float it spells; anything else is returned as it is."""
    return float(value) if isinstance(value, str) and len(value) < 40 and _EXP_FLOAT.match(value.strip()) else value


def _as_list(value: Any) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _layers(value: Any, where: str) -> tuple:
    hint = "use an index (3, -1), a range ('0-50') or a list ([0, 3, '5-9'])"
    items = []
    for v in _as_list(value):
        if isinstance(v, bool) or not isinstance(v, (int, str)):
            raise SpecError(f"{where}: layers: {short(v)} is not a layer index or range; {hint}")
        if isinstance(v, int):
            if abs(v) > MAX_LAYER:
                raise SpecError(f"{where}: layers: {short(v)} is not a layer of any model; {hint}")
            items.append(v)
            continue
        m, i = (_RANGE.match(v), _INDEX.match(v)) if len(v) <= 30 else (None, None)
        if m:
            a, b = int(m.group(1)), int(m.group(2))
            if a > b:
                raise SpecError(f"{where}: layers: range {short(v)} runs backwards; write it as '{b}-{a}'")
            items.append((a, b))
        elif i:
            items.append(int(i.group(1)))
        else:
            raise SpecError(f"{where}: layers: {short(v)} is not a layer index or range; {hint}")
    if not items:
        raise SpecError(f"{where}: layers is empty; {hint}")
    return tuple(items)


def _strings(value: Any, key: str, where: str, ident: bool = False) -> tuple:
    example = "[Conv, RepConv]" if ident else "'model.2.*'"
    items = _as_list(value)
    if not items:
        raise SpecError(f"{where}: {key} is empty; give one or more, e.g. {example}")
    for v in items:
        if not isinstance(v, str) or not v.strip():
            raise SpecError(f"{where}: {key}: {short(v)} is not a string; give one or more, e.g. {example}")
        if ident and not _IDENT.match(v.strip()):
            raise SpecError(f"{where}: {key}: {short(v)} is not a class name; give class names, e.g. {example}")
    return tuple(v.strip() for v in items)


def _stages(value: Any, where: str) -> tuple:
    items = _strings(value, "stages", where)
    bad = [v for v in items if v.lower() not in STAGES]
    if bad:
        raise SpecError(f"{where}: stages: unknown stage {short(bad[0])}; valid stages: {', '.join(STAGES)}")
    return tuple(v.lower() for v in items)


def _bool(value: Any, key: str, where: str) -> bool:
    if not isinstance(value, bool):
        raise SpecError(f"{where}: {key} must be true or false, got {short(value)}")
    return value


def check_rule(value: Any, origin: Origin, path: tuple) -> Rule:
    where = origin(path)
    if not isinstance(value, dict):
        raise SpecError(
            f"{where}: a rule must be a mapping with selectors (layers/stages/modules/types) and act, got "
            f"{type(value).__name__} {short(value)}"
        )
    unknown = [k for k in value if k not in RULE_KEYS]
    if unknown:
        raise SpecError(
            f"{origin((*path, unknown[0]))}: unknown rule key {short(unknown[0], 40)}; "
            f"valid keys: {', '.join(RULE_KEYS)}"
        )
    if not any(k in value for k in SELECTORS):
        raise SpecError(
            f"{where}: the rule has no selector; add layers, stages, modules or types (the top-level act covers every "
            f"block)"
        )
    if "act" not in value:
        raise SpecError(f"{where}: the rule has no act; add e.g. 'act: relu' or 'act: keep'")
    sub = lambda k: origin((*path, k))
    return Rule(
        act=check_act(value["act"], origin, (*path, "act")),
        layers=_layers(value["layers"], sub("layers")) if "layers" in value else None,
        stages=_stages(value["stages"], sub("stages")) if "stages" in value else None,
        modules=_strings(value["modules"], "modules", sub("modules")) if "modules" in value else None,
        types=_strings(value["types"], "types", sub("types"), ident=True) if "types" in value else None,
        optional=_bool(value.get("optional", False), "optional", sub("optional")),
        bare=_bool(value.get("bare", False), "bare", sub("bare")),
        source=where,
    )


def check_spec(data: Any, origin: Origin, path: tuple = ()) -> SwapSpec:
    if isinstance(data, str):  # a file or text holding only an activation
        return SwapSpec(act=check_act(data, origin, path), source=origin(path) if path else origin.name)
    if not isinstance(data, dict):
        raise SpecError(
            f"{origin(path)}: a spec must be a mapping with 'act' and/or 'rules' (or an activation name), "
            f"got {type(data).__name__}"
        )
    if "act_swap" in data and not any(k in data for k in SPEC_KEYS):  # a model YAML carrying its spec
        return check_spec(data["act_swap"], origin, (*path, "act_swap"))
    unknown = [k for k in data if k not in SPEC_KEYS]
    if unknown:
        raise SpecError(
            f"{origin((*path, unknown[0]))}: unknown key {short(unknown[0], 40)}; valid keys: {', '.join(SPEC_KEYS)}"
        )
    if "act" not in data and "rules" not in data:
        raise SpecError(f"{origin(path)}: the spec has neither 'act' nor 'rules'; add e.g. 'act: frelu'")
    act = check_act(data["act"], origin, (*path, "act")) if "act" in data else None
    rules = data.get("rules") or []
    if not isinstance(rules, list):
        raise SpecError(f"{origin((*path, 'rules'))}: rules must be a list of mappings, got {type(rules).__name__}")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise SpecError(f"{origin((*path, 'description'))}: description must be text")
    return SwapSpec(
        act=None if act is None or act.keep else act,
        rules=tuple(check_rule(r, origin, (*path, "rules", i)) for i, r in enumerate(rules)),
        description=description,
        source=origin(path) if path else origin.name,
    )
