"""``export_model``: a trained model -> safetensors weights + JSON model card (+ ONNX).

The card records the architecture, input convention, alignment template, training data, code version
and a score calibration learned from the raw-score distribution of a reference set (a folder or list
of aligned face crops, or a ``synthetic:...`` spec of the project's synthetic faces).
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import logging
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from igfiqa.errors import CheckpointError, ConfigError, DataError
from igfiqa.files import (
    FolderLock,
    file_sha256,
    fsync_dir,
    json_safe,
    output_error,
    remove_stale_temp_files,
    writing,
)
from igfiqa.inference.calibration import ScoreCalibration
from igfiqa.inference.card import (
    CARD_FILE,
    ONNX_FILE,
    SAFETENSORS_CARD_KEY,
    WEIGHTS_FILE,
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


ONNX_SINGLE_FILE_BYTES = 3 * 512 * 1024 * 1024
"""Largest network written as one self-contained ``model.onnx`` (1.5 GiB, torch's own threshold;
protobuf caps a file at 2 GiB). A larger one keeps its weights in ``model.onnx.<sha256>.data``
beside the graph: a name of its own per content, so that graph and weights are replaced as a pair
(the old graph keeps its old weights file until the new graph is in place)."""
STAGE_PREFIX = ".igfiqa-export."
"""Hidden folder inside ``--out`` where an export is written before it replaces the old one."""


def _onnx_ir() -> Any:
    try:
        import onnx_ir
    except ImportError:  # older onnxscript releases ship it as onnxscript.ir
        from onnxscript import ir as onnx_ir
    return onnx_ir


def check_onnx_export_available() -> None:
    """Raise :class:`ConfigError` unless this torch, onnx and onnxscript can export to ONNX."""
    check_onnx_exporter(torch.__version__)
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401  (the dynamo exporter translates through it)
    except ImportError as error:
        raise ConfigError(
            "ONNX export needs onnx and onnxscript: pip install 'igfiqa[onnx]'"
        ) from error


def _onnx_program(network: nn.Module, opset: int) -> Any:
    """torch's dynamo-based export of ``network`` to an in-memory ONNX program."""
    check_onnx_export_available()
    size = int(network.input_size)
    outputs = ["embedding", "quality"] if network.has_quality_head else ["embedding"]
    example = torch.zeros(2, 3, size, size)
    batch = torch.export.Dim("batch", min=1, max=65536)
    exporter_log = logging.getLogger("torch.onnx")  # notes about unused torchvision operators
    level = exporter_log.level
    exporter_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            # torch's dynamo-based exporter (the TorchScript-based one is deprecated)
            return torch.onnx.export(
                _ScoringOutputs(network),
                (example,),
                None,
                dynamo=True,
                input_names=["image"],
                output_names=outputs,
                dynamic_shapes=({0: batch},),
                opset_version=opset,
                verbose=False,
            )
    finally:
        exporter_log.setLevel(level)


def _save_onnx_graph(program: Any, folder: Path, *, external: bool) -> dict[str, str]:
    """Save ``program`` as ``folder/model.onnx``, self-contained, or with its weights in one file
    ``model.onnx.<sha256[:16]>.data`` beside it; return file name -> SHA-256 of what was written."""
    import onnx
    from onnx.external_data_helper import uses_external_data

    ir = _onnx_ir()
    graph = folder / ONNX_FILE
    if not external:
        ir.save(program.model, graph)
        return {ONNX_FILE: file_sha256(graph)}
    scratch = "weights.data"
    ir.save(program.model, graph, external_data=scratch)
    digest = file_sha256(folder / scratch)
    name = f"{ONNX_FILE}.{digest[:16]}.data"
    os.replace(folder / scratch, folder / name)
    proto = onnx.load(str(graph), load_external_data=False)
    for tensor in proto.graph.initializer:
        if uses_external_data(tensor):
            for entry in tensor.external_data:
                if entry.key == "location":
                    entry.value = name
    graph.write_bytes(proto.SerializeToString())
    return {ONNX_FILE: file_sha256(graph), name: digest}


def _network_bytes(network: nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in network.state_dict().values())


