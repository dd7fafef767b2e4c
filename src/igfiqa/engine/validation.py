"""Periodic verification during training.

* ``bin`` sets (LFW, AgeDB-30, CFP-FP, ...): insightface 10-fold verification accuracy of the
  embeddings (each image embedded with its mirror image added, as insightface does), computed with
  :func:`igfiqa.evaluation.verification.ten_fold_accuracy`.
* ``synthetic`` sets (a ``synthetic:...`` spec, normally identities held out of training): all
  pairs of the split, FNM-EDC at FMR 1e-3 with the pair quality min(q1, q2), reporting the starting
  FNMR ``e0``, the pAUC up to 20% discarded (raw and normalised by ``e0 * 0.2``) and the Spearman
  correlation of the predicted quality with the generator's ground-truth quality.

:class:`PeriodicVerification` runs them during training: every ``verification.every_steps`` steps
and at the end (arcface_torch's ``CallBackVerification`` shape: the loop asks whether it is due and
calls it).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from torch import nn

from igfiqa.config import IgfiqaConfig, VerificationSet
from igfiqa.data.datasets import mirror, to_tensor
from igfiqa.data.pixels import resize_to
from igfiqa.errors import ConfigError
from igfiqa.evaluation.correlation import spearman

EDC_FMR = 1e-3
PAUC_LIMIT = 0.2


def _to_batch(images: Iterable[np.ndarray], size: int) -> torch.Tensor:
    return torch.stack([to_tensor(resize_to(image, size)) for image in images])


@torch.no_grad()
def embed_and_score(
    model: nn.Module,
    images: list[np.ndarray],
    *,
    device: torch.device,
    batch_size: int = 64,
    flip: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """(N, F) embeddings and (N,) qualities of uint8 RGB images (eval mode, float32)."""
    size = int(getattr(model, "input_size", 112))
    embeddings, qualities = [], []
    for start in range(0, len(images), batch_size):
        batch = _to_batch(images[start : start + batch_size], size).to(device)
        embedding, quality = model(batch)
        if flip:
            embedding = embedding + model(mirror(batch))[0]
        embeddings.append(embedding.float().cpu())
        qualities.append(quality.float().reshape(-1).cpu())
    return torch.cat(embeddings).numpy(), torch.cat(qualities).numpy()


def synthetic_edc(
    model: nn.Module, spec: str, *, device: torch.device, batch_size: int = 64
) -> dict[str, float]:
    """EDC summary of ``model`` on all pairs of the synthetic split ``spec`` (see module doc)."""
    from igfiqa.data.synthetic import synthetic_from_spec
    from igfiqa.evaluation.edc import edc, pauc, threshold_at_fmr
    from igfiqa.evaluation.similarity import pair_similarity

    faces = synthetic_from_spec(spec)
    images, truth = [], []
    for index in range(len(faces)):
        image, quality = faces.render(*faces.locate(index))
        images.append(image)
        truth.append(quality)
    embeddings, quality = embed_and_score(model, images, device=device, batch_size=batch_size)
    labels = faces.labels
    first, second = np.triu_indices(len(labels), k=1)
    scores = pair_similarity(embeddings, np.stack([first, second], axis=1))
    mated = labels[first] == labels[second]
    threshold = threshold_at_fmr(scores[~mated], EDC_FMR)
    pair_q = np.minimum(quality[first], quality[second])
    discard, fnmr = edc(scores, mated, pair_q, threshold)
    e0 = float(fnmr[0])
    area = pauc(discard, fnmr, PAUC_LIMIT)
    return {
        "num_images": float(len(labels)),
        "fnmr_at_fmr": e0,
        "pauc_20": area,
        "pauc_20_normalised": area / (e0 * PAUC_LIMIT) if e0 > 0 else float("nan"),
        "quality_truth_spearman": spearman(quality, np.asarray(truth)),
    }


def bin_accuracy(
    model: nn.Module, path: str, *, device: torch.device, batch_size: int = 64
) -> dict[str, float]:
    """insightface 10-fold verification accuracy on a ``.bin`` set."""
    try:
        from igfiqa.data.benchmarks import open_benchmark
    except ImportError as error:  # the benchmark readers are a separate module
        raise ConfigError(
            f"verification on {path} needs igfiqa.data.benchmarks, which is not available"
        ) from error
    from igfiqa.evaluation.similarity import pair_similarity
    from igfiqa.evaluation.verification import ten_fold_accuracy

    pairs = open_benchmark("bin", path)
    images = [pairs.load_sample(i) for i in range(pairs.num_samples)]
    embeddings, _ = embed_and_score(model, images, device=device, batch_size=batch_size, flip=True)
    similarity = pair_similarity(embeddings, pairs.pairs)
    result = ten_fold_accuracy(similarity, np.asarray(pairs.mated, dtype=bool))
    return {"accuracy": result.mean, "accuracy_std": result.std}


def run_verification(
    model: nn.Module, config: IgfiqaConfig, *, device: torch.device
) -> dict[str, dict[str, Any]]:
    """Every set of ``config.verification.sets``: ``{name: {metric: value}}``."""
    results: dict[str, dict[str, Any]] = {}
    item: VerificationSet
    for item in config.verification.sets:
        size = config.verification.batch_size
        if item.kind == "synthetic":
            results[item.name] = synthetic_edc(model, item.path, device=device, batch_size=size)
        else:
            results[item.name] = bin_accuracy(model, item.path, device=device, batch_size=size)
    return results


class PeriodicVerification:
    """``config.verification`` during training. Rank 0 computes (``main``); the other ranks get
    ``{}``. ``results``: the last results (``{}`` until the first verification)."""

    def __init__(self, config: IgfiqaConfig, *, device: torch.device, main: bool) -> None:
        self.config = config
        self.device = device
        self.main = main
        self.results: dict[str, dict[str, Any]] = {}

    def due(self, step: int) -> bool:
        """Whether the step cadence asks for a verification after optimizer step ``step``."""
        every = self.config.verification.every_steps
        return bool(every and self.config.verification.sets and step % every == 0)

    @property
    def due_at_end(self) -> bool:
        return bool(self.config.verification.at_end and self.config.verification.sets)

    def __call__(self, model: nn.Module) -> dict[str, dict[str, Any]]:
        """Every set on ``model`` in eval mode (put back in train mode afterwards)."""
        results: dict[str, dict[str, Any]] = {}
        if self.main:
            model.eval()
            try:
                results = run_verification(model, self.config, device=self.device)
            finally:
                model.train()
        self.results = results
        return results
