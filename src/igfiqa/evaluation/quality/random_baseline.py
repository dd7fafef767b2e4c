"""``random[:SEED]``: uniform random scores, the reference every method should beat."""

from __future__ import annotations

import numpy as np

from igfiqa.errors import ConfigError
from igfiqa.evaluation.quality.base import QualityMethod, SampleContext, register


@register
class RandomQuality(QualityMethod):
    kind = "random"
    usage = "random[:SEED]"

    @classmethod
    def parse(cls, rest: str, name: str | None) -> QualityMethod:
        seed = rest or "0"
        if not seed.isdigit():
            raise ConfigError(f"random quality seed must be an integer, got {seed!r}")
        return cls(name or f"random (seed {seed})", options={"seed": seed})

    def sample_quality(self, context: SampleContext) -> np.ndarray:
        return np.random.default_rng(int(self.options["seed"])).random(context.num_samples)
