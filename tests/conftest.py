"""Fixtures shared by several test folders: a real photograph with hand-checked landmarks and the
face detector."""

from __future__ import annotations

import numpy as np
import pytest

from igfiqa.evaluation.real_photos import ASTRONAUT, landmarks_listing


@pytest.fixture(scope="session")
def astronaut() -> tuple[np.ndarray, np.ndarray]:
    """scikit-image's astronaut (512x512 RGB) and its five landmarks from the committed listing."""
    skimage_data = pytest.importorskip("skimage.data")
    entry = next(e for e in landmarks_listing()["photos"] if e["member"] == ASTRONAUT)
    return skimage_data.astronaut(), np.asarray(entry["faces"][0]["landmarks"], dtype=np.float64)


@pytest.fixture(scope="session")
def detector():
    from igfiqa.detection import load_detector

    return load_detector()
