"""``ediffiqa``: eDifFIQA (Babnik et al., IEEE T-BIOM 2024), DifFIQA distilled into an FR backbone
with an MLP regressor: iResNet-100/50/18 (L/M/S, raw embedding) or MobileFaceNet (T, whose
output is L2-normalised) under ``base_model``, and ``mlp.l1`` Linear(512, 1024), GELU, ``mlp.l2``
Linear(1024, 1)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from igfiqa.errors import CheckpointError
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
from igfiqa.models.mobilefacenet import MobileFaceNet
from igfiqa.models.scoring import MLPRegressor, ScoringNetwork

CONVENTION = ARCFACE_INPUT
SIZES = {"iresnet100": "L", "iresnet50": "M", "iresnet18": "S", "mobilefacenet": "T"}


def mobilefacenet_spec(state: Mapping[str, torch.Tensor], where: str) -> dict[str, Any]:
    """The MobileFaceNet spec of eDifFIQA(T) weights (width and embedding size from shapes)."""
    try:
        first = int(state["conv1.conv.weight"].shape[0])
        num_features = int(state["bn.running_mean"].shape[0])
        side = int(state["conv_6_dw.conv.weight"].shape[-1])
    except KeyError as error:
        raise CheckpointError(f"{where}: not a MobileFaceNet (missing {error})") from None
    return {
        "name": "mobilefacenet",
        "width": first / 64,
        "num_features": num_features,
        "input_size": 16 * side,
    }


def mobilefacenet_from_spec(spec: Mapping[str, Any]) -> MobileFaceNet:
    return MobileFaceNet(
        int(spec.get("num_features", 512)),
        input_size=int(spec.get("input_size", 112)),
        width=float(spec.get("width", 1.0)),
        normalize=True,
    )


@register_kind
class EdiffiqaKind(ModelKind):
    name = "ediffiqa"
    method = "eDifFIQA (L, M, S, T)"
    paper = "Babnik et al., eDifFIQA: Towards Efficient Face Image Quality Assessment based on Denoising Diffusion Probabilistic Models, IEEE T-BIOM 2024"
    architecture = "iResNet-100/50/18 (L/M/S) or MobileFaceNet (T) + MLP 512-1024-1 (GELU)"
    input = "112x112 ArcFace-aligned, RGB, (x/255 - 0.5)/0.5"
    output = "quality mlp(e), higher is better; the base model's 512-d embedding (T: L2-normalised)"
    roles = ("quality", "fr")
    page = "https://github.com/LSIbabnikz/eDifFIQA (README: pretrained models, SharePoint / Hugging Face LSIbabnikz)"
    licence = "no licence file in the repository: ask the authors before any use beyond research"
    files = "ediffiqaL.pth, ediffiqaM.pth, ediffiqaS.pth, ediffiqaT.pth"
    expects = "a state dict with base_model.* (iResNet or MobileFaceNet) and mlp.l1.* / mlp.l2.*"

    def recognise(self, file: ModelFile) -> bool:
        keys = file.tensor_names()
        return (
            "mlp.l1.weight" in keys
            and "mlp.l2.weight" in keys
            and any(k.startswith("base_model.") for k in keys)
        )

    def load(self, file: ModelFile, options: Mapping[str, str]) -> LoadedModel:
        state = tensor_state(file.payload, file.where)
        base = take_prefix(state, "base_model.")
        if is_iresnet(set(base)):
            spec, backbone = iresnet_backbone(base, file.where, bn_eps=1e-5, quality_head=False)
            family = "iResNet (arcface_torch) + MLP quality regressor"
        else:
            spec = mobilefacenet_spec(base, file.where)
            backbone = load_strict(mobilefacenet_from_spec(spec), base, file.where)
            family = "MobileFaceNet + MLP quality regressor"
        spec["variant"] = SIZES.get(str(spec["name"]), "?")
        head = MLPRegressor(backbone.num_features, int(state["mlp.l1.weight"].shape[0]))
        load_strict(head, take_prefix(state, "mlp."), f"{file.where} (mlp)")
        spec["mlp_hidden"] = int(head.l1.out_features)
        network = ScoringNetwork(backbone, convention=CONVENTION, quality="head", head=head)
        card = kind_card(
            self, spec, network, convention=CONVENTION, file=file, family=family,
            quality={"meaning": "eDifFIQA quality: l2(GELU(l1(e))) of the base model's embedding "
                     "e (raw for L/M/S, L2-normalised for T); higher = better"},
            embedding={"l2_normalised": spec["name"] == "mobilefacenet"},
        )  # fmt: skip
        return LoadedModel(card=card, network=network.eval(), kind=self.name)

    def build(self, spec: Mapping[str, Any]) -> Any:
        if spec.get("name") == "mobilefacenet":
            backbone = mobilefacenet_from_spec(spec)
        else:
            backbone = iresnet_from_spec({**spec, "quality_head": False, "bn_eps": 1e-5})
        head = MLPRegressor(backbone.num_features, int(spec.get("mlp_hidden", 1024)))
        return ScoringNetwork(backbone, convention=CONVENTION, quality="head", head=head)
