"""Verification benchmarks as one structure, :class:`PairSet`, read from their native formats.

``open_benchmark(kind, path)`` with ``kind`` one of:

- ``bin``: an insightface verification ``.bin`` (lfw, agedb_30, cfp_fp, ...), read through a restricted
  unpickler (:func:`load_verification_bin`); pair i = images 2i and 2i + 1.
- ``xqlfw``: a folder with ``xqlfw_pairs.txt`` and ``xqlfw_aligned_112/<name>/<name>_<n:04d>.jpg``
  (``path`` may also be the pairs file itself).
- ``ijbb`` / ``ijbc``: the ``IJBB`` / ``IJBC`` folder (``loose_crop/`` and ``meta/``); samples are the
  loose crops aligned lazily with their five landmarks; ``pairs`` index *templates*.
- ``folder``: every pair of a labelled folder ``root/<identity>/<image>`` (mated: same identity),
  with the non-mated pairs capped (see :func:`all_pairs`).
- ``synthetic``: a ``synthetic:...`` spec (see :mod:`igfiqa.data.synthetic`) over held-out identities
  (``first_identity`` defaults to :data:`HELD_OUT_FIRST_IDENTITY`), all pairs as for ``folder``, with the
  generator's ground-truth qualities.
"""

from __future__ import annotations

import io
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from igfiqa.data.decode import decode_image
from igfiqa.errors import ConfigError, DataError, UnsafePickleError
from igfiqa.files import MAX_TABLE_BYTES, read_regular_file, read_text_file

HELD_OUT_FIRST_IDENTITY = 1_000_000
"""First identity of the synthetic benchmark unless its spec says otherwise (far from training ids)."""

DEFAULT_MAX_NONMATED = 2_000_000
"""Default cap on non-mated pairs for ``folder`` / ``synthetic`` benchmarks."""

BENCHMARK_KINDS = ("bin", "xqlfw", "ijbb", "ijbc", "folder", "synthetic")


@dataclass
class PairSet:
    """Samples, and pairs of samples (or of templates) with mated / non-mated labels.

    - ``sample_names`` (N,): a name per sample (file name or ``<file>[i]``).
    - ``pairs`` (P, 2) int64: indices into the samples, or, when ``sample_template`` is set, into the
      templates ``0 .. num_templates - 1`` (the original ids are in ``template_ids``).
    - ``mated`` (P,) bool.
    - ``sample_template`` / ``sample_media`` (N,) int64: template and media *index* of each sample
      (template benchmarks only).
    - ``sample_labels`` (N,) int64: identity of each sample, when known.
    - ``ground_truth_quality`` (N,) float: synthetic benchmarks only.
    """

    name: str
    sample_names: list[str]
    pairs: np.ndarray
    mated: np.ndarray
    images: Any  # an object with .load(i) -> RGB uint8 (picklable)
    sample_template: np.ndarray | None = None
    sample_media: np.ndarray | None = None
    template_ids: np.ndarray | None = None
    sample_labels: np.ndarray | None = None
    ground_truth_quality: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.pairs = np.asarray(self.pairs, dtype=np.int64).reshape(-1, 2)
        self.mated = np.asarray(self.mated, dtype=bool).reshape(-1)
        if len(self.pairs) != len(self.mated):
            raise DataError(
                f"{self.name}: {len(self.pairs)} pairs but {len(self.mated)} mated labels"
            )
        limit = self.num_templates if self.sample_template is not None else self.num_samples
        if self.pairs.size and (self.pairs.min() < 0 or self.pairs.max() >= limit):
            raise DataError(f"{self.name}: pair indices outside 0..{limit - 1}")

    @property
    def num_samples(self) -> int:
        """Number of samples (images)."""
        return len(self.sample_names)

    @property
    def num_templates(self) -> int:
        """Number of templates (0 when pairs index samples)."""
        if self.sample_template is None:
            return 0
        return int(self.sample_template.max()) + 1 if len(self.sample_template) else 0

    def load_sample(self, index: int) -> np.ndarray:
        """Sample ``index`` as an aligned RGB uint8 image."""
        if not 0 <= index < self.num_samples:
            raise IndexError(f"{self.name}: sample {index} out of range 0..{self.num_samples - 1}")
        return self.images.load(int(index))

    def describe(self) -> dict[str, Any]:
        """A JSON-able summary."""
        return {
            "name": self.name,
            "samples": self.num_samples,
            "pairs": len(self.pairs),
            "mated_pairs": int(self.mated.sum()),
            "templates": self.num_templates,
            **self.info,
        }


