"""``serfiq[:m=10,p=0.5,seed=0,model=PATH]``: SER-FIQ-style quality, the robustness of an igfiqa
iResNet's embedding to dropout (the FR model's own network, or the one in ``model=PATH``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from igfiqa.errors import ConfigError
from igfiqa.evaluation.quality.base import Consumer, QualityMethod, parse_options, register
from igfiqa.files import content_digest, file_signature
from igfiqa.inference.fr_models import fr_batch


def serfiq_quality(
    network: Any, batch: np.ndarray, *, m: int = 10, p: float = 0.5, seed: int = 0
) -> np.ndarray:
    """SER-FIQ-style quality of a prepared float32 batch (B, 3, S, S) on an igfiqa iResNet.

    With the ``m`` stochastic embeddings x_1..x_m of
    :meth:`~igfiqa.models.iresnet.IResNet.stochastic_embeddings`, quality (Terhorst et al., CVPR 2020,
    eq. 2) = 2 * sigmoid(-(2 / m^2) * sum_{i<j} ||x_i - x_j||): 1 for perfectly stable embeddings,
    lower as they spread.
    """
    import torch

    if not 0.0 < p < 1.0 or m < 2:
        raise ConfigError(f"serfiq needs m >= 2 and 0 < p < 1, got m={m}, p={p}")
    param = next(network.parameters())
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    with torch.inference_mode():
        x = torch.from_numpy(batch).to(device=param.device, dtype=param.dtype)
        stack = network.stochastic_embeddings(x, m, p, generator)  # (B, m, F)
        distances = torch.cdist(stack, stack)  # (B, m, m), symmetric
        pair_sum = distances.sum(dim=(1, 2)) / 2.0
        quality = 2.0 * torch.sigmoid(-(2.0 / (m * m)) * pair_sum)
    return quality.cpu().numpy().astype(np.float64)


@register
class SerFiqQuality(QualityMethod):
    kind = "serfiq"
    needs_images = True
    usage = "serfiq[:m=10,p=0.5,seed=0,model=PATH]"

    @classmethod
    def parse(cls, rest: str, name: str | None) -> QualityMethod:
        options = parse_options(rest, {"m", "p", "seed", "model"}, "serfiq")
        path = Path(options.pop("model")) if "model" in options else None
        return cls(name or "SER-FIQ-style", options=options, path=path)

    def cache_key(self, model: Any) -> str | None:
        base = content_digest(file_signature(self.path)) if self.path is not None else model.key
        if base is None:
            return None
        return content_digest("serfiq", base, repr(sorted(self.options.items())))

    def image_function(self, model: Any, device: str) -> Consumer:
        network, size = model.network, model.input_size
        if self.path is not None:
            from igfiqa.inference import load_model

            other = load_model(self.path, device=device)
            network, size = getattr(other.runner, "network", None), int(other.input_size)
        if network is None or not hasattr(network, "stochastic_embeddings"):
            raise ConfigError(
                "serfiq needs an igfiqa iResNet (dropout before fc); the FR model "
                f"{model.name!r} is not one: pass serfiq:model=PATH"
            )
        m = int(self.options.get("m", 10))
        p = float(self.options.get("p", getattr(network, "dropout_p", 0.0) or 0.5))
        seed = int(self.options.get("seed", 0))
        return lambda images: serfiq_quality(network, fr_batch(images, size), m=m, p=p, seed=seed)
