"""One training step's losses: ArcFace/CosFace CE for recognition plus the (guided) quality loss.

See docs/method.md, "One training step".
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from igfiqa.collective import unwrap
from igfiqa.errors import ConfigError
from igfiqa.method.guidance import IntraClassGuidance
from igfiqa.method.pseudo_labels import certainty_ratio

FIQA_BATCH_MODES = ("duplicate", "split", "same")
EMA_SOURCES = ("augmented", "clean")
CR_FORMULAS = ("paper", "code")
QUALITY_BN_MODES = ("separate", "frozen_stats", "concat")


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
        quality_bn: how the quality stream's pass touches BatchNorm when it has its own images
            (``duplicate``/``split``): ``separate`` (a second pass in training mode: batch
            statistics, and it updates the running statistics too), ``frozen_stats`` (a second pass
            normalised with its own batch statistics that leaves the running statistics as the clean
            pass set them) or ``concat`` (clean and quality images in one pass: shared batch
            statistics, one running-statistics update).
    """

    fiqa_batch: str = "duplicate"
    split_ratio: float = 0.5
    fiqa_backbone_grad: bool = True
    ema_source: str = "augmented"
    quality_weight: float = 10.0
    smooth_l1_beta: float = 0.5
    cr_formula: str = "paper"
    cr_eps: float = 1e-9
    quality_bn: str = "separate"

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
        if self.quality_bn not in QUALITY_BN_MODES:
            raise ConfigError(
                f"objective.quality_bn must be one of {QUALITY_BN_MODES}, got {self.quality_bn!r}"
            )
        if float(self.quality_weight) < 0.0:
            raise ConfigError(f"objective.quality_weight must be >= 0, got {self.quality_weight}")
        if float(self.smooth_l1_beta) < 0.0:
            raise ConfigError(f"objective.smooth_l1_beta must be >= 0, got {self.smooth_l1_beta}")
        if float(self.cr_eps) < 0.0:
            raise ConfigError(f"objective.cr_eps must be >= 0, got {self.cr_eps}")


@dataclass
class ObjectiveOutput:
    """One step's losses.

    Attributes:
        loss: ``fr_loss + quality_weight * quality_loss``, the tensor to backpropagate.
        fr_loss: the margin-head cross-entropy (detached).
        quality_loss: L_IG, the weighted SmoothL1 of the quality stream (detached).
        diagnostics: floats: ``fr_loss``, ``quality_loss``, ``guidance_weight_mean``,
            ``zero_weight_class_share``, ``cr_mean``, ``cr_std``, ``ccs_mean``, ``nnccs_mean``,
            ``quality_mean``, ``cr_clean_mean`` (CR of the clean FR stream: the quality stream's
            images before augmentation in ``duplicate`` mode), ``fr_batch``, ``quality_batch``.
        quality: (Bq,) predicted quality of the quality stream (detached).
        cr: (Bq,) certainty-ratio targets of the quality stream.
        weights: (Bq,) guidance weights of the quality stream (all 1 without guidance).
        quality_labels: (Bq,) labels of the quality stream.
    """

    loss: Tensor
    fr_loss: Tensor
    quality_loss: Tensor
    diagnostics: dict[str, float]
    quality: Tensor
    cr: Tensor
    weights: Tensor
    quality_labels: Tensor


def split_sizes(batch: int, split_ratio: float) -> tuple[int, int]:
    """``(quality, fr)`` sample counts of ``split`` mode: the FIRST ``round(r B)`` samples
    (at least 1, at most B - 1) feed the quality stream, the rest the FR stream."""
    if batch < 2:
        raise ConfigError(f"fiqa_batch='split' needs a batch of at least 2 images, got {batch}")
    quality = min(max(round(split_ratio * batch), 1), batch - 1)
    return quality, batch - quality


def smooth_l1(prediction: Tensor, target: Tensor, beta: float) -> Tensor:
    """Per-element SmoothL1: ``0.5 d^2 / beta`` if ``|d| < beta`` else ``|d| - 0.5 beta``."""
    return F.smooth_l1_loss(prediction, target, reduction="none", beta=beta)


def _forward(model: nn.Module, images: Tensor) -> tuple[Tensor, Tensor]:
    out = model(images)
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise ConfigError(
            "the objective needs a model with a quality head (create_model(..., quality_head=True))"
        )
    return out[0], out[1]


