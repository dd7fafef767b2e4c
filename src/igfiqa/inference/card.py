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


CARD_MAX_BYTES = 16 * 1024 * 1024
"""Largest model card read (an export's card is a few kB; its calibrations a few hundred kB)."""
CARD_MAX_DEPTH = 64
"""Deepest nesting of objects and lists accepted in a model card (an export's card is ~6 deep)."""


NOT_A_CARD = "it is not an igfiqa model card (export the model again)"


def _too_big(where: str, size: int, verdict: str = NOT_A_CARD) -> CheckpointError:
    return CheckpointError(
        f"{where}: {size:,} bytes, more than the {CARD_MAX_BYTES:,}-byte limit of a model card; "
        f"{verdict}"
    )


def read_card_bytes(
    path: str | os.PathLike[str], *, where: str, verdict: str = NOT_A_CARD
) -> bytes:
    """The bytes of a card file: a regular file (a FIFO or device is not read) of at most
    :data:`CARD_MAX_BYTES`; anything else is a one-line CheckpointError."""
    from igfiqa.errors import DataError
    from igfiqa.files import read_regular_file

    try:
        size = Path(path).stat().st_size
    except OSError:
        size = 0  # read_regular_file names what is wrong
    if size > CARD_MAX_BYTES and Path(path).is_file():
        raise _too_big(where, size, verdict)
    try:
        return read_regular_file(path, where, max_bytes=CARD_MAX_BYTES)
    except DataError as error:
        raise CheckpointError(str(error)) from None


def parse_card_json(text: str | bytes, *, where: str, verdict: str = NOT_A_CARD) -> Any:
    """JSON of a model card (a file or a safetensors header) with bounds on size and nesting, so a
    crafted card cannot exhaust memory or the stack; anything else is a one-line CheckpointError."""
    if len(text) > CARD_MAX_BYTES:
        raise _too_big(where, len(text), verdict)
    try:
        value = json.loads(text)
    except RecursionError:
        value = None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{where} is not readable JSON: {error}") from None
    else:
        depth, level = 0, [value]
        while level and depth <= CARD_MAX_DEPTH:
            depth += 1
            level = [
                child
                for item in level
                if isinstance(item, (dict, list))
                for child in (item.values() if isinstance(item, dict) else item)
            ]
        if not level:
            return value
    raise CheckpointError(f"{where}: nested more than {CARD_MAX_DEPTH} levels deep; {verdict}")


def card_file_hashes(card: Mapping[str, Any], *, where: str) -> dict[str, str]:
    """File name -> SHA-256 of the files a card lists (``files.sha256``; empty for cards written
    before igfiqa listed them)."""
    files = card.get("files")
    listed = files.get("sha256") if isinstance(files, Mapping) else None
    if listed is None:
        return {}
    if not isinstance(listed, Mapping) or not all(
        isinstance(name, str)
        and name == Path(name).name
        and isinstance(digest, str)
        and len(digest) == 64
        for name, digest in listed.items()
    ):
        raise CheckpointError(
            f"{where}: the model card's files.sha256 is not a map of file names to SHA-256 "
            "digests; export the model again"
        )
    return dict(listed)


def verify_card_files(
    card: Mapping[str, Any],
    card_path: str | os.PathLike[str],
    *,
    names: Any = None,
    known: Mapping[str, str] | None = None,
) -> None:
    """Check that the files the card lists beside ``card_path`` are those it was written with.

    ``names`` (default: every listed file and ``model.onnx``) are checked where they exist: their
    SHA-256 (from ``known`` where the caller has it) must be the listed one. ``model.onnx`` also
    needs its external data file where the card lists one, and must be listed when the card
    lists files.
    A mismatch means the folder mixes two exports (one replaced while being written, or a file
    copied in); it is refused rather than loaded with the wrong card."""
    from igfiqa.files import file_sha256

    card_path = Path(card_path)
    listed = card_file_hashes(card, where=str(card_path))
    if not listed:
        return
    folder = card_path.parent
    files = card.get("files") or {}
    wanted = [*listed, ONNX_FILE] if names is None else list(names)
    if ONNX_FILE in wanted:
        if ONNX_FILE not in listed and (folder / ONNX_FILE).exists():
            raise CheckpointError(
                f"{folder / ONNX_FILE} is not part of the export its model card {card_path} "
                "describes (the card lists no ONNX graph); export the model again with --onnx"
            )
        data = files.get("onnx_data")
        if isinstance(data, str) and data in listed:
            if not (folder / data).is_file():
                raise CheckpointError(
                    f"{folder / ONNX_FILE} keeps its weights in {data}, which is missing beside "
                    f"it: copy the whole export folder (its model card {card_path.name} lists "
                    "every file)"
                )
            wanted.append(data)
    for name in dict.fromkeys(wanted):
        path = folder / name
        if name not in listed or not path.is_file():
            continue
        try:
            digest = (known or {}).get(name) or file_sha256(path)
        except OSError as error:
            raise CheckpointError(f"{path}: cannot be read ({error.strerror or error})") from None
        if digest != listed[name]:
            raise CheckpointError(
                f"{path} is not the file its model card {card_path} was written with (SHA-256 "
                "differs): the folder mixes two exports (one interrupted while replacing the "
                "other, or a file copied in); export the model again"
            )


