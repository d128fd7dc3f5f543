"""Swap specs: parse YAML / dict / ``--act`` strings into plain dataclasses. Nothing in a spec is ever evaluated.

A spec names a default activation for every activated conv block and, optionally, rules that narrow it down::

    act: frelu                          # a name, {name: ..., kwargs...}, "name:key=value,...", or keep
    rules:                              # later rules win
      - layers: 0-50                    # top-level layer indices: 3, "0-50", [0, 3, "5-9"], -1 (the last)
        act: {name: acon_c, init: silu}
      - stages: [neck, head]            # backbone / neck / head of a YOLO YAML model
        act: silu
      - modules: "model.105.*"          # globs over module paths
        act: keep                       # leave these as they are
      - types: [RepConv]                # class names of the block or of a module that contains it
        act: relu
      - types: [AIFI]
        bare: true                      # also activations outside conv blocks (never touched by default)
        optional: true                  # no error when nothing matches
        act: gelu

YAML is read with ``yaml.safe_load`` only. Every mistake raises a ``SpecError`` (or ``UnknownActivation`` /
``ActivationArgError``) whose one-line message names where it came from (``file.yaml:7``, ``--act``, ``spec.rules[1]``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from .activations.registry import create_activation, get_activation_info
from .errors import ActivationArgError, SpecError, UnknownActivation
from .io import configs_dir

KEEP = "keep"
SPEC_KEYS = ("act", "rules", "description")
RULE_KEYS = ("layers", "stages", "modules", "types", "act", "optional", "bare")
SELECTORS = ("layers", "stages", "modules", "types")
STAGES = ("backbone", "neck", "head")
PROBE_CHANNELS = 64  # channel count used to validate an activation's keywords before a model is seen

_RANGE = re.compile(r"^\s*(\d+)\s*-\s*(\d+)\s*$")
_INDEX = re.compile(r"^\s*(-?\d+)\s*$")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class ActSpec:
    """One activation choice: a canonical registry name (or ``keep``) plus its keyword arguments.

    Attributes:
        name (str): canonical registry name, or ``keep`` to leave a block's activation as it is.
        kwargs (dict): keyword arguments for ``create_activation``.
    """

    name: str
    kwargs: dict = field(default_factory=dict)

    @property
    def keep(self) -> bool:
        """True for ``keep`` (leave the block's activation as it is)."""
        return self.name == KEEP

    def create(self, channels: int | None = None):
        """A fresh activation module for a block with ``channels`` output channels."""
        return create_activation(self.name, channels, **self.kwargs)

    def to_yaml(self) -> str | dict:
        """``name`` when there are no keywords, else ``{name: ..., key: value}``."""
        return {"name": self.name, **self.kwargs} if self.kwargs else self.name

    def __str__(self) -> str:
        args = ",".join(f"{k}={v}" for k, v in self.kwargs.items())
        return f"{self.name}({args})" if args else self.name


@dataclass(frozen=True)
class Rule:
    """Selects blocks and gives them an ActSpec. All selectors given must match; a list matches if any item does.

    Attributes:
        act (ActSpec): what the selected blocks get.
        layers (tuple | None): top-level layer indices: ints (negative counts from the end) and inclusive
            ``(start, end)`` ranges.
        stages (tuple | None): ``backbone``, ``neck``, ``head`` (YOLO YAML models: the YAML's backbone list, the
            head list without its last layer, and that last, detection layer).
        modules (tuple | None): ``fnmatch`` globs over module paths (the block, its activation, or an enclosing module).
        types (tuple | None): class names of the block or of any module that contains it.
        optional (bool): matching nothing is not an error.
        bare (bool): also select activation modules outside conv blocks.
        source (str): where the rule came from, for error messages.
    """

    act: ActSpec
    layers: tuple | None = None
    stages: tuple | None = None
    modules: tuple | None = None
    types: tuple | None = None
    optional: bool = False
    bare: bool = False
    source: str = field(default="", compare=False)

    def layer_set(self, n_layers: int) -> set[int]:
        """The selected layer indices of a model with ``n_layers`` top-level layers; SpecError when out of range."""
        out = set()
        last = n_layers - 1
        for item in self.layers or ():
            if isinstance(item, tuple):
                a, b = item
                if b > last:
                    raise SpecError(
                        f"{self.source}: layer range {a}-{b} is outside the model, which has layers 0-{last}; "
                        f"use a range within 0-{last}"
                    )
                out.update(range(a, b + 1))
            else:
                i = item + n_layers if item < 0 else item
                if not 0 <= i <= last:
                    raise SpecError(
                        f"{self.source}: layer {item} is outside the model, which has layers 0-{last} "
                        f"(negative indices count from the end); use an index within that range"
                    )
                out.add(i)
        return out

    def to_dict(self) -> dict:
        """Plain-YAML form."""
        d: dict[str, Any] = {}
        if self.layers is not None:
            d["layers"] = [f"{i[0]}-{i[1]}" if isinstance(i, tuple) else i for i in self.layers]
        if self.stages is not None:
            d["stages"] = list(self.stages)
        if self.modules is not None:
            d["modules"] = list(self.modules)
        if self.types is not None:
            d["types"] = list(self.types)
        d["act"] = self.act.to_yaml()
        if self.optional:
            d["optional"] = True
        if self.bare:
            d["bare"] = True
        return d


@dataclass(frozen=True)
class SwapSpec:
    """A whole spec: a default activation for every activated conv block plus rules (later rules win).

    Attributes:
        act (ActSpec | None): the default for every activated conv block; None (``keep``) leaves them unless a rule
            selects them.
        rules (tuple[Rule, ...]): the rules, in order.
        description (str): free text, kept for the record.
        source (str): where the spec came from (file path, ``--act``, ``dict``).
    """

    act: ActSpec | None = None
    rules: tuple = ()
    description: str = ""
    source: str = field(default="", compare=False)

    def to_dict(self) -> dict:
        """Plain-YAML form, as stored under a model YAML's ``act_swap:`` key; ``load_spec`` reads it back."""
        d: dict[str, Any] = {"act": self.act.to_yaml() if self.act else KEEP}
        if self.rules:
            d["rules"] = [r.to_dict() for r in self.rules]
        if self.description:
            d["description"] = self.description
        return d

    def __str__(self) -> str:
        s = str(self.act) if self.act else KEEP
        return s + (f" + {len(self.rules)} rule{'s' * (len(self.rules) != 1)}" if self.rules else "")


# --- where things came from -------------------------------------------------------------------------------------------


class _Origin:
    """Turns a key path like ``("rules", 1, "act")`` into a location: ``file.yaml:7`` or ``spec.rules[1].act``."""

    def __init__(self, name: str, lines: dict | None = None):
        self.name, self.lines = name, lines

    def __call__(self, path: tuple = ()) -> str:
        if self.lines is None:  # a dict or an --act string: name the key path
            return self.name + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)
        for n in range(len(path), -1, -1):  # the deepest key that has a line
            if path[:n] in self.lines:
                return f"{self.name}:{self.lines[path[:n]]}"
        return self.name


