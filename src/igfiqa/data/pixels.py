"""The one pixel normalisation of every network input, training and inference alike:
RGB, float32 ``(pixel / 255 - 0.5) / 0.5`` in [-1, 1], channels first."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from igfiqa.errors import DataError

NORMALISATION_MEAN = (0.5, 0.5, 0.5)
NORMALISATION_STD = (0.5, 0.5, 0.5)
COLOUR_ORDER = "RGB"


def normalise_into(image: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Write ``(image / 255 - 0.5) / 0.5`` of an (S, S, 3) uint8 RGB image into ``out`` (3, S, S) float32."""
    np.divide(image.transpose(2, 0, 1), np.float32(255.0), out=out)
    out -= np.float32(NORMALISATION_MEAN[0])
    out /= np.float32(NORMALISATION_STD[0])
    return out


def normalise_batch(images: Sequence[np.ndarray]) -> np.ndarray:
    """Stack (S, S, 3) uint8 RGB images into the network input float32 (B, 3, S, S) in [-1, 1]."""
    if not len(images):
        raise DataError("no images to normalise")
    size = images[0].shape[0]
    batch = np.empty((len(images), 3, size, size), dtype=np.float32)
    for index, image in enumerate(images):
        normalise_into(image, batch[index])
    return batch


__all__ = [
    "COLOUR_ORDER",
    "NORMALISATION_MEAN",
    "NORMALISATION_STD",
    "normalise_batch",
    "normalise_into",
]
