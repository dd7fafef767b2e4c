"""Write a labelled image source (any :class:`~igfiqa.data.datasets.FaceDataset`) out as an
insightface RecordIO folder, an identity folder, or an insightface verification ``.bin``.

Images are stored as JPEG (quality 95 by default) or PNG (``image_format="png"``, lossless).
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from igfiqa.errors import ConfigError, DataError

ProgressFn = Callable[[int, int], None]


def encode_image(image: np.ndarray, image_format: str = "jpg", quality: int = 95) -> bytes:
    """RGB uint8 -> encoded JPEG or PNG bytes."""
    bgr = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR)
    if image_format in ("jpg", "jpeg"):
        ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    elif image_format == "png":
        ok, data = cv2.imencode(".png", bgr)
    else:
        raise ConfigError(f"image format must be 'jpg' or 'png', got {image_format!r}")
    if not ok:
        raise DataError(f"could not encode an image of shape {image.shape} as {image_format}")
    return data.tobytes()


def _ordered_indices(labels: np.ndarray) -> np.ndarray:
    """Sample indices grouped by class (stable), as the insightface layout needs."""
    return np.argsort(labels, kind="stable")


def write_recordio(
    dataset,
    root: str | os.PathLike[str],
    *,
    image_format: str = "jpg",
    quality: int = 95,
    progress: ProgressFn | None = None,
) -> Path:
    """Write ``dataset`` as ``root/train.rec``, ``train.idx``, ``property`` (insightface layout)."""
    from igfiqa.data.recordio import write_insightface_recordio

    order = _ordered_indices(dataset.labels)

    def images():
        for done, index in enumerate(order, start=1):
            yield encode_image(dataset.load_image(int(index)), image_format, quality)
            if progress is not None:
                progress(done, len(order))

    return write_insightface_recordio(
        root, images(), dataset.labels[order], image_size=dataset.image_size
    )


def write_identity_folder(
    dataset,
    root: str | os.PathLike[str],
    *,
    image_format: str = "png",
    quality: int = 95,
    progress: ProgressFn | None = None,
) -> Path:
    """Write ``dataset`` as ``root/<class name>/<index>.<ext>``; the class order is preserved when
    class names sort in id order (names of numeric classes are zero-padded to guarantee it)."""
    root = Path(root)
    names = _folder_names(list(dataset.class_names))
    ext = "jpg" if image_format in ("jpg", "jpeg") else image_format
    root.mkdir(parents=True, exist_ok=True)
    for done, index in enumerate(range(len(dataset)), start=1):
        folder = root / names[int(dataset.labels[index])]
        folder.mkdir(exist_ok=True)
        data = encode_image(dataset.load_image(index), image_format, quality)
        (folder / f"{index:07d}.{ext}").write_bytes(data)
        if progress is not None:
            progress(done, len(dataset))
    return root


def _folder_names(names: list[str]) -> list[str]:
    """Folder names whose sorted order is the class order (so re-reading gives the same ids)."""
    width = len(str(max(len(names) - 1, 0)))
    if names and all(name.isdigit() for name in names):
        digits = max(len(name) for name in names)
        names = [f"{int(name):0{digits}d}" for name in names]
    if names == sorted(names) and len(set(names)) == len(names):
        return names
    return [f"{i:0{width}d}_{name}" for i, name in enumerate(names)]


def verification_pairs(
    labels: np.ndarray, num_pairs: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """``num_pairs`` (P, 2) sample pairs, alternating mated / non-mated, drawn reproducibly.

    Mated pairs are two different samples of a class with >= 2 samples; non-mated pairs two samples
    of different classes.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    by_class = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    multi = [members for members in by_class if len(members) >= 2]
    if not multi or len(by_class) < 2:
        raise DataError("a verification set needs >= 2 classes and a class with >= 2 samples")
    pairs = np.empty((num_pairs, 2), dtype=np.int64)
    mated = np.zeros(num_pairs, dtype=bool)
    n = len(labels)
    for p in range(num_pairs):
        if p % 2 == 0:
            members = multi[rng.integers(len(multi))]
            pairs[p] = rng.choice(members, 2, replace=False)
            mated[p] = True
        else:
            while True:
                a, b = rng.integers(n, size=2)
                if labels[a] != labels[b]:
                    break
            pairs[p] = (a, b)
    return pairs, mated


def write_verification_bin(
    dataset,
    path: str | os.PathLike[str],
    *,
    num_pairs: int = 600,
    seed: int = 0,
    image_format: str = "jpg",
    quality: int = 95,
    progress: ProgressFn | None = None,
) -> Path:
    """Write an insightface ``.bin``: a pickle of ``(bins, issame_list)`` with pair i = images 2i, 2i+1."""
    pairs, mated = verification_pairs(dataset.labels, num_pairs, seed)
    cache: dict[int, bytes] = {}
    bins: list[bytes] = []
    for done, index in enumerate(pairs.ravel(), start=1):
        index = int(index)
        if index not in cache:
            cache[index] = encode_image(dataset.load_image(index), image_format, quality)
        bins.append(cache[index])
        if progress is not None:
            progress(done, pairs.size)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        pickle.dump((bins, [bool(m) for m in mated]), handle, protocol=4)
    return path


__all__ = [
    "encode_image",
    "verification_pairs",
    "write_identity_folder",
    "write_recordio",
    "write_verification_bin",
]
