"""The synthetic-face demo: a controlled experiment of IG-FIQA's claim on a fresh machine.

:func:`run_demo` renders identity-labelled synthetic faces (a share of them *low-variance*
identities whose images barely vary), trains the CR-FIQA baseline and three IG-FIQA variants with
the same tiny backbone, data and number of epochs, and evaluates every variant on held-out
identities: EDC and pAUC (FNM-EDC at a fixed threshold), the CR-FIQA ERC, the Spearman correlation
of the predicted quality with the generator's ground-truth quality, and the guidance weights that
the IG-FIQA runs gave to low-variance versus ordinary classes. Everything is seeded: a rerun with the
same settings gives the same table.

The length of the run is a number of epochs (:data:`DEFAULT_EPOCHS`), never a clock: a time limit
would make the table depend on the machine's speed. The log states the measured speed and the time
left after the first variant. ``resume=True`` (``igfiqa demo --resume``) continues an interrupted
demo in the same folder with the same settings (recorded in :data:`SETTINGS_FILE`): finished
variants are reused, the interrupted one continues from its last checkpoint (training resumes
bit-exactly), so the table is that of an uninterrupted run.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
import warnings
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from igfiqa.data.datasets import SyntheticDataset
from igfiqa.data.synthetic import SyntheticFaces
from igfiqa.errors import ConfigError, IgfiqaError
from igfiqa.evaluation.correlation import spearman
from igfiqa.files import LOCK_FILE, FolderLock, atomic_write_text, ensure_dir, writing

FR_VARIANT = "crfiqa"
"""The variant whose backbone produces the comparison scores for every quality method."""

GROUND_TRUTH = "ground truth (generator)"

CHECK_FMR = 1e-2
CHECK_LIMIT = 0.2
TARGETS = {"relevance": 0.6, "clean_fnmr": 0.05, "e0": 0.10}
"""What the benchmark must show to be informative (docs/method.md, "Is the benchmark informative?"):
quality relevance ``r >= 0.6``, FNMR of clean-clean mated pairs ``<= 0.05`` and e0 ``>= 0.10``, all at
FMR 1e-2 (and L = 0.2 for ``r``)."""
QUALITY_BINS = ((1.0, 1.0), (0.75, 1.0), (0.5, 0.75), (0.25, 0.5), (0.0, 0.25))
"""Bins [from, to) of the lower ground-truth quality of a mated pair; (1, 1) = both images clean."""


class DemoStopped(IgfiqaError):
    """SIGTERM or SIGINT stopped a variant's training: the demo stops too, and evaluates nothing;
    the finished variants and the stopped one's last checkpoint are kept for ``--resume``."""

    def __init__(self, variant: str, signum: int, run_dir: Path) -> None:
        super().__init__(
            f"stopped by signal {signum} while training {variant}; its last checkpoint is in "
            f"{run_dir}; nothing was evaluated. To continue (finished variants are reused, "
            f"{variant} continues from its checkpoint), run the same igfiqa demo command with "
            "--resume (Python: run_demo(..., resume=True))"
        )
        self.signum = signum


@dataclass(frozen=True)
class DemoVariant:
    """One trained model of the experiment: a preset plus ``--set`` style overrides."""

    key: str
    label: str
    preset: str
    overrides: tuple[str, ...] = ()


VARIANTS: tuple[DemoVariant, ...] = (
    DemoVariant("crfiqa", "CR-FIQA (baseline)", "synthetic_demo_crfiqa"),
    DemoVariant(
        "ig_distance",
        "IG-FIQA, statistic=distance (paper)",
        "synthetic_demo",
        ("method.guidance.statistic=distance",),
    ),
    DemoVariant(
        "ig_similarity",
        "IG-FIQA, statistic=similarity (pseudo-code)",
        "synthetic_demo",
        ("method.guidance.statistic=similarity",),
    ),
    DemoVariant(
        "ig_distance_noaug",
        "IG-FIQA, distance, no augmentation (ablation)",
        "synthetic_demo",
        (
            "method.guidance.statistic=distance",
            "method.augment.enabled=false",
            "method.objective.fiqa_batch=same",
        ),
    ),
)

DEFAULT_EPOCHS = 6
"""Epochs per variant of the documented demo (``igfiqa demo`` without ``--epochs``)."""

SETTINGS_FILE = "demo_settings.json"
"""The output folder's record of the demo's settings, written before any training: what
``resume=True`` compares with the settings it is given."""
VARIANT_FILE = "demo_variant.json"
"""In a variant's run folder: the seconds its training took, summed over resumed sessions."""

# Seconds per training image-pass of one forward+backward stream on a 2-core CPU for the demo
# network: the cost model of the deprecated ``budget_minutes`` (a fixed number of epochs per
# budget, whatever the machine; measured machines differ from it by a factor of 5 and more).
SECONDS_PER_IMAGE_PASS = 2.4e-3


