"""``ijbb`` / ``ijbc``: the ``IJBB`` / ``IJBC`` folder (``loose_crop/`` and ``meta/``); samples are
the loose crops aligned lazily with their five landmarks; ``pairs`` index *templates*.

Every malformed meta file (empty, a line with too few or too many fields, a field that is not a
number) is a :class:`DataError` naming the file and, where one line is at fault, the line."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from igfiqa.data.benchmarks.pairset import LandmarkAlignedImages, PairSet
from igfiqa.data.benchmarks.registry import BenchmarkReader, register_benchmark
from igfiqa.errors import DataError
from igfiqa.files import MAX_TABLE_BYTES, read_regular_file, read_text_file

LANDMARK_FORMAT = "'image x1 y1 x2 y2 x3 y3 x4 y4 x5 y5 score'"
TID_FORMAT = "'image template_id media_id'"
PAIR_FORMAT = "'template_id template_id label' (integers)"


def _first_bad_int_line(text: str, columns: int) -> tuple[int, str] | None:
    """(line number, what is wrong) of the first line that is not ``columns`` integers (only called
    once the fast parse failed)."""
    for line_no, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != columns:
            return line_no, f"{len(fields)} fields"
        for value in fields:
            try:
                number = int(value)
            except ValueError:
                return line_no, repr(value[:40])
            if not -(2**63) <= number < 2**63:
                return line_no, f"{value[:40]!r} (out of range)"
    return None


def _read_int_table(path: Path, columns: int, layout: str) -> np.ndarray:
    """A whitespace-separated table of ``columns`` integers per line, parsed in C (IJB-C's 15.6M-line
    pair file in about 4 s); a malformed line is found (slowly, only then) and named."""
    import io
    import warnings

    data = read_regular_file(path, max_bytes=MAX_TABLE_BYTES)
    if not data or data.isspace():
        raise DataError(f"{path}: the file is empty; expected lines {layout}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            values = np.loadtxt(
                io.BytesIO(data), dtype=np.int64, ndmin=2, comments=None, encoding="latin1"
            )
        ok = values.shape[1] == columns
    except (ValueError, OverflowError, UserWarning):
        ok = False
    if not ok:
        where = _first_bad_int_line(data.decode("latin1"), columns)
        if where is not None:
            line_no, problem = where
            raise DataError(f"{path}, line {line_no}: expected {layout}, got {problem}")
        raise DataError(f"{path}: expected {layout} on every line")
    return values


def _read_landmarks(path: Path) -> tuple[list[str], np.ndarray]:
    """Image names and the (N, 11) table of five landmarks and a detector score."""
    names: list[str] = []
    rows: list[list[str]] = []
    line_numbers: list[int] = []
    for line_no, line in enumerate(
        read_text_file(path, max_bytes=MAX_TABLE_BYTES).splitlines(), start=1
    ):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 12:
            raise DataError(
                f"{path}, line {line_no}: expected {LANDMARK_FORMAT}, got {len(fields)} fields"
            )
        names.append(fields[0])
        rows.append(fields[1:])
        line_numbers.append(line_no)
    if not names:
        raise DataError(f"{path}: the file is empty; expected lines {LANDMARK_FORMAT}")
    try:
        table = np.asarray(rows, dtype=np.float64)
    except ValueError:
        table = None
    if table is None or not np.isfinite(table).all():
        for row, line_no in zip(rows, line_numbers, strict=True):
            try:
                values = [float(v) for v in row]
            except ValueError:
                values = [float("nan")]
            if not all(np.isfinite(values)):
                raise DataError(
                    f"{path}, line {line_no}: landmarks and score must be finite numbers"
                )
    if table is None:  # not reached: the loop names the line
        raise DataError(f"{path}: landmarks and scores must be numbers")
    return names, table


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
    names, table = _read_landmarks(landmark_file)
    landmarks = table[:, :10].reshape(-1, 5, 2)
    scores = table[:, 10]
    tid_names: list[str] = []
    tid_values: list[tuple[int, int]] = []
    for line_no, line in enumerate(
        read_text_file(tid_file, max_bytes=MAX_TABLE_BYTES).splitlines(), start=1
    ):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 3:
            raise DataError(
                f"{tid_file}, line {line_no}: expected {TID_FORMAT}, got {len(fields)} fields"
            )
        try:
            tid_values.append((int(fields[1]), int(fields[2])))
        except ValueError:
            raise DataError(
                f"{tid_file}, line {line_no}: template and media ids must be integers"
            ) from None
        tid_names.append(fields[0])
    if not tid_names:
        raise DataError(f"{tid_file}: the file is empty; expected lines {TID_FORMAT}")
    if len(tid_names) != len(names):
        raise DataError(
            f"{tid_file}: {len(tid_names)} lines but {landmark_file.name} has {len(names)}"
        )
    mismatch = next(
        (i for i, (a, b) in enumerate(zip(tid_names, names, strict=True)) if a != b), None
    )
    if mismatch is not None:
        raise DataError(
            f"{tid_file}: image names are not in the same order as in {landmark_file.name} "
            f"(first difference: {tid_names[mismatch]!r} / {names[mismatch]!r})"
        )
    ids = np.asarray(tid_values, dtype=np.int64).reshape(-1, 2)
    template_raw, media_raw = ids[:, 0], ids[:, 1]
    template_ids, sample_template = np.unique(template_raw, return_inverse=True)
    _, sample_media = np.unique(media_raw, return_inverse=True)
    table3 = _read_int_table(pair_file, 3, PAIR_FORMAT)
    position = np.searchsorted(template_ids, table3[:, :2])
    position = np.clip(position, 0, len(template_ids) - 1)
    if not (template_ids[position] == table3[:, :2]).all():
        bad = table3[:, :2][template_ids[position] != table3[:, :2]][0]
        raise DataError(f"{pair_file}: template {bad} has no images in {tid_file.name}")
    if not np.isin(table3[:, 2], (0, 1)).all():
        line = int(np.flatnonzero(~np.isin(table3[:, 2], (0, 1)))[0]) + 1
        raise DataError(f"{pair_file}: labels must be 0 or 1 (pair {line} is not)")
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
        files=[str(landmark_file), str(tid_file), str(pair_file), *paths],
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
