"""The one pixel normalisation of every network input, training and inference alike:
RGB, float32 ``(pixel / 255 - 0.5) / 0.5`` in [-1, 1], channels first; and the one resize policy
that brings an image to a network's input side (:func:`resize_to`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from igfiqa.errors import DataError

NORMALISATION_MEAN = (0.5, 0.5, 0.5)
NORMALISATION_STD = (0.5, 0.5, 0.5)
COLOUR_ORDER = "RGB"
RESIZE_POLICY = "resize_to/1: area if H*W > S*S, else bilinear; square"
"""Names the rule of :func:`resize_to`; caches of what networks computed from resized images
(``evaluate``'s embeddings) include it, so changing the rule recomputes them."""


def normalise_into(image: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Write ``(image / 255 - 0.5) / 0.5`` of an (S, S, 3) uint8 RGB image into ``out`` (3, S, S) float32."""
    np.divide(image.transpose(2, 0, 1), np.float32(255.0), out=out)
    out -= np.float32(NORMALISATION_MEAN[0])
    out /= np.float32(NORMALISATION_STD[0])
    return out


def resize_interpolation(height: int, width: int, size: int) -> str:
    """The interpolation :func:`resize_to` uses for an (height, width) image and side ``size``:
    ``"area"`` when it shrinks (the image has more pixels than ``size`` x ``size``), else
    ``"bilinear"``. Names as ``torch.nn.functional.interpolate`` spells its modes, so a path that
    resizes tensors applies the same rule."""
    return "area" if height * width > size * size else "bilinear"


def resize_to(image: np.ndarray, size: int) -> np.ndarray:
    """The one resize policy: ``image`` (H, W[, C]) -> (``size``, ``size``[, C]), a pure function.

    - H = W = ``size``: ``image`` itself is returned (not a copy), bit for bit;
    - shrinking (H x W > ``size`` x ``size``): OpenCV ``INTER_AREA``, which averages the source
      pixels each output pixel covers (no aliasing);
    - otherwise (enlarging): ``INTER_LINEAR`` (bilinear). Not ``INTER_AREA``, which when
      enlarging degenerates to nearest neighbour (blocks); not cubic, which overshoots and clips
      at 0 and 255 and would change what training and scoring have always computed.

    The output is always square: a non-square image is stretched, its aspect ratio not kept.
    Faces reach a network as aligned square crops (training sets, benchmark readers, the aligner),
    so a non-square input is a crop someone made otherwise, and stretching it is what every
    resizing path of igfiqa has done. Whether an image of the wrong size is resized or refused is
    the caller's rule (scoring refuses unless ``resize=True``), not this function's.

    Shrinking is decided by the pixel count, the training pipeline's rule, so training data are
    resized exactly as before; for a square image it is the same as comparing sides.
    """
    size = int(size)
    if size < 1:
        raise ValueError(f"resize_to: size must be positive, got {size}")
    height, width = image.shape[:2]
    if height == size and width == size:
        return image
    import cv2

    area = resize_interpolation(height, width, size) == "area"
    interpolation = cv2.INTER_AREA if area else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=interpolation)


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
    "RESIZE_POLICY",
    "normalise_batch",
    "normalise_into",
    "resize_interpolation",
    "resize_to",
]
