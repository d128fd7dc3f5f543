"""Swap specs as data: ``ActSpec`` (one activation choice), ``Rule`` (selectors + an ActSpec) and ``SwapSpec``.

These are plain frozen dataclasses; ``yolo_act_swap.spec`` builds them from YAML, dicts and ``--act`` strings
(validated by ``spec_check``) and re-exports them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .activations.registry import create_activation
from .errors import SpecError

KEEP = "keep"
SPEC_KEYS = ("act", "rules", "description")
RULE_KEYS = ("layers", "stages", "modules", "types", "act", "optional", "bare")
SELECTORS = ("layers", "stages", "modules", "types")
STAGES = ("backbone", "neck", "head")


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