@dataclass
class DemoSettings:
    """What the demo renders, trains and evaluates. The defaults are the documented demo."""

    seed: int = 0
    train_identities: int = 200
    samples_per_identity: int = 20
    test_identities: int = 100
    test_samples_per_identity: int = 10
    low_variance_share: float = 0.2
    test_low_variance_share: float | None = 0.0  # None: as in training
    image_size: int = 48
    batch_size: int = 64
    budget_minutes: float | None = None  # deprecated: picks the epochs from a cost model
    epochs: int | None = None  # None: DEFAULT_EPOCHS
    fmrs: tuple[float, ...] = (1e-2, 1e-3)
    limits: tuple[float, ...] = (0.2, 0.3)
    variants: tuple[str, ...] = tuple(v.key for v in VARIANTS)

    def __post_init__(self) -> None:
        checks = {
            "train_identities": self.train_identities >= 10,
            "samples_per_identity": self.samples_per_identity >= 2,
            "test_identities": self.test_identities >= 2,
            "test_samples_per_identity": self.test_samples_per_identity >= 2,
            "low_variance_share": 0.0 <= self.low_variance_share < 1.0,
            "test_low_variance_share": self.test_low_variance_share is None
            or 0.0 <= self.test_low_variance_share < 1.0,
            "image_size": 16 <= self.image_size <= 112,
            "batch_size": 2 <= self.batch_size <= self.train_identities * self.samples_per_identity,
            "budget_minutes": self.budget_minutes is None or self.budget_minutes > 0,
        }
        for name, ok in checks.items():
            if not ok:
                raise ConfigError(f"demo setting {name}={getattr(self, name)!r} is out of range")
        if self.epochs is not None and self.epochs < 1:
            raise ConfigError(f"demo setting epochs={self.epochs} must be >= 1")
        if self.budget_minutes is not None:
            warnings.warn(
                "DemoSettings(budget_minutes=...) is deprecated: it never limited the time, it "
                "picks a number of epochs from a fixed cost model; pass epochs=N",
                DeprecationWarning,
                stacklevel=3,
            )
        known = {v.key for v in VARIANTS}
        unknown = [v for v in self.variants if v not in known]
        if unknown:
            raise ConfigError(f"unknown demo variant(s) {unknown}; choose from {sorted(known)}")
        if FR_VARIANT not in self.variants:
            raise ConfigError(
                f"the demo needs the {FR_VARIANT!r} variant: its backbone is the FR model"
            )

    def selected_variants(self) -> list[DemoVariant]:
        return [v for v in VARIANTS if v.key in self.variants]

    def resolved_epochs(self) -> int:
        """Epochs per variant (the same for every variant): given, else derived from the
        deprecated ``budget_minutes`` by the cost model, else :data:`DEFAULT_EPOCHS`."""
        if self.epochs is not None:
            return self.epochs
        if self.budget_minutes is None:
            return DEFAULT_EPOCHS
        images = self.train_identities * self.samples_per_identity
        return epochs_for_budget(
            self.budget_minutes, self.selected_variants(), images, self.image_size
        )

    def record(self) -> dict[str, Any]:
        """The settings as ``demo.json`` and :data:`SETTINGS_FILE` record them (JSON types): the
        epochs resolved, the deprecated ``budget_minutes`` folded into them."""
        data = asdict(self)
        data.pop("budget_minutes")
        data["epochs"] = self.resolved_epochs()
        return json.loads(json.dumps(data))


def _streams(variant: Any) -> int:
    """Forward+backward streams per training image: 1 when the quality loss shares the FR pass
    (``*_crfiqa`` presets, ``fiqa_batch`` same or split), else 2."""
    one_stream = variant.preset.endswith("_crfiqa") or any(
        o.endswith(("fiqa_batch=same", "fiqa_batch=split")) for o in variant.overrides
    )
    return 1 if one_stream else 2


def epochs_for_budget(
    minutes: float, variants: Any, images: int, image_size: int, *, scale: float = 1.0
) -> int:
    """Epochs per variant that ``minutes`` of training of all ``variants`` (objects with
    ``preset`` and ``overrides``) on ``images`` images would take by the cost model
    :data:`SECONDS_PER_IMAGE_PASS`: a fixed number, so the same minutes always train the same
    steps, but not a clock (a slower machine takes longer). A variant whose quality loss shares
    the FR pass (``*_crfiqa`` presets, ``fiqa_batch`` same or split) costs one stream, others two;
    ``scale`` multiplies the cost (e.g. seeds, network width)."""
    passes_per_epoch = float(sum(images * _streams(variant) for variant in variants))
    seconds = passes_per_epoch * SECONDS_PER_IMAGE_PASS * (image_size / 48.0) ** 2 * scale
    return max(1, math.floor(minutes * 60.0 / seconds))


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


def render_split(
    *,
    seed: int,
    train_identities: int,
    samples_per_identity: int,
    test_identities: int,
    test_samples_per_identity: int,
    image_size: int,
    low_variance_share: float,
    test_low_variance_share: float = 0.0,
) -> tuple[RenderedFaces, RenderedFaces, str]:
    """Training faces and held-out identities (numbered after them) rendered into memory, and the
    ``synthetic:`` spec of the training set. No flips: the identities' freckles and moles are
    asymmetric, so a mirror image is another face."""
    train_faces = SyntheticFaces(
        train_identities,
        samples_per_identity,
        seed=seed,
        image_size=image_size,
        low_variance_share=low_variance_share,
    )
    test_faces = SyntheticFaces(
        test_identities,
        test_samples_per_identity,
        seed=seed,
        image_size=image_size,
        low_variance_share=test_low_variance_share,
        first_identity=train_identities,
    )
    spec = synthetic_spec(
        seed=seed,
        train_identities=train_identities,
        samples_per_identity=samples_per_identity,
        image_size=image_size,
        low_variance_share=low_variance_share,
    )
    return (
        RenderedFaces(train_faces, seed=seed, hflip=False),
        RenderedFaces(test_faces, seed=seed, hflip=False),
        spec,
    )


def synthetic_spec(
    *,
    seed: int,
    train_identities: int,
    samples_per_identity: int,
    image_size: int,
    low_variance_share: float,
) -> str:
    """The ``synthetic:`` data source of the training faces that :func:`render_split` renders."""
    return (
        f"synthetic:identities={train_identities},samples={samples_per_identity},"
        f"seed={seed},low_variance_share={low_variance_share},image_size={image_size}"
    )


@dataclass
class VariantOutcome:
    """What one variant's training and evaluation measured."""

    key: str
    label: str
    checkpoint: str
    steps: int
    train_seconds: float
    spearman: float
    spearman_low_variance: float
    spearman_ordinary: float
    guidance_weight_low_variance: float | None = None
    guidance_weight_ordinary: float | None = None
    zero_weight_share_low_variance: float | None = None
    zero_weight_share_ordinary: float | None = None
    pauc: dict[str, float] = field(default_factory=dict)


@dataclass
class BenchmarkCheck:
    """Whether image quality decides recognition on the held-out faces, for the demo's FR model.

    ``relevance`` r = (1 - gt) / (1 - oracle), with gt and oracle the pAUC/(e0 L) at
    :data:`CHECK_LIMIT` and :data:`CHECK_FMR` of the generator's ground-truth quality and of the
    comparison-level oracle: the share of the oracle's possible gain that perfect knowledge of the
    degradations achieves. ``clean_fnmr``: FNMR of the mated pairs of two undegraded images at the
    same threshold. ``fnmr_by_quality``: FNMR of mated pairs binned by the lower ground-truth quality
    of the two images (:data:`QUALITY_BINS`).
    """

    fmr: float
    limit: float
    relevance: float
    ground_truth_pauc: float
    oracle_pauc: float
    e0: float
    clean_fnmr: float
    clean_mated_pairs: int
    fnmr_by_quality: list[dict[str, float]]
    targets: dict[str, float] = field(default_factory=lambda: dict(TARGETS))

    @property
    def passed(self) -> dict[str, bool]:
        return {
            "relevance": self.relevance >= self.targets["relevance"],
            "clean_fnmr": self.clean_fnmr <= self.targets["clean_fnmr"],
            "e0": self.e0 >= self.targets["e0"],
        }


