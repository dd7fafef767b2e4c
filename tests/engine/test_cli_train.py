"""``igfiqa train`` on the command line: presets, overrides, errors, a short run and its resume."""

from __future__ import annotations

import importlib.util
import json
import re

import pytest
import yaml
from typer.testing import CliRunner

from igfiqa.cli import app
from igfiqa.errors import ConfigError

from ._tiny import SPEC

TINY = [
    "--set", f"data.source={SPEC}", "--set", "data.batch_size=8", "--set", "data.num_workers=0",
    "--set", "model.input_size=32", "--set", "model.width=0.125", "--set", "model.num_features=16",
    "--set", "verification.sets=[]", "--set", "checkpoint.every_steps=0",
]  # fmt: skip


def test_list_presets_and_print_config() -> None:
    runner = CliRunner()
    listed = runner.invoke(app, ["train", "--list-presets"])
    assert listed.exit_code == 0
    assert "casia_r50_crfiqa" in listed.output and "ms1mv2_r100" in listed.output
    shown = runner.invoke(
        app, ["train", "--preset", "casia_r50", "--set", "train.amp=fp16", "--print-config"]
    )
    assert shown.exit_code == 0
    config = yaml.safe_load(shown.output)
    assert config["train"]["amp"] == "fp16" and config["model"]["name"] == "iresnet50"


def test_bad_override_is_a_config_error() -> None:
    result = CliRunner().invoke(app, ["train", "--preset", "casia_r50", "--set", "optim.lrr=0.1"])
    assert isinstance(result.exception, ConfigError)
    assert "did you mean 'optim.lr'" in str(result.exception)


def test_short_run_then_resume_from_the_command_line(tmp_path) -> None:
    runner = CliRunner()
    run = tmp_path / "run"
    first = runner.invoke(
        app,
        ["train", "--preset", "synthetic_demo_crfiqa", *TINY, "--out", str(run), "--max-steps",
         "2", "--no-progress"],
    )  # fmt: skip
    assert first.exit_code == 0, first.output
    summary = json.loads(first.output[first.output.index("{") :])
    assert summary["step"] == 2 and summary["stopped"] == "max_steps"
    assert (run / "config.yaml").is_file() and (run / "checkpoints" / "step_00000002.pt").is_file()
    # A second plain run into the same folder would overwrite it: refused.
    again = runner.invoke(
        app, ["train", "--preset", "synthetic_demo_crfiqa", *TINY, "--out", str(run)]
    )
    assert isinstance(again.exception, ConfigError) and "--resume" in str(again.exception)
    resumed = runner.invoke(
        app, ["train", "--resume", str(run), "--max-steps", "3", "--no-progress"]
    )
    assert resumed.exit_code == 0, resumed.output
    assert json.loads(resumed.output[resumed.output.index("{") :])["step"] == 3


def test_tensorboard_logging_or_a_clear_message(tmp_path) -> None:
    from igfiqa.engine.trainer import train

    from ._tiny import TensorFaces, tiny_config

    config = tiny_config("logging.tensorboard=true")
    if importlib.util.find_spec("tensorboard") is None:
        with pytest.raises(ConfigError, match=r"TensorBoard is not installed: pip install"):
            train(config, out_dir=tmp_path, max_steps=1, progress=False, dataset=TensorFaces())
    else:
        train(config, out_dir=tmp_path, max_steps=1, progress=False, dataset=TensorFaces())
        assert any((tmp_path / "tensorboard").iterdir())


def test_resume_refuses_a_preset_that_changes_the_recipe(tmp_path) -> None:
    runner = CliRunner()
    run = tmp_path / "run"
    first = runner.invoke(
        app,
        ["train", "--preset", "synthetic_demo_crfiqa", *TINY, "--out", str(run), "--max-steps",
         "1", "--no-progress"],
    )  # fmt: skip
    assert first.exit_code == 0, first.output
    saved = (run / "config.yaml").read_text()
    switched = runner.invoke(
        app, ["train", "--resume", str(run), "--preset", "synthetic_demo", *TINY, "--no-progress"]
    )
    assert isinstance(switched.exception, ConfigError)
    assert "method.guidance" in str(switched.exception)
    assert (run / "config.yaml").read_text() == saved  # untouched


