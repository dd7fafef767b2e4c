"""Benchmark readers: .bin (restricted unpickler), XQLFW, IJB-B/C, labelled folders, synthetic."""

from __future__ import annotations

import os
import pickle
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest

from igfiqa.data.align import ARCFACE_TEMPLATE
from igfiqa.data.benchmarks import (
    HELD_OUT_FIRST_IDENTITY,
    all_pairs,
    load_verification_bin,
    open_benchmark,
    restricted_unpickle,
)
from igfiqa.data.benchmarks.pairset import _triangle_index
from igfiqa.data.convert import encode_image, write_identity_folder, write_verification_bin
from igfiqa.data.datasets import open_training_dataset
from igfiqa.errors import ConfigError, DataError, UnsafePickleError

SPEC = "synthetic:identities=5,samples=4,seed=1,image_size=32"


# -- .bin -----------------------------------------------------------------------------------------


def test_bin_written_from_synthetic_reads_back(tmp_path: Path) -> None:
    source = open_training_dataset(SPEC, hflip=False)
    path = write_verification_bin(source, tmp_path / "lfw.bin", num_pairs=12, image_format="png")
    bench = open_benchmark("bin", path)
    assert bench.name == "lfw" and bench.num_samples == 24 and bench.sample_template is None
    assert bench.pairs.tolist() == [[2 * i, 2 * i + 1] for i in range(12)]
    assert bench.mated.tolist() == [True, False] * 6
    bins, issame = pickle.loads(path.read_bytes())
    assert isinstance(bins[0], bytes) and issame == bench.mated.tolist()
    # Mated pairs are two images of one identity, non-mated of two; images decode losslessly.
    from igfiqa.data.convert import verification_pairs

    pairs, _ = verification_pairs(source.labels, 12, seed=0)
    labels = source.labels[pairs]
    assert ((labels[:, 0] == labels[:, 1]) == bench.mated).all()
    assert np.array_equal(bench.load_sample(3), source.load_image(int(pairs[1, 1])))


def test_bin_with_numpy_uint8_images_and_old_protocol(tmp_path: Path) -> None:
    png = encode_image(np.full((8, 8, 3), 200, np.uint8), "png")
    arrays = [np.frombuffer(png, np.uint8).copy() for _ in range(4)]
    for protocol in (2, 4, 5):
        path = tmp_path / f"p{protocol}.bin"
        path.write_bytes(pickle.dumps((arrays, [True, False]), protocol=protocol))
        _, mated = load_verification_bin(path)
        assert mated.tolist() == [True, False]
        assert (open_benchmark("bin", path).load_sample(2) == 200).all()
    # A Python 2 style pickle (protocol 2, images as BINSTRING 'str' opcodes): needs encoding='bytes'.
    body = b"".join(b"T" + struct.pack("<I", len(png)) + png for _ in range(2))
    py2 = b"\x80\x02(](" + body + b"e]\x88at."
    with pytest.raises(UnicodeDecodeError):
        pickle.loads(py2)  # the default ASCII decoding fails on such files
    path = tmp_path / "py2.bin"
    path.write_bytes(py2)
    bench = open_benchmark("bin", path)
    assert bench.mated.tolist() == [True] and (bench.load_sample(1) == 200).all()


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _Evals:
    def __reduce__(self):
        return (eval, ("__import__('os').getcwd()",))


def test_pickle_that_runs_code_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    for protocol in (0, 2, 4):
        path = tmp_path / f"evil{protocol}.bin"
        path.write_bytes(pickle.dumps(([b"x", _RunsCode(marker)], [True]), protocol=protocol))
        with pytest.raises(UnsafePickleError, match=r"evil\d\.bin.*(posix|os|nt)\.system"):
            open_benchmark("bin", path)
    assert not marker.exists()
    with pytest.raises(UnsafePickleError, match="eval"):
        restricted_unpickle(pickle.dumps(_Evals()), "e.bin")
    # An object array hides its items' pickles inside numpy's state: still refused.
    objects = np.empty(1, dtype=object)
    objects[0] = _RunsCode(marker)
    with pytest.raises(UnsafePickleError):
        restricted_unpickle(pickle.dumps(([objects], [True])), "obj.bin")
    assert not marker.exists()


