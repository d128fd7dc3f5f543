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

from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from .errors import SpecError
from .io import YAML_SUFFIXES, configs_dir, parse_yaml
from .spec_check import PROBE_CHANNELS, Origin, check_act, check_spec, parse_act_string, split_top
from .spec_types import KEEP, RULE_KEYS, SELECTORS, SPEC_KEYS, STAGES, ActSpec, Rule, SwapSpec

__all__ = (
    "KEEP",
    "PROBE_CHANNELS",
    "RULE_KEYS",
    "SELECTORS",
    "SPEC_KEYS",
    "STAGES",
    "ActSpec",
    "Rule",
    "SwapSpec",
    "builtin_specs",
    "load_spec",
    "parse_act_string",
    "resolve_spec_file",
    "spec_file_or_error",
    "split_top",
)


# --- YAML with the line of every key ----------------------------------------------------------------------------------


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


def _parse_yaml(text: str, name: str) -> tuple[Any, Origin]:
    """``yaml.safe_load`` with file:line on syntax errors (``io.parse_yaml``), plus the line of every key."""
    data = parse_yaml(text, name, SpecError)
    node = yaml.compose(text, Loader=yaml.SafeLoader)
    return data, Origin(name, _node_lines(node) if node is not None else {})


# --- files and entry point --------------------------------------------------------------------------------------------


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
        out = check_spec(spec, Origin("spec"))
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
        new = check_act(act, Origin("--act"), ())
        out = replace(out, act=None if new.keep else new, source=out.source or "--act")
    if out.act is None and not out.rules:
        raise SpecError(
            f"{out.source or 'spec'}: the spec swaps nothing ('act: keep' and no rules); give an activation"
        )
    return out


def _load_text_or_file(spec: str | Path) -> SwapSpec:
    text = str(spec)
    is_pathish = isinstance(spec, Path) or (
        "\n" not in text and (text.endswith(YAML_SUFFIXES) or Path(text).expanduser().is_file())
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
        return check_spec(data, origin)
    if "\n" not in text:  # one line: an activation shorthand, or a flow mapping like "{act: frelu}"
        stripped = text.strip()
        if stripped.startswith("{"):
            data, origin = _parse_yaml(text, "<spec>")
            return check_spec(data, origin)
        return SwapSpec(act=check_act(stripped, Origin("--act"), ()), source="--act")
    data, origin = _parse_yaml(text, "<spec>")
    if data is None:
        raise SpecError("<spec>: the spec text is empty; add e.g. 'act: frelu'")
    return check_spec(data, origin)
