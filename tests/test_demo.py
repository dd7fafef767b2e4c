"""The demo end to end at a tiny scale: report, table, reproducibility, CLI."""

import json
import math

import pytest
from typer.testing import CliRunner

from igfiqa.cli import app
from igfiqa.errors import ConfigError
from igfiqa.experiments import ExperimentStopped, demo_settings, run_demo
from igfiqa.experiments.variants import DEMO_VARIANTS as VARIANTS

TINY = dict(
    train_identities=12,
    samples_per_identity=4,
    test_identities=8,
    test_samples_per_identity=6,
    low_variance_share=0.25,
    image_size=32,
    batch_size=16,
    epochs=1,
)


@pytest.fixture(scope="module")
def tiny_demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    return run_demo(out, demo_settings(**TINY), progress=False, log=lambda _: None)


def test_demo_writes_report_with_every_variant(tiny_demo):
    report = (tiny_demo.out_dir / "report.md").read_text()
    assert "synthetic" in report.lower() and "not from real face images" in report
    for variant in VARIANTS:
        assert variant.label in report
    plots = [f for f in tiny_demo.files if f.endswith(".png")]
    assert plots and all((tiny_demo.out_dir / f).is_file() for f in plots)
    data = json.loads((tiny_demo.out_dir / "demo.json").read_text())
    assert [v["key"] for v in data["variants"]] == [v.key for v in VARIANTS]
    # the tiny held-out set cannot resolve the expected-FNMR check's FMR: the report says so
    assert "What a score costs" in report and "below this benchmark's resolution" in report
    assert data["expected_fnmr"]["error"]


def test_demo_measures_what_it_reports(tiny_demo):
    by_key = {v.key: v for v in tiny_demo.variants}
    # every variant trained the same number of steps (same data, epochs and batch)
    assert len({v.steps for v in tiny_demo.variants}) == 1
    for outcome in tiny_demo.variants:
        assert -1.0 <= outcome.spearman <= 1.0
        for key, value in outcome.pauc.items():
            assert math.isfinite(value), key
    # CR-FIQA has no guidance; the IG-FIQA runs report weights in [0, 1]
    assert by_key["crfiqa"].guidance_weight_low_variance is None
    for key in ("ig_distance", "ig_similarity", "ig_distance_noaug"):
        assert 0.0 <= by_key[key].guidance_weight_low_variance <= 1.0
        assert 0.0 <= by_key[key].guidance_weight_ordinary <= 1.0
    # e0 is an error rate per FMR, and the random-discard reference is exactly 1 when normalised
    assert all(0.0 <= e <= 1.0 for e in tiny_demo.e0.values())
    random_row = tiny_demo.reference_pauc["random (expected)"]
    assert all(v == pytest.approx(1.0) for k, v in random_row.items() if "normalized" in k)


def test_demo_rerun_into_the_same_folder_gives_the_same_table(tiny_demo):  # and its cache
    table = tiny_demo.table()
    again = run_demo(tiny_demo.out_dir, demo_settings(**TINY), progress=False, log=lambda _: None)
    assert again.table() == table


def test_the_length_is_a_number_of_epochs_and_budget_minutes_a_deprecated_alias():
    from igfiqa.experiments.demo import DEFAULT_EPOCHS

    assert demo_settings().resolved_epochs() == DEFAULT_EPOCHS == 6
    assert demo_settings(epochs=3).resolved_epochs() == 3
    with pytest.warns(DeprecationWarning, match="never limited the time"):
        old_default = demo_settings(budget_minutes=6.0)
    # the old default budget trained the same 6 epochs: the default table is unchanged
    assert old_default.resolved_epochs() == DEFAULT_EPOCHS
    with pytest.warns(DeprecationWarning):
        assert demo_settings(budget_minutes=1.0).resolved_epochs() == 1
    with pytest.warns(DeprecationWarning):
        assert demo_settings(budget_minutes=1.0, epochs=4).resolved_epochs() == 4
    record = demo_settings().record()  # what demo.json and demo_settings.json hold
    assert record["epochs"] == 6 and "budget_minutes" not in record


