"""Plain-text tables and the number checks that go with them (one implementation for every report)."""

from __future__ import annotations

import math
from typing import Any, Iterable, Sequence


def is_finite(x: Any) -> bool:
    """True for a real (non-bool) int or float that is finite."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def format_table(
    head: Sequence[Any],
    rows: Iterable[Sequence[Any]],
    right: Iterable[int] = (),
    group_first: bool = False,
    sep: str = "  ",
) -> list[str]:
    """Fixed-width text table as lines: the header, a rule of dashes, then the rows.

    Args:
        head: column headers.
        rows: the cells (any values; ``str()`` is used).
        right: indices of right-aligned columns (numbers).
        group_first: print the first column once per run of equal values (stage names, model names).
        sep: text between columns.
    """
    right = set(right)
    rows = [[str(v) for v in r] for r in rows]
    head = [str(h) for h in head]
    widths = [max(len(r[c]) for r in [head, *rows]) for c in range(len(head))]

    def line(r):
        return sep.join(v.rjust(w) if c in right else v.ljust(w) for c, (v, w) in enumerate(zip(r, widths))).rstrip()

    out = [line(head)] + [line(r) for r in rows]
    out.insert(1, "-" * max(len(s) for s in out))
    if group_first:
        prev = None
        for i, r in enumerate(rows):
            if r[0] == prev:
                out[i + 2] = " " * len(r[0]) + out[i + 2][len(r[0]) :]
            prev = r[0]
    return out


def markdown_table(head: Sequence[Any], rows: Iterable[Sequence[Any]], right: Iterable[int] = ()) -> list[str]:
    """A GitHub Markdown table as lines, padded so that it also reads as plain text."""
    right = set(right)
    rows = [[str(v).replace("|", "/") for v in r] for r in rows]
    head = [str(h) for h in head]
    widths = [max(len(r[c]) for r in [head, *rows]) for c in range(len(head))]

    def line(r):
        return "| " + " | ".join(v.rjust(w) if c in right else v.ljust(w) for c, (v, w) in enumerate(zip(r, widths))) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if c in right else ("-" * (w + 2)) for c, w in enumerate(widths)) + "|"
    return [line(head), rule, *(line(r) for r in rows)]
