"""The study's instruments: CR by hand, the BatchNorm mismatch, the real-photo row."""

from __future__ import annotations

import numpy as np
import pytest

from igfiqa.experiments.instruments import (
    PhotoSet,
    batchnorm_mismatch,
    certainty_ratios,
    real_photo_metrics,
)


def test_certainty_ratios_by_hand() -> None:
    embedding = np.array([[1.0, 0.0], [0.6, 0.8]])
    prototypes = np.array([[2.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    cr = certainty_ratios(embedding, prototypes, np.array([0, 1]))
    # sample 0: CCS 1, NNCCS max(0, -1) = 0; sample 1: CCS 0.8, NNCCS max(0.6, -0.6) = 0.6
    np.testing.assert_allclose(cr, [1.0 / 1.0, 0.8 / 1.6])


def test_batchnorm_mismatch_by_hand() -> None:
    """Inputs of mean 2 and variance 4 against running statistics 0 and 1: shift 2, |log 4|."""
    import torch

    bn = torch.nn.BatchNorm1d(3, eps=0.0).eval()
    x = torch.tensor([[0.0, 0.0, 0.0], [4.0, 4.0, 4.0]])
    with batchnorm_mismatch(bn) as mismatch:
        bn(x)
    assert mismatch["bn_mean_shift"] == pytest.approx(2.0)
    assert mismatch["bn_log_var_ratio"] == pytest.approx(np.log(4.0))
    assert not bn._forward_hooks  # the hooks are gone


def test_real_photo_metrics_add_the_embedding_diagnostics(tmp_path) -> None:
    """The study's per-run transfer row: the benchmark's metrics plus the embedding-norm diagnostics,
    recomputed here from the model's own scores and embeddings."""
    import torch

    from igfiqa.data.synthetic import SyntheticFaces
    from igfiqa.evaluation.correlation import spearman
    from igfiqa.evaluation.transfer import degrade_face
    from igfiqa.inference import load_model
    from igfiqa.models import create_model

    torch.manual_seed(0)
    spec = {"num_features": 16, "dropout": 0.0, "width": 0.125, "input_size": 32}
    model = create_model("r18", quality_head=True, **spec).eval()
    path = tmp_path / "model.pt"
    torch.save(
        {
            "format": "igfiqa.checkpoint",
            "format_version": 1,
            "model_spec": {"name": "iresnet18", **spec},
            "model": model.state_dict(),
            "head": {},
            "optimizer": {},
            "scheduler": {},
            "scaler": {},
            "epoch": 1,
            "step": 1,
            "guidance": {},
            "augment": {},
            "sampler": {},
            "rng": {},
            "config": {},
            "class_names": [],
            "igfiqa_version": "0.1.0",
        },
        path,
    )
    generator = SyntheticFaces(2, 1, image_size=112)
    images, faces, kinds, severities = [], [], [], []
    for face in range(2):
        degraded, kind, severity = degrade_face(generator.render_clean(face, 0), seed=face)
        images += degraded
        faces += [face] * len(degraded)
        kinds += list(kind)
        severities += list(severity)
    photos = PhotoSet(images, np.array(faces), np.array(kinds), np.array(severities))
    row = real_photo_metrics(path, photos, seed=0)

    quality, embeddings = load_model(path).score_and_embed(images, resize=True, workers=1)
    minus = -np.asarray(severities, dtype=float)
    norm = np.linalg.norm(embeddings, axis=1)
    assert row["spearman"] == pytest.approx(spearman(quality, minus))
    assert row["embedding_norm_spearman"] == pytest.approx(spearman(norm, minus))
    assert row["quality_norm_spearman"] == pytest.approx(spearman(quality, norm))
    assert real_photo_metrics(path, PhotoSet(unavailable="offline"), seed=0) is None
