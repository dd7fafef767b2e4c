"""What several kinds share: key prefixes, iResNet backbones from released weights, the card."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import torch
from torch import nn

from igfiqa.errors import CheckpointError
from igfiqa.inference.card import make_model_card
from igfiqa.inference.kinds.base import LoadedModel, ModelFile, ModelKind
from igfiqa.inference.loading import clean_state_dict, infer_model_spec
from igfiqa.models import create_model
from igfiqa.models.convention import ARCFACE_INPUT, InputConvention

IRESNET_MARKERS = ("conv1.weight", "layer1.0.conv1.weight", "fc.weight", "features.running_mean")


def tensor_state(payload: Any, where: str, *, inner: Iterable[str] = ()) -> dict[str, torch.Tensor]:
    """The state dict of a pickle: the payload itself or ``payload[key]`` for the first of
    ``inner`` present; only name -> tensor entries (a checkpoint's other items are dropped)."""
    state = payload
    if isinstance(payload, Mapping):
        for key in inner:
            if isinstance(payload.get(key), Mapping):
                state = payload[key]
                break
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{where}: expected a state dict, found a {type(state).__name__}")
    return {k: v for k, v in state.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}


def take_prefix(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Entries under ``prefix``, with the prefix removed."""
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def is_iresnet(keys: set[str]) -> bool:
    return all(marker in keys for marker in IRESNET_MARKERS)


def iresnet_backbone(
    state: Mapping[str, torch.Tensor],
    where: str,
    *,
    bn_eps: float,
    quality_head: bool,
) -> tuple[dict[str, Any], nn.Module]:
    """An iResNet with ``state`` loaded strictly, its architecture read from the weights."""
    state = clean_state_dict(state, where=where)
    if not quality_head:
        state = {k: v for k, v in state.items() if not k.startswith("qs.")}
    spec = infer_model_spec(state, where=where)
    spec["quality_head"] = quality_head
    spec["bn_eps"] = bn_eps
    network = iresnet_from_spec(spec)
    load_strict(network, state, where)
    return spec, network


def iresnet_from_spec(spec: Mapping[str, Any]) -> nn.Module:
    """An empty iResNet of ``spec`` (name, width, num_features, input_size, quality_head, bn_eps)."""
    return create_model(
        str(spec["name"]),
        num_features=int(spec.get("num_features", 512)),
        width=float(spec.get("width", 1.0)),
        input_size=int(spec.get("input_size", 112)),
        quality_head=bool(spec.get("quality_head", False)),
        bn_eps=float(spec.get("bn_eps", 1e-5)),
    )


def load_strict(network: nn.Module, state: Mapping[str, torch.Tensor], where: str) -> nn.Module:
    """``load_state_dict`` that names missing, unexpected and misshapen entries in one error."""
    check_fits(network, state, where)
    network.load_state_dict(state, strict=False)
    return network.eval()


def check_fits(network: nn.Module, state: Mapping[str, torch.Tensor], where: str) -> None:
    """Raise a CheckpointError naming the missing, unexpected and misshapen entries of ``state``
    for ``network`` (which may live on the meta device: only shapes are read)."""
    own = network.state_dict()
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k} {tuple(state[k].shape)} (expected {tuple(own[k].shape)})"
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or shapes:
        parts = []
        for label, items in (("missing", missing), ("unexpected", unexpected), ("shape", shapes)):
            if items:
                more = f" and {len(items) - 4} more" if len(items) > 4 else ""
                parts.append(f"{label}: {', '.join(items[:4])}{more}")
        raise CheckpointError(
            f"{where}: the weights do not fit the architecture ({'; '.join(parts)})"
        )


def build_checked(
    kind_name: str, spec: Mapping[str, Any], state: Mapping[str, torch.Tensor], where: str
) -> nn.Module:
    """The network of an export's (untrusted) card: built first on the meta device, where nothing
    is allocated, and compared with the weights' shapes; only a spec that fits them is built for
    real and loaded strictly."""
    from igfiqa.errors import ConfigError
    from igfiqa.inference.kinds.base import get_kind

    try:
        kind = get_kind(kind_name)
        with torch.device("meta"):
            skeleton = kind.build(spec)
    except (ConfigError, CheckpointError, KeyError, TypeError, ValueError, RecursionError) as error:
        raise CheckpointError(
            f"{where}: cannot build the {kind_name} model of its card ({error!r}); export the "
            "model again"
        ) from None
    check_fits(skeleton, state, where)
    return load_strict(kind.build(spec), state, where)


def kind_card(
    kind: ModelKind,
    spec: Mapping[str, Any],
    network: Any,
    *,
    convention: InputConvention,
    family: str,
    quality: Mapping[str, Any] | None = None,
    embedding: Mapping[str, Any] | None = None,
    file: ModelFile | None = None,
) -> dict[str, Any]:
    """The model card of a released model of ``kind``."""
    return make_model_card(
        {**spec, "kind": kind.name},
        has_quality_head=bool(network.has_quality_head),
        kind={"kind": kind.name, "method": kind.method, "paper": kind.paper, "page": kind.page,
              "licence": kind.licence},
        family=family,
        convention=convention.to_dict(),
        quality=quality,
        embedding=embedding,
        source={"kind": f"released {kind.method} file", "file": file.path.name if file else None},
    )  # fmt: skip


class IresnetStateDictKind(ModelKind):
    """A plain iResNet state dict (``layerK.N``, ``fc``, ``features``; ``module.`` removed), with
    the quality head ``qs`` exactly when ``quality_head``; BatchNorm eps 1e-5, ArcFace input."""

    quality_head: ClassVar[bool] = False
    family: ClassVar[str] = "iResNet (insightface parameter names)"
    quality_meaning: ClassVar[str | None] = None

    def recognise(self, file: ModelFile) -> bool:
        keys = {k.removeprefix("module.") for k in file.tensor_names()}
        has_head = any(k.startswith("qs.") for k in keys)
        return is_iresnet(keys) and has_head == self.quality_head

    def load(self, file: ModelFile, options: Mapping[str, str]) -> LoadedModel:
        state = tensor_state(file.payload, file.where)
        spec, network = iresnet_backbone(
            state, file.where, bn_eps=1e-5, quality_head=self.quality_head
        )
        quality = {"meaning": self.quality_meaning} if self.quality_meaning else None
        card = kind_card(
            self, spec, network, convention=ARCFACE_INPUT, file=file, family=self.family,
            quality=quality,
        )  # fmt: skip
        return LoadedModel(card=card, network=network, kind=self.name)

    def build(self, spec: Mapping[str, Any]) -> Any:
        return iresnet_from_spec({**spec, "quality_head": self.quality_head})


__all__ = [
    "IresnetStateDictKind",
    "build_checked",
    "check_fits",
    "iresnet_backbone",
    "iresnet_from_spec",
    "is_iresnet",
    "kind_card",
    "load_strict",
    "take_prefix",
    "tensor_state",
]