def _node_lines(node, path: tuple = ()) -> dict:
    """Map key paths to 1-based line numbers from a composed (never constructed) YAML node tree."""
    lines = {path: node.start_mark.line + 1}
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            key = k.value if isinstance(k, yaml.ScalarNode) else None
            lines.update(_node_lines(v, (*path, key)))
            lines[(*path, key)] = k.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            lines.update(_node_lines(v, (*path, i)))
    return lines


def _parse_yaml(text: str, name: str) -> tuple[Any, _Origin]:
    """``yaml.safe_load`` with file:line on syntax errors, plus the line of every key for later messages."""
    try:
        data = yaml.safe_load(text)
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{name}:{mark.line + 1}:{mark.column + 1}" if mark else name
        problem = " ".join(str(getattr(e, "problem", None) or e).split())
        context = getattr(e, "context", None)
        ctx = f" ({' '.join(str(context).split())})" if context else ""
        raise SpecError(f"{where}: malformed YAML: {problem}{ctx}; fix the YAML syntax there") from None
    return data, _Origin(name, _node_lines(node) if node is not None else {})


# --- activations ------------------------------------------------------------------------------------------------------


def _split_top(s: str, sep: str) -> list[str]:
    """Split on ``sep`` outside brackets and quotes."""
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
    """Split ``leaky_relu:negative_slope=0.1,inplace=false`` into a name and keywords (values via yaml.safe_load)."""
    name, _, rest = s.strip().partition(":")
    name = name.strip()
    if not name:
        raise SpecError(f"{where}: empty activation in {s!r}; use NAME or NAME:key=value[,key=value]")
    kwargs = {}
    if rest.strip():
        for item in _split_top(rest, ","):
            key, eq, value = item.partition("=")
            key = key.strip()
            if not eq or not _IDENT.match(key):
                raise SpecError(
                    f"{where}: cannot read {item.strip()!r} in {s!r}; use NAME:key=value[,key=value], "
                    f"e.g. leaky_relu:negative_slope=0.1"
                )
            try:
                kwargs[key] = yaml.safe_load(value.strip()) if value.strip() else None
            except yaml.YAMLError:
                raise SpecError(f"{where}: cannot read the value of {key!r} in {s!r}; quote it or fix it") from None
    return name, kwargs