def _run_main(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """The console script (`igfiqa ...`): its exit code, standard output and standard error."""
    import sys

    from igfiqa.cli import main

    monkeypatch.setattr(sys, "argv", ["igfiqa", *args])
    with pytest.raises(SystemExit) as exited:
        main()
    captured = capsys.readouterr()
    return exited.value.code, captured.out, captured.err


@pytest.mark.parametrize(
    ("extra", "env", "expected"),
    [
        (["--set", "optim.lr=.inf"], {}, r"optim\.lr: must be a finite number, not inf"),
        (["--set", "data.num_workers=10000"], {}, r"data\.num_workers: 10000 is more than"),
        (["--set", "model.width=1000"], {}, r"model: iresnet18 with model\.width=1000"),
        ([], {"RANK": "abc"}, r"RANK='abc' is not an integer.*launch with torchrun or unset it"),
        ([], {"RANK": "1"}, r"RANK=1 is set without WORLD_SIZE"),
    ],
)
def test_unusable_settings_exit_2_with_one_line_before_any_work(
    tmp_path, monkeypatch, capsys, extra, env, expected
) -> None:
    """Issue 25 items 8, 9, 12: refused at config load, `error: ...` and exit code 2."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    run = tmp_path / "run"
    code, out, err = _run_main(
        monkeypatch, capsys, "train", "--preset", "synthetic_demo", *TINY, *extra, "--out",
        str(run), "--no-progress",
    )  # fmt: skip
    assert code == 2 and out == ""
    assert err.startswith("error: ") and err.count("\n") <= 3, err
    assert re.search(expected, " ".join(err.split())), err
    assert not run.exists()


def test_the_summary_is_strict_json(tmp_path, monkeypatch, capsys) -> None:
    """Item 8: what `train` prints is JSON without bare NaN / Infinity."""

    def refuse(constant: str):
        raise ValueError(f"not JSON: {constant}")

    code, out, _ = _run_main(
        monkeypatch, capsys, "train", "--preset", "synthetic_demo_crfiqa", *TINY, "--out",
        str(tmp_path / "run"), "--max-steps", "1", "--no-progress",
    )  # fmt: skip
    assert code == 0
    summary = json.loads(out[out.index("{") :], parse_constant=refuse)
    assert summary["step"] == 1


# ------------------------------------------------------ --device and --seed (issue 26 item 5)
def test_seed_and_device_options_set_their_config_fields() -> None:
    """`--seed 3` is `--set train.seed=3` (same resolved config), `--device cpu` likewise; they
    win over the preset; not given, the config's values stand."""
    runner = CliRunner()

    def resolved(*args: str) -> dict:
        shown = runner.invoke(app, ["train", "--preset", "synthetic_demo", *args, "--print-config"])
        assert shown.exit_code == 0, shown.output
        return yaml.safe_load(shown.output)

    by_option = resolved("--seed", "3", "--device", "cpu")
    assert by_option == resolved("--set", "train.seed=3", "--set", "train.device=cpu")
    assert by_option["train"]["seed"] == 3 and by_option["train"]["device"] == "cpu"
    plain = resolved("--set", "train.device=cpu")
    assert plain["train"]["seed"] == 0 and plain["train"]["device"] == "cpu"  # untouched


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--seed", "3", "--set", "train.seed=4"], r"--seed and --set train\.seed=\.\.\. both"),
        (["--device", "cpu", "--set", "train.device=cpu"], r"--device and --set train\.device="),
    ],
)
def test_an_option_and_a_set_of_the_same_field_are_refused(
    tmp_path, monkeypatch, capsys, args, expected
) -> None:
    run = tmp_path / "run"
    code, out, err = _run_main(
        monkeypatch, capsys, "train", "--preset", "synthetic_demo", *TINY, *args, "--out", str(run)
    )
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert err.startswith("error: ") and re.search(expected, err), err
    assert not run.exists()


def test_device_cuda_without_cuda_is_refused_in_one_line(tmp_path, monkeypatch, capsys) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    run = tmp_path / "run"
    code, out, err = _run_main(
        monkeypatch, capsys, "train", "--preset", "synthetic_demo", *TINY, "--device", "cuda",
        "--out", str(run),
    )  # fmt: skip
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert "error: --device cuda: CUDA is not available" in err and "--device cpu" in err
    assert not run.exists()
    wrong = CliRunner().invoke(app, ["train", "--preset", "synthetic_demo", "--device", "gpu"])
    assert wrong.exit_code == 2 and "use auto, cpu, cuda or cuda:N" in wrong.output
