"""Score calibration: raw quality scores -> integers 0..100, their percentile among reference images.

The 0..100 integer range is the one ISO/IEC 29794-1 gives quality scores, but the value is not an
ISO quality measure: it orders images like the reference set of the calibration (whatever that was:
the card's ``calibration.reference``; synthetic faces by default) and says nothing of what a value
costs in recognition (:mod:`igfiqa.inference.expected_fnmr` does).

The raw score of a CR-FIQA/IG-FIQA model is an unbounded real whose scale depends on the training
run. The calibration maps it to the percentile rank it would have in a reference set of face images:

    calibrated(s) = clip(floor(100 * F(s) + 0.5), 0, 100)

where F is the reference set's empirical distribution function, represented by its quantiles at
levels 0, 1, ..., 100 % and interpolated linearly in between (F(s) = 0 below the smallest reference
score, 1 above the largest). F is non-decreasing, so the mapping is monotone: a higher raw score never
gets a lower calibrated score. 0 means "worse than (almost) every reference image", 100 "better than
(almost) all of them". The mapping is stored in the model card, never hard-coded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from igfiqa.errors import CheckpointError, DataError

CALIBRATION_METHOD = "reference-percentile"


@dataclass(frozen=True)
class ScoreCalibration:
    """A monotone map from raw quality scores to integers 0..100 learned from a reference set.

    ``raw`` holds strictly increasing reference quantiles, ``levels`` the matching percent levels
    (non-decreasing, in [0, 100]); ``reference`` describes the set (source, number of images, ...).
    """

    raw: tuple[float, ...]
    levels: tuple[float, ...]
    reference: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        raw = np.asarray(self.raw, dtype=np.float64)
        levels = np.asarray(self.levels, dtype=np.float64)
        if raw.ndim != 1 or raw.shape != levels.shape or raw.size < 2:
            raise CheckpointError(
                "score calibration needs at least two (raw, level) points of equal count, "
                f"got {raw.size} raw and {levels.size} levels"
            )
        if not (np.all(np.isfinite(raw)) and np.all(np.diff(raw) > 0)):
            raise CheckpointError(
                "score calibration raw quantiles must be finite and strictly increasing"
            )
        if not (np.all(np.diff(levels) >= 0) and levels[0] >= 0 and levels[-1] <= 100):
            raise CheckpointError("score calibration levels must be non-decreasing within [0, 100]")

    @classmethod
    def fit(
        cls,
        scores: np.ndarray,
        *,
        num_levels: int = 101,
        reference: Mapping[str, Any] | None = None,
    ) -> ScoreCalibration:
        """Learn the calibration from raw scores of a reference set (non-finite scores are ignored).

        The quantiles at ``num_levels`` evenly spaced levels from 0 to 100 % are kept; quantiles that
        coincide (ties in the reference scores) are merged into one point carrying the highest level,
        i.e. the right-continuous distribution function P(score <= s).
        """
        values = np.asarray(scores, dtype=np.float64).ravel()
        values = values[np.isfinite(values)]
        if values.size < 2 or np.ptp(values) == 0:
            raise DataError(
                f"cannot calibrate scores from a reference set with {values.size} finite scores and "
                f"{np.unique(values).size} distinct values: use a reference set of varied face images"
            )
        levels = np.linspace(0.0, 100.0, num_levels)
        quantiles = np.quantile(values, levels / 100.0)
        # Merge equal quantiles: keep the last (highest) level of each run of equal values.
        keep = np.append(np.diff(quantiles) > 0, True)
        info = {
            "num_images": int(values.size),
            "min": float(values.min()),
            "max": float(values.max()),
        }
        info.update({"mean": float(values.mean()), "std": float(values.std())})
        info.update(dict(reference or {}))
        return cls(tuple(quantiles[keep].tolist()), tuple(levels[keep].tolist()), info)

    def percentile(self, scores: np.ndarray) -> np.ndarray:
        """The interpolated reference percentile 100 * F(s) of each raw score, as float64 in [0, 100]."""
        values = np.asarray(scores, dtype=np.float64)
        return np.interp(values, self.raw, self.levels, left=0.0, right=100.0)

    def __call__(self, scores: np.ndarray) -> np.ndarray:
        """Calibrated integer scores (int64, 0..100) of raw scores; NaN inputs map to 0 (an int
        holds no NaN): :meth:`calibrated` keeps them NaN."""
        values = np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=-np.inf)
        return np.clip(np.floor(self.percentile(values) + 0.5), 0, 100).astype(np.int64)

    def calibrated(self, scores: np.ndarray) -> np.ndarray:
        """Calibrated scores 0..100 as float64 whole numbers, NaN where the raw score is NaN (no
        face found, an item that failed): what ``QualityModel.calibrate`` returns."""
        values = np.asarray(scores, dtype=np.float64)
        result = self(values).astype(np.float64)
        result[np.isnan(values)] = np.nan
        return result

    def to_dict(self) -> dict[str, Any]:
        """The JSON form stored in the model card."""
        return {
            "method": CALIBRATION_METHOD,
            "definition": "calibrated = clip(floor(100 * F(raw) + 0.5), 0, 100); F = reference "
            "distribution function, linear between the stored quantiles (raw -> level in percent), "
            "0 below the first, 100 above the last",
            "range": [0, 100],
            "raw": list(self.raw),
            "levels": list(self.levels),
            "reference": dict(self.reference),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ScoreCalibration:
        """Read the JSON form written by :meth:`to_dict`; raises CheckpointError when malformed."""
        try:
            if data.get("method") != CALIBRATION_METHOD:
                raise CheckpointError(
                    f"unknown score calibration method {data.get('method')!r}, expected "
                    f"{CALIBRATION_METHOD!r}"
                )
            raw = tuple(float(v) for v in data["raw"])
            levels = tuple(float(v) for v in data["levels"])
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise CheckpointError(
                f"malformed score calibration in the model card: {error}"
            ) from error
        return cls(raw, levels, dict(data.get("reference") or {}))


__all__ = ["CALIBRATION_METHOD", "ScoreCalibration"]