def quality_relevance(ground_truth_pauc: float, oracle_pauc: float) -> float:
    """r = (1 - gt) / (1 - oracle) for normalised pAUC values (1 = random discarding)."""
    if oracle_pauc >= 1.0:
        return math.nan
    return (1.0 - ground_truth_pauc) / (1.0 - oracle_pauc)


def benchmark_check(
    similarity: np.ndarray,
    mated: np.ndarray,
    pairs: np.ndarray,
    ground_truth: np.ndarray,
    threshold: float,
    ground_truth_pauc: float,
    oracle_pauc: float,
    *,
    fmr: float = CHECK_FMR,
    limit: float = CHECK_LIMIT,
) -> BenchmarkCheck:
    """Measure :class:`BenchmarkCheck` from the comparison scores and the EDC threshold."""
    mated = np.asarray(mated, bool)
    genuine = similarity[mated]
    error = genuine < threshold
    pair_quality = np.minimum(ground_truth[pairs[mated, 0]], ground_truth[pairs[mated, 1]])
    clean = pair_quality >= 1.0
    bins = []
    for low, high in QUALITY_BINS:
        inside = (pair_quality >= low) & ((pair_quality < high) | (low == high))
        count = int(inside.sum())
        fnmr = float(error[inside].mean()) if count else math.nan
        bins.append({"quality_from": low, "quality_to": high, "mated_pairs": count, "fnmr": fnmr})
    return BenchmarkCheck(
        fmr=fmr,
        limit=limit,
        relevance=quality_relevance(ground_truth_pauc, oracle_pauc),
        ground_truth_pauc=ground_truth_pauc,
        oracle_pauc=oracle_pauc,
        e0=float(error.mean()) if error.size else math.nan,
        clean_fnmr=float(error[clean].mean()) if clean.any() else math.nan,
        clean_mated_pairs=int(clean.sum()),
        fnmr_by_quality=bins,
    )


@dataclass
class DemoResult:
    """The demo's measurements, settings and written files."""

    out_dir: Path
    settings: dict[str, Any]
    epochs: int
    fr_model: str
    variants: list[VariantOutcome]
    reference_pauc: dict[str, dict[str, float]]
    e0: dict[str, float]
    warnings: list[str]
    files: list[str]
    seconds: float
    check: BenchmarkCheck | None = None
    expected_fnmr: dict[str, Any] | None = None
    resumed: dict[str, str] = field(default_factory=dict)  # variant key: what --resume did

    def table(self) -> str:
        """The headline table in Markdown."""
        return headline_table(self)


def guidance_weights(state: dict[str, Any], low_variance: np.ndarray) -> dict[str, float] | None:
    """Mean weight and zero-weight share of low-variance vs ordinary classes in a loaded training
    checkpoint (None without guidance)."""
    from igfiqa.method.guidance import GuidanceConfig

    if not state.get("guidance"):
        return None
    options = state["config"]["method"]["guidance"]
    guidance = GuidanceConfig(**options).build(len(low_variance))
    if guidance is None:
        return None
    guidance.load_state_dict(state["guidance"])
    weights = guidance.class_weights().double().numpy()
    low, ordinary = weights[low_variance], weights[~low_variance]
    return {
        "guidance_weight_low_variance": float(low.mean()) if low.size else math.nan,
        "guidance_weight_ordinary": float(ordinary.mean()) if ordinary.size else math.nan,
        "zero_weight_share_low_variance": float((low <= 0).mean()) if low.size else math.nan,
        "zero_weight_share_ordinary": float((ordinary <= 0).mean()) if ordinary.size else math.nan,
    }


def _fmr_key(fmr: float, limit: float, kind: str = "pauc_normalized") -> str:
    return f"{kind}@{limit:g}|fmr={fmr:g}"


def run_demo(
    out_dir: str | Path,
    settings: DemoSettings | None = None,
    *,
    progress: bool = True,
    log: Callable[[str], None] = print,
    resume: bool = False,
) -> DemoResult:
    """Render data, train every variant, evaluate on held-out identities, write ``report.md``.

    One demo at a time per ``out_dir``: it holds the folder's lock (``.igfiqa.lock``) for the whole
    run, so a second demo (or study, or training) there is refused before any work. Before
    anything is trained, each ``runs/<variant>`` folder it would start afresh is checked: one that
    holds a file igfiqa did not write, a live lock or a symbolic link is refused, never deleted.

    ``resume=True`` continues the demo that ``out_dir`` holds (an interrupted one, or a finished
    one: then only the evaluation runs again): its recorded settings (:data:`SETTINGS_FILE`) must
    equal ``settings``, else :class:`ConfigError` lists the differences; every variant whose
    training finished is reused, an interrupted one continues from its last checkpoint, the
    others train afresh. The table is the one an uninterrupted run gives. Without an earlier
    demo in ``out_dir`` it starts afresh. Without ``resume``, earlier runs there are deleted
    (only files igfiqa wrote) and every variant trains afresh.
    """
    settings = settings or DemoSettings()
    out = ensure_dir(out_dir, "--out")
    with writing(out / LOCK_FILE, "create the lock file"):
        lock = FolderLock(out, "demo folder").acquire()
    try:
        return _run_demo(out, settings, progress, log, resume)
    finally:
        lock.release()