def test_the_cli_trains_what_the_documented_demo_trains(tmp_path, monkeypatch):
    import types

    import typer.main

    import igfiqa.experiments

    command = typer.main.get_command(app).commands["demo"]
    params = {p.name: p for p in command.params}
    assert params["epochs"].default is None and "(default 6)" in params["epochs"].help
    assert "not a time limit" in params["budget_minutes"].help
    seen = []

    def fake_run_demo(out, settings, *, progress, log, resume):
        seen.append((settings.resolved_epochs(), resume))
        return types.SimpleNamespace(table=lambda: "| table |", warnings=[], seconds=1.0)

    monkeypatch.setattr(igfiqa.experiments, "run_demo", fake_run_demo)
    runner = CliRunner()
    result = runner.invoke(app, ["demo", "-o", str(tmp_path), "--no-progress"])
    assert result.exit_code == 0 and "deprecated" not in result.output
    result = runner.invoke(app, ["demo", "-o", str(tmp_path), "--budget-minutes", "1"])
    assert result.exit_code == 0, result.output
    assert "--budget-minutes is deprecated and never limited the time" in result.stderr
    assert "--budget-minutes 1 trains 1 epoch(s) per variant" in result.stderr
    assert "use --epochs 1" in result.stderr
    result = runner.invoke(app, ["demo", "-o", str(tmp_path), "--epochs", "2", "--resume"])
    assert result.exit_code == 0, result.output
    assert seen == [(6, False), (1, False), (2, True)]


def test_bad_settings_name_the_field():
    with pytest.raises(ConfigError, match="demo setting low_variance_share"):
        demo_settings(low_variance_share=1.5)
    with pytest.raises(ConfigError, match="unknown demo variant"):
        demo_settings(variants=("ig_magic",))
    # the FR model's variant every comparison needs is added, as in the study
    assert demo_settings(variants=("ig_distance",)).variants == ("crfiqa", "ig_distance")


