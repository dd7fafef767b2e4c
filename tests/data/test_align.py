"""Alignment: Umeyama similarity equals scikit-image's estimate; the warp puts landmarks on the template."""

from __future__ import annotations

import numpy as np
import pytest

from igfiqa.data.align import ARCFACE_TEMPLATE, align_face, estimate_similarity
from igfiqa.errors import DataError


def _skimage_params(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    from skimage.transform import SimilarityTransform

    if hasattr(SimilarityTransform, "from_estimate"):
        transform = SimilarityTransform.from_estimate(src, dst)
    else:  # pragma: no cover - older scikit-image
        transform = SimilarityTransform()
        assert transform.estimate(src, dst)
    return transform.params


@pytest.mark.parametrize("seed", range(20))
def test_matches_scikit_image_on_random_landmarks(seed: int) -> None:
    rng = np.random.default_rng(seed)
    # A noisy, rotated, scaled, shifted copy of the template (what a detector gives) ...
    angle = rng.uniform(-np.pi, np.pi)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    src = ARCFACE_TEMPLATE @ rot.T * rng.uniform(0.3, 4) + rng.uniform(-200, 400, 2)
    src += rng.normal(0, 3, src.shape)
    # ... and, for odd seeds, arbitrary points (worse fits, possibly needing the reflection guard).
    if seed % 2:
        src = rng.uniform(0, 500, (5, 2))
    expected = _skimage_params(src, ARCFACE_TEMPLATE)
    np.testing.assert_allclose(estimate_similarity(src, ARCFACE_TEMPLATE), expected[:2], atol=1e-6)


def test_exact_similarity_is_recovered_and_has_no_reflection() -> None:
    angle, scale, shift = 0.3, 1.7, np.array([10.0, -4.0])
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    dst = ARCFACE_TEMPLATE @ (scale * rot).T + shift
    matrix = estimate_similarity(ARCFACE_TEMPLATE, dst)
    np.testing.assert_allclose(matrix[:, :2], scale * rot, atol=1e-12)
    np.testing.assert_allclose(matrix[:, 2], shift, atol=1e-12)
    # A mirrored point set must still give a proper rotation (det > 0), never a reflection.
    mirrored = ARCFACE_TEMPLATE * np.array([-1.0, 1.0])
    assert np.linalg.det(estimate_similarity(mirrored, ARCFACE_TEMPLATE)[:, :2]) > 0


def test_align_face_puts_marked_landmarks_on_the_template() -> None:
    # A 300x260 image with five bright dots at known, transformed landmark positions.
    angle, scale, shift = -0.25, 2.1, np.array([60.0, 30.0])
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    landmarks = ARCFACE_TEMPLATE @ (scale * rot).T + shift
    image = np.zeros((300, 260, 3), np.uint8)
    for x, y in landmarks:
        image[round(y) - 3 : round(y) + 4, round(x) - 3 : round(x) + 4] = 255
    aligned = align_face(image, landmarks)
    assert aligned.shape == (112, 112, 3) and aligned.dtype == np.uint8
    for x, y in ARCFACE_TEMPLATE:
        assert aligned[round(y), round(x)].min() > 200
    # Border outside the source image is black.
    far = np.array([[1000.0, 1000.0], [1040, 1000], [1020, 1020], [1005, 1040], [1035, 1040]])
    assert align_face(image, far).max() == 0


def test_align_face_other_size_scales_template() -> None:
    image = np.full((112, 112, 3), 77, np.uint8)
    out = align_face(image, ARCFACE_TEMPLATE * 1.0, size=56)
    assert out.shape == (56, 56, 3)
    # Identity landmarks at half-size template -> scale 0.5: the whole output comes from the image.
    assert (out == 77).all()


def test_bad_landmarks_raise_data_error() -> None:
    image = np.zeros((50, 50, 3), np.uint8)
    with pytest.raises(DataError, match="5 landmarks"):
        align_face(image, np.zeros((4, 2)))
    with pytest.raises(DataError, match="degenerate"):
        align_face(image, np.ones((5, 2)))
    with pytest.raises(DataError, match="NaN"):
        align_face(image, np.full((5, 2), np.nan))
    with pytest.raises(DataError, match="uint8"):
        align_face(image.astype(np.float32), ARCFACE_TEMPLATE)
