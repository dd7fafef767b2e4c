"""Margin heads for face recognition training: one margin rule, two heads that hold the prototypes.

:class:`Margin` is the ArcFace / CosFace rule with its scale ``s`` and margin ``m``, validated once
and applied to a cosine matrix. :class:`MarginHead` (every class in this process) and
:class:`igfiqa.models.sharded.ShardedMarginHead` (classes split over processes) take a ``Margin``
and call it, as arcface_torch's ``PartialFC_V2`` takes its ``margin_loss``. A head holds one
prototype per training identity, ``weight`` (C, F); its forward pass returns the margin logits
*and* the raw cosine matrix, so the CR-FIQA pseudo-labels need no second product.

ArcFace (``kind="arcface"``): the true class's logit is ``s * cos(theta_y + m)``, the others
``s * cos(theta_j)``. ``cos(theta + m)`` stops decreasing once ``theta + m > pi``: a sample whose
angle to its own prototype exceeds ``pi - m`` would be *rewarded* for moving further away. Past that
point (``cos theta < -cos m``) the margin uses the linear continuation
``cos theta - (1 - cos m)``: it meets ``cos(theta + m) = -1`` at the switch point (continuous), is
strictly increasing in ``cos theta`` and still penalises the true class. (insightface's
CombinedMarginLoss uses ``cos theta - m sin m`` there, which jumps at the switch point; CR-FIQA's
ArcFace applies no guard at all.)

CosFace (``kind="cosface"``): the true class's logit is ``s * (cos theta_y - m)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from igfiqa.errors import ConfigError
from igfiqa.method.pseudo_labels import ccs_nnccs as _ccs_nnccs

MARGIN_KINDS = ("arcface", "cosface")
_SIN2_FLOOR = 1e-12


@dataclass(frozen=True)
class Margin:
    """The margin rule: ``kind`` (``arcface`` or ``cosface``), scale ``s`` (> 0) and margin ``m``
    (radians in [0, pi/2) for ArcFace, cosine units in [0, 2) for CosFace).

    Calling it on a (B, C) cosine matrix and the (B,) column of each row's true class returns the
    logits ``s * cosine`` with the true entries replaced by their margin logit. A negative label
    means "the true class is not among these columns" (another shard holds it): that row gets no
    margin, as in arcface_torch's ``PartialFC_V2``.
    """

    kind: str = "arcface"
    s: float = 64.0
    m: float = 0.5

    def __post_init__(self) -> None:
        if self.kind not in MARGIN_KINDS:
            raise ConfigError(f"margin head kind must be one of {MARGIN_KINDS}, got {self.kind!r}")
        if not self.s > 0:
            raise ConfigError(f"margin head scale s must be > 0, got {self.s}")
        if self.kind == "arcface" and not 0.0 <= self.m < math.pi / 2:
            raise ConfigError(f"ArcFace margin m must be in [0, pi/2), got {self.m}")
        if self.kind == "cosface" and not 0.0 <= self.m < 2.0:
            raise ConfigError(f"CosFace margin m must be in [0, 2), got {self.m}")
        object.__setattr__(self, "s", float(self.s))
        object.__setattr__(self, "m", float(self.m))

    def target_logit(self, cos_target: Tensor) -> Tensor:
        """The margin-penalised cosine of the true class (before scaling by ``s``)."""
        if self.kind == "cosface":
            return cos_target - self.m
        cos_m, sin_m = math.cos(self.m), math.sin(self.m)
        # cos(theta + m) = cos(theta) cos(m) - sin(theta) sin(m); the floor under sin^2 keeps the
        # gradient finite at cos(theta) = +-1 (value error <= 1e-6 * sin m).
        sin_target = (1.0 - cos_target * cos_target).clamp(min=_SIN2_FLOOR).sqrt()
        with_margin = cos_target * cos_m - sin_target * sin_m
        continuation = cos_target - (1.0 - cos_m)
        return torch.where(cos_target >= -cos_m, with_margin, continuation)

    def __call__(self, cosine: Tensor, labels: Tensor) -> Tensor:
        """``s`` times ``cosine`` (B, C) with entry ``(i, labels[i])`` replaced by its margin logit
        (rows with a negative label unchanged)."""
        labels = labels.long().unsqueeze(1)
        index = labels.clamp(min=0)
        cos_target = cosine.gather(1, index)
        # At least float32 (AMP gives float16 cosines; the sin^2 floor would underflow there).
        work = torch.promote_types(cos_target.dtype, torch.float32)
        target = self.target_logit(cos_target.to(work)).to(cosine.dtype)
        target = torch.where(labels >= 0, target, cos_target)
        return self.s * cosine.scatter(1, index, target)


def init_prototypes(num_features: int, num_classes: int) -> Tensor:
    """The checked (C, F) prototype matrix, drawn normal(0, 0.01) from the global generator.

    Both heads start from it (the sharded one keeps its rows), so a seed gives the same model
    whatever the number of shards.
    """
    if num_features < 1:
        raise ConfigError(f"margin head num_features must be >= 1, got {num_features}")
    if num_classes < 2:
        raise ConfigError(f"margin head needs at least 2 classes, got {num_classes}")
    prototypes = torch.empty(int(num_classes), int(num_features))
    nn.init.normal_(prototypes, std=0.01)
    return prototypes


def prototype_cosine(embeddings: Tensor, prototypes: Tensor) -> Tensor:
    """``cos(e_i, W_j)`` of L2-normalised rows, computed in at least float32 even under AMP.

    The logits, CCS, NNCCS and the certainty ratio all derive from this matrix; in bfloat16 they
    would keep about three significant digits (the official CR-FIQA code trains in float32).
    """
    work = torch.promote_types(embeddings.dtype, torch.float32)
    with torch.autocast(embeddings.device.type, enabled=False):
        return F.linear(
            F.normalize(embeddings.to(work), dim=1), F.normalize(prototypes.to(work), dim=1)
        )


class MarginHead(nn.Module):
    """ArcFace / CosFace margin head with prototypes ``weight`` (C, F), init normal(0, 0.01).

    Args:
        num_features: embedding size F.
        num_classes: number of training identities C (>= 2).
        margin: the margin rule (default ``Margin()``: ArcFace, s = 64, m = 0.5).
    """

    def __init__(self, num_features: int, num_classes: int, margin: Margin | None = None) -> None:
        super().__init__()
        self.margin = Margin() if margin is None else margin
        self.weight = nn.Parameter(init_prototypes(num_features, num_classes))
        self.num_classes, self.num_features = self.weight.shape

    def extra_repr(self) -> str:
        return f"num_features={self.num_features}, num_classes={self.num_classes}, {self.margin}"

    def cosine(self, embeddings: Tensor) -> Tensor:
        """(B, C) cosines between the L2-normalised embeddings and prototypes (>= float32)."""
        return prototype_cosine(embeddings, self.weight)

    def forward(self, embeddings: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """Return ``(logits, cosine)``, both (B, C); ``cosine`` is the raw matrix (no margin)."""
        cosine = self.cosine(embeddings)
        return self.margin(cosine, labels), cosine

    def cross_entropy(self, logits: Tensor, labels: Tensor) -> Tensor:
        """Mean softmax cross-entropy of the margin logits."""
        return F.cross_entropy(logits, labels.long())

    def ccs_nnccs(self, cosine: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """Detached CCS and NNCCS per sample (see :func:`igfiqa.method.pseudo_labels.ccs_nnccs`)."""
        return _ccs_nnccs(cosine, labels)


__all__ = ["MARGIN_KINDS", "Margin", "MarginHead", "init_prototypes", "prototype_cosine"]
