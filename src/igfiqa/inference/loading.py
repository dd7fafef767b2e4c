"""Read model weights safely and rebuild the network: training checkpoints, exports, CR-FIQA backbones.

Pickled files are opened only with ``torch.load(weights_only=True)``, which refuses any object that is
not a tensor or a plain container, so a malicious file cannot run code; safetensors files hold no code
at all. Every failure is a :class:`~igfiqa.errors.CheckpointError` naming the file.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from igfiqa import checkpoint
from igfiqa.checkpoint import FORMAT as CHECKPOINT_FORMAT
from igfiqa.checkpoint import FORMAT_VERSION as CHECKPOINT_VERSION
from igfiqa.errors import CheckpointError, ConfigError
from igfiqa.inference.card import (
    CARD_FILE,
    SAFETENSORS_CARD_KEY,
    make_model_card,
    parse_card_json,
    read_card,
    validate_card,
    verify_card_files,
)
from igfiqa.models import MODEL_LAYERS, canonical_model_name, create_model
from igfiqa.models.iresnet import STAGE_CHANNELS, stage_channels, stage_output_size

EXPECTED = (
    "expected an igfiqa training checkpoint (.pt), an exported model (a directory or .safetensors "
    "with its model_card.json) or an iResNet state dict such as CR-FIQA's *backbone.pth"
)
_STRIP_PREFIXES = ("module.", "backbone.", "_orig_mod.")


def read_torch_file(path: Path) -> Any:
    """:func:`igfiqa.checkpoint.read_torch_file` (the one safe ``torch.load``) on CPU, its errors
    listing every model file igfiqa reads."""
    return checkpoint.read_torch_file(path, expected=EXPECTED)


def clean_state_dict(state: Mapping[str, Any], *, where: str) -> dict[str, torch.Tensor]:
    """Check that ``state`` maps names to tensors; drop DataParallel/compile prefixes."""
    if not isinstance(state, Mapping) or not state:
        raise CheckpointError(f"{where}: expected a non-empty state dict of tensors; {EXPECTED}")
    cleaned: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise CheckpointError(
                f"{where}: entry {key!r} is a {type(value).__name__}, not a tensor; {EXPECTED}"
            )
        name = key
        stripped = True
        while stripped:
            stripped = False
            for prefix in _STRIP_PREFIXES:
                if name.startswith(prefix):
                    name, stripped = name[len(prefix) :], True
        cleaned[name] = value
    return cleaned


def infer_model_spec(state: Mapping[str, torch.Tensor], *, where: str) -> dict[str, Any]:
    """Recover the model spec of an iResNet state dict from its parameter names and shapes.

    Block counts come from the ``layerK.N`` names, stage widths from the conv shapes, the embedding
    size from ``fc``; the input side S is taken as 16 x the final feature-map side (112 for 7x7), the
    only size used by published models. ``quality_head`` is whether ``qs`` is present.
    """
    required = ("conv1.weight", "fc.weight", "features.running_mean")
    missing = [key for key in required if key not in state]
    if missing:
        raise CheckpointError(f"{where}: not an iResNet state dict (missing {missing}); {EXPECTED}")
    blocks = []
    for stage in range(1, 5):
        indices = {
            int(key.split(".")[1])
            for key in state
            if key.startswith(f"layer{stage}.") and key.split(".")[1].isdigit()
        }
        if not indices or indices != set(range(len(indices))):
            raise CheckpointError(f"{where}: stage layer{stage} is missing or has gaps; {EXPECTED}")
        blocks.append(len(indices))
    name = next((n for n, layers in MODEL_LAYERS.items() if list(layers) == blocks), None)
    if name is None:
        known = ", ".join(f"{n} {list(v)}" for n, v in MODEL_LAYERS.items())
        raise CheckpointError(
            f"{where}: blocks per stage {blocks} match no known iResNet ({known})"
        )
    widths = [int(state[f"layer{stage}.0.conv1.weight"].shape[0]) for stage in range(1, 5)]
    width = widths[3] / STAGE_CHANNELS[3]
    if stage_channels(width) != widths:
        raise CheckpointError(
            f"{where}: stage widths {widths} are not a scaled iResNet (64/128/256/512)"
        )
    num_features, in_features = (int(n) for n in state["fc.weight"].shape)
    side_squared = in_features / widths[3]
    side = math.isqrt(int(side_squared))
    if side * side != side_squared or side < 1 or stage_output_size(16 * side) != side:
        raise CheckpointError(
            f"{where}: fc input size {in_features} does not fit width {widths[3]}"
        )
    return {
        "name": name,
        "num_features": num_features,
        "dropout": 0.0,
        "width": width,
        "input_size": 16 * side,
        "quality_head": "qs.weight" in state,
    }


def check_spec_fits_weights(
    spec: Mapping[str, Any], state: Mapping[str, torch.Tensor], *, where: str
) -> None:
    """Refuse a model spec (from a card or checkpoint: untrusted) that the weights' shapes
    contradict, before anything of the spec's size is allocated."""
    inferred = infer_model_spec(state, where=where)
    problems = []
    try:
        name = canonical_model_name(str(spec.get("name", "")))
        width = float(spec.get("width", 1.0))
        num_features = int(spec.get("num_features", 512))
        input_size = int(spec.get("input_size", 112))
    except (ConfigError, TypeError, ValueError) as error:
        raise CheckpointError(
            f"{where}: the model spec {dict(spec)} is malformed ({error})"
        ) from None
    if name != inferred["name"]:
        problems.append(f"name {name} (the weights are {inferred['name']})")
    expected = stage_channels(width) if width > 0 else None
    if expected != stage_channels(inferred["width"]):
        problems.append(f"width {width:g} (the weights have width {inferred['width']:g})")
    if num_features != inferred["num_features"]:
        problems.append(
            f"num_features {num_features} (the weights embed in {inferred['num_features']})"
        )
    side = stage_output_size(inferred["input_size"])
    if not 16 <= input_size <= 4096 or stage_output_size(input_size) != side:
        problems.append(f"input_size {input_size} (the weights take {side}x{side} feature maps)")
    if problems:
        raise CheckpointError(
            f"{where}: the model spec does not fit the weights: {'; '.join(problems)}. The model "
            "card or checkpoint was edited or belongs to other weights; export the model again"
        )


