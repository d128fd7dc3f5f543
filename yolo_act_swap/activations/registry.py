"""The activation registry: names and aliases to factories ``(channels, **kwargs) -> nn.Module``.

Every entry records the facts the patcher and the trainer need: whether the activation needs the block's channel
count, whether it keeps the input shape, whether it exports to ONNX and whether it can start exactly as SiLU.
"""

from __future__ import annotations

import difflib
import inspect
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch.nn as nn

from ..errors import ActivationArgError, UnknownActivation, short
from ..tables import format_table
from .keywords import check_values
from .keywords import min_channels as _min_channels

ACT_TAG = "_yas_act"  # attribute set on every module made by create_activation(): the registry name
MAX_NAME = 64  # names longer than this are not looked up by similarity


@dataclass(frozen=True)
class ActivationInfo:
    """One registry entry.

    Attributes:
        name (str): canonical snake_case name.
        factory (Callable): ``factory(channels, **kwargs) -> nn.Module``, a fresh module on every call.
        kind (str): ``pointwise``, ``channel`` (over the channel dim: softmax & co), ``export`` (plain-op variants),
            or ``channel-aware`` (learned per-channel parameters).
        channel_aware (bool): needs the block's channel count.
        shape_preserving (bool): output shape equals input shape (False for glu).
        onnx_exportable (bool): exports to ONNX with torch.onnx.
        silu_init (bool): accepts ``init="silu"`` and then equals x*sigmoid(x) exactly.
        aliases (tuple[str, ...]): other accepted names.
        description (str): one line for ``--list``.
        kwargs (tuple[str, ...]): the keyword arguments the factory takes (derived from its signature).
        defaults (dict): keyword -> default value from the signature; a bool, int, float or str default fixes the
            type a given value must have (see ``check_kwargs``).
        bounds (dict): keyword -> ``Bounds`` for numeric keywords.
    """

    name: str
    factory: Callable[..., nn.Module]
    kind: str = "pointwise"
    channel_aware: bool = False
    shape_preserving: bool = True
    onnx_exportable: bool = True
    silu_init: bool = False
    aliases: tuple = ()
    description: str = ""
    kwargs: tuple = field(default=())
    defaults: dict = field(default_factory=dict, compare=False)
    bounds: dict = field(default_factory=dict, compare=False)

    def params_per_channel(self, channels: int = 64, **kwargs) -> float:
        """Parameters this activation adds per channel of a block with ``channels`` channels (measured, not guessed)."""
        m = self.factory(channels, **kwargs)
        return sum(p.numel() for p in m.parameters()) / channels


_REGISTRY: dict[str, ActivationInfo] = {}
_ALIASES: dict[str, str] = {}


def normalize_name(name: str) -> str:
    """Case-insensitive, ``-`` and ``_`` interchangeable: ``Hard-Swish`` -> ``hard_swish``."""
    return str(name).strip().lower().replace("-", "_")


