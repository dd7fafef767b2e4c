"""The study's instruments of training and transfer, measured on a unit after it is scored.

Per epoch checkpoint (rendered faces only): the CR and predicted quality of fixed clean and strongly
degraded training images of ordinary identities, how far the BatchNorm running statistics are from
those images' own, and the guidance weights of low-variance vs ordinary classes. Per unit: the
per-epoch means of the training log, and the real-photo transfer numbers
(:mod:`igfiqa.evaluation.real_photos`). Every model runs through the scoring path
(:meth:`igfiqa.inference.QualityModel.score_and_embed`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from igfiqa.errors import IgfiqaError
from igfiqa.experiments.data import RenderedFaces
from igfiqa.experiments.unit import guidance_weights


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


@contextmanager
def batchnorm_mismatch(network: Any) -> Iterator[dict[str, float]]:
    """While inside, every BatchNorm of ``network`` accumulates the statistics of its inputs; on
    leaving, the dict yielded receives how far the running statistics are from them: mean over
    channels of |batch mean - running mean| / running std (``bn_mean_shift``) and of |log(batch
    var / running var)| (``bn_log_var_ratio``), averaged over the layers."""
    import torch

    sums: dict[int, list[Any]] = {}

    def hook(module: Any, inputs: tuple[Any, ...], _: Any) -> None:
        x = inputs[0].detach().float()
        dims = [0, 2, 3] if x.ndim == 4 else [0]
        entry = sums.setdefault(id(module), [module, 0, 0.0, 0.0])
        entry[1] += x.numel() // x.shape[1]
        entry[2] = entry[2] + x.sum(dims)
        entry[3] = entry[3] + (x * x).sum(dims)

    modules = [m for m in network.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    handles = [m.register_forward_hook(hook) for m in modules]
    out: dict[str, float] = {}
    try:
        yield out
    finally:
        for handle in handles:
            handle.remove()
    shifts, ratios = [], []
    for module, count, total, squares in sums.values():
        mean = total / count
        var = (squares / count - mean * mean).clamp(min=0.0)
        run_mean, run_var = module.running_mean.float(), module.running_var.float()
        shifts.append(float(((mean - run_mean).abs() / (run_var + module.eps).sqrt()).mean()))
        ratios.append(float((var + module.eps).div(run_var + module.eps).log().abs().mean()))
    out["bn_mean_shift"] = float(np.mean(shifts))
    out["bn_log_var_ratio"] = float(np.mean(ratios))


def _unfolded(path: Path, device: str) -> Any:
    """The checkpoint's model for the scoring path, running its network as trained (BatchNorms not
    folded into the convolutions), so that hooks on them see every batch."""
    from igfiqa.inference import load_model
    from igfiqa.inference.model import QualityModel
    from igfiqa.inference.runners import TorchRunner

    model = load_model(path, device=device)
    runner = TorchRunner(model.network, device=model.device, fuse=False, channels_last=False)
    return QualityModel(runner, model.card, source=path)


def epoch_instruments(
    run_dir: Path, probe: Probe, low_variance: np.ndarray, device: str
) -> list[dict[str, float]]:
    """Per epoch checkpoint: CR and predicted quality of clean vs degraded probe images, BN
    mismatch on them, and the guidance weights of low-variance vs ordinary classes."""
    from igfiqa.checkpoint import list_checkpoints, load_checkpoint

    rows = []
    # one checkpoint per epoch end (checkpoint.every_steps=0, keep=0)
    for epoch, (step, path) in enumerate(list_checkpoints(run_dir / "checkpoints"), start=1):
        state = load_checkpoint(path)
        model = _unfolded(path, device)
        prototypes = state["head"]["weight"].float().numpy()
        row: dict[str, float] = {"epoch": float(epoch), "step": float(step)}
        for name, images, labels in (
            ("clean", probe.clean, probe.clean_labels),
            ("degraded", probe.degraded, probe.degraded_labels),
        ):
            with batchnorm_mismatch(model.network) as mismatch:
                quality, embedding = model.score_and_embed(images, batch_size=256)
            row[f"cr_{name}"] = float(certainty_ratios(embedding, prototypes, labels).mean())
            row[f"quality_{name}"] = float(quality.mean())
            row[f"bn_mean_shift_{name}"] = mismatch["bn_mean_shift"]
            row[f"bn_log_var_ratio_{name}"] = mismatch["bn_log_var_ratio"]
        weights = guidance_weights(state, low_variance)
        if weights:
            row["weight_low_variance"] = weights["guidance_weight_low_variance"]
            row["weight_ordinary"] = weights["guidance_weight_ordinary"]
        rows.append(row)
    return rows


def training_log(run_dir: Path) -> dict[str, list[float]]:
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


def load_photo_set(settings: Any, log: Callable[[str], None]) -> PhotoSet:
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


def real_photo_metrics(checkpoint: Path, photos: PhotoSet, seed: int) -> dict[str, Any] | None:
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
