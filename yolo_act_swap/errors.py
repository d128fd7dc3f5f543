"""The user-facing error hierarchy.

Every error a user can cause is an ``ActSwapError``: its message is one line that names the thing that is wrong
(file:line, layer path, activation) and says how to fix it. The CLI prints that line and exits with code 2; anything
else is a bug and exits with code 1.
"""


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


class SweepError(ActSwapError):
    """A sweep cannot start or continue as asked (settings clash with the folder, bad ``--acts`` item, ...)."""
