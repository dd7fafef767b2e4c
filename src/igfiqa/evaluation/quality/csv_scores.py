"""``csv:PATH``: scores computed elsewhere (e.g. by ``igfiqa score``), rows ``path,quality[,error]``."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from igfiqa.errors import ConfigError, DataError
from igfiqa.evaluation.quality.base import QualityMethod, SampleContext, register
from igfiqa.files import MAX_TABLE_BYTES, read_text_file, spreadsheet_unescape


@register
class CsvQuality(QualityMethod):
    kind = "csv"
    usage = "csv:PATH"

    @classmethod
    def parse(cls, rest: str, name: str | None) -> QualityMethod:
        path = Path(rest).expanduser()
        if not path.is_file():
            raise ConfigError(f"quality CSV {path} does not exist")
        return cls(name or path.stem, path=path)

    def sample_quality(self, context: SampleContext) -> np.ndarray:
        return read_quality_csv(self.path, list(context.pairset.sample_names))


def _same_value(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def read_quality_csv(path: Path, sample_names: Sequence[str]) -> np.ndarray:
    """Quality per sample from a CSV of ``path,quality[,error]`` rows (header optional).

    A row matches a sample when its path equals the sample name or ends with ``/`` + the name
    (so absolute paths written by ``igfiqa score`` match relative names). Rows with an error or an
    empty quality count as missing. Missing samples raise :class:`DataError` listing a few.
    """
    by_suffix: dict[str, float] = {}
    ambiguous: set[str] = set()
    seen: dict[str, tuple[float, int]] = {}
    text = read_text_file(path, f"{path} (quality CSV)", MAX_TABLE_BYTES)
    try:
        rows = list(enumerate(csv.reader(io.StringIO(text, newline="")), start=1))
    except csv.Error as error:
        raise DataError(f"{path}: not a readable CSV file ({error})") from error
    for line_no, row in rows:
        if not row or (line_no == 1 and row[0].strip().lower() in ("path", "name", "image")):
            continue
        if len(row) < 2:
            raise DataError(f"{path}:{line_no}: expected 'path,quality', got {row!r}")
        if len(row) > 2 and row[2].strip():
            continue  # a per-item failure recorded by the scorer
        try:
            value = float(row[1]) if row[1].strip() else math.nan
        except ValueError as error:
            raise DataError(f"{path}:{line_no}: quality {row[1]!r} is not a number") from error
        if row[1].strip() and not math.isfinite(value):
            raise DataError(
                f"{path}:{line_no}: quality {row[1].strip()!r} is not a finite number; "
                "leave the quality empty (or write an error column) for a failed image"
            )
        name = spreadsheet_unescape(row[0].strip())
        if name in seen and not _same_value(seen[name][0], value):
            raise DataError(
                f"{path}:{line_no}: {name!r} has quality {row[1].strip()} here but "
                f"{seen[name][0]:g} on line {seen[name][1]}; keep one row per image"
            )
        seen.setdefault(name, (value, line_no))
        parts = name.replace("\\", "/").removeprefix("./").split("/")
        for start in range(len(parts)):
            key = "/".join(parts[start:])
            if key in by_suffix and start > 0:
                ambiguous.add(key)
            by_suffix.setdefault(key, value)
    names = [str(n).replace("\\", "/").removeprefix("./") for n in sample_names]
    values = np.array([by_suffix.get(n, math.nan) for n in names], dtype=np.float64)
    missing = [n for n, v in zip(names, values, strict=True) if not math.isfinite(v)]
    clashing = [n for n in names if n in ambiguous]
    if clashing:
        raise DataError(
            f"{path}: {len(clashing)} sample names match several rows (e.g. {clashing[:3]}); "
            "write full paths relative to the benchmark root"
        )
    if missing:
        raise DataError(
            f"{path}: no quality for {len(missing)} of {len(names)} samples, e.g. {missing[:5]}; "
            "the first column must hold the benchmark's sample names (or paths ending with them)"
        )
    return values
