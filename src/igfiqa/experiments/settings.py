"""What an experiment renders (or reads), trains and evaluates: one :class:`Settings` type, its
validation, what its output folder records, and the one list of ``--set`` overrides of a unit.

``experiment`` chooses the preset: ``demo`` (one seed, :data:`DEMO_VARIANTS`, the CR-FIQA backbone
as the FR model) or ``study`` (several seeds, :data:`STUDY_VARIANTS`, two trained FR models).
Without ``data`` the training set is the synthetic faces the settings describe, rendered once per
seed into memory, and the benchmark their held-out identities; with ``data`` (any training source
igfiqa reads) every variant trains on it and is evaluated on ``benchmarks`` with the trained FR
models plus ``fr_models`` of any kind ``igfiqa evaluate`` loads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

from igfiqa.errors import ConfigError
from igfiqa.experiments.variants import (
    BASELINE,
    DEFAULT_STUDY_VARIANTS,
    DEMO_VARIANTS,
    INDEPENDENT_FR,
    STUDY_VARIANTS,
    Variant,
)


@dataclass(frozen=True)
class Preset:
    """What an experiment kind fixes: its variants, the ones every comparison needs (always
    added), its FR models among them (variant key -> label), its defaults and its records."""

    name: str
    catalogue: tuple[Variant, ...]
    default_variants: tuple[str, ...]
    required: tuple[str, ...]
    fr_variants: dict[str, str]
    seeds: int
    epochs: int
    record_fields: tuple[str, ...]
    resume_fields: tuple[str, ...]


_SYNTHETIC = (
    "train_identities", "samples_per_identity", "test_identities", "test_samples_per_identity",
    "low_variance_share",
)  # fmt: skip
_REAL = ("data", "benchmarks", "fr_models", "preset", "sets")
"""Recorded only when set (a synthetic experiment's records stay those of earlier versions)."""

_DEMO_RECORD = (
    "seed", *_SYNTHETIC, "test_low_variance_share", "image_size", "batch_size", "epochs", "fmrs",
    "limits", "variants",
)  # fmt: skip
_STUDY_RESUME = (*_SYNTHETIC, "image_size", "batch_size", "epochs", "width", "fmrs", "limits")
_STUDY_RECORD = (
    "seeds", "first_seed", "variants", *_STUDY_RESUME, "real_photos", "photo_cache", "device",
)  # fmt: skip

PRESETS = {
    "demo": Preset(
        "demo", DEMO_VARIANTS, tuple(v.key for v in DEMO_VARIANTS), (BASELINE,),
        {BASELINE: f"demo backbone ({DEMO_VARIANTS[0].label})"}, seeds=1, epochs=6,
        record_fields=_DEMO_RECORD, resume_fields=_DEMO_RECORD,
    ),
    "study": Preset(
        "study", STUDY_VARIANTS, DEFAULT_STUDY_VARIANTS, (BASELINE, INDEPENDENT_FR),
        {BASELINE: "CR-FIQA backbone", INDEPENDENT_FR: "independent FR model"}, seeds=3, epochs=7,
        record_fields=_STUDY_RECORD, resume_fields=_STUDY_RESUME,
    ),
}  # fmt: skip
"""The two experiments: the demo records (and resumes on) every setting, the study resumes with
more seeds or variants."""

DEFAULT_RECIPE = "synthetic_demo"
CLI_OPTIONS = {
    "seed": "--seed", "first_seed": "--first-seed", "train_identities": "--identities",
    "samples_per_identity": "--samples", "test_identities": "--test-identities",
    "test_samples_per_identity": "--test-samples", "low_variance_share": "--low-variance-share",
    "image_size": "--image-size", "batch_size": "--batch-size", "epochs": "--epochs",
    "width": "--width", "data": "--data", "benchmarks": "--benchmark", "fr_models": "--fr-model",
    "preset": "--preset", "sets": "--set",
}  # fmt: skip
"""The command-line option of each setting that has one (named when a resume is refused)."""

# Seconds per training image-pass of one forward+backward stream on a 2-core CPU for the demo
# network: the cost model of ``budget_minutes`` (a fixed number of epochs per budget, whatever the
# machine; measured machines differ from it by a factor of 5 and more).
SECONDS_PER_IMAGE_PASS = 2.4e-3


@dataclass
class Settings:
    """One experiment's settings. ``None`` means the preset's default: ``seeds`` 1 (demo) or 3
    (study), ``epochs`` 6 or 7 on synthetic faces and the recipe's own with ``data``;
    ``image_size`` and ``batch_size`` 48 and 64 on synthetic faces, the recipe's with ``data``;
    ``variants`` the preset's default (``("all",)``: every variant). ``budget_minutes`` sets the
    epochs from the cost model :data:`SECONDS_PER_IMAGE_PASS` when ``epochs`` is not given."""

    experiment: str = "study"
    seeds: int | None = None
    first_seed: int = 0
    variants: tuple[str, ...] = ()
    train_identities: int = 200
    samples_per_identity: int = 20
    test_identities: int = 100
    test_samples_per_identity: int = 10
    low_variance_share: float = 0.2
    test_low_variance_share: float | None = 0.0  # None: as in training
    image_size: int | None = None
    batch_size: int | None = None
    epochs: int | None = None
    budget_minutes: float | None = None
    width: float | None = None
    fmrs: tuple[float, ...] = (1e-2, 1e-3)
    limits: tuple[float, ...] = (0.2, 0.3)
    real_photos: bool = True
    photo_cache: str = "~/.cache/igfiqa/real_photos"
    device: str = "auto"
    data: str | None = None
    benchmarks: tuple[str, ...] = ()
    fr_models: tuple[str, ...] = ()
    preset: str = DEFAULT_RECIPE
    sets: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.experiment not in PRESETS:
            raise ConfigError(
                f"unknown experiment {self.experiment!r}; choose from {list(PRESETS)}"
            )
        kind = self.kind
        for name in ("variants", "fmrs", "limits", "benchmarks", "fr_models", "sets"):
            setattr(self, name, tuple(getattr(self, name)))
        self.variants = self._chosen_variants()
        self.seeds = kind.seeds if self.seeds is None else self.seeds
        self._check()
        if self.data is None:
            self.image_size = 48 if self.image_size is None else self.image_size
            self.batch_size = 64 if self.batch_size is None else self.batch_size
        else:
            recipe = self.recipe_config()
            self.image_size = self.image_size or int(recipe.model.input_size)
            self.batch_size = self.batch_size or int(recipe.data.batch_size)
        if self.epochs is None:
            if self.budget_minutes is not None:
                self.epochs = self.epochs_for_budget(self.budget_minutes)
            elif self.data is None:
                self.epochs = kind.epochs
            else:
                self.epochs = int(self.recipe_config().train.epochs)

    # -- validation ---------------------------------------------------------------------------------
    def _chosen_variants(self) -> tuple[str, ...]:
        kind = self.kind
        known = tuple(v.key for v in kind.catalogue)
        chosen = self.variants or kind.default_variants
        chosen = known if chosen == ("all",) else chosen
        unknown = [v for v in chosen if v not in known]
        if unknown:
            raise ConfigError(
                f"unknown {kind.name} variant(s) {unknown}; choose from {list(known)}"
            )
        # the baseline (and the study's independent FR model) every comparison needs: added
        return tuple(v for v in kind.required if v not in chosen) + chosen

    def _check(self) -> None:
        size = self.image_size
        checks = {
            "seeds": self.seeds is not None and self.seeds >= 1,
            "first_seed": self.first_seed >= 0,
            "train_identities": self.train_identities >= 10,
            "samples_per_identity": self.samples_per_identity >= 2,
            "test_identities": self.test_identities >= 2,
            "test_samples_per_identity": self.test_samples_per_identity >= 2,
            "low_variance_share": 0.0 <= self.low_variance_share < 1.0,
            "test_low_variance_share": self.test_low_variance_share is None
            or 0.0 <= self.test_low_variance_share < 1.0,
            "image_size": size is None or (16 <= size <= (1024 if self.data else 112)),
            "batch_size": self.batch_size is None
            or 2 <= self.batch_size <= (self.training_images if self.synthetic else 1 << 20),
            "epochs": self.epochs is None or self.epochs >= 1,
            "budget_minutes": self.budget_minutes is None or self.budget_minutes > 0,
            "width": self.width is None or self.width > 0,
            "fmrs": bool(self.fmrs) and all(0.0 < f < 1.0 for f in self.fmrs),
            "limits": bool(self.limits) and all(0.0 < v <= 1.0 for v in self.limits),
        }
        for name, ok in checks.items():
            if not ok:
                raise ConfigError(
                    f"{self.experiment} setting {name}={getattr(self, name)!r} is out of range"
                )
        if self.data is not None and not self.benchmarks:
            raise ConfigError(
                "--data trains on your data: give the benchmarks to evaluate on with --benchmark "
                "NAME:PATH (e.g. lfw:/data/lfw.bin), repeated"
            )
        from igfiqa.config import list_presets

        for name in (self.preset, f"{self.preset}_crfiqa"):
            if name not in list_presets():
                raise ConfigError(
                    f"--preset {self.preset}: the variants need the presets {self.preset} and "
                    f"{self.preset}_crfiqa; available: {', '.join(list_presets())}"
                )

    # -- what the settings mean ---------------------------------------------------------------------
    @property
    def kind(self) -> Preset:
        return PRESETS[self.experiment]

    @property
    def synthetic(self) -> bool:
        """Whether the training faces are rendered from these settings (no ``data``)."""
        return self.data is None

    @property
    def instruments(self) -> bool:
        """Whether units record the per-epoch instruments (the study on rendered faces)."""
        return self.experiment == "study" and self.synthetic

    @property
    def training_images(self) -> int:
        return self.train_identities * self.samples_per_identity

    def selected(self) -> list[Variant]:
        """The chosen variants, in the catalogue's order."""
        return [v for v in self.kind.catalogue if v.key in self.variants]

    def seed_list(self) -> list[int]:
        return list(range(self.first_seed, self.first_seed + int(self.seeds or 1)))

    def resolved_epochs(self) -> int:
        """Epochs per variant (the same for every variant)."""
        return int(self.epochs or 0)

    def recipe_config(self) -> Any:
        from igfiqa.config import load_config

        return load_config(self.preset)

    def epochs_for_budget(self, minutes: float) -> int:
        """Epochs per variant that ``minutes`` of training of every variant and seed take by the
        cost model :data:`SECONDS_PER_IMAGE_PASS` (the demo network at 48x48 on 2 CPU cores,
        scaled by the width): a fixed number, so the same budget always trains the same steps, but
        not a clock (a slower machine takes longer)."""
        images = self.training_images
        passes = float(sum(images * v.streams for v in self.selected()))
        size = self.image_size or 48
        scale = int(self.seeds or 1) * (1.0 if self.width is None else self.width / 0.25)
        seconds = passes * SECONDS_PER_IMAGE_PASS * (size / 48.0) ** 2 * scale
        return max(1, math.floor(minutes * 60.0 / seconds))

    # -- records ------------------------------------------------------------------------------------
    def _value(self, name: str) -> Any:
        return self.first_seed if name == "seed" else getattr(self, name)

    def _fields(self, names: tuple[str, ...]) -> dict[str, Any]:
        import json

        shown = [n for n in names if not (self.data is not None and n in _SYNTHETIC)]
        defaults = {f.name: f.default for f in fields(self)}
        shown += [n for n in _REAL if getattr(self, n) != defaults[n]]
        return json.loads(json.dumps({n: self._value(n) for n in shown}))

    def record(self) -> dict[str, Any]:
        """The settings as the output's JSON records them (the epochs resolved)."""
        data = self._fields(self.kind.record_fields)
        if self.experiment == "study":
            data["seed_list"] = self.seed_list()
        return data

    def fingerprint(self) -> dict[str, Any]:
        """What a resumed run must share with the one it continues (the study: not the number
        of seeds, the variants or the real-photo check, which a resumed study may extend)."""
        return self._fields(self.kind.resume_fields)

    def unit_overrides(self, variant: Variant, seed: int, source: str) -> list[str]:
        """The ``--set`` overrides of one unit, on top of its preset: the data, the seed, the
        epochs and batch, and (rendered faces) one checkpoint per epoch end, no verification."""
        overrides = [*variant.overrides, f"data.source={source}"]
        if self.synthetic or self.image_size is not None:
            overrides += [
                f"data.image_size={self.image_size}",
                f"model.input_size={self.image_size}",
            ]
        overrides += [
            f"data.batch_size={self.batch_size}",
            f"train.epochs={self.epochs}",
            f"train.seed={seed + variant.seed_offset}",
            f"train.device={self.device}",
            "verification.sets=[]",
        ]
        if self.synthetic:
            overrides.append("checkpoint.every_steps=0")
        if self.instruments:  # a checkpoint per epoch end, all kept, and a finer training log
            overrides += [
                "checkpoint.at_epoch_end=true",
                "checkpoint.keep=0",
                "logging.every_steps=5",
            ]
        if self.width is not None:
            overrides.append(f"model.width={self.width}")
        return [*overrides, *self.sets]

    def unit_config(self, variant: Variant, seed: int, source: str) -> Any:
        """The training config of one unit (:meth:`unit_overrides` on the variant's preset)."""
        from igfiqa.config import load_config

        return load_config(
            variant.preset(self.preset), overrides=self.unit_overrides(variant, seed, source)
        )


def demo_settings(*, seed: int = 0, **values: Any) -> Settings:
    """The demo's settings (one seed, ``seed``); ``budget_minutes`` is deprecated there: it picks
    the epochs from the cost model and never limited the time."""
    import warnings

    if values.get("budget_minutes") is not None:
        warnings.warn(
            "budget_minutes is deprecated: it never limited the time, it picks a number of epochs "
            "from a fixed cost model; pass epochs=N",
            DeprecationWarning,
            stacklevel=2,
        )
    return Settings(experiment="demo", seeds=1, first_seed=seed, **values)


def study_settings(**values: Any) -> Settings:
    """The study's settings (``seeds`` default 3)."""
    return Settings(experiment="study", **values)
