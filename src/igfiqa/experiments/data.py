"""What one seed of an experiment trains on and is evaluated on.

Without ``--data``: identity-labelled synthetic faces rendered once into memory (a share of them
*low-variance* identities), and the held-out identities numbered after them as the benchmark, with
the generator's ground-truth quality. With ``--data``: the user's training source (opened by the
trainer, as ``igfiqa train`` opens it) and the ``--benchmark`` sets (opened once, through the
benchmark registry).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from igfiqa.data.benchmarks import PairSet, all_pairs, open_benchmark
from igfiqa.data.datasets import SyntheticDataset
from igfiqa.data.synthetic import SyntheticFaces
from igfiqa.errors import ConfigError

HELD_OUT = "synthetic held-out identities"
"""The benchmark name of the rendered held-out identities."""


class RenderedFaces(SyntheticDataset):
    """Synthetic faces rendered once into memory, shared by every variant's training run."""

    def __init__(self, faces: SyntheticFaces, *, seed: int = 0, hflip: bool = True) -> None:
        super().__init__(
            faces, hflip=hflip, seed=seed, source=f"synthetic (in memory, {len(faces)} images)"
        )
        rendered = [faces.render(*faces.locate(i)) for i in range(len(faces))]
        self.images = np.stack([image for image, _ in rendered])
        self.quality = np.array([quality for _, quality in rendered], dtype=np.float64)
        self.low_variance = np.array(
            [faces.is_low_variance(int(i)) for i in faces.identities], dtype=bool
        )

    def read_image(self, index: int) -> np.ndarray:
        return self.images[index]

    def ground_truth_quality(self, index: int) -> float:
        return float(self.quality[index])


def synthetic_spec(
    *,
    seed: int,
    identities: int,
    samples: int,
    image_size: int,
    low_variance_share: float,
    first_identity: int = 0,
) -> str:
    """The ``synthetic:`` source of the faces :func:`render` renders."""
    spec = (
        f"synthetic:identities={identities},samples={samples},"
        f"seed={seed},low_variance_share={low_variance_share},image_size={image_size}"
    )
    return spec + (f",first_identity={first_identity}" if first_identity else "")


def render(spec: str) -> RenderedFaces:
    """The faces of a ``synthetic:`` spec rendered into memory, not flipped: the identities'
    freckles and moles are asymmetric, so a mirror image is another face."""
    from igfiqa.data.synthetic import parse_synthetic_spec, synthetic_from_spec

    return RenderedFaces(
        synthetic_from_spec(spec), seed=int(parse_synthetic_spec(spec)["seed"]), hflip=False
    )


class ArrayImages:
    """A benchmark's samples held in memory (uint8 (N, S, S, 3))."""

    def __init__(self, images: np.ndarray) -> None:
        self.images = images

    def load(self, index: int) -> np.ndarray:
        return self.images[index]


@dataclass
class Benchmark:
    """A benchmark of the experiment: its pairs, the source its evaluation caches are keyed on,
    and, for rendered faces, which samples belong to low-variance identities."""

    name: str
    pairset: PairSet
    source: str
    low_variance: np.ndarray | None = None

    @property
    def ground_truth(self) -> np.ndarray | None:
        return self.pairset.ground_truth_quality


@dataclass
class SeedData:
    """One seed's training source (``source`` as the units' configs name it; ``train`` when it is
    held in memory) and benchmarks."""

    seed: int
    source: str
    benchmarks: list[Benchmark]
    train: RenderedFaces | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def training_source(settings: Any, seed: int) -> str:
    """``data.source`` of a seed's units: the rendered faces' spec, or the user's ``--data``."""
    if settings.data is not None:
        return parse_data(settings.data)[1]
    return synthetic_spec(
        seed=seed,
        identities=settings.train_identities,
        samples=settings.samples_per_identity,
        image_size=settings.image_size,
        low_variance_share=settings.low_variance_share,
    )


def held_out_spec(settings: Any, seed: int) -> str:
    """The ``synthetic:`` spec of the held-out identities (numbered after the training ones)."""
    share = settings.test_low_variance_share
    return synthetic_spec(
        seed=seed,
        identities=settings.test_identities,
        samples=settings.test_samples_per_identity,
        image_size=settings.image_size,
        low_variance_share=settings.low_variance_share if share is None else share,
        first_identity=settings.train_identities,
    )


def held_out_benchmark(faces: RenderedFaces, spec: str, seed: int) -> Benchmark:
    """Every pair of the rendered held-out faces, with their ground-truth quality."""
    pairs, mated = all_pairs(faces.labels, max_nonmated=None, seed=seed)
    names = [f"synthetic/{int(i)}" for i in range(len(faces))]
    pairset = PairSet(
        HELD_OUT, names, pairs, mated, ArrayImages(faces.images), sample_labels=faces.labels,
        ground_truth_quality=faces.quality, files=[],
    )  # fmt: skip
    return Benchmark(HELD_OUT, pairset, spec, faces.low_variance[faces.labels])


def parse_data(text: str) -> tuple[str, str]:
    """``--data [NAME:]SOURCE`` -> (name, source): a RecordIO folder or ``.rec``, an identity
    folder, a list file or a ``synthetic:...`` spec; ``NAME:`` labels it in the report."""
    if text.lower().startswith("synthetic"):
        return "synthetic", text
    head, sep, rest = text.partition(":")
    if sep and rest and head and "/" not in head and "\\" not in head and len(head) > 1:
        return head, rest
    return Path(text).name or text, text


def open_benchmarks(specs: tuple[str, ...], log: Callable[[str], None]) -> list[Benchmark]:
    """The ``--benchmark`` sets, opened once (names must differ)."""
    from igfiqa.evaluation.api import parse_benchmark

    parsed = [parse_benchmark(text) for text in specs]
    names = [name for name, _, _ in parsed]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(
            f"--benchmark {', '.join(repeated)} is given more than once; name them apart with "
            "LABEL=KIND:PATH"
        )
    benchmarks = []
    for name, kind, path in parsed:
        log(f"opening benchmark {name} ({kind}: {path})")
        benchmarks.append(Benchmark(name, open_benchmark(kind, path), path))
    return benchmarks


def seed_data(
    settings: Any, seed: int, benchmarks: list[Benchmark], log: Callable[[str], None]
) -> SeedData:
    """What the seed's units train on and are evaluated on: the rendered faces (and their held-out
    identities unless ``benchmarks`` are given), or the user's data and ``benchmarks``."""
    source = training_source(settings, seed)
    if not settings.synthetic:
        return SeedData(seed, source, benchmarks)
    log(
        f"rendering {settings.train_identities} x {settings.samples_per_identity} training and "
        f"{settings.test_identities} x {settings.test_samples_per_identity} held-out synthetic faces "
        f"({settings.image_size}x{settings.image_size}, low-variance share "
        f"{settings.low_variance_share:g}, seed {seed})"
    )
    train = render(source)
    if not benchmarks:
        spec = held_out_spec(settings, seed)
        benchmarks = [held_out_benchmark(render(spec), spec, seed)]
    return SeedData(seed, source, benchmarks, train)