# -- sample loaders (top-level classes so that PairSets pickle into workers) ------------------------


class EncodedImages:
    """Samples held as encoded bytes (``.bin``)."""

    def __init__(self, encoded: list, source: str) -> None:
        self.encoded = encoded
        self.source = source

    def load(self, index: int) -> np.ndarray:
        return decode_image(self.encoded[index], name=f"{self.source}[{index}]")


class FileImages:
    """Samples held as image files (aligned already)."""

    def __init__(self, paths: list[str]) -> None:
        self.paths = paths

    def load(self, index: int) -> np.ndarray:
        return decode_image(self.paths[index])


class LandmarkAlignedImages:
    """Samples held as loose crops plus five landmarks; aligned to 112x112 on load."""

    def __init__(self, paths: list[str], landmarks: np.ndarray) -> None:
        self.paths = paths
        self.landmarks = landmarks

    def load(self, index: int) -> np.ndarray:
        from igfiqa.data.align import align_face

        return align_face(decode_image(self.paths[index]), self.landmarks[index])


class SyntheticImages:
    """Samples rendered by a :class:`~igfiqa.data.synthetic.SyntheticFaces` generator."""

    def __init__(self, faces: Any) -> None:
        self.faces = faces

    def load(self, index: int) -> np.ndarray:
        return self.faces.render(*self.faces.locate(index))[0]


# -- insightface .bin ------------------------------------------------------------------------------

