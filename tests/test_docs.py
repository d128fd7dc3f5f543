"""The README and the pages under docs/: links resolve, every page is reachable, no page copies another's text,
and the activation tables match the registry.

Anchors follow GitHub's heading slugs: lower case, punctuation dropped (``-`` and ``_`` stay), each space becomes a
hyphen (so ``a / b`` gives ``a--b``), and a repeated heading gets ``-1``, ``-2``, ... appended.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
README_MAX_LINES = 350
COPY_WINDOW = 8  # lines; the same window in two files counts as a copy (blank-heavy windows ignored)

LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^\s*(```|~~~)")


def pages() -> list[Path]:
    return sorted(DOCS.rglob("*.md"))


def prose_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, text) of the lines outside fenced code blocks, with inline code spans blanked."""
    out, fenced = [], False
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            out.append((n, re.sub(r"`[^`]*`", "``", line)))
    return out


def links(path: Path) -> list[tuple[int, str]]:
    """(line number, target) of every inline Markdown link and image outside code."""
    return [(n, m.group(1)) for n, line in prose_lines(path) for m in LINK.finditer(line)]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text (before de-duplication)."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading contributes its text
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    text = "".join(c for c in text if c.isalnum() or c in " -_")
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every anchor GitHub generates for the ATX headings of ``path`` (code blocks skipped)."""
    seen: dict[str, int] = {}
    out = set()
    fenced = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        m = None if fenced else re.match(r"^ {0,3}#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            base = slug(m.group(1))
            k = seen.get(base, 0)
            seen[base] = k + 1
            out.add(base if k == 0 else f"{base}-{k}")
    return out


def is_external(target: str) -> bool:
    return bool(re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I))


def broken(path: Path) -> list[str]:
    """The relative links of ``path`` whose file or ``#anchor`` does not exist, as 'file:line: target (why)'."""
    problems = []
    for n, target in links(path):
        if is_external(target):
            continue
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        where = f"{path.relative_to(ROOT)}:{n}: {target}"
        if not dest.exists():
            problems.append(f"{where} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            problems.append(f"{where} (no heading with anchor #{anchor} in {dest.relative_to(ROOT)})")
    return problems


def test_slug_follows_github():
    assert slug("Using the patcher in upstream YOLOv5 / YOLOv7 `train.py`") == (
        "using-the-patcher-in-upstream-yolov5--yolov7-trainpy"
    )
    assert slug("Starting exactly as SiLU (`init: silu`)") == "starting-exactly-as-silu-init-silu"
    assert slug("Which activation wins? `yolo-act-swap sweep`") == "which-activation-wins-yolo-act-swap-sweep"
    assert slug("`compile=true`") == "compiletrue"
    assert slug("snake_case & Co.") == "snake_case--co"


def test_readme_links_into_docs_resolve():
    into_docs = [(n, t) for n, t in links(README) if not is_external(t) and t.startswith("docs/")]
    assert into_docs, "the README links no page under docs/"
    assert broken(README) == []


@pytest.mark.parametrize("page", pages(), ids=lambda p: str(p.relative_to(DOCS)))
def test_docs_links_resolve(page):
    assert broken(page) == []


def test_every_docs_page_is_linked_from_the_readme():
    linked = {(ROOT / t.partition("#")[0]).resolve() for _, t in links(README) if not is_external(t)}
    missing = [str(p.relative_to(ROOT)) for p in pages() if p.resolve() not in linked]
    assert missing == [], f"docs pages the README does not link: {missing}"


def test_readme_stays_an_entry_point():
    n = len(README.read_text(encoding="utf-8").splitlines())
    assert n <= README_MAX_LINES, f"README.md has {n} lines; move long sections into a page under docs/"


def _windows(path: Path) -> set[tuple[str, ...]]:
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    wins = (tuple(lines[k : k + COPY_WINDOW]) for k in range(max(0, len(lines) - COPY_WINDOW + 1)))
    return {w for w in wins if sum(1 for x in w if x) >= COPY_WINDOW - 1}


def test_no_text_lives_in_two_places():
    files = [README, *pages()]
    wins = {f: _windows(f) for f in files}
    copies = [
        f"{a.relative_to(ROOT)} and {b.relative_to(ROOT)}"
        for i, a in enumerate(files)
        for b in files[i + 1 :]
        if wins[a] & wins[b]
    ]
    assert copies == [], f"the same {COPY_WINDOW} lines appear in: {copies}"


def _code_block_after(path: Path, marker: str) -> list[str]:
    """The lines of the first fenced block that follows the line containing ``marker``."""
    lines = path.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if marker in line)
    opening = next(i for i in range(start, len(lines)) if FENCE.match(lines[i]))
    closing = next(i for i in range(opening + 1, len(lines)) if FENCE.match(lines[i]))
    return lines[opening + 1 : closing]


def _rows(text_lines) -> list[str]:
    """Table rows with runs of spaces collapsed and dash rules dropped: column widths may change, content not."""
    return [" ".join(line.split()) for line in text_lines if line.strip() and set(line.strip()) != {"-"}]


def test_activation_list_in_docs_matches_the_registry():
    from yolo_act_swap.activations.registry import activation_table

    documented = _rows(_code_block_after(DOCS / "activations.md", "`yolo-act-swap --list` prints"))
    assert documented == _rows(activation_table().splitlines())


def _default(value) -> str:
    return f"{value:g}" if isinstance(value, float) else repr(value)


def test_keyword_table_in_docs_matches_the_registry():
    from yolo_act_swap.activations import list_activations

    expected = []
    for info in list_activations():
        if info.kwargs:
            params = inspect.signature(info.factory).parameters
            keywords = ", ".join(f"`{k}` ({_default(params[k].default)})" for k in info.kwargs)
            expected.append(f"| `{info.name}` | {keywords} |")
    text = (DOCS / "activations.md").read_text(encoding="utf-8").splitlines()
    documented = [line for line in text if line.startswith("| `")]
    assert documented == expected
