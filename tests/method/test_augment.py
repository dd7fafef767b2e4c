"""QualityAugmentation: per-sample draws, each operation against an independent reference, RNG state."""

from __future__ import annotations

import math

import kornia
import pytest
import torch
import torch.nn.functional as F

from igfiqa.errors import CheckpointError, ConfigError
from igfiqa.method.augment import AugmentConfig, QualityAugmentation

OFF = {
    "downscale_p": 0.0,
    "blur_p": 0.0,
    "erase_p": 0.0,
    "jitter_p": 0.0,
    "greyscale_p": 0.0,
    "jpeg_p": 0.0,
}


def only(**fields) -> AugmentConfig:
    return AugmentConfig(**{**OFF, **fields})


def images(batch: int = 6, size: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, size, size, generator=g) * 1.6 - 0.8  # inside (-1, 1)


def to01(x: torch.Tensor) -> torch.Tensor:
    return (x + 1) / 2


def test_shape_range_dtype_and_reproducibility():
    x = images(8)
    a = QualityAugmentation(AugmentConfig(), seed=3)(x)
    b = QualityAugmentation(AugmentConfig(), seed=3)(x)
    c = QualityAugmentation(AugmentConfig(), seed=4)(x)
    assert a.shape == x.shape and a.dtype == x.dtype
    assert a.min() >= -1.0 and a.max() <= 1.0
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(a, c)
    assert not torch.equal(a, x)


def test_disabled_or_zero_probabilities_leave_images_untouched():
    x = images()
    torch.testing.assert_close(QualityAugmentation(AugmentConfig(enabled=False))(x), x)
    torch.testing.assert_close(QualityAugmentation(only())(x), x, rtol=0, atol=1e-7)


def test_state_dict_resumes_the_exact_sequence(tmp_path):
    x = images()
    aug = QualityAugmentation(AugmentConfig(), seed=11)
    aug(x)
    torch.save(aug.state_dict(), tmp_path / "aug.pt")
    expected = [aug(x), aug(x)]
    resumed = QualityAugmentation(AugmentConfig(), seed=0)
    resumed.load_state_dict(torch.load(tmp_path / "aug.pt", weights_only=True))
    for want in expected:
        torch.testing.assert_close(resumed(x), want, rtol=0, atol=0)
    with pytest.raises(CheckpointError, match="generator"):
        resumed.load_state_dict({"seed": 1})


def test_switching_one_operation_off_keeps_the_other_draws():
    a = QualityAugmentation(AugmentConfig(), seed=5).sample(16, 32, 32)
    b = QualityAugmentation(AugmentConfig(blur_p=0.0), seed=5).sample(16, 32, 32)
    assert not b.blur.any()
    torch.testing.assert_close(a.erase_box, b.erase_box)
    torch.testing.assert_close(a.scale, b.scale)
    assert torch.equal(a.jitter, b.jitter)


def test_brightness_draws_one_factor_per_image():
    x = images(16)
    aug = QualityAugmentation(only(jitter_p=1.0, contrast=0.0, saturation=0.0), seed=1)
    out = to01(aug(x))
    ratio = out / to01(x)
    per_image = ratio.flatten(1)
    unclipped = out.flatten(1) < 0.999
    factors = []
    for row, keep in zip(per_image, unclipped, strict=True):
        values = row[keep]
        assert (values.max() - values.min()).item() < 1e-4  # one factor per image
        factors.append(values.mean().item())
    assert all(0.6 - 1e-4 <= f <= 1.4 + 1e-4 for f in factors)
    assert len({round(f, 3) for f in factors}) > 10  # per sample, not per batch


