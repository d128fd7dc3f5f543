"""The user-facing error hierarchy.

Every error a user can cause is an ``ActSwapError``: its message is one line that names the thing that is wrong
(file:line, layer path, activation) and says how to fix it. The CLI prints that line and exits with code 2; anything
else is a bug and exits with code 1.
"""

import sys


def warn(message: str) -> None:
    """A one-line warning on stderr, shown whatever ultralytics' log level (``YOLO_VERBOSE``)."""
    print(f"yolo-act-swap: warning: {message}", file=sys.stderr, flush=True)


class ActSwapError(Exception):
    """Base class of every user-facing error (CLI exit code 2)."""


class SpecError(ActSwapError, ValueError):
    """A swap spec (YAML file, dict or ``--act`` string) is malformed."""


class UnknownActivation(SpecError):
    """An activation name is not in the registry."""


class ActivationArgError(SpecError, TypeError):
    """An activation got a keyword it does not take, or a bad value for one."""


class PatchError(ActSwapError):
    """A swap could not be applied; the model has been rolled back."""


class ShapeMismatch(PatchError):
    """An activation changed a block's output shape; the model has been rolled back."""


class ModelError(ActSwapError):
    """A ``--cfg`` / ``--weights`` could not be resolved or built."""


class DataError(ActSwapError):
    """A dataset is missing, empty or inconsistent with the model."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training. ``last`` is the run's ``weights/last.pt`` to resume from (None before its first save)."""

    def __init__(self, last=None):
        super().__init__(str(last or ""))
        self.last = last

    def hint(self) -> str:
        """What the user types next."""
        if self.last:
            return f"resume with: yolo-act-swap train --resume {self.last}"
        return "no epoch finished yet, so there is nothing to resume: start the run again"


class SweepError(ActSwapError):
    """A sweep cannot start or continue as asked (settings clash with the folder, bad ``--acts`` item, ...)."""


def short(value, limit: int = 60) -> str:
    """A bounded ``repr`` for error messages: never longer than ``limit`` characters, never deeply recursive.

    Messages embed the bad value so the user sees what was read; a 100k-item list or a 5,000-digit integer must not
    turn that one line into half a megabyte (or fail: ``repr`` of such an integer raises ``ValueError``).
    """
    import reprlib

    r = reprlib.Repr()
    r.maxlevel, r.maxstring, r.maxother, r.maxlong = 3, limit, limit, limit
    r.maxlist = r.maxtuple = r.maxdict = r.maxset = r.maxfrozenset = r.maxdeque = r.maxarray = 6
    try:
        text = r.repr(value)
    except Exception:  # noqa: BLE001 - a value whose repr fails is still named by its type
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."
