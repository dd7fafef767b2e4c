"""``crfiqa``: CR-FIQA's released backbones (``*backbone.pth``): an iResNet whose quality head
``qs`` regresses the certainty ratio from the embedding (Boutros et al., CVPR 2023)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from igfiqa.inference.kinds.base import LoadedModel, ModelFile, ModelKind, register_kind
from igfiqa.inference.kinds.common import (
    iresnet_backbone,
    iresnet_from_spec,
    is_iresnet,
    keys_of,
    kind_card,
    tensor_state,
)
from igfiqa.models.convention import InputConvention

CONVENTION = InputConvention("RGB", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), 112)


@register_kind
class CrfiqaKind(ModelKind):
    name = "crfiqa"
    method = "CR-FIQA (S: iResNet-50 on CASIA-WebFace, L: iResNet-100 on MS1MV2)"
    paper = "Boutros et al., CR-FIQA: Face Image Quality Assessment by Learning Sample Relative Classifiability, CVPR 2023"
    architecture = "iResNet-50/100 + Linear(512, 1) quality head qs"
    input = "112x112 ArcFace-aligned, RGB, (x/255 - 0.5)/0.5"
    output = "quality qs(e), higher is better; 512-d embedding"
    roles = ("quality", "fr")
    page = "https://github.com/fdbtrs/CR-FIQA (README: pretrained models)"
    licence = "CC BY-NC 4.0 for code and models (README): non-commercial"
    files = "181952backbone.pth (CR-FIQA-L), 32572backbone.pth (CR-FIQA-S)"
    expects = "an iResNet state dict (layerK.N, fc, features) with the quality head qs"

    def recognise(self, file: ModelFile) -> bool:
        keys = keys_of(file)
        return is_iresnet({k.removeprefix("module.") for k in keys}) and any(
            k.removeprefix("module.").startswith("qs.") for k in keys
        )

    def load(self, file: ModelFile, options: Mapping[str, str]) -> LoadedModel:
        state = tensor_state(file.payload, file.where)
        spec, network = iresnet_backbone(state, file.where, bn_eps=1e-5, quality_head=True)
        card = kind_card(
            self, spec, network, convention=CONVENTION, file=file,
            family="iResNet (insightface / CR-FIQA parameter names)",
            quality={"meaning": "CR-FIQA quality: qs(e), the regressed certainty ratio; "
                     "higher = more useful for face recognition"},
        )  # fmt: skip
        return LoadedModel(card=card, network=network, kind=self.name)

    def build(self, spec: Mapping[str, Any]) -> Any:
        return iresnet_from_spec({**spec, "quality_head": True})
