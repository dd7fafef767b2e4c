"""``oracle``: a synthetic benchmark's ground-truth quality."""

from __future__ import annotations

import numpy as np

from igfiqa.errors import ConfigError
from igfiqa.evaluation.quality.base import QualityMethod, SampleContext, register


@register
class OracleQuality(QualityMethod):
    kind = "oracle"
    usage = "oracle"

    @classmethod
    def parse(cls, rest: str, name: str | None) -> QualityMethod:
        return cls(name or "oracle (ground truth)")

    def sample_quality(self, context: SampleContext) -> np.ndarray:
        truth = getattr(context.pairset, "ground_truth_quality", None)
        if truth is None:
            raise ConfigError(
                f"quality 'oracle' needs ground-truth qualities, which {context.benchmark} does not "
                "have (synthetic benchmarks do); the comparison-level and greedy sample-level "
                "oracle lines are drawn as references anyway"
            )
        return np.array(truth, dtype=np.float64)  # a copy: the runner edits it
