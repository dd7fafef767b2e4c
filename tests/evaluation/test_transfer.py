import cv2
import numpy as np
import pytest

from igfiqa.evaluation.correlation import spearman, weighted_spearman
from igfiqa.evaluation.transfer import (
    DEGRADATIONS,
    FACE_REGION,
    KINDS,
    OCCLUSION_SHARES,
    blur,
    bootstrap_over_faces,
    check_targets,
    clean_above_degraded,
    concentration,
    degrade_face,
    downscale,
    embedding_diagnostics,
    noise,
    occlude,
    per_face_spearman,
    spearman_per_kind,
    transfer_metrics,
)


@pytest.fixture(scope="module")
def face() -> np.ndarray:
    from igfiqa.data.synthetic import SyntheticFaces

    return SyntheticFaces(2, 2, image_size=112).render(0, 0)[0]


def design(faces: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """face id, kind and severity of ``faces`` x 13 images, in degrade_face's order."""
    kinds = ["clean"] + [kind for kind in KINDS for _ in range(3)]
    severities = [0] + [level for _ in KINDS for level in (1, 2, 3)]
    return (
        np.repeat(np.arange(faces), 13),
        np.tile(np.array(kinds), faces),
        np.tile(np.array(severities), faces),
    )


# -- metrics ----------------------------------------------------------------------------------------


def test_perfect_ranking_gives_one_and_reversed_gives_minus_one():
    face, kind, severity = design(5)
    perfect = transfer_metrics(-severity.astype(float), face, kind, severity, resamples=50)
    assert perfect["spearman"] == pytest.approx(1.0)
    assert perfect["clean_above_degraded"] == 1.0
    assert perfect["per_face_spearman"]["mean"] == pytest.approx(1.0)
    assert all(v == pytest.approx(1.0) for v in perfect["spearman_per_kind"].values())
    assert all(v == 1.0 for v in perfect["clean_above_degraded_per_kind"].values())
    assert perfect["pairs"] == 5 * 12
    assert check_targets(perfect) == {
        "spearman": True,
        "clean_above_degraded": True,
        "per_kind_spearman_positive": True,
    }
    reversed_ = transfer_metrics(severity.astype(float), face, kind, severity, resamples=50)
    assert reversed_["spearman"] == pytest.approx(-1.0)
    assert reversed_["clean_above_degraded"] == 0.0
    assert reversed_["per_face_spearman"]["mean"] == pytest.approx(-1.0)
    assert not any(check_targets(reversed_).values())


def test_ties_count_half_and_constant_faces_are_skipped():
    # face 0: clean 1.0, degraded 1.0 (tie), 0.0 (below), 2.0 (above) -> (0.5 + 1 + 0) / 3
    # face 1: all equal -> 3 ties -> 1.5 / 3; its Spearman is undefined and skipped
    quality = np.array([1.0, 1.0, 0.0, 2.0, 5.0, 5.0, 5.0, 5.0])
    face = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    kind = np.array(["clean", "blur", "blur", "blur"] * 2)
    severity = np.array([0, 1, 2, 3] * 2)
    share = clean_above_degraded(quality, face, kind, severity)
    assert share["overall"] == pytest.approx((0.5 + 1 + 0 + 1.5) / 6)
    assert share["per_level"]["blur"] == {"1": 0.5, "2": 0.75, "3": 0.25}
    assert share["pairs"] == 6
    faces = per_face_spearman(quality, face, severity)
    assert faces["faces_used"] == 1 and faces["faces_skipped"] == 1
    assert faces["per_face"]["1"] is None
    assert faces["mean"] == pytest.approx(spearman(quality[:4], -severity[:4]))


def test_per_kind_selects_the_kind_and_the_clean_images():
    face, kind, severity = design(3)
    # blur ranked perfectly, noise reversed (degraded above clean), the others all tied with clean
    quality = np.zeros(len(face))
    quality[kind == "blur"] = -severity[kind == "blur"]
    quality[kind == "noise"] = severity[kind == "noise"]
    per_kind = spearman_per_kind(quality, kind, severity)
    assert per_kind["blur"] == pytest.approx(1.0)
    assert per_kind["noise"] == pytest.approx(-1.0)
    assert per_kind["downscale"] is None  # constant quality over downscale + clean
    share = clean_above_degraded(quality, face, kind, severity)
    assert share["per_kind"] == {"blur": 1.0, "downscale": 0.5, "noise": 0.0, "occlusion": 0.5}
    assert share["per_level"]["noise"] == {"1": 0.0, "2": 0.0, "3": 0.0}
    assert not check_targets(transfer_metrics(quality, face, kind, severity, resamples=20))[
        "per_kind_spearman_positive"
    ]


def test_metrics_check_their_inputs():
    with pytest.raises(ValueError, match="same images"):
        transfer_metrics([1.0, 2.0], [0, 0], ["clean", "blur"], [0, 0])
    with pytest.raises(ValueError, match="differ in length"):
        transfer_metrics([1.0], [0, 0], ["clean", "blur"], [0, 1])


def test_bootstrap_contains_the_estimate_and_is_deterministic_per_seed():
    rng = np.random.default_rng(3)
    face, kind, severity = design(12)
    quality = -severity + rng.normal(0, 1.5, len(face)) + rng.normal(0, 2, 12)[face]
    metrics = transfer_metrics(quality, face, kind, severity, resamples=500, seed=7)
    boot = metrics["bootstrap"]
    low, high = boot["spearman_ci"]
    assert low < metrics["spearman"] < high
    low, high = boot["clean_above_degraded_ci"]
    assert low < metrics["clean_above_degraded"] < high
    again = bootstrap_over_faces(quality, face, kind, severity, resamples=500, seed=7)
    assert again == boot
    other = bootstrap_over_faces(quality, face, kind, severity, resamples=500, seed=8)
    assert other["spearman_ci"] != boot["spearman_ci"]


def test_bootstrap_resample_equals_the_statistic_of_the_duplicated_faces():
    # a resample drawing faces [0, 0, 2]: weighted Spearman == Spearman of the repeated images
    rng = np.random.default_rng(0)
    face, _, severity = design(3)
    quality = np.round(rng.normal(size=len(face)), 1)  # rounded: ties across faces
    weights = np.array([2.0, 0.0, 1.0])[face]
    keep = np.repeat(np.arange(len(face)), weights.astype(int))
    expected = spearman(quality[keep], -severity[keep])
    assert weighted_spearman(quality, -severity, weights) == pytest.approx(expected)


def test_weighted_spearman_matches_spearman_of_the_repeated_sample():
    rng = np.random.default_rng(1)
    for _ in range(50):
        n = int(rng.integers(1, 15))
        a = rng.integers(0, 4, n).astype(float)
        b = rng.integers(0, 3, n).astype(float)
        a[rng.integers(n)] = np.nan if rng.random() < 0.3 else a[0]
        weights = rng.integers(0, 3, (4, n))
        expected = [spearman(np.repeat(a, w), np.repeat(b, w)) for w in weights]
        np.testing.assert_allclose(weighted_spearman(a, b, weights), expected, equal_nan=True)


# -- degradations ------------------------------------------------------------------------------------


def laplacian_variance(image: np.ndarray) -> float:
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


@pytest.mark.parametrize("degrade", [blur, downscale])
def test_blur_and_downscale_remove_more_detail_at_each_level(face, degrade):
    energy = [
        laplacian_variance(degrade(face, level, np.random.default_rng(0))) for level in range(4)
    ]
    assert energy[0] == pytest.approx(laplacian_variance(face))
    assert (np.diff(energy) < 0).all(), energy


def test_noise_grows_with_level_and_is_seeded(face):
    spread = [
        (noise(face, level, np.random.default_rng(0)).astype(float) - face).std()
        for level in range(4)
    ]
    assert spread[0] == 0
    assert (np.diff(spread) > 0).all(), spread
    assert spread[1] == pytest.approx(10, rel=0.15)
    np.testing.assert_array_equal(
        noise(face, 2, np.random.default_rng(5)), noise(face, 2, np.random.default_rng(5))
    )


def test_occlusion_covers_the_stated_share_of_the_face_region(face):
    x0, y0, x1, y1 = FACE_REGION
    inside = np.zeros(face.shape[:2], bool)
    inside[y0:y1, x0:x1] = True
    for seed in range(6):  # rectangles and ellipses at several positions
        changed = [
            (occlude(face, level, np.random.default_rng(seed)) != face).any(axis=2)
            for level in range(4)
        ]
        assert not changed[0].any()
        shares = [c[inside].mean() for c in changed]
        assert (np.diff(shares) > 0).all(), shares
        for share, stated in zip(shares[1:], OCCLUSION_SHARES, strict=True):
            assert share == pytest.approx(stated, abs=0.02)
        for level in range(1, 4):
            assert not changed[level][~inside].any()  # always over the face
            assert not (changed[level - 1] & ~changed[level]).any()  # nested levels


def test_occlusion_patch_is_one_colour_from_the_surroundings_and_shapes_vary(face):
    corners = []
    for seed in range(8):
        out = occlude(face, 3, np.random.default_rng(seed))
        patch = out[(out != face).any(axis=2)]
        assert len(np.unique(patch, axis=0)) == 1
        ys, xs = np.nonzero((out != face).any(axis=2))
        box = out[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
        corners.append(bool((box[0, 0] == patch[0]).all()))
    assert any(corners) and not all(corners)  # rectangles (corner painted) and ellipses (not)


def test_degrade_face_gives_the_clean_image_and_twelve_degraded_copies(face):
    images, kinds, severities = degrade_face(face, [0, 3])
    assert len(images) == 13 and kinds[0] == "clean" and severities[0] == 0
    np.testing.assert_array_equal(images[0], face)
    assert kinds[1:] == [kind for kind in KINDS for _ in range(3)]
    assert severities[1:] == [1, 2, 3] * len(KINDS)
    assert all(image.shape == face.shape and image.dtype == np.uint8 for image in images)
    again, _, _ = degrade_face(face, [0, 3])
    assert all(np.array_equal(a, b) for a, b in zip(images, again, strict=True))
    assert set(DEGRADATIONS) == set(KINDS)


# -- embedding diagnostics --------------------------------------------------------------------------


def test_concentration_by_hand():
    # two orthogonal directions: mean (1/2, 1/2) has length sqrt(2)/2; their cosine is 0
    result = concentration(np.array([[3.0, 0.0], [0.0, 0.5]]))
    assert result["resultant"] == pytest.approx(np.sqrt(2) / 2)
    assert result["mean_cosine"] == pytest.approx(0.0, abs=1e-12)
    # one direction at different lengths; opposite directions
    assert concentration(np.array([[1.0, 1.0], [5.0, 5.0], [0.1, 0.1]])) == pytest.approx(
        {"resultant": 1.0, "mean_cosine": 1.0}
    )
    assert concentration(np.array([[2.0, 0.0], [-1.0, 0.0]])) == pytest.approx(
        {"resultant": 0.0, "mean_cosine": -1.0}
    )
    assert concentration(np.ones((1, 4))) == {"resultant": None, "mean_cosine": None}
    with pytest.raises(ValueError, match=r"\(N, F\)"):
        concentration(np.ones(4))


def test_concentration_mean_cosine_equals_the_mean_over_pairs():
    e = np.random.default_rng(3).normal(size=(9, 5)) + 0.7
    unit = e / np.linalg.norm(e, axis=1, keepdims=True)
    pairs = [unit[i] @ unit[j] for i in range(9) for j in range(9) if i != j]
    assert concentration(e)["mean_cosine"] == pytest.approx(np.mean(pairs))


def test_embedding_diagnostics_follow_the_norm_and_the_quality():
    faces, kinds, severities = design(4)
    rng = np.random.default_rng(0)
    directions = rng.normal(size=(faces.size, 8))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    kind_code = np.unique(kinds, return_inverse=True)[1]
    # shrinks with the damage within every face; no two images tie
    norm = 10.0 - severities + 0.1 * faces + 0.01 * kind_code
    embeddings = directions * norm[:, None]
    quality = -norm  # a head that reads the norm backwards
    result = embedding_diagnostics(embeddings, quality, faces, kinds, severities)
    expected = spearman(norm, -severities.astype(float))
    assert result["norm_spearman"] == pytest.approx(expected)
    assert expected > 0.9
    assert result["quality_norm_spearman"] == pytest.approx(-1.0)
    assert set(result["norm_spearman_per_kind"]) == set(KINDS)
    assert result["norm_spearman_per_kind"]["blur"] == pytest.approx(
        spearman_per_kind(norm, kinds, severities)["blur"]
    )
    assert result["clean"] == pytest.approx(concentration(embeddings[kinds == "clean"]))
    with pytest.raises(ValueError, match=r"\(52, F\)"):
        embedding_diagnostics(embeddings[:-1], quality, faces, kinds, severities)
