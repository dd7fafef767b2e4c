"""Face recognition models for evaluation: anything that maps aligned uint8 RGB faces
(B, S, S, 3) to embeddings (B, F).

A file of any model kind that has an embedding (:func:`igfiqa.inference.load_model`; ArcFace,
ElasticFace, MagFace, CurricularFace, CR-FIQA, igfiqa, generic ONNX and TorchScript...), or from
Python any callable. Every kind applies its authors' input convention itself; generic ONNX and
TorchScript models get the project's: float32 (B, 3, S, S), RGB, ``(pixel / 255 - 0.5) / 0.5``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from igfiqa.data.pixels import normalise_batch, resize_to
from igfiqa.errors import CheckpointError
from igfiqa.files import content_digest, file_signature

ImageFunction = Callable[[np.ndarray], np.ndarray]


def fr_batch(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 (B, H, W, 3) RGB -> float32 (B, 3, size, size) in [-1, 1], resizing if needed by
    the one policy :func:`igfiqa.data.pixels.resize_to` (area to shrink, bilinear to enlarge)."""
    if images.shape[1] != size or images.shape[2] != size:
        images = np.stack([resize_to(image, size) for image in images])
    return normalise_batch(images)


@dataclass
class FRModel:
    """A face recognition model: ``embed(uint8 (B, S, S, 3)) -> float32 (B, F)`` raw embeddings.

    ``key`` identifies the model for caching (None = never cached); ``network`` is the igfiqa
    iResNet when there is one (SER-FIQ needs it); ``quality_model`` the loaded igfiqa model.
    """

    name: str
    embed: ImageFunction
    key: str | None
    input_size: int = 112
    network: Any = None
    quality_model: Any = None


def split_model_spec(text: str) -> tuple[str | None, str, str | None]:
    """``[KIND:]PATH[@sha256=HEX]`` -> (kind or None, path, sha256 or None); KIND is a registered
    model kind (``igfiqa models``)."""
    from igfiqa.inference.kinds import KINDS

    sha256 = None
    if "@sha256=" in text:
        text, sha256 = text.rsplit("@sha256=", 1)
    kind = None
    head, sep, rest = text.partition(":")
    if sep and head.strip().lower().replace("_", "-") in KINDS:
        kind, text = head.strip().lower().replace("_", "-"), rest
    return kind, text, sha256


def load_fr_model(
    spec: str | os.PathLike[str] | Callable[[np.ndarray], np.ndarray] | FRModel,
    *,
    device: str = "auto",
    name: str | None = None,
    input_size: int = 112,
) -> FRModel:
    """Resolve an FR model spec.

    ``spec`` is an :class:`FRModel`; a callable (aligned uint8 (B, S, S, 3) -> (B, F); cached only
    when ``name`` is given, under that name); ``KIND:PATH`` for a model of a named kind
    (``arcface:``, ``magface:``, ``curricularface:``, ``onnx:``, ``torchscript:``, ``igfiqa:``...:
    ``igfiqa models``), optionally ``@sha256=HEX``; or a path whose kind is recognised;
    ``NAME=SPEC`` names it in the results. Each model gets its authors' input convention inside
    :func:`igfiqa.inference.load_model`.
    """
    if isinstance(spec, FRModel):
        return spec
    if callable(spec) and not isinstance(spec, (str, os.PathLike)):
        label = name or getattr(spec, "__name__", type(spec).__name__)
        key = content_digest("callable", name) if name else None
        return FRModel(label, spec, key, input_size)
    text = os.fspath(spec)
    label_part = text.split("@sha256=", 1)[0].split(":", 1)[0]
    if "=" in label_part and "/" not in label_part.split("=", 1)[0]:
        label_name, text = text.split("=", 1)
        name = name or label_name
    kind, text, sha256 = split_model_spec(text)
    path = Path(text).expanduser()
    if not path.exists():
        head, sep, _ = text.partition(":")
        if sep and kind is None and len(head) > 1 and "/" not in head:
            from igfiqa.inference.kinds import KINDS

            raise CheckpointError(
                f"FR model {text!r}: {head!r} is not a model kind ({', '.join(KINDS)}) and no "
                "file has that name"
            )
        raise CheckpointError(f"FR model {path} does not exist")
    label = name or path.name
    key = content_digest(kind or "auto", file_signature(path))
    from igfiqa.inference import load_model

    is_onnx_export = path.is_dir() and (path / "model.onnx").is_file() and kind == "onnx"
    if is_onnx_export or (kind in (None, "onnx") and path.suffix.lower() == ".onnx"):
        from igfiqa.inference.card import find_card_for

        if is_onnx_export or find_card_for(path) is not None:  # an igfiqa ONNX export
            model = load_model(path, sha256=sha256, device=device, backend="onnx")
            return _from_quality_model(model, label, key)
    from igfiqa.inference.kinds.base import is_torchscript

    if kind is None and path.is_file() and is_torchscript(path):
        kind = "torchscript"
    options = {"size": str(input_size)} if kind == "torchscript" else None
    model = load_model(path, kind=kind, sha256=sha256, options=options, device=device)
    return _from_quality_model(model, label, key)


def _from_quality_model(model: Any, label: str, key: str) -> FRModel:
    size = int(model.input_size)
    from igfiqa.inference.kinds import KINDS

    kind = KINDS.get(str((model.card.get("kind") or {}).get("kind", "igfiqa")))
    if kind is not None and "fr" not in kind.roles:
        raise CheckpointError(
            f"{model.source} is a {kind.method} model: it has no face recognition embedding; use "
            "it as --quality, and an FR model (arcface, magface, curricularface...) as --fr-model"
        )

    def embed(images: np.ndarray) -> np.ndarray:
        return model.forward_batch(fr_batch(images, size))[0]

    network = getattr(model.runner, "network", None)
    return FRModel(label, embed, key, size, network=network, quality_model=model)


__all__ = ["FRModel", "fr_batch", "load_fr_model", "split_model_spec"]
