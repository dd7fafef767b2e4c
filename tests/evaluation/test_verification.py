"""ROC, TAR@FMR and the 10-fold accuracy against hand computations and plain loops."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from igfiqa.errors import ConfigError, DataError
from igfiqa.evaluation import verification as V


def test_roc_hand_computed():
    sim = np.array([0.9, 0.8, 0.3, 0.5, 0.1, 0.8])
    mated = np.array([True, True, True, False, False, False])
    fmr, tar, t = V.roc(sim, mated)
    assert np.array_equal(t, [np.inf, 0.9, 0.8, 0.5, 0.3, 0.1])
    assert np.allclose(tar, [0, 1 / 3, 2 / 3, 2 / 3, 1, 1])
    assert np.allclose(fmr, [0, 0, 1 / 3, 2 / 3, 2 / 3, 1])


def test_tar_at_fmr_hand_computed():
    sim = np.array([0.9, 0.8, 0.3, 0.5, 0.1, 0.7, 0.2])
    mated = np.array([True, True, True, False, False, False, False])
    rows = V.tar_at_fmr(sim, mated, [0.25, 0.0, 0.1])
    # FMR 0.25: one false match allowed -> threshold just above 0.5: accepts 0.9 and 0.8
    assert rows[0]["tar"] == pytest.approx(2 / 3) and rows[0]["achieved_fmr"] == 0.25
    assert rows[1]["tar"] == pytest.approx(2 / 3) and rows[1]["achieved_fmr"] == 0.0
    assert rows[2]["below_resolution"] and not rows[0]["below_resolution"]
    with pytest.raises(DataError):
        V.tar_at_fmr(sim, np.ones(7, bool), [0.1])


def test_kfold_sizes_like_sklearn():
    folds = V.kfold_indices(23, 10)
    assert [len(f) for f in folds] == [3, 3, 3, 2, 2, 2, 2, 2, 2, 2]
    assert np.array_equal(np.concatenate(folds), np.arange(23))
    with pytest.raises(ConfigError):
        V.kfold_indices(5, 10)


def test_ten_fold_accuracy_perfectly_separable():
    rng = np.random.default_rng(0)
    mated = np.tile([True, False], 300)
    sim = np.where(mated, rng.uniform(0.5, 1.0, 600), rng.uniform(-0.5, 0.3, 600))
    result = V.ten_fold_accuracy(sim, mated)
    assert result.mean == 1.0 and result.std == 0.0
    assert np.all((result.fold_threshold >= 0.3) & (result.fold_threshold <= 0.5))


def reference_ten_fold(sim, mated, grid, folds=10):
    n = len(sim)
    dist = [2 - 2 * s for s in sim]
    sizes = [n // folds + (1 if k < n % folds else 0) for k in range(folds)]
    start, accs = 0, []
    for size in sizes:
        test = list(range(start, start + size))
        train = [i for i in range(n) if i < start or i >= start + size]
        start += size
        best, best_acc = None, -1.0
        for thr in grid:
            acc = sum((dist[i] < thr) == mated[i] for i in train) / len(train)
            if acc > best_acc:
                best, best_acc = thr, acc
        accs.append(sum((dist[i] < best) == mated[i] for i in test) / len(test))
    return float(np.mean(accs))


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.integers(-10, 10), st.booleans()), min_size=10, max_size=40))
def test_ten_fold_accuracy_equals_plain_loop(items):
    sim = np.array([v / 10 for v, _ in items])
    mated = np.array([m for _, m in items])
    grid = np.arange(0.0, 4.0, 0.1)
    ours = V.ten_fold_accuracy(sim, mated, thresholds=grid).mean
    assert ours == pytest.approx(reference_ten_fold(list(sim), list(mated), grid))
