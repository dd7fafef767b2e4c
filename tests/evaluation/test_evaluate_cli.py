"""``igfiqa evaluate`` end to end on a tiny synthetic benchmark, and its user errors."""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from igfiqa.cli import app
from igfiqa.cli.evaluate import parse_benchmark
from igfiqa.errors import ConfigError, DataError
from igfiqa.models import create_model

SPEC = "synthetic:identities=5,samples=3,image_size=32,seed=2"


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def backbone(tmp_path_factory):
    torch.manual_seed(1)
    model = create_model("r18", width=0.125, input_size=32, num_features=16).eval()
    path = tmp_path_factory.mktemp("m") / "tiny_backbone.pth"
    torch.save(model.state_dict(), path)
    return path


def test_parse_benchmark():
    assert parse_benchmark("lfw:/data/lfw.bin") == ("lfw", "auto", "/data/lfw.bin")
    assert parse_benchmark("bin:/data/agedb_30.bin") == ("agedb_30", "bin", "/data/agedb_30.bin")
    assert parse_benchmark("c=ijbc:/d/IJBC") == ("c", "ijbc", "/d/IJBC")
    assert parse_benchmark(SPEC) == ("synthetic", "synthetic", SPEC)
    with pytest.raises(ConfigError):
        parse_benchmark("/data/lfw.bin")


def test_evaluate_cli_end_to_end(tmp_path, backbone):
    from igfiqa.data.benchmarks import open_benchmark

    names = open_benchmark("synthetic", SPEC).sample_names
    scores = tmp_path / "ext.csv"
    with scores.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "quality"])
        for i, name in enumerate(names):
            writer.writerow([name, np.sin(i)])
    out = tmp_path / "out"
    args = ["evaluate", "--benchmark", SPEC, "--fr-model", str(backbone), "--out", str(out)]
    args += ["-q", "random:3", "-q", "oracle", "-q", f"ext=csv:{scores}", "-q", f"model:{backbone}"]
    args += ["--fmr", "0.01", "--limit", "0.2", "--limit", "0.3", "--workers", "0"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "results.json").read_text())
    assert summary[0]["fr_model"] == "tiny_backbone.pth"
    assert summary[0]["methods"] == [
        "random (seed 3)",
        "ground truth (generator)",
        "ext",
        "tiny_backbone.pth",
    ]
    assert (out / "edc_synthetic__tiny_backbone.pth__fmr1e-02.svg").exists()
    assert (out / "erc_synthetic__tiny_backbone.pth__fmr1e-02.png").exists()
    assert any((out / "cache").rglob("embeddings-*.npz"))
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert {r["curve"] for r in rows} >= {"ext", "oracle (comparison level)", "theoretical best"}
    assert "EDC (fixed threshold" in (out / "results.md").read_text()

    # a CSV missing samples is a clear user error naming them
    scores.write_text("path,quality\n" + f"{names[0]},0.5\n")
    bad = CliRunner().invoke(app, [*args[:7], "-q", f"csv:{scores}", "--fmr", "0.01"])
    assert isinstance(bad.exception, DataError)
    assert names[1] in str(bad.exception)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--fmr", "1.5"], r"--fmr must lie in \(0, 1\)"),
        (["--fnmr", "0"], r"--fnmr must lie in \(0, 1\)"),
        (["--bootstrap", "5"], r"--bootstrap needs 0 \(off\) or at least 20"),
        (["--limit", "0"], r"--limit must lie in \(0, 1\]"),
        (["--benchmark", SPEC], "given more than once"),
    ],
)
def test_bad_options_are_refused_before_any_embedding(tmp_path, backbone, extra, message):
    out = tmp_path / "out"
    args = ["evaluate", "-b", SPEC, "-f", str(backbone), "-q", "random", "--out", str(out), *extra]
    result = CliRunner().invoke(app, args)
    assert isinstance(result.exception, ConfigError), result.output
    assert re.search(message, str(result.exception))
    assert not out.exists()  # refused before anything was computed or written


def test_negative_workers_and_a_file_as_out_are_usage_errors(tmp_path, backbone):
    args = ["evaluate", "-b", SPEC, "-f", str(backbone), "-q", "random"]
    negative = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "o"), "--workers", "-3"])
    assert negative.exit_code == 2 and "--workers" in negative.output
    afile = tmp_path / "afile"
    afile.write_text("x")
    as_file = CliRunner().invoke(app, [*args, "--out", str(afile)])
    assert isinstance(as_file.exception, ConfigError)
    assert "exists and is not a folder" in str(as_file.exception)


def test_resized_benchmark_images_are_reported(tmp_path, backbone):
    spec = "synthetic:identities=4,samples=3,image_size=40,seed=2"
    out = tmp_path / "out"
    args = ["evaluate", "-b", spec, "-f", str(backbone), "-q", "random", "--out", str(out)]
    result = CliRunner().invoke(app, [*args, "--fmr", "0.1", "--workers", "0", "--no-plots"])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "results.json").read_text())
    assert any("40x40 were resized to 32x32" in w for w in summary[0]["warnings"])


def test_evaluate_cli_paper_outputs(tmp_path, backbone):
    """--fnmr, --fm-edc and --bootstrap reach every output; the table prints LaTeX too."""
    out = tmp_path / "out"
    args = ["evaluate", "-b", SPEC, "-b", f"second={SPEC.replace('seed=2', 'seed=3')}"]
    args += ["-f", str(backbone), "-q", "random:3", "-q", "ground-truth", "--out", str(out)]
    args += ["--fmr", "0.05", "--fnmr", "0.2", "--fm-edc", "--bootstrap", "20", "--workers", "0"]
    result = CliRunner().invoke(app, [*args, "--limit", "0.3"])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "results.json").read_text())
    assert summary[0]["bootstrap"]["unit"] == "identity"  # the synthetic set has identities
    assert summary[0]["bootstrap"]["resamples"] == 20
    assert summary[0]["fnmrs"][0]["target_fnmr"] == 0.2
    curve = summary[0]["fnmrs"][0]["curves"][0]
    assert "pauc@0.3_ci95" in curve and "fm_pauc@0.3" in curve
    assert summary[0]["methods"] == ["random (seed 3)", "ground truth (generator)"]
    for name in (
        "results.tex",
        "paper_table.tex",
        "edc_synthetic__tiny_backbone.pth__fnmr2e-01.png",
        "fmedc_synthetic__tiny_backbone.pth__fmr5e-02.svg",
    ):
        assert (out / name).exists(), name
    paper = (out / "paper_table.md").read_text()
    assert "synthetic | tiny_backbone.pth / second | mean |" in paper
    assert "| FNMR 2e-1 | random (seed 3) |" in paper
