"""``onnx``: any ONNX face recognition model (its first input, its first output = the
embedding), fed igfiqa's input convention; igfiqa's own ONNX exports load with backend onnx."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from igfiqa.inference.card import find_card_for
from igfiqa.inference.kinds.base import ONNX, LoadedModel, ModelFile, ModelKind, register_kind
from igfiqa.models.convention import InputConvention


def onnx_card(kind: ModelKind, file: ModelFile, convention: InputConvention, **extra: Any) -> dict:
    """The card of a bare ONNX model (its input side from the file's first input)."""
    from igfiqa.inference.card import make_model_card

    return make_model_card(
        {"kind": kind.name, "name": file.path.stem, "input_size": convention.size,
         "num_features": int(extra.pop("num_features", 0))},
        has_quality_head=bool(extra.pop("has_quality", False)),
        kind={"kind": kind.name, "method": kind.method, "paper": kind.paper, "page": kind.page,
              "licence": kind.licence},
        family="ONNX graph", convention=convention.to_dict(),
        source={"kind": f"{kind.method} ONNX file", "file": file.path.name}, **extra,
    )  # fmt: skip


def onnx_shapes(path: Any) -> tuple[int | None, int | None]:
    """(input side, output width) of an ONNX model's first input and output, where static."""
    try:
        import onnx
    except ImportError:  # the onnx extra brings it; onnxruntime reports the side later
        return None, None
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as error:  # protobuf's DecodeError and friends
        from igfiqa.errors import CheckpointError

        raise CheckpointError(f"{path} is not a readable ONNX model: {error}") from None
    graph = model.graph
    initialisers = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initialisers]

    def dims(value: Any) -> list[int | None]:
        return [d.dim_value or None for d in value.type.tensor_type.shape.dim]

    side = dims(inputs[0])[-1] if inputs else None
    width = dims(graph.output[0])[-1] if graph.output else None
    return side, width


@register_kind
class OnnxKind(ModelKind):
    name = "onnx"
    method = "any ONNX face recognition model"
    paper = "-"
    architecture = "any (first input, first output)"
    input = "S x S aligned, RGB, (x/255 - 0.5)/0.5 (igfiqa's convention)"
    output = "embedding (FR model; no quality)"
    roles = ("fr",)
    page = "-"
    licence = "the model's own"
    files = "*.onnx"
    file_formats = (ONNX,)
    expects = "an ONNX FR model without an igfiqa model card (first input NCHW, first output the embedding)"

    def recognise(self, file: ModelFile) -> bool:
        return file.format == ONNX and find_card_for(file.path) is None

    def load(self, file: ModelFile, options: Mapping[str, str]) -> LoadedModel:
        from igfiqa.inference.runners import AdaptedRunner, OnnxRunner

        side, width = onnx_shapes(file.path)
        convention = InputConvention(size=int(side or 112))
        card = onnx_card(self, file, convention, num_features=width or 0)

        def factory(device: str, threads: int | None) -> AdaptedRunner:
            inner = OnnxRunner(file.path, device=device, threads=threads, names="first")
            return AdaptedRunner(inner, convention=convention, num_features=width)

        return LoadedModel(card=card, runner_factory=factory, kind=self.name)
