import numpy as np
import pytest

from igfiqa.evaluation.correlation import average_ranks, spearman


def test_average_ranks_share_tied_positions():
    # sorted: 1 (rank 1), 2, 2 (ranks 2 and 3 -> 2.5), 5 (rank 4)
    np.testing.assert_allclose(average_ranks(np.array([5, 2, 1, 2])), [4, 2.5, 1, 2.5])


def test_spearman_hand_computed_with_ties():
    a = np.array([1.0, 2.0, 2.0, 4.0])
    b = np.array([10.0, 30.0, 20.0, 40.0])
    # ranks a = [1, 2.5, 2.5, 4], ranks b = [1, 3, 2, 4]; centred: [-1.5, 0, 0, 1.5], [-1.5, .5, -.5, 1.5]
    expected = (1.5 * 1.5 * 2) / np.sqrt((1.5**2 * 2) * (1.5**2 * 2 + 0.5**2 * 2))
    assert spearman(a, b) == pytest.approx(expected)


def test_spearman_is_invariant_to_monotone_transforms_and_signs():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=200), rng.normal(size=200)
    rho = spearman(a, b)
    assert spearman(np.exp(a), b**3) == pytest.approx(rho)
    assert spearman(-a, b) == pytest.approx(-rho)
    assert spearman(a, 2 * a + 1) == pytest.approx(1.0)


def test_spearman_ignores_non_finite_and_flags_constant_input():
    assert spearman(np.array([1.0, np.nan, 2.0, 3.0]), np.array([3.0, 0.0, 2.0, 1.0])) == -1.0
    assert np.isnan(spearman(np.ones(5), np.arange(5.0)))
    with pytest.raises(ValueError, match="differ in length"):
        spearman(np.ones(3), np.ones(4))


def test_spearman_equals_pearson_of_textbook_tie_averaged_ranks():
    a = np.array([1.0, 2.0, 2.0, 3.0, 5.0])
    b = np.array([2.0, 1.0, 4.0, 4.0, 9.0])
    # ranks with ties averaged: a -> 1, 2.5, 2.5, 4, 5 ; b -> 2, 1, 3.5, 3.5, 5
    ra, rb = np.array([1, 2.5, 2.5, 4, 5]), np.array([2, 1, 3.5, 3.5, 5])
    assert spearman(a, b) == pytest.approx(np.corrcoef(ra, rb)[0, 1])
