"""igfiqa study: paired differences from the per-seed tables, resume, the output folder's rules."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from igfiqa.errors import ConfigError
from igfiqa.experiments import run_study, study_settings
from igfiqa.experiments.variants import BASELINE, INDEPENDENT_FR


def test_settings_add_both_fr_models_and_need_known_variants() -> None:
    # the two FR models every comparison needs are added, as --help says, not demanded
    assert study_settings(variants=("crfiqa", "ig_distance")).variants == (
        "fr_only",
        "crfiqa",
        "ig_distance",
    )
    assert study_settings(variants=("ig_distance",)).variants == (
        "crfiqa",
        "fr_only",
        "ig_distance",
    )
    with pytest.raises(ConfigError, match="unknown study variant"):
        study_settings(variants=("crfiqa", "fr_only", "magic"))
    with pytest.raises(ConfigError, match="seeds"):
        study_settings(seeds=0)


TINY = dict(
    seeds=2,
    variants=(BASELINE, "crfiqa_official", "ig_distance", "ig_official", INDEPENDENT_FR),
    train_identities=12,
    samples_per_identity=4,
    test_identities=8,
    test_samples_per_identity=3,
    image_size=32,
    batch_size=16,
    epochs=2,
    real_photos=False,
)


@pytest.mark.slow  # three tiny studies' worth of training: ~20 s on 2 cores
def test_tiny_study_reports_paired_differences_and_resumes_where_it_stopped(tmp_path) -> None:
    out = tmp_path / "study"
    logs: list[str] = []
    summary = run_study(out, study_settings(**TINY), log=logs.append)
    for name in ("report.md", "study.json", "forest.png", "seed_0/seed.json", "seed_1/seed.json"):
        assert (out / name).is_file(), name
    # the EDC plots are the ordinary evaluation report's, of the first seed, one per FR model
    plots = [f for f in summary["files"] if "/edc_" in f and f.endswith(".png")]
    assert len(plots) == 2 * 2 and all(f.startswith("seed_0/evaluation/") for f in plots)
    assert (
        all((out / f).is_file() for f in plots) and (out / "seed_1/evaluation/results.md").is_file()
    )
    assert json.loads((out / "study.json").read_text())["cells"] == summary["cells"]
    report = (out / "report.md").read_text()
    assert "IG-FIQA distance (paper)" in report and "paired diff" in report

    # The paired difference is the mean over seeds of (variant - CR-FIQA) in the per-seed tables.
    cell = summary["cells"][0]
    for fr_key in ("crfiqa", "fr_only"):
        diffs = []
        for seed in (0, 1):
            table = json.loads((out / f"seed_{seed}" / "seed.json").read_text())["fr_models"][
                fr_key
            ]
            diffs.append(table["ig_distance"][cell] - table[BASELINE][cell])
        stats = summary["paired_difference"][fr_key]["ig_distance"][cell]
        assert stats["mean"] == pytest.approx(np.mean(diffs))
        assert stats["better_seeds"] == sum(d < 0 for d in diffs)
    # IG-FIQA on the official training is also compared with the official CR-FIQA run
    own = summary["paired_difference_own_baseline"]["ig_official"]
    assert own["baseline"] == "crfiqa_official"
    table = json.loads((out / "seed_0" / "seed.json").read_text())["fr_models"]["crfiqa"]
    first = table["ig_official"][cell] - table["crfiqa_official"][cell]
    table = json.loads((out / "seed_1" / "seed.json").read_text())["fr_models"]["crfiqa"]
    second = table["ig_official"][cell] - table["crfiqa_official"][cell]
    assert own["crfiqa"]["mean"] == pytest.approx((first + second) / 2)
    assert "its baseline" in report
    # guidance weights are reported for the guided variant only
    assert "guidance_weight_low_variance" in summary["per_variant"]["ig_distance"]
    assert "guidance_weight_low_variance" not in summary["per_variant"][BASELINE]
    epochs = json.loads((out / "seed_0" / "ig_distance" / "unit.json").read_text())["epochs"]
    assert [row["epoch"] for row in epochs] == [1.0, 2.0]

    # Everything done is reused: a second call trains nothing.
    logs.clear()
    run_study(out, study_settings(**TINY), log=logs.append)
    assert logs == ["seed 0: done earlier", "seed 1: done earlier"]

    # A unit killed after its first epoch resumes from its checkpoint and ends where it would have.
    unit_dir = out / "seed_1" / "ig_distance"
    before = json.loads((unit_dir / "unit.json").read_text())
    (unit_dir / "unit.json").unlink()
    (out / "seed_1" / "seed.json").unlink()
    sorted((unit_dir / "checkpoints").glob("step_*.pt"))[-1].unlink()
    logs.clear()
    again = run_study(out, study_settings(**TINY), log=logs.append)
    assert any(
        "training IG-FIQA distance (paper): 2 epochs, continuing from step" in x for x in logs
    )
    assert not any("training CR-FIQA (igfiqa baseline)" in line for line in logs)
    after = json.loads((unit_dir / "unit.json").read_text())
    assert after["spearman_ground_truth"] == before["spearman_ground_truth"]
    assert after["epochs"] == before["epochs"]
    assert again["paired_difference"] == summary["paired_difference"]

    # Other settings in the same folder are refused, not mixed.
    with pytest.raises(ConfigError, match="other settings"):
        run_study(out, study_settings(**{**TINY, "epochs": 3}), log=logs.append)


def test_cli_lists_variants_and_refuses_a_file_as_out(tmp_path) -> None:
    from igfiqa.cli import app

    runner = CliRunner()
    listed = runner.invoke(app, ["study", "--list-variants"])
    assert listed.exit_code == 0 and "ig_bn_concat" in listed.output
    afile = tmp_path / "afile"
    afile.write_text("x")
    refused = runner.invoke(app, ["study", "--out", str(afile), "--no-real-photos"])
    assert isinstance(refused.exception, ConfigError) and "is not a folder" in str(
        refused.exception
    )


def test_a_budget_sets_fixed_epochs_by_the_demo_cost_model() -> None:
    from igfiqa.experiments.settings import SECONDS_PER_IMAGE_PASS

    settings = study_settings(variants=(BASELINE, "ig_distance", INDEPENDENT_FR), seeds=2)
    # crfiqa and fr_only train one stream, ig_distance two: 4 passes over 4000 images per seed
    per_epoch = 2 * 4 * 4000 * SECONDS_PER_IMAGE_PASS
    assert settings.epochs_for_budget(per_epoch * 5 / 60) == 5
    assert settings.epochs_for_budget(per_epoch * 5.9 / 60) == 5
    assert settings.epochs_for_budget(0.1) == 1


# ----------------------------------------------------------------- one writer, never a user's file
@pytest.fixture
def live_pid():
    """The PID of a live process that is not this one (the holder of a simulated lock)."""
    import subprocess

    sleeper = subprocess.Popen(["sleep", "3600"])  # lives until killed below
    yield sleeper.pid
    sleeper.kill()
    sleeper.wait()


def _write_lock(folder, pid) -> None:
    import socket

    folder.mkdir(parents=True, exist_ok=True)
    data = {"pid": pid, "host": socket.gethostname(), "since": 0.0}
    (folder / ".igfiqa.lock").write_text(json.dumps(data))


def _unit_without_checkpoint(folder) -> None:
    """A unit folder as a training run leaves it before its first checkpoint."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text("model: {}\n")
    (folder / "metrics.jsonl").write_text('{"step": 1}\n')


