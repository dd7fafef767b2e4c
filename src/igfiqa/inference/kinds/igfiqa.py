"""``igfiqa``: models trained with igfiqa (training checkpoints, run folders) and every
``igfiqa export`` (directory or ``.safetensors`` with its model card, of any kind)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from igfiqa.errors import CheckpointError
from igfiqa.inference.kinds.base import (
    EXPORT,
    TORCH,
    LoadedModel,
    ModelFile,
    ModelKind,
    open_model_file,
    register_kind,
)
from igfiqa.inference.kinds.common import iresnet_from_spec


@register_kind
class IgfiqaKind(ModelKind):
    name = "igfiqa"
    method = "IG-FIQA / CR-FIQA trained with igfiqa"
    paper = "Kim et al., IG-FIQA, 2024; Boutros et al., CR-FIQA, CVPR 2023"
    architecture = "iResNet + quality head qs"
    input = "112x112 ArcFace-aligned, RGB, (x/255 - 0.5)/0.5"
    output = "quality R(f(x)), higher is better; 512-d embedding"
    roles = ("quality", "fr")
    page = "this project (igfiqa train / igfiqa export)"
    licence = "Apache-2.0 (code); weights: yours"
    files = "step_*.pt, run folders, export folders (model.safetensors + model_card.json)"
    file_formats = (TORCH, EXPORT)
    expects = (
        "an igfiqa training checkpoint (format igfiqa.checkpoint), a run folder, or an export "
        "(model.safetensors with model_card.json)"
    )

    def recognise(self, file: ModelFile) -> bool:
        if file.format == EXPORT:
            return True
        return isinstance(file.payload, Mapping) and "format" in file.payload

    def load(self, file: ModelFile, options: Mapping[str, str]) -> LoadedModel:
        from igfiqa.inference.card import CARD_FILE, WEIGHTS_FILE, find_card_for
        from igfiqa.inference.loading import (
            latest_training_checkpoint,
            load_safetensors_export,
            load_training_checkpoint,
        )

        path = file.path
        if file.format == EXPORT:
            if path.is_dir() and not (path / WEIGHTS_FILE).is_file():
                latest = latest_training_checkpoint(path)
                if latest is None:
                    raise CheckpointError(
                        f"{path} is a directory without {WEIGHTS_FILE} or step_*.pt checkpoints: "
                        f"expected an `igfiqa export` directory ({WEIGHTS_FILE} + {CARD_FILE}) or "
                        "a training run folder"
                    )
                return self.load(open_model_file(latest), options)
            if path.is_dir():
                card_path = path / CARD_FILE
                network, card = load_safetensors_export(
                    path / WEIGHTS_FILE,
                    card_path if card_path.is_file() else None,
                    sha256=file.sha256,
                )
            else:
                network, card = load_safetensors_export(
                    path, find_card_for(path), sha256=file.sha256
                )
            kind = str(card["model_spec"].get("kind", self.name))
            return LoadedModel(card=card, network=network, kind=kind)
        # the one checkpoint rule (igfiqa.checkpoint.check_checkpoint_payload) runs inside
        network, card = load_training_checkpoint(path, file.payload)
        return LoadedModel(card=card, network=network, kind=self.name)

    def build(self, spec: Mapping[str, Any]) -> Any:
        return iresnet_from_spec({"quality_head": True, **spec})
