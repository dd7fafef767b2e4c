"""``ijbb`` / ``ijbc``: the ``IJBB`` / ``IJBC`` folder (``loose_crop/`` and ``meta/``); samples are
the loose crops aligned lazily with their five landmarks; ``pairs`` index *templates*."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from igfiqa.data.benchmarks.pairset import LandmarkAlignedImages, PairSet
from igfiqa.data.benchmarks.registry import BenchmarkReader, register_benchmark
from igfiqa.errors import DataError
from igfiqa.files import MAX_TABLE_BYTES, read_regular_file, read_text_file


def _read_int_table(path: Path, columns: int) -> np.ndarray:
    """A whitespace-separated integer table, parsed in C (a 15M-line pair file in seconds)."""
    import warnings

    text = read_regular_file(path, max_bytes=MAX_TABLE_BYTES).decode("ascii", errors="replace")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # numpy warns (then stops) at the first non-number
            values = np.fromstring(text, dtype=np.int64, sep=" ")
    except (ValueError, DeprecationWarning):
        raise DataError(
            f"{path}: expected {columns} integers per line, found something else"
        ) from None
    if values.size % columns:
        raise DataError(f"{path}: expected {columns} integers per line")
    return values.reshape(-1, columns)


def open_ijb(path: str | os.PathLike[str], kind: str = "ijbc") -> PairSet:
    """IJB-B / IJB-C 1:1 verification: templates, media, template pairs and landmarks."""
    root = Path(path)
    prefix = kind.lower()
    meta = root / "meta"
    crops = root / "loose_crop"
    for folder in (meta, crops):
        if not folder.is_dir():
            raise DataError(
                f"{folder}: not found; pass the {prefix.upper()} folder with loose_crop/ and meta/"
            )
    landmark_file = meta / f"{prefix}_name_5pts_score.txt"
    tid_file = meta / f"{prefix}_face_tid_mid.txt"
    pair_file = meta / f"{prefix}_template_pair_label.txt"
    names: list[str] = []
    rows: list[list[str]] = []
    landmark_lines = read_text_file(landmark_file, max_bytes=MAX_TABLE_BYTES).splitlines()
    for line_no, line in enumerate(landmark_lines, start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 12:
            raise DataError(
                f"{landmark_file}, line {line_no}: expected 'image x1 y1 ... x5 y5 score', got {len(fields)} fields"
            )
        names.append(fields[0])
        rows.append(fields[1:])
    try:
        table = np.asarray(rows, dtype=np.float64)
    except ValueError:
        raise DataError(f"{landmark_file}: landmarks and scores must be numbers") from None
    landmarks = table[:, :10].reshape(-1, 5, 2)
    scores = table[:, 10]
    tid_rows = []
    for line_no, line in enumerate(
        read_text_file(tid_file, max_bytes=MAX_TABLE_BYTES).splitlines()
        if tid_file.is_file()
        else [],
        1,
    ):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 3:
            raise DataError(f"{tid_file}, line {line_no}: expected 'image template_id media_id'")
        tid_rows.append(fields)
    if not tid_file.is_file():
        raise DataError(f"{tid_file}: file not found")
    if len(tid_rows) != len(names):
        raise DataError(
            f"{tid_file}: {len(tid_rows)} lines but {landmark_file.name} has {len(names)}"
        )
    if any(r[0] != n for r, n in zip(tid_rows, names, strict=True)):
        raise DataError(
            f"{tid_file}: image names are not in the same order as in {landmark_file.name}"
        )
    try:
        template_raw = np.asarray([int(r[1]) for r in tid_rows], dtype=np.int64)
        media_raw = np.asarray([int(r[2]) for r in tid_rows], dtype=np.int64)
    except ValueError:
        raise DataError(f"{tid_file}: template and media ids must be integers") from None
    template_ids, sample_template = np.unique(template_raw, return_inverse=True)
    _, sample_media = np.unique(media_raw, return_inverse=True)
    table3 = _read_int_table(pair_file, 3)
    position = np.searchsorted(template_ids, table3[:, :2])
    position = np.clip(position, 0, len(template_ids) - 1)
    if not (template_ids[position] == table3[:, :2]).all():
        bad = table3[:, :2][template_ids[position] != table3[:, :2]][0]
        raise DataError(f"{pair_file}: template {bad} has no images in {tid_file.name}")
    if not np.isin(table3[:, 2], (0, 1)).all():
        raise DataError(f"{pair_file}: labels must be 0 or 1")
    paths = [str(crops / name) for name in names]
    return PairSet(
        prefix,
        paths,
        position,
        table3[:, 2].astype(bool),
        LandmarkAlignedImages(paths, landmarks),
        sample_template=sample_template.astype(np.int64),
        sample_media=sample_media.astype(np.int64),
        template_ids=template_ids,
        info={"detector_score": scores},
    )


def _is_ijb(prefix: str):
    return lambda path: (Path(path) / "meta" / f"{prefix}_template_pair_label.txt").is_file()


for _kind in ("ijbb", "ijbc"):
    register_benchmark(
        BenchmarkReader(
            _kind,
            lambda path, _k=_kind: open_ijb(path, _k),
            detect=_is_ijb(_kind),
            priority=30,
        )
    )
