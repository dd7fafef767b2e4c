"""One training step's losses: ArcFace/CosFace CE for recognition plus the (guided) quality loss.

See ``docs/method.md`` and METHOD.md sections 2-5.
"""

from __future__ import annotations

from dataclasses import dataclass

from igfiqa.errors import ConfigError

FIQA_BATCH_MODES = ("duplicate", "split", "same")
EMA_SOURCES = ("augmented", "clean")
CR_FORMULAS = ("paper", "code")


@dataclass
class ObjectiveConfig:
    """Options of the training objective (the source of truth for names and defaults).

    Attributes:
        fiqa_batch: ``duplicate`` (every image twice: clean for FR, augmented for quality),
            ``split`` (the first ``split_ratio`` of the batch feeds only the quality loss, the rest
            only the FR loss) or ``same`` (CR-FIQA: the quality loss on the clean batch itself).
        split_ratio: share of the batch given to the quality stream in ``split`` mode, in (0, 1).
        fiqa_backbone_grad: let the quality loss's gradient flow into the backbone.
        ema_source: which image's CCS updates the guidance statistic: ``augmented`` or ``clean``.
        quality_weight: lambda, the weight of the quality loss.
        smooth_l1_beta: beta of the SmoothL1 quality loss.
        cr_formula: ``paper`` (CCS / (NNCCS + 1 + eps)) or ``code`` (CCS / max(NNCCS, 1e-3)).
        cr_eps: eps of the ``paper`` formula.
    """

    fiqa_batch: str = "duplicate"
    split_ratio: float = 0.5
    fiqa_backbone_grad: bool = True
    ema_source: str = "augmented"
    quality_weight: float = 10.0
    smooth_l1_beta: float = 0.5
    cr_formula: str = "paper"
    cr_eps: float = 1e-9

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first invalid field."""
        if self.fiqa_batch not in FIQA_BATCH_MODES:
            raise ConfigError(
                f"objective.fiqa_batch must be one of {FIQA_BATCH_MODES}, got {self.fiqa_batch!r}"
            )
        if not 0.0 < float(self.split_ratio) < 1.0:
            raise ConfigError(f"objective.split_ratio must be in (0, 1), got {self.split_ratio}")
        if self.ema_source not in EMA_SOURCES:
            raise ConfigError(
                f"objective.ema_source must be one of {EMA_SOURCES}, got {self.ema_source!r}"
            )
        if self.cr_formula not in CR_FORMULAS:
            raise ConfigError(
                f"objective.cr_formula must be one of {CR_FORMULAS}, got {self.cr_formula!r}"
            )
        if float(self.quality_weight) < 0.0:
            raise ConfigError(f"objective.quality_weight must be >= 0, got {self.quality_weight}")
        if float(self.smooth_l1_beta) < 0.0:
            raise ConfigError(f"objective.smooth_l1_beta must be >= 0, got {self.smooth_l1_beta}")
        if float(self.cr_eps) < 0.0:
            raise ConfigError(f"objective.cr_eps must be >= 0, got {self.cr_eps}")
