"""The Python API treats items as `igfiqa score` does: a failed item (truncated file, wrong size, no
face) gets NaN and a reason instead of losing the batch; calibrate keeps NaN; embed and
score_and_embed take photographs; a model trained on synthetic faces says so when it scores
files or photographs, and `igfiqa info` says it too."""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from inference_helpers import FEATURES, SIZE, SPEC, random_images, tiny_model
from PIL import Image
from typer.testing import CliRunner

import igfiqa
from igfiqa.cli import app
from igfiqa.errors import (
    ConfigError,
    DataError,
    FailedItemsWarning,
    ImageDecodeError,
    SyntheticModelWarning,
)
from igfiqa.inference.calibration import ScoreCalibration

SYNTHETIC = "synthetic:identities=3,samples=4,seed=0"


def _jpeg(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory, astronaut) -> dict[str, Path]:
    """Two good photographs, a truncated JPEG of one of them and a photograph without a face."""
    root = tmp_path_factory.mktemp("api_photos")
    image = astronaut[0]
    data = _jpeg(image)
    (root / "a.jpg").write_bytes(data)
    (root / "b.jpg").write_bytes(_jpeg(np.ascontiguousarray(image[:, ::-1])))
    (root / "truncated.jpg").write_bytes(data[: len(data) // 2])
    wall = np.full((240, 320, 3), 128, np.uint8)
    wall[:, ::8] = 60
    Image.fromarray(wall).save(root / "wall.png")
    return {p.stem: p for p in root.iterdir()}


@pytest.fixture(scope="module")
def crops(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Three aligned-size crops as PNG files, the middle one truncated."""
    root = tmp_path_factory.mktemp("api_crops")
    paths = []
    for i, image in enumerate(random_images(3, seed=5)):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG")
        data = buffer.getvalue()
        paths.append(root / f"{i}.png")
        paths[-1].write_bytes(data if i != 1 else data[: len(data) // 3])
    return paths


@pytest.fixture(scope="module")
def synthetic_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A training checkpoint whose config says it was trained on igfiqa's synthetic faces."""
    model = tiny_model()
    path = tmp_path_factory.mktemp("synthetic") / "last.pt"
    torch.save(
        {
            "format": "igfiqa.checkpoint", "format_version": 1, "model_spec": dict(SPEC),
            "model": model.state_dict(), "head": {"weight": torch.zeros(3, FEATURES)},
            "optimizer": {}, "scheduler": {}, "scaler": {}, "epoch": 2, "step": 40,
            "guidance": {}, "augment": {}, "sampler": {}, "rng": {},
            "config": {"data": {"source": SYNTHETIC}, "method": "igfiqa"},
            "class_names": ["a", "b", "c"], "igfiqa_version": "0.1.0",
        },
        path,
    )  # fmt: skip
    return path


# ------------------------------------------------------------------------ failed items
def test_a_truncated_jpeg_in_a_batch_of_photographs_is_nan_with_its_reason(
    photos, backbone_path
) -> None:
    model = igfiqa.load_model(backbone_path)
    batch = [photos["a"], photos["truncated"], photos["b"]]
    with pytest.warns(FailedItemsWarning, match=r"1 of 3 images failed.*\[1\] .*truncated\.jpg"):
        scores = model.score(batch, detect=True, batch_size=2)
    assert np.isnan(scores[1]) and np.isfinite(scores[[0, 2]]).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the caller takes the reasons: no warning
        again, reasons = model.score(batch, detect=True, return_errors=True)
    np.testing.assert_allclose(again, scores, equal_nan=True, atol=1e-5)
    assert reasons[0] is None and reasons[2] is None and "truncated.jpg" in reasons[1]
    # the good ones score as they do on their own
    alone = model.score([photos["a"], photos["b"]], detect=True)
    np.testing.assert_allclose(scores[[0, 2]], alone, atol=1e-5)
    with pytest.raises(ImageDecodeError, match=r"truncated\.jpg"):
        model.score(batch, detect=True, errors="raise")
    faces, reasons = model.score_faces(batch, return_errors=True)
    assert [len(f) for f in faces] == [1, 0, 1] and "truncated.jpg" in reasons[1]
    with pytest.raises(ImageDecodeError):
        model.score_faces(batch, errors="raise")


def test_a_photograph_without_a_face_has_an_empty_list_and_a_reason(photos, backbone_path):
    model = igfiqa.load_model(backbone_path)
    faces, reasons = model.score_faces([photos["wall"], photos["a"]], return_errors=True)
    assert faces[0] == [] and "no face found" in reasons[0] and "wall.png" in reasons[0]
    assert len(faces[1]) == 1 and reasons[1] is None
    assert faces[1][0].outside == 0.0 and faces[1][0].confidence >= 0.95
    # arrays are named by their position in the call
    pixels = np.asarray(Image.open(photos["wall"]).convert("RGB"))
    _, reasons = model.score([pixels], detect=True, return_errors=True)
    assert reasons[0].startswith("image 0: no face found")


def test_aligned_crops_raise_by_default_and_take_nan_when_asked(crops, backbone_path) -> None:
    model = igfiqa.load_model(backbone_path)
    with pytest.raises(ImageDecodeError, match=r"1\.png"):
        model.score(crops)  # as before: a broken crop is a bug in the caller's pipeline
    with pytest.warns(FailedItemsWarning, match=r"\[1\] .*1\.png"):
        scores = model.score(crops, errors="nan", batch_size=2)
    assert np.isnan(scores[1]) and np.isfinite(scores[[0, 2]]).all()
    np.testing.assert_allclose(scores[[0, 2]], model.score([crops[0], crops[2]]), atol=1e-5)
    embeddings, reasons = model.embed(crops, errors="nan", return_errors=True)
    assert embeddings.shape == (3, FEATURES) and np.isnan(embeddings[1]).all()
    assert np.isfinite(embeddings[[0, 2]]).all() and "1.png" in reasons[1]
    big = random_images(1, size=SIZE * 2)
    _, reasons = model.score([*random_images(1), big[0]], errors="nan", return_errors=True)
    assert reasons[0] is None and "resize=True" in reasons[1]
    with pytest.raises(ConfigError, match="errors must be"):
        model.score(crops, errors="ignore")


def test_calibrate_keeps_nan(backbone_path) -> None:
    model = igfiqa.load_model(backbone_path)
    model.calibration = ScoreCalibration.fit(np.linspace(0.0, 1.0, 1001))
    levels = model.calibrate(np.array([np.nan, 0.25, 2.0, np.nan], np.float32))
    assert np.isnan(levels[[0, 3]]).all() and levels[1:3].tolist() == [25.0, 100.0]
    assert model.calibrate(np.array([0.5])).tolist() == [50.0]


# ------------------------------------------------------------------------ photographs
def test_embed_and_score_and_embed_take_photographs(photos, backbone_path) -> None:
    from igfiqa.detection import find_faces, load_detector

    model = igfiqa.load_model(backbone_path)
    batch = [photos["a"], photos["wall"], photos["b"]]
    with pytest.warns(FailedItemsWarning, match="wall.png"):
        embeddings = model.embed(batch, detect=True)
    assert embeddings.shape == (3, FEATURES) and np.isnan(embeddings[1]).all()
    image = np.asarray(Image.open(photos["a"]).convert("RGB"))
    (face,) = find_faces(image, load_detector(), size=SIZE)
    np.testing.assert_allclose(embeddings[0], model.embed(face.crop)[0], atol=1e-4)
    scores, both, reasons = model.score_and_embed(batch, detect=True, return_errors=True)
    np.testing.assert_allclose(both, embeddings, atol=1e-5, equal_nan=True)
    np.testing.assert_allclose(
        scores, model.score(batch, detect=True, return_errors=True)[0], atol=1e-5, equal_nan=True
    )
    assert reasons[1] is not None and reasons[0] is None
    with pytest.raises(DataError, match="resize"):
        model.embed(batch, detect=True, resize=True)


def test_min_confidence_and_the_share_outside_the_frame(astronaut, backbone_path) -> None:
    model = igfiqa.load_model(backbone_path)
    cut = np.ascontiguousarray(astronaut[0][90:])  # the frame cuts the face's box at y = -21
    (faces,) = model.score_faces([cut])
    assert faces[0].box[1] < 0 and 0.1 < faces[0].outside < 0.35
    faces, reasons = model.score_faces([cut], min_confidence=0.99999, return_errors=True)
    assert faces == [[]] and "confidence of 0.99999 or more" in reasons[0]
    with pytest.raises(ConfigError, match="--min-confidence"):
        model.score([cut], detect=True, min_confidence=2.0)


# ------------------------------------------------------------------------ synthetic models
def test_a_synthetic_model_warns_when_it_scores_files_or_photographs(
    synthetic_checkpoint, photos, crops, backbone_path
) -> None:
    model = igfiqa.load_model(synthetic_checkpoint)
    assert model.synthetic_training == SYNTHETIC
    assert "synthetic faces only" in repr(model)
    with pytest.warns(SyntheticModelWarning, match=r"trained only on igfiqa's synthetic faces"):
        model.score([crops[0]])
    with pytest.warns(SyntheticModelWarning):
        model.score_faces([photos["a"]])
    with pytest.warns(SyntheticModelWarning):  # arrays, but searched as photographs
        model.score(np.asarray(Image.open(photos["a"]).convert("RGB")), detect=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # what the demo and the evaluation do with the renderer's faces: no warning
        model.score(random_images(2))
        model.score_and_embed(torch.zeros(2, 3, SIZE, SIZE))
        model.embed([crops[0]])  # embeddings are not quality scores
        # a model trained on other data (a released backbone) never warns
        released = igfiqa.load_model(backbone_path)
        assert released.synthetic_training is None
        released.score([crops[0]])
    # filterable by category
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", category=SyntheticModelWarning)
        model.score([crops[0]])


def test_score_and_info_say_a_model_was_trained_on_synthetic_faces(
    synthetic_checkpoint, crops, backbone_path
) -> None:
    runner = CliRunner()
    scored = runner.invoke(
        app, ["score", str(synthetic_checkpoint), str(crops[0]), "--quiet", "--no-progress"]
    )
    assert scored.exit_code == 0, scored.output
    assert "warning:" in scored.stderr and "synthetic faces" in scored.stderr
    assert "warning" not in scored.stdout  # the rows stay clean for pipes
    plain = runner.invoke(app, ["score", str(backbone_path), str(crops[0]), "--quiet"])
    assert plain.exit_code == 0 and "warning" not in plain.stderr
    info = runner.invoke(app, ["info", str(synthetic_checkpoint)])
    assert info.exit_code == 0, info.output
    assert "synthetic faces ONLY" in info.stdout and SYNTHETIC in info.stdout
    assert "0-100 score: none" in info.stdout
    card = json.loads(runner.invoke(app, ["info", str(synthetic_checkpoint), "--json"]).stdout)
    assert card["training"]["data"]["source"] == SYNTHETIC
    released = runner.invoke(app, ["info", str(backbone_path)])
    assert released.exit_code == 0 and "ONLY" not in released.stdout
    missing = runner.invoke(app, ["info", "no/such/model.pt"])
    assert missing.exit_code == 2 and "error:" in missing.output


def test_info_names_the_reference_of_the_0_100_score(synthetic_checkpoint, tmp_path) -> None:
    runner = CliRunner()
    out = tmp_path / "export"
    reference = "synthetic:identities=8,samples=4,seed=1"
    exported = runner.invoke(
        app, ["export", str(synthetic_checkpoint), "-o", str(out), "--reference", reference]
    )
    assert exported.exit_code == 0, exported.output
    info = runner.invoke(app, ["info", str(out)])
    assert info.exit_code == 0, info.output
    line = next(x for x in info.stdout.splitlines() if "0-100 score" in x)
    assert "percentile rank among 32 reference images of synthetic:" in line
    assert "not an ISO/IEC 29794 quality" in line
    with pytest.warns(SyntheticModelWarning, match="percentile among synthetic faces"):
        igfiqa.load_model(out).score([_png(tmp_path)])


def _png(folder: Path) -> Path:
    path = folder / "face.png"
    Image.fromarray(random_images(1)[0]).save(path)
    return path
