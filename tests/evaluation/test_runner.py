"""The benchmark runner: FR model kinds, quality methods, caches, flip recipes, templates, failures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from igfiqa.data.synthetic import SyntheticFaces
from igfiqa.errors import ConfigError, DataError, ImageDecodeError
from igfiqa.evaluation import runner as R
from igfiqa.evaluation.quality import parse_quality_spec
from igfiqa.evaluation.quality.csv_scores import read_quality_csv
from igfiqa.evaluation.quality.serfiq import serfiq_quality
from igfiqa.evaluation.report import write_report
from igfiqa.inference.fr_models import fr_batch, load_fr_model
from igfiqa.models import create_model

SIZE = 32


class ToyPairs:
    """A PairSet (duck-typed as igfiqa.data.benchmarks.PairSet) over synthetic faces."""

    def __init__(self, identities=6, samples=4, *, broken=(), templates=False):
        self.faces = SyntheticFaces(identities, samples, seed=3, image_size=SIZE)
        self.name = "toy"
        self.num_samples = len(self.faces)
        self.sample_names = [
            f"id{i:02d}/img{j}.png" for i in range(identities) for j in range(samples)
        ]
        self.broken = set(broken)
        labels = self.faces.labels
        rendered = [self.faces.render(*self.faces.locate(i)) for i in range(self.num_samples)]
        self.images = [image for image, _ in rendered]
        self.ground_truth_quality = np.array([quality for _, quality in rendered])
        if templates:  # two templates per identity (samples split in halves), two media each
            self.sample_template = np.arange(self.num_samples) // (samples // 2)
            self.sample_media = np.arange(self.num_samples) // 1 % 2 + 2 * self.sample_template
            units = np.arange(self.sample_template.max() + 1)
            unit_label = units // 2
        else:
            self.sample_template = None
            self.sample_media = None
            units = np.arange(self.num_samples)
            unit_label = labels
        i, j = np.triu_indices(len(units), 1)
        self.pairs = np.stack([units[i], units[j]], 1).astype(np.int64)
        self.mated = unit_label[i] == unit_label[j]

    def load_sample(self, index):
        if index in self.broken:
            raise ImageDecodeError(f"{self.sample_names[index]}: truncated file")
        return self.images[index]


def pixel_embed(images: np.ndarray) -> np.ndarray:
    """A deterministic toy FR model: mean-pooled 4x4 colour patches."""
    x = images.astype(np.float32).reshape(len(images), 8, SIZE // 8, 8, SIZE // 8, 3)
    return x.mean(axis=(2, 4)).reshape(len(images), -1) - 100.0


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny networks run fastest single-threaded on a shared CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_model_path(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = create_model("r18", width=0.125, input_size=SIZE, num_features=16)
    model.eval()
    path = tmp_path_factory.mktemp("models") / "tiny_backbone.pth"
    torch.save(model.state_dict(), path)
    return path


def test_pair_similarity_is_cosine():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(10, 5)).astype(np.float32)
    pairs = rng.integers(0, 10, (50, 2))
    sim = R.pair_similarity(f, pairs, chunk=7)
    for (a, b), s in zip(pairs, sim, strict=True):
        want = f[a] @ f[b] / np.linalg.norm(f[a]) / np.linalg.norm(f[b])
        assert s == pytest.approx(want, abs=1e-5)


def test_blocked_pair_similarity_equals_gathered():
    rng = np.random.default_rng(1)
    f = rng.normal(size=(37, 6)).astype(np.float32)
    f[5] = np.nan  # a failed sample stays NaN in both methods
    pairs = rng.integers(0, 37, (900, 2))
    gathered = R.pair_similarity(f, pairs, chunk=64)
    blocked = R.pair_similarity(f, pairs, block=8)
    assert np.allclose(gathered, blocked, atol=1e-6, equal_nan=True)
    assert np.isnan(blocked[np.any(pairs == 5, axis=1)]).all()


def test_flip_recipes():
    e = np.array([[3.0, 4.0]], np.float32)
    ef = np.array([[0.0, 2.0]], np.float32)
    assert np.allclose(R.image_features(e, ef, "sum"), [[3, 6]])
    assert np.allclose(R.image_features(e, ef, "concat"), [[0.6, 0.8, 0.0, 1.0]])
    # concat: cosine = mean of the two cosines
    a, af = np.array([[1.0, 0.0]]), np.array([[1.0, 1.0]])
    b, bf = np.array([[0.0, 1.0]]), np.array([[1.0, 1.0]])
    fa, fb = R.image_features(a, af, "concat"), R.image_features(b, bf, "concat")
    sim = R.pair_similarity(np.concatenate([fa, fb]), np.array([[0, 1]]))
    assert sim[0] == pytest.approx((0.0 + 1.0) / 2)
    with pytest.raises(ConfigError):
        R.image_features(e, None, "concat")


def test_template_features_ijb_recipe():
    f = np.array([[1, 0], [3, 0], [0, 4], [5, 5], [np.nan, np.nan]], np.float32)
    template = np.array([0, 0, 0, 1, 1])
    media = np.array([7, 7, 8, 9, 9])
    t = R.template_features(f, template, media)
    # template 0: media 7 mean (2, 0) + media 8 mean (0, 4); template 1: the failed image is ignored
    assert np.allclose(t, [[2, 4], [5, 5]])


def test_quality_csv_matching(tmp_path):
    names = ["a/x.jpg", "b/y.jpg"]
    path = tmp_path / "q.csv"
    path.write_text("path,quality,error\n/data/set/a/x.jpg,0.5,\nb/y.jpg,0.25,\n")
    assert np.allclose(read_quality_csv(path, names), [0.5, 0.25])
    path.write_text("path,quality,error\n/data/set/a/x.jpg,0.5,\nb/y.jpg,,decode failed\n")
    with pytest.raises(DataError, match=r"1 of 2 samples.*b/y.jpg"):
        read_quality_csv(path, names)
    path.write_text("p/a/x.jpg,1\nq/a/x.jpg,2\nb/y.jpg,3\n")
    with pytest.raises(DataError, match="several rows"):
        read_quality_csv(path, names)


def test_quality_csv_refuses_bad_encoding_non_finite_values_and_conflicting_rows(tmp_path):
    names = ["a.jpg", "b.jpg"]
    path = tmp_path / "q.csv"
    path.write_bytes(b"\x00\xff,1\n")
    with pytest.raises(DataError, match=r"q\.csv \(quality CSV\): not UTF-8"):
        read_quality_csv(path, names)
    for bad in ("nan", "inf", "-inf"):
        path.write_text(f"a.jpg,0.5\nb.jpg,{bad}\n")
        with pytest.raises(DataError, match=rf"q\.csv:2: quality '{bad}' is not a finite number"):
            read_quality_csv(path, names)
    path.write_text("a.jpg,0.5\nb.jpg,0.2\na.jpg,0.7\n")
    with pytest.raises(
        DataError, match=r"q\.csv:3: 'a.jpg' has quality 0.7 here but 0.5 on line 1"
    ):
        read_quality_csv(path, names)
    path.write_text("a.jpg,0.5\nb.jpg,0.2\na.jpg,0.5\n")  # an identical repeat is harmless
    assert np.allclose(read_quality_csv(path, names), [0.5, 0.2])
    with pytest.raises(DataError, match="is a directory"):
        read_quality_csv(tmp_path, names)


def test_parse_quality_specs(tmp_path):
    assert parse_quality_spec("random:7").options == {"seed": "7"}
    assert parse_quality_spec("mine=random").name == "mine"
    s = parse_quality_spec("serfiq:m=5,p=0.3")
    assert s.kind == "serfiq" and s.options == {"m": "5", "p": "0.3"}
    with pytest.raises(ConfigError):
        parse_quality_spec("serfiq:k=1")
    with pytest.raises(ConfigError, match="neither one of"):
        parse_quality_spec(str(tmp_path / "nothing.pth"))


def test_a_new_quality_method_is_one_class_and_one_registration(monkeypatch, tmp_path):
    from igfiqa.evaluation import quality

    monkeypatch.setattr(quality.base, "QUALITY_METHODS", quality.QUALITY_METHODS.copy())

    @quality.register
    class Brightness(quality.QualityMethod):
        kind = "brightness"
        needs_images = True

        @classmethod
        def parse(cls, rest, name):
            return cls(name or "brightness")

        def image_function(self, model, device):
            return lambda images: images.reshape(len(images), -1).mean(axis=1)

    pairs = ToyPairs()
    out = R.BenchmarkRunner(pairs).run(
        load_fr_model(pixel_embed, name="pixels"), ["brightness"], fmrs=(0.1,)
    )
    expected = [pairs.load_sample(i).mean() for i in range(pairs.num_samples)]
    assert np.allclose(out.qualities["brightness"], expected)


def test_serfiq_stable_embeddings_give_quality_one_and_noise_lowers_it(tiny_model_path):
    from igfiqa.inference import load_model

    network = load_model(tiny_model_path).runner.network
    batch = np.random.default_rng(0).uniform(-1, 1, (3, 3, SIZE, SIZE)).astype(np.float32)
    q = serfiq_quality(network, batch, m=6, p=0.5, rescale=False)
    assert q.shape == (3,) and np.all((q > 0) & (q < 1))
    # with fc weights zero the dropout cannot change the embedding: 2 * sigmoid(0) = 1, and the
    # released code's rescaling maps it to 1 / (1 + e^(-130 * 0.12))
    saved = network.fc.weight.detach().clone()
    with torch.no_grad():
        network.fc.weight.zero_()
    try:
        assert np.allclose(serfiq_quality(network, batch, m=4, p=0.5, rescale=False), 1.0)
        rescaled = serfiq_quality(network, batch, m=4, p=0.5)
        assert np.allclose(rescaled, 1 / (1 + np.exp(-130 * 0.12)))
    finally:
        with torch.no_grad():
            network.fc.weight.copy_(saved)


def test_serfiq_matches_formula_on_explicit_embeddings(tiny_model_path):
    from igfiqa.inference import load_model

    network = load_model(tiny_model_path).runner.network
    batch = np.random.default_rng(1).uniform(-1, 1, (2, 3, SIZE, SIZE)).astype(np.float32)
    m, p = 5, 0.4
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        x = torch.from_numpy(batch)
        h = network.prelu(network.bn1(network.conv1(x)))
        h = network.layer4(network.layer3(network.layer2(network.layer1(h))))
        h = torch.flatten(network.bn2(h), 1)
        # one set of m masks, shared by every image (a score does not depend on its batch)
        masks = (torch.rand((m, h.shape[1]), generator=gen) >= p).float() / (1 - p)
        embs = []
        for i in range(m):
            e = network.features(network.fc(h * masks[i]))
            embs.append((e / e.norm(dim=1, keepdim=True)).numpy())
    for b in range(2):
        pairs = [(i, j) for i in range(m) for j in range(i + 1, m)]
        d = np.mean([np.linalg.norm(embs[i][b] - embs[j][b]) for i, j in pairs])
        s = 2 / (1 + np.exp(d))
        got = serfiq_quality(network, batch, m=m, p=p, seed=3, rescale=False)[b]
        assert got == pytest.approx(s, rel=1e-4)
        rescaled = serfiq_quality(network, batch, m=m, p=p, seed=3)[b]
        assert rescaled == pytest.approx(1 / (1 + np.exp(-130 * (s - 0.88))), rel=1e-3)
        alone = serfiq_quality(network, batch[b : b + 1], m=m, p=p, seed=3, rescale=False)[0]
        assert alone == pytest.approx(got, rel=1e-5)


def test_runner_caches_and_adds_methods_cheaply(tmp_path):
    pairset = ToyPairs()
    calls = {"fr": 0}

    def fr(images):
        calls["fr"] += len(images)
        return pixel_embed(images)

    runner = R.BenchmarkRunner(pairset, cache_dir=tmp_path / "cache", batch_size=8, workers=0)
    model = load_fr_model(fr, name="pixels")
    out = runner.run(model, ["random:1", "oracle"], fmrs=(0.01,))
    first = calls["fr"]
    assert first == pairset.num_samples + 1  # every image once, plus one probe of the width
    expected = R.pair_similarity(
        pixel_embed(np.stack([pairset.load_sample(i) for i in range(24)])), pairset.pairs
    )
    assert np.allclose(out.similarity, expected, atol=1e-6)
    assert out.result.fr_model == "pixels" and out.result.methods == [
        "random (seed 1)",
        "ground truth (generator)",
    ]
    # a fresh runner with one more method: the FR model is not run again
    again = R.BenchmarkRunner(pairset, cache_dir=tmp_path / "cache", batch_size=8, workers=0)
    out2 = again.run(model, ["random:1", "oracle", "embedding-norm"], fmrs=(0.01,))
    assert calls["fr"] == first
    assert np.array_equal(out2.similarity, out.similarity)
    norms = np.linalg.norm(
        pixel_embed(np.stack([pairset.load_sample(i) for i in range(24)])), axis=1
    )
    assert np.allclose(out2.qualities["embedding norm"], norms, rtol=1e-5)


def test_runner_with_igfiqa_model_torchscript_and_failures(tmp_path, tiny_model_path):
    pairset = ToyPairs(broken={5})
    runner = R.BenchmarkRunner(pairset, cache_dir=tmp_path / "cache", batch_size=8, workers=2)
    out = runner.run(
        str(tiny_model_path),
        [f"model:{tiny_model_path}", "serfiq:m=3", "embedding-norm"],
        fmrs=(0.01, 1e-4),
    )
    result = out.result
    assert set(out.failed_samples) == {5}
    touching = np.any(pairset.pairs == 5, axis=1).sum()
    assert result.excluded_pairs == touching
    assert any("failed to load" in w for w in result.warnings)
    assert any("below this benchmark's resolution" in w for w in result.warnings)
    assert result.fr_model == "tiny_backbone.pth"
    # the igfiqa model's quality equals its score() on the same images
    from igfiqa.inference import load_model

    model = load_model(tiny_model_path)
    direct = model.score(np.stack([pairset.load_sample(i) for i in (0, 1, 2)]))
    assert np.allclose(out.qualities["tiny_backbone.pth"][:3], direct, atol=1e-5)
    # TorchScript export of the same network gives the same comparison scores
    network = model.runner.network

    class Embed(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            return self.net.embed(x)

    traced = torch.jit.trace(Embed(network).eval(), torch.zeros(1, 3, SIZE, SIZE))
    ts_path = tmp_path / "fr.pt"
    traced.save(str(ts_path))
    fr = load_fr_model(str(ts_path), input_size=SIZE)
    ts_out = R.BenchmarkRunner(pairset, batch_size=8, workers=0).run(fr, ["random"], fmrs=(0.01,))
    valid = np.isfinite(out.similarity)
    assert np.allclose(ts_out.similarity[valid], out.similarity[valid], atol=1e-4)
    written = write_report([result, ts_out.result], tmp_path / "report")
    assert (tmp_path / "report" / "results.md").exists() and len(written["plots"]) == 12
    summary = json.loads((tmp_path / "report" / "results.json").read_text())
    assert summary[0]["fr_model"] == "tiny_backbone.pth"


def test_template_benchmark_uses_template_min_quality(tmp_path):
    pairset = ToyPairs(identities=4, samples=4, templates=True)
    runner = R.BenchmarkRunner(pairset, batch_size=16, workers=0)
    out = runner.run(load_fr_model(pixel_embed, name="pixels"), ["oracle"], fmrs=(0.1,))
    feats = pixel_embed(np.stack([pairset.load_sample(i) for i in range(16)]))
    flipped = pixel_embed(np.stack([pairset.load_sample(i)[:, ::-1] for i in range(16)]))
    tf = R.template_features(feats + flipped, pairset.sample_template, pairset.sample_media)
    assert np.allclose(out.similarity, R.pair_similarity(tf, pairset.pairs), atol=1e-6)
    assert "flip sum" in out.result.fr_model
    units = runner.unit_qualities({"q": pairset.ground_truth_quality})["q"]
    assert units[0] == pairset.ground_truth_quality[:2].min()


def test_onnx_fr_model(tmp_path, tiny_model_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from igfiqa.inference import load_model

    network = load_model(tiny_model_path).runner.network

    class Embed(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            return self.net.embed(x)

    path = tmp_path / "fr.onnx"
    torch.onnx.export(
        Embed(network).eval(),
        (torch.zeros(1, 3, SIZE, SIZE),),
        str(path),
        input_names=["input"],
        output_names=["embedding"],
        dynamic_axes={"input": {0: "batch"}, "embedding": {0: "batch"}},
        dynamo=False,
    )
    fr = load_fr_model(str(path))
    images = np.stack([ToyPairs().load_sample(i) for i in range(3)])
    want = network.embed(torch.from_numpy(fr_batch(images, SIZE))).detach().numpy()
    assert fr.input_size == SIZE
    assert np.allclose(fr.embed(images), want, atol=1e-4)


def test_a_cache_file_announcing_a_huge_array_is_recomputed_not_allocated(tmp_path):
    import io
    import zipfile

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f8", "fortran_order": False, "shape": (10**12,)}
    )  # 8 TB announced, 16 bytes present
    with zipfile.ZipFile(tmp_path / "crafted.npz", "w") as archive:
        archive.writestr("embedding.npy", header.getvalue() + b"\0" * 16)
    assert R._load_npz(tmp_path / "crafted.npz") is None
    np.savez(tmp_path / "fine.npz", embedding=np.ones((2, 3), np.float32))
    assert R._load_npz(tmp_path / "fine.npz")["embedding"].shape == (2, 3)


def test_replacing_the_images_of_a_folder_benchmark_changes_its_cache_key(tmp_path):
    """Issue 25, item 7: every image of a folder benchmark replaced under the same names (their
    mtime even set back) reused the stale embeddings. The key now covers every file the reader
    reads, at any depth, with its ctime; a cache inside the benchmark folder does not change it."""
    import os
    import time

    from igfiqa.data.benchmarks import open_benchmark
    from igfiqa.data.convert import write_identity_folder
    from igfiqa.data.datasets import open_training_dataset

    root = tmp_path / "bench"
    first = "synthetic:identities=4,samples=3,seed=1,image_size=32"
    write_identity_folder(open_training_dataset(first, hflip=False), root)
    cache = root / "cache"  # inside the benchmark: must not invalidate it
    calls = {"fr": 0}

    def fr(images):
        calls["fr"] += len(images)
        return pixel_embed(images)

    model = load_fr_model(fr, name="pixels")

    def run(cache_dir):
        pairset = open_benchmark("folder", root)
        runner = R.BenchmarkRunner(
            pairset, source=root, cache_dir=cache_dir, batch_size=8, workers=0
        )
        return runner.key, runner.run(model, ["random:1"], fmrs=(0.1,)).similarity

    key, similarity = run(cache)
    computed = calls["fr"]
    assert run(cache)[0] == key and calls["fr"] == computed  # unchanged: served from the cache
    images = sorted(root.glob("*/*.png"))
    stats = {p: p.stat() for p in images}
    time.sleep(0.05)  # beyond any file system's timestamp granularity
    write_identity_folder(
        open_training_dataset(first.replace("seed=1", "seed=9"), hflip=False), root
    )
    assert sorted(root.glob("*/*.png")) == images
    for p in images:
        os.utime(p, ns=(stats[p].st_atime_ns, stats[p].st_mtime_ns))
    new_key, stale_or_not = run(cache)
    fresh = run(None)[1]
    assert new_key != key
    assert np.allclose(stale_or_not, fresh) and not np.allclose(stale_or_not, similarity)


def test_benchmark_key_covers_every_listed_file(tmp_path):
    """A reader's ``files`` (landmark and pair lists, images in subfolders) all enter the key."""
    import time

    from igfiqa.data.benchmarks import PairSet

    files = [tmp_path / "meta" / "landmarks.txt", tmp_path / "crops" / "a" / "0.jpg"]
    for path in files:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    pairset = PairSet(
        "toy", ["0.jpg", "1.jpg"], np.array([[0, 1]]), np.array([True]), None, files=files
    )
    key = R.benchmark_key(pairset, tmp_path)
    assert R.benchmark_key(pairset, tmp_path) == key
    for path in files:
        time.sleep(0.05)
        path.write_text("y")  # same size
        assert R.benchmark_key(pairset, tmp_path) != key
        key = R.benchmark_key(pairset, tmp_path)


def test_runner_says_when_a_reader_sampled_the_pairs():
    """Item 11: a capped folder / synthetic benchmark is logged as a sample, with its seed."""
    from igfiqa.data.benchmarks import open_benchmark

    spec = "synthetic:identities=6,samples=4,seed=1,image_size=32"
    pairset = open_benchmark("synthetic", spec, max_mated=10, max_nonmated=20, seed=5)
    messages: list[str] = []
    R.BenchmarkRunner(pairset, source=spec, log=messages.append)
    assert messages == [
        "synthetic: 10 of 36 mated pairs, a uniform random sample (seed 5; max_mated caps them)",
        "synthetic: 20 of 240 non-mated pairs, a uniform random sample (seed 5; max_nonmated caps "
        "them)",
    ]
    messages.clear()
    R.BenchmarkRunner(open_benchmark("synthetic", spec), source=spec, log=messages.append)
    assert messages == []
