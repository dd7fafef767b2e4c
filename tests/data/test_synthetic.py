"""The synthetic face generator: determinism, distinguishability, quality, low variance, split."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from igfiqa.data.align import ARCFACE_TEMPLATE
from igfiqa.data.synthetic import (
    DEGRADATIONS,
    SyntheticFaces,
    degrade,
    ground_truth_quality,
    identity_parameters,
    parse_synthetic_spec,
    synthetic_from_spec,
)
from igfiqa.errors import ConfigError


def test_render_is_a_pure_function_of_seed_identity_sample() -> None:
    a = SyntheticFaces(10, 5, seed=3, image_size=48)
    b = SyntheticFaces(50, 2, seed=3, image_size=48, first_identity=4)  # other shape, same seed
    for identity, sample in [(4, 0), (7, 1), (9, 1)]:
        image_a, quality_a = a.render(identity, sample)
        image_b, quality_b = b.render(identity, sample)
        assert image_a.shape == (48, 48, 3) and image_a.dtype == np.uint8
        assert np.array_equal(image_a, image_b) and quality_a == quality_b
    assert not np.array_equal(a.render(4, 0)[0], a.render(4, 1)[0])
    assert not np.array_equal(
        a.render(4, 0)[0], SyntheticFaces(10, 5, seed=4, image_size=48).render(4, 0)[0]
    )


def test_identity_parameters_differ_across_thousands_of_identities() -> None:
    vectors = []
    for identity in range(3000):
        p = identity_parameters(0, identity)
        vectors.append(
            [
                *p.head_axes,
                p.jaw,
                p.chin,
                p.eye_dx,
                p.eye_dy,
                *p.eye_size,
                p.eye_tilt,
                p.eye_lid,
                p.brow_lift,
                p.brow_arch,
                p.brow_thickness,
                p.nose_length,
                p.nose_width,
                p.nose_tip,
                p.mouth_width,
                p.upper_lip,
                p.lower_lip,
            ]
        )
    v = np.asarray(vectors)
    v = (v - v.mean(0)) / v.std(0)
    # Nearest-neighbour distance in the standardised shape space: no two identities coincide.
    sq = (v**2).sum(1)
    d2 = sq[:, None] + sq[None, :] - 2 * v @ v.T
    np.fill_diagonal(d2, np.inf)
    assert np.sqrt(np.maximum(d2.min(), 0)) > 0.5


def test_coarse_attributes_are_shared_by_many_identities() -> None:
    # Skin tone cluster and hair colour/style: few combinations, each shared by many identities,
    # so an FR model cannot tell identities apart by them.
    combos = {}
    for identity in range(400):
        p = identity_parameters(0, identity)
        key = (int(np.argmin(np.abs(np.array(p.skin) - _tones()).sum(1))), p.hair, p.hair_style)
        combos[key] = combos.get(key, 0) + 1
    assert len(combos) <= 4 * 5 * 4
    assert np.mean(list(combos.values())) >= 4


def _tones() -> np.ndarray:
    from igfiqa.data import synthetic

    return synthetic._SKIN_TONES


def test_nearest_class_mean_on_pixels_separates_clean_identities() -> None:
    faces = SyntheticFaces(30, 10, seed=1, image_size=32, low_variance_share=0.0)
    images = np.stack(
        [[faces.render_clean(i, j).astype(np.float32) for j in range(10)] for i in range(30)]
    )
    # The central face region, standardised per image (removes the illumination gain).
    x = images[:, :, 6:26, 6:26].reshape(30, 10, -1)
    x = (x - x.mean(-1, keepdims=True)) / x.std(-1, keepdims=True)
    means = x[:, :6].mean(1)
    test = x[:, 6:].reshape(-1, x.shape[-1])
    truth = np.repeat(np.arange(30), 4)
    distances = ((test[:, None, :] - means[None]) ** 2).sum(-1)
    accuracy = (distances.argmin(1) == truth).mean()
    assert accuracy >= 0.8, accuracy  # chance is 1/30


def test_face_is_laid_out_on_the_arcface_template() -> None:
    # Averaged over identities, the eye points are darker than the cheeks right below them
    # (iris/pupil vs skin), and the image centre is face, not background.
    faces = SyntheticFaces(60, 1, seed=2, image_size=112, low_variance_share=1.0)  # little nuisance
    mean = np.mean([faces.render_clean(i, 0).astype(np.float32).mean(2) for i in range(60)], axis=0)
    for x, y in ARCFACE_TEMPLATE[:2]:
        eye = mean[round(y) - 1 : round(y) + 2, round(x) - 1 : round(x) + 2].mean()
        cheek = mean[round(y) + 12 : round(y) + 15, round(x) - 1 : round(x) + 2].mean()
        assert eye < cheek - 10


def _laplacian_energy(image: np.ndarray) -> float:
    import cv2

    return float(cv2.Laplacian(image.astype(np.float32).mean(2), cv2.CV_32F).var())


def _effect(kind: str, clean: np.ndarray, out: np.ndarray) -> float:
    """What degradation ``kind`` does to the image, as a number that should grow with severity."""
    diff = np.abs(out.astype(np.float64) - clean)
    if kind in ("defocus", "motion", "downscale"):  # fine detail lost
        return _laplacian_energy(clean) - _laplacian_energy(out)
    if kind == "noise":  # spread of the added noise
        return float((out.astype(np.float64) - clean).std())
    if kind == "occlusion":  # share of the inner face changed
        return float((diff[36:108, 24:88].max(2) > 12).mean())
    return float(diff.mean())  # jpeg, exposure, pose: how far the image moved


@pytest.mark.parametrize("kind", DEGRADATIONS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_degradation_effect_grows_with_severity(kind: str, seed: int) -> None:
    clean = SyntheticFaces(1, 1, seed=seed, image_size=112, low_variance_share=1.0).render_clean(
        0, 0
    )
    effects = []
    for severity in (0.0, 0.25, 0.5, 0.75, 1.0):
        # Same random state for each severity: only the strength changes.
        out = degrade(clean, kind, severity, np.random.default_rng(seed))
        assert out.shape == clean.shape and out.dtype == np.uint8
        effects.append(_effect(kind, clean, out))
    assert effects[0] == 0.0
    assert all(b > a for a, b in itertools.pairwise(effects)), effects


def test_occlusion_covers_about_the_stated_share() -> None:
    clean = SyntheticFaces(1, 1, seed=0, image_size=112, low_variance_share=1.0).render_clean(0, 0)
    shares = [
        _effect("occlusion", clean, degrade(clean, "occlusion", 0.8, np.random.default_rng(r)))
        for r in range(40)
    ]
    # 1.25 * 0.8^1.3 = 94 % of the inner face's area nominal, partly outside the measured box;
    # objects coloured like the face change fewer pixels
    assert 0.55 < float(np.mean(shares)) < 0.95


def test_ground_truth_quality_definition_and_trend() -> None:
    assert ground_truth_quality(()) == 1.0
    assert ground_truth_quality((("defocus", 0.5), ("noise", 0.2))) == pytest.approx(0.4)
    faces = SyntheticFaces(100, 3, seed=0, image_size=40, low_variance_share=0.0)
    qualities, damage = [], []
    for identity in range(100):
        for sample in range(2):
            image, quality = faces.render(identity, sample)
            assert 0.0 <= quality <= 1.0
            expected = ground_truth_quality(faces.degradations(identity, sample))
            assert quality == expected
            qualities.append(quality)
            clean = faces.render_clean(identity, sample)
            damage.append(np.abs(image.astype(np.float64) - clean).mean())
    # Lower ground-truth quality goes with more damage to the image (rank correlation).
    rank = lambda a: np.argsort(np.argsort(a))  # noqa: E731
    rho = np.corrcoef(rank(np.asarray(qualities)), rank(-np.asarray(damage)))[0, 1]
    assert rho > 0.4, rho
    assert np.std(qualities) > 0.15  # a real spread of qualities


def test_low_variance_share_and_behaviour() -> None:
    faces = SyntheticFaces(2000, 6, seed=9, image_size=32, low_variance_share=0.25)
    flags = np.array([faces.is_low_variance(i) for i in range(2000)])
    assert abs(flags.mean() - 0.25) < 0.01
    # Any block of identities has close to the share too.
    assert abs(flags[1000:1200].mean() - 0.25) < 0.03
    assert not SyntheticFaces(5, 2, low_variance_share=0.0).is_low_variance(3)
    low = np.flatnonzero(flags)[:8]
    normal = np.flatnonzero(~flags)[:8]
    for identity in low:  # one shared degradation level
        assert len({faces.render(int(identity), j)[1] for j in range(6)}) == 1

    def spread(identity: int) -> float:
        imgs = np.stack([faces.render_clean(identity, j).astype(np.float64) for j in range(6)])
        return float(imgs.std(0).mean())

    assert max(spread(int(i)) for i in low) < min(spread(int(i)) for i in normal)
    assert np.mean([len({faces.render(int(i), j)[1] for j in range(6)}) for i in normal]) > 4


def test_split_by_identity_is_disjoint_and_consistent() -> None:
    faces = SyntheticFaces(50, 3, seed=4, image_size=32)
    train, test = faces.split(0.2)
    assert len(test.identities) == 10 and len(train.identities) == 40
    assert set(train.identities).isdisjoint(test.identities)
    assert set(train.identities) | set(test.identities) == set(faces.identities)
    # Same global identity renders identically; test labels restart at 0.
    assert np.array_equal(test.render(45, 1)[0], faces.render(45, 1)[0])
    assert test.labels[0] == 0 and test.locate(0) == (40, 0)
    with pytest.raises(ConfigError):
        faces.split(0.0)


def test_spec_parsing_and_errors() -> None:
    options = parse_synthetic_spec(
        "synthetic:identities=7,samples=3,seed=2,low_variance_share=0.5,image_size=40"
    )
    assert options["identities"] == 7 and options["low_variance_share"] == 0.5
    faces = synthetic_from_spec("synthetic:identities=7,samples=3,image_size=40")
    assert len(faces) == 21 and faces.image_size == 40
    assert synthetic_from_spec("synthetic").num_identities == 100
    with pytest.raises(ConfigError, match="colour"):
        parse_synthetic_spec("synthetic:colour=3")
    with pytest.raises(ConfigError, match="not a number"):
        parse_synthetic_spec("synthetic:identities=many")
    with pytest.raises(ConfigError, match="image_size"):
        synthetic_from_spec("synthetic:image_size=4")
    with pytest.raises(ConfigError, match="low_variance_share"):
        SyntheticFaces(3, 3, low_variance_share=1.5)


def test_generator_pickles_without_its_cache() -> None:
    import pickle

    faces = SyntheticFaces(40, 2, seed=0, image_size=112)
    for identity in range(40):
        faces.render(identity, 0)
    clone = pickle.loads(pickle.dumps(faces))
    assert len(pickle.dumps(faces)) < 10_000 and clone._skin_cache == {}
    assert np.array_equal(clone.render(7, 1)[0], faces.render(7, 1)[0])


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("synthetic:seed=-5", "seed must be in"),
        ("synthetic:first_identity=-1", "first_identity"),
        ("synthetic:identities=100000000000,samples=100000000", "more than the 20,000,000"),
        ("synthetic:identities=2000000,samples=1000", "2,000,000,000 images"),
    ],
)
def test_out_of_range_specs_are_refused_before_anything_is_allocated(spec, message):
    from igfiqa.data.synthetic import synthetic_from_spec

    with pytest.raises(ConfigError, match=message):
        synthetic_from_spec(spec)


def test_render_frontal_landmarks_sit_on_the_drawn_features() -> None:
    import cv2

    faces = SyntheticFaces(12, 1, seed=4, image_size=112, low_variance_share=0.0)
    for identity in range(12):
        image, points = faces.render_frontal(identity)
        again, same = faces.render_frontal(identity)
        assert np.array_equal(image, again) and np.array_equal(points, same)
        grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        for x, y in points[:2]:  # the pupils (drawn near-black) are at the eye centres
            assert grey[round(y) - 1 : round(y) + 2, round(x) - 1 : round(x) + 2].min() < 40
        assert points[0, 0] < points[2, 0] < points[1, 0]  # nose between the eyes
        assert points[3, 0] < points[4, 0] and points[3, 1] > points[2, 1]  # mouth below the nose