def test_malformed_bin_files(tmp_path: Path) -> None:
    cases = {
        "junk.bin": b"not a pickle",
        "shape.bin": pickle.dumps([b"a", b"b", b"c"]),
        "count.bin": pickle.dumps(([b"a", b"b", b"c"], [True])),
        "float.bin": pickle.dumps(([np.zeros(3), np.zeros(3)], [True])),
        "labels.bin": pickle.dumps(([b"a", b"b"], ["yes"])),
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(DataError, match=name.replace(".", r"\.")):
            open_benchmark("bin", tmp_path / name)
    with pytest.raises(DataError, match="not found"):
        open_benchmark("bin", tmp_path / "none.bin")


# -- XQLFW ----------------------------------------------------------------------------------------


def _xqlfw(root: Path) -> None:
    rng = np.random.default_rng(0)
    for name, count in {"Ann_Lee": 2, "Bo_Chan": 1}.items():
        (root / "xqlfw_aligned_112" / name).mkdir(parents=True)
        for n in range(1, count + 1):
            image = rng.integers(0, 256, (112, 112, 3), dtype=np.uint8)
            (root / "xqlfw_aligned_112" / name / f"{name}_{n:04d}.jpg").write_bytes(
                encode_image(image)
            )
    (root / "xqlfw_pairs.txt").write_text("1\t2\nAnn_Lee\t1\t2\nAnn_Lee\t2\tBo_Chan\t1\n")


def test_xqlfw_reader(tmp_path: Path) -> None:
    _xqlfw(tmp_path)
    bench = open_benchmark("xqlfw", tmp_path)
    assert bench.num_samples == 3 and bench.pairs.tolist() == [[0, 1], [1, 2]]
    assert bench.mated.tolist() == [True, False]
    assert bench.sample_names[2].endswith("Bo_Chan/Bo_Chan_0001.jpg")
    assert bench.load_sample(0).shape == (112, 112, 3)
    assert open_benchmark("auto", tmp_path / "xqlfw_pairs.txt").num_samples == 3
    (tmp_path / "xqlfw_pairs.txt").write_text("1\t2\nAnn_Lee\t1\t3\n")
    with pytest.raises(DataError, match=r"Ann_Lee_0003\.jpg"):
        open_benchmark("xqlfw", tmp_path)
    (tmp_path / "xqlfw_pairs.txt").write_text("1\t2\nAnn_Lee\t1\n")
    with pytest.raises(DataError, match="line 2"):
        open_benchmark("xqlfw", tmp_path)


# -- IJB ------------------------------------------------------------------------------------------


def _ijb(root: Path, prefix: str = "ijbc") -> list[np.ndarray]:
    """Loose crops made by placing aligned synthetic faces into bigger images at known landmarks."""
    faces = open_training_dataset(
        "synthetic:identities=3,samples=2,seed=5,image_size=112", hflip=False
    )
    (root / "loose_crop").mkdir(parents=True)
    (root / "meta").mkdir()
    rng = np.random.default_rng(3)
    aligned, lm_lines, tid_lines = [], [], []
    template_of = [11, 11, 40, 40, 7, 9]  # original template ids (sparse, unsorted)
    for i in range(6):
        face = faces.load_image(i)
        angle, scale = rng.uniform(-0.4, 0.4), rng.uniform(1.2, 2.0)
        matrix = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        shift = rng.uniform(20, 60, 2)
        forward = np.c_[matrix, shift]
        loose = cv2.warpAffine(face, forward, (300, 300), flags=cv2.INTER_CUBIC)
        landmarks = ARCFACE_TEMPLATE @ matrix.T + shift
        (root / "loose_crop" / f"{i}.jpg").write_bytes(encode_image(loose, "png"))
        aligned.append(face)
        coords = " ".join(f"{v:.4f}" for v in landmarks.ravel())
        lm_lines.append(f"{i}.jpg {coords} 0.99")
        tid_lines.append(f"{i}.jpg {template_of[i]} {100 + i // 2}")
    (root / "meta" / f"{prefix}_name_5pts_score.txt").write_text("\n".join(lm_lines) + "\n")
    (root / "meta" / f"{prefix}_face_tid_mid.txt").write_text("\n".join(tid_lines) + "\n")
    (root / "meta" / f"{prefix}_template_pair_label.txt").write_text("11 40 0\n7 9 1\n40 9 0\n")
    return aligned


@pytest.mark.parametrize("prefix", ["ijbb", "ijbc"])
def test_ijb_reader_templates_and_alignment(tmp_path: Path, prefix: str) -> None:
    aligned = _ijb(tmp_path, prefix)
    bench = open_benchmark(prefix, tmp_path)
    assert bench.sample_template is not None and bench.num_samples == 6 and bench.num_templates == 4
    assert bench.template_ids.tolist() == [7, 9, 11, 40]
    assert bench.sample_template.tolist() == [2, 2, 3, 3, 0, 1]
    assert bench.sample_media.tolist() == [0, 0, 1, 1, 2, 2]
    assert bench.pairs.tolist() == [[2, 3], [0, 1], [3, 1]]
    assert bench.mated.tolist() == [False, True, False]
    # Alignment through the landmarks recovers the original aligned face (inner region).
    for i in (0, 5):
        restored = bench.load_sample(i).astype(np.float64)
        assert np.abs(restored[16:96, 16:96] - aligned[i][16:96, 16:96]).mean() < 6
    assert open_benchmark("auto", tmp_path).name == prefix


def test_ijb_errors(tmp_path: Path) -> None:
    _ijb(tmp_path)
    pair_file = tmp_path / "meta" / "ijbc_template_pair_label.txt"
    pair_file.write_text("11 40 0\n5 9 1\n")
    with pytest.raises(DataError, match=r"template 5 has no images"):
        open_benchmark("ijbc", tmp_path)
    pair_file.write_text("11 40 x\n")
    with pytest.raises(DataError, match="integers"):
        open_benchmark("ijbc", tmp_path)
    tid = tmp_path / "meta" / "ijbc_face_tid_mid.txt"
    lines = tid.read_text().splitlines()
    tid.write_text("\n".join([lines[1], lines[0], *lines[2:]]))
    pair_file.write_text("11 40 0\n")
    with pytest.raises(DataError, match="same order"):
        open_benchmark("ijbc", tmp_path)
    with pytest.raises(DataError, match="loose_crop"):
        open_benchmark("ijbc", tmp_path / "meta")


# -- all pairs ------------------------------------------------------------------------------------


def test_triangle_index_is_exact() -> None:
    for n in (2, 3, 7, 50, 301):
        i, j = np.triu_indices(n, k=1)
        ti, tj = _triangle_index(np.arange(n * (n - 1) // 2), n)
        assert np.array_equal(ti, i) and np.array_equal(tj, j)


def test_all_pairs_matches_brute_force() -> None:
    labels = np.array([0, 1, 0, 2, 1, 0])
    pairs, mated = all_pairs(labels)
    brute = [(i, j) for i in range(6) for j in range(i + 1, 6)]
    assert pairs.tolist() == [list(p) for p in brute]
    assert mated.tolist() == [labels[i] == labels[j] for i, j in brute]


def test_all_pairs_caps_nonmated_reproducibly() -> None:
    labels = np.repeat(np.arange(300), 4)  # 1200 samples, 1800 mated, ~717k non-mated
    pairs, mated = all_pairs(labels, max_nonmated=5000, seed=3)
    assert mated.sum() == 300 * 6 and (~mated).sum() == 5000
    assert (pairs[:, 0] < pairs[:, 1]).all()
    assert ((labels[pairs[:, 0]] == labels[pairs[:, 1]]) == mated).all()
    assert len(np.unique(pairs, axis=0)) == len(pairs)
    again, _ = all_pairs(labels, max_nonmated=5000, seed=3)
    other, _ = all_pairs(labels, max_nonmated=5000, seed=4)
    assert np.array_equal(pairs, again) and not np.array_equal(pairs, other)
    # The sample is spread over the whole triangle, not the first rows.
    assert pairs[~mated, 0].max() > 1000


def test_folder_and_synthetic_benchmarks(tmp_path: Path) -> None:
    source = open_training_dataset(SPEC, hflip=False)
    write_identity_folder(source, tmp_path / "f")
    bench = open_benchmark("folder", tmp_path / "f")
    assert bench.num_samples == 20 and len(bench.pairs) == 190 and bench.mated.sum() == 5 * 6
    assert np.array_equal(bench.load_sample(4), source.load_image(4))
    synthetic = open_benchmark("synthetic", "synthetic:identities=4,samples=3,seed=1,image_size=32")
    assert synthetic.sample_names[0] == f"synthetic/{HELD_OUT_FIRST_IDENTITY}/0"
    assert synthetic.ground_truth_quality.shape == (12,) and len(synthetic.pairs) == 66
    faces = synthetic.images.faces
    image, quality = faces.render(HELD_OUT_FIRST_IDENTITY + 2, 1)
    assert np.array_equal(synthetic.load_sample(7), image)
    assert synthetic.ground_truth_quality[7] == quality
    capped = open_benchmark(
        "synthetic", "synthetic:identities=10,samples=2,first_identity=50", max_nonmated=20
    )
    assert (~capped.mated).sum() == 20 and capped.sample_names[0] == "synthetic/50/0"


def test_open_benchmark_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown benchmark kind"):
        open_benchmark("lfw-ish", tmp_path)
    with pytest.raises(DataError, match="not found"):
        open_benchmark("xqlfw", tmp_path / "none")
    with pytest.raises(ConfigError, match="unknown option"):
        open_benchmark("bin", tmp_path, max_nonmated=3)
    (tmp_path / "solo" / "a").mkdir(parents=True)
    (tmp_path / "solo" / "a" / "x.png").write_bytes(
        encode_image(np.zeros((4, 4, 3), np.uint8), "png")
    )
    (tmp_path / "solo" / "b").mkdir()
    (tmp_path / "solo" / "b" / "y.png").write_bytes(
        encode_image(np.zeros((4, 4, 3), np.uint8), "png")
    )
    with pytest.raises(DataError, match="no mated pair"):
        open_benchmark("folder", tmp_path / "solo")


def test_a_new_reader_is_one_registration(tmp_path, monkeypatch) -> None:
    import igfiqa.data.benchmarks.registry as registry
    from igfiqa.data.benchmarks import BenchmarkReader, PairSet, open_benchmark, register_benchmark

    monkeypatch.setattr(registry, "BENCHMARK_READERS", dict(registry.BENCHMARK_READERS))
    marker = tmp_path / "pairs.toy"
    marker.write_text("x")

    class Blank:
        def load(self, index):
            return np.zeros((8, 8, 3), np.uint8)

    def open_toy(path, **options):
        return PairSet("toy", ["a", "b"], np.array([[0, 1]]), np.array([True]), Blank())

    register_benchmark(
        BenchmarkReader("toy", open_toy, detect=lambda p: p.endswith(".toy"), priority=5)
    )
    assert open_benchmark("auto", marker).name == "toy"
    assert open_benchmark("toy", marker).num_samples == 2
    with pytest.raises(ConfigError, match=r"choose one of .*toy"):
        open_benchmark("nope", marker)
