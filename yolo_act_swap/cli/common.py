"""Flags and parsing shared by every subcommand: defined once, so that ``--project/--name/--exist-ok/--verbose`` and
``key=value`` mean the same everywhere, and argparse mistakes end in one line with exit code 2."""

from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path

import yaml

from ..errors import ActSwapError
from ..spec import load_spec

# The one default rule of every command: without --act and --spec nothing is swapped; the model keeps the
# activations it was built or saved with (an act_swap: record in its YAML or checkpoint included).
NO_SWAP_HELP = "without --act/--spec nothing is swapped: the model keeps its activations, act_swap: record included"


class UsageError(ActSwapError):
    """A command-line mistake (a bad flag or value): one line, exit code 2."""


class Parser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose errors are one line (``UsageError``) instead of the 5-line usage dump."""

    def error(self, message: str):
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


MIN_IMGSZ = 32  # the largest stride of the detectors here: a smaller image has no cell in the coarsest head level


def check_count(flag: str, value: int | None, minimum: int = 1, hint: str = "") -> None:
    """``value`` (when given) is at least ``minimum``, else a one-line ``UsageError``."""
    if value is not None and value < minimum:
        raise UsageError(f"{flag} {value}: must be at least {minimum}{'; ' + hint if hint else ''}")


def check_imgsz(flag: str, value: int | None, stride: int = MIN_IMGSZ) -> int | None:
    """An image size: at least ``stride`` (else ``UsageError``); one notice line on stderr when it will be rounded
    up to a multiple of the stride, as the models need."""
    if value is None:
        return None
    if value < stride:
        raise UsageError(f"{flag} {value}: too small, the models need at least {stride} pixels (a multiple of "
                         f"{stride}, e.g. 640)")
    if value % stride:
        up = -(-value // stride) * stride
        print(f"yolo-act-swap: note: {flag} {value} is not a multiple of the stride {stride}: using {up}",
              file=sys.stderr)
        return up
    return value


def check_output_file(flag: str, path: str | None) -> None:
    """``path`` (when given) can be written as a file: not a folder, and its folder exists (checked before any work,
    so that a mistake ends in one line and nothing is half-written)."""
    if path is None:
        return
    p = Path(path).expanduser()
    if p.is_dir():
        raise UsageError(f"{flag} {path}: is a folder; give a file name, e.g. {Path(path) / 'out'}")
    if not p.parent.is_dir():
        raise UsageError(f"{flag} {path}: folder {p.parent} does not exist; create it first or pick another path")


def add_trust_checkpoint(p: argparse.ArgumentParser) -> None:
    """``--trust-checkpoint``, on every command that loads weights (``safe_load.trusting``)."""
    from ..safe_load import TRUST_ENV, TRUST_FLAG

    p.add_argument(TRUST_FLAG, action="store_true",
                   help=f"load checkpoints that need types outside the allow-list with the full unpickler, which can "
                        f"run code: only for files you trust (also {TRUST_ENV}=1)")  # fmt: skip


def add_verbose(p: argparse.ArgumentParser, what: str = "show tracebacks on errors") -> None:
    p.add_argument("--verbose", "-v", action="store_true", help=what)


def add_run_folder(p: argparse.ArgumentParser, project: str, name: str = "exp", what: str = "save to") -> None:
    """``--project``, ``--name`` and ``--exist-ok``, as in upstream YOLOv5/YOLOv7 and ultralytics."""
    p.add_argument("--project", default=project, help=f"{what} project/name ({project})")
    p.add_argument("--name", default=name, help=f"{what} project/name ({name})")
    p.add_argument("--exist-ok", action="store_true", help="reuse project/name instead of incrementing")


def add_overrides(p: argparse.ArgumentParser, what: str = "other ultralytics args") -> None:
    p.add_argument("overrides", nargs="*", metavar="key=value", help=what)


def parse_overrides(pairs: list[str], flags: dict) -> dict:
    """Parse ``key=value`` ultralytics args; values are read as YAML scalars (never evaluated).

    Args:
        pairs (list[str]): the ``key=value`` strings.
        flags (dict): keys that have a flag of their own, mapped to the flag.

    Raises:
        ActSwapError: a malformed pair, an unknown key, a key that has its own flag, or a bad value.
    """
    from ultralytics.cfg import get_cfg
    from ultralytics.utils import DEFAULT_CFG_DICT

    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip().lstrip("-").replace("-", "_")
        if not sep or not key or value == "":
            raise UsageError(f"cannot read argument {pair[:80]!r}: use --flag value for our flags or key=value for "
                             "ultralytics args")
        if key in flags:
            raise UsageError(f"pass {key} with {flags[key]}, not as {key}=")
        if key not in DEFAULT_CFG_DICT:
            close = difflib.get_close_matches(key, list(DEFAULT_CFG_DICT), n=3, cutoff=0.6)
            hint = f"did you mean {', '.join(close)}?" if close else "run 'yolo cfg' for the list"
            raise UsageError(f"unknown ultralytics option {key[:60]!r}: {hint}")
        try:
            v = yaml.safe_load(value)
        except yaml.YAMLError:
            v = value
        out[key] = value if isinstance(v, (dict, list)) else v
    try:
        get_cfg(overrides=out)
    except (SyntaxError, TypeError, ValueError) as e:
        raise UsageError(str(e).strip().splitlines()[0][:300]) from None
    return out


def load_record(record) -> str:
    """A model's ``act_swap:`` record as its one-line spec text (``frelu + 1 rule``)."""
    try:
        return str(load_spec(record))
    except Exception:  # noqa: BLE001 - a record written by another version: show it raw
        return str(record)[:120]
