"""What a model kind is, the registry of kinds, and the one way a model file is opened.

A *kind* is one released format: the files one group of authors publish for one method (CR-FIQA's
``*backbone.pth``, MagFace's ``magface_epoch_*.pth``, OFIQ's ONNX...). A kind says how to recognise
its files, how to read them into a network with the authors' input convention and quality rule,
and how to rebuild that network from an igfiqa export. Adding one is one module in this package
that subclasses :class:`ModelKind` and decorates it with :func:`register_kind` (docs/models.md).
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from igfiqa.errors import CheckpointError, ConfigError
from igfiqa.files import file_sha256
from igfiqa.registry import Registry

TORCH, ONNX, TORCHSCRIPT, EXPORT = "torch", "onnx", "torchscript", "export"


@dataclass
class ModelFile:
    """A model file opened once: where it is, its SHA-256 and, for a pickle, its safe content.

    ``format`` is ``torch`` (a ``torch.save`` file, read with ``weights_only=True``), ``onnx``,
    ``torchscript`` or ``export`` (an igfiqa export directory or ``.safetensors``).
    """

    path: Path
    format: str
    sha256: str | None
    payload: Any = None
    weights: Path | None = None
    _keys: dict[tuple[str, ...], frozenset[str]] = field(default_factory=dict, repr=False)

    @property
    def where(self) -> str:
        return str(self.path)

    def tensor_names(self, inner: tuple[str, ...] = ()) -> frozenset[str]:
        """The tensor names of a pickled state dict: the payload's own, or those of
        ``payload[key]`` for the first key of ``inner`` that holds a mapping; empty for anything
        else. Computed once per ``inner``, however many kinds ask."""
        if inner not in self._keys:
            state = self.payload if self.format == TORCH else None
            if isinstance(state, Mapping):
                state = next((state[k] for k in inner if isinstance(state.get(k), Mapping)), state)
            names: frozenset[str] = frozenset()
            if isinstance(state, Mapping):
                import torch

                names = frozenset(
                    k
                    for k, v in state.items()
                    if isinstance(k, str) and isinstance(v, torch.Tensor)
                )
            self._keys[inner] = names
        return self._keys[inner]


@dataclass
class LoadedModel:
    """What a kind gives back: a torch ``network`` (eval, CPU, float32) or a runner factory, and
    the model card that says what the model is and how its input is prepared."""

    card: dict[str, Any]
    network: Any = None
    runner_factory: Callable[[str, int | None], Any] | None = None
    """For kinds that do not run in torch: ``(device, threads) -> runner``."""
    kind: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class ModelKind:
    """One released model format. Subclasses fill the class attributes shown by ``igfiqa models``
    and implement :meth:`recognise` and :meth:`load` (and :meth:`build` for torch kinds)."""

    name: ClassVar[str] = ""
    method: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    architecture: ClassVar[str] = ""
    input: ClassVar[str] = ""
    output: ClassVar[str] = ""
    roles: ClassVar[tuple[str, ...]] = ()
    page: ClassVar[str] = ""
    licence: ClassVar[str] = ""
    files: ClassVar[str] = ""
    file_formats: ClassVar[tuple[str, ...]] = (TORCH,)
    expects: ClassVar[str] = ""
    options: ClassVar[tuple[str, ...]] = ()
    options_help: ClassVar[dict[str, str]] = {}
    """Option -> its values and default, for ``igfiqa models KIND``."""
    auto: ClassVar[bool] = True
    """Whether :meth:`recognise` may claim a file (False: only when the kind is named)."""

    def recognise(self, file: ModelFile) -> bool:
        """Whether ``file`` is unambiguously of this kind (from its keys and structure)."""
        return False

    def load(self, file: ModelFile, options: Mapping[str, str]) -> LoadedModel:
        """Read ``file`` (of this kind) into a :class:`LoadedModel`; errors name the file."""
        raise NotImplementedError

    def build(self, spec: Mapping[str, Any]) -> Any:
        """An empty network for model spec ``spec`` (what an export's card records)."""
        raise CheckpointError(f"kind {self.name} cannot be rebuilt from an igfiqa export")

    def describe(self) -> dict[str, str]:
        return {
            "kind": self.name,
            "method": self.method,
            "paper": self.paper,
            "architecture": self.architecture,
            "input": self.input,
            "output": self.output,
            "roles": ", ".join(self.roles),
            "page": self.page,
            "licence": self.licence,
            "files": self.files,
        }


KINDS: Registry[ModelKind] = Registry("model kind")
"""Kind name -> kind, in registration order; names are case-insensitive, ``_`` and ``-`` alike."""


def register_kind(cls: type[ModelKind]) -> type[ModelKind]:
    """Class decorator: add an instance of ``cls`` to :data:`KINDS` under its ``name``."""
    KINDS.add(cls.name, cls())
    return cls


ORDER = (
    "igfiqa", "crfiqa", "magface", "sddfiqa", "diffiqa-r", "ediffiqa", "ofiq-uqs", "serfiq",
    "arcface", "curricularface", "onnx", "torchscript",
)  # fmt: skip
"""The order of ``igfiqa models``: quality methods first, then FR models, then generic formats."""


def list_kinds() -> list[ModelKind]:
    """Every registered kind, in the order of ``igfiqa models``."""
    rank = {name: index for index, name in enumerate(ORDER)}
    return sorted(KINDS.values(), key=lambda kind: rank.get(kind.name, len(rank)))


def list_model_kinds() -> list[str]:
    """Names of the released model formats :func:`load_kind` (and ``load_model(kind=...)``)
    reads, in the order of ``igfiqa models``: quality methods, FR models, generic formats."""
    return [kind.name for kind in list_kinds()]


def get_kind(name: str) -> ModelKind:
    """The kind called ``name`` (case-insensitive; ``_`` and ``-`` alike)."""
    return KINDS.lookup(name)


def parse_kind_options(text: str | Mapping[str, Any] | None, kind: ModelKind) -> dict[str, str]:
    """``key=value,...`` (or a dict) -> options, refusing keys the kind does not take."""
    if text is None:
        return {}
    if isinstance(text, Mapping):
        options = {str(k): str(v) for k, v in text.items()}
    else:
        options = {}
        for part in filter(None, (p.strip() for p in str(text).split(","))):
            if "=" not in part:
                raise ConfigError(f"model option {part!r} must look like key=value")
            key, value = part.split("=", 1)
            if key.strip() in options:
                raise ConfigError(f"model option {key.strip()!r} is given twice")
            options[key.strip()] = value.strip()
    unknown = sorted(set(options) - set(kind.options))
    if unknown:
        allowed = ", ".join(kind.options) or "none"
        raise ConfigError(f"kind {kind.name} takes the options {allowed}; got {unknown}")
    return options


def is_torchscript(path: Path) -> bool:
    """Whether ``path`` is a TorchScript archive (a zip holding ``code/``)."""
    if path.suffix.lower() in (".ts", ".torchscript", ".jit"):
        return True
    try:
        if not zipfile.is_zipfile(path):
            return False
        with zipfile.ZipFile(path) as archive:
            return any("/code/" in name or name.startswith("code/") for name in archive.namelist())
    except (zipfile.BadZipFile, OSError, ValueError):
        return False  # a damaged zip: torch.load reports it with the file's name


def check_sha256(path: Path, sha256: str | None) -> str:
    """The file's SHA-256; a :class:`CheckpointError` when ``sha256`` is given and differs."""
    if sha256 is not None:
        wanted = sha256.strip().lower().removeprefix("sha256:")
        if len(wanted) != 64 or any(c not in "0123456789abcdef" for c in wanted):
            raise ConfigError(f"--sha256 {sha256!r} is not 64 hexadecimal digits")
    digest = file_sha256(path)
    if sha256 is not None and digest != wanted:
        raise CheckpointError(
            f"{path}: SHA-256 {digest} does not match the pinned {wanted}; nothing was loaded. "
            "Download the file again from the authors' page (igfiqa models) or update the pin"
        )
    return digest


def open_model_file(path: str | os.PathLike[str], *, sha256: str | None = None) -> ModelFile:
    """Identify a model file's format, check its SHA-256 against ``sha256`` when given (before
    anything is unpickled), and read a pickle with ``weights_only=True``."""
    from igfiqa.inference.card import WEIGHTS_FILE

    path = Path(path).expanduser()
    if not path.exists():
        raise CheckpointError(f"model {path} does not exist")
    if path.is_dir():
        fmt, weights = EXPORT, path / WEIGHTS_FILE
    elif not path.is_file():
        raise CheckpointError(f"model {path} is not a regular file or an export directory")
    elif path.suffix.lower() == ".safetensors":
        fmt, weights = EXPORT, path
    elif path.suffix.lower() == ".onnx":
        fmt, weights = ONNX, path
    elif is_torchscript(path):
        fmt, weights = TORCHSCRIPT, path
    else:
        fmt, weights = TORCH, path
    if sha256 is not None and not weights.is_file():
        raise ConfigError(
            f"--sha256 pins one file, but {path} is a folder without {WEIGHTS_FILE} (a training "
            "run folder): pin its checkpoint file instead"
        )
    digest = check_sha256(weights, sha256) if weights.is_file() else None
    payload = None
    if fmt == TORCH:
        from igfiqa.inference.loading import read_torch_file

        payload = read_torch_file(path)
    return ModelFile(path=path, format=fmt, sha256=digest, payload=payload, weights=weights)


def detect_kind(file: ModelFile) -> ModelKind:
    """The one kind that recognises ``file``; an error listing the candidates otherwise."""
    claims = [kind for kind in KINDS.values() if kind.auto and kind.recognise(file)]
    if len(claims) == 1:
        return claims[0]
    candidates = claims or [k for k in KINDS.values() if file.format in k.file_formats]
    listing = "; ".join(f"{k.name}: {k.expects}" for k in candidates)
    if claims:
        raise CheckpointError(
            f"{file.path} could be any of these kinds: {listing}. Name one with --kind "
            "(Python: load_model(path, kind=...))"
        )
    raise CheckpointError(
        f"{file.path}: igfiqa does not recognise this {file.format} file. Kinds that read "
        f"{file.format} files: {listing or 'none'}. If it is one of them, name it with --kind; "
        "`igfiqa models` lists every kind and the files its authors publish"
    )


def load_kind(
    path: str | os.PathLike[str],
    *,
    kind: str | None = None,
    sha256: str | None = None,
    options: str | Mapping[str, Any] | None = None,
) -> LoadedModel:
    """Open ``path``, find its kind (or use ``kind``), and load it; the card records the kind
    and the file's SHA-256. A torch network holding NaN or infinite weights is refused."""
    file = open_model_file(path, sha256=sha256)
    chosen = get_kind(kind) if kind else detect_kind(file)
    if file.format not in chosen.file_formats:
        raise CheckpointError(
            f"{file.path} is a {file.format} file but kind {chosen.name} reads "
            f"{' or '.join(chosen.file_formats)} files ({chosen.expects})"
        )
    loaded = chosen.load(file, parse_kind_options(options, chosen))
    source = dict(loaded.card.get("source") or {})
    if loaded.network is not None:
        from igfiqa.inference.loading import check_finite_weights

        where = str(file.path)
        if file.path.is_dir() and source.get("file"):
            where += f" ({source['file']})"
        check_finite_weights(loaded.network, where=where)
    source.setdefault("file", file.path.name)
    if file.sha256 is not None:
        source["sha256"] = file.sha256
    loaded.card["source"] = source
    loaded.kind = loaded.kind or chosen.name
    return loaded


__all__ = [
    "EXPORT",
    "KINDS",
    "ONNX",
    "TORCH",
    "TORCHSCRIPT",
    "LoadedModel",
    "ModelFile",
    "ModelKind",
    "detect_kind",
    "get_kind",
    "list_kinds",
    "list_model_kinds",
    "load_kind",
    "open_model_file",
    "parse_kind_options",
    "register_kind",
]
