"""``igfiqa study``: does intra-class variance guidance help? Many seeds, every switch, two FR models.

:func:`run_study` renders the demo's synthetic faces for each seed, trains every variant of
:data:`STUDY_VARIANTS` on the same data with the same seed, plus an independent FR model trained
without the quality loss, and evaluates every variant's quality on held-out identities with **two
FR models**: the CR-FIQA run's backbone and the independent one. Per variant and over the seeds: the
mean and 95% t-interval of pAUC/(e0 L) at each L and FMR, the **paired** difference to CR-FIQA (same
seed, same data) with its interval, the Spearman correlation with the generator's ground truth, the
real-photo transfer numbers (:mod:`igfiqa.evaluation.real_photos`), the guidance weights of
low-variance versus ordinary classes, and instruments of training: CR of clean versus degraded
training images per epoch, the guidance weights per epoch, the BatchNorm running statistics'
mismatch with clean and degraded images, and each backbone's own FNMR.

Every (seed, variant) is a unit with its own folder; a finished unit writes ``unit.json`` and is
never recomputed, an interrupted one resumes its training from its newest checkpoint, so a killed
study continues where it stopped. Writes ``report.md``, ``study.json`` and plots.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from igfiqa.demo import (
    GROUND_TRUTH,
    RenderedFaces,
    check_run_folder,
    clear_run_folder,
    epochs_for_budget,
    guidance_weights,
    refuse_symlinks,
    render_split,
)
from igfiqa.errors import ConfigError, IgfiqaError
from igfiqa.evaluation.results import ORACLE
from igfiqa.evaluation.similarity import pair_similarity
from igfiqa.files import (
    LOCK_FILE,
    FolderLock,
    atomic_output,
    atomic_write_text,
    ensure_dir,
    writing,
)

UNIT_FORMAT = 1
UNIT_FILES = ("unit.json", "test_quality.npy", "test_embedding.npy")
"""What the study writes into a unit's run folder besides the training run's own files."""


@dataclass(frozen=True)
class StudyVariant:
    """One trained model: a preset, ``--set`` overrides and the question it answers."""

    key: str
    label: str
    preset: str
    overrides: tuple[str, ...] = ()
    question: str = ""
    seed_offset: int = 0
    baseline: str = "crfiqa"  # the CR-FIQA run that differs from this one only by the method


_IG = "synthetic_demo"
_CR = "synthetic_demo_crfiqa"
_DIST = "method.guidance.statistic=distance"

BASELINE = "crfiqa"
INDEPENDENT_FR = "fr_only"

STUDY_VARIANTS: tuple[StudyVariant, ...] = (
    StudyVariant("crfiqa", "CR-FIQA (igfiqa baseline)", _CR, (), "the reference"),
    StudyVariant(
        "crfiqa_official",
        "CR-FIQA, official training (CCS/NNCCS, trainable BN scale)",
        _CR,
        ("method.objective.cr_formula=code", "optim.train_embedding_bn_scale=true"),
        "does the official code's CR and BN scale change the baseline?",
    ),
    StudyVariant("ig_distance", "IG-FIQA distance (paper)", _IG, (_DIST,), "the paper's method"),
    StudyVariant(
        "ig_similarity",
        "IG-FIQA similarity (pseudo-code)",
        _IG,
        ("method.guidance.statistic=similarity",),
        "the literal pseudo-code",
    ),
    StudyVariant(
        "ig_noaug",
        "IG-FIQA distance, no augmentation",
        _IG,
        (_DIST, "method.augment.enabled=false", "method.objective.fiqa_batch=same"),
        "guidance alone",
    ),
    StudyVariant(
        "aug_noguidance",
        "augmentation without guidance",
        _IG,
        ("method.guidance.enabled=false",),
        "augmentation alone",
    ),
    StudyVariant(
        "ig_split",
        "IG-FIQA distance, split batch",
        _IG,
        (_DIST, "method.objective.fiqa_batch=split"),
        "split vs duplicate",
    ),
    StudyVariant(
        "ig_no_backbone_grad",
        "IG-FIQA distance, no quality gradient into the backbone",
        _IG,
        (_DIST, "method.objective.fiqa_backbone_grad=false"),
        "does the quality loss shape the backbone?",
    ),
    StudyVariant(
        "ig_ema_clean",
        "IG-FIQA distance, EMA of clean CCS",
        _IG,
        (_DIST, "method.objective.ema_source=clean"),
        "EMA source",
    ),
    StudyVariant(
        "ig_bn_frozen",
        "IG-FIQA distance, degraded pass keeps BN running stats",
        _IG,
        (_DIST, "method.objective.quality_bn=frozen_stats"),
        "BatchNorm: degraded pass does not update running statistics",
    ),
    StudyVariant(
        "ig_bn_concat",
        "IG-FIQA distance, clean + degraded in one pass",
        _IG,
        (_DIST, "method.objective.quality_bn=concat"),
        "BatchNorm: one concatenated pass",
    ),
    StudyVariant(
        "ig_half_clean",
        "IG-FIQA distance, half the quality stream clean",
        _IG,
        (_DIST, "method.augment.image_p=0.5"),
        "added from the data: the quality head of duplicate mode never sees a clean image",
    ),
    StudyVariant(
        "ig_official",
        "IG-FIQA distance on the official CR-FIQA training (CCS/NNCCS, BN scale)",
        _IG,
        (_DIST, "method.objective.cr_formula=code", "optim.train_embedding_bn_scale=true"),
        "added from the data: IG-FIQA on top of the official CR-FIQA code's pseudo-label",
        baseline="crfiqa_official",
    ),
    StudyVariant(
        INDEPENDENT_FR,
        "independent FR model (no quality loss)",
        _CR,
        ("method.objective.quality_weight=0",),
        "the second FR model (not a quality method)",
        seed_offset=10_007,
    ),
)
VARIANT_KEYS = tuple(v.key for v in STUDY_VARIANTS)
EXTRA_VARIANTS = ("ig_half_clean", "ig_official")
"""Variants added from the data (docs/results.md); run with ``--variants all`` or by name."""
DEFAULT_VARIANTS = tuple(k for k in VARIANT_KEYS if k not in EXTRA_VARIANTS)
FR_MODELS = {BASELINE: "CR-FIQA backbone", INDEPENDENT_FR: "independent FR model"}

# two-sided 95% quantiles of Student's t for 1..30 degrees of freedom
_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
        2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
        2.060, 2.056, 2.052, 2.048, 2.045, 2.042)  # fmt: skip


def t_quantile_95(df: int) -> float:
    """The 97.5% quantile of Student's t with ``df`` degrees of freedom (1.96 beyond 120)."""
    if df < 1:
        return math.nan
    if df <= len(_T95):
        return _T95[df - 1]
    if df >= 120:
        return 1.96
    return 1.96 + (2.042 - 1.96) * (120 - df) / 90  # linear between df 30 and 120


