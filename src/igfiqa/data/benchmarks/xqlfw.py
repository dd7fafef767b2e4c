"""``xqlfw``: a folder with ``xqlfw_pairs.txt`` and ``xqlfw_aligned_112/<name>/<name>_<n:04d>.jpg``
(``path`` may also be the pairs file itself)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from igfiqa.data.benchmarks.pairset import FileImages, PairSet
from igfiqa.data.benchmarks.registry import BenchmarkReader, register_benchmark
from igfiqa.errors import DataError
from igfiqa.files import read_text_file


def open_xqlfw(path: str | os.PathLike[str]) -> PairSet:
    """XQLFW: ``xqlfw_pairs.txt`` (LFW pairs format) + ``xqlfw_aligned_112/<name>/<name>_<n:04d>.jpg``."""
    path = Path(path)
    pairs_file = path if path.is_file() else path / "xqlfw_pairs.txt"
    root = pairs_file.parent
    image_root = root / "xqlfw_aligned_112"
    if not pairs_file.is_file():
        raise DataError(f"{pairs_file}: XQLFW pairs file not found")
    if not image_root.is_dir():
        raise DataError(
            f"{image_root}: XQLFW aligned image folder not found next to the pairs file"
        )
    index: dict[tuple[str, int], int] = {}
    pair_rows: list[tuple[int, int]] = []
    mated: list[bool] = []

    def sample(name: str, number: str, line_no: int) -> int:
        try:
            key = (name, int(number))
        except ValueError:
            raise DataError(
                f"{pairs_file}, line {line_no}: {number!r} is not an image number"
            ) from None
        return index.setdefault(key, len(index))

    lines = read_text_file(pairs_file).splitlines()
    for line_no, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields:
            continue
        if line_no == 1 and len(fields) <= 2:
            continue  # header ("folds pairs_per_fold")
        if len(fields) == 3:
            pair_rows.append(
                (sample(fields[0], fields[1], line_no), sample(fields[0], fields[2], line_no))
            )
            mated.append(True)
        elif len(fields) == 4:
            pair_rows.append(
                (sample(fields[0], fields[1], line_no), sample(fields[2], fields[3], line_no))
            )
            mated.append(False)
        else:
            raise DataError(
                f"{pairs_file}, line {line_no}: expected 'name n1 n2' or 'name1 n1 name2 n2', got {line!r}"
            )
    if not pair_rows:
        raise DataError(
            f"{pairs_file}: no pairs (the file is empty or holds only its header); expected lines "
            "'name n1 n2' or 'name1 n1 name2 n2'"
        )
    paths = [str(image_root / name / f"{name}_{number:04d}.jpg") for name, number in index]
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise DataError(
            f"XQLFW: {len(missing)} image(s) listed in {pairs_file} are missing, e.g. {missing[0]}"
        )
    return PairSet(
        "xqlfw",
        paths,
        np.asarray(pair_rows),
        np.asarray(mated),
        FileImages(paths),
        files=[str(pairs_file), *paths],
    )


def _is_xqlfw(path: str) -> bool:
    p = Path(path)
    return p.name == "xqlfw_pairs.txt" or (p / "xqlfw_pairs.txt").is_file()


register_benchmark(BenchmarkReader("xqlfw", open_xqlfw, detect=_is_xqlfw, priority=20))
