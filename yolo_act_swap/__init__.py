"""yolo-act-swap: swap, verify, train and compare activation functions in YOLO detectors.

The public API is small and stable::

    from yolo_act_swap import patch_model
    report = patch_model(model, "frelu")          # any nn.Module or ultralytics YOLO
    print(report)
"""

__version__ = "0.1.0"

from .activations import create_activation, list_activations, register_activation  # noqa: E402
from .errors import (  # noqa: E402
    ActSwapError,
    ActivationArgError,
    DataError,
    ModelError,
    PatchError,
    ShapeMismatch,
    SpecError,
    UnknownActivation,
)
from .optim import activation_parameters, add_activation_param_groups  # noqa: E402
from .patch import patch_model  # noqa: E402
from .spec import load_spec  # noqa: E402
from .verify import verify_shapes  # noqa: E402

__all__ = [
    "ActSwapError",
    "ActivationArgError",
    "DataError",
    "ModelError",
    "PatchError",
    "ShapeMismatch",
    "SpecError",
    "UnknownActivation",
    "activation_parameters",
    "add_activation_param_groups",
    "create_activation",
    "list_activations",
    "load_spec",
    "patch_model",
    "register_activation",
    "verify_shapes",
]
