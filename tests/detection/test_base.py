"""Box overlap, non-maximum suppression and the share of a box outside the photograph against hand
computations and a brute-force rule."""

from __future__ import annotations

import numpy as np
import pytest

from igfiqa.detection.base import Face, box_overlap, nms, outside_fraction


def test_box_overlap_by_hand() -> None:
    box = np.array([0.0, 0.0, 10.0, 10.0])
    others = np.array([[5.0, 5.0, 15.0, 15.0], [20.0, 20.0, 30.0, 30.0], [0.0, 0.0, 5.0, 10.0]])
    # intersections 25, 0, 50; unions 175, 200, 100; smaller areas 100, 100, 50
    np.testing.assert_allclose(box_overlap(box, others), [25 / 175, 0.0, 0.5])
    np.testing.assert_allclose(box_overlap(box, others, mode="min"), [0.25, 0.0, 1.0])


def test_nms_keeps_exactly_what_the_greedy_rule_keeps() -> None:
    rng = np.random.default_rng(3)
    corners = rng.uniform(0, 100, (60, 2))
    sizes = rng.uniform(5, 40, (60, 2))
    boxes = np.concatenate([corners, corners + sizes, rng.random((60, 1))], axis=1)
    kept = nms(boxes, 0.4)
    # brute force: walk by descending score, keep a box unless it overlaps a kept one by > 0.4
    expected: list[int] = []
    for i in np.argsort(-boxes[:, 4], kind="stable"):
        if all(box_overlap(boxes[j], boxes[i : i + 1])[0] <= 0.4 for j in expected):
            expected.append(int(i))
    assert kept.tolist() == expected
    assert np.all(np.diff(boxes[kept, 4]) <= 0)  # best first


def test_face_area_and_interocular() -> None:
    face = Face(
        box=np.array([10.0, 20.0, 40.0, 60.0]),
        score=0.9,
        landmarks=np.array([[0.0, 0.0], [3.0, 4.0], [0, 0], [0, 0], [0, 0]]),
    )
    assert face.area == 1200.0
    assert face.interocular == 5.0


def test_outside_fraction_by_hand() -> None:
    assert outside_fraction(np.array([10.0, 10.0, 50.0, 50.0]), 100, 100) == 0.0
    # obama_partial_face.jpg's face: x1 = -25.6 of a 228-pixel-wide box
    box = np.array([-25.6, 100.0, 202.4, 400.0])
    assert outside_fraction(box, 491, 1137) == pytest.approx(25.6 / 228.0)
    # a quarter off the right edge and a quarter off the bottom: 1 - 0.75 * 0.75
    assert outside_fraction(np.array([70.0, 70.0, 110.0, 110.0]), 100, 100) == pytest.approx(
        1 - 0.75**2
    )
    assert outside_fraction(np.array([120.0, 0.0, 150.0, 30.0]), 100, 100) == 1.0
    assert outside_fraction(np.array([5.0, 5.0, 5.0, 9.0]), 100, 100) == 0.0  # an empty box
