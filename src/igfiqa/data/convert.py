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

from igfiqa.errors import ConfigError, DataError, ImageDecodeError
from igfiqa.files import atomic_write

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


class ConversionReport:
    """What a conversion wrote and which samples it skipped (undecodable images)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.written = 0
        self.failures: list[tuple[int, str]] = []

    def as_dict(self) -> dict:
        return {
            "path": str(self.path),
            "written": self.written,
            "failed": len(self.failures),
            "failures": [{"index": i, "error": e} for i, e in self.failures[:100]],
        }


def _load(dataset, index: int, report: ConversionReport) -> np.ndarray | None:
    try:
        return dataset.load_image(index)
    except ImageDecodeError as error:
        report.failures.append((index, str(error)))
        return None


def write_recordio(
    dataset,
    root: str | os.PathLike[str],
    *,
    image_format: str = "jpg",
    quality: int = 95,
    progress: ProgressFn | None = None,
) -> ConversionReport:
    """Write ``dataset`` as ``root/train.rec``, ``train.idx``, ``property`` (insightface layout).

    Undecodable source images are skipped and listed in the returned report.
    """
    from igfiqa.data.recordio import write_insightface_recordio

    order = np.argsort(dataset.labels, kind="stable")  # grouped by class
    report = ConversionReport(Path(root))

    def items():
        for done, index in enumerate(order, start=1):
            image = _load(dataset, int(index), report)
            if image is not None:
                yield encode_image(image, image_format, quality), int(dataset.labels[index])
            if progress is not None:
                progress(done, len(order))

    report.path, report.written = write_insightface_recordio(
        root, items(), image_size=dataset.image_size, num_classes=dataset.num_classes
    )
    return report


def write_identity_folder(
    dataset,
    root: str | os.PathLike[str],
    *,
    image_format: str = "png",
    quality: int = 95,
    progress: ProgressFn | None = None,
) -> ConversionReport:
    """Write ``dataset`` as ``root/<class>/<index>.<ext>``, folder names sorting in class order
    (numeric names are zero-padded; others get a zero-padded id prefix when needed)."""
    root = Path(root)
    names = _folder_names(list(dataset.class_names))
    ext = "jpg" if image_format in ("jpg", "jpeg") else image_format
    root.mkdir(parents=True, exist_ok=True)
    report = ConversionReport(root)
    for index in range(len(dataset)):
        image = _load(dataset, index, report)
        if image is not None:
            folder = root / names[int(dataset.labels[index])]
            folder.mkdir(exist_ok=True)
            (folder / f"{index:07d}.{ext}").write_bytes(encode_image(image, image_format, quality))
            report.written += 1
        if progress is not None:
            progress(index + 1, len(dataset))
    return report


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
    for index in np.unique(pairs):
        image = dataset.load_image(int(index))  # a .bin cannot skip images: errors propagate
        cache[int(index)] = encode_image(image, image_format, quality)
        if progress is not None:
            progress(len(cache), len(np.unique(pairs)))
    bins = [cache[int(index)] for index in pairs.ravel()]
    payload = (bins, [bool(m) for m in mated])
    return atomic_write(
        path, lambda handle: pickle.dump(payload, handle, protocol=4), private=False
    )


__all__ = [
    "ConversionReport",
    "encode_image",
    "verification_pairs",
    "write_identity_folder",
    "write_recordio",
    "write_verification_bin",
]
