"""``sddfiqa``: SDD-FIQA's released quality network (Ou et al., CVPR 2021): a face.evoLVe IR-50
body and a PReLU / Dropout / Linear head on the flattened 25088-d map, giving the quality."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from igfiqa.inference.kinds.base import LoadedModel, ModelFile, ModelKind, register_kind
from igfiqa.inference.kinds.common import kind_card, load_strict
from igfiqa.inference.kinds.curricularface import ir_spec, ir_state
from igfiqa.models.convention import ARCFACE_INPUT
from igfiqa.models.irse import SDDFIQANet

CONVENTION = ARCFACE_INPUT


@register_kind
class SddfiqaKind(ModelKind):
    name = "sddfiqa"
    method = "SDD-FIQA"
    paper = "Ou et al., SDD-FIQA: Unsupervised Face Image Quality Assessment with Similarity Distribution Distance, CVPR 2021"
    architecture = "IR-50 (face.evoLVe) + Flatten, PReLU(25088), Dropout, Linear(25088, 1)"
    input = "112x112 ArcFace-aligned, RGB, (x/255 - 0.5)/0.5"
    output = "quality (higher is better); no face embedding (the 25088-d map is no FR template)"
    roles = ("quality",)
    page = "https://github.com/Tencent/TFace/tree/master/quality (README: checkpoint link)"
    licence = "Apache-2.0 (TFace repository licence)"
    files = "SDD_FIQA_checkpoints_r50.pth"
    expects = (
        "a TFace quality state dict: input_layer.*, body.N.*, quality.{1,3}.* (module. stripped)"
    )

    def recognise(self, file: ModelFile) -> bool:
        keys = {k.removeprefix("module.") for k in file.tensor_names(("state_dict",))}
        return "input_layer.0.weight" in keys and "quality.3.weight" in keys

    def load(self, file: ModelFile, options: Mapping[str, str]) -> LoadedModel:
        state = ir_state(file)
        spec = ir_spec(state, file.where, head="quality.3.weight")
        network = load_strict(self.build(spec), state, file.where)
        spec["num_features"] = network.num_features
        card = kind_card(
            self, spec, network, convention=CONVENTION, file=file,
            family="IR (face.evoLVe / TFace parameter names) + quality head",
            quality={"meaning": "SDD-FIQA quality: the network's regressed score (trained on the "
                     "Wasserstein distance of mated and non-mated similarity distributions); "
                     "higher = better"},
            embedding={"meaning": "the flattened feature map that the quality head reads; not a "
                       "face recognition template"},
        )  # fmt: skip
        return LoadedModel(card=card, network=network, kind=self.name)

    def build(self, spec: Mapping[str, Any]) -> Any:
        return SDDFIQANet(
            int(spec["depth"]),
            input_size=int(spec["input_size"]),
            width=float(spec.get("width", 1.0)),
        )