def _snapshot(folder) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def _cli_error(monkeypatch, capsys, *args) -> tuple[int, str]:
    import sys

    from igfiqa.cli import main

    monkeypatch.setattr(sys, "argv", ["igfiqa", *args])
    with pytest.raises(SystemExit) as exited:
        main()
    return exited.value.code, capsys.readouterr().err


TINY_CLI = ["--seeds", "2", "--variants", "crfiqa,fr_only", "--identities", "12", "--samples",
            "4", "--test-identities", "8", "--test-samples", "3", "--image-size", "32",
            "--batch-size", "16", "--epochs", "2", "--no-real-photos"]  # fmt: skip
TINY_PAIR = {**TINY, "variants": (BASELINE, INDEPENDENT_FR)}  # what TINY_CLI asks


def test_a_second_study_on_a_held_folder_is_refused(tmp_path, monkeypatch, capsys, live_pid):
    out = tmp_path / "s"
    unit = out / "seed_0" / BASELINE
    _unit_without_checkpoint(unit)  # the first study trains here, no checkpoint yet
    _write_lock(unit, live_pid)
    _write_lock(out, live_pid)
    before = _snapshot(out)
    with pytest.raises(ConfigError, match=rf"in use by another igfiqa process \(PID {live_pid}"):
        run_study(out, study_settings(**TINY_PAIR), log=lambda _: None)
    code, err = _cli_error(monkeypatch, capsys, "study", "--out", str(out), *TINY_CLI)
    assert code == 2 and f"PID {live_pid}" in err and len(err.strip().splitlines()) == 1
    assert _snapshot(out) == before  # the first study's unit and locks untouched