def build_network(
    spec: Mapping[str, Any], state: Mapping[str, torch.Tensor], *, where: str
) -> nn.Module:
    """Build the network of ``spec`` and load ``state`` into it strictly (eval mode, on CPU)."""
    check_spec_fits_weights(spec, state, where=where)
    options = {key: value for key, value in spec.items() if key != "name"}
    options.setdefault("quality_head", "qs.weight" in state)
    options["dropout"] = 0.0  # inference only: dropout is the identity in eval mode anyway
    try:
        network = create_model(str(spec["name"]), **options)
    except (ConfigError, KeyError) as error:
        raise CheckpointError(
            f"{where}: cannot build the model spec {dict(spec)}: {error}"
        ) from error
    result = network.load_state_dict(state, strict=False)
    missing = [key for key in result.missing_keys if not key.endswith("num_batches_tracked")]
    if missing or result.unexpected_keys:
        raise CheckpointError(
            f"{where}: the weights do not fit model spec {dict(spec)} "
            f"(missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {result.unexpected_keys[:5]}{'...' if len(result.unexpected_keys) > 5 else ''})"
        )
    return network.eval()


def _load_shape_checked(
    network_spec: Mapping[str, Any], state: dict[str, torch.Tensor], where: str
) -> nn.Module:
    try:
        return build_network(network_spec, state, where=where)
    except RuntimeError as error:  # size mismatches from load_state_dict
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        details = [line for line in lines if line.startswith("size mismatch")] or lines[:1]
        more = f" (and {len(details) - 3} more)" if len(details) > 3 else ""
        raise CheckpointError(
            f"{where}: the weights do not fit model spec {dict(network_spec)}: "
            f"{' '.join(details[:3])}{more}"
        ) from error


def load_training_checkpoint(
    path: Path, data: Mapping[str, Any]
) -> tuple[nn.Module, dict[str, Any]]:
    """A checkpoint written by the training engine -> (network, model card). ``data`` (the file's
    payload, read once by :func:`igfiqa.inference.kinds.open_model_file`) passes the one
    checkpoint rule, :func:`igfiqa.checkpoint.check_checkpoint_payload`, as for resuming."""
    where = str(path)
    checkpoint.check_checkpoint_payload(data, where=where)
    spec = data.get("model_spec")
    if not isinstance(spec, Mapping) or "name" not in spec:
        raise CheckpointError(f"{where}: checkpoint has no model_spec dict with a name")
    state = clean_state_dict(data.get("model"), where=f"{where} ['model']")
    spec = dict(spec)
    spec["quality_head"] = "qs.weight" in state
    network = _load_shape_checked(spec, state, where)
    card = make_model_card(
        {**spec, "input_size": network.input_size, "num_features": network.num_features},
        has_quality_head=network.has_quality_head,
        training=training_description(data),
        source={
            "kind": "training checkpoint",
            "file": path.name,
            "epoch": data.get("epoch"),
            "step": data.get("step"),
            "igfiqa_version": data.get("igfiqa_version"),
        },
    )
    return network, card


