"""Run FR models and quality methods on a benchmark, with on-disk caches, and evaluate them.

* An **FR model** maps aligned uint8 RGB faces (B, S, S, 3) to embeddings (B, F). It is an igfiqa
  checkpoint / export / CR-FIQA backbone (:func:`igfiqa.inference.load_model`), a TorchScript file,
  an ONNX file (onnxruntime, the ``onnx`` extra), or from Python any callable. External models get
  the project's input layout: float32 (B, 3, S, S), RGB, ``(pixel / 255 - 0.5) / 0.5``.
* A **quality method** gives one score per sample (higher = better): an igfiqa model, ``csv:PATH``
  (rows ``path,quality`` matched to the benchmark's sample names), or a built-in baseline:
  ``random[:SEED]``, ``oracle`` (a synthetic benchmark's ground-truth quality),
  ``embedding-norm`` (MagFace-style: the L2 norm of the FR model's raw embedding) and
  ``serfiq[:m=...,p=...,seed=...,model=PATH]`` (SER-FIQ-style stochastic-embedding robustness).
* **Comparison scores** = cosine similarity of L2-normalised features. ``flip`` chooses the feature:
  ``none`` (emb(img)), ``concat`` (CR-FIQA: [emb/|emb|, emb_f/|emb_f|], cosine = mean of the two
  cosines), ``sum`` (emb(img) + emb(flipped img)); ``auto`` = ``sum`` for template benchmarks (the
  IJB recipe of docs/formats.md, "Benchmarks") and ``none`` otherwise. Templates: mean of the image features of
  each media, sum over the template's media, L2-normalise; template quality = min over its images.
* **Caches** (``cache_dir``): embeddings (raw and flipped), similarities and model quality scores
  are stored per benchmark and model as ``.npz``/``.npy`` files whose names carry a key derived
  from the files' path, size and modification time and from the benchmark's sample names and pairs,
  so adding a quality method later only computes that method's scores.

Images that fail to load are recorded (``failed_samples``) and their pairs excluded, not fatal.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import math
import os
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from igfiqa.data.pixels import normalise_batch
from igfiqa.errors import CheckpointError, ConfigError, DataError
from igfiqa.evaluation import edc
from igfiqa.evaluation.report import slug
from igfiqa.evaluation.results import (
    DEFAULT_FMRS,
    DEFAULT_LIMITS,
    BenchmarkResult,
    evaluate_scores,
)
from igfiqa.files import MAX_TABLE_BYTES, atomic_write, read_text_file, spreadsheet_unescape
from igfiqa.inference.runners import resolve_device
from igfiqa.progress import ProgressBar

Flip = Literal["auto", "none", "concat", "sum"]
ImageFunction = Callable[[np.ndarray], np.ndarray]

_CHUNK = 131_072  # pairs per chunk of the row-wise dot product
_MODEL_RUN = ("model", "serfiq", "callable")  # quality methods that need a pass over the images


# --------------------------------------------------------------------------------------------------
# keys and atomic cache files


def _file_signature(path: Path) -> str:
    """Path, size and mtime of a file, or of every file in a directory (sorted)."""
    path = path.resolve()
    if path.is_dir():
        parts = [str(path)]
        for child in sorted(path.iterdir()):
            if child.is_file():
                stat = child.stat()
                parts.append(f"{child.name}:{stat.st_size}:{stat.st_mtime_ns}")
        return "|".join(parts)
    stat = path.stat()
    return f"{path}:{stat.st_size}:{stat.st_mtime_ns}"


def _digest(*parts: str | bytes) -> str:
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\x00")
    return h.hexdigest()


def _save_npz(path: Path, **arrays: np.ndarray) -> None:
    atomic_write(path, lambda handle: np.savez(handle, **arrays), private=False)


def _npz_sizes_fit(path: Path) -> bool:
    """Whether every array of an .npz declares no more bytes than its zip member holds (a damaged
    or crafted header must not make numpy allocate what it announces)."""
    with zipfile.ZipFile(path) as archive:
        for member in archive.infolist():
            with archive.open(member) as handle:
                version = np.lib.format.read_magic(handle)
                read_header = (
                    np.lib.format.read_array_header_1_0
                    if version == (1, 0)
                    else np.lib.format.read_array_header_2_0
                )
                shape, _, dtype = read_header(handle)
                declared = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
                if declared < 0 or declared > member.file_size:
                    return False
    return True


def _load_npz(path: Path | None) -> dict[str, np.ndarray] | None:
    if path is None or not path.is_file():
        return None
    try:
        if not _npz_sizes_fit(path):
            return None
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError, zipfile.BadZipFile):
        return None  # a damaged cache entry is recomputed


# --------------------------------------------------------------------------------------------------
# FR models


def _prepare_batch(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 (B, H, W, 3) RGB -> float32 (B, 3, size, size) in [-1, 1], resizing if needed."""
    if images.shape[1] != size or images.shape[2] != size:
        import cv2

        images = np.stack(
            [cv2.resize(im, (size, size), interpolation=cv2.INTER_AREA) for im in images]
        )
    return normalise_batch(images)