def test_a_unit_folder_another_process_trains_in_is_not_deleted(tmp_path, live_pid) -> None:
    out = tmp_path / "s"
    unit = out / "seed_1" / INDEPENDENT_FR
    _unit_without_checkpoint(unit)
    _write_lock(unit, live_pid)  # a trainer of another process, without the study folder's lock
    before = _snapshot(out)
    with pytest.raises(ConfigError, match=rf"PID {live_pid}"):
        run_study(out, study_settings(**TINY_PAIR), log=lambda _: None)
    assert _snapshot(out) == before  # refused before any work: not even settings.json
    assert not (out / ".igfiqa.lock").exists()


def test_a_user_file_in_a_unit_folder_survives_and_the_study_is_refused(
    tmp_path, monkeypatch, capsys
) -> None:
    out = tmp_path / "s"
    unit = out / "seed_0" / BASELINE
    _unit_without_checkpoint(unit)
    (unit / "my.pt").write_bytes(b"my own checkpoint")
    before = _snapshot(out)
    with pytest.raises(ConfigError, match=r"my\.pt was not written by igfiqa.*move it"):
        run_study(out, study_settings(**TINY_PAIR), log=lambda _: None)
    code, err = _cli_error(monkeypatch, capsys, "study", "--out", str(out), *TINY_CLI)
    assert code == 2 and str(unit / "my.pt") in err and len(err.strip().splitlines()) == 1
    assert _snapshot(out) == before


@pytest.mark.parametrize("link", ["seed_0", f"seed_0/{BASELINE}", f"seed_0/{BASELINE}/checkpoints"])
def test_a_symlinked_unit_folder_is_refused_and_its_target_untouched(tmp_path, link) -> None:
    target = tmp_path / "elsewhere"
    _unit_without_checkpoint(target)
    before = _snapshot(target)
    out = tmp_path / "s"
    (out / link).parent.mkdir(parents=True, exist_ok=True)
    (out / link).symlink_to(target, target_is_directory=True)
    with pytest.raises(ConfigError, match="symbolic link"):
        run_study(out, study_settings(**TINY_PAIR), log=lambda _: None)
    assert (out / link).is_symlink() and _snapshot(target) == before


def test_an_interrupted_units_own_files_are_cleared_and_the_lock_released_on_ctrl_c(
    tmp_path, monkeypatch
) -> None:
    import os

    import igfiqa.engine.trainer as trainer

    dead_pid = int(Path("/proc/sys/kernel/pid_max").read_text()) + 1  # never a live process
    out = tmp_path / "s"
    unit = out / "seed_0" / BASELINE
    _unit_without_checkpoint(unit)  # a study killed before the unit's first checkpoint
    _write_lock(unit, dead_pid)
    (unit / ".config.yaml.x1y2z3.tmp").write_text("half")
    _write_lock(out, dead_pid)  # the killed study's lock: taken over
    seen = []

    def interrupted_train(config, *, out_dir, resume, progress, dataset):
        seen.append((out_dir, os.path.lexists(out_dir), resume))
        seen.append(json.loads((out / ".igfiqa.lock").read_text())["pid"])
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "train", interrupted_train)
    with pytest.raises(KeyboardInterrupt):
        run_study(out, study_settings(**TINY_PAIR), log=lambda _: None)
    assert seen == [(unit, False, False), os.getpid()]  # cleared, trained afresh, locked
    assert not (out / ".igfiqa.lock").exists()
