"""The one pixel normalisation: every uint8 value, training and inference paths bit for bit."""

from __future__ import annotations

import numpy as np
import torch

from igfiqa.data.datasets import to_tensor
from igfiqa.data.pixels import normalise_batch


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