def _act(value: Any, origin: _Origin, path: tuple) -> ActSpec:
    """Validate one activation choice (name, dict, ``name:k=v`` string or ``keep``) into an ActSpec."""
    where = origin(path)
    if isinstance(value, str):
        if value.strip().lower() == KEEP:
            return ActSpec(KEEP)
        name, kwargs = parse_act_string(value, where)
    elif isinstance(value, dict):
        if "name" not in value:
            raise SpecError(f"{where}: an activation mapping needs a 'name' key, e.g. {{name: acon_c, init: silu}}")
        kwargs = {k: v for k, v in value.items() if k != "name"}
        name = value["name"]
        bad = [k for k in kwargs if not isinstance(k, str)]
        if not isinstance(name, str) or bad:
            raise SpecError(f"{where}: activation name and keywords must be strings, got {value!r}")
        if name.strip().lower() == KEEP:
            if kwargs:
                raise SpecError(f"{where}: 'keep' takes no keywords; remove {', '.join(map(repr, kwargs))}")
            return ActSpec(KEEP)
    elif value is None:
        raise SpecError(f"{where}: act is empty; give an activation name (yolo-act-swap --list) or 'keep'")
    else:
        raise SpecError(
            f"{where}: act must be a name, 'name:key=value' or a mapping with 'name', "
            f"got {type(value).__name__} {value!r}"
        )
    try:
        info = get_activation_info(name)
    except UnknownActivation as e:
        raise UnknownActivation(f"{origin((*path, 'name')) if isinstance(value, dict) else where}: {e}") from None
    bad = [k for k in kwargs if k not in info.kwargs]
    if bad and isinstance(value, dict):
        where = origin((*path, bad[0]))
    try:
        create_activation(info.name, PROBE_CHANNELS, **kwargs)  # validates keywords and their values now
    except ActivationArgError as e:
        raise ActivationArgError(f"{where}: {e}") from None
    return ActSpec(info.name, dict(kwargs))


# --- rules ------------------------------------------------------------------------------------------------------------


def _as_list(value: Any) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _layers(value: Any, where: str) -> tuple:
    hint = "use an index (3, -1), a range ('0-50') or a list ([0, 3, '5-9'])"
    items = []
    for v in _as_list(value):
        if isinstance(v, bool) or not isinstance(v, (int, str)):
            raise SpecError(f"{where}: layers: {v!r} is not a layer index or range; {hint}")
        if isinstance(v, int):
            items.append(v)
            continue
        m, i = _RANGE.match(v), _INDEX.match(v)
        if m:
            a, b = int(m.group(1)), int(m.group(2))
            if a > b:
                raise SpecError(f"{where}: layers: range {v!r} runs backwards; write it as '{b}-{a}'")
            items.append((a, b))
        elif i:
            items.append(int(i.group(1)))
        else:
            raise SpecError(f"{where}: layers: {v!r} is not a layer index or range; {hint}")
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
            raise SpecError(f"{where}: {key}: {v!r} is not a string; give one or more, e.g. {example}")
        if ident and not _IDENT.match(v.strip()):
            raise SpecError(f"{where}: {key}: {v!r} is not a class name; give class names, e.g. {example}")
    return tuple(v.strip() for v in items)