def stage_onnx(
    network: nn.Module,
    folder: Path,
    *,
    opset: int = ONNX_OPSET,
    external_data_over: int = ONNX_SINGLE_FILE_BYTES,
    target: Path | None = None,
) -> tuple[dict[str, Any], dict[str, str]]:
    """Write ``network`` (CPU, float32, eval) to ``folder/model.onnx`` with a dynamic batch axis,
    check it with onnx's checker and against torch; return (the card's ``onnx`` entry, file name
    -> SHA-256 of the files written).

    Input ``image`` (B, 3, S, S) float32 in [-1, 1]; outputs ``embedding`` (B, F) and, with a
    quality head, ``quality`` (B, 1). Networks over ``external_data_over`` bytes keep their
    weights in an external data file (:data:`ONNX_SINGLE_FILE_BYTES`). Errors on output name
    ``target`` (where the graph will go) or else the file written.
    """
    import onnx

    program = _onnx_program(network, opset)
    external = _network_bytes(network) > external_data_over
    with writing(target or folder / ONNX_FILE, name_error_file=False):
        hashes = _save_onnx_graph(program, folder, external=external)
    del program
    onnx.checker.check_model(str(folder / ONNX_FILE), full_check=True)
    gap = _verify_onnx(folder / ONNX_FILE, network)
    size = int(network.input_size)
    outputs = ["embedding", "quality"] if network.has_quality_head else ["embedding"]
    info = {
        "file": ONNX_FILE,
        "external_data": next((name for name in hashes if name != ONNX_FILE), None),
        "opset": opset,
        "input": {"name": "image", "shape": ["batch", 3, size, size], "dtype": "float32"},
        "outputs": {
            name: ["batch", int(network.num_features) if name == "embedding" else 1]
            for name in outputs
        },
        "checked_with": f"onnx.checker (onnx {onnx.__version__})",
        "max_abs_difference_to_torch": gap,
    }
    return info, hashes


@contextlib.contextmanager
def _staging(folder: Path) -> Iterator[Path]:
    """A fresh hidden folder inside ``folder`` (same file system: its files can be renamed into
    place), removed afterwards whatever happens."""
    with writing(folder, "write into this folder", name_error_file=False):
        stage = Path(tempfile.mkdtemp(prefix=STAGE_PREFIX, suffix=".tmp", dir=folder))
    try:
        yield stage
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _finish_files(paths: list[Path]) -> None:
    """Give staged files the usual mode (0666 & ~umask; some writers create them 0600) and
    flush them to disk before they are renamed into place."""
    umask = os.umask(0)
    os.umask(umask)
    for path in paths:
        os.chmod(path, 0o666 & ~umask)
        with path.open("rb+") as handle:
            os.fsync(handle.fileno())


def _remove_onnx_leftovers(folder: Path, keep: set[str]) -> None:
    """Remove ONNX weight files that no graph in ``folder`` refers to any more: those of earlier
    exports, and the hidden ``.model.onnx.*.tmp.data`` that earlier igfiqa versions left behind."""
    for pattern in (f"{ONNX_FILE}.*.data", f".{ONNX_FILE}.*.tmp.data"):
        for path in folder.glob(pattern):
            if path.name not in keep and path.is_file() and not path.is_symlink():
                path.unlink(missing_ok=True)


def export_onnx(
    network: nn.Module,
    path: Path,
    *,
    opset: int = ONNX_OPSET,
    external_data_over: int = ONNX_SINGLE_FILE_BYTES,
) -> dict[str, Any]:
    """Write ``network`` to ``path`` (:func:`stage_onnx`), replacing graph and external weights as
    a pair; return the card's ``onnx`` entry (``sha256``: file name -> digest)."""
    path = Path(path)
    with writing(path.parent, "create this folder", name_error_file=False):
        path.parent.mkdir(parents=True, exist_ok=True)
    with _staging(path.parent) as stage:
        info, hashes = stage_onnx(
            network, stage, opset=opset, external_data_over=external_data_over, target=path
        )
        with writing(path, name_error_file=False):
            _finish_files([stage / name for name in hashes])
            data = info["external_data"]
            if data:
                os.replace(stage / data, path.parent / data)
            os.replace(stage / ONNX_FILE, path)
            fsync_dir(path.parent)
            if path.name == ONNX_FILE:
                _remove_onnx_leftovers(path.parent, keep={data} if data else set())
    info["file"] = path.name
    info["sha256"] = {path.name if name == ONNX_FILE else name: d for name, d in hashes.items()}
    return info


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


def _save_safetensors(
    state: dict[str, torch.Tensor], path: Path, metadata: dict[str, str], target: Path
) -> None:
    """``safetensors.torch.save_file`` whose I/O errors (it reports them as SafetensorError with
    the OS error number in the text) become an :class:`OutputError` naming ``target``."""
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    try:
        save_file(state, str(path), metadata=metadata)
    except SafetensorError as error:
        found = re.search(r"os error (\d+)", str(error))
        code = int(found.group(1)) if found else errno.EIO
        raise output_error(target, OSError(code, os.strerror(code))) from None


