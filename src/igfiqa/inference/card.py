"""The model card: the JSON description that travels with an exported model.

It says what the network is (model spec), what it expects (input size, colour order, normalisation,
alignment template), what it returns, where it comes from (training data, code version) and how to
read its score (calibration). Nothing here imports torch.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from igfiqa.data.pixels import COLOUR_ORDER, NORMALISATION_MEAN, NORMALISATION_STD
from igfiqa.errors import CheckpointError
from igfiqa.files import atomic_write_text, json_safe

CARD_FORMAT = "igfiqa.model_card"
CARD_VERSION = 1
CARD_FILE = "model_card.json"
WEIGHTS_FILE = "model.safetensors"
ONNX_FILE = "model.onnx"
SAFETENSORS_CARD_KEY = "igfiqa_model_card"

LANDMARK_ORDER = ("left_eye", "right_eye", "nose_tip", "left_mouth_corner", "right_mouth_corner")


def alignment_template(input_size: int) -> list[list[float]]:
    """The five ArcFace template points (x, y) scaled to an ``input_size`` square crop."""
    from igfiqa.data.align import ARCFACE_TEMPLATE

    scale = input_size / 112.0
    return [[float(x) * scale, float(y) * scale] for x, y in ARCFACE_TEMPLATE]


def make_model_card(
    spec: Mapping[str, Any],
    *,
    has_quality_head: bool,
    training: Mapping[str, Any] | None = None,
    source: Mapping[str, Any] | None = None,
    calibration: Mapping[str, Any] | None = None,
    onnx: Mapping[str, Any] | None = None,
    kind: Mapping[str, Any] | None = None,
    family: str = "iResNet (insightface / CR-FIQA parameter names)",
    convention: Mapping[str, Any] | None = None,
    quality: Mapping[str, Any] | None = None,
    embedding: Mapping[str, Any] | None = None,
    alignment: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Build the model card dict of a model with model spec ``spec``.

    ``kind`` describes the released format (:mod:`igfiqa.inference.kinds`; igfiqa's own when
    None), ``convention`` the authors' input convention that the network applies to igfiqa's
    input (:class:`igfiqa.models.convention.InputConvention`), ``quality`` and ``embedding`` what
    the outputs mean.
    """
    from igfiqa import __version__

    size = int(spec["input_size"])
    kind_info = dict(kind or {"kind": "igfiqa", "method": "IG-FIQA / CR-FIQA (igfiqa)"})
    quality_info = {
        "shape": ["batch", 1],
        "meaning": "raw quality score R(f(x)); higher = more useful for face recognition; "
        "unbounded, relative to the model. See `calibration` for the 0..100 scale.",
        "higher_is_better": True,
    }
    quality_info.update(quality or {})
    embedding_info = {
        "shape": ["batch", int(spec["num_features"])],
        "l2_normalised": False,
        "flip": "none",
    }
    embedding_info.update(embedding or {})
    own = {
        "colour_order": COLOUR_ORDER,
        "mean": list(NORMALISATION_MEAN),
        "std": list(NORMALISATION_STD),
        "formula": "((pixel / 255) - mean) / std, per channel in colour_order",
    }
    return {
        "format": CARD_FORMAT,
        "format_version": CARD_VERSION,
        "model_spec": json_safe(dict(spec)),
        "kind": json_safe(kind_info),
        "architecture": {
            "family": family,
            "name": spec["name"],
            "quality_head": bool(has_quality_head),
        },
        "input": {
            "name": "image",
            "shape": ["batch", 3, size, size],
            "dtype": "float32",
            "layout": "NCHW",
            "size": size,
            "colour_order": COLOUR_ORDER,
            "normalisation": {
                "scale": 1 / 255,
                "mean": list(NORMALISATION_MEAN),
                "std": list(NORMALISATION_STD),
                "formula": "(pixel / 255 - mean) / std, giving values in [-1, 1]",
            },
            "convention": json_safe(dict(convention or own)),
            "convention_applied": "inside the network: igfiqa's input above is converted to the "
            "authors' convention, so callers always pass the input above",
        },
        "alignment": {
            "required": True,
            "template": alignment_template(size),
            "template_size": size,
            "landmark_order": list(LANDMARK_ORDER),
            "transform": "least-squares 4-DOF similarity (Umeyama, no reflection) from the five "
            "detected points to the template, bilinear warp, border 0",
            **dict(alignment or {}),
        },
        "outputs": {
            "embedding": embedding_info,
            "quality": quality_info if has_quality_head else None,
        },
        "training": json_safe(dict(training or {})),
        "source": json_safe(dict(source or {})),
        "calibration": json_safe(dict(calibration)) if calibration else None,
        "onnx": json_safe(dict(onnx)) if onnx else None,
        "code_version": {"igfiqa": __version__},
    }


def validate_card(card: Any, *, where: str) -> dict[str, Any]:
    """Check that ``card`` is a model card this version understands; return it."""
    if not isinstance(card, dict) or card.get("format") != CARD_FORMAT:
        raise CheckpointError(
            f"{where} is not an igfiqa model card (expected a JSON object with "
            f'"format": "{CARD_FORMAT}")'
        )
    version = card.get("format_version")
    if not isinstance(version, int) or version > CARD_VERSION:
        raise CheckpointError(
            f"{where}: model card format_version {version!r} is not supported (this igfiqa reads up "
            f"to {CARD_VERSION}); upgrade igfiqa"
        )
    spec = card.get("model_spec")
    if not isinstance(spec, dict) or not {"name", "input_size", "num_features"} <= set(spec):
        raise CheckpointError(
            f"{where}: model card lacks a model_spec with name, input_size and num_features"
        )
    return card


def read_card(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate a model card JSON file."""
    path = Path(path)
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise CheckpointError(f"model card {path} not found") from error
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"model card {path} is not readable JSON: {error}") from error
    return validate_card(card, where=str(path))


def write_card(card: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """Write a model card as indented JSON, atomically."""
    atomic_write_text(json.dumps(json_safe(card), indent=2) + "\n", path, private=False)


def find_card_for(path: Path) -> Path | None:
    """The model card belonging to a weights/ONNX file: ``<stem>.json`` or ``model_card.json`` beside it."""
    for candidate in (path.with_suffix(".json"), path.parent / CARD_FILE):
        if candidate.is_file():
            return candidate
    return None


__all__ = [
    "CARD_FILE",
    "CARD_FORMAT",
    "CARD_VERSION",
    "LANDMARK_ORDER",
    "ONNX_FILE",
    "WEIGHTS_FILE",
    "alignment_template",
    "find_card_for",
    "make_model_card",
    "read_card",
    "validate_card",
    "write_card",
]
