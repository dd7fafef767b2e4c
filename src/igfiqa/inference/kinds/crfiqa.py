"""``crfiqa``: CR-FIQA's released backbones (``*backbone.pth``): an iResNet whose quality head
``qs`` regresses the certainty ratio from the embedding (Boutros et al., CVPR 2023)."""

from __future__ import annotations

from igfiqa.inference.kinds.base import register_kind
from igfiqa.inference.kinds.common import IresnetStateDictKind


@register_kind
class CrfiqaKind(IresnetStateDictKind):
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
    quality_head = True
    family = "iResNet (insightface / CR-FIQA parameter names)"
    quality_meaning = (
        "CR-FIQA quality: qs(e), the regressed certainty ratio; higher = more useful for face "
        "recognition"
    )
