"""yolo-act-swap: swap, verify, train and compare activation functions in YOLO detectors.

The public API is small and stable::

    from yolo_act_swap import patch_model, activation_parameters
    report = patch_model(model, "frelu")          # any nn.Module or ultralytics YOLO; verifies, rolls back on failure
    print(report)                                 # the table: blocks per stage, params, GFLOPs, verdict
    optimizer.add_param_group({"params": activation_parameters(model), "weight_decay": 0.0})

``load_spec`` parses swap specs (YAML, dicts, ``--act`` strings), ``verify_shapes`` re-checks a model's forward,
``load_model`` resolves ``--cfg``/``--weights``/``--repo``, ``find_blocks`` lists the activated conv blocks.
"""

__version__ = "0.1.0"

from .activations import (
    create_activation,
    list_activations,
    register_activation,
    temporary_activation,
    unregister_activation,
)
from .blocks import find_blocks
from .checkpoints import register_safe_globals
from .engine.optim import activation_parameters, add_activation_param_groups
from .errors import (
    ActivationArgError,
    ActSwapError,
    DataError,
    ModelError,
    PatchError,
    ShapeMismatch,
    SpecError,
    UnknownActivation,
)
from .models import build_detection_model, load_model
from .nn import tasks as _tasks  # noqa: F401  (registers ActSwapDetectionModel with the patcher)
from .patch import patch_model
from .report import PatchReport
from .spec import SwapSpec, load_spec
from .verify import VerifyReport, verify_shapes

register_safe_globals()

__all__ = [
    "ActSwapError",
    "ActivationArgError",
    "DataError",
    "ModelError",
    "PatchError",
    "ShapeMismatch",
    "SpecError",
    "PatchReport",
    "SwapSpec",
    "UnknownActivation",
    "VerifyReport",
    "activation_parameters",
    "add_activation_param_groups",
    "build_detection_model",
    "create_activation",
    "find_blocks",
    "list_activations",
    "load_model",
    "load_spec",
    "patch_model",
    "register_activation",
    "register_safe_globals",
    "temporary_activation",
    "unregister_activation",
    "verify_shapes",
]
