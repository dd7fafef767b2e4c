"""Training datasets: formats, detection, class mapping, flips, resize, errors, workers."""

from __future__ import annotations

import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from igfiqa.data.convert import encode_image, write_identity_folder, write_recordio
from igfiqa.data.datasets import (
    FaceDataset,
    IdentityFolderDataset,
    detect_format,
    flip_decision,
    load_class_mapping,
    open_training_dataset,
    to_tensor,
)
from igfiqa.errors import ConfigError, DataError

SPEC = "synthetic:identities=6,samples=4,seed=3,low_variance_share=0.2,image_size=24"


def _folder(root: Path, layout: dict[str, int], size: int = 20) -> None:
    rng = np.random.default_rng(0)
    for name, count in layout.items():
        (root / name).mkdir(parents=True)
        for i in range(count):
            image = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            (root / name / f"img_{i}.png").write_bytes(encode_image(image, "png"))


def test_synthetic_spec_gives_the_contract_output() -> None:
    dataset = open_training_dataset(SPEC, hflip=False)
    assert isinstance(dataset, FaceDataset) and len(dataset) == 24
    assert dataset.num_classes == 6 and dataset.class_names == [str(i) for i in range(6)]
    assert (
        dataset.labels.dtype == np.int64
        and dataset.labels.tolist() == np.repeat(np.arange(6), 4).tolist()
    )
    image, label = dataset[9]
    assert image.dtype == torch.float32 and image.shape == (3, 24, 24) and label == 2
    raw = dataset.faces.render(2, 1)[0]
    expected = (raw.astype(np.float32) / 255 - 0.5) / 0.5
    np.testing.assert_allclose(image.permute(1, 2, 0).numpy(), expected, atol=1e-6)
    # image_size overrides the spec's size (rendered directly).
    assert open_training_dataset(SPEC, image_size=32)[0][0].shape == (3, 32, 32)


def test_flip_is_deterministic_per_seed_epoch_index() -> None:
    dataset = open_training_dataset(SPEC, hflip=True, seed=11)
    flips = [dataset.is_flipped(i) for i in range(len(dataset))]
    assert 0 < sum(flips) < len(flips)
    for i in range(len(dataset)):
        image, _ = dataset[i]
        plain = to_tensor(dataset.load_image(i))
        assert torch.equal(image, plain.flip(2) if flips[i] else plain)
    dataset.set_epoch(1)
    assert [dataset.is_flipped(i) for i in range(len(dataset))] != flips
    dataset.set_epoch(0)
    assert [dataset.is_flipped(i) for i in range(len(dataset))] == flips
    assert flip_decision(11, 0, 3) == flips[3]
    # About half of all decisions flip.
    assert abs(np.mean([flip_decision(0, e, i) for e in range(4) for i in range(500)]) - 0.5) < 0.05
    assert not any(open_training_dataset(SPEC, hflip=False).is_flipped(i) for i in range(24))


def test_identity_folder_class_ids_and_saved_mapping(tmp_path: Path) -> None:
    _folder(tmp_path / "data", {"zoe": 2, "adam": 3, "mia": 1})
    (tmp_path / "data" / "empty_person").mkdir()
    (tmp_path / "data" / "adam" / "notes.txt").write_text("ignored")
    dataset = open_training_dataset(tmp_path / "data")
    assert isinstance(dataset, IdentityFolderDataset) and dataset.format == "folder"
    assert dataset.class_names == ["adam", "mia", "zoe"]
    assert dataset.labels.tolist() == [0, 0, 0, 1, 2, 2]
    assert dataset.image_size == 20 and dataset[0][0].shape == (3, 20, 20)
    dataset.save_class_mapping(tmp_path / "classes.json")
    dataset.save_class_mapping(tmp_path / "again.json")
    assert (tmp_path / "classes.json").read_bytes() == (tmp_path / "again.json").read_bytes()
    assert load_class_mapping(tmp_path / "classes.json") == ["adam", "mia", "zoe"]
    # Reusing a mapping keeps ids even when an identity is missing from the new folder.
    _folder(tmp_path / "other", {"zoe": 1, "mia": 1})
    reused = open_training_dataset(tmp_path / "other", class_mapping=tmp_path / "classes.json")
    assert reused.labels.tolist() == [1, 2] and reused.num_classes == 3
    _folder(tmp_path / "stranger", {"bob": 1})
    with pytest.raises(DataError, match="bob"):
        open_training_dataset(tmp_path / "stranger", class_mapping=tmp_path / "classes.json")


def test_resize_to_requested_size(tmp_path: Path) -> None:
    _folder(tmp_path / "d", {"a": 1, "b": 1}, size=40)
    dataset = open_training_dataset(tmp_path / "d", image_size=20, hflip=False)
    image = dataset.load_image(0)
    source = cv2.cvtColor(cv2.imread(str(dataset.paths[0])), cv2.COLOR_BGR2RGB)
    assert np.array_equal(image, cv2.resize(source, (20, 20), interpolation=cv2.INTER_AREA))