def _factory_params(factory: Callable) -> dict:
    """Keyword -> default (``inspect.Parameter.empty`` when it has none) from the factory's signature."""
    params = list(inspect.signature(factory).parameters.values())[1:]  # first is channels
    if any(p.kind is p.VAR_KEYWORD for p in params):
        raise TypeError(f"activation factory {factory!r} must list its keywords explicitly, not take **kwargs")
    return {p.name: p.default for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def register_activation(
    name: str,
    factory: Callable[..., nn.Module],
    *,
    kind: str = "pointwise",
    channel_aware: bool = False,
    shape_preserving: bool = True,
    onnx_exportable: bool = True,
    silu_init: bool = False,
    aliases: tuple | list = (),
    description: str = "",
    bounds: dict | None = None,
    overwrite: bool = False,
) -> ActivationInfo:
    """Add an activation to the registry.

    Args:
        name (str): snake_case name; matched case-insensitively.
        factory (Callable): ``factory(channels, **kwargs) -> nn.Module`` returning a fresh module on every call. Its
            keywords must be explicit (no ``**kwargs``) so that a wrong keyword can be reported with the valid ones.
        kind, channel_aware, shape_preserving, onnx_exportable, silu_init, description: see ``ActivationInfo``.
        aliases (tuple[str, ...]): other names for the same entry.
        bounds (dict, optional): keyword -> ``Bounds``, the accepted range of a numeric keyword.
        overwrite (bool): replace an existing entry of the same name instead of raising.

    Returns:
        (ActivationInfo): the new entry.

    Examples:
        >>> register_activation("my_act", lambda channels, alpha=1.0: MyAct(alpha), description="mine")
    """
    key = normalize_name(name)
    keys = [key, *(normalize_name(a) for a in aliases)]
    params = _factory_params(factory)
    unknown = [k for k in bounds or {} if k not in params]
    if unknown:
        raise TypeError(f"bounds for {', '.join(unknown)}: the factory of {key!r} takes no such keyword")
    if not overwrite:
        for k in keys:
            if k in _REGISTRY or k in _ALIASES:
                raise ValueError(f"activation name {k!r} is already registered; pass overwrite=True to replace it")
    info = ActivationInfo(
        name=key,
        factory=factory,
        kind=kind,
        channel_aware=channel_aware,
        shape_preserving=shape_preserving,
        onnx_exportable=onnx_exportable,
        silu_init=silu_init,
        aliases=tuple(normalize_name(a) for a in aliases),
        description=description,
        kwargs=tuple(params),
        defaults={k: v for k, v in params.items() if v is not inspect.Parameter.empty},
        bounds=dict(bounds or {}),
    )
    _REGISTRY[key] = info
    for a in info.aliases:
        _ALIASES[a] = key
    return info


def _remove(key: str) -> None:
    """Drop the entry ``key`` and every alias that points at it."""
    _REGISTRY.pop(key, None)
    for alias in [a for a, target in _ALIASES.items() if target == key]:
        del _ALIASES[alias]


def unregister_activation(name: str) -> ActivationInfo:
    """Remove an activation, and all its aliases, from the registry.

    Args:
        name (str): the registry name or one of its aliases, case-insensitive.

    Returns:
        (ActivationInfo): the removed entry.

    Raises:
        UnknownActivation: the name is not registered.
    """
    info = get_activation_info(name)
    _remove(info.name)
    return info


@contextmanager
def temporary_activation(name: str, factory: Callable[..., nn.Module], **options) -> Iterator[ActivationInfo]:
    """Register an activation for the duration of a ``with`` block (tests, experiments).

    On exit the entry and its aliases are removed, and whatever those names meant before (an entry replaced with
    ``overwrite=True``, an alias taken over) is restored.

    Args:
        name (str), factory (Callable), **options: as for ``register_activation``.

    Yields:
        (ActivationInfo): the new entry.

    Examples:
        >>> with temporary_activation("my_act", lambda channels: MyAct()) as info:
        ...     patch_model(model, "my_act")
    """
    keys = {normalize_name(name), *(normalize_name(a) for a in options.get("aliases", ()))}
    saved_entries = {k: _REGISTRY[k] for k in keys if k in _REGISTRY}
    saved_aliases = {a: t for a, t in _ALIASES.items() if a in keys or t in keys}
    info = register_activation(name, factory, **options)
    try:
        yield info
    finally:
        _remove(info.name)
        _REGISTRY.update(saved_entries)
        _ALIASES.update(saved_aliases)


def all_names(include_aliases: bool = True) -> list[str]:
    """Every registered name (and alias)."""
    return sorted(_REGISTRY) + (sorted(_ALIASES) if include_aliases else [])


def get_activation_info(name: str) -> ActivationInfo:
    """Look a name or alias up; raise ``UnknownActivation`` with the closest names otherwise."""
    if isinstance(name, ActivationInfo):
        return name
    key = normalize_name(name)
    key = _ALIASES.get(key, key)
    if key in _REGISTRY:
        return _REGISTRY[key]
    close = difflib.get_close_matches(key, all_names(), n=3, cutoff=0.6) if len(key) <= MAX_NAME else []
    hint = f"did you mean {', '.join(repr(c) for c in close)}?" if close else "run 'yolo-act-swap --list' for all names"
    raise UnknownActivation(f"unknown activation {short(name)}: {hint}")


def list_activations() -> list[ActivationInfo]:
    """All registry entries, sorted by kind then name."""
    order = {"pointwise": 0, "channel": 1, "export": 2, "channel-aware": 3}
    return sorted(_REGISTRY.values(), key=lambda i: (order.get(i.kind, 9), i.name))


def create_activation(name: str, channels: int | None = None, /, **kwargs) -> nn.Module:
    """Build a fresh activation module for a block with ``channels`` output channels.

    Args:
        name (str): registry name or alias, case-insensitive.
        channels (int, optional): the block's channel count; required by channel-aware activations.
        **kwargs: the activation's own keywords, checked by ``check_kwargs`` before the factory runs.

    Returns:
        (nn.Module): a new module, tagged with its registry name (``module._yas_act``).

    Raises:
        UnknownActivation: the name is not registered.
        ActivationArgError: a keyword is not accepted, or its value is rejected.
    """
    info = get_activation_info(name)
    if info.channel_aware and (channels is None or int(channels) < 1):
        raise ActivationArgError(f"activation {info.name!r} is channel-aware and needs the block's channel count")
    check_values(info, kwargs, int(channels) if channels is not None else None)
    try:
        module = info.factory(int(channels) if channels is not None else None, **kwargs)
    except (TypeError, ValueError) as e:
        raise ActivationArgError(f"activation {info.name!r}: {_capped(e)}") from e
    setattr(module, ACT_TAG, info.name)
    return module


def check_kwargs(name: str, kwargs: dict, channels: int | None = None) -> ActivationInfo:
    """Check keyword names, types and ranges of an activation without building it (``keywords.check_values``).

    Returns the registry entry; raises ``UnknownActivation`` or ``ActivationArgError``.
    """
    info = get_activation_info(name)
    check_values(info, kwargs, channels)
    return info


def min_channels(name: str, kwargs: dict) -> int:
    """The fewest channels a block may have for these keywords (the largest at-most-channels value, else 1)."""
    return _min_channels(get_activation_info(name), kwargs)


def _capped(e: Exception, limit: int = 200) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def is_activation_module(module: nn.Module) -> bool:
    """True for modules created by ``create_activation`` (the patcher's swaps)."""
    return isinstance(getattr(module, ACT_TAG, None), str)


def fuse_activations(model: nn.Module) -> int:
    """Fold what can be folded inside swapped-in activations (e.g. FReLU's BatchNorm into its depthwise conv).

    Calls ``fuse()`` on every activation module that has one; idempotent. Returns how many modules were fused.
    """
    n = 0
    for m in model.modules():
        if is_activation_module(m) and callable(getattr(m, "fuse", None)):
            m.fuse()
            n += 1
    return n


def _table_row(info: ActivationInfo) -> tuple:
    try:
        ppc = f"{info.params_per_channel(64):g}"
    except Exception:  # noqa: BLE001 - a user factory that cannot build at 64 channels still lists
        ppc = "?"
    return (
        info.name,
        info.kind,
        "yes" if info.channel_aware else "-",
        ppc,
        "keeps" if info.shape_preserving else "CHANGES",
        "yes" if info.onnx_exportable else "no",
        "yes" if info.silu_init else "-",
        ",".join(info.aliases),
        info.description,
    )


def activation_table() -> str:
    """The registry as a fixed-width text table (``yolo-act-swap --list``)."""
    head = ("name", "kind", "ch-aware", "params/ch@64", "shape", "onnx", "init=silu", "aliases", "description")
    lines = format_table(head, [_table_row(i) for i in list_activations()])
    # the rule spans the header only: the free-text description column runs on past it (as the README shows)
    lines[1] = "-" * len(lines[0])
    return "\n".join(lines)