def training_description(data: Mapping[str, Any]) -> dict[str, Any]:
    """What the model card says about training: the resolved config and the number of classes."""
    config = data.get("config")
    description: dict[str, Any] = {}
    if isinstance(config, Mapping):
        for key in ("data", "dataset", "method", "name", "preset"):
            if key in config:
                description[key] = config[key]
        description["config"] = config
    names = data.get("class_names")
    if isinstance(names, (list, tuple)):
        description["num_classes"] = len(names)
    return description


def load_safetensors_export(
    weights: Path, card_path: Path | None, *, sha256: str | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    """An exported model: safetensors weights plus its model card (embedded or beside the file).

    A card beside the weights that lists their SHA-256 must match them (``sha256``: the weights'
    digest where the caller has it), so a folder mixing two exports is refused."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(str(weights), framework="pt") as handle:
            metadata = handle.metadata() or {}
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(
            f"{weights} is not a readable safetensors file: {error}; {EXPECTED}"
        ) from error
    if card_path is not None:
        card = read_card(card_path, verify=())
        if card_path.parent == weights.parent:
            known = {weights.name: sha256} if sha256 else None
            verify_card_files(card, card_path, names=(weights.name,), known=known)
    elif SAFETENSORS_CARD_KEY in metadata:
        where = f"{weights} (embedded model card)"
        card = validate_card(
            parse_card_json(metadata[SAFETENSORS_CARD_KEY], where=where), where=where
        )
    else:
        raise CheckpointError(
            f"{weights} has no model card: expected {weights.with_suffix('.json').name} or {CARD_FILE} "
            f"beside it, or one embedded in the safetensors metadata (written by `igfiqa export`)"
        )
    spec = dict(card["model_spec"])
    kind = str(spec.pop("kind", "igfiqa"))
    if kind.strip().lower() not in ("igfiqa", "crfiqa", "arcface"):  # its own architecture
        from igfiqa.inference.kinds.common import build_checked

        network = build_checked(kind, {**spec, "kind": kind}, state, str(weights))
        return network, card
    spec["quality_head"] = "qs.weight" in state
    network = _load_shape_checked(spec, clean_state_dict(state, where=str(weights)), str(weights))
    return network, card


def check_finite_weights(network: nn.Module, *, where: str) -> None:
    """Refuse a network whose parameters or buffers hold NaN or infinity (a training run that
    diverged): it would score NaN for every image.

    A tensor's sum is NaN or infinite whenever one of its elements is; summing (one pass, nothing
    allocated) is ~10x faster than ``isfinite(t).all()``, which is asked only for a tensor whose
    sum is not finite (finite values may overflow)."""
    tensors = (*network.named_parameters(), *network.named_buffers())
    for name, tensor in tensors:
        if not tensor.is_floating_point() or bool(torch.isfinite(tensor.sum())):
            continue
        if not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(
                f"{where} holds NaN/inf weights (tensor {name}); it cannot score: retrain with a "
                "lower learning rate"
            )


def latest_training_checkpoint(folder: Path) -> Path | None:
    """The newest ``step_*.pt`` of a training run folder (or its ``checkpoints/``), if any."""
    for candidate in (folder, folder / "checkpoints"):
        found = checkpoint.latest_checkpoint(candidate)
        if found is not None:
            return found
    return None


def load_network(
    path: str | Path,
    *,
    kind: str | None = None,
    sha256: str | None = None,
    options: str | Mapping[str, Any] | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Any supported torch model file or export directory -> (network in eval mode on CPU, model
    card); the kind is recognised from the file or named (:mod:`igfiqa.inference.kinds`)."""
    from igfiqa.inference.kinds import load_kind

    loaded = load_kind(path, kind=kind, sha256=sha256, options=options)
    if loaded.network is None:
        raise CheckpointError(
            f"{path} is a {loaded.kind} model that runs in onnxruntime, not torch: score or "
            "evaluate it (igfiqa score / evaluate); export needs torch weights"
        )
    return loaded.network, loaded.card


__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "build_network",
    "check_finite_weights",
    "clean_state_dict",
    "infer_model_spec",
    "load_network",
    "read_torch_file",
    "training_description",
]
