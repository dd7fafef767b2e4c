"""Face verification metrics: ROC, TAR at given FMRs, and the 10-fold accuracy of the ``.bin`` sets.

Conventions as in :mod:`igfiqa.evaluation.edc`: higher similarity = more similar; a comparison is a
match iff similarity >= threshold; TAR (true accept rate) = 1 - FNMR.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from igfiqa.errors import ConfigError, DataError
from igfiqa.evaluation.edc import as_1d, same_length, threshold_info


def _split(similarity: np.ndarray, mated: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    similarity = as_1d("similarity", similarity)
    mated = as_1d("mated", mated, bool)
    same_length(similarity=similarity, mated=mated)
    if not mated.any() or mated.all():
        raise DataError("verification metrics need both mated and non-mated comparisons")
    return similarity[mated], similarity[~mated]


def roc(similarity: np.ndarray, mated: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC at every distinct similarity: ``(fmr, tar, thresholds)``, thresholds descending.

    At threshold t (each distinct similarity, plus +inf first so the curve starts at (0, 0)):
    FMR = count(non-mated >= t) / N, TAR = count(mated >= t) / G.
    """
    genuine, impostor = _split(similarity, mated)
    thresholds = np.concatenate(([np.inf], np.unique(np.concatenate([genuine, impostor]))[::-1]))
    g = np.sort(genuine)
    i = np.sort(impostor)
    tar = (len(g) - np.searchsorted(g, thresholds, "left")) / len(g)
    fmr = (len(i) - np.searchsorted(i, thresholds, "left")) / len(i)
    return fmr, tar, thresholds


def tar_at_fmr(
    similarity: np.ndarray, mated: np.ndarray, fmrs: tuple[float, ...] | list[float]
) -> list[dict]:
    """TAR at each target FMR, threshold by :func:`~igfiqa.evaluation.edc.threshold_at_fmr`.

    Returns one dict per FMR: ``target_fmr``, ``threshold``, ``achieved_fmr``, ``tar``,
    ``below_resolution`` (see :class:`~igfiqa.evaluation.edc.ThresholdInfo`).
    """
    genuine, impostor = _split(similarity, mated)
    rows = []
    for fmr in fmrs:
        info = threshold_info(impostor, fmr)
        row = info.to_dict()
        row["tar"] = float(np.count_nonzero(genuine >= info.threshold) / len(genuine))
        rows.append(row)
    return rows


@dataclass(frozen=True)
class FoldAccuracy:
    """Result of :func:`ten_fold_accuracy`: mean and std over folds, per-fold accuracy and the
    similarity threshold chosen on the other folds."""

    mean: float
    std: float
    fold_accuracy: np.ndarray
    fold_threshold: np.ndarray

    def to_dict(self) -> dict:
        return {
            "accuracy_mean": self.mean,
            "accuracy_std": self.std,
            "fold_accuracy": self.fold_accuracy.tolist(),
            "fold_threshold": self.fold_threshold.tolist(),
        }


def kfold_indices(n: int, folds: int = 10) -> list[np.ndarray]:
    """Contiguous, unshuffled folds; the first n % folds folds hold one extra item (sklearn's KFold)."""
    if folds < 2 or n < folds:
        raise ConfigError(f"need 2 <= folds <= number of pairs, got folds={folds}, pairs={n}")
    sizes = np.full(folds, n // folds)
    sizes[: n % folds] += 1
    bounds = np.concatenate(([0], np.cumsum(sizes)))
    return [np.arange(bounds[k], bounds[k + 1]) for k in range(folds)]


def _accuracy_at(distance: np.ndarray, mated: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Accuracy for every threshold: mated predicted iff distance < threshold."""
    pos = np.sort(distance[mated])
    neg = np.sort(distance[~mated])
    true_accept = np.searchsorted(pos, thresholds, "left")
    true_reject = len(neg) - np.searchsorted(neg, thresholds, "left")
    return (true_accept + true_reject) / len(distance)


def ten_fold_accuracy(
    similarity: np.ndarray,
    mated: np.ndarray,
    *,
    folds: int = 10,
    thresholds: np.ndarray | None = None,
) -> FoldAccuracy:
    """insightface-style verification accuracy of the ``.bin`` sets.

    Similarities (cosines of L2-normalised embeddings) become squared Euclidean distances
    ``2 - 2 * similarity``; a pair is predicted mated iff distance < threshold. The pairs are split
    into ``folds`` contiguous folds (no shuffling); for each fold, the threshold with the best
    accuracy on the other folds (the first of ``thresholds`` on ties; default 0, 0.01, ..., 3.99)
    is applied to the held-out fold. Reports the mean and (population) std of the fold accuracies.
    All thresholds are evaluated at once with sorted arrays.
    """
    similarity = as_1d("similarity", similarity)
    mated = as_1d("mated", mated, bool)
    n = same_length(similarity=similarity, mated=mated)
    grid = np.arange(0.0, 4.0, 0.01) if thresholds is None else as_1d("thresholds", thresholds)
    distance = 2.0 - 2.0 * similarity
    accuracies, chosen = [], []
    all_index = np.arange(n)
    for test in kfold_indices(n, folds):
        train = np.setdiff1d(all_index, test, assume_unique=True)
        best = grid[int(np.argmax(_accuracy_at(distance[train], mated[train], grid)))]
        accuracies.append(float(_accuracy_at(distance[test], mated[test], np.array([best]))[0]))
        chosen.append(1.0 - best / 2.0)  # back to a similarity threshold (match iff sim > it)
    acc = np.array(accuracies)
    return FoldAccuracy(float(acc.mean()), float(acc.std()), acc, np.array(chosen))
