"""One set of command-line conventions across every igfiqa command."""

from __future__ import annotations

import subprocess
import sys
from collections import defaultdict
from typing import Any

import typer.main
from typer.testing import CliRunner

from igfiqa.cli import app


def _commands() -> dict[str, Any]:
    found: dict[str, Any] = {}

    def walk(command: Any, name: str) -> None:
        children = getattr(command, "commands", None)
        if children:
            for child_name, child in children.items():
                walk(child, f"{name} {child_name}".strip())
        else:
            found[name] = command

    walk(typer.main.get_command(app), "")
    return found


def _options(command: Any) -> list[Any]:
    # typer vendors its own click: compare by kind, not by class
    options = [p for p in command.params if p.param_type_name == "option"]
    assert options or not command.params
    return options


def test_no_short_flag_means_two_things() -> None:
    meanings: dict[str, set[str]] = defaultdict(set)
    for command in _commands().values():
        for option in _options(command):
            long = next((o for o in option.opts if o.startswith("--")), option.name)
            long = {"--output": "--out"}.get(
                long, long
            )  # a file or a folder: the output either way
            for flag in option.opts + option.secondary_opts:
                if flag.startswith("-") and not flag.startswith("--"):
                    meanings[flag].add(long)
    clashes = {flag: sorted(longs) for flag, longs in meanings.items() if len(longs) > 1}
    assert not clashes, f"short flags with two meanings: {clashes}"


def test_output_is_dash_o_and_device_defaults_to_auto_everywhere() -> None:
    for name, command in _commands().items():
        for option in _options(command):
            if option.name in ("out", "output"):
                assert "-o" in option.opts, f"igfiqa {name}: {option.opts} has no -o"
            if option.name == "device":
                assert option.default == "auto", (
                    f"igfiqa {name}: --device defaults to {option.default}"
                )


def test_long_running_commands_take_progress_switches() -> None:
    for name in ("demo", "study"):
        options = {o.name: o for o in _options(_commands()[name])}
        assert "--no-progress" in options["progress"].secondary_opts, name


def test_python_dash_m_runs_the_command_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "igfiqa", "--version"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0 and done.stdout.startswith("igfiqa ")


def test_data_inspect_writes_nothing_unless_asked(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    spec = "synthetic:identities=3,samples=2,image_size=24"
    result = CliRunner().invoke(app, ["data", "inspect", spec, "--json"])
    assert result.exit_code == 0, result.output
    assert list(tmp_path.iterdir()) == []


def _igfiqa(*args: object, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "igfiqa", *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
        cwd=cwd,
    )


def test_stdout_carries_only_data_so_pipes_work(tmp_path) -> None:
    """train prints JSON, score CSV or JSON Lines, data inspect --json JSON: nothing else."""
    import csv
    import io
    import json

    spec = "synthetic:identities=3,samples=2,image_size=24"
    trained = _igfiqa(
        "train", "--preset", "synthetic_demo_crfiqa", "--data", spec, "--set",
        "model.input_size=24", "--set", "data.image_size=24", "--set", "data.batch_size=4",
        "--set", "verification.sets=[]", "--max-steps", "2", "--out", tmp_path / "run",
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    summary = json.loads(trained.stdout)
    assert summary["step"] == 2
    image = tmp_path / "face.png"
    from PIL import Image

    Image.new("RGB", (24, 24), (120, 90, 80)).save(image)
    model = summary["checkpoint"]
    scored = _igfiqa("score", model, image)
    rows = list(csv.reader(io.StringIO(scored.stdout)))
    assert rows[0] == ["path", "quality", "error"] and len(rows) == 2
    assert "scored 1 images" in scored.stderr
    lines = _igfiqa("score", model, image, "--format", "jsonl").stdout.splitlines()
    assert [json.loads(line)["path"] for line in lines] == [str(image)]
    inspected = _igfiqa("data", "inspect", spec, "--json")
    assert json.loads(inspected.stdout)["images"] == 6


def test_help_texts_keep_their_square_brackets() -> None:
    """Rich markup would swallow ``[detect]`` in ``igfiqa[detect]``: every help keeps its extras."""
    runner = CliRunner()
    for name in _commands():
        result = runner.invoke(app, [*name.split(), "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, name
        for mangled in ('install "igfiqa"', "install 'igfiqa'", "install igfiqa "):
            assert mangled not in result.output, f"igfiqa {name} --help lost an extra: {mangled}"
