"""Turn user images (paths, bytes, PIL images, uint8 arrays) into the model's input tensor layout.

The model input is float32 (B, 3, S, S), RGB, ``(pixel / 255 - 0.5) / 0.5`` in [-1, 1]
(:mod:`igfiqa.data.pixels`). Decoding goes
through the project's one decoder :func:`igfiqa.data.decode.decode_image`; alignment through
:func:`igfiqa.data.align.align_face`. Nothing here imports torch.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from igfiqa.data.decode import IMAGE_EXTENSIONS
from igfiqa.data.pixels import resize_to
from igfiqa.errors import DataError


def is_pil_image(obj: Any) -> bool:
    """True for a ``PIL.Image.Image`` (checked without importing Pillow)."""
    return type(obj).__module__.startswith("PIL.") and hasattr(obj, "convert")


def to_rgb_array(image: Any, *, name: str | None = None) -> np.ndarray:
    """One image (path, encoded bytes, PIL image or uint8 array) -> RGB uint8 (H, W, 3).

    Arrays are taken as decoded pixels in RGB(A) order (greyscale is replicated, alpha composited on
    black, as :func:`igfiqa.data.decode.decode_image` does). Raises ImageDecodeError / DataError.
    """
    from igfiqa.data.decode import decode_image

    if is_pil_image(image):
        if image.mode not in ("RGB", "L", "RGBA", "LA"):
            image = image.convert("RGB")
        return decode_image(np.asarray(image), name=name or "<PIL image>")
    if isinstance(image, (str, os.PathLike, bytes, bytearray, memoryview, np.ndarray)):
        return decode_image(image, name=name)
    raise DataError(
        f"cannot score an object of type {type(image).__name__}: pass a path, encoded bytes, "
        "a PIL image or a uint8 (H, W, 3) RGB array"
    )


def fit_to_size(
    image: np.ndarray, size: int, *, resize: bool = False, name: str = "image"
) -> np.ndarray:
    """Check that ``image`` is ``size`` x ``size``; with ``resize`` scale it there instead of refusing,
    by the one resize policy :func:`igfiqa.data.pixels.resize_to` (area when shrinking, bilinear
    when enlarging, the aspect ratio ignored: inputs are meant to be aligned square crops).
    """
    height, width = image.shape[:2]
    if height == size and width == size:
        return image
    if not resize:
        raise DataError(
            f"{name}: image is {width}x{height} but the model expects {size}x{size} aligned face crops; "
            f"align it first (five landmarks, e.g. `igfiqa score --landmarks`) or allow resizing "
            f"(`--resize` / resize=True)"
        )
    return resize_to(image, size)


def as_image_list(images: Any) -> list[Any]:
    """A single image or a collection of them -> a list of single images.

    A 4-D uint8 array (N, H, W, C) counts as N images; a str/path/bytes/PIL image/2-D or 3-D array
    counts as one.
    """
    if isinstance(images, np.ndarray):
        return list(images) if images.ndim == 4 else [images]
    if isinstance(images, (str, os.PathLike, bytes, bytearray, memoryview)) or is_pil_image(images):
        return [images]
    if isinstance(images, Iterable):
        return list(images)
    return [images]


def find_images(folder: Path) -> list[Path]:
    """Every entry with an image file name under ``folder`` (recursive, hidden files skipped), sorted
    by its path relative to it. Broken links, FIFOs and the like are included so that scoring
    records a failure row for each instead of dropping them silently."""
    found = [
        path
        for path in folder.rglob("*")
        if path.suffix.lower() in IMAGE_EXTENSIONS
        and not path.name.startswith(".")
        and (path.is_symlink() or not path.is_dir())
    ]
    return sorted(found, key=lambda path: path.relative_to(folder).as_posix())


__all__ = [
    "IMAGE_EXTENSIONS",
    "as_image_list",
    "find_images",
    "fit_to_size",
    "to_rgb_array",
]
