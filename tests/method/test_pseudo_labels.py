"""CCS / NNCCS and both certainty-ratio formulas on hand-made cosine matrices."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from igfiqa.errors import ConfigError
from igfiqa.method.pseudo_labels import ccs_nnccs, certainty_ratio

# Row 0: true class is the largest; row 1: a negative is larger; row 2: all negatives < 0;
# row 3: every negative is -1 (the true-class mask must be -inf, not a small number).
COSINE = torch.tensor(
    [
        [0.80, 0.10, -0.30, 0.20],
        [0.40, 0.50, 0.30, -0.10],
        [-0.20, -0.50, 0.60, -0.40],
        [-1.00, -1.00, -1.00, 0.90],
    ],
    dtype=torch.float64,
)
LABELS = torch.tensor([0, 2, 2, 3])
CCS = [0.80, 0.30, 0.60, 0.90]
NNCCS = [0.20, 0.50, -0.20, -1.00]


def test_ccs_and_nnccs_by_hand():
    ccs, nnccs = ccs_nnccs(COSINE, LABELS)
    torch.testing.assert_close(ccs, torch.tensor(CCS, dtype=torch.float64))
    torch.testing.assert_close(nnccs, torch.tensor(NNCCS, dtype=torch.float64))


def test_paper_formula_by_hand_including_negative_nnccs():
    ccs, nnccs = ccs_nnccs(COSINE, LABELS)
    cr = certainty_ratio(ccs, nnccs, "paper")
    expected = [c / (n + 1 + 1e-9) for c, n in zip(CCS, NNCCS, strict=True)]
    torch.testing.assert_close(cr, torch.tensor(expected, dtype=torch.float64))
    # NNCCS = -1 leaves only eps in the denominator: the bound is eps itself, still finite.
    assert torch.isfinite(cr).all()
    assert cr[2].item() == pytest.approx(0.6 / 0.8)


def test_code_formula_by_hand_clamps_nonpositive_nnccs_to_1e_3():
    ccs, nnccs = ccs_nnccs(COSINE, LABELS)
    cr = certainty_ratio(ccs, nnccs, "code")
    expected = [0.80 / 0.20, 0.30 / 0.50, 0.60 / 1e-3, 0.90 / 1e-3]
    torch.testing.assert_close(cr, torch.tensor(expected, dtype=torch.float64))


def test_outputs_have_no_gradient():
    cosine = COSINE.clone().requires_grad_()
    ccs, nnccs = ccs_nnccs(cosine, LABELS)
    cr = certainty_ratio(ccs, nnccs)
    assert not (ccs.requires_grad or nnccs.requires_grad or cr.requires_grad)


def test_bad_input_is_rejected():
    with pytest.raises(ConfigError, match="two classes"):
        ccs_nnccs(torch.ones(3, 1), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ConfigError, match="cr_formula"):
        certainty_ratio(torch.ones(2), torch.ones(2), "magic")
    with pytest.raises(ValueError, match="labels"):
        ccs_nnccs(torch.ones(3, 4), torch.zeros(2, dtype=torch.long))


@settings(max_examples=40, deadline=None)
@given(
    st.integers(min_value=1, max_value=6),
    st.integers(min_value=2, max_value=7),
    st.integers(min_value=0, max_value=2**31 - 1),
)
def test_ccs_nnccs_match_a_loop_over_entries(batch, classes, seed):
    g = torch.Generator().manual_seed(seed)
    cosine = torch.rand(batch, classes, generator=g, dtype=torch.float64) * 2 - 1
    labels = torch.randint(0, classes, (batch,), generator=g)
    ccs, nnccs = ccs_nnccs(cosine, labels)
    for i in range(batch):
        y = int(labels[i])
        assert ccs[i].item() == cosine[i, y].item()
        assert nnccs[i].item() == max(cosine[i, j].item() for j in range(classes) if j != y)
    # NNCCS >= -1, so the paper denominator is positive: CR has the sign of CCS.
    cr = certainty_ratio(ccs, nnccs)
    assert torch.equal(torch.sign(cr), torch.sign(ccs))
    torch.testing.assert_close(cr * (nnccs + 1 + 1e-9), ccs)
