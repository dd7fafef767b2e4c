"""``export_model``: a trained model -> safetensors weights + JSON model card (+ ONNX).

The card records the architecture, input convention, alignment template, training data, code version
and a score calibration learned from the raw-score distribution of a reference set (a folder or list
of aligned face crops, or a ``synthetic:...`` spec of the project's synthetic faces).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from igfiqa.errors import CheckpointError, ConfigError, DataError
from igfiqa.files import atomic_output, json_safe
from igfiqa.inference.calibration import ScoreCalibration
from igfiqa.inference.card import (
    CARD_FILE,
    ONNX_FILE,
    SAFETENSORS_CARD_KEY,
    WEIGHTS_FILE,
    write_card,
)
from igfiqa.inference.loading import load_network
from igfiqa.inference.model import QualityModel
from igfiqa.inference.runners import TorchRunner
from igfiqa.progress import ProgressBar

ONNX_OPSET = 18
DEFAULT_REFERENCE = "synthetic:identities=64,samples=8,seed=12345"
"""Reference set used when none is given: 512 synthetic faces. Pass real aligned crops for a
calibration that means something for real photos."""


def reference_images(source: str, input_size: int) -> tuple[list[Any], dict[str, Any]]:
    """The images of a reference set and a description of it for the model card.

    ``source`` is a ``synthetic:key=value,...`` spec (image size defaults to the model's), a folder
    (recursive) or a ``.txt``/``.lst`` list file of aligned crops.
    """
    if source.strip().lower().startswith("synthetic"):
        from igfiqa.data.synthetic import synthetic_from_spec

        spec = source if "image_size" in source else f"{source.rstrip(',')},image_size={input_size}"
        if ":" not in spec:
            spec = spec.replace("synthetic,", "synthetic:", 1)
        faces = synthetic_from_spec(spec)
        images = [faces.render(*faces.locate(index))[0] for index in range(len(faces))]
        return images, {"source": spec, "kind": "synthetic faces (igfiqa.data.synthetic)"}
    from igfiqa.inference.scorer import collect_inputs

    path = Path(source)
    if not path.exists():
        raise ConfigError(
            f"reference set {source} does not exist: give a folder or list file of aligned face "
            f"crops, or a synthetic spec such as {DEFAULT_REFERENCE!r}"
        )
    items = collect_inputs([source])
    if not items:
        raise ConfigError(f"reference set {source} holds no image files")
    return [item.path for item in items], {"source": str(source), "kind": "image files"}


def learn_calibration(
    model: QualityModel,
    source: str,
    *,
    batch_size: int = 64,
    resize: bool = False,
    progress: bool = False,
) -> ScoreCalibration:
    """Score the reference set ``source`` with ``model`` and fit the 0..100 calibration to it.

    Reference images that cannot be decoded or have the wrong size are left out (and counted).
    """
    images, description = reference_images(source, model.input_size)
    prepared, failures = [], 0
    bar = ProgressBar("calibrate: read", len(images), enabled=progress)
    with bar:
        for done, image in enumerate(images, start=1):
            try:
                prepared.append(model.prepare(image, resize=resize))
            except DataError:
                failures += 1
            bar.update(done)
    if len(prepared) < 2:
        raise DataError(
            f"reference set {source}: only {len(prepared)} of {len(images)} images are usable "
            f"{model.input_size}x{model.input_size} crops; need at least 2 (try --resize)"
        )
    stacked = np.stack(prepared)
    scores = []
    with ProgressBar("calibrate: score", len(stacked), enabled=progress) as bar:
        for start in range(0, len(stacked), batch_size):
            scores.append(model.score(stacked[start : start + batch_size], workers=0))
            bar.update(min(start + batch_size, len(stacked)))
    scores = np.concatenate(scores)
    description.update({"images_left_out": failures})
    return ScoreCalibration.fit(scores, reference=description)


ONNX_MIN_TORCH = (2, 7)
"""Oldest torch whose dynamo exporter converts the backbone (2.5 and 2.6 fail on BatchNorm)."""


def check_onnx_exporter(torch_version: str) -> None:
    """Raise :class:`ConfigError` when ``torch_version`` is older than :data:`ONNX_MIN_TORCH`."""
    release = torch_version.split("+")[0].split(".")
    try:
        found = (int(release[0]), int(release[1]))
    except (IndexError, ValueError):
        return  # an unusual local build: let the exporter itself decide
    if found < ONNX_MIN_TORCH:
        need = ".".join(map(str, ONNX_MIN_TORCH))
        raise ConfigError(
            f"ONNX export needs torch >= {need} (its dynamo exporter fails on BatchNorm in older "
            f"releases); this is torch {torch_version}: pip install 'igfiqa[onnx]' upgrades it, or "
            "export without --onnx"
        )


class _ScoringOutputs(nn.Module):
    """``(embedding, quality (B, 1))`` or the embedding of any scoring network, for the exporter."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> Any:
        embedding, quality = self.network.embed_and_quality(x)
        return embedding if quality is None else (embedding, quality[:, None])


def export_onnx(network: nn.Module, path: Path, *, opset: int = ONNX_OPSET) -> dict[str, Any]:
    """Write ``network`` (CPU, float32, eval) to ONNX with a dynamic batch axis and check it.

    Input ``image`` (B, 3, S, S) float32 in [-1, 1]; outputs ``embedding`` (B, F) and, with a
    quality head, ``quality`` (B, 1).
    """
    check_onnx_exporter(torch.__version__)
    import onnx

    try:
        import onnxscript  # noqa: F401  (the dynamo exporter translates through it)
    except ImportError as error:
        raise ConfigError(
            "ONNX export needs onnx and onnxscript: pip install 'igfiqa[onnx]'"
        ) from error
    size = int(network.input_size)
    outputs = ["embedding", "quality"] if network.has_quality_head else ["embedding"]
    example = torch.zeros(2, 3, size, size)
    batch = torch.export.Dim("batch", min=1, max=65536)
    exporter_log = logging.getLogger("torch.onnx")  # notes about unused torchvision operators
    level = exporter_log.level
    exporter_log.setLevel(logging.ERROR)
    with atomic_output(path, private=False) as temporary:
        try:
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                warnings.simplefilter("ignore")
                # torch's dynamo-based exporter (the TorchScript-based one is deprecated)
                torch.onnx.export(
                    _ScoringOutputs(network),
                    (example,),
                    str(temporary),
                    dynamo=True,
                    input_names=["image"],
                    output_names=outputs,
                    dynamic_shapes=({0: batch},),
                    opset_version=opset,
                    verbose=False,
                )
        finally:
            exporter_log.setLevel(level)
        onnx.checker.check_model(onnx.load(str(temporary)), full_check=True)
    return {
        "file": path.name,
        "opset": opset,
        "input": {"name": "image", "shape": ["batch", 3, size, size], "dtype": "float32"},
        "outputs": {
            name: ["batch", int(network.num_features) if name == "embedding" else 1]
            for name in outputs
        },
        "checked_with": f"onnx.checker (onnx {onnx.__version__})",
    }


def _verify_onnx(onnx_path: Path, network: nn.Module) -> float:
    """Largest |quality_onnx - quality_torch| on a random batch (raises if above 1e-3)."""
    from igfiqa.inference.runners import OnnxRunner

    size = int(network.input_size)
    batch = np.random.default_rng(0).uniform(-1, 1, (3, 3, size, size)).astype(np.float32)
    onnx_embedding, onnx_quality = OnnxRunner(onnx_path)(batch)
    with torch.inference_mode():
        torch_embedding, torch_quality = network.embed_and_quality(torch.from_numpy(batch))
    torch_quality = None if torch_quality is None else torch_quality[:, None]
    gap = float(
        np.abs(onnx_embedding - torch_embedding.numpy()).max()
        / (np.abs(torch_embedding.numpy()).max() + 1e-12)
    )
    if torch_quality is not None:
        gap = max(gap, float(np.abs(onnx_quality - torch_quality[:, 0].numpy()).max()))
    if gap > 1e-3:
        raise CheckpointError(f"ONNX export {onnx_path} disagrees with PyTorch (gap {gap:.2e})")
    return gap


def export_model(
    checkpoint: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    kind: str | None = None,
    sha256: str | None = None,
    options: str | Mapping[str, Any] | None = None,
    onnx: bool = False,
    reference: str | None = DEFAULT_REFERENCE,
    expected_fnmr: Any = None,
    reference_resize: bool = False,
    overwrite: bool = False,
    opset: int = ONNX_OPSET,
    progress: bool = False,
) -> dict[str, Any]:
    """Export ``checkpoint`` (any torch model :func:`load_model` reads; ``kind``, ``sha256`` and
    ``options`` as there) into ``out_dir``; return the card.

    Writes ``model.safetensors`` (weights; the card is also embedded in its metadata),
    ``model_card.json`` and with ``onnx`` ``model.onnx``. ``reference=None`` skips the percentile
    calibration; ``expected_fnmr`` (an :class:`~igfiqa.inference.expected_fnmr.ExpectedFnmr` or
    its dict, from ``igfiqa calibrate``) goes into the card as ``expected_fnmr``.
    """
    from safetensors.torch import save_file

    out = Path(out_dir)
    targets = [out / WEIGHTS_FILE, out / CARD_FILE, out / ONNX_FILE]
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a directory")
    if not overwrite and any(target.exists() for target in targets):
        raise ConfigError(f"{out} already holds an exported model; pass --overwrite to replace it")
    network, card = load_network(checkpoint, kind=kind, sha256=sha256, options=options)
    network = network.float().eval()
    source = dict(card.get("source") or {})
    source["file"] = str(Path(checkpoint).name)
    card["source"] = source

    if reference is not None and network.has_quality_head:
        model = QualityModel(TorchRunner(network), card, source=checkpoint)
        card["calibration"] = learn_calibration(
            model, reference, resize=reference_resize, progress=progress
        ).to_dict()
    else:
        card["calibration"] = None
    if expected_fnmr is not None:
        from igfiqa.inference.expected_fnmr import ExpectedFnmr

        if not isinstance(expected_fnmr, ExpectedFnmr):
            expected_fnmr = ExpectedFnmr.from_dict(expected_fnmr)
        card["expected_fnmr"] = expected_fnmr.to_dict()

    out.mkdir(parents=True, exist_ok=True)
    if onnx:
        onnx_info = export_onnx(network, out / ONNX_FILE, opset=opset)
        onnx_info["max_abs_difference_to_torch"] = _verify_onnx(out / ONNX_FILE, network)
        card["onnx"] = onnx_info
    else:
        card["onnx"] = None
        (out / ONNX_FILE).unlink(missing_ok=True)
    card["files"] = {
        "weights": WEIGHTS_FILE,
        "card": CARD_FILE,
        "onnx": ONNX_FILE if onnx else None,
    }
    card = json_safe(card)

    state = {
        key: value.detach().contiguous().clone() for key, value in network.state_dict().items()
    }
    with atomic_output(out / WEIGHTS_FILE, private=False) as temporary:
        save_file(
            state,
            str(temporary),
            metadata={"format": "igfiqa.export", SAFETENSORS_CARD_KEY: json.dumps(card)},
        )
    write_card(card, out / CARD_FILE)
    return card


def describe_export(card: Mapping[str, Any]) -> str:
    """One-paragraph human summary of an export (for the CLI)."""
    spec = card["model_spec"]
    calibration = card.get("calibration")
    kind = spec.get("kind", "igfiqa")
    text = (
        f"{kind} {spec['name']} (width {spec.get('width', 1.0)}, {spec['num_features']}-d "
        f"embedding, input {spec['input_size']}x{spec['input_size']} RGB)"
    )
    if calibration:
        ref = calibration["reference"]
        text += f"; calibrated on {ref.get('num_images')} images of {ref.get('source')}"
    if card.get("onnx"):
        text += f"; ONNX opset {card['onnx']['opset']}"
    return text


__all__ = [
    "DEFAULT_REFERENCE",
    "ONNX_OPSET",
    "describe_export",
    "export_model",
    "export_onnx",
    "learn_calibration",
]
