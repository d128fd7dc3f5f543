"""Activation keywords: the type a value must have (from the factory's default) and its range (``Bounds``).

Checked before the factory runs, so a wrong value is one clear error and never a huge allocation: nothing is coerced
(``kernel_size=true`` or ``1.5`` is not 1), floats are finite and fit float32, and numeric keywords stay within the
bounds their activation registers (kernel sizes odd and small, reductions at most the channel count).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import ActivationArgError, short

FLOAT32_MAX = 3.4028234663852886e38  # a keyword that becomes a float32 parameter or constant must fit in one
FLOAT32_TINY = 1.1754943508222875e-38  # smallest normal float32: a nonzero value below it rounds to 0 (or a subnormal)
MAX_STR = 64  # the longest text keyword value (init names and the like)


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


def check_values(info, kwargs: dict, channels: int | None = None) -> None:
    """Check keyword names, types and ranges against the factory's signature and bounds, without building anything.

    A keyword whose default is a bool, int, float or str must be given a value of that type (an int for a float is
    fine, text ``true``/``false``/``yes``/``no``/``on``/``off`` for a bool); nothing is coerced. Floats must be finite
    and fit float32; ``Bounds`` add ranges. ``channels=None`` (not known yet) skips the at-most-channels limit.

    Args:
        info (ActivationInfo): the registry entry.
        kwargs (dict): the given keywords.
        channels (int, optional): the block's channel count.

    Raises:
        ActivationArgError: a keyword is not accepted, or its value is rejected.
    """
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


def min_channels(info, kwargs: dict) -> int:
    """The fewest channels a block may have for these keywords (the largest at-most-channels value, else 1)."""
    values = [int(v) for k, v in kwargs.items() if k in info.bounds and info.bounds[k].at_most_channels]
    return max([1, *values])