def _run_demo(
    out: Path,
    settings: DemoSettings,
    progress: bool,
    log: Callable[[str], None],
    resume: bool = False,
) -> DemoResult:
    from igfiqa.evaluation.report import write_report
    from igfiqa.evaluation.results import evaluate_scores

    started = time.perf_counter()
    for name in ("evaluation", "expected_fnmr"):
        refuse_symlinks(out, out / name)
    record = settings.record()
    epochs = int(record["epochs"])
    resume = resume and _same_demo(out, record, log)
    plans = _plan_variants(out, settings, epochs, resume)  # before any work: refuse, never delete
    for plan in plans:
        if plan.checkpoint is None:  # an earlier demo run there: start afresh
            clear_run_folder(plan.run_dir, out, extra=(VARIANT_FILE,))
    atomic_write_text(
        json.dumps({"kind": DEMO_KIND, "igfiqa_version": _version(), "settings": record}, indent=1),
        out / SETTINGS_FILE,
        private=False,
    )
    train_set, test_set, _ = _render(settings, log)
    resumed: dict[str, str] = {}
    outcomes = _train_variants(plans, settings, epochs, train_set, progress, log, resumed)
    log("evaluating on held-out identities")
    similarity, pairs, mated, qualities = _score_held_out(outcomes, train_set, test_set, settings)
    fr_name = f"demo backbone ({VARIANTS[0].label})"
    evaluation = evaluate_scores(
        similarity,
        mated,
        qualities,
        pairs=pairs,
        fmrs=settings.fmrs,
        limits=settings.limits,
        benchmark="synthetic held-out identities",
        fr_model=fr_name,
    )
    written = write_report(evaluation, out / "evaluation", log=None)
    reference, e0 = _collect_pauc(evaluation, outcomes, settings.limits)
    check = _benchmark_check(evaluation, similarity, mated, pairs, test_set.quality, settings)
    fnmr_check = _expected_fnmr_check(
        similarity, pairs, mated, qualities, test_set.labels, settings, out / "expected_fnmr"
    )
    result = DemoResult(
        out_dir=out,
        settings=record,
        epochs=epochs,
        fr_model=fr_name,
        variants=outcomes,
        reference_pauc=reference,
        e0=e0,
        warnings=list(evaluation.warnings),
        files=[str(p.relative_to(out)) for paths in written.values() for p in paths],
        seconds=time.perf_counter() - started,
        check=check,
        expected_fnmr=fnmr_check,
        resumed=resumed,
    )
    # atomic: a link named report.md is replaced, its target never written
    atomic_write_text(
        render_report(result, evaluation.num_pairs, evaluation.num_mated),
        out / "report.md",
        private=False,
    )
    atomic_write_text(json.dumps(_json_ready(result), indent=2), out / "demo.json", private=False)
    return result


# ------------------------------------------------------------------------- run folders
TENSORBOARD_DIR = "tensorboard"
_CHECKPOINT_FILE = re.compile(r"step_\d{8,}\.pt")
_CHECKPOINT_TEMP = re.compile(r"\.step_\d{8,}\.pt\..+\.tmp")
_EVENTS_FILE = re.compile(r"events\.out\.tfevents\..+")


def _temp_of(name: str, targets: Collection[str]) -> bool:
    """Whether ``name`` is the temporary file an atomic write of one of ``targets`` leaves
    (``.<target>.<random>.tmp``, :func:`igfiqa.files.atomic_output`)."""
    return any(re.fullmatch(rf"\.{re.escape(t)}\..+\.tmp", name) for t in targets)


def _written_by_training(parts: tuple[str, ...], is_dir: bool, extra: Collection[str]) -> bool:
    """Whether the entry ``parts`` (relative to a run folder) is one that an igfiqa training run
    writes there (config, metrics, lock, checkpoints, TensorBoard events, their atomic writes'
    temporary files), or one of the ``extra`` top-level files of the caller."""
    from igfiqa.engine.trainer import CHECKPOINT_DIR, CONFIG_FILE, METRICS_FILE

    top = {CONFIG_FILE, METRICS_FILE, *extra}
    if len(parts) == 1:
        name = parts[0]
        if is_dir:
            return name in (CHECKPOINT_DIR, TENSORBOARD_DIR)
        return name in top or name == LOCK_FILE or _temp_of(name, top)
    if len(parts) == 2 and not is_dir:
        folder, name = parts
        if folder == CHECKPOINT_DIR:
            return bool(_CHECKPOINT_FILE.fullmatch(name) or _CHECKPOINT_TEMP.fullmatch(name))
        if folder == TENSORBOARD_DIR:
            return bool(_EVENTS_FILE.fullmatch(name))
    return False


def _run_folder_entries(
    run_dir: Path, extra: Collection[str]
) -> tuple[list[Path], list[Path], list[Path]]:
    """Files and folders (deepest first) of a run folder that igfiqa wrote, and the entries it
    did not (symbolic links, FIFOs and unknown names included), without following any link."""
    files: list[Path] = []
    folders: list[Path] = []
    foreign: list[Path] = []

    def visit(folder: Path, parts: tuple[str, ...]) -> None:
        with os.scandir(folder) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                path, here = Path(entry.path), (*parts, entry.name)
                is_dir = entry.is_dir(follow_symlinks=False)
                ours = (
                    not entry.is_symlink()
                    and (is_dir or entry.is_file(follow_symlinks=False))
                    and _written_by_training(here, is_dir, extra)
                )
                if not ours:
                    foreign.append(path)
                elif is_dir:
                    visit(path, here)
                    folders.append(path)
                else:
                    files.append(path)

    with writing(run_dir, "read"):
        visit(run_dir, ())
    return files, folders, foreign


def refuse_symlinks(root: Path, path: Path, option: str = "--out") -> None:
    """Refuse (:class:`ConfigError`) when ``path`` or a folder between it and ``root`` is a
    symbolic link: igfiqa never writes or deletes through a link out of its output folder."""
    relative = Path(path).relative_to(root)
    current = Path(root)
    for part in relative.parts:
        current = current / part
        if current.is_symlink():
            raise ConfigError(
                f"{current} is a symbolic link; igfiqa does not write or delete through a link "
                f"in its output folder: remove the link or choose another {option}"
            )


def check_run_folder(
    run_dir: Path, root: Path, *, extra: Collection[str] = (), option: str = "--out"
) -> bool:
    """Check that ``run_dir`` (inside the output folder ``root``) may be deleted to train afresh;
    returns whether it exists. Refuses (:class:`ConfigError`, nothing deleted) a symbolic link on
    the way, something that is not a folder, a folder holding anything an igfiqa training run
    does not write (named in the message), and a folder whose lock a live process holds."""
    run_dir = Path(run_dir)
    refuse_symlinks(root, run_dir, option)
    if not os.path.lexists(run_dir):
        return False
    if not run_dir.is_dir():
        raise ConfigError(
            f"{run_dir} exists and is not a folder; igfiqa trains a run there: move it elsewhere "
            f"or choose another {option}"
        )
    _, _, foreign = _run_folder_entries(run_dir, extra)
    if foreign:
        more = f" (and {len(foreign) - 1} more)" if len(foreign) > 1 else ""
        raise ConfigError(
            f"{foreign[0]}{more} was not written by igfiqa; it is in the run folder {run_dir} "
            f"that igfiqa would delete to train afresh: move it elsewhere or choose another "
            f"{option}"
        )
    lock_file = run_dir / LOCK_FILE
    if lock_file.exists():  # a live writer refuses; a dead one's lock is taken over and removed
        with writing(lock_file, "replace the stale lock file"), FolderLock(run_dir):
            pass
    return True