@dataclass
class FRModel:
    """A face recognition model: ``embed(uint8 (B, S, S, 3)) -> float32 (B, F)`` raw embeddings.

    ``key`` identifies the model for caching (None = never cached); ``network`` is the igfiqa
    iResNet when there is one (SER-FIQ needs it); ``quality_model`` the loaded igfiqa model.
    """

    name: str
    embed: ImageFunction
    key: str | None
    input_size: int = 112
    network: Any = None
    quality_model: Any = None


def _is_torchscript(path: Path) -> bool:
    if path.suffix.lower() in (".ts", ".torchscript", ".jit"):
        return True
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in name or name.startswith("code/") for name in archive.namelist())


def _torchscript_model(path: Path, device: str, input_size: int) -> ImageFunction:
    import torch

    try:
        module = torch.jit.load(str(path), map_location=device).eval()
    except (RuntimeError, ValueError) as error:
        raise CheckpointError(f"{path}: not a loadable TorchScript file ({error})") from error

    def embed(images: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            out = module(torch.from_numpy(_prepare_batch(images, input_size)).to(device))
        if isinstance(out, (tuple, list)):
            out = out[0]
        return out.float().cpu().numpy()

    return embed


def _onnx_model(path: Path, device: str) -> tuple[ImageFunction, int]:
    try:
        import onnxruntime as ort
    except ImportError as error:
        raise ConfigError(
            f"{path}: ONNX FR models need onnxruntime; install the extra: pip install 'igfiqa[onnx]'"
        ) from error
    providers = ["CPUExecutionProvider"]
    cuda_here = "CUDAExecutionProvider" in ort.get_available_providers()
    if device.startswith("cuda") or (device == "auto" and cuda_here):
        providers.insert(0, "CUDAExecutionProvider")
    try:
        session = ort.InferenceSession(str(path), providers=providers)
    except Exception as error:  # onnxruntime raises its own exception types
        raise CheckpointError(f"{path}: onnxruntime cannot load it ({error})") from error
    meta = session.get_inputs()[0]
    shape = meta.shape
    size = shape[-1] if len(shape) == 4 and isinstance(shape[-1], int) else 112

    def embed(images: np.ndarray) -> np.ndarray:
        out = session.run(None, {meta.name: _prepare_batch(images, size)})[0]
        return np.asarray(out, dtype=np.float32)

    return embed, size


def load_fr_model(
    spec: str | os.PathLike[str] | Callable[[np.ndarray], np.ndarray] | FRModel,
    *,
    device: str = "auto",
    name: str | None = None,
    input_size: int = 112,
) -> FRModel:
    """Resolve an FR model spec.

    ``spec`` is an :class:`FRModel`; a callable (aligned uint8 (B, S, S, 3) -> (B, F); cached only
    when ``name`` is given, under that name); ``torchscript:PATH`` / ``onnx:PATH`` / ``igfiqa:PATH``;
    or a path whose kind is detected: ``.onnx`` -> onnxruntime, a TorchScript archive -> TorchScript,
    anything else -> :func:`igfiqa.inference.load_model` (checkpoint, export, CR-FIQA backbone).
    """
    if isinstance(spec, FRModel):
        return spec
    if callable(spec) and not isinstance(spec, (str, os.PathLike)):
        label = name or getattr(spec, "__name__", type(spec).__name__)
        key = _digest("callable", name) if name else None
        return FRModel(label, spec, key, input_size)
    text = os.fspath(spec)
    if device == "auto":  # onnxruntime decides for itself below; torch paths need a name
        device = (
            "auto" if text.startswith("onnx:") or text.endswith(".onnx") else resolve_device(device)
        )
    kind = None
    for prefix in ("torchscript:", "onnx:", "igfiqa:"):
        if text.startswith(prefix):
            kind, text = prefix[:-1], text[len(prefix) :]
    path = Path(text).expanduser()
    if not path.exists():
        raise CheckpointError(f"FR model {path} does not exist")
    if kind is None:
        if path.suffix.lower() == ".onnx":
            kind = "onnx"
        elif path.is_file() and _is_torchscript(path):
            kind = "torchscript"
        else:
            kind = "igfiqa"
    label = name or path.name
    key = _digest(kind, _file_signature(path))
    if kind == "torchscript":
        return FRModel(label, _torchscript_model(path, device, input_size), key, input_size)
    if kind == "onnx":
        from igfiqa.inference.card import find_card_for

        if path.is_dir() or find_card_for(path) is not None:  # an igfiqa ONNX export
            from igfiqa.inference import load_model

            model = load_model(path, device=device, backend="onnx")
            return _from_quality_model(model, label, key)
        embed, size = _onnx_model(path, device)
        return FRModel(label, embed, key, size)
    from igfiqa.inference import load_model

    return _from_quality_model(load_model(path, device=device), label, key)


def _from_quality_model(model: Any, label: str, key: str) -> FRModel:
    size = int(model.input_size)

    def embed(images: np.ndarray) -> np.ndarray:
        return model.forward_batch(_prepare_batch(images, size))[0]

    network = getattr(model.runner, "network", None)
    return FRModel(label, embed, key, size, network=network, quality_model=model)


# --------------------------------------------------------------------------------------------------
# quality methods


@dataclass
class QualityMethod:
    """A parsed quality spec: ``kind`` in model / csv / random / oracle / embedding-norm / serfiq /
    callable, with its ``name`` (shown in results) and options."""

    kind: str
    name: str
    path: Path | None = None
    options: dict[str, str] = field(default_factory=dict)
    function: Callable[[np.ndarray], np.ndarray] | None = None


def _options(text: str) -> dict[str, str]:
    out = {}
    for part in filter(None, text.split(",")):
        if "=" not in part:
            raise ConfigError(f"quality option {part!r} must look like key=value")
        key, value = part.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def parse_quality_spec(
    spec: str | os.PathLike[str] | Callable[[np.ndarray], np.ndarray], name: str | None = None
) -> QualityMethod:
    """Parse ``--quality``: ``random[:SEED]``, ``oracle``, ``embedding-norm``,
    ``serfiq[:m=10,p=0.5,seed=0,model=PATH]``, ``csv:PATH``, ``model:PATH`` or a model path; a
    Python callable (uint8 (B, S, S, 3) -> (B,) scores) is also accepted. ``NAME=SPEC`` sets the
    name shown in the results."""
    if callable(spec) and not isinstance(spec, (str, os.PathLike)):
        return QualityMethod(
            "callable", name or getattr(spec, "__name__", "quality"), function=spec
        )
    text = os.fspath(spec)
    if name is None and "=" in text.split(":", 1)[0]:
        name, text = text.split("=", 1)
    head, _, rest = text.partition(":")
    if head == "random":
        seed = rest or "0"
        if not seed.isdigit():
            raise ConfigError(f"random quality seed must be an integer, got {seed!r}")
        return QualityMethod("random", name or f"random (seed {seed})", options={"seed": seed})
    if head == "oracle":
        return QualityMethod("oracle", name or "oracle (ground truth)")
    if head in ("embedding-norm", "magface-norm"):
        return QualityMethod("embedding-norm", name or "embedding norm")
    if head == "serfiq":
        options = _options(rest)
        unknown = set(options) - {"m", "p", "seed", "model"}
        if unknown:
            raise ConfigError(f"serfiq options are m, p, seed, model; got {sorted(unknown)}")
        path = Path(options.pop("model")) if "model" in options else None
        return QualityMethod("serfiq", name or "SER-FIQ-style", path=path, options=options)
    if head == "csv":
        path = Path(rest).expanduser()
        if not path.is_file():
            raise ConfigError(f"quality CSV {path} does not exist")
        return QualityMethod("csv", name or path.stem, path=path)
    if head == "model":
        text = rest
    path = Path(text).expanduser()
    if not path.exists():
        raise ConfigError(
            f"quality method {text!r} is neither a built-in (random, oracle, embedding-norm, "
            "serfiq), csv:PATH, nor an existing model file"
        )
    return QualityMethod("model", name or path.name, path=path)


def _same_value(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def read_quality_csv(path: Path, sample_names: Sequence[str]) -> np.ndarray:
    """Quality per sample from a CSV of ``path,quality[,error]`` rows (header optional).

    A row matches a sample when its path equals the sample name or ends with ``/`` + the name
    (so absolute paths written by ``igfiqa score`` match relative names). Rows with an error or an
    empty quality count as missing. Missing samples raise :class:`DataError` listing a few.
    """
    by_suffix: dict[str, float] = {}
    ambiguous: set[str] = set()
    seen: dict[str, tuple[float, int]] = {}
    text = read_text_file(path, f"{path} (quality CSV)", MAX_TABLE_BYTES)
    try:
        rows = list(enumerate(csv.reader(io.StringIO(text, newline="")), start=1))
    except csv.Error as error:
        raise DataError(f"{path}: not a readable CSV file ({error})") from error
    for line_no, row in rows:
        if not row or (line_no == 1 and row[0].strip().lower() in ("path", "name", "image")):
            continue
        if len(row) < 2:
            raise DataError(f"{path}:{line_no}: expected 'path,quality', got {row!r}")
        if len(row) > 2 and row[2].strip():
            continue  # a per-item failure recorded by the scorer
        try:
            value = float(row[1]) if row[1].strip() else math.nan
        except ValueError as error:
            raise DataError(f"{path}:{line_no}: quality {row[1]!r} is not a number") from error
        if row[1].strip() and not math.isfinite(value):
            raise DataError(
                f"{path}:{line_no}: quality {row[1].strip()!r} is not a finite number; "
                "leave the quality empty (or write an error column) for a failed image"
            )
        name = spreadsheet_unescape(row[0].strip())
        if name in seen and not _same_value(seen[name][0], value):
            raise DataError(
                f"{path}:{line_no}: {name!r} has quality {row[1].strip()} here but "
                f"{seen[name][0]:g} on line {seen[name][1]}; keep one row per image"
            )
        seen.setdefault(name, (value, line_no))
        parts = name.replace("\\", "/").removeprefix("./").split("/")
        for start in range(len(parts)):
            key = "/".join(parts[start:])
            if key in by_suffix and start > 0:
                ambiguous.add(key)
            by_suffix.setdefault(key, value)
    names = [str(n).replace("\\", "/").removeprefix("./") for n in sample_names]
    values = np.array([by_suffix.get(n, math.nan) for n in names], dtype=np.float64)
    missing = [n for n, v in zip(names, values, strict=True) if not math.isfinite(v)]
    clashing = [n for n in names if n in ambiguous]
    if clashing:
        raise DataError(
            f"{path}: {len(clashing)} sample names match several rows (e.g. {clashing[:3]}); "
            "write full paths relative to the benchmark root"
        )
    if missing:
        raise DataError(
            f"{path}: no quality for {len(missing)} of {len(names)} samples, e.g. {missing[:5]}; "
            "the first column must hold the benchmark's sample names (or paths ending with them)"
        )
    return values


def serfiq_quality(
    network: Any,
    batch: np.ndarray,
    *,
    m: int = 10,
    p: float = 0.5,
    seed: int = 0,
) -> np.ndarray:
    """SER-FIQ-style quality of a prepared float32 batch (B, 3, S, S) on an igfiqa iResNet.

    The backbone runs once; the dropout before the final ``fc`` layer is then applied ``m`` times
    (rate ``p``, inverted scaling, seeded) to give m stochastic embeddings x_1..x_m, L2-normalised.
    Quality (Terhorst et al., CVPR 2020, eq. 2) = 2 * sigmoid(-(2 / m^2) * sum_{i<j} ||x_i - x_j||):
    1 for perfectly stable embeddings, lower as they spread.
    """
    import torch

    if not 0.0 < p < 1.0 or m < 2:
        raise ConfigError(f"serfiq needs m >= 2 and 0 < p < 1, got m={m}, p={p}")
    param = next(network.parameters())
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    with torch.inference_mode():
        x = torch.from_numpy(batch).to(device=param.device, dtype=param.dtype)
        x = network.prelu(network.bn1(network.conv1(x)))
        x = network.layer4(network.layer3(network.layer2(network.layer1(x))))
        hidden = torch.flatten(network.bn2(x), 1)
        embeddings = []
        for _ in range(m):
            keep = torch.rand(hidden.shape, generator=generator) >= p
            mask = keep.to(device=hidden.device, dtype=hidden.dtype) / (1.0 - p)
            out = network.features(network.fc(hidden * mask)).float()
            embeddings.append(torch.nn.functional.normalize(out, dim=1))
        stack = torch.stack(embeddings, dim=1)  # (B, m, F)
        distances = torch.cdist(stack, stack)  # (B, m, m), symmetric
        pair_sum = distances.sum(dim=(1, 2)) / 2.0
        quality = 2.0 * torch.sigmoid(-(2.0 / (m * m)) * pair_sum)
    return quality.cpu().numpy().astype(np.float64)


# --------------------------------------------------------------------------------------------------
# benchmark features


def benchmark_key(pairset: Any, source: str | os.PathLike[str] | None = None) -> str:
    """Cache key of a benchmark: its source files' signatures, sample names, pairs and labels."""
    parts: list[str | bytes] = [str(getattr(pairset, "name", "benchmark"))]
    if source is not None and Path(source).exists():
        parts.append(_file_signature(Path(source)))
    elif source is not None:
        parts.append(str(source))
    parts.append("\n".join(map(str, pairset.sample_names)))
    parts.append(np.ascontiguousarray(pairset.pairs, dtype=np.int64).tobytes())
    parts.append(np.ascontiguousarray(pairset.mated, dtype=bool).tobytes())
    for attr in ("sample_template", "sample_media"):
        value = getattr(pairset, attr, None)
        parts.append(b"" if value is None else np.asarray(value, dtype=np.int64).tobytes())
    return _digest(*parts)


def _iter_batches(
    pairset: Any, batch_size: int, workers: int | None, sizes: set[tuple[int, int]] | None = None
) -> Iterable[tuple[np.ndarray, np.ndarray, list[tuple[int, str]]]]:
    """Yield (sample indices, uint8 images (B, S, S, 3), failures [(index, message)]); the
    (height, width) of every decoded image is added to ``sizes``."""
    from igfiqa.inference.pipeline import batched, ordered_map

    def load(index: int) -> np.ndarray:
        image = np.asarray(pairset.load_sample(index))
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise DataError(f"sample {index}: expected uint8 (H, W, 3), got {image.shape}")
        return image

    outcomes = ordered_map(load, range(pairset.num_samples), workers=workers, window=4 * batch_size)
    for group in batched(outcomes, batch_size):
        ok = [o for o in group if o.error is None]
        failures = [(int(o.item), str(o.error)) for o in group if o.error is not None]
        if ok:
            shapes = {o.value.shape for o in ok}
            if sizes is not None:
                sizes.update(shape[:2] for shape in shapes)
            if len(shapes) > 1:
                import cv2

                side = ok[0].value.shape[0]
                images = np.stack(
                    [cv2.resize(o.value, (side, side), interpolation=cv2.INTER_AREA) for o in ok]
                )
            else:
                images = np.stack([o.value for o in ok])
            yield np.array([o.item for o in ok], dtype=np.int64), images, failures
        else:
            yield np.zeros(0, np.int64), np.zeros((0, 1, 1, 3), np.uint8), failures


Consumer = Callable[[np.ndarray], np.ndarray]


def image_pass(
    pairset: Any,
    consumers: Mapping[str, tuple[Consumer, int]],
    *,
    batch_size: int = 64,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    sizes: set[tuple[int, int]] | None = None,
) -> tuple[dict[str, np.ndarray], dict[int, str]]:
    """Decode every sample once and feed each batch to every consumer (the decoded images'
    (height, width) are added to ``sizes``).

    ``consumers[name] = (function, width)``: function(uint8 (B, S, S, 3)) -> (B, width) or (B,).
    Returns per-consumer arrays (num_samples, width) (NaN rows for failed samples) and the failures
    {sample index: message}.
    """
    n = int(pairset.num_samples)
    out = {
        name: np.full(
            (n, width) if width > 1 else n, np.nan, dtype=np.float32 if width > 1 else np.float64
        )
        for name, (_, width) in consumers.items()
    }
    failures: dict[int, str] = {}
    done = 0
    for index, images, failed in _iter_batches(pairset, batch_size, workers, sizes):
        failures.update(failed)
        if len(index):
            for name, (function, width) in consumers.items():
                values = np.asarray(function(images))
                if width > 1 and (values.ndim != 2 or values.shape != (len(index), width)):
                    raise CheckpointError(
                        f"{name}: expected output ({len(index)}, {width}), got {values.shape}"
                    )
                out[name][index] = values.reshape(len(index), -1)[:, 0] if width == 1 else values
        done += len(index) + len(failed)
        if progress is not None:
            progress(done, n)
    return out, failures


def _feature_width(model: FRModel, pairset: Any) -> int:
    """Embedding width, from one forward pass on the first loadable sample."""
    for i in range(min(int(pairset.num_samples), 50)):
        try:
            image = np.asarray(pairset.load_sample(i))
        except DataError:
            continue
        return int(np.asarray(model.embed(image[None])).shape[-1])
    raise DataError("none of the first 50 samples of the benchmark could be loaded")


def image_features(embedding: np.ndarray, flipped: np.ndarray | None, flip: str) -> np.ndarray:
    """Per-image feature for comparison: ``none``, ``sum`` (emb + emb_f) or ``concat`` (CR-FIQA)."""
    if flip == "none":
        return embedding
    if flipped is None:
        raise ConfigError(f"flip={flip!r} needs the flipped embeddings")
    if flip == "sum":
        return embedding + flipped
    if flip == "concat":
        return np.concatenate([_normalise(embedding), _normalise(flipped)], axis=1)
    raise ConfigError(f"flip must be auto, none, concat or sum; got {flip!r}")


def _normalise(features: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(features, axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (features / norm).astype(np.float32)


def template_features(
    features: np.ndarray, sample_template: np.ndarray, sample_media: np.ndarray | None
) -> np.ndarray:
    """IJB template features: mean over the images of each media, summed over the template's media.

    Images with non-finite features (failed) are left out; a template without any valid image gets
    NaN. Returns (T, F), not normalised.
    """
    template = np.asarray(sample_template, dtype=np.int64)
    media = np.zeros_like(template) if sample_media is None else np.asarray(sample_media, np.int64)
    valid = np.isfinite(features).all(axis=1)
    num_templates = int(template.max()) + 1 if template.size else 0
    groups, group_of = np.unique(
        np.stack([template[valid], media[valid]], 1), axis=0, return_inverse=True
    )
    group_of = group_of.reshape(-1)
    sums = np.zeros((len(groups), features.shape[1]), dtype=np.float64)
    np.add.at(sums, group_of, features[valid].astype(np.float64))
    counts = np.bincount(group_of, minlength=len(groups))
    means = sums / counts[:, None]
    out = np.zeros((num_templates, features.shape[1]), dtype=np.float64)
    np.add.at(out, groups[:, 0], means)
    out[np.bincount(groups[:, 0], minlength=num_templates) == 0] = np.nan
    return out.astype(np.float32)


def pair_similarity(
    features: np.ndarray, pairs: np.ndarray, chunk: int = _CHUNK, block: int | None = None
) -> np.ndarray:
    """Cosine similarity of each pair of rows of ``features`` (L2-normalised here).

    Sparse pairs: gather both rows and take a row-wise dot product, in chunks of ``chunk`` pairs.
    Dense pairs (more than about T^2 / 200 pairs of T rows, e.g. IJB-C's 15.6M pairs of 23k
    templates): pairs are bucketed by (row block, row block) and each bucket is served from one
    matrix product of two blocks of ``block`` rows, which is far cheaper than gathering rows.
    ``block`` forces the blocked method with that block size.
    """
    unit = _normalise(np.asarray(features, dtype=np.float32))
    pairs = np.asarray(pairs, dtype=np.int64)
    out = np.empty(len(pairs), dtype=np.float32)
    rows = len(unit)
    if block is None and len(pairs) * 200 > rows * rows and rows > 4096:
        block = 2048
    if block is None:
        for start in range(0, len(pairs), chunk):
            a = unit[pairs[start : start + chunk, 0]]
            b = unit[pairs[start : start + chunk, 1]]
            out[start : start + chunk] = np.einsum("ij,ij->i", a, b)
        return out
    num_blocks = -(-rows // block)
    first, second = pairs[:, 0], pairs[:, 1]
    bucket = (first // block) * num_blocks + second // block
    order = np.argsort(bucket)
    bucket = bucket[order]
    bounds = np.concatenate(([0], np.flatnonzero(bucket[1:] != bucket[:-1]) + 1, [len(order)]))
    for start, stop in itertools.pairwise(bounds):
        if start == stop:
            continue
        i, j = divmod(int(bucket[start]), num_blocks)
        products = unit[i * block : (i + 1) * block] @ unit[j * block : (j + 1) * block].T
        index = order[start:stop]
        out[index] = products[first[index] - i * block, second[index] - j * block]
    return out


# --------------------------------------------------------------------------------------------------
# the runner


@dataclass
class RunOutput:
    """Everything one (benchmark, FR model) run produced, before and after evaluation."""

    result: BenchmarkResult
    similarity: np.ndarray
    qualities: dict[str, np.ndarray]
    failed_samples: dict[int, str]


class BenchmarkRunner:
    """Compute (or load from cache) embeddings, similarities and qualities of one benchmark.

    ``pairset`` follows :class:`igfiqa.data.benchmarks.PairSet`: ``name``, ``num_samples``,
    ``load_sample(i)``, ``sample_names``, ``pairs``, ``mated`` and optionally ``sample_template``,
    ``sample_media``, ``ground_truth_quality``. ``name`` overrides the benchmark's name in results;
    ``source`` (the benchmark path) enters the cache key.
    """

    def __init__(
        self,
        pairset: Any,
        *,
        name: str | None = None,
        source: str | os.PathLike[str] | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        batch_size: int = 64,
        workers: int | None = None,
        device: str = "auto",
        log: Callable[[str], None] | None = None,
        progress: bool = False,
    ) -> None:
        self.pairset = pairset
        self.progress = progress
        self.name = name or str(getattr(pairset, "name", "benchmark"))
        self.batch_size = int(batch_size)
        self.workers = workers
        self.device = device
        self.log = log or (lambda message: None)
        self.key = benchmark_key(pairset, source)
        self.cache = (
            None if cache_dir is None else Path(cache_dir) / f"{slug(self.name)}-{self.key}"
        )
        self.sample_template = getattr(pairset, "sample_template", None)
        self.sample_media = getattr(pairset, "sample_media", None)
        self.failed: dict[int, str] = {}
        self.image_sizes: set[tuple[int, int]] = set()

    # -- cache helpers ---------------------------------------------------------------------------
    def _path(self, kind: str, key: str | None, suffix: str = ".npz") -> Path | None:
        if self.cache is None or key is None:
            return None
        return self.cache / f"{kind}-{key}{suffix}"

    def _record_failures(self, failures: Mapping[int, str]) -> None:
        for index, message in failures.items():
            if index not in self.failed:
                self.failed[index] = message
                self.log(f"{self.name}: sample {index} failed: {message}")

    # -- computations ---------------------------------------------------------------------------
    def compute(
        self,
        model: FRModel,
        methods: Sequence[QualityMethod],
        *,
        flip: str = "none",
    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Raw embeddings (``embedding``, ``flipped`` if needed) and per-sample model qualities.

        Everything missing from the cache is computed in ONE pass over the images.
        """
        need_flip = flip in ("sum", "concat")
        emb_path = self._path("embeddings", model.key)
        cached = _load_npz(emb_path) or {}
        if need_flip and "flipped" not in cached:
            cached = {}
        consumers: dict[str, tuple[Consumer, int]] = {}
        if "embedding" not in cached:
            width = _feature_width(model, self.pairset)
            consumers["embedding"] = (model.embed, width)
            if need_flip:
                consumers["flipped"] = (
                    lambda im: model.embed(np.ascontiguousarray(im[:, :, ::-1])),
                    width,
                )
        else:
            self._record_failures({int(i): "failed (cached)" for i in cached.get("failed", [])})
        method_paths: dict[str, Path | None] = {}
        qualities: dict[str, np.ndarray] = {}
        for method in methods:
            if method.kind not in _MODEL_RUN:
                continue
            key = self._method_key(method, model)
            path = self._path("quality", key)
            hit = _load_npz(path)
            if hit is not None:
                qualities[method.name] = hit["quality"]
                continue
            method_paths[method.name] = path
            consumers[f"quality:{method.name}"] = (self._quality_function(method, model), 1)
        if consumers:
            self.log(
                f"{self.name}: running {', '.join(consumers)} on {self.pairset.num_samples} images"
            )
            with ProgressBar(
                f"{self.name}: images", int(self.pairset.num_samples), enabled=self.progress
            ) as bar:
                out, failures = image_pass(
                    self.pairset,
                    consumers,
                    batch_size=self.batch_size,
                    workers=self.workers,
                    progress=lambda done, _total: bar.update(done),
                    sizes=self.image_sizes,
                )
            self._record_failures(failures)
            failed = np.array(sorted(failures), dtype=np.int64)
            if "embedding" in out:
                cached = {"embedding": out["embedding"], "failed": failed}
                if need_flip:
                    cached["flipped"] = out["flipped"]
                if emb_path is not None:
                    _save_npz(emb_path, **cached)
            for name, path in method_paths.items():
                qualities[name] = out[f"quality:{name}"]
                if path is not None:
                    _save_npz(path, quality=qualities[name])
        return cached, qualities

    def _method_key(self, method: QualityMethod, model: FRModel) -> str | None:
        """Cache key of a model-run quality method (None: not cached, e.g. a Python callable)."""
        if method.kind == "model":
            return _digest("model", _file_signature(method.path))
        if method.kind == "serfiq":
            base = _digest(_file_signature(method.path)) if method.path is not None else model.key
            if base is None:
                return None
            return _digest("serfiq", base, repr(sorted(method.options.items())))
        return None

    def _quality_function(self, method: QualityMethod, model: FRModel) -> Consumer:
        if method.kind == "model":
            from igfiqa.inference import load_model

            quality_model = load_model(method.path, device=self.device)
            size = int(quality_model.input_size)
            if not quality_model.has_quality_head:
                raise ConfigError(
                    f"{method.path} has no quality head: it cannot be a quality method"
                )
            return lambda images: quality_model.forward_batch(_prepare_batch(images, size))[1]
        if method.kind == "serfiq":
            network, size = model.network, model.input_size
            if method.path is not None:
                from igfiqa.inference import load_model

                other = load_model(method.path, device=self.device)
                network, size = getattr(other.runner, "network", None), int(other.input_size)
            if network is None or not hasattr(network, "fc"):
                raise ConfigError(
                    "serfiq needs an igfiqa iResNet (dropout before fc); the FR model "
                    f"{model.name!r} is not one: pass serfiq:model=PATH"
                )
            m = int(method.options.get("m", 10))
            p = float(method.options.get("p", getattr(network, "dropout_p", 0.0) or 0.5))
            seed = int(method.options.get("seed", 0))
            return lambda images: serfiq_quality(
                network, _prepare_batch(images, size), m=m, p=p, seed=seed
            )
        if method.kind == "callable":
            return method.function
        raise AssertionError(method.kind)

    def sample_qualities(
        self,
        methods: Sequence[QualityMethod],
        computed: Mapping[str, np.ndarray],
        emb: Mapping[str, np.ndarray],
    ) -> dict[str, np.ndarray]:
        """Per-sample quality of every method (model-run ones from ``computed``)."""
        n = int(self.pairset.num_samples)
        out: dict[str, np.ndarray] = {}
        for method in methods:
            if method.name in out:
                raise ConfigError(
                    f"two quality methods are named {method.name!r}: name them NAME=SPEC"
                )
            if method.name in computed:
                out[method.name] = np.asarray(computed[method.name], dtype=np.float64)
            elif method.kind == "random":
                rng = np.random.default_rng(int(method.options["seed"]))
                out[method.name] = rng.random(n)
            elif method.kind == "oracle":
                truth = getattr(self.pairset, "ground_truth_quality", None)
                if truth is None:
                    raise ConfigError(
                        f"quality 'oracle' needs ground-truth qualities, which {self.name} does not "
                        "have (synthetic benchmarks do); the comparison-level and greedy sample-level "
                        "oracle lines are drawn as references anyway"
                    )
                out[method.name] = np.array(truth, dtype=np.float64)  # a copy: edited below
            elif method.kind == "embedding-norm":
                out[method.name] = np.linalg.norm(emb["embedding"].astype(np.float64), axis=1)
            elif method.kind == "csv":
                out[method.name] = read_quality_csv(method.path, list(self.pairset.sample_names))
            else:
                raise AssertionError(method.kind)
            if len(out[method.name]) != n:
                raise DataError(
                    f"quality {method.name!r}: {len(out[method.name])} values for {n} samples"
                )
        return out

    def similarity(self, model: FRModel, emb: Mapping[str, np.ndarray], flip: str) -> np.ndarray:
        """Comparison scores of all pairs (cached per FR model and flip recipe)."""
        path = self._path(
            "similarity", None if model.key is None else _digest(model.key, flip), ".npz"
        )
        hit = _load_npz(path)
        if hit is not None:
            return hit["similarity"]
        features = image_features(emb["embedding"], emb.get("flipped"), flip)
        if self.sample_template is not None:
            features = template_features(features, self.sample_template, self.sample_media)
        similarity = pair_similarity(features, self.pairset.pairs)
        if path is not None:
            _save_npz(path, similarity=similarity)
        return similarity

    def unit_qualities(self, sample_quality: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Per-sample qualities -> per-template (min over images) for template benchmarks."""
        if self.sample_template is None:
            return dict(sample_quality)
        template = np.asarray(self.sample_template, dtype=np.int64)
        count = int(template.max()) + 1
        out = {}
        for name, q in sample_quality.items():
            q = np.where(np.isfinite(q), q, np.inf)  # failed images do not lower a template
            tq = edc.template_quality(q, template, count)
            tq[~np.isfinite(tq)] = np.nan
            out[name] = tq
        return out

    def run(
        self,
        fr_model: Any,
        qualities: Sequence[Any],
        *,
        flip: Flip = "auto",
        fmrs: Sequence[float] = DEFAULT_FMRS,
        limits: Sequence[float] = DEFAULT_LIMITS,
        erc_ratios: np.ndarray = edc.DEFAULT_ERC_RATIOS,
        erc_rule: edc.ErcRule = "crfiqa",
        pair_reduce: edc.PairReduce = "min",
    ) -> RunOutput:
        """Evaluate quality methods (specs or :class:`QualityMethod`) with one FR model."""
        model = load_fr_model(fr_model, device=self.device)
        methods = [q if isinstance(q, QualityMethod) else parse_quality_spec(q) for q in qualities]
        if flip == "auto":
            flip = "sum" if self.sample_template is not None else "none"
        emb, computed = self.compute(model, methods, flip=flip)
        similarity = self.similarity(model, emb, flip)
        sample_q = self.sample_qualities(methods, computed, emb)
        failed = np.array(sorted(self.failed), dtype=np.int64)
        for q in sample_q.values():
            q[failed] = np.nan
        units = self.unit_qualities(sample_q)
        fr_label = model.name + ("" if flip == "none" else f" (flip {flip})")
        result = evaluate_scores(
            similarity,
            np.asarray(self.pairset.mated, dtype=bool),
            units,
            pairs=self.pairset.pairs,
            fmrs=fmrs,
            limits=limits,
            erc_ratios=erc_ratios,
            erc_rule=erc_rule,
            pair_reduce=pair_reduce,
            benchmark=self.name,
            fr_model=fr_label,
        )
        side = int(getattr(model, "input_size", 0) or 0)
        resized = sorted(size for size in self.image_sizes if size != (side, side))
        if side and resized:
            shown = ", ".join(f"{w}x{h}" for h, w in resized[:4])
            result.warnings.insert(
                0,
                f"{self.name}: images of {shown}{' ...' if len(resized) > 4 else ''} were resized "
                f"to {side}x{side} for {model.name} (area interpolation, aspect ratio ignored); "
                "give aligned crops of that size for exact results",
            )
        if self.failed:
            examples = [self.pairset.sample_names[i] for i in sorted(self.failed)[:5]]
            result.warnings.insert(
                0, f"{self.name}: {len(self.failed)} images failed to load, e.g. {examples}"
            )
        return RunOutput(result, similarity, sample_q, dict(self.failed))