def read_card(path: str | os.PathLike[str], *, verify: Any = None) -> dict[str, Any]:
    """Read and validate a model card JSON file (bounded in size and depth).

    ``verify`` names the files beside it to check against the SHA-256 the card lists
    (:func:`verify_card_files`); None checks every listed file that is there, ``()`` none."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"model card {path} not found")
    data = read_card_bytes(path, where=f"model card {path}")
    card = validate_card(parse_card_json(data, where=f"model card {path}"), where=str(path))
    verify_card_files(card, path, names=verify)
    return card


def write_card(card: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """Write a model card as indented JSON, atomically."""
    atomic_write_text(json.dumps(json_safe(card), indent=2) + "\n", path, private=False)


SYNTHETIC_SOURCE_PREFIX = "synthetic:"
"""How a training data source of igfiqa's synthetic face renderer starts (the ``data.source`` of
a training config, :data:`igfiqa.config.SYNTHETIC_PREFIX`)."""


def synthetic_training(card: Mapping[str, Any]) -> str | None:
    """The ``synthetic:...`` spec a model was trained on when its card says it was trained only on
    igfiqa's synthetic faces (``training.data.source``); None otherwise (released models, models
    trained on real faces, cards that do not say)."""
    training = card.get("training")
    data = training.get("data") if isinstance(training, Mapping) else None
    source = data.get("source") if isinstance(data, Mapping) else None
    if isinstance(source, str) and source.strip().startswith(SYNTHETIC_SOURCE_PREFIX):
        return source.strip()
    return None


def synthetic_warning(card: Mapping[str, Any], where: str) -> str | None:
    """What to tell someone who scores photographs with the model of ``card`` (named ``where``)
    when it was trained only on synthetic faces; None when it was not."""
    spec = synthetic_training(card)
    if spec is None:
        return None
    calibration = card.get("calibration") or {}
    reference = calibration.get("reference") if isinstance(calibration, Mapping) else None
    source = str((reference or {}).get("source") or "") if isinstance(reference, Mapping) else ""
    scale = (
        " and its 0-100 score is a percentile among synthetic faces"
        if source.startswith(SYNTHETIC_SOURCE_PREFIX)
        else ""
    )
    return (
        f"{where} was trained only on igfiqa's synthetic faces ({spec}): its quality scores do "
        f"not rank photographs by their use for face recognition (docs/results.md, 'Transfer to "
        f"real photographs'){scale}. Score photographs with a model trained on real faces "
        "(`igfiqa models` lists the released ones)"
    )


def card_summary(card: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(field, text)`` lines that describe a model card for a person: kind, architecture, input,
    outputs, training data (saying so when it was synthetic faces only), the 0-100 calibration and
    the expected-FNMR calibration, ONNX. ``igfiqa info`` prints them."""
    spec = card.get("model_spec") or {}
    kind = card.get("kind") or {}
    size = spec.get("input_size")
    lines = [
        ("kind", f"{kind.get('kind', 'igfiqa')} -- {kind.get('method', '')}".rstrip(" -")),
        ("architecture", f"{spec.get('name')} (width {spec.get('width', 1.0)})"),
        ("input", f"{size}x{size} RGB aligned face crops (five-point template in the card)"),
        ("embedding", f"{spec.get('num_features')}-d"),
    ]
    outputs = card.get("outputs") or {}
    lines.append(
        ("quality", "raw score, higher = better" if outputs.get("quality") else "none (FR model)")
    )
    training = card.get("training") or {}
    data = training.get("data") if isinstance(training, Mapping) else None
    source = data.get("source") if isinstance(data, Mapping) else None
    synthetic = synthetic_training(card)
    if synthetic is not None:
        lines.append(
            (
                "training",
                f"{synthetic}: igfiqa's synthetic faces ONLY -- its scores of photographs are "
                "not meaningful (docs/results.md, 'Transfer to real photographs')",
            )
        )
    elif source:
        lines.append(("training", str(source)))
    else:
        lines.append(("training", "not recorded in the card"))
    calibration = card.get("calibration")
    if isinstance(calibration, Mapping):
        reference = calibration.get("reference") or {}
        lines.append(
            (
                "0-100 score",
                f"percentile rank among {reference.get('num_images')} reference images of "
                f"{reference.get('source')} (an order, not an ISO/IEC 29794 quality and not a "
                "recognition cost)",
            )
        )
    else:
        lines.append(("0-100 score", "none (no calibration in the card)"))
    fnmr = card.get("expected_fnmr")
    if isinstance(fnmr, Mapping):
        info = fnmr.get("info") or {}
        lines.append(
            (
                "expected FNMR",
                f"at FMR {fnmr.get('fmr')} with FR model {info.get('fr_model', '?')} on "
                f"{info.get('benchmark', '?')}",
            )
        )
    onnx = card.get("onnx")
    if isinstance(onnx, Mapping):
        lines.append(("onnx", f"opset {onnx.get('opset')}"))
    return lines


def find_card_for(path: Path) -> Path | None:
    """The model card belonging to a weights/ONNX file: ``<stem>.json`` or ``model_card.json`` beside it."""
    for candidate in (path.with_suffix(".json"), path.parent / CARD_FILE):
        if candidate.is_file():
            return candidate
    return None


__all__ = [
    "CARD_FILE",
    "CARD_FORMAT",
    "CARD_MAX_BYTES",
    "CARD_MAX_DEPTH",
    "CARD_VERSION",
    "LANDMARK_ORDER",
    "ONNX_FILE",
    "SYNTHETIC_SOURCE_PREFIX",
    "WEIGHTS_FILE",
    "alignment_template",
    "card_file_hashes",
    "card_summary",
    "find_card_for",
    "make_model_card",
    "parse_card_json",
    "read_card",
    "read_card_bytes",
    "synthetic_training",
    "synthetic_warning",
    "validate_card",
    "verify_card_files",
    "write_card",
]
