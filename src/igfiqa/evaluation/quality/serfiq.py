"""``serfiq[:m=100,p=0.5,seed=0,rescale=true,model=PATH]``: SER-FIQ (Terhorst et al., CVPR 2020),
the robustness of an FR model's embedding to dropout, as the authors' released code computes it
(the FR model's own network when it is an iResNet kind, or the one in ``model=PATH``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from igfiqa.errors import ConfigError
from igfiqa.evaluation.quality.base import Consumer, QualityMethod, parse_options, register
from igfiqa.files import content_digest, file_signature
from igfiqa.inference.fr_models import fr_batch


def serfiq_quality(
    network: Any,
    batch: np.ndarray,
    *,
    m: int = 100,
    p: float = 0.5,
    seed: int = 0,
    rescale: bool = True,
) -> np.ndarray:
    """SER-FIQ of a prepared float32 batch (B, 3, S, S) in igfiqa's input convention.

    ``m`` dropout masks of rate ``p`` (drawn from ``seed``, the same for every image) act on the
    features before ``fc``; with d the mean Euclidean distance of the m L2-normalised stochastic
    embeddings over the pairs i < j, ``s = 2 / (1 + e^d)``, and with ``rescale`` (the released
    code) ``1 / (1 + e^(-130 (s - 0.88)))`` (:func:`igfiqa.models.scoring.serfiq_score`).
    """
    import torch

    from igfiqa.inference.kinds.serfiq import serfiq_network

    try:
        scorer = serfiq_network(network, passes=m, rate=p, seed=seed, rescale=rescale)
    except ValueError as error:
        raise ConfigError(f"serfiq: {error}") from None
    param = next(network.parameters())
    with torch.inference_mode():
        x = torch.from_numpy(batch).to(device=param.device, dtype=param.dtype)
        _, quality = scorer.embed_and_quality(x)
    return quality.float().cpu().numpy().astype(np.float64)


@register
class SerFiqQuality(QualityMethod):
    kind = "serfiq"
    needs_images = True
    usage = "serfiq[:m=100,p=0.5,seed=0,rescale=true,model=PATH]"

    @classmethod
    def parse(cls, rest: str, name: str | None) -> QualityMethod:
        options = parse_options(rest, {"m", "p", "seed", "rescale", "model"}, "serfiq")
        path = Path(options.pop("model")) if "model" in options else None
        return cls(name or "SER-FIQ", options=options, path=path)

    def cache_key(self, model: Any) -> str | None:
        base = content_digest(file_signature(self.path)) if self.path is not None else model.key
        if base is None:
            return None
        return content_digest("serfiq-2", base, repr(sorted(self.options.items())))

    def image_function(self, model: Any, device: str) -> Consumer:
        network, size = model.network, model.input_size
        if self.path is not None:
            from igfiqa.inference import load_model

            other = load_model(self.path, device=device)
            network, size = getattr(other.runner, "network", None), int(other.input_size)
        backbone = getattr(network, "backbone", network)
        if network is None or not hasattr(backbone, "hidden"):
            raise ConfigError(
                "serfiq needs an FR network with its dropout before fc (an iResNet kind); the FR "
                f"model {model.name!r} is not one: pass serfiq:model=PATH"
            )
        try:
            m = int(self.options.get("m", 100))
            p = float(self.options.get("p", 0.5))
            seed = int(self.options.get("seed", 0))
        except ValueError as error:
            raise ConfigError(f"serfiq options m, p, seed: {error}") from None
        rescale = self.options.get("rescale", "true").lower() not in ("0", "false", "no")
        return lambda images: serfiq_quality(
            network, fr_batch(images, size), m=m, p=p, seed=seed, rescale=rescale
        )
