"""The activation zoo: a registry of names to factories ``(channels, **kwargs) -> nn.Module``.

Importing this package registers every built-in activation; ``register_activation`` adds your own.
``unregister_activation`` removes one; ``temporary_activation`` registers one for the length of a ``with`` block.
"""

from .keywords import Bounds
from .registry import (
    ACT_TAG,
    ActivationInfo,
    activation_table,
    all_names,
    check_kwargs,
    create_activation,
    fuse_activations,
    get_activation_info,
    is_activation_module,
    list_activations,
    normalize_name,
    register_activation,
    temporary_activation,
    unregister_activation,
)

# isort: off
# registration order is the order of --list
from . import pointwise, export, frelu, acon, dyrelu  # noqa: F401  (register the built-ins)
# isort: on

__all__ = [
    "ACT_TAG",
    "ActivationInfo",
    "Bounds",
    "activation_table",
    "all_names",
    "check_kwargs",
    "create_activation",
    "fuse_activations",
    "get_activation_info",
    "is_activation_module",
    "list_activations",
    "normalize_name",
    "register_activation",
    "temporary_activation",
    "unregister_activation",
]
