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

    monkeypatch.setattr(registry, "BENCHMARK_READERS", registry.BENCHMARK_READERS.copy())
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


# -- issue 25: bounded pairs, every file in the cache key, malformed meta files -------------------


def test_one_huge_identity_gives_a_bounded_reproducible_sample_of_pairs(
    tmp_path: Path, monkeypatch
) -> None:
    """Item 11: one identity of 30,000 images has 449,985,000 mated pairs (7 GB as index pairs);
    `evaluate` tried to allocate them. Now a uniform sample of DEFAULT_MAX_MATED, drawn without
    forming the others, reproducible from the seed, with the counts in ``info``."""
    import tracemalloc

    import igfiqa.data.datasets as datasets
    from igfiqa.data.benchmarks import DEFAULT_MAX_MATED

    n = 30_000
    paths = [tmp_path / "one" / f"{i:05d}.png" for i in range(n)]  # never read
    monkeypatch.setattr(
        datasets, "scan_identity_folder", lambda root: (paths, ["one"] * n, ["one"])
    )
    tracemalloc.start()
    try:
        bench = open_benchmark("folder", tmp_path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 400 * 2**20  # about 160 MiB measured (pairs kept: 32 MB)
    assert len(bench.pairs) == DEFAULT_MAX_MATED and bench.mated.all()
    assert bench.info["mated_pairs_available"] == n * (n - 1) // 2
    assert bench.info["mated_pairs_kept"] == DEFAULT_MAX_MATED
    assert bench.info["nonmated_pairs_available"] == 0 and bench.info["pair_seed"] == 0
    pairs = bench.pairs
    assert (pairs[:, 0] < pairs[:, 1]).all() and pairs.max() < n
    keys = pairs[:, 0] * n + pairs[:, 1]
    assert (np.diff(keys) > 0).all()  # sorted by (i, j), no pair twice
    # Spread over the whole triangle, and reproducible.
    assert pairs[:, 0].min() < 100 and pairs[:, 0].max() > n - 300
    small = {"max_mated": 1000, "max_nonmated": 0}
    again = open_benchmark("folder", tmp_path, **small, seed=0).pairs
    assert np.array_equal(again, open_benchmark("folder", tmp_path, **small, seed=0).pairs)
    assert not np.array_equal(again, open_benchmark("folder", tmp_path, **small, seed=1).pairs)


def test_mated_cap_keeps_exactly_that_many_and_leaves_the_nonmated_sample_alone() -> None:
    from igfiqa.data.benchmarks import sample_pairs

    labels = np.repeat(np.arange(30), [40] * 10 + [3] * 20)  # 7,800 + 60 mated pairs
    pairs, mated, counts = sample_pairs(labels, max_mated=500, max_nonmated=700, seed=2)
    assert counts == {
        "mated_pairs_available": 7860,
        "nonmated_pairs_available": 460 * 459 // 2 - 7860,
        "mated_pairs_kept": 500,
        "nonmated_pairs_kept": 700,
    }
    assert mated.sum() == 500 and (~mated).sum() == 700
    assert ((labels[pairs[:, 0]] == labels[pairs[:, 1]]) == mated).all()
    assert len(np.unique(pairs, axis=0)) == len(pairs)
    other, other_mated, _ = sample_pairs(labels, max_mated=100, max_nonmated=700, seed=2)
    assert np.array_equal(pairs[~mated], other[~other_mated])  # separate streams


def test_an_impossible_number_of_pairs_is_one_line_naming_the_benchmark() -> None:
    from igfiqa.data.benchmarks import MAX_PAIRS

    labels = np.zeros(7_000, np.int64)  # 24.5 M mated pairs, no cap
    with pytest.raises(DataError, match=r"^bench: 7,000 samples give .*max_mated") as caught:
        all_pairs(labels, max_mated=None, name="bench")
    assert "\n" not in str(caught.value) and f"{MAX_PAIRS:,}" in str(caught.value)
    with pytest.raises(ConfigError, match="max_mated"):
        all_pairs(labels, max_mated=-1)


def test_every_reader_lists_the_files_it_reads(tmp_path: Path) -> None:
    """Item 7: the cache key covers what ``files`` lists: list files, landmarks, every image."""
    _xqlfw(tmp_path / "x")
    xq = open_benchmark("xqlfw", tmp_path / "x" / "xqlfw_pairs.txt")
    assert xq.files == [str(tmp_path / "x" / "xqlfw_pairs.txt"), *xq.sample_names]
    _ijb(tmp_path / "i")
    ijb = open_benchmark("ijbc", tmp_path / "i")
    meta = [
        str(tmp_path / "i" / "meta" / f"ijbc_{n}.txt")
        for n in ("name_5pts_score", "face_tid_mid", "template_pair_label")
    ]
    assert ijb.files == [*meta, *ijb.sample_names]
    write_identity_folder(open_training_dataset(SPEC, hflip=False), tmp_path / "f")
    folder = open_benchmark("folder", tmp_path / "f")
    assert folder.files == folder.sample_names and len(folder.files) == 20
    assert open_benchmark("synthetic", SPEC).files == []


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("name_5pts_score", "", r"name_5pts_score\.txt: the file is empty"),
        ("name_5pts_score", "\n  \n", r"name_5pts_score\.txt: the file is empty"),
        ("name_5pts_score", "0.jpg 1 2 3\n", r"name_5pts_score\.txt, line 1: expected .*4 fields"),
        ("name_5pts_score", None, r"name_5pts_score\.txt, line 2: .*finite numbers"),
        ("face_tid_mid", "", r"face_tid_mid\.txt: the file is empty"),
        ("face_tid_mid", "0.jpg 11\n", r"face_tid_mid\.txt, line 1: expected .*2 fields"),
        ("face_tid_mid", "0.jpg 11 x\n", r"face_tid_mid\.txt, line 1: .*integers"),
        ("template_pair_label", "", r"template_pair_label\.txt: the file is empty"),
        ("template_pair_label", "11 40 0\n\n7 9\n", r"pair_label\.txt, line 3: .*got 2 fields"),
        ("template_pair_label", "11 40\n7 9 1 1\n", r"pair_label\.txt, line 1: .*got 2 fields"),
        ("template_pair_label", "11 40 0\n7 9 2\n", r"pair_label\.txt: labels must be 0 or 1"),
    ],
)
def test_malformed_ijb_meta_files_are_one_line_naming_file_and_line(
    tmp_path: Path, name: str, text: str | None, message: str
) -> None:
    """Item 14: an empty ``ijbc_name_5pts_score.txt`` ended in an IndexError traceback."""
    _ijb(tmp_path)
    path = tmp_path / "meta" / f"ijbc_{name}.txt"
    if text is None:  # a landmark that is not a number on line 2
        lines = path.read_text().splitlines()
        lines[1] = lines[1].replace(lines[1].split()[3], "nan", 1)
        text = "\n".join(lines) + "\n"
    path.write_text(text)
    with pytest.raises(DataError, match=message) as caught:
        open_benchmark("ijbc", tmp_path)
    assert "\n" not in str(caught.value)


def test_malformed_benchmark_files_are_a_clean_cli_error(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    import sys

    from igfiqa.cli import main

    _ijb(tmp_path / "i")
    (tmp_path / "i" / "meta" / "ijbc_name_5pts_score.txt").write_text("")
    monkeypatch.setattr(sys, "argv", ["igfiqa", "data", "inspect", str(tmp_path / "i")])
    with pytest.raises(SystemExit) as exited:
        main()
    err = capsys.readouterr().err
    assert exited.value.code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert err.startswith("error: ") and "ijbc_name_5pts_score.txt: the file is empty" in err
    _xqlfw(tmp_path / "x")
    for text in ("", "1\t2\n"):
        (tmp_path / "x" / "xqlfw_pairs.txt").write_text(text)
        with pytest.raises(DataError, match=r"xqlfw_pairs\.txt: no pairs"):
            open_benchmark("xqlfw", tmp_path / "x")
