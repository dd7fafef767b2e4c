"""The one pixel normalisation (every uint8 value, training and inference paths bit for bit) and
the one resize policy (``resize_to``), used by every caller."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from igfiqa.data.datasets import to_tensor
from igfiqa.data.pixels import normalise_batch, resize_interpolation, resize_to


def test_every_value_maps_to_minus_one_to_one_and_both_paths_agree_bit_for_bit() -> None:
    image = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, axis=2)
    batch = normalise_batch([image])[0]
    exact = (np.arange(256, dtype=np.float64) / 255.0 - 0.5) / 0.5
    np.testing.assert_allclose(batch[0].reshape(-1), exact, rtol=0, atol=1.2e-7)
    assert batch.min() == -1.0 and batch.max() == 1.0
    assert torch.equal(to_tensor(image), torch.from_numpy(batch))
    # the training tensor path as it was written before (x / 127.5 - 1) gives the same bits
    legacy = torch.from_numpy(image).permute(2, 0, 1).float().div_(127.5).sub_(1.0)
    assert torch.equal(legacy, to_tensor(image))


# ------------------------------------------------------------------------ the one resize policy
def _legacy_training_resize(image: np.ndarray, size: int) -> np.ndarray:
    """``datasets.resize_square`` as it was before the policy moved to ``pixels.resize_to``."""
    height, width = image.shape[:2]
    if height == size and width == size:
        return image
    shrink = height * width > size * size
    interpolation = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=interpolation)


def _image(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_resize_to_is_area_to_shrink_bilinear_to_enlarge_and_the_image_itself_when_equal() -> None:
    image = _image(40, 40)
    assert resize_to(image, 40) is image
    small, large = resize_to(image, 20), resize_to(image, 64)
    assert small.shape == (20, 20, 3) and large.shape == (64, 64, 3)
    assert np.array_equal(small, cv2.resize(image, (20, 20), interpolation=cv2.INTER_AREA))
    assert np.array_equal(large, cv2.resize(image, (64, 64), interpolation=cv2.INTER_LINEAR))
    # non-square: stretched to a square, shrinking decided by the pixel count
    assert resize_to(_image(30, 60), 40).shape == (40, 40, 3)
    assert resize_interpolation(30, 60, 40) == "area"  # 1800 > 1600 pixels
    assert resize_interpolation(36, 44, 40) == "bilinear"  # 1584 <= 1600 pixels
    assert (
        resize_interpolation(40, 40, 40) == "bilinear"
        and resize_interpolation(41, 41, 40) == "area"
    )
    before = image.copy()
    resize_to(image, 20)
    assert np.array_equal(image, before)  # pure: the input is never written
    with pytest.raises(ValueError, match="positive"):
        resize_to(image, 0)


@pytest.mark.parametrize(
    ("height", "width"),
    [(20, 20), (31, 31), (32, 32), (33, 33), (64, 64), (112, 112), (20, 50), (50, 20), (30, 36)],
)
def test_training_data_are_resized_bit_for_bit_as_before(height: int, width: int) -> None:
    """Same seed, same checkpoint: the training pipeline's numbers do not move, square or not."""
    image = _image(height, width, seed=height * 100 + width)
    assert np.array_equal(resize_to(image, 32), _legacy_training_resize(image, 32))


def test_every_caller_resizes_by_the_one_policy() -> None:
    from igfiqa.evaluation.runner import image_pass
    from igfiqa.inference.fr_models import fr_batch
    from igfiqa.inference.preprocess import fit_to_size

    for shape in ((40, 40), (24, 24), (48, 30), (30, 36)):
        image = _image(*shape)
        want = resize_to(image, 32)
        assert np.array_equal(fit_to_size(image, 32, resize=True), want)
        expected = normalise_batch([want])
        np.testing.assert_array_equal(
            fr_batch(np.stack([image, image]), 32), np.stack([expected[0]] * 2)
        )

    images = [_image(32, 32, 1), _image(50, 50, 2), _image(20, 20, 3), _image(32, 32, 4)]

    class Mixed:  # a benchmark whose images come in several sizes
        num_samples = len(images)

        def load_sample(self, index: int) -> np.ndarray:
            return images[index]

    seen: dict[int, np.ndarray] = {}

    def consumer(batch: np.ndarray) -> np.ndarray:  # a model of side 32 (it resizes itself)
        for row in fr_batch(batch, 32):
            seen[len(seen)] = row
        return np.zeros(len(batch))

    for batch_size in (1, 2, 4):  # an image comes out the same whatever shares its batch
        seen.clear()
        image_pass(Mixed(), {"q": (consumer, 1)}, batch_size=batch_size, workers=0, side=32)
        for index, image in enumerate(images):
            want = normalise_batch([resize_to(image, 32)])[0]
            assert np.array_equal(seen[index], want), (batch_size, index)


def test_fr_models_now_enlarge_bilinearly_not_by_area() -> None:
    """A numeric change: fr_batch used INTER_AREA for every size, which when enlarging is nearest
    neighbour (blocks); enlarging is bilinear now, shrinking unchanged."""
    from igfiqa.inference.fr_models import fr_batch

    image = _image(16, 16)
    enlarged = fr_batch(image[None], 32)[0]
    area = normalise_batch([cv2.resize(image, (32, 32), interpolation=cv2.INTER_AREA)])[0]
    nearest = normalise_batch([cv2.resize(image, (32, 32), interpolation=cv2.INTER_NEAREST)])[0]
    linear = normalise_batch([cv2.resize(image, (32, 32), interpolation=cv2.INTER_LINEAR)])[0]
    assert np.array_equal(area, nearest)  # why the old rule was wrong for enlarging
    assert np.array_equal(enlarged, linear) and not np.array_equal(enlarged, area)
    big = _image(64, 64)
    shrunk = normalise_batch([cv2.resize(big, (32, 32), interpolation=cv2.INTER_AREA)])[0]
    assert np.array_equal(fr_batch(big[None], 32)[0], shrunk)