def mean_ci(values: Sequence[float]) -> dict[str, float | int]:
    """Mean and 95% t-interval ``mean +- t(n-1) s / sqrt(n)`` of the finite values."""
    data = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    n = int(data.size)
    if n == 0:
        return {"mean": math.nan, "low": math.nan, "high": math.nan, "n": 0}
    mean = float(data.mean())
    if n == 1:
        return {"mean": mean, "low": math.nan, "high": math.nan, "n": 1}
    half = t_quantile_95(n - 1) * float(data.std(ddof=1)) / math.sqrt(n)
    return {"mean": mean, "low": mean - half, "high": mean + half, "n": n}


@dataclass
class StudySettings:
    """What the study renders, trains and evaluates; the defaults finish in < 90 min on 2 cores."""

    seeds: int = 3
    first_seed: int = 0
    variants: tuple[str, ...] = DEFAULT_VARIANTS
    train_identities: int = 200
    samples_per_identity: int = 20
    test_identities: int = 100
    test_samples_per_identity: int = 10
    low_variance_share: float = 0.2
    image_size: int = 48
    batch_size: int = 64
    epochs: int = 7
    width: float | None = None
    fmrs: tuple[float, ...] = (1e-2, 1e-3)
    limits: tuple[float, ...] = (0.2, 0.3)
    real_photos: bool = True
    photo_cache: str = "~/.cache/igfiqa/real_photos"
    device: str = "auto"

    def __post_init__(self) -> None:
        self.variants = VARIANT_KEYS if tuple(self.variants) == ("all",) else tuple(self.variants)
        unknown = [v for v in self.variants if v not in VARIANT_KEYS]
        if unknown:
            raise ConfigError(
                f"unknown study variant(s) {unknown}; choose from {list(VARIANT_KEYS)}"
            )
        # the baseline and the independent FR model are what every comparison needs: always added
        missing = tuple(v for v in (BASELINE, INDEPENDENT_FR) if v not in self.variants)
        self.variants = missing + self.variants
        checks = {
            "seeds": self.seeds >= 1,
            "first_seed": self.first_seed >= 0,
            "train_identities": self.train_identities >= 10,
            "samples_per_identity": self.samples_per_identity >= 2,
            "test_identities": self.test_identities >= 2,
            "test_samples_per_identity": self.test_samples_per_identity >= 2,
            "low_variance_share": 0.0 <= self.low_variance_share < 1.0,
            "image_size": 16 <= self.image_size <= 112,
            "epochs": self.epochs >= 1,
            "width": self.width is None or self.width > 0,
        }
        for name, ok in checks.items():
            if not ok:
                raise ConfigError(f"study setting {name}={getattr(self, name)!r} is out of range")

    def selected(self) -> list[StudyVariant]:
        return [v for v in STUDY_VARIANTS if v.key in self.variants]

    def epochs_for_budget(self, minutes: float) -> int:
        """Epochs per variant that fit ``minutes`` of training for every variant and seed on the
        reference machine (2 CPU cores), with the demo's cost model: a fixed number, so the same
        budget always trains the same steps."""
        images = self.train_identities * self.samples_per_identity
        width = 1.0 if self.width is None else self.width / 0.25
        return epochs_for_budget(
            minutes, self.selected(), images, self.image_size, scale=self.seeds * width
        )

    def seed_list(self) -> list[int]:
        return list(range(self.first_seed, self.first_seed + self.seeds))

    def fingerprint(self) -> dict[str, Any]:
        """What a unit's results depend on (not the number of seeds or the variant list)."""
        data = asdict(self)
        for key in ("seeds", "first_seed", "variants", "real_photos", "photo_cache", "device"):
            data.pop(key)
        return json.loads(json.dumps(data))


# ------------------------------------------------------------------------------------ one unit
def _config(variant: StudyVariant, settings: StudySettings, seed: int, spec: str) -> Any:
    from igfiqa.config import load_config

    overrides = [
        *variant.overrides,
        f"data.source={spec}",
        f"data.image_size={settings.image_size}",
        f"model.input_size={settings.image_size}",
        f"data.batch_size={settings.batch_size}",
        f"train.epochs={settings.epochs}",
        f"train.seed={seed + variant.seed_offset}",
        f"train.device={settings.device}",
        "verification.sets=[]",
        "checkpoint.every_steps=0",
        "checkpoint.at_epoch_end=true",
        "checkpoint.keep=0",
        "logging.every_steps=5",
    ]
    if settings.width is not None:
        overrides.append(f"model.width={settings.width}")
    return load_config(variant.preset, overrides=overrides)