def test_cli_demo_prints_the_table(tmp_path):
    args = "demo --identities 10 --samples 3 --test-identities 4 --test-samples 3"
    args += " --batch-size 10 --epochs 1 --no-progress --out"
    result = CliRunner().invoke(app, [*args.split(), str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "| CR-FIQA (baseline)" in result.output
    assert (tmp_path / "report.md").is_file()


def test_quality_relevance_definition():
    from igfiqa.experiments.demo import quality_relevance

    assert quality_relevance(1.0, 0.6) == pytest.approx(0.0)  # no better than random
    assert quality_relevance(0.6, 0.6) == pytest.approx(1.0)  # as good as the oracle
    assert quality_relevance(0.8, 0.6) == pytest.approx(0.5)
    assert math.isnan(quality_relevance(0.9, 1.0))  # no errors: the oracle gains nothing


def test_benchmark_check_by_hand():
    import numpy as np

    from igfiqa.experiments.demo import benchmark_check

    # Four images: 0 and 1 clean, 2 at quality 0.6, 3 at quality 0.1 (all one identity).
    quality = np.array([1.0, 1.0, 0.6, 0.1])
    pairs = np.array([[0, 1], [0, 2], [1, 2], [0, 3], [2, 3], [1, 3]])
    mated = np.ones(6, bool)
    similarity = np.array([0.9, 0.7, 0.3, 0.2, 0.1, 0.6])
    check = benchmark_check(similarity, mated, pairs, quality, 0.5, 0.8, 0.6)
    assert check.relevance == pytest.approx(0.5)
    assert check.clean_mated_pairs == 1 and check.clean_fnmr == 0.0
    assert check.e0 == pytest.approx(3 / 6)  # 0.3, 0.2, 0.1 are below the threshold
    by_bin = {(b["quality_from"], b["quality_to"]): b for b in check.fnmr_by_quality}
    assert by_bin[(1.0, 1.0)]["mated_pairs"] == 1
    assert by_bin[(0.5, 0.75)]["mated_pairs"] == 2 and by_bin[(0.5, 0.75)]["fnmr"] == 0.5
    assert by_bin[(0.0, 0.25)]["mated_pairs"] == 3
    assert by_bin[(0.0, 0.25)]["fnmr"] == pytest.approx(2 / 3)
    assert math.isnan(by_bin[(0.75, 1.0)]["fnmr"]) and by_bin[(0.75, 1.0)]["mated_pairs"] == 0
    assert check.passed == {"relevance": False, "clean_fnmr": True, "e0": True}


def test_report_states_the_benchmark_check(tiny_demo):
    report = (tiny_demo.out_dir / "report.md").read_text()
    assert "Is this benchmark informative?" in report
    assert "quality relevance r" in report and ">= 0.6" in report and "<= 0.05" in report
    data = json.loads((tiny_demo.out_dir / "demo.json").read_text())
    check = data["check"]
    assert set(check["passed"]) == {"relevance", "clean_fnmr", "e0"}
    assert check["targets"] == {"relevance": 0.6, "clean_fnmr": 0.05, "e0": 0.1}
    assert sum(b["mated_pairs"] for b in check["fnmr_by_quality"]) == data_mated(tiny_demo)


def data_mated(result) -> int:
    # every held-out identity has test_samples_per_identity images: C(n, 2) mated pairs each
    n = result.settings["test_samples_per_identity"]
    return result.settings["test_identities"] * n * (n - 1) // 2


def test_a_signal_during_training_stops_the_whole_demo(tmp_path, monkeypatch):
    import igfiqa.engine.trainer as trainer

    calls = []

    def stopped_train(config, *, out_dir, resume, progress, dataset):
        calls.append(out_dir.name)
        out_dir.mkdir(parents=True)
        return trainer.TrainResult(
            run_dir=out_dir, checkpoint=None, step=3, epoch=0, stopped="signal", signum=15
        )

    monkeypatch.setattr(trainer, "train", stopped_train)
    with pytest.raises(
        ExperimentStopped, match=r"signal 15 while training crfiqa.*nothing was evaluated"
    ) as stopped:
        run_demo(tmp_path / "a", demo_settings(**TINY), progress=False, log=lambda _: None)
    assert "run the same igfiqa demo command with --resume" in str(stopped.value)
    assert calls == ["crfiqa"]  # no further variant trained
    assert not (tmp_path / "a" / "report.md").exists()
    assert not (tmp_path / "a" / ".igfiqa.lock").exists()  # released: a rerun may start
    result = CliRunner().invoke(
        app, ["demo", "-o", str(tmp_path / "b"), "--epochs", "1", "--identities", "12",
              "--samples", "4", "--test-identities", "6", "--test-samples", "4", "--batch-size", "16",
              "--no-progress"],
    )  # fmt: skip
    assert result.exit_code == 143, result.output
    assert "interrupted: stopped by signal 15" in result.output
    assert "--resume" in result.output


# ----------------------------------------------------------------- one writer, never a user's file
@pytest.fixture
def live_pid():
    """The PID of a live process that is not this one (the holder of a simulated lock)."""
    import subprocess

    sleeper = subprocess.Popen(["sleep", "60"])
    yield sleeper.pid
    sleeper.kill()
    sleeper.wait()


def write_lock(folder, pid):
    import socket

    folder.mkdir(parents=True, exist_ok=True)
    data = {"pid": pid, "host": socket.gethostname(), "since": 0.0}
    (folder / ".igfiqa.lock").write_text(json.dumps(data))


def earlier_run(folder):
    """What an igfiqa training run leaves in its folder; returns {relative path: bytes}."""
    files = {
        "config.yaml": b"model: {}\n",
        "metrics.jsonl": b'{"step": 1}\n',
        "checkpoints/step_00000003.pt": b"weights",
    }
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return files


def snapshot(folder):
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def cli_error(monkeypatch, capsys, *args):
    """Run the console script's entry point; returns its exit code and its stderr."""
    import sys

    from igfiqa.cli import main

    monkeypatch.setattr(sys, "argv", ["igfiqa", *args])
    with pytest.raises(SystemExit) as exited:
        main()
    return exited.value.code, capsys.readouterr().err


TINY_CLI = ["--identities", "12", "--samples", "4", "--test-identities", "6", "--test-samples",
            "4", "--batch-size", "16", "--epochs", "1", "--no-progress"]  # fmt: skip


@pytest.mark.parametrize("name", ["my.pt", "checkpoints/best.pt", "tensorboard/notes.txt"])
def test_a_user_file_in_a_run_folder_survives_and_the_demo_is_refused(
    tmp_path, monkeypatch, capsys, name
):
    out = tmp_path / "o"
    earlier_run(out / "runs" / "crfiqa")
    mine = out / "runs" / "ig_distance" / name
    mine.parent.mkdir(parents=True)
    mine.write_bytes(b"my own checkpoint")
    before = snapshot(out)
    with pytest.raises(ConfigError, match=rf"{mine.name}.*not written by igfiqa.*move it"):
        run_demo(out, demo_settings(**TINY), progress=False, log=lambda _: None)
    assert snapshot(out) == before  # refused before any work: nothing deleted, nothing written
    code, err = cli_error(monkeypatch, capsys, "demo", "--out", str(out), *TINY_CLI)
    assert code == 2 and err.startswith("error: ") and str(mine) in err
    assert len(err.strip().splitlines()) == 1
    assert snapshot(out) == before


def test_a_second_demo_on_a_held_folder_is_refused(tmp_path, monkeypatch, capsys, live_pid):
    out = tmp_path / "o"
    earlier_run(out / "runs" / "crfiqa")
    write_lock(out, live_pid)  # the first demo, still running
    write_lock(out / "runs" / "crfiqa", live_pid)  # ... and training there
    before = snapshot(out)
    with pytest.raises(ConfigError, match=rf"in use by another igfiqa process \(PID {live_pid}"):
        run_demo(out, demo_settings(**TINY), progress=False, log=lambda _: None)
    code, err = cli_error(monkeypatch, capsys, "demo", "--out", str(out), *TINY_CLI)
    assert code == 2 and f"PID {live_pid}" in err and len(err.strip().splitlines()) == 1
    assert snapshot(out) == before  # the first one's lock and run folder untouched


def test_a_run_folder_another_process_trains_in_is_not_deleted(tmp_path, live_pid):
    out = tmp_path / "o"
    earlier_run(out / "runs" / "crfiqa")
    write_lock(out / "runs" / "crfiqa", live_pid)  # e.g. igfiqa train --out o/runs/crfiqa
    before = snapshot(out)
    with pytest.raises(ConfigError, match=rf"PID {live_pid}"):
        run_demo(out, demo_settings(**TINY), progress=False, log=lambda _: None)
    assert snapshot(out) == before
    assert not (out / ".igfiqa.lock").exists()  # the demo's own lock is released


@pytest.mark.parametrize("link", ["runs", "runs/crfiqa"])
def test_a_symlinked_run_folder_is_refused_and_its_target_untouched(tmp_path, link):
    target = tmp_path / "elsewhere"
    files = earlier_run(target / "crfiqa" if link == "runs" else target)
    out = tmp_path / "o"
    (out / link).parent.mkdir(parents=True, exist_ok=True)
    (out / link).symlink_to(target, target_is_directory=True)
    with pytest.raises(ConfigError, match="symbolic link"):
        run_demo(out, demo_settings(**TINY), progress=False, log=lambda _: None)
    assert (out / link).is_symlink()
    assert snapshot(target) == {
        (f"crfiqa/{k}" if link == "runs" else k): v for k, v in files.items()
    }


def test_clear_run_folder_removes_an_earlier_run_and_only_that(tmp_path):
    import subprocess

    from igfiqa.experiments.folders import clear_run_folder

    dead = subprocess.Popen(["true"])
    dead.wait()
    run = tmp_path / "runs" / "crfiqa"
    earlier_run(run)
    write_lock(run, dead.pid)  # left by a killed run: taken over
    (run / ".config.yaml.k3j4h5.tmp").write_bytes(b"half")
    (run / "checkpoints" / ".step_00000004.pt.a1b2c3.tmp").write_bytes(b"half")
    (run / "tensorboard").mkdir()
    (run / "tensorboard" / "events.out.tfevents.1.host").write_bytes(b"e")
    (tmp_path / "runs" / "notes.txt").write_text("beside the run folder: not ours to judge")
    clear_run_folder(run, tmp_path)
    assert not run.exists() and (tmp_path / "runs" / "notes.txt").is_file()
    clear_run_folder(run, tmp_path)  # nothing there: nothing to do


def test_the_demo_lock_is_held_while_training_and_released_on_ctrl_c(tmp_path, monkeypatch):
    import os

    import igfiqa.engine.trainer as trainer
    from igfiqa.errors import IgfiqaError

    out = tmp_path / "o"
    seen = []

    def interrupted_train(config, *, out_dir, resume, progress, dataset):
        seen.append(json.loads((out / ".igfiqa.lock").read_text())["pid"])
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "train", interrupted_train)
    with pytest.raises(KeyboardInterrupt):
        run_demo(out, demo_settings(**TINY), progress=False, log=lambda _: None)
    assert seen == [os.getpid()] and not (out / ".igfiqa.lock").exists()

    def no_checkpoint(config, *, out_dir, resume, progress, dataset):
        return trainer.TrainResult(
            run_dir=out_dir, checkpoint=None, step=0, epoch=0, stopped="completed"
        )

    monkeypatch.setattr(trainer, "train", no_checkpoint)  # the same error as the study's
    with pytest.raises(IgfiqaError, match="stopped early"):
        run_demo(out, demo_settings(**TINY), progress=False, log=lambda _: None)
    assert not (out / ".igfiqa.lock").exists()


# ---------------------------------------------------------------------------------------- resume
def demo_numbers(out):
    """demo.json less what differs between two runs of the same settings: paths, timings and
    what was resumed."""
    data = json.loads((out / "demo.json").read_text())
    for key in ("out_dir", "seconds", "resumed"):
        data.pop(key)
    for variant in data["variants"]:
        variant.pop("checkpoint")
        variant.pop("train_seconds")
    return data


@pytest.mark.slow
def test_an_interrupted_demo_resumes_to_the_numbers_of_an_uninterrupted_one(
    tiny_demo, tmp_path, monkeypatch
):
    import os
    import signal

    from igfiqa.engine.trainer import Trainer

    step = Trainer.train_step

    def interrupted_step(self, images, labels):
        if self.run_dir.name == "ig_distance" and self.step == 1:  # SIGTERM in its second step
            os.kill(os.getpid(), signal.SIGTERM)
        return step(self, images, labels)

    out = tmp_path / "o"
    monkeypatch.setattr(Trainer, "train_step", interrupted_step)
    with pytest.raises(ExperimentStopped, match=r"while training ig_distance.*--resume"):
        run_demo(out, demo_settings(**TINY), progress=False, log=lambda _: None)
    monkeypatch.undo()
    assert not (out / "demo.json").exists()
    logs = []
    result = run_demo(out, demo_settings(**TINY), progress=False, log=logs.append, resume=True)
    steps = tiny_demo.variants[0].steps
    assert result.resumed == {
        "crfiqa": f"reused (finished earlier, {steps} steps)",
        "ig_distance": "continued from step 2",
    }
    assert any(
        "IG-FIQA, statistic=distance (paper): 1 epochs, continuing from step 2" in x for x in logs
    )
    # bit-exact: every number of demo.json is that of the uninterrupted run of the fixture
    assert demo_numbers(out) == demo_numbers(tiny_demo.out_dir)
    assert result.table() == tiny_demo.table()
    assert "Resumed (`--resume`): crfiqa reused" in (out / "report.md").read_text()
    # a finished demo resumed again trains nothing and gives the same numbers
    again = run_demo(out, demo_settings(**TINY), progress=False, log=lambda _: None, resume=True)
    assert all(what.startswith("reused") for what in again.resumed.values())
    assert len(again.resumed) == len(VARIANTS)
    assert demo_numbers(out) == demo_numbers(tiny_demo.out_dir)


def test_resume_with_other_settings_is_refused_and_lists_the_differences(
    tmp_path, monkeypatch, capsys
):
    import igfiqa.engine.trainer as trainer

    out = tmp_path / "o"
    out.mkdir()
    record = {"kind": "igfiqa demo", "settings": demo_settings(**TINY).record()}
    (out / "demo_settings.json").write_text(json.dumps(record))
    earlier_run(out / "runs" / "crfiqa")
    before = snapshot(out)
    other = demo_settings(**{**TINY, "seed": 1, "epochs": 2})
    with pytest.raises(
        ConfigError,
        match=r"other settings: epochs \(--epochs\): was 1, now 2; seed \(--seed\): was 0, "
        r"now 1; resume with the same options, or drop --resume",
    ):
        run_demo(out, other, progress=False, log=lambda _: None, resume=True)
    assert snapshot(out) == before  # refused before any work
    code, err = cli_error(
        monkeypatch, capsys, "demo", "--out", str(out), *TINY_CLI, "--seed", "1", "--resume"
    )
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert (
        "seed (--seed): was 0, now 1" in err and "image_size (--image-size): was 32, now 48" in err
    )
    assert snapshot(out) == before

    # nothing to resume: the demo says so and starts afresh
    def stopped_train(config, *, out_dir, resume, progress, dataset):
        out_dir.mkdir(parents=True)
        return trainer.TrainResult(
            run_dir=out_dir, checkpoint=None, step=1, epoch=0, stopped="signal", signum=2
        )

    monkeypatch.setattr(trainer, "train", stopped_train)
    logs = []
    with pytest.raises(ExperimentStopped):
        run_demo(tmp_path / "new", other, progress=False, log=logs.append, resume=True)
    assert any("nothing to resume" in line and "starting afresh" in line for line in logs)
    saved = json.loads((tmp_path / "new" / "demo_settings.json").read_text())
    assert saved["settings"] == other.record()


def test_resume_refuses_a_checkpoint_trained_with_another_config(tiny_demo, tmp_path):
    import shutil

    out = tmp_path / "o"
    settings = demo_settings(**{**TINY, "epochs": 2})
    record = {"kind": "igfiqa demo", "settings": settings.record()}
    out.mkdir()
    (out / "demo_settings.json").write_text(json.dumps(record))
    folder = out / "runs" / "crfiqa" / "checkpoints"
    folder.mkdir(parents=True)
    final = sorted((tiny_demo.out_dir / "runs" / "crfiqa" / "checkpoints").glob("step_*.pt"))[-1]
    shutil.copy(final, folder / final.name)  # trained for 1 epoch, in a folder that says 2
    before = snapshot(out)
    with pytest.raises(
        ConfigError, match=r"trained with another config \(train.epochs 1 there, 2 now\)"
    ):
        run_demo(out, settings, progress=False, log=lambda _: None, resume=True)
    assert snapshot(out) == before
