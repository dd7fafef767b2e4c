"""``torchscript``: any TorchScript face recognition model (its first output = the embedding),
fed igfiqa's input convention."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from igfiqa.errors import CheckpointError
from igfiqa.inference.card import make_model_card
from igfiqa.inference.kinds.base import (
    TORCHSCRIPT,
    LoadedModel,
    ModelFile,
    ModelKind,
    register_kind,
)
from igfiqa.models.convention import InputConvention


class ScriptedModel(nn.Module):
    """A TorchScript module behind the scoring interface (its first output is the embedding)."""

    def __init__(self, module: Any, input_size: int, num_features: int) -> None:
        super().__init__()
        self.module = module
        self.input_size = input_size
        self.num_features = num_features
        self.has_quality_head = False

    def embed_and_quality(self, x: Tensor) -> tuple[Tensor, None]:
        out = self.module(x)
        if isinstance(out, (tuple, list)):
            out = out[0]
        return out, None


@register_kind
class TorchscriptKind(ModelKind):
    name = "torchscript"
    method = "any TorchScript face recognition model"
    paper = "-"
    architecture = "any (first output)"
    input = "S x S aligned, RGB, (x/255 - 0.5)/0.5 (igfiqa's convention; size=S, default 112)"
    output = "embedding (FR model; no quality)"
    roles = ("fr",)
    page = "-"
    licence = "the model's own"
    files = "*.pt / *.ts archives written by torch.jit.save"
    file_formats = (TORCHSCRIPT,)
    expects = "a torch.jit.save archive whose forward maps (B, 3, S, S) to embeddings"
    options = ("size",)
    options_help: ClassVar[dict[str, str]] = {"size": "input side S, 16 to 4096 (default 112)"}

    def recognise(self, file: ModelFile) -> bool:
        return file.format == TORCHSCRIPT

    def load(self, file: ModelFile, options: Mapping[str, str]) -> LoadedModel:
        try:
            module = torch.jit.load(str(file.path), map_location="cpu").eval()
        except (RuntimeError, ValueError) as error:
            raise CheckpointError(
                f"{file.path}: not a loadable TorchScript file ({error})"
            ) from error
        try:
            size = int(options.get("size", 112))
            if not 16 <= size <= 4096:
                raise ValueError
        except ValueError:
            raise CheckpointError(
                f"torchscript option size={options['size']!r} is not an integer from 16 to 4096"
            ) from None
        try:
            with torch.inference_mode():
                probe = module(torch.zeros(1, 3, size, size))
        except RuntimeError as error:
            raise CheckpointError(
                f"{file.path}: the TorchScript model fails on a (1, 3, {size}, {size}) input "
                f"({str(error).splitlines()[-1]}); give its input side with the option size=S"
            ) from None
        probe = probe[0] if isinstance(probe, (tuple, list)) else probe
        network = ScriptedModel(module, size, int(probe.shape[-1]))
        convention = InputConvention(size=size)
        card = make_model_card(
            {"kind": self.name, "name": file.path.stem, "input_size": size,
             "num_features": network.num_features},
            has_quality_head=False,
            kind={"kind": self.name, "method": self.method},
            family="TorchScript", convention=convention.to_dict(),
            source={"kind": "TorchScript file", "file": file.path.name},
        )  # fmt: skip
        return LoadedModel(card=card, network=network, kind=self.name)
