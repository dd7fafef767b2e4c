"""A released network behind igfiqa's one input: convention layer -> backbone -> quality.

The released FIQA methods differ in where their quality comes from: CR-FIQA regresses it from the
embedding (``qs``), MagFace reads the embedding's L2 norm, DifFIQA(R) and eDifFIQA put a small
regressor on the embedding, SDD-FIQA's network outputs it directly, SER-FIQ measures how stable
the embedding is under dropout. :class:`ScoringNetwork` composes a backbone with one of these rules
(``quality``) so every scoring path calls the same ``embed_and_quality`` (docs/models.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from igfiqa.models.convention import ConventionLayer, InputConvention

QUALITY_RULES = ("none", "backbone", "norm", "head", "serfiq")


def serfiq_score(embeddings: Tensor, *, rescale: bool = True) -> Tensor:
    """SER-FIQ (Terhorst et al., CVPR 2020) from T stochastic embeddings (B, T, F).

    With the embeddings L2-normalised and d the mean Euclidean distance over the T (T - 1) / 2
    pairs i < j, ``s = 2 / (1 + exp(d))``; with ``rescale`` (as the authors' released code does)
    the score is ``1 / (1 + exp(-130 (s - 0.88)))``.
    """
    unit = F.normalize(embeddings.float(), dim=2)
    t = unit.shape[1]
    # Direct differences, not cdist's float32 |a|^2 + |b|^2 - 2ab (used from 25 rows on): that
    # cancels for unit vectors (error ~1e-6 in d), which the rescaling's slope of 130 multiplies
    # by ~70; the released code's sklearn distances are computed in float64.
    distances = torch.cdist(unit, unit, compute_mode="donot_use_mm_for_euclid_dist")  # (B, T, T)
    d = distances.sum(dim=(1, 2)) / (t * (t - 1))
    s = 2.0 / (1.0 + torch.exp(d))
    if rescale:
        s = 1.0 / (1.0 + torch.exp(-130.0 * (s - 0.88)))
    return s


class ScoringNetwork(nn.Module):
    """``embed_and_quality(x)`` of a released backbone for igfiqa's standard input x.

    Args:
        backbone: a network with ``embed_and_quality`` (iResNet, IR, MobileFaceNet, SDD-FIQA).
        convention: the authors' input convention (applied by a :class:`ConventionLayer`).
        quality: ``none`` (an FR model), ``backbone`` (the backbone's own quality output),
            ``norm`` (L2 norm of the raw embedding, MagFace), ``head`` (``head`` on the embedding,
            L2-normalised first when ``normalise_before_head``), or ``serfiq`` (``serfiq_passes``
            dropout masks of rate ``serfiq_rate`` on the backbone's ``hidden`` features; the masks
            are fixed by ``serfiq_seed`` and shared by every image, so a score does not depend on
            the batch it is computed in).
        head: the quality regressor for ``head``.
    """

    def __init__(
        self,
        backbone: nn.Module,
        *,
        convention: InputConvention,
        quality: str = "none",
        head: nn.Module | None = None,
        normalise_before_head: bool = False,
        serfiq_passes: int = 100,
        serfiq_rate: float = 0.5,
        serfiq_seed: int = 0,
        serfiq_rescale: bool = True,
    ) -> None:
        super().__init__()
        if quality not in QUALITY_RULES:
            raise ValueError(f"quality must be one of {QUALITY_RULES}, got {quality!r}")
        if (quality == "head") != (head is not None):
            raise ValueError("a head is given exactly when quality='head'")
        if quality == "serfiq":
            if serfiq_passes < 2 or not 0.0 < serfiq_rate < 1.0:
                raise ValueError(
                    f"SER-FIQ needs passes >= 2 and 0 < rate < 1, got {serfiq_passes}, {serfiq_rate}"
                )
            if not hasattr(backbone, "hidden"):
                raise ValueError("SER-FIQ needs a backbone with a dropout before its fc (hidden)")
        self.adapter = ConventionLayer(convention)
        self.backbone = backbone
        self.head = head
        self.quality_rule = quality
        self.normalise_before_head = bool(normalise_before_head)
        self.serfiq_passes = int(serfiq_passes)
        self.serfiq_rate = float(serfiq_rate)
        self.serfiq_seed = int(serfiq_seed)
        self.serfiq_rescale = bool(serfiq_rescale)
        self.convention = convention
        self.input_size = int(convention.size)
        self.num_features = int(backbone.num_features)
        self._masks: Tensor | None = None

    @property
    def has_quality_head(self) -> bool:
        return self.quality_rule != "none"

    def _serfiq_masks(self, features: int, device: torch.device, dtype: torch.dtype) -> Tensor:
        if self._masks is None or self._masks.shape[1] != features:
            generator = torch.Generator(device="cpu").manual_seed(self.serfiq_seed)
            keep = torch.rand((self.serfiq_passes, features), generator=generator)
            self._masks = (keep >= self.serfiq_rate).float() / (1.0 - self.serfiq_rate)
        return self._masks.to(device=device, dtype=dtype)

    def _serfiq(self, x: Tensor) -> tuple[Tensor, Tensor]:
        hidden = self.backbone.hidden(x)  # (B, D)
        embedding = self.backbone.project(hidden)
        masks = self._serfiq_masks(hidden.shape[1], hidden.device, hidden.dtype)
        b, t = hidden.shape[0], masks.shape[0]
        stochastic = self.backbone.project((hidden[:, None, :] * masks[None]).reshape(b * t, -1))
        quality = serfiq_score(stochastic.reshape(b, t, -1), rescale=self.serfiq_rescale)
        return embedding, quality

    def embed_and_quality(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """``(embedding (B, F), quality (B,) or None)``; higher quality = more useful."""
        x = self.adapter(x)
        if self.quality_rule == "serfiq":
            return self._serfiq(x)
        embedding, own = self.backbone.embed_and_quality(x)
        if self.quality_rule == "none":
            return embedding, None
        if self.quality_rule == "backbone":
            return embedding, own
        if self.quality_rule == "norm":
            return embedding, torch.linalg.vector_norm(embedding.float(), dim=1)
        features = F.normalize(embedding, dim=1) if self.normalise_before_head else embedding
        return embedding, self.head(features)[:, 0]  # type: ignore[misc]

    def embed(self, x: Tensor) -> Tensor:
        return self.backbone.embed_and_quality(self.adapter(x))[0]

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor] | Tensor:
        embedding, quality = self.embed_and_quality(x)
        return embedding if quality is None else (embedding, quality[:, None])


class MLPRegressor(nn.Module):
    """eDifFIQA's quality regressor: ``l2(GELU(l1(e)))`` with the exact (erf) GELU."""

    def __init__(self, in_features: int = 512, hidden: int = 1024) -> None:
        super().__init__()
        self.l1 = nn.Linear(in_features, hidden)
        self.l2 = nn.Linear(hidden, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.l2(F.gelu(self.l1(x)))


__all__ = ["QUALITY_RULES", "MLPRegressor", "ScoringNetwork", "serfiq_score"]
