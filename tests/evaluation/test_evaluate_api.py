"""``igfiqa.evaluate(...)``: what ``igfiqa evaluate`` does, from Python (igfiqa.evaluation.api)."""

from __future__ import annotations

import inspect
import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import igfiqa
from igfiqa.cli import app
from igfiqa.errors import ConfigError
from igfiqa.evaluation.api import EvaluationResults
from igfiqa.evaluation.results import DEFAULT_FMRS, DEFAULT_LIMITS
from igfiqa.models import create_model

SPEC = "synthetic:identities=5,samples=3,image_size=32,seed=2"


def pixels(images: np.ndarray) -> np.ndarray:
    """A stand-in FR model: the mean colour of each 4x4 block, as an embedding."""
    n, s = len(images), images.shape[1]
    blocks = images.reshape(n, s // 4, 4, s // 4, 4, 3).mean(axis=(2, 4))
    return blocks.reshape(n, -1).astype(np.float32)


def brightness(images: np.ndarray) -> np.ndarray:
    return images.reshape(len(images), -1).mean(axis=1)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_evaluate_in_memory_with_functions_and_an_opened_benchmark(tmp_path) -> None:
    second = igfiqa.open_benchmark("synthetic", SPEC.replace("seed=2", "seed=3"))
    got = igfiqa.evaluate(
        [f"first={SPEC}", second],
        igfiqa_fr(),  # one FR model need not be a list
        ["random:3", "oracle", brightness],
        fmrs=(0.05,),
        workers=0,
    )
    assert isinstance(got, EvaluationResults) and got.out is None and got.written == {}
    assert len(got) == 2 and [r.benchmark for r in got] == ["first", "synthetic"]
    result = got.result("first")
    assert result.fr_model == "pixels"
    assert result.methods == ["random (seed 3)", "ground truth (generator)", "brightness"]
    assert got.summary()[0] == result.summary()
    assert "EDC (fixed threshold" in got.markdown()
    with pytest.raises(KeyError, match="no result for 'lfw'"):
        got.result("lfw")
    assert not list(tmp_path.iterdir())  # no out, no cache folder: nothing written


def test_the_cli_is_the_library_call(tmp_path) -> None:
    """The same options give the same report through the command line and through Python."""
    torch.manual_seed(1)
    model = create_model("r18", width=0.125, input_size=32, num_features=16).eval()
    backbone = tmp_path / "tiny_backbone.pth"
    torch.save(model.state_dict(), backbone)
    options = ["--fmr", "0.05", "--fnmr", "0.2", "--fm-edc", "--bootstrap", "20", "--workers", "0"]
    args = ["evaluate", "-b", SPEC, "-f", str(backbone), "-q", "random:3", "-q", "ground-truth"]
    cli = CliRunner().invoke(app, [*args, *options, "--no-plots", "--out", str(tmp_path / "cli")])
    assert cli.exit_code == 0, cli.output
    lines: list[str] = []
    got = igfiqa.evaluate(
        SPEC,
        [backbone],
        ["random:3", "ground-truth"],
        tmp_path / "py",
        fmrs=[0.05],
        fnmrs=[0.2],
        fm_edc=True,
        bootstrap=20,
        workers=0,
        plots=False,
        warn=lines.append,
    )
    assert got.out == tmp_path / "py" and (tmp_path / "py" / "cache").is_dir()
    assert {p.name for p in got.written["tables"]} == {
        p.name for p in (tmp_path / "cli").iterdir() if p.suffix in (".md", ".tex", ".csv", ".json")
    }
    for name in ("results.md", "results.csv", "paper_table.md"):
        assert (tmp_path / "py" / name).read_text() == (tmp_path / "cli" / name).read_text(), name

    def numbers(folder):
        summary = json.loads((folder / "results.json").read_text())
        for entry in summary:
            entry["bootstrap"].pop("seconds")  # its run time
        return summary

    assert numbers(tmp_path / "py") == numbers(tmp_path / "cli")
    assert (tmp_path / "py" / "results.md").read_text() == got.markdown()


def test_warnings_go_to_warn_or_become_python_warnings() -> None:
    resized = "synthetic:identities=4,samples=3,image_size=40,seed=2"
    args = (resized, igfiqa_fr(), "random")
    lines: list[str] = []
    igfiqa.evaluate(*args, fmrs=[0.1], workers=0, warn=lines.append)
    assert any(line.startswith("WARNING: ") and "resized to 32x32" in line for line in lines)
    with pytest.warns(UserWarning, match="resized to 32x32"):
        igfiqa.evaluate(*args, fmrs=[0.1], workers=0)


def igfiqa_fr():
    from igfiqa.inference.fr_models import load_fr_model

    return load_fr_model(pixels, name="pixels", input_size=32)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"fmrs": [1.5]}, r"--fmr must lie in \(0, 1\)"),
        ({"limits": [0]}, r"--limit must lie in \(0, 1\]"),
        ({"bootstrap": 5}, r"--bootstrap needs 0 \(off\) or at least 20"),
        ({"flip": "mirror"}, r"--flip must be one of auto, none, concat, sum"),
        ({"pair_quality": "max"}, r"--pair-quality must be one of min, mean, product"),
        ({"erc_rule": "paper"}, r"--erc-rule must be one of crfiqa, iso"),
        ({"benchmarks": []}, "needs at least one benchmark"),
        ({"qualities": ()}, "needs at least one quality method"),
        ({"benchmarks": [SPEC, SPEC]}, "given more than once"),
        ({"benchmarks": 3}, "a benchmark is a NAME:PATH string or an opened benchmark"),
        ({"qualities": ["random", "random"]}, "quality method names repeat"),
    ],
)
def test_bad_options_are_refused_before_anything_is_written(tmp_path, options, message) -> None:
    call = {"benchmarks": SPEC, "fr_models": pixels, "qualities": ["random"], "out": tmp_path / "o"}
    call.update(options)
    with pytest.raises(ConfigError, match=message):
        igfiqa.evaluate(**call)
    assert not (tmp_path / "o").exists()


def test_defaults_are_those_of_the_command_and_of_evaluate_scores() -> None:
    defaults = {
        name: p.default
        for name, p in inspect.signature(igfiqa.evaluate).parameters.items()
        if p.default is not inspect.Parameter.empty
    }
    assert tuple(defaults["fmrs"]) == DEFAULT_FMRS and tuple(defaults["limits"]) == DEFAULT_LIMITS
    command = {p.name: p.default for p in inspect.signature(app_evaluate()).parameters.values()}
    for name in ("fnmrs", "fm_edc", "bootstrap", "bootstrap_seed", "device", "batch_size"):
        assert getattr(command[name], "default", command[name]) in (defaults[name], []), name
    assert list(command["fmrs"].default) == list(defaults["fmrs"])


def app_evaluate():
    from igfiqa.cli.evaluate import evaluate

    return evaluate
