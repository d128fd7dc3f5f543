"""Swap specs: parse YAML / dict / ``--act`` strings into plain dataclasses. Nothing in a spec is ever evaluated.

(Stub: the patcher work fills this in.)
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ActSpec:
    """One activation choice: a registry name (or ``keep``) plus its keyword arguments."""

    name: str
    kwargs: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Rule:
    """Selects blocks (by top-level layer indices, module-path globs, block type names) and gives them an ActSpec."""

    act: ActSpec
    layers: tuple | None = None
    modules: tuple | None = None
    types: tuple | None = None
    source: str = ""


@dataclass(frozen=True)
class SwapSpec:
    """A whole spec: a default activation for every activated conv block plus rules (later rules win)."""

    act: ActSpec | None = None
    rules: tuple = ()
    source: str = ""

    def to_dict(self) -> dict:
        """Plain-YAML form, as stored under a model YAML's ``act_swap:`` key."""
        raise NotImplementedError


def load_spec(spec=None, *, act: str | None = None) -> SwapSpec:
    """Parse a spec from a YAML path, a YAML string, a dict, a SwapSpec, or the ``--act`` shorthand."""
    raise NotImplementedError