@contextmanager
def frozen_running_stats(model: nn.Module) -> Iterator[None]:
    """Batch-normalise with batch statistics but leave every running mean/var unchanged."""
    saved = []
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.track_running_stats:
            saved.append((module, module.momentum))
            module.momentum = 0.0  # running <- (1 - 0) running + 0 batch
    try:
        yield
    finally:
        for module, momentum in saved:
            module.momentum = momentum


def _quality_head(model: nn.Module) -> Callable[[Tensor], Tensor]:
    return unwrap(model).quality


def compute_objective(
    model: nn.Module,
    head: nn.Module,
    images: Tensor,
    labels: Tensor,
    config: ObjectiveConfig,
    *,
    guidance: IntraClassGuidance | None = None,
    augment: Callable[[Tensor], Tensor] | None = None,
) -> ObjectiveOutput:
    """One training step's loss ``CE(margin logits of the FR stream) + lambda * L_IG``.

    Streams per ``config.fiqa_batch``:

    - ``same``: one forward pass of the clean batch gives both losses (CR-FIQA; ``augment`` is
      not used).
    - ``duplicate``: the clean batch -> FR loss; ``augment(images)`` in a second forward pass ->
      quality loss.
    - ``split``: the first ``round(split_ratio * B)`` images, augmented, -> quality loss only;
      the others, clean, -> FR loss only; two forward passes.

    The quality stream's pseudo-label CR comes from its own cosines against the head's
    prototypes, without gradient, so the head's weights get gradient only from the FR loss. With
    ``guidance``, its statistic is updated (before the weights are read) with the CCS of the
    ``ema_source`` stream; in ``split`` mode ``ema_source="clean"`` uses the clean CCS of the FR
    part (the quality part has no clean pass). ``L_IG = mean_i w_{y_i} SmoothL1_beta(R_i, CR_i)``.

    The head is used only through ``forward``, ``cosine``, ``cross_entropy`` and ``ccs_nnccs``
    (so a sharded head can stand in).
    """
    if images.ndim != 4 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"expected images (B, 3, H, W) and labels (B,), got {tuple(images.shape)} and "
            f"{tuple(labels.shape)}"
        )
    if config.fiqa_batch == "same":
        streams = _one_stream(model, head, images, labels)
    else:
        streams = _two_streams(model, head, images, labels, config, augment)
    labels_out = _pseudo_labels(head, streams, config, guidance)
    q_quality = streams.q_quality
    if not config.fiqa_backbone_grad:
        q_quality = _quality_head(model)(streams.q_embedding.detach())
    prediction = q_quality.reshape(-1).to(labels_out.cr.dtype)
    per_sample = smooth_l1(prediction, labels_out.cr, config.smooth_l1_beta)
    quality_loss = (labels_out.weights * per_sample).mean()
    loss = streams.fr_loss + config.quality_weight * quality_loss
    return ObjectiveOutput(
        loss=loss,
        fr_loss=streams.fr_loss.detach(),
        quality_loss=quality_loss.detach(),
        diagnostics=_diagnostics(streams, labels_out, quality_loss, prediction),
        quality=prediction.detach(),
        cr=labels_out.cr,
        weights=labels_out.weights,
        quality_labels=streams.q_labels,
    )


@dataclass
class _Streams:
    """The FR stream's loss and cosines, and the quality stream's labels, embedding, prediction and
    cosines (the same tensors in ``fiqa_batch: same``)."""

    fr_loss: Tensor
    fr_labels: Tensor
    clean_cosine: Tensor
    q_labels: Tensor
    q_embedding: Tensor
    q_quality: Tensor
    q_cosine: Tensor
    same: bool


def _one_stream(model: nn.Module, head: nn.Module, images: Tensor, labels: Tensor) -> _Streams:
    """CR-FIQA: one forward pass of the clean batch gives both losses."""
    embedding, quality = _forward(model, images)
    logits, cosine = head(embedding, labels)
    fr_loss = head.cross_entropy(logits, labels)
    return _Streams(fr_loss, labels, cosine, labels, embedding, quality, cosine, same=True)


