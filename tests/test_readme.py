"""The README's commands exist as written: every `igfiqa` command line names a real (sub)command
and only options that command has; the test command is the one CI runs; cheap commands run."""

import re
import shlex
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

import igfiqa
from igfiqa.cli import app

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def _igfiqa_commands() -> list[list[str]]:
    commands = []
    for block in _blocks("bash"):
        for line in block.splitlines():
            line = line.split(" #", 1)[0].strip()
            if not line or line.startswith("#"):
                continue
            for part in line.split("&&"):
                tokens = shlex.split(part.replace("$", ""))
                if "igfiqa" in tokens:
                    commands.append(tokens[tokens.index("igfiqa") + 1 :])
    return commands


COMMANDS = _igfiqa_commands()


def test_readme_has_the_two_commands_first_and_ci_runs_the_test_command():
    first = _blocks("bash")[0]
    assert "pip install torch==2.13.0" in first and "igfiqa demo" in first
    test_command = "python -m pytest -q"
    assert test_command in first
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert any(line.strip() == test_command for line in ci.splitlines())


def test_readme_mentions_every_command_of_the_cli():
    root = typer.main.get_command(app)
    used = {tokens[0] for tokens in COMMANDS if tokens}
    assert set(root.commands) - {"models"} <= used


@pytest.mark.parametrize("tokens", COMMANDS, ids=[" ".join(t[:3]) for t in COMMANDS])
def test_readme_command_uses_existing_options(tokens):
    command = typer.main.get_command(app)
    rest = list(tokens)
    while hasattr(command, "commands") and rest and not rest[0].startswith("-"):
        name = rest.pop(0)
        assert name in command.commands, f"README uses unknown command {name!r}"
        command = command.commands[name]
    options = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
    for token in rest:
        if token.startswith("-") and token != "-":
            flag = token.split("=", 1)[0]
            assert flag in options, f"`igfiqa {' '.join(tokens)}`: no option {flag}"


def test_readme_python_api_names_exist():
    for block in _blocks("python"):
        for name in re.findall(r"igfiqa\.(\w+)", block):
            assert hasattr(igfiqa, name), name


def test_readme_print_config_command_runs():
    args = "train --preset casia_r50 --set method.guidance.statistic=similarity --print-config"
    result = CliRunner().invoke(app, args.split())
    assert result.exit_code == 0, result.output
    assert "statistic: similarity" in result.output
    listing = CliRunner().invoke(app, ["train", "--list-presets"])
    for preset in ("casia_r50", "ms1mv2_r100", "synthetic_demo", "casia_r50_crfiqa"):
        assert preset in listing.output
