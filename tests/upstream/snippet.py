"""Apply docs/upstream.md's train.py snippet to a copy of an upstream script, the way a user would: each numbered line
goes where the docs put it, next to the upstream lines the docs quote around it.

``snippet_chunks(family)`` reads the snippet out of the docs; ``apply_snippet(text, family, spec)`` returns the edited
script (with ``spec`` in place of the docs' ``"frelu"``) and raises ``SnippetError`` when a quoted upstream line is
not in the script exactly once, or the docs' neighbours are not neighbours there.
"""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "upstream.md"
HEADINGS = {"yolov5": "**YOLOv5** `train.py`", "yolov7": "**YOLOv7** `train.py`"}
MARK = re.compile(r"#\s*\((\d)\)")


class SnippetError(AssertionError):
    pass


def snippet_chunks(family: str, doc: str | None = None) -> list[list[str]]:
    """The family's python block after its heading, split at the ``...`` lines: a list of line lists."""
    text = DOC.read_text(encoding="utf-8") if doc is None else doc
    start = text.index(HEADINGS[family])
    block = text[text.index("```python\n", start) + len("```python\n") :]
    block = block[: block.index("```")]
    chunks, cur = [], []
    for line in block.splitlines():
        if line.strip() == "...":
            chunks.append(cur)
            cur = []
        else:
            cur.append(line)
    return [c for c in chunks + [cur] if c]


def _line_index(lines: list[str], line: str) -> int:
    hits = [i for i, x in enumerate(lines) if x == line]
    if len(hits) != 1:
        raise SnippetError(f"the docs' upstream line is in the script {len(hits)} times, not once: {line!r}")
    return hits[0]


def _import_index(lines: list[str]) -> int:
    """After the last top-level import of the script's header (before its first def/class)."""
    last = 0
    for i, line in enumerate(lines):
        if line.startswith(("def ", "class ", "@")):
            break
        if line.startswith(("import ", "from ")):
            last = i
            while lines[last].rstrip().endswith(("(", ",", "\\")):  # a wrapped import
                last += 1
    return last + 1


def apply_snippet(text: str, family: str, spec: str, doc: str | None = None) -> tuple[str, dict]:
    """The script with the snippet inserted; also ``{number: line index}`` of each inserted line."""
    lines = text.splitlines()
    inserts = []  # (index to insert before, line, number)
    for chunk in snippet_chunks(family, doc):
        for j, line in enumerate(chunk):
            m = MARK.search(line)
            if not m:
                continue
            new = line.replace('"frelu"', repr(spec).replace("'", '"'))
            before = [x for x in chunk[:j] if not MARK.search(x)]
            after = [x for x in chunk[j + 1 :] if not MARK.search(x)]
            if not before:
                inserts.append((_import_index(lines), new, m.group(1)))
                continue
            at = _line_index(lines, before[-1]) + 1
            if after and lines[at : at + 1] != after[:1]:
                raise SnippetError(f"line ({m.group(1)}): in the script {before[-1]!r} is not followed by {after[0]!r}")
            inserts.append((at, new, m.group(1)))
    where = {}
    for at, new, _n in sorted(inserts, key=lambda x: x[0], reverse=True):
        lines.insert(at, new)
    for i, line in enumerate(lines):
        m = MARK.search(line)
        if m and line in {x[1] for x in inserts}:
            where[m.group(1)] = i
    return "\n".join(lines) + "\n", where
