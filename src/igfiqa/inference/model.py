"""The inference API: ``load_model(path)`` -> :class:`QualityModel` with ``score`` / ``embed``.

Quality = R(f(x)) for aligned face crops (docs/scoring.md, "What the score is"); the embedding f(x) comes for free and is a
usable face recognition template. Works on CPU or GPU, in float32 or bfloat16, with PyTorch or (for an
export with ``model.onnx``) onnxruntime.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from igfiqa.data.pixels import (
    NORMALISATION_MEAN,
    NORMALISATION_STD,
    normalise_batch,
    resize_interpolation,
)
from igfiqa.detection import DEFAULT_MAX_SIDE, DEFAULT_MIN_CONFIDENCE
from igfiqa.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    FailedItemsWarning,
    IgfiqaError,
    SyntheticModelWarning,
)
from igfiqa.inference.calibration import ScoreCalibration
from igfiqa.inference.card import CARD_FILE, ONNX_FILE, find_card_for, read_card
from igfiqa.inference.expected_fnmr import ExpectedFnmr
from igfiqa.inference.pipeline import batched, ordered_map
from igfiqa.inference.preprocess import as_image_list, fit_to_size, to_rgb_array
from igfiqa.inference.scorer import NON_FINITE


@dataclass(frozen=True)
class ScoredFace:
    """A face found in a photograph and scored: ``index`` (0 = largest), ``box`` (x1, y1, x2, y2),
    detector ``confidence``, five ``landmarks`` (5, 2) in pixels of the photograph, ``quality``,
    and ``outside``: the share of the box outside the photograph (0 = wholly inside; a face cut by
    the frame is scored on a crop with black where the photograph ends)."""

    index: int
    box: np.ndarray
    confidence: float
    landmarks: np.ndarray
    quality: float
    outside: float = 0.0


class QualityModel:
    """A loaded face image quality model.

    ``score(images)`` -> raw quality scores (N,), ``embed(images)`` -> embeddings (N, F),
    ``score_and_embed(images)`` -> both. ``images`` is one image or a list of them: file paths, encoded
    bytes, PIL images or uint8 RGB arrays (H, W, 3) (a uint8 (N, H, W, 3) array counts as N images);
    or a torch tensor (N, 3, H, W) or (3, H, W) of RGB images, uint8 0..255 or float in [0, 1] (as
    torchvision's ``ToTensor`` gives), on any device. Images must be aligned crops of ``input_size``
    x ``input_size`` unless ``resize=True`` (tensors: area interpolation to shrink, bilinear to
    enlarge). With ``detect=True`` (``score``, ``embed``, ``score_and_embed``) or
    :meth:`score_faces` the images are ordinary photographs: faces of detector confidence
    ``min_confidence`` or more are found (MTCNN, ``pip install "igfiqa[detect]"``), aligned and
    scored. An item that fails (unreadable, wrong size, no face) raises or gives NaN and a reason
    (``errors``, ``return_errors``: docs/scoring.md, "Python API").
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
    def synthetic_training(self) -> str | None:
        """The ``synthetic:...`` spec the model was trained on when its card says it was trained
        only on igfiqa's synthetic faces, else None. Such a model's scores of photographs are not
        meaningful: scoring files or photographs with it warns (:class:`SyntheticModelWarning`)."""
        from igfiqa.inference.card import synthetic_training

        return synthetic_training(self.card)

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

        card = json.dumps(json_safe(self.card), sort_keys=True)
        loaded = self.card.get("source")
        if isinstance(loaded, Mapping) and loaded.get("sha256"):
            return content_digest(card)  # loading hashed the weights file into the card already
        source = Path(self.source)
        files = sorted(p for p in source.iterdir() if p.is_file()) if source.is_dir() else [source]
        hashes = [
            f"{p.name}:{file_sha256(p)}" if source.is_dir() else file_sha256(p) for p in files
        ]
        return content_digest(*hashes, card)

    def __repr__(self) -> str:
        name = self.card["model_spec"]["name"]
        return (
            f"QualityModel({name}, input {self.input_size}x{self.input_size}, "
            f"{self.num_features}-d embedding, quality head {self.has_quality_head}, "
            f"{self.backend} on {self.device} in {self.dtype}, from {self.source}"
            f"{', trained on synthetic faces only' if self.synthetic_training else ''})"
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
                mode = resize_interpolation(chunk.shape[2], chunk.shape[3], size)
                extra = {} if mode == "area" else {"align_corners": False}
                chunk = F.interpolate(chunk, size=(size, size), mode=mode, **extra)
            mean = torch.tensor(NORMALISATION_MEAN).view(1, 3, 1, 1)
            std = torch.tensor(NORMALISATION_STD).view(1, 3, 1, 1)
            yield ((chunk - mean) / std).numpy().astype(np.float32, copy=False)

    def _run(
        self,
        images: Any,
        *,
        batch_size: int,
        resize: bool,
        workers: int | None,
        errors: str = "raise",
    ) -> tuple[np.ndarray, np.ndarray | None, list[str | None]]:
        """``(embeddings (N, F), quality (N,) or None, reasons)`` of aligned crops; with
        ``errors="nan"`` an item that fails has NaN rows and its reason, else its error raises."""
        if batch_size < 1:
            raise CheckpointError(f"batch_size must be >= 1, got {batch_size}")
        if _is_tensor(images):
            embeddings: list[np.ndarray] = []
            qualities: list[np.ndarray] = []
            for batch in self._tensor_batches(images, batch_size, resize):
                embedding, quality = self.forward_batch(batch)
                embeddings.append(embedding)
                if quality is not None:
                    qualities.append(quality)
            embedding_all, quality_all = self._gather(embeddings, qualities)
            return embedding_all, quality_all, _non_finite_reasons(quality_all, len(embedding_all))
        items = as_image_list(images)

        def prepare(entry: tuple[int, Any]) -> np.ndarray:
            index, item = entry
            label = _item_label(item, index)
            try:
                return self.prepare(item, resize=resize, name=label)
            except IgfiqaError:
                raise
            except (OSError, ValueError, RuntimeError) as error:  # OpenCV / Pillow internals
                raise DataError(f"{label}: {type(error).__name__}: {_one_line(error)}") from error

        count = len(items)
        embedding_all = np.full((count, self.num_features), np.nan, np.float32)
        quality_all = np.full(count, np.nan, np.float32) if self.has_quality_head else None
        reasons: list[str | None] = [None] * count
        outcomes = ordered_map(
            prepare, list(enumerate(items)), workers=workers, window=2 * batch_size
        )
        for group in batched(outcomes, batch_size):
            good = []
            for outcome in group:
                if outcome.error is None:
                    good.append(outcome)
                elif errors == "raise":
                    raise outcome.error
                else:
                    reasons[outcome.item[0]] = _one_line(outcome.error)
            if not good:
                continue
            embedding, quality = self.forward_batch(normalise_batch([o.value for o in good]))
            rows = [o.item[0] for o in good]
            embedding_all[rows] = embedding
            if quality_all is not None and quality is not None:
                quality_all[rows] = quality
        for index, reason in enumerate(_non_finite_reasons(quality_all, count)):
            reasons[index] = reasons[index] or reason
        return embedding_all, quality_all, reasons

    def _gather(
        self, embeddings: list[np.ndarray], qualities: list[np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray | None]:
        if not embeddings:
            empty = np.zeros((0, self.num_features), np.float32)
            return empty, (np.zeros(0, np.float32) if self.has_quality_head else None)
        quality_all = np.concatenate(qualities) if self.has_quality_head else None
        return np.concatenate(embeddings), quality_all

    def _detect_run(
        self,
        images: Any,
        *,
        all_faces: bool,
        batch_size: int,
        workers: int | None,
        min_face: float,
        max_side: int,
        min_confidence: float,
        errors: str,
    ) -> list[tuple[list[ScoredFace], np.ndarray, str | None]]:
        """For each photograph ``(faces, their embeddings (K, F), reason)``: its largest face (or
        every face), found, aligned and run; a photograph that fails (unreadable, no face) has no
        face and its reason, or raises with ``errors="raise"``."""
        from igfiqa.detection import check_search, find_faces, load_detector

        if batch_size < 1:
            raise CheckpointError(f"batch_size must be >= 1, got {batch_size}")
        detector = load_detector(min_face=min_face, min_confidence=min_confidence)
        check_search(max_side, min_face)  # a search that cannot run fails the call, not each item
        items = _photographs(images)
        template = self.alignment_template

        def find(entry: tuple[int, Any]) -> list[Any]:
            index, item = entry
            label = _item_label(item, index)
            try:
                image = to_rgb_array(item, name=label)
                return find_faces(
                    image, detector, size=self.input_size, all_faces=all_faces,
                    max_side=max_side, name=label, template=template,
                )  # fmt: skip
            except IgfiqaError:
                raise
            except (OSError, ValueError, RuntimeError) as error:  # OpenCV / Pillow internals
                raise DataError(f"{label}: {type(error).__name__}: {_one_line(error)}") from error

        empty = np.zeros((0, self.num_features), np.float32)
        results: list[tuple[list[ScoredFace], np.ndarray, str | None]] = []
        outcomes = ordered_map(find, list(enumerate(items)), workers=workers, window=2 * batch_size)
        for group in batched(outcomes, batch_size):
            for outcome in group:
                if outcome.error is not None and errors == "raise":
                    raise outcome.error
            crops = [f.crop for o in group if o.error is None for f in o.value]
            embeddings, qualities = [empty], [np.zeros(0, np.float32)]
            for start in range(0, len(crops), batch_size):
                embedding, quality = self.forward_batch(
                    normalise_batch(crops[start : start + batch_size])
                )
                embeddings.append(embedding)
                qualities.append(
                    np.full(len(embedding), np.nan, np.float32) if quality is None else quality
                )
            embedding_all, quality_all = np.concatenate(embeddings), np.concatenate(qualities)
            position = 0
            for outcome in group:
                if outcome.error is not None:
                    results.append(([], empty, _one_line(outcome.error)))
                    continue
                found = outcome.value
                faces = [
                    ScoredFace(
                        f.index, f.face.box.copy(), float(f.face.score), f.face.landmarks.copy(),
                        float(quality_all[position + i]), float(f.outside),
                    )
                    for i, f in enumerate(found)
                ]  # fmt: skip
                embedding = embedding_all[position : position + len(found)]
                position += len(found)
                reason = None
                if self.has_quality_head and not all(math.isfinite(f.quality) for f in faces):
                    reason = NON_FINITE
                results.append((faces, embedding, reason))
        return results

    def _require_quality(self) -> None:
        if not self.has_quality_head:
            kind = (self.card.get("kind") or {}).get("kind", "igfiqa")
            raise CheckpointError(
                f"{self.source} is an embedding-only model (kind {kind}: no quality output, e.g. an "
                "ArcFace backbone): it cannot score quality. Use embed(), load a quality model "
                "(igfiqa models), or name the file's kind if it is one that cannot be recognised "
                "(--kind ofiq-uqs for OFIQ's ONNX, --kind serfiq for SER-FIQ on this FR model)"
            )

    def _warn_synthetic(self, images: Any, detect: bool) -> None:
        """Warn (:class:`SyntheticModelWarning`) when a model trained only on synthetic faces
        scores photographs: ``detect=True``, or files, encoded bytes or PIL images. Arrays and
        tensors (how the demo and the evaluation pass the renderer's faces) are not judged."""
        if self.synthetic_training is None or not (detect or _from_files(images)):
            return
        from igfiqa.inference.card import synthetic_warning

        warnings.warn(
            str(synthetic_warning(self.card, str(self.source))), SyntheticModelWarning,
            stacklevel=3,
        )  # fmt: skip

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
        min_confidence: float = DEFAULT_MIN_CONFIDENCE,
        errors: str | None = None,
        return_errors: bool = False,
    ) -> Any:
        """Raw quality scores (N,) float32 of ``images``; higher = better for face recognition.

        With ``detect=True`` each image is a photograph and its largest face of detector
        confidence ``min_confidence`` or more is scored (:meth:`score_faces` has the details).

        ``errors`` says what an item that fails does (unreadable or truncated file, wrong size, no
        face): ``"raise"`` raises its error (naming it); ``"nan"`` gives it the score NaN and a
        :class:`~igfiqa.errors.FailedItemsWarning` that names it and its reason, and the others are
        scored, as ``igfiqa score`` writes an error row. Default: ``"nan"`` with ``detect=True``
        (a photograph without a face is data, not a bug), ``"raise"`` for aligned crops. With
        ``return_errors=True`` the result is ``(scores, reasons)``: one reason (str) per failed
        item, None for the others, and no warning.
        """
        self._require_quality()
        policy = _errors_policy(errors, detect)
        images = _listed(images)
        self._warn_synthetic(images, detect)
        if detect:
            if resize:
                raise DataError("detect=True aligns every face itself: drop resize=True")
            found = self._detect_run(
                images, all_faces=False, batch_size=batch_size, workers=workers,
                min_face=min_face, max_side=max_side, min_confidence=min_confidence,
                errors=policy,
            )  # fmt: skip
            quality = np.array([f[0].quality if f else np.nan for f, _, _ in found], np.float32)
            reasons = [reason for _, _, reason in found]
        else:
            _, quality, reasons = self._run(
                images, batch_size=batch_size, resize=resize, workers=workers, errors=policy
            )
        return _with_reasons(quality, reasons, return_errors, "score is NaN")

    def score_faces(
        self,
        images: Any,
        *,
        all_faces: bool = False,
        batch_size: int = 64,
        workers: int | None = None,
        min_face: float = 20.0,
        max_side: int = DEFAULT_MAX_SIDE,
        min_confidence: float = DEFAULT_MIN_CONFIDENCE,
        errors: str = "nan",
        return_errors: bool = False,
    ) -> Any:
        """For each photograph, its largest face (every face with ``all_faces``, largest first)
        whose detector confidence is ``min_confidence`` or more, found, aligned and scored: a list
        of :class:`ScoredFace` (with ``outside``, the share of its box outside the photograph).

        ``images`` as for :meth:`score`; a tensor counts as N photographs. A photograph that fails
        (unreadable or truncated file, no face) has an empty list: with ``errors="nan"`` (the
        default) a :class:`~igfiqa.errors.FailedItemsWarning` names it and its reason, or
        ``return_errors=True`` returns ``(faces, reasons)``; ``errors="raise"`` raises instead.
        """
        self._require_quality()
        policy = _errors_policy(errors, True)
        images = _listed(images)
        self._warn_synthetic(images, True)
        found = self._detect_run(
            images, all_faces=all_faces, batch_size=batch_size, workers=workers,
            min_face=min_face, max_side=max_side, min_confidence=min_confidence, errors=policy,
        )  # fmt: skip
        faces = [f for f, _, _ in found]
        return _with_reasons(faces, [r for _, _, r in found], return_errors, "face list is empty")

    def embed(
        self,
        images: Any,
        *,
        batch_size: int = 64,
        resize: bool = False,
        workers: int | None = None,
        detect: bool = False,
        min_face: float = 20.0,
        max_side: int = DEFAULT_MAX_SIDE,
        min_confidence: float = DEFAULT_MIN_CONFIDENCE,
        errors: str | None = None,
        return_errors: bool = False,
    ) -> Any:
        """Embeddings (N, F) float32 of ``images`` (not L2-normalised); with ``detect=True`` of
        each photograph's largest face. ``errors`` and ``return_errors`` as for :meth:`score`: an
        item that fails has a row of NaN."""
        policy = _errors_policy(errors, detect)
        images = _listed(images)
        if detect:
            if resize:
                raise DataError("detect=True aligns every face itself: drop resize=True")
            embedding, _, reasons = self._detected(
                images, batch_size, workers, min_face, max_side, min_confidence, policy
            )
        else:
            embedding, _, reasons = self._run(
                images, batch_size=batch_size, resize=resize, workers=workers, errors=policy
            )
        return _with_reasons(embedding, reasons, return_errors, "embedding is NaN")

    def score_and_embed(
        self,
        images: Any,
        *,
        batch_size: int = 64,
        resize: bool = False,
        workers: int | None = None,
        detect: bool = False,
        min_face: float = 20.0,
        max_side: int = DEFAULT_MAX_SIDE,
        min_confidence: float = DEFAULT_MIN_CONFIDENCE,
        errors: str | None = None,
        return_errors: bool = False,
    ) -> Any:
        """``(scores (N,), embeddings (N, F))`` from one pass over ``images``; ``detect``,
        ``errors`` and ``return_errors`` as for :meth:`score` (``(scores, embeddings, reasons)``)."""
        self._require_quality()
        policy = _errors_policy(errors, detect)
        images = _listed(images)
        self._warn_synthetic(images, detect)
        if detect:
            if resize:
                raise DataError("detect=True aligns every face itself: drop resize=True")
            embedding, quality, reasons = self._detected(
                images, batch_size, workers, min_face, max_side, min_confidence, policy
            )
        else:
            embedding, quality, reasons = self._run(
                images, batch_size=batch_size, resize=resize, workers=workers, errors=policy
            )
        _report(reasons, return_errors, "score is NaN", stacklevel=3)
        return (quality, embedding, reasons) if return_errors else (quality, embedding)

    def _detected(
        self,
        images: Any,
        batch_size: int,
        workers: int | None,
        min_face: float,
        max_side: int,
        min_confidence: float,
        errors: str,
    ) -> tuple[np.ndarray, np.ndarray, list[str | None]]:
        """``(embeddings (N, F), quality (N,), reasons)`` of each photograph's largest face."""
        found = self._detect_run(
            images, all_faces=False, batch_size=batch_size, workers=workers, min_face=min_face,
            max_side=max_side, min_confidence=min_confidence, errors=errors,
        )  # fmt: skip
        embedding = np.full((len(found), self.num_features), np.nan, np.float32)
        quality = np.full(len(found), np.nan, np.float32)
        for index, (faces, rows, _) in enumerate(found):
            if faces:
                embedding[index], quality[index] = rows[0], faces[0].quality
        return embedding, quality, [reason for _, _, reason in found]

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
        """Raw scores -> the card's 0..100 score: the percentile rank of each score among the
        calibration's reference images (``self.calibration.reference``), as float64 whole
        numbers; NaN (no face found, a failed item) stays NaN. An order, not an ISO/IEC 29794
        quality nor a recognition cost (:meth:`expected_fnmr` is that)."""
        if self.calibration is None:
            raise CheckpointError(
                f"{self.source} has no score calibration: export it with `igfiqa export` (which "
                "learns one from a reference set) to get 0..100 scores"
            )
        return self.calibration.calibrated(scores)


ERROR_POLICIES = ("raise", "nan")


def _errors_policy(errors: str | None, photographs: bool) -> str:
    """The ``errors`` policy in force: the one given, else ``"nan"`` for photographs and
    ``"raise"`` for aligned crops."""
    policy = ("nan" if photographs else "raise") if errors is None else errors
    if policy not in ERROR_POLICIES:
        raise ConfigError(f"errors must be 'raise' or 'nan', got {errors!r}")
    return policy


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _is_tensor(images: Any) -> bool:
    return type(images).__module__.startswith("torch") and hasattr(images, "detach")


def _listed(images: Any) -> Any:
    """``images`` as a list (a tensor and a 4-D array as they are), so that an iterator is read
    once."""
    if _is_tensor(images) or (isinstance(images, np.ndarray) and images.ndim == 4):
        return images
    return as_image_list(images)


def _item_label(item: Any, index: int) -> str:
    """How an item is named in its error: its path, or ``image N`` (its position in the call)."""
    if isinstance(item, (str, os.PathLike)):
        return str(item)
    return f"image {index}"


def _from_files(images: Any) -> bool:
    """Whether ``images`` holds files, encoded bytes or PIL images (photographs read by the caller
    from disk), rather than arrays or tensors."""
    from igfiqa.inference.preprocess import is_pil_image

    if _is_tensor(images) or isinstance(images, np.ndarray):
        return False
    return any(
        isinstance(item, (str, os.PathLike, bytes, bytearray, memoryview)) or is_pil_image(item)
        for item in images
    )


def _non_finite_reasons(quality: np.ndarray | None, count: int) -> list[str | None]:
    if quality is None:
        return [None] * count
    return [None if math.isfinite(float(v)) else NON_FINITE for v in quality]


def _report(
    reasons: list[str | None], return_errors: bool, consequence: str, stacklevel: int = 4
) -> None:
    """Warn (:class:`FailedItemsWarning`) about the failed items, unless the caller takes the
    reasons."""
    failed = [(i, r) for i, r in enumerate(reasons) if r is not None]
    if not failed or return_errors:
        return
    shown = "; ".join(f"[{i}] {r}" for i, r in failed[:5])
    more = f"; ... ({len(failed) - 5} more)" if len(failed) > 5 else ""
    warnings.warn(
        f"{len(failed)} of {len(reasons)} images failed, their {consequence}: {shown}{more} "
        "(return_errors=True gives every reason; errors='raise' raises the first)",
        FailedItemsWarning,
        stacklevel=stacklevel,
    )


def _with_reasons(
    value: Any, reasons: list[str | None], return_errors: bool, consequence: str
) -> Any:
    _report(reasons, return_errors, consequence)
    return (value, reasons) if return_errors else value


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