def _stages(value: Any, where: str) -> tuple:
    items = _strings(value, "stages", where)
    bad = [v for v in items if v.lower() not in STAGES]
    if bad:
        raise SpecError(f"{where}: stages: unknown stage {bad[0]!r}; valid stages: {', '.join(STAGES)}")
    return tuple(v.lower() for v in items)


def _bool(value: Any, key: str, where: str) -> bool:
    if not isinstance(value, bool):
        raise SpecError(f"{where}: {key} must be true or false, got {value!r}")
    return value


def _rule(value: Any, origin: _Origin, path: tuple) -> Rule:
    where = origin(path)
    if not isinstance(value, dict):
        raise SpecError(
            f"{where}: a rule must be a mapping with selectors (layers/stages/modules/types) and act, got {value!r}"
        )
    unknown = [k for k in value if k not in RULE_KEYS]
    if unknown:
        raise SpecError(
            f"{origin((*path, unknown[0]))}: unknown rule key {unknown[0]!r}; valid keys: {', '.join(RULE_KEYS)}"
        )
    if not any(k in value for k in SELECTORS):
        raise SpecError(
            f"{where}: the rule has no selector; add layers, stages, modules or types (the top-level act covers every "
            f"block)"
        )
    if "act" not in value:
        raise SpecError(f"{where}: the rule has no act; add e.g. 'act: relu' or 'act: keep'")
    sub = lambda k: origin((*path, k))  # noqa: E731
    return Rule(
        act=_act(value["act"], origin, (*path, "act")),
        layers=_layers(value["layers"], sub("layers")) if "layers" in value else None,
        stages=_stages(value["stages"], sub("stages")) if "stages" in value else None,
        modules=_strings(value["modules"], "modules", sub("modules")) if "modules" in value else None,
        types=_strings(value["types"], "types", sub("types"), ident=True) if "types" in value else None,
        optional=_bool(value.get("optional", False), "optional", sub("optional")),
        bare=_bool(value.get("bare", False), "bare", sub("bare")),
        source=where,
    )


def _spec(data: Any, origin: _Origin, path: tuple = ()) -> SwapSpec:
    if isinstance(data, str):  # a file or text holding only an activation
        return SwapSpec(act=_act(data, origin, path), source=origin(path) if path else origin.name)
    if not isinstance(data, dict):
        raise SpecError(
            f"{origin(path)}: a spec must be a mapping with 'act' and/or 'rules' (or an activation name), "
            f"got {type(data).__name__}"
        )
    if "act_swap" in data and not any(k in data for k in SPEC_KEYS):  # a model YAML carrying its spec
        return _spec(data["act_swap"], origin, (*path, "act_swap"))
    unknown = [k for k in data if k not in SPEC_KEYS]
    if unknown:
        raise SpecError(
            f"{origin((*path, unknown[0]))}: unknown key {unknown[0]!r}; valid keys: {', '.join(SPEC_KEYS)}"
        )
    if "act" not in data and "rules" not in data:
        raise SpecError(f"{origin(path)}: the spec has neither 'act' nor 'rules'; add e.g. 'act: frelu'")
    act = _act(data["act"], origin, (*path, "act")) if "act" in data else None
    rules = data.get("rules") or []
    if not isinstance(rules, list):
        raise SpecError(f"{origin((*path, 'rules'))}: rules must be a list of mappings, got {type(rules).__name__}")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise SpecError(f"{origin((*path, 'description'))}: description must be text")
    return SwapSpec(
        act=None if act is None or act.keep else act,
        rules=tuple(_rule(r, origin, (*path, "rules", i)) for i, r in enumerate(rules)),
        description=description,
        source=origin(path) if path else origin.name,
    )


def resolve_spec_file(name: str | Path) -> Path | None:
    """A spec file: an existing path, or a name under the built-in ``configs/acts/`` (with or without ``.yaml``)."""
    p = Path(name).expanduser()
    if p.is_file():
        return p
    if len(p.parts) == 1:
        for cand in (p.name, f"{p.name}.yaml", f"{p.name}.yml"):
            q = configs_dir() / "acts" / cand
            if q.is_file():
                return q
    return None


