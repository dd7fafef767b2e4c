"""``magface``: MagFace's released models (Meng et al., CVPR 2021): an iResNet whose raw
embedding's L2 norm is the quality; BatchNorm eps 2e-5; BGR input scaled to [0, 1]."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from igfiqa.errors import CheckpointError, ConfigError
from igfiqa.inference.kinds.base import LoadedModel, ModelFile, ModelKind, register_kind
from igfiqa.inference.kinds.common import (
    iresnet_backbone,
    iresnet_from_spec,
    is_iresnet,
    kind_card,
    take_prefix,
    tensor_state,
)
from igfiqa.models.convention import InputConvention
from igfiqa.models.scoring import ScoringNetwork

CONVENTION = InputConvention("BGR", (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), 112)
RGB_CONVENTION = InputConvention("RGB", (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), 112)
"""What CR-FIQA's evaluation fed MagFace (its data scripts swap the channels on disk):
``--model-option colour=RGB`` reproduces those tables."""


def convention_for(colour: str) -> InputConvention:
    colour = colour.strip().upper()
    if colour not in ("BGR", "RGB"):
        raise ConfigError(f"magface option colour={colour!r}: use BGR (MagFace's own) or RGB")
    return CONVENTION if colour == "BGR" else RGB_CONVENTION


BN_EPS = 2e-5
PREFIXES = ("features.module.", "module.features.", "features.")


def backbone_state(file: ModelFile) -> dict[str, Any]:
    """The iResNet entries of a MagFace checkpoint (``state_dict`` of DDP or DP training, or the
    state dict itself), prefixes removed; MagLinear's ``fc.weight`` of the classifier is dropped."""
    state = tensor_state(file.payload, file.where, inner=("state_dict",))
    for prefix in PREFIXES:
        inner = take_prefix(state, prefix)
        if is_iresnet(set(inner)):
            return inner
    raise CheckpointError(
        f"{file.where}: no MagFace iResNet under {', '.join(PREFIXES)} in its state_dict"
    )


@register_kind
class MagfaceKind(ModelKind):
    name = "magface"
    method = "MagFace"
    paper = "Meng et al., MagFace: A Universal Representation for Face Recognition and Quality Assessment, CVPR 2021"
    architecture = "iResNet-18/50/100, BatchNorm eps 2e-5"
    input = "112x112 ArcFace-aligned, BGR, x/255 (no centring)"
    output = "quality = L2 norm of the raw 512-d embedding (higher is better); the embedding"
    roles = ("quality", "fr")
    page = "https://github.com/IrvingMeng/MagFace (README: model zoo)"
    licence = "code: Apache-2.0; the README states no separate licence for the weights"
    files = "magface_epoch_00025.pth (the README's name; iResNet-100/50 MS1MV2 DDP, iResNet-18 CASIA DP)"
    options = ("colour",)
    options_help: ClassVar[dict[str, str]] = {
        "colour": "BGR (MagFace's own code, default) or RGB (what CR-FIQA's evaluation fed it)"
    }
    expects = (
        "a MagFace checkpoint: a dict whose 'state_dict' holds the iResNet under "
        "features.module.* (DDP) or module.features.* (DP), plus the MagLinear fc.weight"
    )

    def recognise(self, file: ModelFile) -> bool:
        if not isinstance(file.payload, Mapping) or not isinstance(
            file.payload.get("state_dict"), Mapping
        ):
            return False
        keys = file.tensor_names(("state_dict",))
        return any(
            is_iresnet({k[len(p) :] for k in keys if k.startswith(p)})
            for p in ("features.module.", "module.features.")
        )

    def load(self, file: ModelFile, options: Mapping[str, str]) -> LoadedModel:
        spec, backbone = iresnet_backbone(
            backbone_state(file), file.where, bn_eps=BN_EPS, quality_head=False
        )
        convention = convention_for(options.get("colour", "BGR"))
        spec["colour"] = convention.colour_order
        network = ScoringNetwork(backbone, convention=convention, quality="norm")
        card = kind_card(
            self, spec, network, convention=convention, file=file,
            family="iResNet (MagFace: BatchNorm eps 2e-5)",
            quality={"meaning": "MagFace quality: the L2 norm of the raw embedding; higher = "
                     "better (about 15-35 for faces on released models)"},
        )  # fmt: skip
        return LoadedModel(card=card, network=network.eval(), kind=self.name)

    def build(self, spec: Mapping[str, Any]) -> Any:
        backbone = iresnet_from_spec({**spec, "quality_head": False, "bn_eps": BN_EPS})
        convention = convention_for(str(spec.get("colour", "BGR")))
        return ScoringNetwork(backbone, convention=convention, quality="norm")