def _two_streams(
    model: nn.Module,
    head: nn.Module,
    images: Tensor,
    labels: Tensor,
    config: ObjectiveConfig,
    augment: Callable[[Tensor], Tensor] | None,
) -> _Streams:
    """IG-FIQA's mini-batch separation: clean images -> FR loss, augmented images -> quality
    stream (``duplicate``: the whole batch twice; ``split``: disjoint parts), in two forward
    passes (one with ``quality_bn: concat``)."""
    if config.fiqa_batch == "split":
        n_quality, _ = split_sizes(images.shape[0], config.split_ratio)
        q_images, fr_images = images[:n_quality], images[n_quality:]
        q_labels, fr_labels = labels[:n_quality], labels[n_quality:]
    else:
        q_images, fr_images, q_labels, fr_labels = images, images, labels, labels
    concat = config.quality_bn == "concat"
    if not concat:
        fr_embedding, _ = _forward(model, fr_images)
    if augment is not None:
        with torch.no_grad():
            q_images = augment(q_images)
    if concat:
        embedding, quality = _forward(model, torch.cat([fr_images, q_images]))
        n_fr = fr_images.shape[0]
        fr_embedding, q_embedding, q_quality = embedding[:n_fr], embedding[n_fr:], quality[n_fr:]
    else:
        frozen = config.quality_bn == "frozen_stats"
        with frozen_running_stats(model) if frozen else nullcontext():
            q_embedding, q_quality = _forward(model, q_images)
    logits, clean_cosine = head(fr_embedding, fr_labels)
    fr_loss = head.cross_entropy(logits, fr_labels)
    with torch.no_grad():
        q_cosine = head.cosine(q_embedding.detach())
    return _Streams(
        fr_loss, fr_labels, clean_cosine, q_labels, q_embedding, q_quality, q_cosine, same=False
    )


@dataclass
class _PseudoLabels:
    ccs: Tensor
    nnccs: Tensor
    cr: Tensor  # at least float32
    clean_cr: Tensor
    weights: Tensor
    zero_share: Tensor


@torch.no_grad()
def _pseudo_labels(
    head: nn.Module,
    streams: _Streams,
    config: ObjectiveConfig,
    guidance: IntraClassGuidance | None,
) -> _PseudoLabels:
    """CR of the quality stream, CR of the clean stream (a diagnostic) and the guidance weights
    (the guidance statistic updated first, from the ``ema_source`` stream)."""
    ccs, nnccs = head.ccs_nnccs(streams.q_cosine.detach(), streams.q_labels)
    work = torch.promote_types(streams.q_quality.dtype, torch.float32)  # float32 under AMP
    cr = certainty_ratio(ccs, nnccs, config.cr_formula, config.cr_eps).to(work)
    if streams.same:
        clean_ccs, clean_cr = ccs, cr
    else:
        clean_ccs, clean_nnccs = head.ccs_nnccs(streams.clean_cosine.detach(), streams.fr_labels)
        clean_cr = certainty_ratio(clean_ccs, clean_nnccs, config.cr_formula, config.cr_eps)
    if guidance is not None:
        if config.ema_source == "clean" and not streams.same:
            guidance.update(streams.fr_labels, clean_ccs)
        else:
            guidance.update(streams.q_labels, ccs)
        weights = guidance.weights(streams.q_labels).to(cr.device, cr.dtype)
        zero_share = guidance.zero_weight_share().to(cr.device, cr.dtype)
    else:
        weights = torch.ones_like(cr)
        zero_share = torch.zeros((), device=cr.device, dtype=cr.dtype)
    return _PseudoLabels(ccs, nnccs, cr, clean_cr, weights, zero_share)


_DIAGNOSTICS = (
    "fr_loss",
    "quality_loss",
    "guidance_weight_mean",
    "zero_weight_class_share",
    "cr_mean",
    "cr_std",
    "ccs_mean",
    "nnccs_mean",
    "quality_mean",
    "cr_clean_mean",
)


@torch.no_grad()
def _diagnostics(
    streams: _Streams, labels: _PseudoLabels, quality_loss: Tensor, prediction: Tensor
) -> dict[str, float]:
    """The step's scalars for the training log (one host synchronisation)."""
    cr = labels.cr
    stats = torch.stack(
        [
            streams.fr_loss.detach().float(),
            quality_loss.detach(),
            labels.weights.mean(),
            labels.zero_share,
            cr.mean(),
            cr.std(correction=0),
            labels.ccs.float().mean(),
            labels.nnccs.float().mean(),
            prediction.detach().mean(),
            labels.clean_cr.to(cr.dtype).mean(),
        ]
    ).tolist()
    diagnostics = dict(zip(_DIAGNOSTICS, stats, strict=True))
    diagnostics["fr_batch"] = float(streams.fr_labels.shape[0])
    diagnostics["quality_batch"] = float(streams.q_labels.shape[0])
    return diagnostics