def test_list_file_dataset(tmp_path: Path) -> None:
    _folder(tmp_path / "imgs", {"p1": 2, "p2": 1})
    lines = "# comment\nimgs/p1/img_0.png 1\n\nimgs/p1/img_1.png 1\nimgs/p2/img_0.png 0\n"
    (tmp_path / "train.txt").write_text(lines)
    dataset = open_training_dataset(tmp_path / "train.txt")
    assert dataset.format == "list" and dataset.labels.tolist() == [1, 1, 0]
    assert dataset.num_classes == 2 and len(dataset[2]) == 2
    # MXNet .lst lines (index, label, path) and an explicit root.
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.lst").write_text("0\t3\tp1/img_0.png\n1\t0\tp2/img_0.png\n")
    lst = open_training_dataset(tmp_path / "sub" / "a.lst", root=tmp_path / "imgs")
    assert lst.labels.tolist() == [3, 0] and lst.num_classes == 4
    (tmp_path / "bad.txt").write_text("imgs/p1/img_0.png one\n")
    with pytest.raises(DataError, match=r"bad\.txt, line 1: label 'one'"):
        open_training_dataset(tmp_path / "bad.txt")
    (tmp_path / "gone.txt").write_text("imgs/p9/x.png 0\n")
    with pytest.raises(DataError, match="does not exist"):
        open_training_dataset(tmp_path / "gone.txt")
    (tmp_path / "blank.txt").write_text("\n# nothing\n")
    with pytest.raises(DataError, match="no entries"):
        open_training_dataset(tmp_path / "blank.txt")


def test_recordio_dataset_round_trip_from_synthetic(tmp_path: Path) -> None:
    source = open_training_dataset(SPEC, hflip=False)
    write_recordio(source, tmp_path / "rec", image_format="png")
    assert detect_format(tmp_path / "rec") == "recordio"
    dataset = open_training_dataset(tmp_path / "rec", hflip=False)
    assert dataset.format == "recordio" and dataset.num_classes == 6 and len(dataset) == 24
    assert dataset.labels.tolist() == source.labels.tolist()
    for i in (0, 13, 23):
        assert np.array_equal(dataset.load_image(i), source.load_image(i))  # PNG: lossless
    # Also by the .rec path, and JPEG storage decodes close to the source.
    write_recordio(source, tmp_path / "jpg", image_format="jpg", quality=95)
    jpeg = open_training_dataset(tmp_path / "jpg" / "train.rec", hflip=False)
    assert np.abs(jpeg.load_image(5).astype(int) - source.load_image(5)).mean() < 6


@pytest.mark.parametrize(
    ("text", "message"),
    [("7,32,32", "says 7 classes but the labels"), ("6,112,112", "says 112x112 images")],
)
def test_a_recordio_property_that_contradicts_the_data_is_refused(tmp_path, text, message) -> None:
    source = open_training_dataset(SPEC, hflip=False)
    write_recordio(source, tmp_path / "rec", image_format="png")
    (tmp_path / "rec" / "property").write_text(text)
    with pytest.raises(DataError, match=message):
        open_training_dataset(tmp_path / "rec")


def test_folder_written_from_synthetic_reads_back_identically(tmp_path: Path) -> None:
    source = open_training_dataset(SPEC, hflip=False)
    write_identity_folder(source, tmp_path / "f")
    dataset = open_training_dataset(tmp_path / "f", hflip=False)
    assert dataset.labels.tolist() == source.labels.tolist()
    assert np.array_equal(dataset.load_image(7), source.load_image(7))


def test_dataloader_workers_and_pickling(tmp_path: Path) -> None:
    source = open_training_dataset(SPEC, hflip=False)
    write_recordio(source, tmp_path / "rec")
    dataset = open_training_dataset(tmp_path / "rec", seed=2)
    dataset.reader.read(0)  # open the handle in this process before forking
    clone = pickle.loads(pickle.dumps(dataset))
    assert torch.equal(clone[3][0], dataset[3][0])
    loader = torch.utils.data.DataLoader(dataset, batch_size=5, num_workers=2)
    images, labels = zip(*loader, strict=True)
    stacked = torch.cat(images)
    assert (
        stacked.shape == (24, 3, 24, 24) and torch.cat(labels).tolist() == dataset.labels.tolist()
    )
    assert torch.equal(stacked[11], dataset[11][0])


def test_detection_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file or folder"):
        open_training_dataset(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty"):
        open_training_dataset(tmp_path / "empty")
    (tmp_path / "loose").mkdir()
    (tmp_path / "loose" / "a.png").write_bytes(encode_image(np.zeros((4, 4, 3), np.uint8), "png"))
    with pytest.raises(DataError, match="own subfolder"):
        open_training_dataset(tmp_path / "loose")
    (tmp_path / "noimg" / "person").mkdir(parents=True)
    (tmp_path / "noimg" / "person" / "readme.md").write_text("x")
    with pytest.raises(DataError, match="no images"):
        open_training_dataset(tmp_path / "noimg")
    (tmp_path / "x.bin").write_bytes(b"\x80")
    with pytest.raises(DataError, match="not a training set"):
        open_training_dataset(tmp_path / "x.bin")
    with pytest.raises(ConfigError, match="unknown option"):
        open_training_dataset(SPEC, colour=True)
    with pytest.raises(ConfigError, match="identities"):
        open_training_dataset("synthetic:identities=0")


def test_undecodable_folder_image_names_the_file(tmp_path: Path) -> None:
    _folder(tmp_path / "d", {"a": 1})
    (tmp_path / "d" / "a" / "zz_broken.jpg").write_text("not a jpeg")
    dataset = open_training_dataset(tmp_path / "d")
    with pytest.raises(DataError, match=r"zz_broken\.jpg"):
        dataset[1]
    assert dataset.describe()["images_per_class"] == {
        "min": 2,
        "median": 2.0,
        "mean": 2.0,
        "max": 2,
    }
