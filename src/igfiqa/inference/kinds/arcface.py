"""``arcface``: iResNet face recognition backbones in insightface's arcface_torch layout:
ArcFace (Deng et al., CVPR 2019) and ElasticFace (Boutros et al., CVPRW 2022) release these."""

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
class ArcfaceKind(ModelKind):
    name = "arcface"
    method = "ArcFace (arcface_torch), ElasticFace"
    paper = "Deng et al., ArcFace, CVPR 2019; Boutros et al., ElasticFace, CVPRW 2022"
    architecture = "iResNet-18/34/50/100/200, BatchNorm eps 1e-5"
    input = "112x112 ArcFace-aligned, RGB, (x/255 - 0.5)/0.5"
    output = "512-d embedding (FR model; no quality)"
    roles = ("fr",)
    page = (
        "https://github.com/deepinsight/insightface/tree/master/recognition/arcface_torch (model "
        "zoo); https://github.com/fdbtrs/ElasticFace (README: pretrained models)"
    )
    licence = (
        "insightface: code MIT, models non-commercial research only; ElasticFace: CC BY-NC-SA 4.0"
    )
    files = "model.pt or backbone.pth (arcface_torch model zoo), 295672backbone.pth (ElasticFace-Arc r100)"
    expects = "an iResNet state dict (layerK.N, fc, features) without a quality head"

    def recognise(self, file: ModelFile) -> bool:
        keys = {k.removeprefix("module.") for k in keys_of(file)}
        return is_iresnet(keys) and not any(k.startswith("qs.") for k in keys)

    def load(self, file: ModelFile, options: Mapping[str, str]) -> LoadedModel:
        state = tensor_state(file.payload, file.where)
        spec, network = iresnet_backbone(state, file.where, bn_eps=1e-5, quality_head=False)
        card = kind_card(
            self, spec, network, convention=CONVENTION, file=file,
            family="iResNet (insightface arcface_torch parameter names)",
        )  # fmt: skip
        return LoadedModel(card=card, network=network, kind=self.name)

    def build(self, spec: Mapping[str, Any]) -> Any:
        return iresnet_from_spec({**spec, "quality_head": False})
