"""The backbone architectures, by name: ``create_model(name, **options)`` builds any of
:data:`MODELS` (the iResNet family; ``r50`` is an alias of ``iresnet50``), ``list_models()`` names
them. These are the architectures igfiqa trains (``model.name`` in a config); the released model
formats igfiqa reads are the model kinds (``igfiqa.list_model_kinds()``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from igfiqa.errors import ConfigError
from igfiqa.models.iresnet import MODEL_LAYERS, IBasicBlock, IResNet
from igfiqa.registry import Registry

ModelBuilder = Callable[..., IResNet]
"""``(**options) -> network``: one architecture of :data:`MODELS`."""

MODELS: Registry[ModelBuilder] = Registry("model")
"""Architecture name (``iresnet18`` ... ``iresnet200``; aliases ``r18`` ... ``r200``) -> builder."""


def _iresnet(layers: tuple[int, int, int, int]) -> ModelBuilder:
    def build(**options: Any) -> IResNet:
        return IResNet(layers, **options)

    return build


for _name, _layers in MODEL_LAYERS.items():
    MODELS.add(_name, _iresnet(_layers), aliases=(_name.replace("iresnet", "r"),))


def list_models() -> list[str]:
    """Names of the backbone architectures :func:`create_model` builds (and a config's
    ``model.name`` takes), smallest first: ``["iresnet18", ..., "iresnet200"]``."""
    return MODELS.names()


def canonical_model_name(name: str) -> str:
    """``r50`` / ``iresnet50`` / ``IResNet50`` -> ``iresnet50``; unknown names raise ConfigError."""
    return MODELS.canonical(name)


def create_model(name: str, **options: Any) -> IResNet:
    """Build the backbone ``name`` (e.g. ``"iresnet50"`` or ``"r50"``) with the quality head.

    Options are those of :class:`IResNet`: ``num_features``, ``dropout``, ``width``, ``input_size``,
    ``quality_head``, ``zero_init_residual``.
    """
    build = MODELS.lookup(name)
    try:
        return build(**options)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"cannot build model {name!r} with options {options}: {error}") from error


__all__ = [
    "MODELS",
    "MODEL_LAYERS",
    "IBasicBlock",
    "IResNet",
    "ModelBuilder",
    "canonical_model_name",
    "create_model",
    "list_models",
]
