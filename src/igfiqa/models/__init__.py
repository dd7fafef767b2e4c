"""Model registry: ``create_model(name, **options)`` builds any backbone of the iResNet family."""

from __future__ import annotations

from typing import Any

from igfiqa.errors import ConfigError
from igfiqa.models.iresnet import MODEL_LAYERS, IBasicBlock, IResNet

ALIASES = {
    "r18": "iresnet18",
    "r34": "iresnet34",
    "r50": "iresnet50",
    "r100": "iresnet100",
    "r200": "iresnet200",
}


def canonical_model_name(name: str) -> str:
    """``r50`` / ``iresnet50`` / ``IResNet50`` -> ``iresnet50``; unknown names raise ConfigError."""
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key not in MODEL_LAYERS:
        known = ", ".join(sorted(MODEL_LAYERS)) + " (or r18, r34, r50, r100, r200)"
        raise ConfigError(f"unknown model {name!r}: choose one of {known}")
    return key


def create_model(name: str, **options: Any) -> IResNet:
    """Build the backbone ``name`` (e.g. ``"iresnet50"`` or ``"r50"``) with the quality head.

    Options are those of :class:`IResNet`: ``num_features``, ``dropout``, ``width``, ``input_size``,
    ``quality_head``, ``zero_init_residual``.
    """
    canonical = canonical_model_name(name)
    try:
        return IResNet(MODEL_LAYERS[canonical], **options)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"cannot build model {name!r} with options {options}: {error}") from error


__all__ = ["MODEL_LAYERS", "IBasicBlock", "IResNet", "canonical_model_name", "create_model"]
