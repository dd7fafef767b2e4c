"""Run FR models and quality methods on a benchmark, with on-disk caches, and evaluate them.

* An **FR model** maps aligned uint8 RGB faces (B, S, S, 3) to embeddings (B, F)
  (:mod:`igfiqa.inference.fr_models`: igfiqa models, TorchScript, ONNX, Python callables).
* A **quality method** gives one score per sample (higher = better); each kind is one module of
  :mod:`igfiqa.evaluation.quality` (an igfiqa model, ``csv:PATH``, ``random``, ``ground-truth``,
  ``embedding-norm``, ``serfiq``). Methods that need the images run in the same decoding pass as
  the FR model.
* **Comparison scores** = cosine similarity of L2-normalised features. ``flip`` chooses the feature:
  ``none`` (emb(img)), ``concat`` (CR-FIQA: [emb/|emb|, emb_f/|emb_f|], cosine = mean of the two
  cosines), ``sum`` (emb(img) + emb(flipped img)); ``auto`` = ``sum`` for template benchmarks (the
  IJB recipe of docs/formats.md, "Benchmarks") and ``none`` otherwise. Templates: mean of the image
  features of each media, sum over the template's media, L2-normalise; template quality = min over
  its images.
* **Caches** (``cache_dir``): embeddings (raw and flipped), similarities and model quality scores
  are stored per benchmark and model as ``.npz`` files whose names carry a key derived from the
  path, size, mtime and ctime of every file the benchmark is read from (each image, in subfolders
  too, and its list / landmark files: an image replaced under the same name changes the key) and
  from the benchmark's sample names and pairs, so adding a quality method later only computes that
  method's scores.

Images that fail to load are recorded (``failed_samples``) and their pairs excluded, not fatal.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from igfiqa.data.pixels import RESIZE_POLICY, resize_to
from igfiqa.errors import CheckpointError, ConfigError, DataError
from igfiqa.evaluation import edc
from igfiqa.evaluation.quality import Consumer, QualityMethod, SampleContext, parse_quality_spec
from igfiqa.evaluation.report import slug
from igfiqa.evaluation.results import (
    DEFAULT_FMRS,
    DEFAULT_LIMITS,
    BenchmarkResult,
    evaluate_scores,
)
from igfiqa.evaluation.similarity import normalise_rows, pair_similarity
from igfiqa.files import (
    atomic_write,
    content_digest,
    file_signature,
    files_signature,
)
from igfiqa.inference.fr_models import FRModel, load_fr_model
from igfiqa.progress import ProgressBar

Flip = Literal["auto", "none", "concat", "sum"]
ImageFunction = Callable[[np.ndarray], np.ndarray]


# --------------------------------------------------------------------------------------------------
# keys and atomic cache files


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


# --------------------------------------------------------------------------------------------------
# benchmark features


def benchmark_key(
    pairset: Any,
    source: str | os.PathLike[str] | None = None,
    *,
    exclude: tuple[str | os.PathLike[str], ...] = (),
) -> str:
    """Cache key of a benchmark: the signature of every file it is read from, its sample names,
    pairs and labels, and the rule its images are resized by (``data.pixels.RESIZE_POLICY``).

    The files are those the reader lists in ``pairset.files`` (list and landmark files and every
    image, each by absolute path, size, mtime and ctime: replacing an image under the same name
    changes the key); when a pairset does not list them (``files`` missing or ``None``), every file
    below ``source`` at any depth (:func:`~igfiqa.files.file_signature`; folders in ``exclude``,
    such as the cache itself, left out). A ``source`` that is no path (a ``synthetic:...`` spec)
    enters as text.
    """
    parts: list[str | bytes] = [str(getattr(pairset, "name", "benchmark")), RESIZE_POLICY]
    files = getattr(pairset, "files", None)
    if files is not None:
        parts.append("" if source is None else os.path.abspath(source))
        parts.append(files_signature(files))
    elif source is not None and Path(source).exists():
        parts.append(file_signature(Path(source), exclude=exclude))
    elif source is not None:
        parts.append(str(source))
    parts.append("\n".join(map(str, pairset.sample_names)))
    parts.append(np.ascontiguousarray(pairset.pairs, dtype=np.int64).tobytes())
    parts.append(np.ascontiguousarray(pairset.mated, dtype=bool).tobytes())
    for attr in ("sample_template", "sample_media"):
        value = getattr(pairset, attr, None)
        parts.append(b"" if value is None else np.asarray(value, dtype=np.int64).tobytes())
    return content_digest(*parts)


def _iter_batches(
    pairset: Any,
    batch_size: int,
    workers: int | None,
    sizes: set[tuple[int, int]] | None = None,
    side: int | None = None,
) -> Iterable[tuple[np.ndarray, np.ndarray, list[tuple[int, str]]]]:
    """Yield (sample indices, uint8 images (B, S, S, 3), failures [(index, message)]); the
    (height, width) of every decoded image is added to ``sizes``. A batch of images of several
    sizes is brought to ``side`` x ``side`` by :func:`igfiqa.data.pixels.resize_to`, so an image
    comes out the same whatever shares its batch."""
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
                if side is None:
                    raise DataError(
                        f"images of {len(shapes)} sizes in one batch: pass side= (the model's "
                        "input side) to resize them"
                    )
                images = np.stack([resize_to(o.value, side) for o in ok])
            else:
                images = np.stack([o.value for o in ok])
            yield np.array([o.item for o in ok], dtype=np.int64), images, failures
        else:
            yield np.zeros(0, np.int64), np.zeros((0, 1, 1, 3), np.uint8), failures


def image_pass(
    pairset: Any,
    consumers: Mapping[str, tuple[Consumer, int]],
    *,
    batch_size: int = 64,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    sizes: set[tuple[int, int]] | None = None,
    side: int | None = None,
) -> tuple[dict[str, np.ndarray], dict[int, str]]:
    """Decode every sample once and feed each batch to every consumer (the decoded images'
    (height, width) are added to ``sizes``). Images of one size reach the consumers as decoded
    (each resizes to its own input); a batch mixing sizes is resized to ``side`` (the FR model's
    input side) first, by :func:`igfiqa.data.pixels.resize_to`.

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
    for index, images, failed in _iter_batches(pairset, batch_size, workers, sizes, side):
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
        return np.concatenate([normalise_rows(embedding), normalise_rows(flipped)], axis=1)
    raise ConfigError(f"flip must be auto, none, concat or sum; got {flip!r}")


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
        self.key = benchmark_key(pairset, source, exclude=() if cache_dir is None else (cache_dir,))
        self._log_sampled_pairs()
        self.cache = (
            None if cache_dir is None else Path(cache_dir) / f"{slug(self.name)}-{self.key}"
        )
        self.sample_template = getattr(pairset, "sample_template", None)
        self.sample_media = getattr(pairset, "sample_media", None)
        self.failed: dict[int, str] = {}
        self.image_sizes: set[tuple[int, int]] = set()

    def _log_sampled_pairs(self) -> None:
        """Say so when a reader kept a sample of the pairs (``folder`` / ``synthetic`` caps)."""
        info = getattr(self.pairset, "info", None) or {}
        for kind, label in (("mated", "mated"), ("nonmated", "non-mated")):
            available = info.get(f"{kind}_pairs_available")
            kept = info.get(f"{kind}_pairs_kept")
            if available is not None and kept is not None and kept < available:
                self.log(
                    f"{self.name}: {kept:,} of {available:,} {label} pairs, a uniform random "
                    f"sample (seed {info.get('pair_seed', 0)}; max_{kind} caps them)"
                )

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
            if not method.needs_images:
                continue
            key = method.cache_key(model)
            path = self._path("quality", key)
            hit = _load_npz(path)
            if hit is not None:
                qualities[method.name] = hit["quality"]
                continue
            method_paths[method.name] = path
            consumers[f"quality:{method.name}"] = (method.image_function(model, self.device), 1)
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
                    side=int(getattr(model, "input_size", 0) or 0) or None,
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

    def sample_qualities(
        self,
        methods: Sequence[QualityMethod],
        computed: Mapping[str, np.ndarray],
        emb: Mapping[str, np.ndarray],
    ) -> dict[str, np.ndarray]:
        """Per-sample quality of every method (model-run ones from ``computed``)."""
        n = int(self.pairset.num_samples)
        context = SampleContext(self.pairset, self.name, emb.get("embedding"))
        out: dict[str, np.ndarray] = {}
        for method in methods:
            if method.name in out:
                raise ConfigError(
                    f"two quality methods are named {method.name!r}: name them NAME=SPEC"
                )
            if method.name in computed:
                out[method.name] = np.asarray(computed[method.name], dtype=np.float64)
            else:
                out[method.name] = method.sample_quality(context)
            if len(out[method.name]) != n:
                raise DataError(
                    f"quality {method.name!r}: {len(out[method.name])} values for {n} samples"
                )
        return out

    def similarity(self, model: FRModel, emb: Mapping[str, np.ndarray], flip: str) -> np.ndarray:
        """Comparison scores of all pairs (cached per FR model and flip recipe)."""
        path = self._path(
            "similarity", None if model.key is None else content_digest(model.key, flip), ".npz"
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

    def unit_identity(self) -> np.ndarray | None:
        """The identity of every unit the pairs index (sample, or template: the identity of its
        first image), when the benchmark has identity labels (``sample_labels``); else None."""
        labels = getattr(self.pairset, "sample_labels", None)
        if labels is None:
            return None
        labels = np.asarray(labels)
        if self.sample_template is None:
            return labels
        template = np.asarray(self.sample_template, dtype=np.int64)
        first = np.full(int(template.max()) + 1, len(template))
        np.minimum.at(first, template, np.arange(len(template)))
        return labels[np.minimum(first, len(template) - 1)]

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
        fnmrs: Sequence[float] = (),
        fm_edc: bool = False,
        bootstrap: int = 0,
        bootstrap_seed: int = 0,
    ) -> RunOutput:
        """Evaluate quality methods (specs or :class:`QualityMethod`) with one FR model.

        ``fnmrs``, ``fm_edc``, ``bootstrap`` and ``bootstrap_seed`` as in
        :func:`~igfiqa.evaluation.results.evaluate_scores`; the bootstrap resamples the
        benchmark's identities where it has them (:meth:`unit_identity`)."""
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
        if bootstrap:
            self.log(f"{self.name}, {fr_label}: {bootstrap} bootstrap resamples of identities")
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
            fnmrs=fnmrs,
            fm_edc=fm_edc,
            bootstrap=bootstrap,
            bootstrap_seed=bootstrap_seed,
            unit_identity=self.unit_identity(),
        )
        if result.bootstrap:
            info = result.bootstrap
            self.log(
                f"{self.name}, {fr_label}: bootstrap over {info['num_units']} units "
                f"({info['unit']}) took {info['seconds']:.1f} s"
            )
        side = int(getattr(model, "input_size", 0) or 0)
        resized = sorted(size for size in self.image_sizes if size != (side, side))
        if side and resized:
            shown = ", ".join(f"{w}x{h}" for h, w in resized[:4])
            result.warnings.insert(
                0,
                f"{self.name}: images of {shown}{' ...' if len(resized) > 4 else ''} were resized "
                f"to {side}x{side} for {model.name} (area to shrink, bilinear to enlarge, aspect "
                "ratio ignored); give aligned crops of that size for exact results",
            )
        if self.failed:
            examples = [self.pairset.sample_names[i] for i in sorted(self.failed)[:5]]
            result.warnings.insert(
                0, f"{self.name}: {len(self.failed)} images failed to load, e.g. {examples}"
            )
        return RunOutput(result, similarity, sample_q, dict(self.failed))