def _train_unit(config: Any, run_dir: Path, data: RenderedFaces, progress: bool, out: Path) -> Path:
    """Train (or finish training) one unit; returns its final checkpoint."""
    from igfiqa.checkpoint import latest_checkpoint, load_checkpoint
    from igfiqa.engine.trainer import train

    folder = run_dir / "checkpoints"
    refuse_symlinks(out, folder)
    latest = latest_checkpoint(folder)
    if latest is not None and int(load_checkpoint(latest)["epoch"]) >= config.train.epochs:
        return latest
    if latest is None:  # killed before its first checkpoint: start afresh (only igfiqa's files)
        clear_run_folder(run_dir, out, extra=UNIT_FILES)
    result = train(
        config, out_dir=run_dir, resume=latest is not None, progress=progress, dataset=data
    )
    if result.checkpoint is None or result.stopped == "signal":
        raise IgfiqaError(f"training of {run_dir} stopped early ({result.stopped})")
    return Path(result.checkpoint)


def _forward(
    state: dict[str, Any], images: np.ndarray, device: str, *, batchnorm: bool = False
) -> dict[str, Any]:
    """Embeddings and quality of a checkpoint's model on uint8 images (evaluation mode); with
    ``batchnorm`` also how far each BatchNorm's running statistics are from these images' own:
    mean over channels of |batch mean - running mean| / running std, and |log(batch var / running
    var)|, averaged over the layers."""
    import torch

    from igfiqa.data.pixels import normalise_batch
    from igfiqa.models import create_model

    model = create_model(**state["model_spec"])
    model.load_state_dict(state["model"])
    model.to(device).eval()
    sums: dict[int, list[Any]] = {}

    def hook(module: Any, inputs: tuple[Any, ...], _: Any) -> None:
        x = inputs[0].detach().float()
        dims = [0, 2, 3] if x.ndim == 4 else [0]
        count = x.numel() // x.shape[1]
        entry = sums.setdefault(id(module), [module, 0, 0.0, 0.0])
        entry[1] += count
        entry[2] = entry[2] + x.sum(dims)
        entry[3] = entry[3] + (x * x).sum(dims)

    modules = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    handles = [m.register_forward_hook(hook) for m in modules] if batchnorm else []
    embeddings, qualities = [], []
    try:
        with torch.no_grad():
            for start in range(0, len(images), 256):
                batch = torch.from_numpy(normalise_batch(list(images[start : start + 256])))
                embedding, quality = model(batch.to(device))
                embeddings.append(embedding.float().cpu().numpy())
                qualities.append(quality.reshape(-1).float().cpu().numpy())
    finally:
        for handle in handles:
            handle.remove()
    out: dict[str, Any] = {
        "embedding": np.concatenate(embeddings),
        "quality": np.concatenate(qualities),
    }
    if batchnorm:
        shifts, ratios = [], []
        for module, count, total, squares in sums.values():
            mean = total / count
            var = (squares / count - mean * mean).clamp(min=0.0)
            run_mean, run_var = module.running_mean.float(), module.running_var.float()
            shifts.append(float(((mean - run_mean).abs() / (run_var + module.eps).sqrt()).mean()))
            ratios.append(float((var + module.eps).div(run_var + module.eps).log().abs().mean()))
        out["bn_mean_shift"] = float(np.mean(shifts))
        out["bn_log_var_ratio"] = float(np.mean(ratios))
    return out


def certainty_ratios(
    embedding: np.ndarray, prototypes: np.ndarray, labels: np.ndarray
) -> np.ndarray:
    """CR (the paper's form) of each embedding against the class prototypes, computed with the
    training objective's own functions (:mod:`igfiqa.method.pseudo_labels`)."""
    import torch

    from igfiqa.method.pseudo_labels import ccs_nnccs, certainty_ratio
    from igfiqa.models.heads import prototype_cosine

    cosine = prototype_cosine(torch.from_numpy(embedding).double(), torch.from_numpy(prototypes))
    ccs, nnccs = ccs_nnccs(cosine, torch.from_numpy(np.asarray(labels)))
    return certainty_ratio(ccs, nnccs, "paper").numpy()


@dataclass
class Probe:
    """Fixed training images for the per-epoch instruments: clean ones and strongly degraded ones."""

    clean: np.ndarray
    degraded: np.ndarray
    clean_labels: np.ndarray
    degraded_labels: np.ndarray

    @classmethod
    def from_faces(cls, data: RenderedFaces, size: int = 256, seed: int = 0) -> Probe:
        rng = np.random.default_rng([seed, 17])
        ordinary = ~data.low_variance[data.labels]
        clean = np.flatnonzero((data.quality >= 1.0) & ordinary)
        degraded = np.flatnonzero((data.quality < 0.5) & ordinary)
        clean = np.sort(rng.choice(clean, min(size, clean.size), replace=False))
        degraded = np.sort(rng.choice(degraded, min(size, degraded.size), replace=False))
        return cls(
            data.images[clean], data.images[degraded], data.labels[clean], data.labels[degraded]
        )


def _epoch_instruments(
    run_dir: Path, probe: Probe, low_variance: np.ndarray, device: str
) -> list[dict[str, float]]:
    """Per epoch checkpoint: CR and predicted quality of clean vs degraded probe images, BN
    mismatch on them, and the guidance weights of low-variance vs ordinary classes."""
    from igfiqa.checkpoint import list_checkpoints, load_checkpoint

    rows = []
    # one checkpoint per epoch end (checkpoint.every_steps=0, keep=0)
    for epoch, (step, path) in enumerate(list_checkpoints(run_dir / "checkpoints"), start=1):
        state = load_checkpoint(path)
        prototypes = state["head"]["weight"].float().numpy()
        row: dict[str, float] = {"epoch": float(epoch), "step": float(step)}
        for name, images, labels in (
            ("clean", probe.clean, probe.clean_labels),
            ("degraded", probe.degraded, probe.degraded_labels),
        ):
            out = _forward(state, images, device, batchnorm=True)
            row[f"cr_{name}"] = float(certainty_ratios(out["embedding"], prototypes, labels).mean())
            row[f"quality_{name}"] = float(out["quality"].mean())
            row[f"bn_mean_shift_{name}"] = out["bn_mean_shift"]
            row[f"bn_log_var_ratio_{name}"] = out["bn_log_var_ratio"]
        weights = guidance_weights(state, low_variance)
        if weights:
            row["weight_low_variance"] = weights["guidance_weight_low_variance"]
            row["weight_ordinary"] = weights["guidance_weight_ordinary"]
        rows.append(row)
    return rows


