"""``embedding-norm``: MagFace-style quality, the L2 norm of the FR model's raw embedding."""

from __future__ import annotations

import numpy as np

from igfiqa.evaluation.quality.base import QualityMethod, SampleContext, register


@register
class EmbeddingNormQuality(QualityMethod):
    kind = "embedding-norm"
    aliases = ("magface-norm",)
    usage = "embedding-norm"

    @classmethod
    def parse(cls, rest: str, name: str | None) -> QualityMethod:
        return cls(name or "embedding norm")

    def sample_quality(self, context: SampleContext) -> np.ndarray:
        return np.linalg.norm(np.asarray(context.embedding, dtype=np.float64), axis=1)
