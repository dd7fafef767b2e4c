"""``arcface``: iResNet face recognition backbones in insightface's arcface_torch layout:
ArcFace (Deng et al., CVPR 2019) and ElasticFace (Boutros et al., CVPRW 2022) release these."""

from __future__ import annotations

from igfiqa.inference.kinds.base import register_kind
from igfiqa.inference.kinds.common import IresnetStateDictKind


@register_kind
class ArcfaceKind(IresnetStateDictKind):
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
    quality_head = False
    family = "iResNet (insightface arcface_torch parameter names)"
