"""The expected-FNMR calibration: good-reference comparisons, the isotonic fit, the band, the
thresholds and their cost, the model card, scoring and the CLI."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from igfiqa.cli import app
from igfiqa.errors import CheckpointError, ConfigError, DataError
from igfiqa.evaluation import edc
from igfiqa.evaluation.expected_fnmr import (
    fit_expected_fnmr,
    isotonic_decreasing,
    mated_comparisons,
    reliability,
    split_identities,
)
from igfiqa.inference.expected_fnmr import ExpectedFnmr


def population(
    identities: int = 300, per_identity: int = 6, seed: int = 0, shift: float = 0.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(quality, pairs, mated, similarity, identities): a mated score rises with the pair's lower
    quality, non-mated scores are noise; every mated pair, 60,000 random non-mated ones."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(identities), per_identity)
    quality = rng.uniform(0, 1, labels.size)
    i, j = np.triu_indices(per_identity, 1)
    offsets = np.arange(identities)[:, None] * per_identity
    mated_pairs = np.stack([(offsets + i).ravel(), (offsets + j).ravel()], axis=1)
    other = rng.integers(0, labels.size, (60_000, 2))
    other = other[labels[other[:, 0]] != labels[other[:, 1]]]
    pairs = np.concatenate([mated_pairs, other])
    mated = np.arange(len(pairs)) < len(mated_pairs)
    low = np.minimum(quality[pairs[:, 0]], quality[pairs[:, 1]])
    similarity = np.where(
        mated,
        0.2 + 0.5 * low + shift + rng.normal(0, 0.1, len(pairs)),
        rng.normal(0, 0.1, len(pairs)),
    )
    return quality, pairs, mated, similarity, labels


def test_good_reference_comparisons_by_hand() -> None:
    quality = np.array([0.1, 0.9, 0.5, 0.7, np.nan])
    pairs = np.array([[0, 1], [2, 3], [0, 2], [1, 4], [0, 3]])
    mated = np.array([True, True, True, True, False])
    similarity = np.array([0.3, 0.6, 0.2, 0.9, 0.1])
    out = mated_comparisons(quality, pairs, mated, similarity)
    # units in usable pairs: 0, 1, 2, 3 (pair [1, 4] has a NaN); median of .1 .9 .5 .7 = 0.6
    assert out.reference_floor == pytest.approx(0.6)
    got = sorted(zip(out.probe.tolist(), out.score.tolist(), strict=True))
    # (0, 1): probe 0 against 1 (0.9 >= 0.6); 1 against 0 no.  (2, 3): 2 against 3.  (0, 2): none
    assert got == [(0, 0.3), (2, 0.6)]
    np.testing.assert_array_equal(out.quality, quality[out.probe])


def test_isotonic_fit_by_hand() -> None:
    knots, values = isotonic_decreasing(
        np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 0.0, 1.0, 0.0]), np.ones(4)
    )
    # the violating middle pair pools to 0.5: blocks {1}: 1, {2, 3}: 0.5, {4}: 0
    np.testing.assert_allclose(knots, [1, 2, 3, 4])
    np.testing.assert_allclose(values, [1, 0.5, 0.5, 0])
    # equal x are pooled first; weights count
    knots, values = isotonic_decreasing(
        np.array([1.0, 1.0, 2.0]), np.array([1.0, 0.0, 1.0]), np.array([1.0, 3.0, 1.0])
    )
    # at x = 1 the mean is 0.25, then 1 at x = 2 violates: pooled (0.25 * 4 + 1) / 5 = 0.4
    np.testing.assert_allclose(values, [0.4, 0.4])


def test_fit_matches_the_definition_on_two_quality_levels() -> None:
    rng = np.random.default_rng(1)
    n = 400
    labels = np.repeat(np.arange(n // 4), 4)
    quality = np.where(np.arange(n) % 4 < 2, 0.2, 0.8)  # two good, two poor samples per identity
    i, j = np.triu_indices(4, 1)
    mated_pairs = np.stack([(np.arange(n // 4)[:, None] * 4 + i).ravel(),
                            (np.arange(n // 4)[:, None] * 4 + j).ravel()], axis=1)  # fmt: skip
    other = rng.integers(0, n, (20_000, 2))
    other = other[labels[other[:, 0]] != labels[other[:, 1]]]
    pairs = np.concatenate([mated_pairs, other])
    mated = np.arange(len(pairs)) < len(mated_pairs)
    low = np.minimum(quality[pairs[:, 0]], quality[pairs[:, 1]])
    # a poor probe fails against a good reference a third of the time, a good probe never
    fail = rng.uniform(size=len(pairs)) < 1 / 3
    similarity = np.where(
        mated, np.where((low < 0.5) & fail, -1.0, 2.0), rng.normal(0, 0.1, len(pairs))
    )
    cal = fit_expected_fnmr(quality, pairs, mated, similarity, fmr=1e-2, identities=labels,
                            bootstrap=50)  # fmt: skip
    assert cal.threshold == edc.threshold_at_fmr(similarity[~mated], 1e-2)
    comparisons = mated_comparisons(quality, pairs, mated, similarity)
    poor = comparisons.quality < 0.5
    want_poor = float((comparisons.score[poor] < cal.threshold).mean())
    fnmr, low_band, high_band = cal(np.array([0.2, 0.8, 0.5]))
    assert fnmr[0] == pytest.approx(want_poor) and fnmr[1] == 0.0
    assert 0 < fnmr[2] < fnmr[0]  # linear between the two blocks
    assert low_band[0] < fnmr[0] < high_band[0]
    assert cal.info["num_mated_comparisons"] == comparisons.score.size
    assert cal.info["num_identities"] == n // 4


def test_band_and_reliability_hold_on_held_out_identities() -> None:
    quality, pairs, mated, similarity, labels = population()
    fit, held = split_identities(labels, pairs, 0.5, seed=0)
    assert not (fit & held).any()
    cal = fit_expected_fnmr(
        quality, pairs[fit], mated[fit], similarity[fit], identities=labels, bootstrap=200
    )
    assert np.all(np.diff(cal.fnmr) <= 0) and np.all(np.diff(cal.high) <= 1e-12)
    assert np.all(np.asarray(cal.low) <= cal.fnmr) and np.all(np.asarray(cal.high) >= cal.fnmr)
    check = reliability(cal, quality, pairs[held], mated[held], similarity[held], identities=labels)
    assert check.count.sum() > 1000 and check.within.all(), check.to_dict()
    assert check.consistent.all()
    assert np.all(check.observed_low <= check.observed) and np.all(
        check.observed <= check.observed_high
    )
    # the same calibration on a population whose FR scores are worse is flagged
    worse = population(seed=0, shift=-0.15)
    off = reliability(
        cal, worse[0], worse[1][held], worse[2][held], worse[3][held], identities=labels
    )
    assert not off.within.all() and not off.consistent.all()
    assert np.nanmax(off.observed - off.predicted) > 0.1


def test_calibration_object_thresholds_and_round_trip() -> None:
    cal = ExpectedFnmr(
        quality=(0.0, 1.0, 2.0),
        fnmr=(0.2, 0.1, 0.0),
        low=(0.15, 0.05, 0.0),
        high=(0.3, 0.2, 0.05),
        sample_quantiles=tuple(np.linspace(0.0, 2.0, 101)),
        fmr=1e-3,
        threshold=0.3,
        info={"fr_model": "x"},
    )
    assert cal.threshold_for(0.15) == pytest.approx(0.5)  # halfway down the first segment
    # the band's upper edge falls 0.2 -> 0.05 between 1 and 2: 0.15 at 1 + 0.05 / 0.15
    assert cal.threshold_for(0.15, conservative=True) == pytest.approx(4 / 3)
    assert cal.threshold_for(0.5) == -math.inf and cal.threshold_for(0.0) == pytest.approx(2.0)
    assert cal.rejected_share(0.5) == pytest.approx(0.25)  # uniform quantiles over [0, 2]
    assert cal.rejected_share(-math.inf) == 0.0 and cal.rejected_share(math.inf) == 1.0
    row = cal.thresholds([0.15])[0]
    assert row["rejected_share"] == pytest.approx(0.25)
    assert row["conservative_rejected_share"] == pytest.approx(2 / 3)
    fnmr, _low, high = cal(np.array([np.nan, -5.0, 0.5, 9.0]))
    assert np.isnan(fnmr[0]) and fnmr[1] == 0.2 and fnmr[2] == pytest.approx(0.15)
    assert fnmr[3] == 0.0 and high[2] == pytest.approx(0.25)
    again = ExpectedFnmr.from_dict(json.loads(json.dumps(cal.to_dict())))
    assert again == cal
    bad = cal.to_dict() | {"fnmr": [0.1, 0.2, 0.0]}
    with pytest.raises(CheckpointError, match="non-increasing"):
        ExpectedFnmr.from_dict(bad)
    with pytest.raises(CheckpointError):
        ExpectedFnmr.from_dict({"method": "reference-percentile"})
    with pytest.raises(ConfigError):
        cal.threshold_for(1.5)


def test_fit_refuses_what_it_cannot_measure() -> None:
    quality, pairs, mated, similarity, _labels = population(identities=20)
    with pytest.raises(DataError, match="resolution"):
        fit_expected_fnmr(quality, pairs, mated, similarity, fmr=1e-6)
    with pytest.raises(ConfigError, match="bootstrap"):
        fit_expected_fnmr(quality, pairs, mated, similarity, bootstrap=5)
    with pytest.raises(DataError, match="non-mated"):
        fit_expected_fnmr(quality, pairs[mated], mated[mated], similarity[mated])


@pytest.fixture(scope="module")
def tiny_backbone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from igfiqa.models import create_model

    torch.manual_seed(0)
    net = create_model("r18", width=0.125, input_size=32, num_features=16, quality_head=True)
    path = tmp_path_factory.mktemp("fnmr") / "181952backbone.pth"
    torch.save(net.eval().state_dict(), path)
    return path


def test_calibrate_export_thresholds_and_score_end_to_end(
    tiny_backbone: Path, tmp_path: Path
) -> None:
    runner = CliRunner()
    bench = "synthetic:identities=24,samples=4,image_size=32,seed=3"
    out = tmp_path / "cal"
    result = runner.invoke(
        app,
        ["calibrate", str(tiny_backbone), "-b", bench, "-f", str(tiny_backbone), "--fmr", "0.01",
         "--holdout", "0.5", "--bootstrap", "30", "-o", str(out), "--no-progress"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    for name in ("expected_fnmr.json", "calibration.md", "expected_fnmr.png", "reliability.png",
                 "reliability.json"):  # fmt: skip
        assert (out / name).is_file(), name
    data = json.loads((out / "expected_fnmr.json").read_text())
    assert data["fmr"] == 0.01 and data["info"]["num_identities"] > 0
    shown = runner.invoke(app, ["thresholds", str(out / "expected_fnmr.json"), "-t", "0.05"])
    assert shown.exit_code == 0 and "5.0%" in shown.output

    export = tmp_path / "export"
    exported = runner.invoke(
        app,
        ["export", str(tiny_backbone), "--out", str(export), "--reference", "none",
         "--fnmr-calibration", str(out / "expected_fnmr.json"), "--no-progress"],
    )  # fmt: skip
    assert exported.exit_code == 0, exported.output
    card = json.loads((export / "model_card.json").read_text())
    assert card["expected_fnmr"]["fmr"] == 0.01

    from igfiqa.inference import load_model

    model = load_model(export, device="cpu")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    scores = model.score(images)
    fnmr, low, high = model.expected_fnmr(np.append(scores, np.nan))
    assert np.isnan(fnmr[-1]) and np.all((low[:3] <= fnmr[:3]) & (fnmr[:3] <= high[:3]))

    import cv2

    folder = tmp_path / "faces"
    folder.mkdir()
    for k, image in enumerate(images):
        cv2.imwrite(str(folder / f"{k}.png"), image[..., ::-1])
    scored = runner.invoke(
        app, ["score", str(export), str(folder), "--calibrated", "-o", str(tmp_path / "s.csv")]
    )
    assert scored.exit_code == 0, scored.output
    rows = list(csv.DictReader((tmp_path / "s.csv").open()))
    assert "calibrated" not in rows[0]  # no percentile calibration in this card
    for row in rows:
        q = float(row["quality"])
        want = model.expected_fnmr(np.array([q]))
        assert float(row["expected_fnmr"]) == pytest.approx(want[0][0], rel=1e-4, abs=1e-9)
        assert float(row["expected_fnmr_low"]) <= float(row["expected_fnmr_high"])
    missing = runner.invoke(app, ["thresholds", str(tiny_backbone)])
    assert missing.exit_code != 0