def _refuse_existing(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a directory")
    targets = [out / WEIGHTS_FILE, out / CARD_FILE, out / ONNX_FILE]
    if not overwrite and any(target.exists() or target.is_symlink() for target in targets):
        raise ConfigError(f"{out} already holds an exported model; pass --overwrite to replace it")


def _clear_stale_stages(out: Path) -> None:
    """Staging folders and temporary files of exports that were killed (call under the lock)."""
    remove_stale_temp_files(out)
    for stage in out.glob(f"{STAGE_PREFIX}*.tmp"):
        if stage.is_dir() and not stage.is_symlink():
            shutil.rmtree(stage, ignore_errors=True)


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
    onnx_external_data_over: int = ONNX_SINGLE_FILE_BYTES,
) -> dict[str, Any]:
    """Export ``checkpoint`` (any torch model :func:`load_model` reads; ``kind``, ``sha256`` and
    ``options`` as there) into ``out_dir``; return the card.

    Writes ``model.safetensors`` (weights; the card is also embedded in its metadata),
    ``model_card.json`` and with ``onnx`` ``model.onnx`` (self-contained; a network over
    ``onnx_external_data_over`` bytes keeps its weights in ``model.onnx.<sha256>.data``). The card
    lists every file with its SHA-256. ``reference=None`` skips the percentile calibration;
    ``expected_fnmr`` (an :class:`~igfiqa.inference.expected_fnmr.ExpectedFnmr` or its dict, from
    ``igfiqa calibrate``) goes into the card as ``expected_fnmr``.

    Everything is written into a hidden staging folder inside ``out_dir`` first and then renamed
    into place, ONNX first and the card last, under the folder's lock: an export that fails (a
    full disk, no permission, Ctrl-C) leaves the old export as it was, and the file hashes in the
    card make a folder that was interrupted between two renames refuse to load instead of
    loading one export's weights with another's card. Refuses a model with NaN/inf weights.
    """
    out = Path(out_dir)
    _refuse_existing(out, overwrite)
    if onnx:
        check_onnx_export_available()  # before anything slow is done
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

    created = not out.exists()
    with writing(out, "create the export folder", name_error_file=False):
        out.mkdir(parents=True, exist_ok=True)
    try:
        with writing(out, "write into this folder", name_error_file=False):
            lock = FolderLock(out, "export folder").acquire()
        try:
            _refuse_existing(out, overwrite)  # again: now no other export can write here
            _clear_stale_stages(out)
            with _staging(out) as stage:
                card = _write_export(
                    network, card, out, stage, onnx, opset, onnx_external_data_over
                )
        finally:
            lock.release()
    except BaseException:
        if created:  # leave no empty folder behind
            with contextlib.suppress(OSError):
                out.rmdir()
        raise
    return card


def _write_export(
    network: nn.Module,
    card: dict[str, Any],
    out: Path,
    stage: Path,
    onnx: bool,
    opset: int,
    external_data_over: int,
) -> dict[str, Any]:
    """Write the export into ``stage``, then rename it into ``out`` (see :func:`export_model`)."""
    hashes: dict[str, str] = {}
    if onnx:
        card["onnx"], hashes = stage_onnx(
            network, stage, opset=opset, external_data_over=external_data_over,
            target=out / ONNX_FILE,
        )  # fmt: skip
    else:
        card["onnx"] = None
    data = card["onnx"]["external_data"] if onnx else None
    card["files"] = {
        "weights": WEIGHTS_FILE,
        "card": CARD_FILE,
        "onnx": ONNX_FILE if onnx else None,
        "onnx_data": data,
    }
    card = json_safe(card)
    state = {
        key: value.detach().contiguous().clone() for key, value in network.state_dict().items()
    }
    embedded = {"format": "igfiqa.export", SAFETENSORS_CARD_KEY: json.dumps(card)}
    _save_safetensors(state, stage / WEIGHTS_FILE, embedded, out / WEIGHTS_FILE)
    del state
    with writing(out / CARD_FILE, name_error_file=False):
        hashes[WEIGHTS_FILE] = file_sha256(stage / WEIGHTS_FILE)
        card["files"]["sha256"] = dict(sorted(hashes.items()))
        (stage / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
        _finish_files([stage / name for name in (*hashes, CARD_FILE)])
    # Commit: each rename is atomic; the card, which lists the hashes, goes last.
    with writing(out, "replace the export", name_error_file=False):
        if data:
            os.replace(stage / data, out / data)  # a new name: the old graph keeps its weights
        if onnx:
            os.replace(stage / ONNX_FILE, out / ONNX_FILE)
        elif (out / ONNX_FILE).exists() or (out / ONNX_FILE).is_symlink():
            (out / ONNX_FILE).unlink()
        os.replace(stage / WEIGHTS_FILE, out / WEIGHTS_FILE)
        os.replace(stage / CARD_FILE, out / CARD_FILE)
        fsync_dir(out)
        _remove_onnx_leftovers(out, keep={data} if data else set())
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
    "ONNX_SINGLE_FILE_BYTES",
    "check_onnx_export_available",
    "describe_export",
    "export_model",
    "export_onnx",
    "learn_calibration",
    "stage_onnx",
]