def clear_run_folder(
    run_dir: Path, root: Path, *, extra: Collection[str] = (), option: str = "--out"
) -> None:
    """Delete an earlier igfiqa run folder to train afresh, after :func:`check_run_folder`:
    while holding its lock, only the files igfiqa wrote are removed, one by one (never a whole
    tree), so a file that appears meanwhile stops it with an error instead of being deleted."""
    run_dir = Path(run_dir)
    if not check_run_folder(run_dir, root, extra=extra, option=option):
        return
    with writing(run_dir, "remove an earlier run's file"):
        lock = FolderLock(run_dir).acquire()
        try:
            files, folders, foreign = _run_folder_entries(run_dir, extra)
            if foreign:
                raise ConfigError(f"{foreign[0]} appeared in {run_dir} while igfiqa cleared it")
            for path in files:
                if path.name != LOCK_FILE or path.parent != run_dir:
                    path.unlink()
            for folder in folders:
                folder.rmdir()
        finally:
            lock.release()
        run_dir.rmdir()


def _render(
    settings: DemoSettings, log: Callable[[str], None]
) -> tuple[RenderedFaces, RenderedFaces, str]:
    log(
        f"rendering {settings.train_identities} x {settings.samples_per_identity} training and "
        f"{settings.test_identities} x {settings.test_samples_per_identity} held-out synthetic faces "
        f"({settings.image_size}x{settings.image_size}, low-variance share "
        f"{settings.low_variance_share:g})"
    )
    return render_split(
        seed=settings.seed,
        train_identities=settings.train_identities,
        samples_per_identity=settings.samples_per_identity,
        test_identities=settings.test_identities,
        test_samples_per_identity=settings.test_samples_per_identity,
        image_size=settings.image_size,
        low_variance_share=settings.low_variance_share,
        test_low_variance_share=settings.low_variance_share
        if settings.test_low_variance_share is None
        else settings.test_low_variance_share,
    )


DEMO_KIND = "igfiqa demo"
"""The ``kind`` of :data:`SETTINGS_FILE`."""

CLI_OPTIONS = {
    "seed": "--seed",
    "train_identities": "--identities",
    "samples_per_identity": "--samples",
    "test_identities": "--test-identities",
    "test_samples_per_identity": "--test-samples",
    "low_variance_share": "--low-variance-share",
    "batch_size": "--batch-size",
    "epochs": "--epochs",
}
"""The ``igfiqa demo`` option of each setting that has one (named in a refused resume)."""


def _version() -> str:
    from igfiqa import __version__

    return __version__


