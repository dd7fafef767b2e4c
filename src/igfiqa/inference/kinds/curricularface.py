"""``curricularface``: face.evoLVe "IR" networks (IR-50/101/152, IR-SE) such as CurricularFace's
released IR-101 (Huang et al., CVPR 2020); no BatchNorm between the stem conv and its PReLU,
parameter-free MaxPool shortcuts."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from igfiqa.errors import CheckpointError
from igfiqa.inference.kinds.base import LoadedModel, ModelFile, ModelKind, register_kind
from igfiqa.inference.kinds.common import kind_card, load_strict, tensor_state
from igfiqa.inference.loading import clean_state_dict
from igfiqa.models.convention import ARCFACE_INPUT
from igfiqa.models.iresnet import stage_channels
from igfiqa.models.irse import IR_BLOCKS, IRNet

CONVENTION = ARCFACE_INPUT


def ir_spec(state: Mapping[str, torch.Tensor], where: str, *, head: str) -> dict[str, Any]:
    """The IR-family spec of a state dict: depth from the number of body units, IR or IR-SE,
    width from the stem, input side from the flattened size the head (``head``) takes."""
    units = {
        int(k.split(".")[1]) for k in state if k.startswith("body.") and k.split(".")[1].isdigit()
    }
    depth = next((d for d, blocks in IR_BLOCKS.items() if sum(blocks) == len(units)), None)
    if depth is None or units != set(range(len(units))):
        known = ", ".join(f"IR-{d}: {sum(b)} units" for d, b in IR_BLOCKS.items())
        raise CheckpointError(f"{where}: {len(units)} body units match no IR network ({known})")
    stem = int(state["input_layer.0.weight"].shape[0])
    width = stem / 64
    last = stage_channels(width)[3]
    flat = int(state[head].shape[-1])
    side = math.isqrt(flat // last) if flat % last == 0 else 0
    if side < 1 or side * side * last != flat:
        raise CheckpointError(f"{where}: head input {flat} does not fit a {last}-channel map")
    return {
        "name": f"ir{'_se' if any('.res_layer.5.' in k for k in state) else ''}_{depth}",
        "depth": depth,
        "mode": "ir_se" if any(".res_layer.5." in k for k in state) else "ir",
        "width": width,
        "input_size": 16 * side,
    }


def ir_state(file: ModelFile) -> dict[str, torch.Tensor]:
    return clean_state_dict(
        tensor_state(file.payload, file.where, inner=("state_dict",)), where=file.where
    )


@register_kind
class CurricularfaceKind(ModelKind):
    name = "curricularface"
    method = "CurricularFace (and other face.evoLVe IR / IR-SE models)"
    paper = "Huang et al., CurricularFace: Adaptive Curriculum Learning Loss for Deep Face Recognition, CVPR 2020"
    architecture = "IR-101 (face.evoLVe IR family; IR-50/152 and IR-SE read too)"
    input = "112x112 ArcFace-aligned, RGB, (x/255 - 0.5)/0.5"
    output = "512-d embedding (FR model; no quality)"
    roles = ("fr",)
    page = "https://github.com/HuangYG123/CurricularFace (README: pretrained model, Baidu / Google Drive)"
    licence = "MIT (repository licence)"
    files = "the README names no file; CR-FIQA's scripts load CurricularFace_Backbone.pth"
    expects = "a face.evoLVe IR state dict: input_layer.*, body.N.*, output_layer.{0,3,4}.*"

    def recognise(self, file: ModelFile) -> bool:
        keys = {k.removeprefix("module.") for k in file.tensor_names(("state_dict",))}
        return "input_layer.0.weight" in keys and "output_layer.3.weight" in keys

    def load(self, file: ModelFile, options: Mapping[str, str]) -> LoadedModel:
        state = ir_state(file)
        spec = ir_spec(state, file.where, head="output_layer.3.weight")
        spec["num_features"] = int(state["output_layer.3.weight"].shape[0])
        spec["embedding_bn_affine"] = "output_layer.4.weight" in state
        network = load_strict(self.build(spec), state, file.where)
        card = kind_card(
            self, spec, network, convention=CONVENTION, file=file,
            family="IR (face.evoLVe parameter names)",
        )  # fmt: skip
        return LoadedModel(card=card, network=network, kind=self.name)

    def build(self, spec: Mapping[str, Any]) -> Any:
        return IRNet(
            int(spec["depth"]), str(spec.get("mode", "ir")),
            input_size=int(spec["input_size"]), num_features=int(spec.get("num_features", 512)),
            embedding_bn_affine=bool(spec.get("embedding_bn_affine", False)),
            width=float(spec.get("width", 1.0)),
        )  # fmt: skip


__all__ = ["CurricularfaceKind", "ir_spec", "ir_state"]
