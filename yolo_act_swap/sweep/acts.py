"""The ``--acts`` list of a sweep: activation names, inline specs, spec files and folders of spec YAMLs, each
checked before anything trains and turned into one seedless :class:`SweepRun` per activation."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from pathlib import Path

from ..activations import all_names, normalize_name
from ..errors import SpecError, SweepError
from ..io import configs_dir
from ..spec import load_spec, resolve_spec_file, split_top
from .plan import SweepRun


# ------------------------------------------------------------------------------------------------------ --acts
def _label(text: str) -> str:
    """Folder-safe label: ``leaky_relu:negative_slope=0.1`` -> ``leaky_relu_negative_slope=0.1``."""
    return re.sub(r"[^A-Za-z0-9._=+-]+", "_", text.replace(":", "_").replace(",", "_")).strip("._") or "act"


def split_acts(items: list[str]) -> list[str]:
    """Split comma lists outside brackets; ``acon_c:init=silu,reduction=8`` keeps its second keyword.

    Args:
        items (list[str]): ``--acts`` values, each a comma list of names, inline forms or spec files.

    Returns:
        (list[str]): one token per activation, in order.
    """
    tokens: list[str] = []
    for item in items:
        for piece in split_top(str(item), ","):
            piece = piece.strip()
            if not piece:
                continue
            if tokens and "=" in piece and ":" not in piece and "/" not in piece and ":" in tokens[-1]:
                tokens[-1] += "," + piece  # a further keyword of the previous inline spec
            else:
                tokens.append(piece)
    return tokens


@contextlib.contextmanager
def acts_flag(flag: str = "--acts"):
    """Name ``flag`` in the spec errors raised inside (``load_spec`` names the ``--act`` flag of train and patch)."""
    # TODO(spec): a where= keyword of load_spec (owner E) would make this rewording unnecessary
    try:
        yield
    except SpecError as e:
        text = str(e)
        if not text.startswith("--act:"):
            raise
        raise type(e)(flag + text[len("--act"):]) from None


def _spec_file(token: str) -> Path | None:
    """The spec file or folder a ``--acts`` token names (a path, or a built-in ``configs/acts`` name), else None."""
    p = Path(token).expanduser()
    if p.is_dir():
        return p.resolve()
    if ":" in token or normalize_name(token) in all_names():
        return None  # an activation (inline form or registered name)
    found = resolve_spec_file(token)
    if found is not None:
        return Path(found).resolve()
    if token.endswith((".yaml", ".yml")) or "/" in token or os.sep in token:
        raise SweepError(f"--acts: spec file {token!r} not found (looked here and in {configs_dir() / 'acts'})")
    return None  # validated as an activation name next (unknown names get suggestions)


def _act_run(token: str) -> SweepRun:
    """Validate an inline ``--act`` form up front; plain silu is the baseline."""
    with acts_flag():
        act = load_spec(act=token).act
    baseline = bool(act is not None and act.name == "silu" and not act.kwargs)
    return SweepRun(label=_label(token), act=token, baseline=baseline)


def _spec_runs(path: Path) -> list[SweepRun]:
    """One run per spec file (a file, or every ``.yaml`` of a folder), each validated and hashed."""
    files = sorted(f for f in path.iterdir() if f.suffix in (".yaml", ".yml")) if path.is_dir() else [path]
    if not files:
        raise SweepError(f"--acts: folder {path} holds no .yaml spec files")
    runs = []
    for f in files:
        load_spec(str(f))
        digest = hashlib.sha256(f.read_bytes()).hexdigest()
        runs.append(SweepRun(label=_label(f.stem), spec=str(f), spec_sha256=digest))
    return runs


def resolve_acts(items: list[str]) -> list[SweepRun]:
    """Turn ``--acts`` items (names, inline specs, spec files, folders of spec files) into validated runs.

    Args:
        items (list[str]): the ``--acts`` values; each may be a comma list.

    Returns:
        (list[SweepRun]): one run per activation, in the order given.
    """
    runs: list[SweepRun] = []
    for token in split_acts(items):
        path = _spec_file(token)
        runs += [_act_run(token)] if path is None else _spec_runs(path)
    if not runs:
        raise SweepError("--acts is empty: give activation names, inline specs or spec files, e.g. --acts silu,relu")
    seen: set[str] = set()
    for r in runs:
        if r.label in seen:
            raise SweepError(f"--acts lists {r.label!r} twice; every run needs its own activation or spec")
        seen.add(r.label)
    return runs
