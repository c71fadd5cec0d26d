"""Architectures. Importing this package registers every model family."""

from mangacolor.models import (  # noqa: F401  (registration side effects)
    attention_unet,
    patchgan,
    reference_unet,
    resnet_gen,
    resnet_unet,
    sgru,
    unet,
)
from mangacolor.models.registry import (
    ModelSpec,
    build_config,
    config_dict,
    create_model,
    get_spec,
    list_models,
    register_model,
)

__all__ = [
    "ModelSpec",
    "build_config",
    "config_dict",
    "create_model",
    "get_spec",
    "list_models",
    "register_model",
]
