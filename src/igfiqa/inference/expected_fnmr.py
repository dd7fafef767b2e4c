"""What a quality score costs in recognition: the expected FNMR of a sample, with its band.

ISO/IEC 29794-1 defines a sample's quality by its utility, how well it will be recognised. The
mapping stored here gives, for a raw quality q, the **expected FNMR** of a mated comparison of a
sample of quality q against a good reference (a mated sample at or above the median quality of the
calibration set), at the FR model's threshold for a target FMR fixed on all non-mated comparisons
of the calibration benchmark (docs/scoring.md, "Expected FNMR"). It is non-increasing in q (fitted
by isotonic regression) and carries a 95% band from a bootstrap over identities. It holds for the
FR model, threshold and kind of data it was measured on, and for no other.

The mapping is piecewise linear through ``quality`` -> ``fnmr`` (flat beyond the ends), and the
same for the band's ``low`` and ``high``. Nothing here imports torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from igfiqa.errors import CheckpointError, ConfigError

METHOD = "expected-fnmr-isotonic"


MAX_KNOTS = 100_000


def _as_points(name: str, values: Any) -> np.ndarray:
    if isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
        raise CheckpointError(f"expected-FNMR calibration: {name} must be a list of numbers")
    if len(values) > MAX_KNOTS:
        raise CheckpointError(f"expected-FNMR calibration: {name} has over {MAX_KNOTS} points")
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise CheckpointError(f"expected-FNMR calibration: {name} must be numbers") from None
    if array.ndim != 1 or array.size == 0 or not np.all(np.isfinite(array)):
        raise CheckpointError(
            f"expected-FNMR calibration: {name} must be a non-empty list of finite numbers"
        )
    return array


@dataclass(frozen=True)
class ExpectedFnmr:
    """A non-increasing map quality -> expected FNMR with a 95% band, and what it was measured on.

    ``quality`` (K,) non-decreasing knots; ``fnmr``, ``low``, ``high`` (K,) non-increasing values in
    [0, 1] with ``low <= fnmr <= high``; ``sample_quantiles`` the calibration samples' quality at
    levels 0, 1, ..., 100 % (for the share a threshold rejects); ``fmr`` the target FMR and
    ``threshold`` the comparison-score threshold that meets it; ``info`` the FR model, benchmark,
    counts, bootstrap and date.
    """

    quality: tuple[float, ...]
    fnmr: tuple[float, ...]
    low: tuple[float, ...]
    high: tuple[float, ...]
    sample_quantiles: tuple[float, ...]
    fmr: float
    threshold: float
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        q = _as_points("quality", self.quality)
        f, lo, hi = (_as_points(n, getattr(self, n)) for n in ("fnmr", "low", "high"))
        if q.size < 1 or not (q.shape == f.shape == lo.shape == hi.shape):
            raise CheckpointError(
                "expected-FNMR calibration: quality, fnmr, low, high differ in length"
            )
        if np.any(np.diff(q) < 0):
            raise CheckpointError("expected-FNMR calibration: quality knots must be non-decreasing")
        for name, values in (("fnmr", f), ("low", lo), ("high", hi)):
            if np.any(np.diff(values) > 1e-12) or values.min() < 0 or values.max() > 1:
                raise CheckpointError(
                    f"expected-FNMR calibration: {name} must be non-increasing within [0, 1]"
                )
        if np.any(lo > f + 1e-12) or np.any(hi < f - 1e-12):
            raise CheckpointError("expected-FNMR calibration: the band must hold the estimate")
        quantiles = _as_points("sample_quantiles", self.sample_quantiles)
        if quantiles.size != 101 or np.any(np.diff(quantiles) < 0):
            raise CheckpointError(
                "expected-FNMR calibration: sample_quantiles must be 101 non-decreasing values"
            )
        if not 0.0 < float(self.fmr) < 1.0:
            raise CheckpointError(f"expected-FNMR calibration: fmr {self.fmr} is not in (0, 1)")
        if not np.isfinite(float(self.threshold)):
            raise CheckpointError("expected-FNMR calibration: threshold must be a finite number")

    def __call__(self, scores: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(expected FNMR, band low, band high)`` of raw quality scores (NaN stays NaN)."""
        values = np.asarray(scores, dtype=np.float64)
        out = []
        for curve in (self.fnmr, self.low, self.high):
            mapped = np.interp(values, self.quality, curve)
            out.append(np.where(np.isnan(values), np.nan, mapped))
        return out[0], out[1], out[2]

    def threshold_for(self, target: float, *, conservative: bool = False) -> float:
        """The lowest quality q with expected FNMR <= ``target`` at q and above (the band's upper
        edge with ``conservative``); ``inf`` when no calibrated quality meets it, ``-inf`` when
        every quality does."""
        if not 0.0 <= target <= 1.0:
            raise ConfigError(f"an FNMR target must lie in [0, 1], got {target}")
        curve = np.asarray(self.high if conservative else self.fnmr, dtype=np.float64)
        q = np.asarray(self.quality, dtype=np.float64)
        if curve[0] <= target:
            return -np.inf
        if curve[-1] > target:
            return np.inf
        # the curve is non-increasing: find the first segment that crosses the target
        index = int(np.argmax(curve <= target))
        q0, q1, f0, f1 = q[index - 1], q[index], curve[index - 1], curve[index]
        if f0 == f1 or q0 == q1:
            return float(q1)
        return float(q0 + (f0 - target) * (q1 - q0) / (f0 - f1))

    def rejected_share(self, threshold: float) -> float:
        """The share of the calibration samples whose quality is below ``threshold``."""
        if threshold == -np.inf:
            return 0.0
        if threshold == np.inf:
            return 1.0
        quantiles = np.asarray(self.sample_quantiles, dtype=np.float64)
        levels = np.linspace(0.0, 1.0, quantiles.size)
        unique, first = np.unique(quantiles, return_index=True)
        if threshold <= unique[0]:
            return 0.0
        if threshold > unique[-1]:
            return 1.0
        # P(q < t): the level where the quantile function reaches t (lowest level at a tie)
        return float(np.interp(threshold, unique, levels[first]))

    def thresholds(self, targets: Any) -> list[dict[str, float]]:
        """For each FNMR target: the quality threshold, its conservative variant (band's upper
        edge) and the share of calibration samples each rejects."""
        rows = []
        for target in targets:
            threshold = self.threshold_for(float(target))
            conservative = self.threshold_for(float(target), conservative=True)
            rows.append(
                {
                    "target_fnmr": float(target),
                    "quality_threshold": threshold,
                    "rejected_share": self.rejected_share(threshold),
                    "conservative_quality_threshold": conservative,
                    "conservative_rejected_share": self.rejected_share(conservative),
                }
            )
        return rows

    def to_dict(self) -> dict[str, Any]:
        """The JSON form stored in the model card (``expected_fnmr``)."""
        return {
            "method": METHOD,
            "definition": "expected FNMR of a mated comparison of a sample of quality q against a "
            "good reference (a mated sample at or above the calibration set's median quality), at "
            "the FR model's threshold for `fmr` fixed on all non-mated comparisons; isotonic "
            "(non-increasing) in q, linear between the knots, flat beyond them; `low`/`high` = "
            "95% bootstrap band over identities",
            "fmr": float(self.fmr),
            "threshold": float(self.threshold),
            "quality": list(self.quality),
            "fnmr": list(self.fnmr),
            "low": list(self.low),
            "high": list(self.high),
            "sample_quantiles": list(self.sample_quantiles),
            "info": dict(self.info),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ExpectedFnmr:
        """Read :meth:`to_dict`'s form; CheckpointError when malformed."""
        if not isinstance(data, Mapping) or data.get("method") != METHOD:
            raise CheckpointError(f"not an expected-FNMR calibration (expected method {METHOD!r})")
        try:
            return cls(
                quality=tuple(float(v) for v in data["quality"]),
                fnmr=tuple(float(v) for v in data["fnmr"]),
                low=tuple(float(v) for v in data["low"]),
                high=tuple(float(v) for v in data["high"]),
                sample_quantiles=tuple(float(v) for v in data["sample_quantiles"]),
                fmr=float(data["fmr"]),
                threshold=float(data["threshold"]),
                info=dict(data.get("info") or {}),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise CheckpointError(f"malformed expected-FNMR calibration: {error}") from None


__all__ = ["METHOD", "ExpectedFnmr"]
