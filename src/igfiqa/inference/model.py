"""The inference API: ``load_model(path)`` -> :class:`QualityModel` with ``score`` / ``embed``.

Quality = R(f(x)) for aligned face crops (docs/scoring.md, "What the score is"); the embedding f(x) comes for free and is a
usable face recognition template. Works on CPU or GPU, in float32 or bfloat16, with PyTorch or (for an
export with ``model.onnx``) onnxruntime.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from igfiqa.data.pixels import NORMALISATION_MEAN, NORMALISATION_STD, normalise_batch
from igfiqa.detection import DEFAULT_MAX_SIDE
from igfiqa.errors import CheckpointError, DataError
from igfiqa.inference.calibration import ScoreCalibration
from igfiqa.inference.card import CARD_FILE, ONNX_FILE, find_card_for, read_card
from igfiqa.inference.expected_fnmr import ExpectedFnmr
from igfiqa.inference.pipeline import batched, ordered_map
from igfiqa.inference.preprocess import as_image_list, fit_to_size, to_rgb_array


@dataclass(frozen=True)
class ScoredFace:
    """A face found in a photograph and scored: ``index`` (0 = largest), ``box`` (x1, y1, x2, y2),
    detector ``confidence``, five ``landmarks`` (5, 2) in pixels of the photograph, ``quality``."""

    index: int
    box: np.ndarray
    confidence: float
    landmarks: np.ndarray
    quality: float


class QualityModel:
    """A loaded face image quality model.

    ``score(images)`` -> raw quality scores (N,), ``embed(images)`` -> embeddings (N, F),
    ``score_and_embed(images)`` -> both. ``images`` is one image or a list of them: file paths, encoded
    bytes, PIL images or uint8 RGB arrays (H, W, 3) (a uint8 (N, H, W, 3) array counts as N images);
    or a torch tensor (N, 3, H, W) or (3, H, W) of RGB images, uint8 0..255 or float in [0, 1] (as
    torchvision's ``ToTensor`` gives), on any device. Images must be aligned crops of ``input_size``
    x ``input_size`` unless ``resize=True`` (tensors: area interpolation to shrink, bilinear to
    enlarge). With ``detect=True`` (``score``) or :meth:`score_faces` the images are ordinary
    photographs: faces are found (MTCNN, ``pip install "igfiqa[detect]"``), aligned and scored.
    """

    def __init__(
        self, runner: Any, card: dict[str, Any], *, source: str | os.PathLike[str]
    ) -> None:
        self.runner = runner
        self.card = card
        self.source = str(source)
        spec = card["model_spec"]
        self.input_size = int(spec["input_size"])
        self.num_features = int(spec["num_features"])
        self.calibration = self._card_calibration(
            "calibration", ScoreCalibration.from_dict,
            "calibrate the model again (igfiqa export --reference IMAGES) or remove the "
            "calibration from its model card",
        )  # fmt: skip
        self.fnmr_calibration = self._card_calibration(
            "expected_fnmr", ExpectedFnmr.from_dict,
            "calibrate the model again (igfiqa calibrate) or remove `expected_fnmr` from its "
            "model card",
        )  # fmt: skip

    def _card_calibration(self, key: str, reader: Any, remedy: str) -> Any:
        """The card's calibration under ``key`` read by ``reader`` (None when absent)."""
        data = self.card.get(key)
        try:
            return reader(data) if data else None
        except CheckpointError as error:
            raise CheckpointError(f"{self.source}: {error}; {remedy}") from None

    # -- properties -------------------------------------------------------------------------------
    @property
    def alignment_template(self) -> np.ndarray | None:
        """The card's five-point template (5, 2) in pixels of the input crop when it is not the
        ArcFace template scaled to the input size (OFIQ's), else None."""
        from igfiqa.inference.card import alignment_template

        alignment = self.card.get("alignment") or {}
        template = alignment.get("template")
        if template is None:
            return None
        points = np.asarray(template, dtype=np.float64)
        if points.shape != (5, 2) or not np.isfinite(points).all():
            raise CheckpointError(
                f"{self.source}: the model card's alignment template is not 5 points"
            )
        standard = np.asarray(alignment_template(self.input_size))
        return None if np.allclose(points, standard, atol=1e-6) else points

    @property
    def has_quality_head(self) -> bool:
        """Whether the model predicts quality (False for embedding-only FR backbones)."""
        return bool(self.runner.has_quality_head)

    @property
    def backend(self) -> str:
        return str(self.runner.backend)

    @property
    def device(self) -> str:
        return str(self.runner.device)

    @property
    def dtype(self) -> str:
        return str(self.runner.dtype)

    @property
    def network(self) -> Any:
        """The loaded ``torch.nn.Module`` (torch backend only; eval mode, on ``device`` in ``dtype``).

        Scoring runs a copy of it whose BatchNorms are folded into the neighbouring layers.
        """
        network = getattr(self.runner, "network", None)
        if network is None:
            raise AttributeError("the onnx backend has no torch network")
        return network

    def fingerprint(self) -> str:
        """A digest of what decides this model's outputs: the bytes of its file(s) (every file of
        an export folder) and its model card (calibrations included). Equal fingerprints, equal
        scores; outputs record it so that a resumed run cannot mix two models."""
        from igfiqa.files import content_digest, file_sha256, json_safe

        source = Path(self.source)
        files = sorted(p for p in source.iterdir() if p.is_file()) if source.is_dir() else [source]
        hashes = [
            f"{p.name}:{file_sha256(p)}" if source.is_dir() else file_sha256(p) for p in files
        ]
        card = json.dumps(json_safe(self.card), sort_keys=True)
        return content_digest(*hashes, card)

    def __repr__(self) -> str:
        name = self.card["model_spec"]["name"]
        return (
            f"QualityModel({name}, input {self.input_size}x{self.input_size}, "
            f"{self.num_features}-d embedding, quality head {self.has_quality_head}, "
            f"{self.backend} on {self.device} in {self.dtype}, from {self.source})"
        )

    # -- running ------------------------------------------------------------------------------------
    def prepare(self, image: Any, *, resize: bool = False, name: str | None = None) -> np.ndarray:
        """One image -> RGB uint8 (S, S, 3), decoded by the project decoder and size-checked."""
        label = name or (str(image) if isinstance(image, (str, os.PathLike)) else "image")
        array = to_rgb_array(image, name=name)
        return fit_to_size(array, self.input_size, resize=resize, name=label)

    def forward_batch(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Run the network on a prepared float32 batch (B, 3, S, S) in [-1, 1].

        Returns ``(embedding (B, F) float32, quality (B,) float32 or None)``.
        """
        if batch.ndim != 4 or batch.shape[1:] != (3, self.input_size, self.input_size):
            raise CheckpointError(
                f"batch of shape {batch.shape} does not fit the model input "
                f"(B, 3, {self.input_size}, {self.input_size})"
            )
        return self.runner(batch)

    def _tensor_batches(self, images: Any, batch_size: int, resize: bool) -> Any:
        """Model input batches (B, 3, S, S) float32 in [-1, 1] from a torch tensor of RGB images."""
        import torch
        import torch.nn.functional as F

        x = images.detach()
        if x.ndim == 3:
            x = x.unsqueeze(0)
        if x.ndim != 4 or x.shape[1] != 3:
            raise DataError(
                f"a tensor of images must be (N, 3, H, W) or (3, H, W) RGB, got {tuple(x.shape)}"
            )
        if x.dtype == torch.uint8:
            x = x.float() / 255.0
        elif x.is_floating_point():
            x = x.float()
            if x.numel() and (not torch.isfinite(x).all() or x.min() < -1e-6 or x.max() > 1 + 1e-6):
                raise DataError(
                    "a float tensor of images must hold RGB values in [0, 1] (as torchvision's "
                    "ToTensor gives); scale it, or pass uint8 values 0..255"
                )
        else:
            raise DataError(f"a tensor of images must be uint8 or floating point, got {x.dtype}")
        size = self.input_size
        if tuple(x.shape[2:]) != (size, size) and not resize:
            raise DataError(
                f"tensor images are {x.shape[3]}x{x.shape[2]} but the model expects {size}x{size} "
                "aligned crops; align them first or pass resize=True"
            )
        for start in range(0, x.shape[0], batch_size):
            chunk = x[start : start + batch_size].cpu()
            if tuple(chunk.shape[2:]) != (size, size):
                shrink = chunk.shape[2] > size or chunk.shape[3] > size
                mode = "area" if shrink else "bilinear"
                extra = {} if shrink else {"align_corners": False}
                chunk = F.interpolate(chunk, size=(size, size), mode=mode, **extra)
            mean = torch.tensor(NORMALISATION_MEAN).view(1, 3, 1, 1)
            std = torch.tensor(NORMALISATION_STD).view(1, 3, 1, 1)
            yield ((chunk - mean) / std).numpy().astype(np.float32, copy=False)

    def _run(
        self, images: Any, *, batch_size: int, resize: bool, workers: int | None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        if batch_size < 1:
            raise CheckpointError(f"batch_size must be >= 1, got {batch_size}")
        embeddings: list[np.ndarray] = []
        qualities: list[np.ndarray] = []
        if type(images).__module__.startswith("torch") and hasattr(images, "detach"):
            for batch in self._tensor_batches(images, batch_size, resize):
                embedding, quality = self.forward_batch(batch)
                embeddings.append(embedding)
                if quality is not None:
                    qualities.append(quality)
            return self._gather(embeddings, qualities)
        items = as_image_list(images)
        outcomes = ordered_map(
            lambda item: self.prepare(item, resize=resize),
            items,
            workers=workers,
            window=2 * batch_size,
        )
        for group in batched(outcomes, batch_size):
            for outcome in group:
                if outcome.error is not None:
                    raise outcome.error
            embedding, quality = self.forward_batch(normalise_batch([o.value for o in group]))
            embeddings.append(embedding)
            if quality is not None:
                qualities.append(quality)
        return self._gather(embeddings, qualities)

    def _gather(
        self, embeddings: list[np.ndarray], qualities: list[np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray | None]:
        if not embeddings:
            empty = np.zeros((0, self.num_features), np.float32)
            return empty, (np.zeros(0, np.float32) if self.has_quality_head else None)
        quality_all = np.concatenate(qualities) if self.has_quality_head else None
        return np.concatenate(embeddings), quality_all

    def _require_quality(self) -> None:
        if not self.has_quality_head:
            kind = (self.card.get("kind") or {}).get("kind", "igfiqa")
            raise CheckpointError(
                f"{self.source} is an embedding-only model (kind {kind}: no quality output, e.g. an "
                "ArcFace backbone): it cannot score quality. Use embed(), load a quality model "
                "(igfiqa models), or name the file's kind if it is one that cannot be recognised "
                "(--kind ofiq-uqs for OFIQ's ONNX, --kind serfiq for SER-FIQ on this FR model)"
            )

    def score(
        self,
        images: Any,
        *,
        batch_size: int = 64,
        resize: bool = False,
        workers: int | None = None,
        detect: bool = False,
        min_face: float = 20.0,
        max_side: int = DEFAULT_MAX_SIDE,
    ) -> np.ndarray:
        """Raw quality scores (N,) float32 of ``images``; higher = better for face recognition.

        With ``detect=True`` each image is a photograph and its largest face is scored; an image
        without a face scores NaN (with a warning naming it); :meth:`score_faces` has the details.
        """
        self._require_quality()
        if detect:
            if resize:
                raise DataError("detect=True aligns every face itself: drop resize=True")
            faces = self.score_faces(
                images, batch_size=batch_size, workers=workers, min_face=min_face,
                max_side=max_side,
            )  # fmt: skip
            missing = [i for i, found in enumerate(faces) if not found]
            if missing:
                warnings.warn(
                    f"no face found in image(s) {missing[:20]}{' ...' if len(missing) > 20 else ''}:"
                    " their score is NaN",
                    stacklevel=2,
                )
            return np.array([f[0].quality if f else np.nan for f in faces], dtype=np.float32)
        _, quality = self._run(images, batch_size=batch_size, resize=resize, workers=workers)
        return quality

    def score_faces(
        self,
        images: Any,
        *,
        all_faces: bool = False,
        batch_size: int = 64,
        workers: int | None = None,
        min_face: float = 20.0,
        max_side: int = DEFAULT_MAX_SIDE,
    ) -> list[list[ScoredFace]]:
        """For each photograph, its largest face (every face with ``all_faces``, largest first),
        found, aligned and scored; an empty list where no face was found.

        ``images`` as for :meth:`score`; a tensor counts as N photographs. Unreadable images raise.
        """
        from igfiqa.data.align import align_face
        from igfiqa.detection import detect_faces, load_detector

        self._require_quality()
        detector = load_detector(min_face=min_face)
        items = _photographs(images)
        template = self.alignment_template

        def find(item: Any) -> tuple[list[Any], list[np.ndarray]]:
            image = to_rgb_array(item)
            found = detect_faces(image, detector, max_side=max_side)
            found = found if all_faces else found[:1]
            return found, [
                align_face(image, f.landmarks, size=self.input_size, template=template)
                for f in found
            ]

        results: list[list[ScoredFace]] = []
        outcomes = ordered_map(find, items, workers=workers, window=2 * batch_size)
        for group in batched(outcomes, batch_size):
            for outcome in group:
                if outcome.error is not None:
                    raise outcome.error
            crops = [crop for outcome in group for crop in outcome.value[1]]
            quality = np.concatenate(
                [np.zeros(0, np.float32)]
                + [
                    self.forward_batch(normalise_batch(crops[i : i + batch_size]))[1]
                    for i in range(0, len(crops), batch_size)
                ]
            )
            position = 0
            for outcome in group:
                found = outcome.value[0]
                results.append(
                    [
                        ScoredFace(i, f.box.copy(), float(f.score), f.landmarks.copy(),
                                   float(quality[position + i]))
                        for i, f in enumerate(found)
                    ]
                )  # fmt: skip
                position += len(found)
        return results

    def embed(
        self, images: Any, *, batch_size: int = 64, resize: bool = False, workers: int | None = None
    ) -> np.ndarray:
        """Embeddings (N, F) float32 of ``images`` (not L2-normalised)."""
        embedding, _ = self._run(images, batch_size=batch_size, resize=resize, workers=workers)
        return embedding

    def score_and_embed(
        self, images: Any, *, batch_size: int = 64, resize: bool = False, workers: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(scores (N,), embeddings (N, F))`` from one pass over ``images``."""
        self._require_quality()
        embedding, quality = self._run(
            images, batch_size=batch_size, resize=resize, workers=workers
        )
        return quality, embedding

    def expected_fnmr(self, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Raw scores -> ``(expected FNMR, band low, band high)`` with the model card's
        expected-FNMR calibration (NaN scores, e.g. no face found, stay NaN): what a sample of
        that quality costs in recognition, for the FR model, FMR and data of the calibration
        (``self.fnmr_calibration.info``)."""
        if self.fnmr_calibration is None:
            raise CheckpointError(
                f"{self.source} has no expected-FNMR calibration: calibrate it with "
                "`igfiqa calibrate` (or `igfiqa export --calibrate`)"
            )
        return self.fnmr_calibration(scores)

    def calibrate(self, scores: np.ndarray) -> np.ndarray:
        """Raw scores -> calibrated integers 0..100 with the model card's calibration."""
        if self.calibration is None:
            raise CheckpointError(
                f"{self.source} has no score calibration: export it with `igfiqa export` (which "
                "learns one from a reference set) to get 0..100 scores"
            )
        return self.calibration(scores)


def _photographs(images: Any) -> list[Any]:
    """Images for detection as a list; a torch tensor (N, 3, H, W) becomes uint8 (H, W, 3) arrays."""
    if type(images).__module__.startswith("torch") and hasattr(images, "detach"):
        x = images.detach().cpu()
        x = x.unsqueeze(0) if x.ndim == 3 else x
        if x.ndim != 4 or x.shape[1] != 3:
            raise DataError(f"a tensor of photographs must be (N, 3, H, W), got {tuple(x.shape)}")
        import torch

        if x.is_floating_point():
            x = (x.clamp(0, 1) * 255).round()
        return list(x.to(torch.uint8).permute(0, 2, 3, 1).numpy())
    return as_image_list(images)


def _onnx_files(path: Path) -> tuple[Path, Path]:
    if path.is_dir():
        onnx_path, card_path = path / ONNX_FILE, path / CARD_FILE
        if not onnx_path.is_file():
            raise CheckpointError(
                f"{path} has no {ONNX_FILE}: export the model with `igfiqa export ... --onnx`"
            )
        if not card_path.is_file():
            raise CheckpointError(f"{path} has no {CARD_FILE} beside {ONNX_FILE}")
        return onnx_path, card_path
    if path.suffix.lower() != ".onnx":
        raise CheckpointError(
            f"backend 'onnx' needs an export directory with {ONNX_FILE} or an .onnx file, got {path}; "
            "create one with `igfiqa export CHECKPOINT --out DIR --onnx`"
        )
    card_path = find_card_for(path)
    if card_path is None:
        raise CheckpointError(
            f"{path}: no model card ({path.with_suffix('.json').name} or {CARD_FILE})"
        )
    return path, card_path


def load_model(
    path: str | os.PathLike[str],
    *,
    kind: str | None = None,
    sha256: str | None = None,
    options: str | Mapping[str, Any] | None = None,
    device: str = "auto",
    dtype: Any = None,
    backend: str = "torch",
    threads: int | None = None,
    compile: bool = False,
) -> QualityModel:
    """Load a quality or face recognition model for inference.

    ``path`` is any file of a registered kind (``igfiqa models``; :mod:`igfiqa.inference.kinds`):
    an igfiqa training checkpoint or export, a CR-FIQA ``*backbone.pth``, an arcface_torch /
    ElasticFace iResNet, a MagFace checkpoint, CurricularFace, SDD-FIQA, DifFIQA(R), eDifFIQA,
    OFIQ's unified-quality ONNX (``kind="ofiq-uqs"``), SER-FIQ over an FR file
    (``kind="serfiq"``), or a generic ONNX / TorchScript FR model. The kind is recognised from the
    file where that is unambiguous; ``kind`` names it otherwise. ``sha256`` pins the file's
    SHA-256 (a mismatch loads nothing); ``options`` are the kind's ``key=value`` options. The
    authors' input convention is applied inside the model: callers always pass aligned RGB faces.

    ``backend="onnx"`` runs an igfiqa export's ``model.onnx``. ``device`` is ``auto`` (CUDA when
    available, else the CPU), ``cpu``, ``cuda`` or ``cuda:N``; ``dtype`` None/"float32" or
    "bfloat16" (torch); ``compile`` runs the network through ``torch.compile``. Raises
    CheckpointError for anything it cannot load.
    """
    from igfiqa.inference.runners import check_threads

    threads = check_threads(threads)
    path = Path(path)
    if backend == "onnx":
        from igfiqa.inference.runners import OnnxRunner

        _float32_only(dtype, "the onnx backend")
        if not path.exists():
            raise CheckpointError(f"model {path} does not exist")
        if kind is not None or (path.suffix.lower() == ".onnx" and find_card_for(path) is None):
            return _load_kind_model(path, kind, sha256, options, device, dtype, threads, compile)
        onnx_path, card_path = _onnx_files(path)
        if options:
            raise CheckpointError(f"{path}: an igfiqa ONNX export takes no model options")
        if sha256 is not None:
            from igfiqa.inference.kinds.base import check_sha256

            check_sha256(onnx_path, sha256)
        card = read_card(card_path, verify=(ONNX_FILE,))
        runner = OnnxRunner(onnx_path, device=device, threads=threads)
        if runner.input_size not in (None, int(card["model_spec"]["input_size"])):
            raise CheckpointError(
                f"{onnx_path}: input size does not match its model card {card_path}"
            )
        return QualityModel(runner, card, source=path)
    if backend != "torch":
        raise CheckpointError(f"unknown backend {backend!r}: use 'torch' or 'onnx'")
    if path.suffix.lower() == ".onnx" and kind is None and find_card_for(path) is not None:
        raise CheckpointError(
            f"{path} is an igfiqa ONNX export: score it with `igfiqa score --backend onnx` "
            "(Python: load_model(..., backend='onnx')); exporting and training need the torch "
            "weights (.pt, .safetensors or .pth)"
        )
    return _load_kind_model(path, kind, sha256, options, device, dtype, threads, compile)


def _float32_only(dtype: Any, what: str) -> None:
    if dtype is not None and str(dtype).removeprefix("torch.").lower() not in ("float32", "fp32"):
        raise CheckpointError(f"{what} runs in float32 only")


def _load_kind_model(
    path: Path,
    kind: str | None,
    sha256: str | None,
    options: Any,
    device: str,
    dtype: Any,
    threads: int | None,
    compile: bool,
) -> QualityModel:
    from igfiqa.inference.kinds import load_kind
    from igfiqa.inference.runners import TorchRunner, resolve_device

    loaded = load_kind(path, kind=kind, sha256=sha256, options=options)
    if threads:
        import torch

        torch.set_num_threads(int(threads))
    if loaded.network is None:
        _float32_only(dtype, f"{path}: a {loaded.kind} model")
        runner = loaded.runner_factory(device, threads)  # type: ignore[misc]
        return QualityModel(runner, loaded.card, source=path)
    runner = TorchRunner(
        loaded.network, device=resolve_device(device), dtype=dtype, compile=compile
    )
    return QualityModel(runner, loaded.card, source=path)


__all__ = ["QualityModel", "load_model"]
