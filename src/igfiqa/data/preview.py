"""Contact sheets: a grid of images written as one PNG, to eyeball a data set."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np


def contact_sheet(
    images: Sequence[np.ndarray | None], columns: int = 8, cell: int = 112, gap: int = 2
) -> np.ndarray:
    """Tile RGB uint8 images (resized to ``cell`` x ``cell``) into a grid, row by row.

    ``None`` entries (images that failed to load) are drawn as a red cross.
    """
    count = max(len(images), 1)
    columns = max(1, min(columns, count))
    rows = (count + columns - 1) // columns
    sheet = np.full((rows * (cell + gap) + gap, columns * (cell + gap) + gap, 3), 255, np.uint8)
    for n, image in enumerate(images):
        r, c = divmod(n, columns)
        y, x = gap + r * (cell + gap), gap + c * (cell + gap)
        if image is None:
            tile = np.full((cell, cell, 3), 230, np.uint8)
            cv2.line(tile, (0, 0), (cell - 1, cell - 1), (220, 0, 0), 2)
            cv2.line(tile, (cell - 1, 0), (0, cell - 1), (220, 0, 0), 2)
        else:
            tile = cv2.resize(image, (cell, cell), interpolation=cv2.INTER_AREA)
        sheet[y : y + cell, x : x + cell] = tile
    return sheet


def write_png(path: str | os.PathLike[str], image: np.ndarray) -> Path:
    """Write an RGB uint8 image as PNG (creating the parent folder)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
        from igfiqa.errors import DataError

        raise DataError(f"{path}: could not write the PNG (check the folder and the extension)")
    return path


__all__ = ["contact_sheet", "write_png"]
