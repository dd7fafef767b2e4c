"""``diffiqa-r``: DifFIQA(R) (Babnik et al., IJCB 2023), the regression distilled from DifFIQA's
diffusion-based quality: an arcface_torch iResNet-100 and a Linear(512, 1) on its raw embedding."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from igfiqa.inference.kinds.base import LoadedModel, ModelFile, ModelKind, register_kind
from igfiqa.inference.kinds.common import (
    iresnet_backbone,
    iresnet_from_spec,
    is_iresnet,
    kind_card,
    load_strict,
    take_prefix,
    tensor_state,
)
from igfiqa.models.convention import ARCFACE_INPUT
from igfiqa.models.scoring import ScoringNetwork

CONVENTION = ARCFACE_INPUT


@register_kind
class DiffiqaRKind(ModelKind):
    name = "diffiqa-r"
    method = "DifFIQA(R)"
    paper = "Babnik et al., DifFIQA: Face Image Quality Assessment Using Denoising Diffusion Probabilistic Models, IJCB 2023"
    architecture = "iResNet-100 (arcface_torch) + Linear(512, 1) on the raw embedding"
    input = "112x112 ArcFace-aligned, RGB, (x/255 - 0.5)/0.5"
    output = "quality linear(e), higher is better; the base model's 512-d embedding"
    roles = ("quality", "fr")
    page = "https://github.com/LSIbabnikz/DifFIQA (diffiqa(r)/README.md: weights link)"
    licence = "MIT (repository licence)"
    files = "diffiqa(r).pth (its FR base, glint360k_cosface_r100_fp16_0.1, is inside it)"
    expects = "an nn.Sequential state dict: base.* (iResNet) and linear.weight / linear.bias"

    def recognise(self, file: ModelFile) -> bool:
        keys = file.tensor_names()
        return "linear.weight" in keys and is_iresnet(
            {k[5:] for k in keys if k.startswith("base.")}
        )

    def load(self, file: ModelFile, options: Mapping[str, str]) -> LoadedModel:
        state = tensor_state(file.payload, file.where)
        spec, backbone = iresnet_backbone(
            take_prefix(state, "base."), file.where, bn_eps=1e-5, quality_head=False
        )
        head = nn.Linear(backbone.num_features, 1)
        load_strict(head, take_prefix(state, "linear."), f"{file.where} (linear)")
        network = ScoringNetwork(backbone, convention=CONVENTION, quality="head", head=head)
        card = kind_card(
            self, spec, network, convention=CONVENTION, file=file,
            family="iResNet (arcface_torch) + linear quality regressor",
            quality={"meaning": "DifFIQA(R) quality: Linear(512, 1) of the raw embedding; "
                     "higher = better"},
        )  # fmt: skip
        return LoadedModel(card=card, network=network.eval(), kind=self.name)

    def build(self, spec: Mapping[str, Any]) -> Any:
        backbone = iresnet_from_spec({**spec, "quality_head": False, "bn_eps": 1e-5})
        head = nn.Linear(backbone.num_features, 1)
        return ScoringNetwork(backbone, convention=CONVENTION, quality="head", head=head)
