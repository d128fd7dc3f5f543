"""The activation registry: names and aliases to factories ``(channels, **kwargs) -> nn.Module``.

Every entry records the facts the patcher and the trainer need: whether the activation needs the block's channel
count, whether it keeps the input shape, whether it exports to ONNX and whether it can start exactly as SiLU.
"""

from __future__ import annotations

import difflib
import inspect
import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch.nn as nn

from ..errors import ActivationArgError, UnknownActivation, short
from ..tables import format_table

ACT_TAG = "_yas_act"  # attribute set on every module made by create_activation(): the registry name
FLOAT32_MAX = 3.4028234663852886e38  # a keyword that becomes a float32 parameter or constant must fit in one
FLOAT32_TINY = 1.1754943508222875e-38  # smallest normal float32: a nonzero value below it rounds to 0 (or a subnormal)
MAX_STR = 64  # the longest text keyword value (init names and the like)
MAX_NAME = 64  # names longer than this are not looked up by similarity


@dataclass(frozen=True)
class Bounds:
    """The accepted range of one numeric keyword, checked before the factory runs (so nothing is allocated for it).

    Attributes:
        min, max (float, optional): inclusive limits.
        odd (bool): an odd integer (kernel sizes).
        at_most_channels (bool): at most the block's channel count (reductions); ``max`` still caps it when the
            channel count is not known yet.
        min_abs (float, optional): a nonzero value must be at least this far from 0 (scales that are divided by).
    """

    min: float | None = None
    max: float | None = None
    odd: bool = False
    at_most_channels: bool = False
    min_abs: float | None = None

    def describe(self) -> str:
        """``an odd integer in 1..31``-style text for messages."""
        lo = "" if self.min is None else f"{self.min:g}"
        hi = "" if self.max is None else f"{self.max:g}"
        text = f"in {lo}..{hi}" if lo and hi else f">= {lo}" if lo else f"<= {hi}" if hi else ""
        if self.at_most_channels:
            text += (" and " if text else "") + "at most the block's channel count"
        if self.min_abs is not None:
            text += (", " if text else "") + f"0 or at least {self.min_abs:g} in size"
        return ("odd and " if self.odd else "") + text


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


def _type_error(key: str, default, value) -> str | None:
    """Why ``value`` has the wrong type for a keyword whose default is ``default`` (None when the type is right)."""
    if isinstance(default, bool):
        text = isinstance(value, str) and value.strip().lower() in _BOOL_TEXT
        return None if isinstance(value, bool) or text else f"{key} must be true or false, got {short(value)}"
    if isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
        return None if ok else f"{key} must be an integer, got {type(value).__name__} {short(value)}"
    if isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return None if ok else f"{key} must be a number, got {type(value).__name__} {short(value)}"
    if isinstance(default, str):
        if not isinstance(value, str):
            return f"{key} must be text, got {type(value).__name__} {short(value)}"
        return None if len(value) <= MAX_STR else f"{key} is {len(value)} characters long; at most {MAX_STR}"
    return None  # no default, or None: the factory checks the value itself


_BOOL_TEXT = ("true", "false", "yes", "no", "on", "off")


def _range_error(key: str, value, is_float: bool, bound: Bounds | None, channels: int | None) -> str | None:
    """Why the number ``value`` is out of range for ``key`` (None when it is fine)."""
    try:
        v = float(value)
    except OverflowError:  # an int too large for a float
        v = math.inf
    if is_float and not (math.isfinite(v) and abs(v) <= FLOAT32_MAX):
        kind = "is not finite" if isinstance(value, float) and not math.isfinite(value) else "does not fit in float32"
        return f"{key}={short(value)} {kind}; give a finite number"
    if is_float and v != 0 and abs(v) < FLOAT32_TINY:
        return f"{key}={short(value)} rounds to 0 in float32; use 0 or a larger value"
    if bound is None:
        return None
    hi = bound.max
    if bound.at_most_channels and channels is not None:
        hi = channels if hi is None else min(hi, channels)
    bad = (
        (bound.min is not None and v < bound.min)
        or (hi is not None and v > hi)
        or (bound.odd and not (v.is_integer() and int(v) % 2 == 1))
        or (bound.min_abs is not None and v != 0 and abs(v) < bound.min_abs)
    )
    if not bad:
        return None
    where = f" (the block has {channels} channels)" if bound.at_most_channels and channels is not None else ""
    return f"{key} must be {bound.describe()}, got {short(value)}{where}"


def check_kwargs(name: str, kwargs: dict, channels: int | None = None) -> ActivationInfo:
    """Check keyword names, types and ranges against the factory's signature and bounds, without building anything.

    A keyword whose default is a bool, int, float or str must be given a value of that type (an int for a float is
    fine, text ``true``/``false``/``yes``/``no``/``on``/``off`` for a bool); nothing is coerced. Floats must be finite
    and fit float32; ``Bounds`` add ranges. ``channels=None`` (not known yet) skips the at-most-channels limit.

    Returns:
        (ActivationInfo): the entry.

    Raises:
        UnknownActivation: the name is not registered.
        ActivationArgError: a keyword is not accepted, or its value is rejected.
    """
    info = get_activation_info(name)
    bad = [k for k in kwargs if k not in info.kwargs]
    if bad:
        valid = ", ".join(info.kwargs) if info.kwargs else "none"
        named = ", ".join(short(b, 40) for b in bad[:3]) + (" ..." if len(bad) > 3 else "")
        raise ActivationArgError(f"activation {info.name!r} takes no keyword {named}; valid keywords: {valid}")
    for key, value in kwargs.items():
        default = info.defaults.get(key)
        problem = _type_error(key, default, value)
        is_float = isinstance(default, float) or isinstance(value, float)
        if problem is None and isinstance(value, (int, float)) and not isinstance(value, bool):
            if is_float or key in info.bounds:
                problem = _range_error(key, value, is_float, info.bounds.get(key), channels)
        if problem:
            raise ActivationArgError(f"activation {info.name!r}: {problem}")
    return info


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
    check_kwargs(info, kwargs, int(channels) if channels is not None else None)
    try:
        module = info.factory(int(channels) if channels is not None else None, **kwargs)
    except (TypeError, ValueError) as e:
        raise ActivationArgError(f"activation {info.name!r}: {_capped(e)}") from e
    setattr(module, ACT_TAG, info.name)
    return module


def min_channels(name: str, kwargs: dict) -> int:
    """The fewest channels a block may have for these keywords (the largest at-most-channels value, else 1)."""
    info = get_activation_info(name)
    values = [int(v) for k, v in kwargs.items() if k in info.bounds and info.bounds[k].at_most_channels]
    return max([1, *values])


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
