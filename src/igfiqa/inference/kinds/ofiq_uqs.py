"""``ofiq-uqs``: the unified quality score of OFIQ (ISO/IEC 29794-5 reference implementation):
a MagFace iResNet-50 in ONNX whose embedding norm is mapped to 0-100 by a sigmoid."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from igfiqa.inference.kinds.base import ONNX, LoadedModel, ModelFile, ModelKind, register_kind
from igfiqa.inference.kinds.onnx import onnx_card
from igfiqa.models.convention import InputConvention

CONVENTION = InputConvention(
    "BGR", (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), size=616, resize_to=192, crop=(33, 145, 40, 152)
)
NORM_CENTRE = 23.0
NORM_SCALE = 2.6


def ofiq_unified_quality(norm: np.ndarray) -> np.ndarray:
    """OFIQ's 0-100 unified quality from the embedding norm n:
    ``round(100 / (1 + exp((23 - n) / 2.6)))`` (rounding half away from zero, as C++ round)."""
    value = 100.0 / (1.0 + np.exp((NORM_CENTRE - np.asarray(norm, np.float64)) / NORM_SCALE))
    return np.floor(value + 0.5)


@register_kind
class OfiqUqsKind(ModelKind):
    name = "ofiq-uqs"
    method = "OFIQ unified quality score"
    paper = (
        "ISO/IEC 29794-5; OFIQ (BSI), unified quality score from MagFace (Meng et al., CVPR 2021)"
    )
    architecture = "MagFace iResNet-50 (ONNX)"
    input = "616x616 face aligned by OFIQ, resized to 192x192, rows 33:145 and columns 40:152, BGR, x/255"
    output = "0-100 unified quality (higher is better); the embedding norm is the native score"
    roles = ("quality", "fr")
    page = "https://github.com/BSI-OFIQ/OFIQ-Project (models: OFIQ's model download)"
    licence = "code: MIT; models: as the OFIQ model page states"
    files = "magface_iresnet50_norm.onnx (OFIQ data/models/unified_quality_score)"
    file_format = ONNX
    expects = "OFIQ's unified-quality-score ONNX file (MagFace iResNet-50, 112x112 input)"
    auto = False

    def load(self, file: ModelFile, options: Mapping[str, str]) -> LoadedModel:
        from igfiqa.inference.runners import AdaptedRunner, OnnxRunner

        card = onnx_card(
            self, file, CONVENTION, num_features=512, has_quality=True,
            quality={"meaning": "OFIQ unified quality score: round(100 / (1 + exp((23 - n) / 2.6)))"
                     " of the embedding norm n; 0-100, higher is better", "range": [0, 100]},
        )  # fmt: skip

        def quality(embedding: np.ndarray) -> np.ndarray:
            return ofiq_unified_quality(np.linalg.norm(embedding.astype(np.float64), axis=1))

        def factory(device: str, threads: int | None) -> AdaptedRunner:
            inner = OnnxRunner(file.path, device=device, threads=threads, names="first")
            return AdaptedRunner(inner, convention=CONVENTION, quality=quality, num_features=512)

        return LoadedModel(card=card, runner_factory=factory, kind=self.name)
