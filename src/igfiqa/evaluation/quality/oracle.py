"""``ground-truth`` (alias ``oracle``): a synthetic benchmark's ground-truth quality.

It is shown as ``ground truth (generator)``, the name the demo and the study give it: the
generator's own degradation severity used as a quality score. It is not one of the label-using
oracle reference curves (``oracle (comparison level)``, ``oracle (sample level, greedy; uses
labels)``), which every report draws anyway.
"""

from __future__ import annotations

import numpy as np

from igfiqa.errors import ConfigError
from igfiqa.evaluation.quality.base import QualityMethod, SampleContext, register

#: the name in results; the demo's and the study's ground-truth row carry the same
GROUND_TRUTH_NAME = "ground truth (generator)"


@register
class OracleQuality(QualityMethod):
    kind = "ground-truth"
    aliases = ("oracle",)
    usage = "ground-truth"

    @classmethod
    def parse(cls, rest: str, name: str | None) -> QualityMethod:
        return cls(name or GROUND_TRUTH_NAME)

    def sample_quality(self, context: SampleContext) -> np.ndarray:
        truth = getattr(context.pairset, "ground_truth_quality", None)
        if truth is None:
            raise ConfigError(
                f"quality 'ground-truth' needs ground-truth qualities, which {context.benchmark} "
                "does not have (synthetic benchmarks do); the comparison-level and greedy "
                "sample-level oracle lines are drawn as references anyway"
            )
        return np.array(truth, dtype=np.float64)  # a copy: the runner edits it