def test_contrast_and_saturation_match_their_definitions():
    x = to01(images(4))
    luma = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    aug = QualityAugmentation(only(jitter_p=1.0, brightness=0.0, saturation=0.0), seed=2)
    params = aug.sample(4, 32, 32)
    out = to01(aug.apply(x * 2 - 1, params))
    mean = (x * luma).sum(1, keepdim=True).mean(dim=(2, 3), keepdim=True)
    c = params.contrast.float().view(-1, 1, 1, 1)
    torch.testing.assert_close(out, ((x - mean) * c + mean).clamp(0, 1), atol=1e-6, rtol=0)

    aug = QualityAugmentation(only(jitter_p=1.0, brightness=0.0, contrast=0.0), seed=2)
    params = aug.sample(4, 32, 32)
    out = to01(aug.apply(x * 2 - 1, params))
    grey = (x * luma).sum(1, keepdim=True)
    s = params.saturation.float().view(-1, 1, 1, 1)
    torch.testing.assert_close(out, ((x - grey) * s + grey).clamp(0, 1), atol=1e-6, rtol=0)


def test_greyscale_uses_the_luma_weights():
    x = images(4)
    out = to01(QualityAugmentation(only(greyscale_p=1.0))(x))
    r, g, b = to01(x).unbind(1)
    grey = 0.299 * r + 0.587 * g + 0.114 * b
    for channel in range(3):
        torch.testing.assert_close(out[:, channel], grey, atol=1e-6, rtol=0)


@pytest.mark.parametrize(("factor", "low"), [(0.5, 16), (0.25, 8), (0.125, 4)])
def test_downscale_equals_area_down_then_bilinear_up(factor, low):
    x = images(3, 32).double()
    aug = QualityAugmentation(only(downscale_p=1.0, downscale_min=factor, downscale_max=factor))
    out = to01(aug(x))
    small = F.interpolate(to01(x), size=(low, low), mode="area")
    reference = F.interpolate(small, size=(32, 32), mode="bilinear", align_corners=False)
    torch.testing.assert_close(out, reference, atol=1e-9, rtol=0)
    single = to01(aug(x.float()))  # float32 images: float32 operators
    torch.testing.assert_close(single, reference.float(), atol=2e-6, rtol=0)


def test_downscale_of_non_square_images():
    x = torch.rand(2, 3, 32, 48, dtype=torch.float64) * 2 - 1
    aug = QualityAugmentation(only(downscale_p=1.0, downscale_min=0.5, downscale_max=0.5))
    reference = F.interpolate(
        F.interpolate(to01(x), size=(16, 24), mode="area"), size=(32, 48), mode="bilinear"
    )
    torch.testing.assert_close(to01(aug(x)), reference, atol=1e-9, rtol=0)


@pytest.mark.parametrize("sigma", [0.4, 1.3, 2.5])
def test_blur_matches_kornia_gaussian_with_reflect_borders(sigma):
    x = images(3, 32).double()
    aug = QualityAugmentation(only(blur_p=1.0, blur_sigma_min=sigma, blur_sigma_max=sigma))
    side = 2 * math.ceil(3 * sigma) + 1
    reference = kornia.filters.gaussian_blur2d(
        to01(x), (side, side), (sigma, sigma), border_type="reflect"
    )
    torch.testing.assert_close(to01(aug(x)), reference, atol=1e-9, rtol=0)


def test_blur_sigma_is_drawn_per_image():
    x = images(8, 32).double()
    aug = QualityAugmentation(only(blur_p=1.0), seed=7)
    params = aug.sample(8, 32, 32)
    out = to01(aug.apply(x, params))
    for i, sigma in enumerate(params.sigma.tolist()):
        side = 2 * math.ceil(3 * sigma) + 1
        ref = kornia.filters.gaussian_blur2d(
            to01(x[i : i + 1]), (side, side), (sigma, sigma), border_type="reflect"
        )
        torch.testing.assert_close(out[i : i + 1], ref, atol=1e-9, rtol=0)
    assert params.sigma.unique().numel() == 8


def test_erasing_draws_one_black_rectangle_per_image_within_the_area_range():
    x = images(32, 40)
    out = QualityAugmentation(only(erase_p=1.0, erase_value=0.0), seed=3)(x)
    boxes = set()
    for image in out:
        erased = (image == -1.0).all(dim=0)
        rows = erased.any(dim=1).nonzero().squeeze(1)
        cols = erased.any(dim=0).nonzero().squeeze(1)
        h, w = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
        assert erased.sum().item() == h * w  # a filled rectangle
        share = (h * w).item() / (40 * 40)
        assert 0.02 * 0.8 <= share <= 0.4 * 1.2  # rounding of the box sides
        boxes.add((rows.min().item(), cols.min().item(), h.item(), w.item()))
    assert len(boxes) > 20


