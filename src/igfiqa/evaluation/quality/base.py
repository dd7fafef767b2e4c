"""What a quality method is, and the registry that ``--quality`` specs are parsed with.

A quality method gives one score per benchmark sample (higher = better). It either needs a pass
over the images (``needs_images``: an igfiqa model, SER-FIQ, a Python function), run by the
benchmark runner together with the FR model in one decoding pass and cached under
:meth:`QualityMethod.cache_key`; or it is computed from what the runner already has
(:class:`SampleContext`: the benchmark, the FR embeddings). Adding one is one module in this package
that defines a subclass, decorates it with :func:`register` and is imported by ``__init__``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from igfiqa.errors import ConfigError
from igfiqa.registry import Registry

Consumer = Callable[[np.ndarray], np.ndarray]
"""uint8 aligned faces (B, S, S, 3) -> scores (B,)."""


@dataclass(frozen=True)
class SampleContext:
    """What a method computed without its own image pass may use."""

    pairset: Any
    benchmark: str
    embedding: np.ndarray | None

    @property
    def num_samples(self) -> int:
        return int(self.pairset.num_samples)


@dataclass
class QualityMethod:
    """A parsed quality spec: ``name`` (shown in results), string ``options``, an optional
    ``path``; the class says its ``kind`` (the spec's head) and whether it ``needs_images``."""

    name: str
    options: dict[str, str] = field(default_factory=dict)
    path: Path | None = None
    function: Callable[[np.ndarray], np.ndarray] | None = None

    kind: ClassVar[str] = ""
    aliases: ClassVar[tuple[str, ...]] = ()
    needs_images: ClassVar[bool] = False
    usage: ClassVar[str] = ""

    @classmethod
    def parse(cls, rest: str, name: str | None) -> QualityMethod:
        """The method from the part of the spec after ``KIND:`` (and an optional display name)."""
        raise NotImplementedError

    def cache_key(self, model: Any) -> str | None:
        """Key of this method's cached scores with FR model ``model`` (None: never cached)."""
        return None

    def image_function(self, model: Any, device: str) -> Consumer:
        """The per-batch scorer (methods that need images)."""
        raise NotImplementedError

    def sample_quality(self, context: SampleContext) -> np.ndarray:
        """Scores of every sample (methods that do not need images)."""
        raise NotImplementedError


QUALITY_METHODS: Registry[type[QualityMethod]] = Registry("quality method")
"""Spec head (``random``, ``serfiq``, ...; aliases such as ``oracle``) -> method class."""


def register(cls: type[QualityMethod]) -> type[QualityMethod]:
    """Class decorator: make ``cls`` parseable under its ``kind`` and ``aliases``."""
    QUALITY_METHODS.add(cls.kind, cls, aliases=cls.aliases)
    return cls


def list_quality_methods() -> list[str]:
    """Names of the quality methods a ``--quality`` spec (or ``evaluate(qualities=...)``) can
    start with, in registration order. A model of any quality kind (``list_model_kinds()``) is
    also accepted as ``KIND:PATH``, and from Python any function of the faces."""
    return [name for name, method in QUALITY_METHODS.items() if method.usage]


def parse_options(text: str, allowed: set[str], kind: str) -> dict[str, str]:
    """``key=value,key=value`` -> dict, refusing keys outside ``allowed``."""
    out = {}
    for part in filter(None, text.split(",")):
        if "=" not in part:
            raise ConfigError(f"quality option {part!r} must look like key=value")
        key, value = part.split("=", 1)
        out[key.strip()] = value.strip()
    unknown = set(out) - allowed
    if unknown:
        raise ConfigError(f"{kind} options are {', '.join(sorted(allowed))}; got {sorted(unknown)}")
    return out


def parse_quality_spec(
    spec: str | os.PathLike[str] | Callable[[np.ndarray], np.ndarray], name: str | None = None
) -> QualityMethod:
    """Parse ``--quality``: a registered ``METHOD[:OPTIONS]`` (:data:`QUALITY_METHODS`), ``csv:PATH``,
    ``model:PATH``, a model path, or ``KIND:PATH`` for a model of a named kind (``igfiqa models``);
    a Python callable (uint8 (B, S, S, 3) -> (B,) scores) is also accepted. ``NAME=SPEC`` sets the
    name shown in the results."""
    if callable(spec) and not isinstance(spec, (str, os.PathLike)):
        return QUALITY_METHODS["callable"](
            name or getattr(spec, "__name__", "quality"), function=spec
        )
    text = os.fspath(spec)
    if name is None and "=" in text.split(":", 1)[0]:
        name, text = text.split("=", 1)
    head, _, rest = text.partition(":")
    method = QUALITY_METHODS.get(head)
    if method is not None and method.kind not in ("callable", "model"):
        return method.parse(rest, name)
    model = QUALITY_METHODS["model"]
    return model.parse(rest if method is model else text, name)