def settings_differences(stored: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """``"name (--option) X there, Y now"`` for every setting that differs between the recorded
    (``stored``) and the given (``current``) settings, in the settings' order."""
    missing = object()
    names = [*current, *(k for k in stored if k not in current)]
    found = []
    for name in names:
        there, now = stored.get(name, missing), current.get(name, missing)
        if there != now:
            option = f" ({CLI_OPTIONS[name]})" if name in CLI_OPTIONS else ""
            shown = [json.dumps(v) if v is not missing else "unset" for v in (there, now)]
            found.append(f"{name}{option} {shown[0]} there, {shown[1]} now")
    return found


def _same_demo(out: Path, record: dict[str, Any], log: Callable[[str], None]) -> bool:
    """Whether ``out`` holds a demo to resume; refuses (:class:`ConfigError`, one line) one with
    other settings, and a settings file that is not a demo's."""
    path = out / SETTINGS_FILE
    refuse_symlinks(out, path)
    if not path.exists():
        log(f"nothing to resume in {out} (no {SETTINGS_FILE}): starting afresh")
        return False
    try:
        stored = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ConfigError(
            f"--resume: cannot read {path} ({type(error).__name__}); drop --resume to start "
            "afresh there (its runs are deleted) or choose another --out"
        ) from None
    if not (
        isinstance(stored, dict)
        and stored.get("kind") == DEMO_KIND
        and isinstance(stored.get("settings"), dict)
    ):
        raise ConfigError(
            f"--resume: {path} is not the settings file of an igfiqa demo; drop --resume to "
            "start afresh there (its runs are deleted) or choose another --out"
        )
    differences = settings_differences(stored["settings"], record)
    if differences:
        raise ConfigError(
            f"--resume: {out} holds a demo with other settings: {'; '.join(differences)}; resume "
            "with the same options, or drop --resume to start afresh there (its runs are "
            "deleted), or choose another --out"
        )
    if stored.get("igfiqa_version") != _version():
        log(f"note: the demo in {out} was started by igfiqa {stored.get('igfiqa_version')}")
    return True


@dataclass
class _VariantPlan:
    """One variant's training: its config and run folder and, when resumed, where it stands."""

    variant: DemoVariant
    config: Any
    run_dir: Path
    checkpoint: Path | None = None  # the newest checkpoint to reuse or continue
    step: int = 0
    finished: bool = False
    seconds: float = 0.0  # training time recorded by earlier sessions


def _variant_config(variant: DemoVariant, settings: DemoSettings, epochs: int) -> Any:
    from igfiqa.config import load_config

    spec = synthetic_spec(
        seed=settings.seed,
        train_identities=settings.train_identities,
        samples_per_identity=settings.samples_per_identity,
        image_size=settings.image_size,
        low_variance_share=settings.low_variance_share,
    )
    overrides = [
        *variant.overrides,
        f"data.source={spec}",
        f"data.image_size={settings.image_size}",
        f"model.input_size={settings.image_size}",
        f"data.batch_size={settings.batch_size}",
        f"train.epochs={epochs}",
        f"train.seed={settings.seed}",
        "verification.sets=[]",
        "checkpoint.every_steps=0",
    ]
    return load_config(variant.preset, overrides=overrides)


def _flat(data: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(data, dict):
        return {prefix: data}
    flat: dict[str, Any] = {}
    for key, value in data.items():
        flat.update(_flat(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def _plan_variants(
    out: Path, settings: DemoSettings, epochs: int, resume: bool
) -> list[_VariantPlan]:
    """Every selected variant's config and, when resuming, its newest checkpoint; refuses before
    any work a run folder the demo could not use (:func:`check_run_folder`) and, when resuming, a
    checkpoint trained with another config."""
    from igfiqa.checkpoint import latest_checkpoint, load_checkpoint
    from igfiqa.engine.trainer import CHECKPOINT_DIR

    plans = []
    for variant in settings.selected_variants():
        run_dir = out / "runs" / variant.key
        plan = _VariantPlan(variant, _variant_config(variant, settings, epochs), run_dir)
        plans.append(plan)
        refuse_symlinks(out, run_dir / CHECKPOINT_DIR)
        latest = latest_checkpoint(run_dir / CHECKPOINT_DIR) if resume else None
        if latest is None:
            check_run_folder(run_dir, out, extra=(VARIANT_FILE,))
            continue
        state = load_checkpoint(latest)
        there, now = _flat(state.get("config")), _flat(plan.config.to_dict())
        changed = [k for k in sorted({*there, *now}) if there.get(k) != now.get(k)]
        if changed:
            shown = ", ".join(
                f"{k} {there.get(k)!r} there, {now.get(k)!r} now" for k in changed[:4]
            )
            raise ConfigError(
                f"--resume: {latest} was trained with another config ({shown}); drop --resume "
                "to start afresh (its runs are deleted) or choose another --out"
            )
        if (run_dir / LOCK_FILE).exists():  # a live writer refuses; a dead one's lock is taken
            with writing(run_dir / LOCK_FILE, "replace the stale lock file"), FolderLock(run_dir):
                pass
        plan.checkpoint, plan.step = latest, int(state["step"])
        plan.finished = int(state["epoch"]) >= epochs
        plan.seconds = _recorded_seconds(run_dir)
    return plans


def _recorded_seconds(run_dir: Path) -> float:
    try:
        seconds = json.loads((run_dir / VARIANT_FILE).read_text())["train_seconds"]
        return float(seconds) if math.isfinite(float(seconds)) and seconds >= 0 else 0.0
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
        return 0.0


def _outcome(variant: DemoVariant, checkpoint: Path, steps: int, seconds: float) -> VariantOutcome:
    return VariantOutcome(
        key=variant.key,
        label=variant.label,
        checkpoint=str(checkpoint),
        steps=steps,
        train_seconds=seconds,
        spearman=math.nan,
        spearman_low_variance=math.nan,
        spearman_ordinary=math.nan,
    )


def _train_variants(
    plans: list[_VariantPlan],
    settings: DemoSettings,
    epochs: int,
    train_set: RenderedFaces,
    progress: bool,
    log: Callable[[str], None],
    resumed: dict[str, str],
) -> list[VariantOutcome]:
    """Train (or reuse, or continue) every planned variant on the same data and seed; one outcome
    each. ``resumed`` receives what was reused or continued. After the first training that
    completes, the log gives the measured speed and the time the other variants need."""
    from igfiqa.engine.trainer import train

    outcomes: list[VariantOutcome] = []
    seconds_per_pass: float | None = None
    for number, plan in enumerate(plans, start=1):
        variant, run_dir = plan.variant, plan.run_dir
        where = f"[{number}/{len(plans)}]"
        if plan.finished and plan.checkpoint is not None:
            log(f"{where} {variant.label}: finished earlier, reusing {plan.checkpoint}")
            resumed[variant.key] = f"reused (finished earlier, {plan.step} steps)"
            outcomes.append(_outcome(variant, plan.checkpoint, plan.step, plan.seconds))
            continue
        extra: dict[str, Any] = {}
        if plan.checkpoint is not None:
            log(
                f"{where} training {variant.label}: {epochs} epochs, continuing from step "
                f"{plan.step}"
            )
            resumed[variant.key] = f"continued from step {plan.step}"
            extra["resume"] = True
        else:
            log(f"{where} training {variant.label}: {epochs} epochs")
        t0 = time.perf_counter()
        result = train(plan.config, out_dir=run_dir, progress=progress, dataset=train_set, **extra)
        seconds = time.perf_counter() - t0
        if result.checkpoint is not None:
            atomic_write_text(
                json.dumps({"train_seconds": plan.seconds + seconds}),
                run_dir / VARIANT_FILE,
                private=False,
            )
        if result.signum is not None:
            raise DemoStopped(variant.key, result.signum, run_dir)
        if result.checkpoint is None:
            raise IgfiqaError(f"training of {run_dir} stopped early ({result.stopped})")
        outcomes.append(_outcome(variant, result.checkpoint, result.step, plan.seconds + seconds))
        passes = (result.step - plan.step) * settings.batch_size * _streams(variant)
        if seconds_per_pass is None and passes > 0:
            seconds_per_pass = seconds / passes
            left = [p for p in plans[number:] if not p.finished]
            more = sum(
                (result.step - p.step) * settings.batch_size * _streams(p.variant) for p in left
            )
            if left:
                log(
                    f"{variant.key}: {seconds:.0f} s ({passes / seconds:.0f} image passes/s); the "
                    f"other {len(left)} variant(s) need about {more * seconds_per_pass / 60:.1f} "
                    "min more on this machine, then the evaluation"
                )
    return outcomes


def _score_held_out(
    outcomes: list[VariantOutcome],
    train_set: RenderedFaces,
    test_set: RenderedFaces,
    settings: DemoSettings,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Comparison scores of all held-out pairs with the FR variant's backbone, and every variant's
    quality (plus the ground truth); fills each outcome's Spearman and guidance weights."""
    from igfiqa.checkpoint import load_checkpoint
    from igfiqa.data.benchmarks import all_pairs
    from igfiqa.evaluation.similarity import pair_similarity
    from igfiqa.inference import load_model

    images = list(test_set.images)
    by_key = {o.key: o for o in outcomes}
    # One pass of the FR variant gives both the comparison embeddings and its own quality.
    fr_quality, embeddings = load_model(by_key[FR_VARIANT].checkpoint).score_and_embed(images)
    pairs, mated = all_pairs(test_set.labels, max_nonmated=None, seed=settings.seed)
    similarity = pair_similarity(embeddings, pairs)
    ground_truth = test_set.quality
    sample_low = test_set.low_variance[test_set.labels]
    qualities: dict[str, np.ndarray] = {}
    for outcome in outcomes:
        if outcome.key == FR_VARIANT:
            quality = fr_quality
        else:
            quality = load_model(outcome.checkpoint).score(images)
        qualities[outcome.label] = quality
        outcome.spearman = spearman(quality, ground_truth)
        outcome.spearman_low_variance = spearman(quality[sample_low], ground_truth[sample_low])
        outcome.spearman_ordinary = spearman(quality[~sample_low], ground_truth[~sample_low])
        weights = guidance_weights(load_checkpoint(outcome.checkpoint), train_set.low_variance)
        if weights:
            for name, value in weights.items():
                setattr(outcome, name, value)
    qualities[GROUND_TRUTH] = ground_truth
    return similarity, pairs, mated, qualities


FNMR_CHECK_FMR = 1e-3
"""FMR of the demo's expected-FNMR check (the held-out set's non-mated pairs resolve it)."""


def _expected_fnmr_check(
    similarity: np.ndarray,
    pairs: np.ndarray,
    mated: np.ndarray,
    qualities: dict[str, np.ndarray],
    labels: np.ndarray,
    settings: DemoSettings,
    out: Path,
) -> dict[str, Any]:
    """Does each model's expected FNMR hold on identities it was not fitted on? Half the held-out
    identities fit the calibration, the other half measure predicted against observed FNMR per
    quality decile (docs/scoring.md, "Expected FNMR"); reliability diagrams go into ``out``."""
    from igfiqa.errors import DataError
    from igfiqa.evaluation.expected_fnmr import fit_and_check
    from igfiqa.evaluation.expected_fnmr_report import plot_reliability
    from igfiqa.evaluation.report import slug

    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    for name, quality in qualities.items():
        try:
            run = fit_and_check(
                quality, pairs, mated, similarity, identities=labels, fmr=FNMR_CHECK_FMR,
                holdout=0.5, seed=settings.seed,
            )  # fmt: skip
        except DataError as error:  # a held-out set too small for the FMR
            return {"fmr": FNMR_CHECK_FMR, "holdout": 0.5, "models": {}, "error": str(error)}
        check = run.reliability
        assert check is not None
        diagram = out / f"reliability_{slug(name)}.png"
        plot_reliability(check, diagram, name)
        results[name] = {
            **check.to_dict(),
            "thresholds": run.calibration.thresholds((0.05, 0.10)),
            "diagram": str(diagram.relative_to(out.parent)),
        }
    return {"fmr": FNMR_CHECK_FMR, "holdout": 0.5, "models": results}


def fnmr_section(check: dict[str, Any] | None) -> str:
    """The report's expected-FNMR section: per model, held-out deciles within their band."""
    if not check:
        return "not measured"
    if check.get("error"):
        return f"Not measured: {check['error']}."
    rows = []
    for name, entry in check["models"].items():
        deciles = entry["deciles"]
        worst = max(abs(d["observed_fnmr"] - d["predicted_fnmr"]) for d in deciles)
        within = sum(d["within"] for d in deciles)
        consistent = sum(d["consistent"] for d in deciles)
        five = entry["thresholds"][0]
        rows.append(
            f"| {name} | {within}/{len(deciles)} | {consistent}/{len(deciles)} | {worst:.3f} | "
            f"{_f(five['quality_threshold'])} ({five['rejected_share']:.0%}) | "
            f"[diagram]({entry['diagram']}) |"
        )
    return (
        f"Each model's quality is calibrated to the expected FNMR at FMR {check['fmr']:g} on half "
        "of the held-out identities and checked on the other half, per quality decile "
        "(target: observed FNMR within the predicted 95% band or within 0.03; *consistent* also "
        "allows for the held-out observation's own noise, from a bootstrap over its identities).\n\n"
        "| model | deciles within | consistent | largest gap | quality for 5% FNMR (rejects) "
        "| reliability |\n|---|---|---|---|---|---|\n" + "\n".join(rows)
    )


def _collect_pauc(
    evaluation: Any, outcomes: list[VariantOutcome], limits: tuple[float, ...]
) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """pAUC values per variant (into its outcome) and per reference line, and e0 per FMR."""
    reference: dict[str, dict[str, float]] = {}
    e0: dict[str, float] = {}
    for fmr_result in evaluation.per_fmr:
        fmr = fmr_result.target_fmr
        e0[f"{fmr:g}"] = fmr_result.e0
        for curve in fmr_result.curves:
            values = {}
            for limit in limits:
                values[_fmr_key(fmr, limit, "pauc")] = curve.pauc[limit]
                values[_fmr_key(fmr, limit)] = curve.pauc_normalized[limit]
            if curve.kind == "method":
                target = next((o for o in outcomes if o.label == curve.name), None)
                if curve.erc_auc is not None:
                    values[f"erc_auc|fmr={fmr:g}"] = curve.erc_auc
                if target is not None:
                    target.pauc.update(values)
                    continue
            reference.setdefault(curve.name, {}).update(values)
    return reference, e0


def _benchmark_check(
    evaluation: Any,
    similarity: np.ndarray,
    mated: np.ndarray,
    pairs: np.ndarray,
    ground_truth: np.ndarray,
    settings: DemoSettings,
) -> BenchmarkCheck | None:
    """The benchmark's own check (quality relevance, clean FNMR, e0) at the check's FMR and L."""
    from igfiqa.evaluation.results import ORACLE

    check = None
    for fmr_result in evaluation.per_fmr:
        if math.isclose(fmr_result.target_fmr, CHECK_FMR) and CHECK_LIMIT in settings.limits:
            check = benchmark_check(
                similarity,
                mated,
                pairs,
                ground_truth,
                fmr_result.threshold.threshold,
                fmr_result.curve(GROUND_TRUTH).pauc_normalized[CHECK_LIMIT],
                fmr_result.curve(ORACLE).pauc_normalized[CHECK_LIMIT],
            )
    return check


def _json_ready(result: DemoResult) -> dict[str, Any]:
    from igfiqa.files import json_safe

    data = asdict(result)
    data["out_dir"] = str(result.out_dir)
    if result.check is not None:
        data["check"]["passed"] = result.check.passed
    return json_safe(data)


def _f(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.{digits}f}"


def headline_table(result: DemoResult) -> str:
    """Markdown table: one row per variant (plus the ground-truth reference row)."""
    fmrs = [float(f) for f in result.e0]
    limits = result.settings["limits"]
    head = ["model"]
    for fmr in fmrs:
        head += [f"pAUC/(e0 L) L={limit:g} FMR={fmr:g}" for limit in limits]
    head += ["Spearman (all)", "Spearman (low-var ids)", "w low-var", "w ordinary"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for outcome in result.variants:
        row = [outcome.label]
        row += [_f(outcome.pauc.get(_fmr_key(fmr, L))) for fmr in fmrs for L in limits]
        row += [
            _f(outcome.spearman),
            _f(outcome.spearman_low_variance),
            _f(outcome.guidance_weight_low_variance),
            _f(outcome.guidance_weight_ordinary),
        ]
        lines.append("| " + " | ".join(row) + " |")
    for name, values in result.reference_pauc.items():
        row = [f"*{name}*"]
        row += [_f(values.get(_fmr_key(fmr, L))) for fmr in fmrs for L in limits]
        row += ["-"] * 4
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def _bin_label(row: dict[str, float]) -> str:
    if row["quality_from"] == row["quality_to"]:
        return "both clean"
    return f"[{row['quality_from']:g}, {row['quality_to']:g})"


def check_section(check: BenchmarkCheck | None) -> str:
    """The report's "Is this benchmark informative?" section: the three numbers and their targets."""
    if check is None:
        return (
            f"Not measured: the run's FMRs or limits do not include FMR {CHECK_FMR:g} and "
            f"L = {CHECK_LIMIT:g}."
        )
    ok = {True: "met", False: "**not met**"}
    passed = check.passed
    t = check.targets
    rows = [
        f"| quality relevance r = (1 - gt) / (1 - oracle) | {_f(check.relevance)} | >= "
        f"{t['relevance']:g} | {ok[passed['relevance']]} |",
        f"| FNMR of clean-clean mated pairs ({check.clean_mated_pairs} pairs) | "
        f"{_f(check.clean_fnmr)} | <= {t['clean_fnmr']:g} | {ok[passed['clean_fnmr']]} |",
        f"| e0 = FNMR over all mated pairs | {_f(check.e0)} | >= {t['e0']:g} | {ok[passed['e0']]} |",
    ]
    bins = "\n".join(
        f"| {_bin_label(b)} | {b['mated_pairs']} | {_f(b['fnmr'])} |" for b in check.fnmr_by_quality
    )
    return f"""At FMR {check.fmr:g} (threshold fixed on all non-mated pairs) and L = {check.limit:g}, with
the demo's FR model: gt = {_f(check.ground_truth_pauc)} and oracle = {_f(check.oracle_pauc)} are the
pAUC/(e0 L) of the generator's ground-truth quality and of the comparison-level oracle. r is the share
of the oracle's gain over random discarding that perfect knowledge of the degradations achieves: near
0, image quality does not decide recognition and the benchmark cannot rank quality scores.

| measure | value | target | |
|---|---|---|---|
{chr(10).join(rows)}

FNMR of mated pairs by the lower ground-truth quality of the two images:

| lower quality of the pair | mated pairs | FNMR |
|---|---|---|
{bins}
"""


def render_report(result: DemoResult, num_pairs: int, num_mated: int) -> str:
    """The text of ``report.md``."""
    s = result.settings
    fmr_lines = ", ".join(
        f"FMR {fmr}: e0 = FNMR at zero discard = {e:.3f}" for fmr, e in result.e0.items()
    )
    plots = [f for f in result.files if f.endswith(".png") and "/edc_" in f]
    warnings = "\n".join(f"- {w}" for w in result.warnings) or "- none"
    resumed = ""
    if result.resumed:
        done = ", ".join(f"{key} {what}" for key, what in result.resumed.items())
        others = len(result.variants) > len(result.resumed)
        resumed = (
            f"\n- Resumed (`--resume`): {done}{'; the others trained afresh' if others else ''}."
        )
    train_rows = "\n".join(
        f"| {o.label} | {o.steps} | {o.train_seconds:.0f} s | "
        f"{_f(o.zero_weight_share_low_variance)} | {_f(o.zero_weight_share_ordinary)} |"
        for o in result.variants
    )
    return f"""# igfiqa demo: CR-FIQA vs IG-FIQA on synthetic faces

**These numbers come from procedurally generated faces, not from real face images.** The generator
(`igfiqa.data.synthetic`) draws cartoon-like identities on the ArcFace template whose identity lives
in details that degradations destroy, adds per-image nuisance and camera degradations of known
severity, and makes {s["low_variance_share"]:.0%} of the training identities *low-variance* (their
images barely vary and share one degradation level), the failure mode that IG-FIQA addresses. The experiment is controlled (same network, data, epochs and seed for
every variant), but tiny: a narrow iResNet-18 at {s["image_size"]}x{s["image_size"]} pixels trained for
{result.epochs} epochs on a CPU.

## What was run

- Training: {s["train_identities"]} identities x {s["samples_per_identity"]} images (seed {s["seed"]}).
- Test: {s["test_identities"]} held-out identities x {s["test_samples_per_identity"]} images, all
  pairs: {num_pairs} comparisons, {num_mated} mated.
- FR model for every comparison score: {result.fr_model}; cosine similarity of its embeddings.
- {fmr_lines}.{resumed}
- EDC = FNM-EDC with the threshold fixed once on all non-mated scores (ISO-style); pAUC is stepwise
  on [0, L] and normalised by e0 L (1.0 = no better than random discarding; lower is better).
  `results.md` in `evaluation/` adds the raw pAUC, the pAUC relative to the oracle and the CR-FIQA
  ERC (threshold recomputed per discard step, a different protocol).

## Is this benchmark informative?

{check_section(result.check)}

## Results

{headline_table(result)}

## What a score costs: expected FNMR on held-out identities

{fnmr_section(result.expected_fnmr)}

Spearman = rank correlation of the predicted quality with the generator's ground-truth quality of
each held-out image (higher is better); "low-var ids" restricts it to held-out low-variance
identities (`-` when the held-out set has none, the default). "w" = mean intra-class variance guidance weight that the IG-FIQA run ended with, over its
low-variance and its ordinary training classes (CR-FIQA has no guidance).

| model | steps | training time | zero-weight share, low-var classes | zero-weight share, ordinary |
|---|---|---|---|---|
{train_rows}

EDC plots: {", ".join(f"[{Path(p).name}]({p})" for p in plots)}

Warnings from the evaluation:
{warnings}

## What this shows and what it does not

- It shows whether, on this synthetic data and at this tiny scale, each variant's quality score puts
  the images that the FR model gets wrong first (pAUC) and tracks the known degradation (Spearman),
  and whether the guidance singles out the low-variance classes (their weight versus the others').
- It does not reproduce the paper's numbers: the published results use iResNet-50/100 trained for
  days on CASIA-WebFace / MS1MV2 and real benchmarks. Differences of a few hundredths here can be
  noise of one seed: `igfiqa study` trains every variant and ablation for several seeds and reports
  paired differences to CR-FIQA with 95% intervals, with two FR models (docs/results.md).
- The ground-truth row is the generator's own degradation severity used as a quality score: a
  yardstick for what a perfect degradation detector would reach with this FR model, not an upper
  bound on utility.

Total time{" of this resumed run" if result.resumed else ""}: {result.seconds:.0f} s. Settings: `{json.dumps(s)}`.
"""
