"""Face recognition models for evaluation: anything that maps aligned uint8 RGB faces
(B, S, S, 3) to embeddings (B, F).

An igfiqa checkpoint / export / CR-FIQA backbone (:func:`igfiqa.inference.load_model`), a TorchScript
file, an ONNX file (onnxruntime through :class:`~igfiqa.inference.runners.OnnxRunner`, the ``onnx``
extra), or from Python any callable. External models get the project's input layout: float32
(B, 3, S, S), RGB, ``(pixel / 255 - 0.5) / 0.5`` (:mod:`igfiqa.data.pixels`).
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from igfiqa.data.pixels import normalise_batch
from igfiqa.errors import CheckpointError
from igfiqa.files import content_digest, file_signature
from igfiqa.inference.runners import OnnxRunner, resolve_device

ImageFunction = Callable[[np.ndarray], np.ndarray]


def fr_batch(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 (B, H, W, 3) RGB -> float32 (B, 3, size, size) in [-1, 1], resizing if needed."""
    if images.shape[1] != size or images.shape[2] != size:
        import cv2

        images = np.stack(
            [cv2.resize(im, (size, size), interpolation=cv2.INTER_AREA) for im in images]
        )
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


def _is_torchscript(path: Path) -> bool:
    if path.suffix.lower() in (".ts", ".torchscript", ".jit"):
        return True
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in name or name.startswith("code/") for name in archive.namelist())


def _torchscript_model(path: Path, device: str, input_size: int) -> ImageFunction:
    import torch

    try:
        module = torch.jit.load(str(path), map_location=device).eval()
    except (RuntimeError, ValueError) as error:
        raise CheckpointError(f"{path}: not a loadable TorchScript file ({error})") from error

    def embed(images: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            out = module(torch.from_numpy(fr_batch(images, input_size)).to(device))
        if isinstance(out, (tuple, list)):
            out = out[0]
        return out.float().cpu().numpy()

    return embed


def _onnx_model(path: Path, device: str) -> tuple[ImageFunction, int]:
    """A bare ONNX FR model (its first input and first output) through the one ONNX runner."""
    runner = OnnxRunner(path, device=device, names="first")
    size = runner.input_size or 112

    def embed(images: np.ndarray) -> np.ndarray:
        return runner(fr_batch(images, size))[0]

    return embed, size


def load_fr_model(
    spec: str | os.PathLike[str] | Callable[[np.ndarray], np.ndarray] | FRModel,
    *,
    device: str = "auto",
    name: str | None = None,
    input_size: int = 112,
) -> FRModel:
    """Resolve an FR model spec.

    ``spec`` is an :class:`FRModel`; a callable (aligned uint8 (B, S, S, 3) -> (B, F); cached only
    when ``name`` is given, under that name); ``torchscript:PATH`` / ``onnx:PATH`` / ``igfiqa:PATH``;
    or a path whose kind is detected: ``.onnx`` -> onnxruntime, a TorchScript archive -> TorchScript,
    anything else -> :func:`igfiqa.inference.load_model` (checkpoint, export, CR-FIQA backbone).
    """
    if isinstance(spec, FRModel):
        return spec
    if callable(spec) and not isinstance(spec, (str, os.PathLike)):
        label = name or getattr(spec, "__name__", type(spec).__name__)
        key = content_digest("callable", name) if name else None
        return FRModel(label, spec, key, input_size)
    text = os.fspath(spec)
    if device == "auto":  # onnxruntime decides for itself below; torch paths need a name
        device = (
            "auto" if text.startswith("onnx:") or text.endswith(".onnx") else resolve_device(device)
        )
    kind = None
    for prefix in ("torchscript:", "onnx:", "igfiqa:"):
        if text.startswith(prefix):
            kind, text = prefix[:-1], text[len(prefix) :]
    path = Path(text).expanduser()
    if not path.exists():
        raise CheckpointError(f"FR model {path} does not exist")
    if kind is None:
        if path.suffix.lower() == ".onnx":
            kind = "onnx"
        elif path.is_file() and _is_torchscript(path):
            kind = "torchscript"
        else:
            kind = "igfiqa"
    label = name or path.name
    key = content_digest(kind, file_signature(path))
    if kind == "torchscript":
        return FRModel(label, _torchscript_model(path, device, input_size), key, input_size)
    if kind == "onnx":
        from igfiqa.inference.card import find_card_for

        if path.is_dir() or find_card_for(path) is not None:  # an igfiqa ONNX export
            from igfiqa.inference import load_model

            model = load_model(path, device=device, backend="onnx")
            return _from_quality_model(model, label, key)
        embed, size = _onnx_model(path, device)
        return FRModel(label, embed, key, size)
    from igfiqa.inference import load_model

    return _from_quality_model(load_model(path, device=device), label, key)


def _from_quality_model(model: Any, label: str, key: str) -> FRModel:
    size = int(model.input_size)

    def embed(images: np.ndarray) -> np.ndarray:
        return model.forward_batch(fr_batch(images, size))[0]

    network = getattr(model.runner, "network", None)
    return FRModel(label, embed, key, size, network=network, quality_model=model)


__all__ = ["FRModel", "fr_batch", "load_fr_model"]
