"""The trained models an experiment compares: one :class:`Variant` type and the two catalogues.

A variant is a training recipe's IG-FIQA or CR-FIQA preset plus ``--set`` overrides. The recipe
(``--preset``, default ``synthetic_demo``) is the experiment's, so the same catalogue trains the
tiny network on synthetic faces or iResNet-50 on CASIA-WebFace (``casia_r50`` and
``casia_r50_crfiqa``).
"""

from __future__ import annotations

from dataclasses import dataclass

BASELINE = "crfiqa"
"""The CR-FIQA run every other variant is compared with, and whose backbone is an FR model."""
INDEPENDENT_FR = "fr_only"
"""The study's second FR model: trained without the quality loss, not a quality method."""


@dataclass(frozen=True)
class Variant:
    """One trained model: the recipe's ``method`` preset (``igfiqa`` or ``crfiqa``) plus
    ``overrides``; ``question`` says what it asks, ``seed_offset`` moves its training seed (another
    initialisation), ``baseline`` is the CR-FIQA run that differs from it only by the method."""

    key: str
    label: str
    method: str = "igfiqa"
    overrides: tuple[str, ...] = ()
    question: str = ""
    seed_offset: int = 0
    baseline: str = BASELINE

    def preset(self, recipe: str) -> str:
        """The preset this variant trains with in ``recipe`` (``casia_r50`` -> ``casia_r50_crfiqa``
        for a CR-FIQA variant)."""
        return f"{recipe}_crfiqa" if self.method == "crfiqa" else recipe

    @property
    def streams(self) -> int:
        """Forward+backward streams per training image: 1 when the quality loss shares the FR pass
        (CR-FIQA, ``fiqa_batch`` same or split), else 2."""
        shared = self.method == "crfiqa" or any(
            o.endswith(("fiqa_batch=same", "fiqa_batch=split")) for o in self.overrides
        )
        return 1 if shared else 2

    @property
    def is_quality_method(self) -> bool:
        return self.key != INDEPENDENT_FR


_DIST = "method.guidance.statistic=distance"
_NOAUG = ("method.augment.enabled=false", "method.objective.fiqa_batch=same")
_OFFICIAL = ("method.objective.cr_formula=code", "optim.train_embedding_bn_scale=true")

DEMO_VARIANTS: tuple[Variant, ...] = (
    Variant(BASELINE, "CR-FIQA (baseline)", "crfiqa"),
    Variant("ig_distance", "IG-FIQA, statistic=distance (paper)", overrides=(_DIST,)),
    Variant(
        "ig_similarity",
        "IG-FIQA, statistic=similarity (pseudo-code)",
        overrides=("method.guidance.statistic=similarity",),
    ),
    Variant(
        "ig_distance_noaug",
        "IG-FIQA, distance, no augmentation (ablation)",
        overrides=(_DIST, *_NOAUG),
    ),
)
"""The demo's four variants: the baseline, the paper, the pseudo-code and an ablation."""


def _ig(
    key: str, label: str, overrides: tuple[str, ...], question: str, baseline: str = BASELINE
) -> Variant:
    return Variant(key, label, "igfiqa", overrides, question, baseline=baseline)


STUDY_VARIANTS: tuple[Variant, ...] = (
    Variant(BASELINE, "CR-FIQA (igfiqa baseline)", "crfiqa", (), "the reference"),
    Variant(
        "crfiqa_official",
        "CR-FIQA, official training (CCS/NNCCS, trainable BN scale)",
        "crfiqa",
        _OFFICIAL,
        "does the official code's CR and BN scale change the baseline?",
    ),
    _ig("ig_distance", "IG-FIQA distance (paper)", (_DIST,), "the paper's method"),
    _ig(
        "ig_similarity",
        "IG-FIQA similarity (pseudo-code)",
        ("method.guidance.statistic=similarity",),
        "the literal pseudo-code",
    ),
    _ig("ig_noaug", "IG-FIQA distance, no augmentation", (_DIST, *_NOAUG), "guidance alone"),
    _ig(
        "aug_noguidance",
        "augmentation without guidance",
        ("method.guidance.enabled=false",),
        "augmentation alone",
    ),
    _ig(
        "ig_split",
        "IG-FIQA distance, split batch",
        (_DIST, "method.objective.fiqa_batch=split"),
        "split vs duplicate",
    ),
    _ig(
        "ig_no_backbone_grad",
        "IG-FIQA distance, no quality gradient into the backbone",
        (_DIST, "method.objective.fiqa_backbone_grad=false"),
        "does the quality loss shape the backbone?",
    ),
    _ig(
        "ig_ema_clean",
        "IG-FIQA distance, EMA of clean CCS",
        (_DIST, "method.objective.ema_source=clean"),
        "EMA source",
    ),
    _ig(
        "ig_bn_frozen",
        "IG-FIQA distance, degraded pass keeps BN running stats",
        (_DIST, "method.objective.quality_bn=frozen_stats"),
        "BatchNorm: degraded pass does not update running statistics",
    ),
    _ig(
        "ig_bn_concat",
        "IG-FIQA distance, clean + degraded in one pass",
        (_DIST, "method.objective.quality_bn=concat"),
        "BatchNorm: one concatenated pass",
    ),
    _ig(
        "ig_half_clean",
        "IG-FIQA distance, half the quality stream clean",
        (_DIST, "method.augment.image_p=0.5"),
        "added from the data: the quality head of duplicate mode never sees a clean image",
    ),
    _ig(
        "ig_official",
        "IG-FIQA distance on the official CR-FIQA training (CCS/NNCCS, BN scale)",
        (_DIST, *_OFFICIAL),
        "added from the data: IG-FIQA on top of the official CR-FIQA code's pseudo-label",
        baseline="crfiqa_official",
    ),
    Variant(
        INDEPENDENT_FR,
        "independent FR model (no quality loss)",
        "crfiqa",
        ("method.objective.quality_weight=0",),
        "the second FR model (not a quality method)",
        seed_offset=10_007,
    ),
)
"""Every switch of IG-FIQA against CR-FIQA, and the independent FR model."""

EXTRA_VARIANTS = ("ig_half_clean", "ig_official")
"""Variants added from the data (docs/results.md); run with ``--variants all`` or by name."""
DEFAULT_STUDY_VARIANTS = tuple(v.key for v in STUDY_VARIANTS if v.key not in EXTRA_VARIANTS)