def _training_log(run_dir: Path) -> dict[str, list[float]]:
    """Per-epoch means of the objective's diagnostics from ``metrics.jsonl``."""
    names = ("cr_mean", "cr_clean_mean", "guidance_weight_mean", "fr_loss", "quality_loss")
    per_epoch: dict[int, dict[str, list[float]]] = {}
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return {}
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "epoch" not in record or "step" not in record:
            continue
        bucket = per_epoch.setdefault(int(record["epoch"]), {n: [] for n in names})
        for name in names:
            value = record.get(name)
            if isinstance(value, (int, float)) and math.isfinite(value):
                bucket[name].append(float(value))
    epochs = sorted(per_epoch)
    return {
        name: [
            float(np.mean(per_epoch[e][name])) if per_epoch[e][name] else math.nan for e in epochs
        ]
        for name in names
    }


@dataclass
class PhotoSet:
    """The real-photo transfer images, or why they are missing."""

    images: list[np.ndarray] = field(default_factory=list)
    faces: np.ndarray | None = None
    kinds: np.ndarray | None = None
    severities: np.ndarray | None = None
    unavailable: str | None = None


def load_photo_set(settings: StudySettings, log: Callable[[str], None]) -> PhotoSet:
    if not settings.real_photos:
        return PhotoSet(unavailable="disabled (--no-real-photos)")
    from igfiqa.evaluation.real_photos import build_images, load_faces

    try:
        _, crops = load_faces(Path(settings.photo_cache), log=log)
    except IgfiqaError as error:
        log(f"real photos unavailable: {error}")
        return PhotoSet(unavailable=str(error))
    images, faces, kinds, severities = build_images(crops, 0)
    return PhotoSet(images, faces, kinds, severities)


def _real_photo_metrics(checkpoint: Path, photos: PhotoSet, seed: int) -> dict[str, Any] | None:
    from igfiqa.evaluation.transfer import embedding_diagnostics, transfer_metrics
    from igfiqa.inference import load_model

    if photos.unavailable is not None:
        return None
    quality, embeddings = load_model(checkpoint).score_and_embed(
        photos.images, resize=True, workers=1
    )
    metrics = transfer_metrics(
        quality, photos.faces, photos.kinds, photos.severities, resamples=200, seed=seed
    )
    diagnostics = embedding_diagnostics(
        embeddings, quality, photos.faces, photos.kinds, photos.severities
    )
    return {
        "spearman": metrics["spearman"],
        "clean_above_degraded": metrics["clean_above_degraded"],
        "per_kind_spearman": metrics["spearman_per_kind"],
        "clean_above_per_kind": metrics["clean_above_degraded_per_kind"],
        "mean_quality_clean": float(np.mean(quality[photos.severities == 0])),
        "mean_quality_degraded": float(np.mean(quality[photos.severities > 0])),
        "embedding_norm_spearman": diagnostics["norm_spearman"],
        "quality_norm_spearman": diagnostics["quality_norm_spearman"],
    }


def evaluate_unit(
    variant: StudyVariant,
    checkpoint: Path,
    run_dir: Path,
    test: RenderedFaces,
    probe: Probe,
    low_variance: np.ndarray,
    photos: PhotoSet,
    seed: int,
    device: str,
) -> dict[str, Any]:
    """Everything one trained unit contributes; its arrays are saved beside ``unit.json``."""
    from igfiqa.checkpoint import load_checkpoint
    from igfiqa.evaluation.correlation import spearman

    state = load_checkpoint(checkpoint)
    out = _forward(state, test.images, device)
    np.save(run_dir / "test_quality.npy", out["quality"])
    np.save(run_dir / "test_embedding.npy", out["embedding"])
    weights = guidance_weights(state, low_variance) or {}
    return {
        "format": UNIT_FORMAT,
        "key": variant.key,
        "seed": seed,
        "checkpoint": str(checkpoint.relative_to(run_dir)),
        "steps": int(state["step"]),
        "spearman_ground_truth": spearman(out["quality"], test.quality),
        "real_photos": _real_photo_metrics(checkpoint, photos, seed),
        **weights,
        "epochs": _epoch_instruments(run_dir, probe, low_variance, device),
        "training_log": _training_log(run_dir),
    }


# ------------------------------------------------------------------------------------ one seed
def _pauc_key(fmr: float, limit: float) -> str:
    return f"L={limit:g}, FMR={fmr:g}"


def evaluate_seed(
    units: dict[str, dict[str, Any]],
    unit_dirs: dict[str, Path],
    test: RenderedFaces,
    settings: StudySettings,
    seed: int,
) -> dict[str, Any]:
    """pAUC/(e0 L) of every variant's quality with each FR model, and each backbone's own FNMR."""
    from igfiqa.data.benchmarks import all_pairs
    from igfiqa.evaluation.results import evaluate_scores

    pairs, mated = all_pairs(test.labels, max_nonmated=None, seed=seed)
    qualities = {
        k: np.load(unit_dirs[k] / "test_quality.npy") for k in units if k != INDEPENDENT_FR
    }
    qualities[GROUND_TRUTH] = test.quality
    result: dict[str, Any] = {"seed": seed, "fr_models": {}, "backbone_fnmr": {}, "curves": {}}
    for fr_key, fr_name in FR_MODELS.items():
        similarity = pair_similarity(np.load(unit_dirs[fr_key] / "test_embedding.npy"), pairs)
        evaluation = evaluate_scores(
            similarity, mated, qualities, pairs=pairs, fmrs=settings.fmrs, limits=settings.limits,
            benchmark=f"synthetic held-out identities, seed {seed}", fr_model=fr_name,
        )  # fmt: skip
        table: dict[str, dict[str, float]] = {}
        curves: dict[str, Any] = {}
        for fmr_result in evaluation.per_fmr:
            fmr = fmr_result.target_fmr
            for curve in fmr_result.curves:
                for limit in settings.limits:
                    table.setdefault(curve.name, {})[_pauc_key(fmr, limit)] = float(
                        curve.pauc_normalized[limit]
                    )
                if math.isclose(fmr, settings.fmrs[0]):
                    curves[curve.name] = {
                        "discard": curve.discard_fraction.tolist(),
                        "fnmr": curve.fnmr.tolist(),
                    }
            table.setdefault("_e0", {})[f"FMR={fmr:g}"] = float(fmr_result.e0)
        result["fr_models"][fr_key] = table
        result["curves"][fr_key] = curves
    for key in units:  # each backbone as an FR model of its own: FNMR at the fixed FMR threshold
        similarity = pair_similarity(np.load(unit_dirs[key] / "test_embedding.npy"), pairs)
        result["backbone_fnmr"][key] = _fnmr_at_fmr(similarity, mated, settings.fmrs)
    return result