_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),  # how protocol-2 pickles written by Python 3 store bytes
    ("builtins", "bytearray"),
    ("__builtin__", "bytearray"),
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Allows tuples, lists, bytes, bools and numpy's array reconstruction; refuses every other
    global (``os.system``, ``builtins.eval``, any class ``__reduce__`` would call)."""

    def __init__(self, file: Any, source: str) -> None:
        super().__init__(file, encoding="bytes")
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise UnsafePickleError(
                f"{self.source}: the pickle wants to load {module}.{name}, which a verification "
                "file never needs (it may try to run code); refused. Only use .bin files you trust"
            )
        return super().find_class(module, name)

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(f"{self.source}: persistent ids are not allowed in a .bin file")


def restricted_unpickle(data: bytes, source: str = "<pickle>") -> Any:
    """Unpickle ``data`` allowing only plain containers, bytes, bools and uint8 numpy arrays."""
    try:
        return _RestrictedUnpickler(io.BytesIO(data), source).load()
    except UnsafePickleError:
        raise
    except Exception as error:
        raise DataError(
            f"{source}: not a readable pickle ({type(error).__name__}: {error})"
        ) from None


def load_verification_bin(path: str | os.PathLike[str]) -> tuple[list, np.ndarray]:
    """Read an insightface ``.bin``: (encoded images, issame (P,) bool) with len(images) == 2P."""
    path = Path(path)
    data = read_regular_file(path, f"{path} (verification file)", MAX_TABLE_BYTES)
    loaded = restricted_unpickle(data, str(path))
    if not isinstance(loaded, (tuple, list)) or len(loaded) != 2:
        raise DataError(
            f"{path}: expected a pickled (bins, issame_list) pair, got {type(loaded).__name__}"
        )
    bins, issame = loaded
    if not isinstance(bins, (list, tuple)) or not isinstance(issame, (list, tuple, np.ndarray)):
        raise DataError(f"{path}: bins and issame_list must be sequences")
    for i, item in enumerate(bins):
        ok = isinstance(item, (bytes, bytearray, memoryview)) or (
            isinstance(item, np.ndarray) and item.dtype == np.uint8 and item.ndim == 1
        )
        if not ok:
            raise DataError(
                f"{path}: image {i} is a {type(item).__name__}, not encoded image bytes"
            )
    if not all(isinstance(v, (bool, np.bool_)) or v in (0, 1) for v in issame):
        raise DataError(f"{path}: issame_list must hold booleans")
    mated = np.asarray([bool(v) for v in issame], dtype=bool)
    if len(bins) != 2 * len(mated):
        raise DataError(
            f"{path}: {len(bins)} images for {len(mated)} pairs (expected {2 * len(mated)})"
        )
    return list(bins), mated


def open_bin(path: str | os.PathLike[str]) -> PairSet:
    """An insightface verification ``.bin`` as a PairSet (pair i = samples 2i, 2i+1)."""
    path = Path(path)
    bins, mated = load_verification_bin(path)
    pairs = np.arange(len(bins), dtype=np.int64).reshape(-1, 2)
    names = [f"{path.name}[{i}]" for i in range(len(bins))]
    return PairSet(path.stem, names, pairs, mated, EncodedImages(bins, str(path)))


# -- XQLFW -----------------------------------------------------------------------------------------


def open_xqlfw(path: str | os.PathLike[str]) -> PairSet:
    """XQLFW: ``xqlfw_pairs.txt`` (LFW pairs format) + ``xqlfw_aligned_112/<name>/<name>_<n:04d>.jpg``."""
    path = Path(path)
    pairs_file = path if path.is_file() else path / "xqlfw_pairs.txt"
    root = pairs_file.parent
    image_root = root / "xqlfw_aligned_112"
    if not pairs_file.is_file():
        raise DataError(f"{pairs_file}: XQLFW pairs file not found")
    if not image_root.is_dir():
        raise DataError(
            f"{image_root}: XQLFW aligned image folder not found next to the pairs file"
        )
    index: dict[tuple[str, int], int] = {}
    pair_rows: list[tuple[int, int]] = []
    mated: list[bool] = []

    def sample(name: str, number: str, line_no: int) -> int:
        try:
            key = (name, int(number))
        except ValueError:
            raise DataError(
                f"{pairs_file}, line {line_no}: {number!r} is not an image number"
            ) from None
        return index.setdefault(key, len(index))

    lines = read_text_file(pairs_file).splitlines()
    for line_no, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields:
            continue
        if line_no == 1 and len(fields) <= 2:
            continue  # header ("folds pairs_per_fold")
        if len(fields) == 3:
            pair_rows.append(
                (sample(fields[0], fields[1], line_no), sample(fields[0], fields[2], line_no))
            )
            mated.append(True)
        elif len(fields) == 4:
            pair_rows.append(
                (sample(fields[0], fields[1], line_no), sample(fields[2], fields[3], line_no))
            )
            mated.append(False)
        else:
            raise DataError(
                f"{pairs_file}, line {line_no}: expected 'name n1 n2' or 'name1 n1 name2 n2', got {line!r}"
            )
    if not pair_rows:
        raise DataError(f"{pairs_file}: no pairs")
    paths = [str(image_root / name / f"{name}_{number:04d}.jpg") for name, number in index]
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise DataError(
            f"XQLFW: {len(missing)} image(s) listed in {pairs_file} are missing, e.g. {missing[0]}"
        )
    return PairSet("xqlfw", paths, np.asarray(pair_rows), np.asarray(mated), FileImages(paths))


# -- IJB-B / IJB-C ---------------------------------------------------------------------------------


def _read_int_table(path: Path, columns: int) -> np.ndarray:
    """A whitespace-separated integer table, parsed in C (a 15M-line pair file in seconds)."""
    import warnings

    text = read_regular_file(path, max_bytes=MAX_TABLE_BYTES).decode("ascii", errors="replace")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # numpy warns (then stops) at the first non-number
            values = np.fromstring(text, dtype=np.int64, sep=" ")
    except (ValueError, DeprecationWarning):
        raise DataError(
            f"{path}: expected {columns} integers per line, found something else"
        ) from None
    if values.size % columns:
        raise DataError(f"{path}: expected {columns} integers per line")
    return values.reshape(-1, columns)


def open_ijb(path: str | os.PathLike[str], kind: str = "ijbc") -> PairSet:
    """IJB-B / IJB-C 1:1 verification: templates, media, template pairs and landmarks."""
    root = Path(path)
    prefix = kind.lower()
    meta = root / "meta"
    crops = root / "loose_crop"
    for folder in (meta, crops):
        if not folder.is_dir():
            raise DataError(
                f"{folder}: not found; pass the {prefix.upper()} folder with loose_crop/ and meta/"
            )
    landmark_file = meta / f"{prefix}_name_5pts_score.txt"
    tid_file = meta / f"{prefix}_face_tid_mid.txt"
    pair_file = meta / f"{prefix}_template_pair_label.txt"
    names: list[str] = []
    rows: list[list[str]] = []
    landmark_lines = read_text_file(landmark_file, max_bytes=MAX_TABLE_BYTES).splitlines()
    for line_no, line in enumerate(landmark_lines, start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 12:
            raise DataError(
                f"{landmark_file}, line {line_no}: expected 'image x1 y1 ... x5 y5 score', got {len(fields)} fields"
            )
        names.append(fields[0])
        rows.append(fields[1:])
    try:
        table = np.asarray(rows, dtype=np.float64)
    except ValueError:
        raise DataError(f"{landmark_file}: landmarks and scores must be numbers") from None
    landmarks = table[:, :10].reshape(-1, 5, 2)
    scores = table[:, 10]
    tid_rows = []
    for line_no, line in enumerate(
        read_text_file(tid_file, max_bytes=MAX_TABLE_BYTES).splitlines()
        if tid_file.is_file()
        else [],
        1,
    ):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 3:
            raise DataError(f"{tid_file}, line {line_no}: expected 'image template_id media_id'")
        tid_rows.append(fields)
    if not tid_file.is_file():
        raise DataError(f"{tid_file}: file not found")
    if len(tid_rows) != len(names):
        raise DataError(
            f"{tid_file}: {len(tid_rows)} lines but {landmark_file.name} has {len(names)}"
        )
    if any(r[0] != n for r, n in zip(tid_rows, names, strict=True)):
        raise DataError(
            f"{tid_file}: image names are not in the same order as in {landmark_file.name}"
        )
    try:
        template_raw = np.asarray([int(r[1]) for r in tid_rows], dtype=np.int64)
        media_raw = np.asarray([int(r[2]) for r in tid_rows], dtype=np.int64)
    except ValueError:
        raise DataError(f"{tid_file}: template and media ids must be integers") from None
    template_ids, sample_template = np.unique(template_raw, return_inverse=True)
    _, sample_media = np.unique(media_raw, return_inverse=True)
    table3 = _read_int_table(pair_file, 3)
    position = np.searchsorted(template_ids, table3[:, :2])
    position = np.clip(position, 0, len(template_ids) - 1)
    if not (template_ids[position] == table3[:, :2]).all():
        bad = table3[:, :2][template_ids[position] != table3[:, :2]][0]
        raise DataError(f"{pair_file}: template {bad} has no images in {tid_file.name}")
    if not np.isin(table3[:, 2], (0, 1)).all():
        raise DataError(f"{pair_file}: labels must be 0 or 1")
    paths = [str(crops / name) for name in names]
    return PairSet(
        prefix,
        paths,
        position,
        table3[:, 2].astype(bool),
        LandmarkAlignedImages(paths, landmarks),
        sample_template=sample_template.astype(np.int64),
        sample_media=sample_media.astype(np.int64),
        template_ids=template_ids,
        info={"detector_score": scores},
    )


# -- all pairs of a labelled set -------------------------------------------------------------------


def all_pairs(
    labels: np.ndarray, *, max_nonmated: int | None = DEFAULT_MAX_NONMATED, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Every pair ``i < j`` of a labelled set, mated iff ``labels[i] == labels[j]``.

    All mated pairs are kept. If there are more than ``max_nonmated`` non-mated pairs, a uniform
    random subset of about that many (without repetition, reproducible from ``seed``) is kept instead.
    Pairs come sorted by (i, j). Vectorised; no Python loop over pairs.
    """
    labels = np.asarray(labels)
    n = len(labels)
    total = n * (n - 1) // 2
    counts = np.unique(labels, return_counts=True)[1]
    num_mated = int((counts * (counts - 1) // 2).sum())
    num_nonmated = total - num_mated
    if max_nonmated is None or num_nonmated <= max_nonmated:
        i, j = np.triu_indices(n, k=1)
        return np.stack([i, j], 1).astype(np.int64), labels[i] == labels[j]
    # Mated pairs: within each class (grouped by a stable sort of the labels).
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    starts = np.flatnonzero(np.r_[True, sorted_labels[1:] != sorted_labels[:-1]])
    sizes = np.diff(np.r_[starts, n])
    mated_parts = []
    for start, size in zip(starts[sizes > 1], sizes[sizes > 1], strict=True):
        a, b = np.triu_indices(int(size), k=1)
        mated_parts.append(np.stack([order[start + a], order[start + b]], 1))
    mated_pairs = np.concatenate(mated_parts) if mated_parts else np.empty((0, 2), np.int64)
    mated_pairs = np.sort(mated_pairs, axis=1)
    # Non-mated pairs: sample linear upper-triangle indices, keep those with different labels.
    rng = np.random.default_rng(seed)
    share = num_nonmated / total
    draw = min(total, int(max_nonmated / share * 1.05) + 16)
    linear = rng.choice(total, size=draw, replace=False)  # in random order
    i, j = _triangle_index(linear, n)
    keep = labels[i] != labels[j]
    i, j = i[keep][:max_nonmated], j[keep][:max_nonmated]
    pairs = np.concatenate([mated_pairs, np.stack([i, j], 1)]).astype(np.int64)
    mated = np.r_[np.ones(len(mated_pairs), bool), np.zeros(len(i), bool)]
    order = np.lexsort((pairs[:, 1], pairs[:, 0]))
    return pairs[order], mated[order]


def _triangle_index(k: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Row-major linear index of the strict upper triangle of an n x n matrix -> (i, j)."""
    k = k.astype(np.int64)
    i = (n - 2 - np.floor(np.sqrt(-8.0 * k + 4.0 * n * (n - 1) - 7) / 2.0 - 0.5)).astype(np.int64)
    row_start = i * n - i * (i + 1) // 2  # linear index of (i, i + 1)
    # Guard the float rounding at row boundaries.
    too_far = k < row_start
    i[too_far] -= 1
    row_start = i * n - i * (i + 1) // 2
    next_start = (i + 1) * n - (i + 1) * (i + 2) // 2
    too_short = k >= next_start
    i[too_short] += 1
    row_start = i * n - i * (i + 1) // 2
    j = k - row_start + i + 1
    return i, j


def open_labelled_folder(
    path: str | os.PathLike[str], *, max_nonmated: int | None = DEFAULT_MAX_NONMATED, seed: int = 0
) -> PairSet:
    """All pairs of an aligned identity folder ``root/<identity>/<image>``."""
    from igfiqa.data.datasets import scan_identity_folder

    paths, owners, identities = scan_identity_folder(path)
    ids = {name: i for i, name in enumerate(identities)}
    labels = np.asarray([ids[o] for o in owners], dtype=np.int64)
    pairs, mated = all_pairs(labels, max_nonmated=max_nonmated, seed=seed)
    if not mated.any():
        raise DataError(f"{path}: no identity has two images, so there is no mated pair")
    names = [str(p) for p in paths]
    return PairSet(
        Path(path).name,
        names,
        pairs,
        mated,
        FileImages(names),
        sample_labels=labels,
        info={"identities": len(identities)},
    )


def open_synthetic_benchmark(
    spec: str, *, max_nonmated: int | None = DEFAULT_MAX_NONMATED, seed: int = 0
) -> PairSet:
    """All pairs over held-out synthetic identities, with ground-truth qualities."""
    from igfiqa.data.synthetic import synthetic_from_spec

    if "first_identity" not in spec:
        sep = "," if ":" in spec and not spec.rstrip().endswith(":") else ""
        spec = spec + (sep if ":" in spec else ":") + f"first_identity={HELD_OUT_FIRST_IDENTITY}"
    faces = synthetic_from_spec(spec)
    if faces.samples_per_identity < 2:
        raise ConfigError(f"{spec}: a synthetic benchmark needs samples >= 2 per identity")
    labels = faces.labels
    pairs, mated = all_pairs(labels, max_nonmated=max_nonmated, seed=seed)
    quality = np.array(
        [faces.render(*faces.locate(i))[1] for i in range(len(faces))], dtype=np.float64
    )
    names = [
        f"synthetic/{identity}/{sample}"
        for identity, sample in map(faces.locate, range(len(faces)))
    ]
    low = np.array([faces.is_low_variance(int(i)) for i in faces.identities])
    return PairSet(
        "synthetic",
        names,
        pairs,
        mated,
        SyntheticImages(faces),
        sample_labels=labels,
        ground_truth_quality=quality,
        info={"identities": faces.num_identities, "low_variance_identities": int(low.sum())},
    )


def open_benchmark(kind: str, path: str | os.PathLike[str], **options: Any) -> PairSet:
    """Open a verification benchmark (see the module docstring for the kinds and layouts).

    Options: ``max_nonmated`` and ``seed`` for ``folder`` and ``synthetic``.
    """
    kind = kind.lower().replace("-", "")
    if kind == "auto":
        kind = _detect_kind(path)
    allowed = {"max_nonmated", "seed"} if kind in ("folder", "synthetic") else set()
    unknown = set(options) - allowed
    if unknown:
        raise ConfigError(f"open_benchmark({kind!r}): unknown option(s) {sorted(unknown)}")
    if kind == "synthetic":
        return open_synthetic_benchmark(str(path), **options)
    if not Path(path).exists():
        raise DataError(f"{path}: benchmark not found")
    if kind == "bin":
        return open_bin(path)
    if kind == "xqlfw":
        return open_xqlfw(path)
    if kind in ("ijbb", "ijbc"):
        return open_ijb(path, kind)
    if kind == "folder":
        return open_labelled_folder(path, **options)
    raise ConfigError(
        f"unknown benchmark kind {kind!r}; choose one of {', '.join(BENCHMARK_KINDS)} or auto"
    )


def _detect_kind(path: str | os.PathLike[str]) -> str:
    text = str(path)
    if text.lower().startswith("synthetic"):
        return "synthetic"
    p = Path(path)
    if p.suffix == ".bin":
        return "bin"
    if p.name == "xqlfw_pairs.txt" or (p / "xqlfw_pairs.txt").is_file():
        return "xqlfw"
    for prefix in ("ijbc", "ijbb"):
        if (p / "meta" / f"{prefix}_template_pair_label.txt").is_file():
            return prefix
    return "folder"


__all__ = [
    "BENCHMARK_KINDS",
    "DEFAULT_MAX_NONMATED",
    "HELD_OUT_FIRST_IDENTITY",
    "PairSet",
    "all_pairs",
    "load_verification_bin",
    "open_benchmark",
    "open_bin",
    "open_ijb",
    "open_labelled_folder",
    "open_synthetic_benchmark",
    "open_xqlfw",
    "restricted_unpickle",
]
