"""Bounded YAML for specs: ``yaml.SafeLoader`` with limits on size, nesting and alias expansion.

A spec file may come from anyone. ``yaml.safe_load`` never runs code, but it composes a node tree recursively (deep
nesting ends in ``RecursionError``) and shares aliased nodes, so a few hundred bytes of anchors and aliases stand for
billions of nodes as soon as anything walks the tree. Here the text is capped first, then the composer counts nodes
and depth as it goes, and the composed tree is measured with every alias counted as the subtree it stands for (and
recursive aliases refused) before anything is constructed or walked. Every failure is a one-line ``SpecError``.
"""

from __future__ import annotations

from typing import Any

import yaml

from .errors import SpecError
from .io import yaml_error_line

MAX_SPEC_CHARS = 65_536  # a spec is a few hundred bytes; the largest upstream model YAML (yolov7-e6e) is 9.6 kB
MAX_NODES = 5_000  # YAML nodes, every alias counted as the subtree it stands for (yolov7-e6e.yaml has 2,257)
MAX_DEPTH = 32  # nesting levels (a spec has 6, a model YAML 4)
MAX_MESSAGE = 240  # the YAML part of an error message


def display_name(name: str, limit: int = 80) -> str:
    """A file name for messages: long paths keep their end (the file name), shortened with ``...``."""
    name = str(name)
    return name if len(name) <= limit else "..." + name[-(limit - 3) :]


class _Loader(yaml.SafeLoader):
    """SafeLoader whose composer stops at ``MAX_DEPTH`` levels and ``MAX_NODES`` nodes, with errors marked."""

    def __init__(self, text: str, name: str):
        super().__init__(text)
        self._name, self._depth, self._nodes = name, 0, 0

    def compose_node(self, parent, index):
        self._nodes += 1
        if self._depth >= MAX_DEPTH or self._nodes > MAX_NODES:
            line = self.peek_event().start_mark.line + 1
            what = f"nested deeper than {MAX_DEPTH} levels" if self._depth >= MAX_DEPTH else f"over {MAX_NODES} nodes"
            raise SpecError(f"{self._name}:{line}: the YAML is {what}; a spec is small and flat, simplify it")
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_object(self, node, deep=False):
        try:
            return super().construct_object(node, deep=deep)
        except (yaml.YAMLError, SpecError):
            raise
        except Exception as e:  # noqa: BLE001 - PyYAML's constructors raise ValueError, AttributeError, ...
            problem = f"cannot read this {node.tag.rsplit(':', 1)[-1][:20]} value ({type(e).__name__})"
            raise yaml.constructor.ConstructorError(None, None, problem, node.start_mark) from None


def _flow_depth_line(text: str) -> int | None:
    """The line where flow brackets (``[``/``{`` outside quotes and comments) nest deeper than ``MAX_DEPTH``, or None.

    Checked before parsing: PyYAML's scanner looks up to 1,024 characters ahead for every bracket that may start a
    key, at a cost that grows with the nesting, so 3,000 ``[`` take it seconds before the composer sees one node.
    """
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return None
    depth, line, quote, escape, comment, prev = 0, 1, "", False, False, " "
    for ch in text:
        if ch == "\n":
            line, comment = line + 1, False
        elif comment:
            pass
        elif quote:
            if escape:
                escape = False
            elif quote == '"' and ch == "\\":
                escape = True
            elif ch == quote:
                quote = ""
        elif ch in "'\"" and prev in " \t\n[{,:":
            quote = ch
        elif ch == "#" and prev in " \t\n":
            comment = True
        elif ch in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return line
        elif ch in "]}":
            depth = max(0, depth - 1)
        prev = ch
    return None


def _children(node) -> list:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return list(node.value) if isinstance(node, yaml.SequenceNode) else []


def _check_expansion(root, name: str) -> None:
    """Refuse recursive aliases and trees over ``MAX_NODES`` / ``MAX_DEPTH`` once aliases are expanded.

    Each node is measured once (aliased nodes are shared objects). Anchors precede their aliases, so walking in
    document order finds every aliased node measured already, or on the current path (a recursive alias): the
    recursion goes no deeper than the document's own nesting, which the composer capped.
    """
    sizes: dict[int, tuple | None] = {}

    def walk(node) -> tuple[int, int]:
        key = id(node)
        if key in sizes:
            if sizes[key] is None:
                raise SpecError(
                    f"{name}:{node.start_mark.line + 1}: an alias refers to a node that contains it; remove the alias"
                )
            return sizes[key]
        sizes[key] = None
        count, depth = 1, 1
        for child in _children(node):
            c, d = walk(child)
            count, depth = count + c, max(depth, d + 1)
            if count > MAX_NODES or depth > MAX_DEPTH:
                what = f"over {MAX_NODES} nodes" if count > MAX_NODES else f"nested deeper than {MAX_DEPTH} levels"
                raise SpecError(
                    f"{name}:{node.start_mark.line + 1}: with its aliases expanded the YAML is {what}; "
                    f"write the spec out without so many aliases"
                )
        sizes[key] = (count, depth)
        return count, depth

    walk(root)


def _node_lines(node, path: tuple = ()) -> dict:
    """Map key paths to 1-based line numbers in a composed node tree (bounded by ``_check_expansion``)."""
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


def load_yaml(text: str, name: str, lines: bool = True) -> tuple[Any, dict]:
    """Parse one YAML document within the limits.

    Args:
        text (str): the YAML text.
        name (str): where it came from, for messages (a file name, ``<spec>``, ``--act``).
        lines (bool): also map every key path to its line (for ``file.yaml:7`` messages).

    Returns:
        (tuple): the data (None for an empty document) and the key path -> line map (empty without ``lines``).

    Raises:
        SpecError: too long, too deep, too many nodes (aliases expanded), a recursive alias, or malformed YAML.
    """
    name = display_name(name)
    if len(text) > MAX_SPEC_CHARS:
        raise SpecError(
            f"{name}: {len(text)} characters of YAML; a spec is at most {MAX_SPEC_CHARS}: give the spec itself"
        )
    line = _flow_depth_line(text)
    if line is not None:
        raise SpecError(
            f"{name}:{line}: the YAML is nested deeper than {MAX_DEPTH} levels; a spec is small and flat, simplify it"
        )
    try:
        loader = _Loader(text, name)
        try:
            node = loader.get_single_node()
            if node is None:
                return None, {}
            _check_expansion(node, name)
            where = _node_lines(node) if lines else {}
            return loader.construct_document(node), where
        finally:
            loader.dispose()
    except yaml.YAMLError as e:
        msg = yaml_error_line(e, name)
        msg = msg if len(msg) <= MAX_MESSAGE else msg[: MAX_MESSAGE - 3] + "..."
        raise SpecError(f"{msg}; fix the YAML syntax there") from None