def spec_file_or_error(name: str | Path) -> Path:
    """``resolve_spec_file`` for ``--spec``: a SpecError naming the built-in specs when nothing is found."""
    path = resolve_spec_file(name)
    if path is None:
        names = ", ".join(builtin_specs()) or "none"
        raise SpecError(
            f"spec file {str(name)!r} not found (looked in the current directory and configs/acts: {names})"
        )
    return path


def builtin_specs() -> list[str]:
    """Names of the example specs under ``configs/acts/``."""
    return sorted(p.stem for p in (configs_dir() / "acts").glob("*.yaml"))


def load_spec(spec: Any = None, *, act: str | None = None) -> SwapSpec:
    """Parse and validate a swap spec.

    Args:
        spec (str | Path | dict | SwapSpec | None): a YAML file (a path, or a ``.yaml`` name under ``configs/acts/``
            such as ``backbone-frelu-head-silu.yaml``), YAML text, an activation shorthand (``frelu``,
            ``acon_c:init=silu``: a one-line string that is not a file), a dict, or a SwapSpec.
        act (str, optional): the ``--act`` shorthand; it replaces the spec's default ``act`` (rules stay).

    Returns:
        (SwapSpec): the validated spec.

    Raises:
        SpecError: with a one-line message naming file:line (or the key path) and the fix.

    Examples:
        >>> load_spec(act="leaky_relu:negative_slope=0.1")
        >>> load_spec("backbone-frelu-head-silu.yaml")
        >>> load_spec({"act": "frelu", "rules": [{"layers": "0-9", "act": "keep"}]})
    """
    if spec is None and act is None:
        raise SpecError("no activation given: pass an activation name (--act frelu) or a spec file (--spec FILE)")
    if spec is None:
        out = SwapSpec()
    elif isinstance(spec, SwapSpec):
        out = spec
    elif isinstance(spec, dict):
        out = _spec(spec, _Origin("spec"))
    elif isinstance(spec, (str, Path)):
        out = _load_text_or_file(spec)
    elif isinstance(spec, (list, tuple)):
        raise SpecError(
            f"a spec is one mapping, got a list of {len(spec)}; a list (as in a model YAML's act_swap) is a chain of "
            f"specs: pass it to patch_model, which applies them in order"
        )
    else:
        raise SpecError(f"cannot read a spec from {type(spec).__name__}; give a YAML path, YAML text, a dict or a name")
    if act is not None:
        if not isinstance(act, str):
            raise SpecError(f"--act must be a string like 'frelu' or 'leaky_relu:negative_slope=0.1', got {act!r}")
        new = _act(act, _Origin("--act"), ())
        out = replace(out, act=None if new.keep else new, source=out.source or "--act")
    if out.act is None and not out.rules:
        raise SpecError(
            f"{out.source or 'spec'}: the spec swaps nothing ('act: keep' and no rules); give an activation"
        )
    return out


def _load_text_or_file(spec: str | Path) -> SwapSpec:
    text = str(spec)
    is_pathish = isinstance(spec, Path) or (
        "\n" not in text and (text.endswith((".yaml", ".yml")) or Path(text).expanduser().is_file())
    )
    if is_pathish:
        path = spec_file_or_error(text)
        try:
            body = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise SpecError(f"cannot read spec file {path}: {e}") from None
        data, origin = _parse_yaml(body, str(path))
        if data is None:
            raise SpecError(f"{path}: the spec file is empty; add e.g. 'act: frelu'")
        return _spec(data, origin)
    if "\n" not in text:  # one line: an activation shorthand, or a flow mapping like "{act: frelu}"
        stripped = text.strip()
        if stripped.startswith("{"):
            data, origin = _parse_yaml(text, "<spec>")
            return _spec(data, origin)
        return SwapSpec(act=_act(stripped, _Origin("--act"), ()), source="--act")
    data, origin = _parse_yaml(text, "<spec>")
    if data is None:
        raise SpecError("<spec>: the spec text is empty; add e.g. 'act: frelu'")
    return _spec(data, origin)