def _fnmr_at_fmr(
    similarity: np.ndarray, mated: np.ndarray, fmrs: Sequence[float]
) -> dict[str, float]:
    from igfiqa.evaluation.edc import threshold_at_fmr

    out = {}
    for fmr in fmrs:
        threshold = threshold_at_fmr(similarity[~mated], fmr)
        out[f"FMR={fmr:g}"] = float((similarity[mated] < threshold).mean())
    return out


# ------------------------------------------------------------------------------------ the study
def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _write_json(path: Path, data: Any) -> None:
    from igfiqa.files import atomic_write_text, json_safe

    atomic_write_text(json.dumps(json_safe(data), indent=1), path)


def _render(settings: StudySettings, seed: int) -> tuple[RenderedFaces, RenderedFaces, str]:
    return render_split(
        seed=seed,
        train_identities=settings.train_identities,
        samples_per_identity=settings.samples_per_identity,
        test_identities=settings.test_identities,
        test_samples_per_identity=settings.test_samples_per_identity,
        image_size=settings.image_size,
        low_variance_share=settings.low_variance_share,
    )


def run_study(
    out_dir: str | Path,
    settings: StudySettings | None = None,
    *,
    progress: bool = False,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run (or resume) the study in ``out_dir``; returns the content of ``study.json``.

    One study at a time per ``out_dir``: it holds the folder's lock (``.igfiqa.lock``) until it
    returns or fails, so a second study (or demo, or training) there is refused before any work.
    Before any work, every unit folder that would be started afresh is checked: one holding a
    file igfiqa did not write, a live lock or a symbolic link is refused, never deleted.
    """
    settings = settings or StudySettings()
    out = ensure_dir(out_dir, "the study folder (--out)")
    with writing(out / LOCK_FILE, "create the lock file"):
        lock = FolderLock(out, "study folder").acquire()
    try:
        return _run_study(out, settings, progress, log)
    finally:
        lock.release()


def _check_units(out: Path, settings: StudySettings) -> None:
    """Refuse, before any work, unit folders the study could not train in without deleting or
    writing through something that is not its own."""
    from igfiqa.checkpoint import latest_checkpoint

    for seed in settings.seed_list():
        for variant in settings.selected():
            run_dir = out / f"seed_{seed}" / variant.key
            refuse_symlinks(out, run_dir / "checkpoints")
            if (
                _read_json(run_dir / "unit.json") is None
                and latest_checkpoint(run_dir / "checkpoints") is None
            ):
                check_run_folder(run_dir, out, extra=UNIT_FILES)


def _run_study(
    out: Path, settings: StudySettings, progress: bool, log: Callable[[str], None]
) -> dict[str, Any]:
    fingerprint = settings.fingerprint()
    stored = _read_json(out / "settings.json")
    if stored is not None and stored != fingerprint:
        raise ConfigError(
            f"{out} holds a study with other settings ({out / 'settings.json'}); use another "
            "--out folder, or the same settings to resume it"
        )
    _check_units(out, settings)
    _write_json(out / "settings.json", fingerprint)
    from igfiqa.inference.runners import resolve_device

    device = resolve_device(settings.device)
    started = time.perf_counter()
    photos = load_photo_set(settings, log)
    seeds: list[dict[str, Any]] = []
    units: dict[int, dict[str, dict[str, Any]]] = {}
    for seed in settings.seed_list():
        seed_dir = out / f"seed_{seed}"
        seed_file = seed_dir / "seed.json"
        unit_files = {v.key: seed_dir / v.key / "unit.json" for v in settings.selected()}
        done = {k: _read_json(p) for k, p in unit_files.items()}
        cached_seed = _read_json(seed_file)
        if all(done.values()) and cached_seed is not None:
            log(f"seed {seed}: done earlier")
            units[seed], seeds = done, [*seeds, cached_seed]  # type: ignore[list-item]
            continue
        log(f"seed {seed}: rendering the synthetic faces")
        train_set, test_set, spec = _render(settings, seed)
        probe = Probe.from_faces(train_set, seed=seed)
        unit_dirs = {k: p.parent for k, p in unit_files.items()}
        for number, variant in enumerate(settings.selected(), start=1):
            if done[variant.key] is not None:
                continue
            log(f"seed {seed} [{number}/{len(settings.variants)}] {variant.label}")
            run_dir = unit_dirs[variant.key]
            t0 = time.perf_counter()
            config = _config(variant, settings, seed, spec)
            checkpoint = _train_unit(config, run_dir, train_set, progress, out)
            unit = evaluate_unit(
                variant, checkpoint, run_dir, test_set, probe, train_set.low_variance, photos,
                seed, device,
            )  # fmt: skip
            unit["seconds"] = time.perf_counter() - t0
            _write_json(unit_files[variant.key], unit)
            done[variant.key] = unit
        units[seed] = done  # type: ignore[assignment]
        seed_result = evaluate_seed(done, unit_dirs, test_set, settings, seed)  # type: ignore[arg-type]
        _write_json(seed_file, seed_result)
        seeds.append(_read_json(seed_file) or seed_result)
    summary = summarise(settings, seeds, units, photos)
    summary["seconds_this_call"] = time.perf_counter() - started
    summary["files"] = write_outputs(out, settings, summary, seeds)
    _write_json(out / "study.json", summary)
    return summary


# ------------------------------------------------------------------------------------ summary
def summarise(
    settings: StudySettings,
    seeds: list[dict[str, Any]],
    units: dict[int, dict[str, dict[str, Any]]],
    photos: PhotoSet,
) -> dict[str, Any]:
    """Means, intervals and paired differences over the seeds."""
    keys = [v.key for v in settings.selected()]
    quality_keys = [k for k in keys if k != INDEPENDENT_FR]
    cells = [_pauc_key(f, L) for f in settings.fmrs for L in settings.limits]
    pauc: dict[str, Any] = {}
    paired: dict[str, Any] = {}
    for fr_key in FR_MODELS:
        pauc[fr_key], paired[fr_key] = {}, {}
        for key in [*quality_keys, GROUND_TRUTH, ORACLE]:
            pauc[fr_key][key] = {
                c: mean_ci([_cell(s, fr_key, key, c) for s in seeds]) for c in cells
            }
        for key in quality_keys:
            if key == BASELINE:
                continue
            paired[fr_key][key] = {}
            for c in cells:
                diffs = [_cell(s, fr_key, key, c) - _cell(s, fr_key, BASELINE, c) for s in seeds]
                stats = mean_ci(diffs)
                stats["better_seeds"] = int(sum(d < 0 for d in diffs if math.isfinite(d)))
                paired[fr_key][key][c] = stats
    own: dict[str, Any] = {}  # against the CR-FIQA run with the same recipe, where that differs
    for variant in settings.selected():
        if variant.baseline != BASELINE and variant.baseline in keys:
            own[variant.key] = {"baseline": variant.baseline}
            for fr_key in FR_MODELS:
                diffs = [
                    _cell(s, fr_key, variant.key, cells[0])
                    - _cell(s, fr_key, variant.baseline, cells[0])
                    for s in seeds
                ]
                stats = mean_ci(diffs)
                stats["better_seeds"] = int(sum(d < 0 for d in diffs if math.isfinite(d)))
                own[variant.key][fr_key] = stats
    per_variant: dict[str, Any] = {}
    for key in keys:
        rows = [units[s][key] for s in units]
        entry: dict[str, Any] = {
            "spearman_ground_truth": mean_ci([r["spearman_ground_truth"] for r in rows]),
            "backbone_fnmr": {
                f"FMR={f:g}": mean_ci([s["backbone_fnmr"][key][f"FMR={f:g}"] for s in seeds])
                for f in settings.fmrs
            },
            "seconds": mean_ci([r.get("seconds", math.nan) for r in rows]),
        }
        for name in ("guidance_weight_low_variance", "guidance_weight_ordinary"):
            if any(name in r for r in rows):
                entry[name] = mean_ci([r.get(name, math.nan) for r in rows])
        photo_rows = [r["real_photos"] for r in rows if r.get("real_photos")]
        if photo_rows:
            entry["real_photos"] = {
                "spearman": mean_ci([p["spearman"] for p in photo_rows]),
                "clean_above_degraded": mean_ci([p["clean_above_degraded"] for p in photo_rows]),
                **{
                    name: mean_ci([p.get(name) for p in photo_rows])
                    for name in ("embedding_norm_spearman", "quality_norm_spearman")
                },
                "per_kind_spearman": {
                    kind: mean_ci([p["per_kind_spearman"].get(kind) for p in photo_rows])
                    for kind in photo_rows[0]["per_kind_spearman"]
                },
            }
        entry["final_epoch"] = {
            name: mean_ci([r["epochs"][-1].get(name, math.nan) for r in rows if r["epochs"]])
            for name in (
                "cr_clean", "cr_degraded", "quality_clean", "quality_degraded",
                "bn_mean_shift_clean", "bn_mean_shift_degraded",
                "bn_log_var_ratio_clean", "bn_log_var_ratio_degraded",
            )
        }  # fmt: skip
        per_variant[key] = entry
    labels = {v.key: v.label for v in settings.selected()}
    return {
        "study": "igfiqa study",
        "settings": {**asdict(settings), "seed_list": settings.seed_list()},
        "variants": labels,
        "questions": {v.key: v.question for v in settings.selected()},
        "fr_models": FR_MODELS,
        "baseline": BASELINE,
        "cells": cells,
        "pauc_normalized": pauc,
        "paired_difference": paired,
        "paired_difference_own_baseline": own,
        "per_variant": per_variant,
        "real_photos_unavailable": photos.unavailable,
    }


def _cell(seed: dict[str, Any], fr_key: str, key: str, cell: str) -> float:
    value = seed["fr_models"][fr_key].get(key, {}).get(cell)
    return float(value) if value is not None else math.nan


# ------------------------------------------------------------------------------------ outputs
def _fmt(stats: dict[str, Any] | None, digits: int = 3, signed: bool = False) -> str:
    if not stats or stats.get("mean") is None or not math.isfinite(stats["mean"]):
        return "-"
    sign = "+" if signed else ""
    text = f"{stats['mean']:{sign}.{digits}f}"
    low, high = stats.get("low"), stats.get("high")
    if low is not None and high is not None and math.isfinite(low) and math.isfinite(high):
        text += f" [{low:{sign}.{digits}f}, {high:{sign}.{digits}f}]"
    return text


def _excludes_zero(stats: dict[str, Any]) -> str:
    low, high = stats.get("low"), stats.get("high")
    if low is None or high is None or not (math.isfinite(low) and math.isfinite(high)):
        return ""
    if high < 0:
        return " **better**"
    if low > 0:
        return " **worse**"
    return ""


def headline_table(summary: dict[str, Any]) -> str:
    """Markdown: per variant, pAUC/(e0 L) at the first cell and its paired difference to CR-FIQA,
    for both FR models."""
    cell = summary["cells"][0]
    seeds = len(summary["settings"]["seed_list"])
    head = ["variant"]
    for name in summary["fr_models"].values():
        head += [f"{name}: pAUC/(e0 L)", f"{name}: paired diff to CR-FIQA (better seeds)"]
    head += ["Spearman with ground truth", "real photos: Spearman", "real photos: clean above"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, label in summary["variants"].items():
        if key == INDEPENDENT_FR:
            continue
        row = [label]
        for fr_key in summary["fr_models"]:
            row.append(_fmt(summary["pauc_normalized"][fr_key][key][cell]))
            if key == summary["baseline"]:
                row.append("(reference)")
            else:
                stats = summary["paired_difference"][fr_key][key][cell]
                row.append(
                    f"{_fmt(stats, signed=True)}{_excludes_zero(stats)} "
                    f"({stats['better_seeds']}/{seeds})"
                )
        entry = summary["per_variant"][key]
        photos = entry.get("real_photos", {})
        row += [
            _fmt(entry["spearman_ground_truth"]),
            _fmt(photos.get("spearman")),
            _fmt(photos.get("clean_above_degraded")),
        ]
        lines.append("| " + " | ".join(row) + " |")
    for ref in (GROUND_TRUTH, ORACLE):
        row = [f"*{ref}*"]
        for fr_key in summary["fr_models"]:
            row += [_fmt(summary["pauc_normalized"][fr_key][ref][cell]), "-"]
        lines.append("| " + " | ".join(row + ["-"] * 3) + " |")
    return "\n".join(lines)


def _all_cells_table(summary: dict[str, Any], fr_key: str) -> str:
    cells = summary["cells"]
    head = ["variant", *[f"{c}" for c in cells]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, label in summary["variants"].items():
        if key in (INDEPENDENT_FR, summary["baseline"]):
            continue
        row = [label]
        for c in cells:
            stats = summary["paired_difference"][fr_key][key][c]
            row.append(_fmt(stats, signed=True) + _excludes_zero(stats))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def _instrument_table(summary: dict[str, Any]) -> str:
    head = [
        "variant", "backbone FNMR @FMR 1e-2", "CR clean", "CR degraded", "quality clean",
        "quality degraded", "BN shift clean", "BN shift degraded", "w low-var", "w ordinary",
    ]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, label in summary["variants"].items():
        entry = summary["per_variant"][key]
        final = entry["final_epoch"]
        fnmr = next(iter(entry["backbone_fnmr"].values()))
        row = [
            label,
            _fmt(fnmr),
            _fmt(final["cr_clean"]),
            _fmt(final["cr_degraded"]),
            _fmt(final["quality_clean"]),
            _fmt(final["quality_degraded"]),
            _fmt(final["bn_mean_shift_clean"]),
            _fmt(final["bn_mean_shift_degraded"]),
            _fmt(entry.get("guidance_weight_low_variance")),
            _fmt(entry.get("guidance_weight_ordinary")),
        ]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def _over_training(units: dict[int, dict[str, dict[str, Any]]], key: str, name: str) -> list[float]:
    series = [
        [row.get(name, math.nan) for row in units[s][key]["epochs"]]
        for s in units
        if key in units[s]
    ]
    length = min((len(x) for x in series), default=0)
    means = []
    for i in range(length):
        values = [x[i] for x in series if x[i] is not None and math.isfinite(x[i])]
        means.append(float(np.mean(values)) if values else math.nan)
    return means


def write_outputs(
    out: Path, settings: StudySettings, summary: dict[str, Any], seeds: list[dict[str, Any]]
) -> list[str]:
    """``report.md`` and the plots; returns the written files relative to ``out``."""
    files = [*plot_edc(out, summary, seeds[0]), plot_forest(out, summary)]
    units = {int(s["seed"]): {} for s in seeds}
    for seed in units:
        for key in summary["variants"]:
            unit = _read_json(out / f"seed_{seed}" / key / "unit.json")
            if unit is not None:
                units[seed][key] = unit
    atomic_write_text(render_report(summary, units, files), out / "report.md", private=False)
    return [*files, "report.md", "study.json"]


def _save_figure(fig: Any, path: Path) -> None:
    """Save a PNG atomically: a symbolic link at ``path`` is replaced, its target not written."""
    with atomic_output(path, private=False) as temporary:
        fig.savefig(temporary, dpi=120, format="png")


def plot_edc(out: Path, summary: dict[str, Any], seed: dict[str, Any]) -> list[str]:
    """EDC at the first FMR, one plot per FR model, for the first seed."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    written = []
    for fr_key, fr_name in summary["fr_models"].items():
        fig, ax = plt.subplots(figsize=(7.5, 5.0))
        try:
            for name, curve in seed["curves"][fr_key].items():
                label = summary["variants"].get(name, name)
                style = (
                    {"linestyle": "--", "color": "0.4"} if name not in summary["variants"] else {}
                )
                ax.step(curve["discard"], curve["fnmr"], where="post", label=label, **style)
            ax.set_xlim(0.0, min(1.0, 2 * max(summary["settings"]["limits"])))
            ax.set_ylim(bottom=0.0)
            ax.set_xlabel("fraction of mated comparisons discarded (lowest pair quality first)")
            ax.set_ylabel("FNMR")
            fmr = summary["settings"]["fmrs"][0]
            ax.set_title(f"EDC, {fr_name}, FMR {fmr:g}, seed {seed['seed']}", fontsize=10)
            ax.legend(fontsize=6.5, loc="upper right")
            ax.grid(alpha=0.3)
            fig.tight_layout()
            name = f"edc_{fr_key}.png"
            _save_figure(fig, out / name)
            written.append(name)
        finally:
            plt.close(fig)
    return written


def plot_forest(out: Path, summary: dict[str, Any]) -> str:
    """Paired differences to CR-FIQA with their 95% intervals, both FR models, first cell."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    cell = summary["cells"][0]
    keys = [k for k in summary["variants"] if k not in (INDEPENDENT_FR, summary["baseline"])]
    fig, ax = plt.subplots(figsize=(8.5, 0.45 * len(keys) + 1.8))
    try:
        for offset, (fr_key, fr_name) in zip(
            (-0.15, 0.15), summary["fr_models"].items(), strict=False
        ):
            for row, key in enumerate(keys):
                stats = summary["paired_difference"][fr_key][key][cell]
                mean, low, high = stats["mean"], stats["low"], stats["high"]
                if mean is None or not math.isfinite(mean):
                    continue
                y = row + offset
                if low is not None and math.isfinite(low) and math.isfinite(high):
                    ax.plot([low, high], [y, y], color=f"C{0 if offset < 0 else 1}")
                ax.plot([mean], [y], "o", color=f"C{0 if offset < 0 else 1}",
                        label=fr_name if row == 0 else None)  # fmt: skip
        ax.axvline(0.0, color="0.3", linewidth=0.8)
        ax.set_yticks(range(len(keys)), [summary["variants"][k] for k in keys], fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel(f"pAUC/(e0 L) minus CR-FIQA's on the same seed ({cell})\nnegative = better")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3, axis="x")
        fig.tight_layout()
        _save_figure(fig, out / "forest.png")
    finally:
        plt.close(fig)
    return "forest.png"


def render_report(
    summary: dict[str, Any], units: dict[int, dict[str, dict[str, Any]]], files: list[str]
) -> str:
    """The text of ``report.md``."""
    s = summary["settings"]
    seeds = s["seed_list"]
    epochs_rows = []
    for key, label in summary["variants"].items():
        for name in ("cr_clean", "cr_degraded", "weight_low_variance", "weight_ordinary"):
            series = _over_training(units, key, name)
            if series and any(math.isfinite(v) for v in series):
                values = " ".join(f"{v:.3f}" for v in series)
                epochs_rows.append(f"| {label} | {name} | {values} |")
    photos = summary.get("real_photos_unavailable")
    photo_note = (
        f"Real-photo transfer was not measured: {photos}."
        if photos
        else "Real photos: 18 real faces (igfiqa.evaluation.real_photos), each clean and degraded "
        "by blur, downscaling, noise and occlusion at three levels; Spearman of quality with "
        "-severity and the share of (clean, degraded) pairs of a face ordered correctly."
    )
    all_cells = "\n\n".join(
        f"**{name}**\n\n{_all_cells_table(summary, fr_key)}"
        for fr_key, name in summary["fr_models"].items()
    )
    plots = ", ".join(f"[{f}]({f})" for f in files if f.endswith(".png"))
    own_rows = [
        f"| {summary['variants'][key]} | {summary['variants'][entry['baseline']]} | "
        + " | ".join(
            f"{_fmt(entry[fr], signed=True)}{_excludes_zero(entry[fr])} ({entry[fr]['better_seeds']}"
            f"/{len(seeds)})"
            for fr in summary["fr_models"]
        )
        + " |"
        for key, entry in summary.get("paired_difference_own_baseline", {}).items()
    ]
    own_section = (
        "Against the CR-FIQA run with the same recipe (" + summary["cells"][0] + "):\n\n"
        "| variant | its baseline | "
        + " | ".join(f"{name}: paired diff" for name in summary["fr_models"].values())
        + " |\n|---|---|"
        + "---|" * len(summary["fr_models"])
        + "\n"
        + "\n".join(own_rows)
        if own_rows
        else ""
    )
    return f"""# igfiqa study: does intra-class variance guidance help?

**Synthetic faces, tiny network, CPU.** Every variant is trained on the same rendered data with the
same seed, for {len(seeds)} seeds ({", ".join(map(str, seeds))}): {s["train_identities"]} identities x
{s["samples_per_identity"]} images ({s["low_variance_share"]:.0%} low-variance identities),
{s["image_size"]}x{s["image_size"]} pixels, {s["epochs"]} epochs; held-out: {s["test_identities"]}
ordinary identities x {s["test_samples_per_identity"]} images, all pairs. Two FR models give the
comparison scores: the CR-FIQA run's backbone, and an independent FR model trained on the same data
with another initialisation and no quality loss.

pAUC/(e0 L) is the stepwise area under the EDC (fixed threshold) on [0, L] divided by e0 L
(1 = random discarding, lower is better). Intervals are 95% t-intervals over the seeds; the paired
difference is variant minus CR-FIQA on the same seed and data (negative = the variant discards the
FR model's errors sooner); "better seeds" counts the seeds where it is negative. **better** /
**worse** mark intervals that exclude zero.

## Headline ({summary["cells"][0]})

{headline_table(summary)}

{photo_note}

{own_section}

## Paired differences to CR-FIQA at every L and FMR

{all_cells}

## Instruments (end of training, means over seeds)

CR (= CCS / (NNCCS + 1) against the run's own class prototypes) and predicted quality of 256 clean and
256 strongly degraded (ground truth < 0.5) training images of ordinary identities; "BN shift" = mean
over BatchNorm channels of |batch mean - running mean| / running std for those images in evaluation
mode (how far the running statistics are from the images being scored); backbone FNMR = the
variant's own backbone as FR model on the held-out pairs; w = mean guidance weight of low-variance vs
ordinary training classes.

{_instrument_table(summary)}

### Over training (per epoch, means over seeds)

| variant | quantity | epoch 1 ... {s["epochs"]} |
|---|---|---|
{chr(10).join(epochs_rows)}

Plots: {plots}. Per-seed data: `seed_*/seed.json`, per unit `seed_*/<variant>/unit.json`
(training log, per-epoch instruments, real-photo numbers).
"""
