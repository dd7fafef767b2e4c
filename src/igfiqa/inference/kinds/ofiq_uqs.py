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
OFIQ_TEMPLATE = ((251.0, 272.0), (364.0, 272.0), (308.0, 336.0), (262.0, 402.0), (355.0, 402.0))
"""OFIQ's five reference points in its 616x616 aligned image (eyes, nose tip, mouth corners)."""
NORM_CENTRE = 23.0
NORM_SCALE = 2.6


def ofiq_unified_quality(norm: np.ndarray) -> np.ndarray:
    """OFIQ's 0-100 unified quality from the native score n (the MagFace embedding norm):
    ``round(100 / (1 + exp((23 - n) / 2.6)))`` (half away from zero, as C++ ``round``), in 0..100."""
    value = 100.0 / (1.0 + np.exp((NORM_CENTRE - np.asarray(norm, np.float64)) / NORM_SCALE))
    return np.clip(np.floor(value + 0.5), 0, 100)


def native_score(output: np.ndarray) -> np.ndarray:
    """OFIQ's native score: the network's single output (OFIQ's file computes the norm inside the
    graph), or the L2 norm of a 512-d embedding (a plain MagFace network)."""
    output = np.asarray(output, np.float64)
    return output[:, 0] if output.shape[1] == 1 else np.linalg.norm(output, axis=1)


@register_kind
class OfiqUqsKind(ModelKind):
    name = "ofiq-uqs"
    method = "OFIQ unified quality score"
    paper = (
        "ISO/IEC 29794-5; OFIQ (BSI), unified quality score from MagFace (Meng et al., CVPR 2021)"
    )
    architecture = "MagFace iResNet-50 (ONNX)"
    input = "616x616 face aligned by OFIQ, resized to 192x192, rows 33:145 and columns 40:152, BGR, x/255"
    output = "0-100 unified quality (higher is better) from the native score (MagFace norm)"
    roles = ("quality",)
    page = (
        "https://github.com/BSI-OFIQ/OFIQ-Project (README: OFIQ-MODELS.zip from standards.iso.org)"
    )
    licence = "code: MIT; models: the licence inside OFIQ-MODELS.zip"
    files = "models/unified_quality_score/magface_iresnet50_norm.onnx in OFIQ-MODELS.zip"
    file_formats = (ONNX,)
    expects = "OFIQ's unified-quality-score ONNX file (MagFace iResNet-50, 112x112 input)"
    auto = False

    def load(self, file: ModelFile, options: Mapping[str, str]) -> LoadedModel:
        from igfiqa.inference.runners import AdaptedRunner, OnnxRunner

        card = onnx_card(
            self, file, CONVENTION, num_features=1, has_quality=True,
            quality={"meaning": "OFIQ unified quality score: round(100 / (1 + exp((23 - n) / 2.6)))"
                     " of the native score n (MagFace norm); 0-100, higher is better",
                     "range": [0, 100]},
            alignment={"template": [list(p) for p in OFIQ_TEMPLATE], "template_size": 616,
                       "note": "OFIQ's reference points (OFIQlib utils alignImage); OFIQ fits them "
                       "with LMEDS from ADNet landmarks, igfiqa by least squares from the "
                       "detector's five points"},
        )  # fmt: skip

        def quality(output: np.ndarray) -> np.ndarray:
            return ofiq_unified_quality(native_score(output))

        def factory(device: str, threads: int | None) -> AdaptedRunner:
            inner = OnnxRunner(file.path, device=device, threads=threads, names="first")
            return AdaptedRunner(inner, convention=CONVENTION, quality=quality)

        return LoadedModel(card=card, runner_factory=factory, kind=self.name)
