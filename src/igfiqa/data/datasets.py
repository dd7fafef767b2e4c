"""Training datasets: insightface RecordIO, identity folders, list files and synthetic faces.

Every dataset is a :class:`FaceDataset` (a ``torch.utils.data.Dataset``) giving
``(image float32 (3, S, S) in [-1, 1], label int)`` with ``image = (pixel / 255 - 0.5) / 0.5`` in RGB
order, and the attributes ``num_classes``, ``labels`` (np.int64, one class per sample) and
``class_names``. Build one with :func:`open_training_dataset`, which detects the format.

- **Size**: images whose stored size differs from ``image_size`` are resized to S x S by the one
  resize policy, :func:`igfiqa.data.pixels.resize_to` (area when shrinking, bilinear when
  enlarging; the aspect ratio is not kept, training data is expected to be aligned square crops).
- **Horizontal flip** (``hflip=True``): sample ``i`` in epoch ``e`` is flipped iff bit 0 of
  ``splitmix64(seed, e, i)`` is set, a pure function of ``(seed, epoch, index)``: call
  :meth:`FaceDataset.set_epoch` at the start of each epoch (before creating the DataLoader iterator;
  with ``persistent_workers=True`` the workers keep the epoch they were created with). Exact resume
  needs nothing else.
- Datasets pickle cheaply (RecordIO handles reopen lazily in each worker process).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from igfiqa.data.decode import IMAGE_EXTENSIONS, decode_image
from igfiqa.data.pixels import normalise_into, resize_to
from igfiqa.errors import ConfigError, DataError
from igfiqa.files import MAX_TABLE_BYTES, read_text_file, writing
from igfiqa.registry import Registry

"""File name extensions treated as images when scanning folders (case-insensitive)."""

_MASK64 = (1 << 64) - 1


def mirror(image: torch.Tensor) -> torch.Tensor:
    """The horizontal flip of a (..., H, W) image tensor: the one flip of training images (the
    dataset's own per-sample flips and the trainer's sampler-driven ones)."""
    return torch.flip(image, dims=(-1,))


def flip_decision(seed: int, epoch: int, index: int) -> bool:
    """Whether sample ``index`` is mirrored in ``epoch``: bit 0 of ``splitmix64`` of the triple."""
    x = (
        seed * 0x9E3779B97F4A7C15 + epoch * 0xBF58476D1CE4E5B9 + index * 0x94D049BB133111EB
    ) & _MASK64
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    x ^= x >> 31
    return bool(x & 1)


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """(S, S, 3) uint8 RGB -> float32 (3, S, S) tensor (:func:`igfiqa.data.pixels.normalise_into`)."""
    out = np.empty((3, image.shape[0], image.shape[1]), dtype=np.float32)
    return torch.from_numpy(normalise_into(image, out))


class FaceDataset(Dataset):
    """Base class: ``(image, label)`` pairs; subclasses implement :meth:`read_image`."""

    format: str = "?"

    def __init__(
        self,
        labels: np.ndarray,
        class_names: Sequence[str],
        *,
        image_size: int,
        hflip: bool = True,
        seed: int = 0,
        source: str = "",
    ) -> None:
        self.labels = np.asarray(labels, dtype=np.int64)
        self.class_names = list(class_names)
        self.num_classes = len(self.class_names)
        if not 8 <= int(image_size) <= 1024:
            raise ConfigError(f"image_size must be in [8, 1024], got {image_size}")
        self.image_size = int(image_size)
        self.hflip = bool(hflip)
        self.seed = int(seed)
        self.epoch = 0
        self.source = source
        if self.labels.size and (self.labels.min() < 0 or self.labels.max() >= self.num_classes):
            raise DataError(
                f"{source}: labels must be in [0, {self.num_classes}), found "
                f"{self.labels.min()}..{self.labels.max()}"
            )

    def __len__(self) -> int:
        return len(self.labels)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose flip pattern :meth:`__getitem__` uses."""
        self.epoch = int(epoch)

    def read_image(self, index: int) -> np.ndarray:
        """Sample ``index`` as stored: (H, W, 3) uint8 RGB."""
        raise NotImplementedError

    def load_image(self, index: int) -> np.ndarray:
        """Sample ``index`` at ``image_size``, not flipped: (S, S, 3) uint8 RGB."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} images")
        return resize_to(self.read_image(index % len(self)), self.image_size)

    def is_flipped(self, index: int) -> bool:
        """Whether :meth:`__getitem__` mirrors sample ``index`` in the current epoch."""
        return self.hflip and flip_decision(self.seed, self.epoch, index)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} images")
        index = int(index) % len(self)
        image = to_tensor(self.load_image(index))
        return (mirror(image) if self.is_flipped(index) else image), int(self.labels[index])

    def images_per_class(self) -> np.ndarray:
        """(num_classes,) number of images of each class."""
        return np.bincount(self.labels, minlength=self.num_classes)

    def describe(self) -> dict[str, Any]:
        """A JSON-able summary (format, images, classes, images-per-class statistics)."""
        counts = self.images_per_class()
        return {
            "format": self.format,
            "source": self.source,
            "images": len(self),
            "classes": self.num_classes,
            "image_size": self.image_size,
            "images_per_class": {
                "min": int(counts.min()) if counts.size else 0,
                "median": float(np.median(counts)) if counts.size else 0.0,
                "mean": float(counts.mean()) if counts.size else 0.0,
                "max": int(counts.max()) if counts.size else 0,
            },
        }


# -- RecordIO --------------------------------------------------------------------------------------


class RecordIODataset(FaceDataset):
    """An insightface ``train.rec`` / ``train.idx`` / ``property`` folder."""

    format = "recordio"

    def __init__(
        self,
        rec_path: str | os.PathLike[str],
        *,
        image_size: int | None = None,
        hflip: bool = True,
        seed: int = 0,
    ) -> None:
        from igfiqa.data.recordio import RecordIOReader, read_layout, read_property

        rec_path = Path(rec_path)
        self.reader = RecordIOReader(rec_path)
        layout = read_layout(self.reader)
        self.image_keys = layout.image_keys
        prop = read_property(rec_path.parent)
        num_classes = int(layout.labels.max()) + 1 if layout.labels.size else 0
        where = rec_path.parent / "property"
        if prop is not None and prop[0] != num_classes:
            raise DataError(
                f"{where}: says {prop[0]} classes but the labels of {rec_path.name} are 0.."
                f"{num_classes - 1} ({num_classes} classes); fix the property file (classes,height,"
                "width) or the data"
            )
        self.labels = layout.labels
        stored = None
        if len(layout.image_keys):
            first = self._decode(0).shape[:2]
            if prop is not None and (prop[1], prop[2]) != first:
                raise DataError(
                    f"{where}: says {prop[1]}x{prop[2]} images but {rec_path.name}'s first image "
                    f"is {first[0]}x{first[1]}; fix the property file or the data"
                )
            stored = first[0]
        super().__init__(
            layout.labels,
            [str(c) for c in range(num_classes)],
            image_size=image_size or stored or 112,
            hflip=hflip,
            seed=seed,
            source=str(rec_path),
        )

    def _decode(self, index: int) -> np.ndarray:
        from igfiqa.data.recordio import unpack

        key = int(self.image_keys[index])
        name = f"{self.reader.rec_path} key {key}"
        header, payload = unpack(self.reader.read(key), name=name)
        stored = header.label if header.flag == 0 else float(header.label[0])
        if stored != self.labels[index]:
            raise DataError(
                f"{name}: the image header says class {stored:g} but the identity records put it in "
                f"class {self.labels[index]}; the file is inconsistent"
            )
        return decode_image(payload, name=name)

    def read_image(self, index: int) -> np.ndarray:
        return self._decode(index)


# -- identity folders and list files ---------------------------------------------------------------


def save_class_mapping(path: str | os.PathLike[str], class_names: Sequence[str]) -> None:
    """Write ``{"format": "igfiqa.class_mapping", "classes": {name: id}}`` (sorted, stable bytes)."""
    mapping = {"format": "igfiqa.class_mapping", "version": 1}
    mapping["classes"] = {name: i for i, name in enumerate(class_names)}  # type: ignore[assignment]
    text = json.dumps(mapping, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    with writing(path):
        Path(path).write_text(text)


def load_class_mapping(path: str | os.PathLike[str]) -> list[str]:
    """Read a class mapping written by :func:`save_class_mapping`; returns names in id order."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        classes = data["classes"]
        names = sorted(classes, key=lambda name: classes[name])
        if [classes[n] for n in names] != list(range(len(names))):
            raise ValueError("ids are not 0..C-1")
    except FileNotFoundError:
        raise DataError(f"{path}: class mapping not found") from None
    except (ValueError, KeyError, TypeError) as error:
        raise DataError(f"{path}: not a valid igfiqa class mapping ({error})") from None
    return names


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def scan_identity_folder(root: str | os.PathLike[str]) -> tuple[list[Path], list[str], list[str]]:
    """``root/<identity>/<image>`` -> (image paths, identity of each image, sorted identities).

    Images are sorted by file name within an identity; folders without images are ignored.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: not a folder")
    entries = sorted(root.iterdir(), key=lambda p: p.name)
    if not entries:
        raise DataError(f"{root}: the folder is empty; expected root/<identity>/<image> files")
    subdirs = [p for p in entries if p.is_dir() and not p.name.startswith(".")]
    paths: list[Path] = []
    owners: list[str] = []
    identities: list[str] = []
    for sub in subdirs:
        images = sorted(
            (p for p in sub.iterdir() if p.is_file() and _is_image(p)), key=lambda p: p.name
        )
        if images:
            identities.append(sub.name)
            paths.extend(images)
            owners.extend([sub.name] * len(images))
    if not paths:
        loose = [p for p in entries if p.is_file() and _is_image(p)]
        if loose:
            raise DataError(
                f"{root}: images lie directly in the folder; put each identity's images in its own "
                "subfolder (root/<identity>/<image>)"
            )
        raise DataError(
            f"{root}: no images found in identity subfolders (extensions "
            f"{', '.join(sorted(IMAGE_EXTENSIONS))})"
        )
    return paths, owners, identities


class ImageFileDataset(FaceDataset):
    """Images listed as files with class ids (identity folders and list files)."""

    def __init__(
        self,
        paths: Sequence[Path],
        labels: np.ndarray,
        class_names: Sequence[str],
        *,
        image_size: int | None,
        hflip: bool,
        seed: int,
        source: str,
    ) -> None:
        self.paths = [str(p) for p in paths]
        if image_size is None:
            image_size = max(decode_image(self.paths[0]).shape[:2]) if self.paths else 112
        super().__init__(
            labels, class_names, image_size=image_size, hflip=hflip, seed=seed, source=source
        )

    def read_image(self, index: int) -> np.ndarray:
        return decode_image(self.paths[index])

    @property
    def sample_names(self) -> list[str]:
        """The image paths, in sample order."""
        return list(self.paths)


class IdentityFolderDataset(ImageFileDataset):
    """``root/<identity>/<image>``; class ids by sorted identity name (or a saved mapping)."""

    format = "folder"

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        image_size: int | None = None,
        hflip: bool = True,
        seed: int = 0,
        class_mapping: str | os.PathLike[str] | None = None,
    ) -> None:
        paths, owners, identities = scan_identity_folder(root)
        if class_mapping is not None:
            names = load_class_mapping(class_mapping)
            unknown = sorted(set(identities) - set(names))
            if unknown:
                raise DataError(
                    f"{root}: identities {unknown[:5]} are not in the class mapping {class_mapping}"
                )
            identities = names
        ids = {name: i for i, name in enumerate(identities)}
        labels = np.fromiter((ids[o] for o in owners), dtype=np.int64, count=len(owners))
        super().__init__(
            paths,
            labels,
            identities,
            image_size=image_size,
            hflip=hflip,
            seed=seed,
            source=str(root),
        )

    def save_class_mapping(self, path: str | os.PathLike[str]) -> None:
        """Save the identity -> class id mapping as JSON."""
        save_class_mapping(path, self.class_names)


def list_file_lines(path: str | os.PathLike[str], what: str) -> list[tuple[int, str]]:
    """The entries of a list file as ``(line number, stripped text)``: blank lines and lines
    starting with ``#`` skipped; the file read safely (size cap, UTF-8, named as ``what`` in errors).
    The one reader of list files; :func:`read_list_file` (training, ``path label``) and the scorer's
    image lists interpret the entries."""
    path = Path(path)
    text = read_text_file(path, f"{path} ({what})", MAX_TABLE_BYTES)
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            entries.append((number, stripped))
    return entries


def read_list_file(
    list_path: str | os.PathLike[str], root: str | os.PathLike[str] | None = None
) -> tuple[list[Path], np.ndarray]:
    """Parse ``relative/path label`` lines (or MXNet ``.lst`` ``index<TAB>label<TAB>path`` lines).

    Paths are relative to ``root`` (default: the list file's folder). Blank lines and lines starting
    with ``#`` are skipped. Returns (paths, labels).
    """
    list_path = Path(list_path)
    base = Path(root) if root is not None else list_path.parent
    paths: list[Path] = []
    labels: list[int] = []
    for number, stripped in list_file_lines(list_path, "list file of 'path label' lines"):
        line = stripped
        fields = stripped.split("\t")
        if len(fields) >= 3:  # MXNet .lst: index, label(s), path
            rel, label_text = fields[-1], fields[1]
        else:
            parts = stripped.rsplit(None, 1)
            if len(parts) != 2:
                raise DataError(f"{list_path}, line {number}: expected 'path label', got {line!r}")
            rel, label_text = parts
        try:
            value = float(label_text)
        except ValueError:
            value = float("nan")
        if not np.isfinite(value) or value != int(value) or value < 0:
            raise DataError(
                f"{list_path}, line {number}: label {label_text!r} is not a non-negative integer"
            )
        paths.append(base / rel)
        labels.append(int(value))
    if not paths:
        raise DataError(f"{list_path}: the list file has no entries ('relative/path label' lines)")
    return paths, np.asarray(labels, dtype=np.int64)


class ListFileDataset(ImageFileDataset):
    """A list file of ``relative/path label`` lines; class names are the label numbers."""

    format = "list"

    def __init__(
        self,
        list_path: str | os.PathLike[str],
        *,
        root: str | os.PathLike[str] | None = None,
        image_size: int | None = None,
        hflip: bool = True,
        seed: int = 0,
    ) -> None:
        paths, labels = read_list_file(list_path, root)
        missing = [p for p in paths[:: max(len(paths) // 200, 1)] if not p.is_file()]
        if missing:
            raise DataError(
                f"{list_path}: listed image {missing[0]} does not exist (paths are relative to "
                f"{Path(root) if root else Path(list_path).parent}, the list file's folder "
                "unless a root is given); write paths relative to the list file, or absolute ones"
            )
        num_classes = int(labels.max()) + 1
        super().__init__(
            paths,
            labels,
            [str(c) for c in range(num_classes)],
            image_size=image_size,
            hflip=hflip,
            seed=seed,
            source=str(list_path),
        )


# -- synthetic -------------------------------------------------------------------------------------


class SyntheticDataset(FaceDataset):
    """Synthetic faces rendered on the fly (see :mod:`igfiqa.data.synthetic`)."""

    format = "synthetic"

    def __init__(self, faces: Any, *, hflip: bool = True, seed: int = 0, source: str = "") -> None:
        self.faces = faces
        super().__init__(
            faces.labels,
            [str(int(i)) for i in faces.identities],
            image_size=faces.image_size,
            hflip=hflip,
            seed=seed,
            source=source or "synthetic",
        )

    def read_image(self, index: int) -> np.ndarray:
        return self.faces.render(*self.faces.locate(index))[0]

    def ground_truth_quality(self, index: int) -> float:
        """The ground-truth quality of sample ``index``."""
        return self.faces.render(*self.faces.locate(index))[1]


# -- factory ---------------------------------------------------------------------------------------


def detect_format(source: str | os.PathLike[str]) -> str:
    """``"synthetic"``, ``"recordio"``, ``"folder"`` or ``"list"``; raises DataError if none fits."""
    text = str(source)
    if text.lower().startswith("synthetic"):
        return "synthetic"
    path = Path(source)
    if not path.exists():
        raise DataError(
            f"{path}: no such file or folder; pass a RecordIO folder (train.rec/train.idx), an identity "
            "folder, a list file, or a spec like 'synthetic:identities=200,samples=20'"
        )
    if path.is_file():
        if path.suffix == ".rec":
            return "recordio"
        if path.suffix in (".idx", ".bin"):
            raise DataError(
                f"{path}: a {path.suffix} file is not a training set; pass the .rec file or its folder"
            )
        return "list"
    if (path / "train.rec").is_file():
        return "recordio"
    recs = sorted(path.glob("*.rec"))
    if len(recs) == 1 and recs[0].with_suffix(".idx").is_file():
        return "recordio"
    return "folder"


TrainingOpener = Callable[..., FaceDataset]
"""``(source, *, image_size, hflip, seed, options) -> FaceDataset``: one training-data format."""

TRAINING_FORMATS: Registry[TrainingOpener] = Registry("training data format", also=("auto",))
"""Format name -> opener, in the order :func:`detect_format` documents them."""


@TRAINING_FORMATS.register("recordio", aliases=("rec",))
def _open_recordio(
    source: str | os.PathLike[str],
    *,
    image_size: int | None,
    hflip: bool,
    seed: int,
    options: dict[str, Any],
) -> FaceDataset:
    path = Path(source)
    rec = path if path.is_file() else path / "train.rec"
    if not rec.is_file():
        recs = sorted(path.glob("*.rec"))
        if not recs:
            raise DataError(f"{path}: no RecordIO file here (train.rec with train.idx)")
        rec = recs[0]
    return RecordIODataset(rec, image_size=image_size, hflip=hflip, seed=seed)


@TRAINING_FORMATS.register("folder")
def _open_folder(
    source: str | os.PathLike[str],
    *,
    image_size: int | None,
    hflip: bool,
    seed: int,
    options: dict[str, Any],
) -> FaceDataset:
    return IdentityFolderDataset(
        Path(source),
        image_size=image_size,
        hflip=hflip,
        seed=seed,
        class_mapping=options.get("class_mapping"),
    )


@TRAINING_FORMATS.register("list")
def _open_list(
    source: str | os.PathLike[str],
    *,
    image_size: int | None,
    hflip: bool,
    seed: int,
    options: dict[str, Any],
) -> FaceDataset:
    return ListFileDataset(
        Path(source), root=options.get("root"), image_size=image_size, hflip=hflip, seed=seed
    )


@TRAINING_FORMATS.register("synthetic")
def _open_synthetic(
    source: str | os.PathLike[str],
    *,
    image_size: int | None,
    hflip: bool,
    seed: int,
    options: dict[str, Any],
) -> FaceDataset:
    from igfiqa.data.synthetic import synthetic_from_spec

    faces = synthetic_from_spec(str(source))
    if image_size is not None and image_size != faces.image_size:
        faces = type(faces)(
            faces.num_identities,
            faces.samples_per_identity,
            seed=faces.seed,
            image_size=image_size,
            low_variance_share=faces.low_variance_share,
            first_identity=faces.first_identity,
        )
    return SyntheticDataset(faces, hflip=hflip, seed=seed, source=str(source))


def list_training_formats() -> list[str]:
    """Names of the training-data formats :func:`open_training_dataset` reads: ``recordio``,
    ``folder``, ``list``, ``synthetic`` (``format="auto"`` detects one of them)."""
    return TRAINING_FORMATS.names()


def open_training_dataset(
    source: str | os.PathLike[str],
    *,
    format: str = "auto",
    image_size: int | None = None,
    hflip: bool = True,
    **options: Any,
) -> FaceDataset:
    """Open a training set, detecting its format (see :func:`detect_format`) unless ``format``
    names one of :func:`list_training_formats`.

    ``source``: a RecordIO folder (``train.rec``, ``train.idx``, ``property``) or ``.rec`` file, an
    identity folder, a list file, or ``synthetic:identities=200,samples=20,seed=0,
    low_variance_share=0.2,image_size=48``. ``image_size`` defaults to the stored size (for synthetic
    specs it overrides the spec's and the faces are rendered at that size).
    Options: ``seed`` (flip seed, default 0); ``class_mapping`` (folders: a saved mapping to reuse);
    ``root`` (list files: base folder of the paths).
    """
    allowed = {"seed", "class_mapping", "root"}
    unknown = set(options) - allowed
    if unknown:
        raise ConfigError(
            f"open_training_dataset: unknown option(s) {sorted(unknown)}; allowed: {sorted(allowed)}"
        )
    seed = int(options.get("seed", 0))
    if TRAINING_FORMATS.normalise(format) == "auto":
        kind = detect_format(source)
    else:
        kind = TRAINING_FORMATS.canonical(format)
        if kind != "synthetic" and not Path(source).exists():
            raise DataError(f"{source}: no such file or folder")
    opener = TRAINING_FORMATS[kind]
    return opener(source, image_size=image_size, hflip=hflip, seed=seed, options=options)


__all__ = [
    "IMAGE_EXTENSIONS",
    "TRAINING_FORMATS",
    "FaceDataset",
    "IdentityFolderDataset",
    "ImageFileDataset",
    "ListFileDataset",
    "RecordIODataset",
    "SyntheticDataset",
    "TrainingOpener",
    "detect_format",
    "flip_decision",
    "list_file_lines",
    "list_training_formats",
    "load_class_mapping",
    "mirror",
    "open_training_dataset",
    "read_list_file",
    "save_class_mapping",
    "scan_identity_folder",
    "to_tensor",
]