def test_erase_fills_zero_in_model_space_by_default():
    assert AugmentConfig().erase_value == 0.5  # pixel 0.5 = 0 in model space
    out = QualityAugmentation(only(erase_p=1.0), seed=0)(images(2))
    for image in out:
        erased = (image == 0.0).all(dim=0)
        assert erased.sum() >= 0.02 * 0.8 * 32 * 32  # one box of the drawn area, filled with 0


@pytest.mark.parametrize("backend", ["kornia", "cv2"])
def test_jpeg_degrades_more_at_lower_quality(backend):
    x = images(4, 48)
    errors = []
    for quality in (10, 60):
        config = only(
            jpeg_p=1.0, jpeg_quality_min=quality, jpeg_quality_max=quality, jpeg_backend=backend
        )
        out = QualityAugmentation(config)(x)
        assert out.shape == x.shape
        errors.append((out - x).abs().mean().item())
    assert errors[0] > errors[1] > 0.0


def test_kornia_jpeg_approximates_real_jpeg():
    x = images(4, 48)
    config = {"jpeg_p": 1.0, "jpeg_quality_min": 20, "jpeg_quality_max": 20}
    real = QualityAugmentation(only(**config, jpeg_backend="cv2"))(x)
    approx = QualityAugmentation(only(**config, jpeg_backend="kornia"))(x)
    # Both are far from the input, and closer to each other than to the input.
    assert (approx - real).abs().mean() < 0.6 * (real - x).abs().mean()


def test_jpeg_quality_is_an_integer_in_range():
    params = QualityAugmentation(AugmentConfig(), seed=0).sample(500, 32, 32)
    assert params.quality.min() >= 10 and params.quality.max() <= 60
    assert torch.equal(params.quality, params.quality.round())
    assert params.quality.unique().numel() > 40


def test_probabilities_are_per_sample():
    params = QualityAugmentation(AugmentConfig(), seed=0).sample(4000, 32, 32)
    for name, p in (("downscale", 0.5), ("blur", 0.3), ("erase", 0.5), ("greyscale", 0.2)):
        assert getattr(params, name).float().mean().item() == pytest.approx(p, abs=0.03)


@pytest.mark.parametrize(
    ("fields", "name"),
    [
        ({"blur_p": 1.5}, "blur_p"),
        ({"downscale_min": 0.0}, "downscale_min"),
        ({"erase_area_min": 0.5, "erase_area_max": 0.4}, "erase_area"),
        ({"brightness": 1.0}, "brightness"),
        ({"jpeg_quality_max": 101}, "jpeg_quality"),
        ({"jpeg_backend": "pil"}, "jpeg_backend"),
    ],
)
def test_bad_config_names_the_field(fields, name):
    with pytest.raises(ConfigError, match=name):
        AugmentConfig(**fields)


def test_bad_input_shape():
    with pytest.raises(ValueError, match="B, 3, H, W"):
        QualityAugmentation()(torch.zeros(3, 32, 32))


def test_image_p_leaves_a_share_of_the_images_clean_and_keeps_the_others_draws():
    config = AugmentConfig(image_p=0.5, downscale_p=1.0, erase_p=1.0)
    x = images(200, size=16)
    out = QualityAugmentation(config, seed=2)(x)
    untouched = (out - x).flatten(1).abs().amax(dim=1) < 1e-6
    share = untouched.float().mean().item()
    assert 0.35 < share < 0.65  # binomial(200, 0.5): 5 standard deviations
    # the degraded images got exactly what the paper's setting (image_p = 1) draws for them
    full = QualityAugmentation(AugmentConfig(downscale_p=1.0, erase_p=1.0), seed=2)(x)
    torch.testing.assert_close(out[~untouched], full[~untouched], rtol=0, atol=0)
    with pytest.raises(ConfigError, match="image_p"):
        AugmentConfig(image_p=1.5)
