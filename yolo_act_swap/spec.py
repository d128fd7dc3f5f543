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

YAML is read with ``yaml.SafeLoader`` only, within limits on size, nesting and alias expansion (``spec_yaml``); keyword
values are type- and range-checked before any module is built (``activations.registry.check_kwargs``). Every mistake
raises a ``SpecError`` (or ``UnknownActivation`` /
``ActivationArgError``) whose one-line message names where it came from (``file.yaml:7``, ``--act``, ``spec.rules[1]``).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from .errors import SpecError, short
from .io import YAML_SUFFIXES, configs_dir, find_config
from .spec_check import PROBE_CHANNELS, Origin, check_act, check_spec, parse_act_string, split_top
from .spec_types import KEEP, RULE_KEYS, SELECTORS, SPEC_KEYS, STAGES, ActSpec, Rule, SwapSpec
from .spec_yaml import MAX_SPEC_CHARS, display_name, load_yaml

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


# --- files -----------------------------------------------------------------------------------------------------------


def _expand(name: str | Path) -> Path:
    """``Path(name).expanduser()``; an unknown or impossible ``~user`` stays as written (and is then not found)."""
    p = Path(name)
    try:
        return p.expanduser()
    except (RuntimeError, ValueError):  # ValueError: a NUL byte in the user name
        return p


def _is_file(p: Path) -> bool:
    """``p.is_file()``, False for names the OS refuses (too long, embedded NUL) instead of an OSError."""
    try:
        return p.is_file()
    except (OSError, ValueError):
        return False


def _parse_yaml(text: str, name: str) -> tuple[Any, Origin]:
    """Bounded YAML (``spec_yaml.load_yaml``) plus an Origin that knows the line of every key."""
    data, lines = load_yaml(text, name)
    return data, Origin(display_name(name), lines)


def _read_spec_file(path: Path) -> str:
    """The text of a spec file, at most ``MAX_SPEC_CHARS`` characters of UTF-8 (read no further than that)."""
    try:
        with open(path, "rb") as f:
            raw = f.read(4 * MAX_SPEC_CHARS + 1)  # UTF-8 takes at most 4 bytes a character
    except OSError as e:
        raise SpecError(f"cannot read spec file {display_name(path)}: {e.strerror or type(e).__name__}") from None
    too_long = SpecError(
        f"{display_name(path)}: over {MAX_SPEC_CHARS} characters; a spec is small: is it the right file?"
    )
    if len(raw) > 4 * MAX_SPEC_CHARS:
        raise too_long
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SpecError(f"{display_name(path)}: not UTF-8 text (byte {e.start}); save the spec as UTF-8") from None
    if len(text) > MAX_SPEC_CHARS:
        raise too_long
    return text


def resolve_spec_file(name: str | Path) -> Path | None:
    """A spec file: a path from the current directory, else a built-in spec under ``configs/acts/`` (by name, with or
    without ``.yaml``, or as ``configs/acts/NAME.yaml``)."""
    return find_config(name, "acts")


def spec_file_or_error(name: str | Path) -> Path:
    """``resolve_spec_file`` for ``--spec``: a SpecError naming the built-in specs when nothing is found."""
    path = resolve_spec_file(name)
    if path is None:
        names = ", ".join(builtin_specs()) or "none"
        raise SpecError(
            f"spec file {short(str(name))} not found (looked in the current directory and configs/acts: {names})"
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
            raise SpecError(
                f"--act must be a string like 'frelu' or 'leaky_relu:negative_slope=0.1', got {short(act)}"
            )
        new = check_act(act, Origin("--act"), ())
        out = replace(out, act=None if new.keep else new, source=out.source or "--act")
    if out.act is None and not out.rules:
        raise SpecError(
            f"{out.source or 'spec'}: the spec swaps nothing ('act: keep' and no rules); give an activation"
        )
    return out


def _load_text_or_file(spec: str | Path) -> SwapSpec:
    text = str(spec)
    if isinstance(spec, str) and len(text) > MAX_SPEC_CHARS:
        raise SpecError(f"a spec of {len(text)} characters; a spec is at most {MAX_SPEC_CHARS}: give the spec itself")
    one_line = "\n" not in text and "\r" not in text
    if isinstance(spec, Path) or (one_line and (text.endswith(YAML_SUFFIXES) or _is_file(_expand(text)))):
        path = spec_file_or_error(text)
        data, origin = _parse_yaml(_read_spec_file(path), str(path))
        if data is None:
            raise SpecError(f"{origin.name}: the spec file is empty; add e.g. 'act: frelu'")
        return check_spec(data, origin)
    if one_line:  # an activation shorthand, or a flow mapping like "{act: frelu}"
        stripped = text.strip()
        if stripped.startswith("{"):
            data, origin = _parse_yaml(text, "<spec>")
            return check_spec(data, origin)
        return SwapSpec(act=check_act(stripped, Origin("--act"), ()), source="--act")
    data, origin = _parse_yaml(text, "<spec>")
    if data is None:
        raise SpecError("<spec>: the spec text is empty; add e.g. 'act: frelu'")
    return check_spec(data, origin)
