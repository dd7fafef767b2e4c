"""The study on the user's data: a RecordIO training set and a ``.bin`` benchmark that igfiqa itself
writes, an FR model of the zoo besides the trained ones, ``--plan``, and a killed run resumed."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from igfiqa.cli import app
from igfiqa.experiments import ExperimentStopped, run_study, study_settings

CELL = "val: L=0.2, FMR=0.01"


def _fr_checkpoint(path: Path) -> Path:
    """A tiny untrained iResNet in igfiqa's checkpoint format: an FR model "of the zoo"."""
    import torch

    from igfiqa.models import create_model

    torch.manual_seed(0)
    spec = {"num_features": 16, "dropout": 0.0, "width": 0.125, "input_size": 32}
    model = create_model("r18", quality_head=True, **spec).eval()
    empty: dict[str, object] = {}
    torch.save(
        {
            "format": "igfiqa.checkpoint", "format_version": 1,
            "model_spec": {"name": "iresnet18", **spec}, "model": model.state_dict(),
            "head": empty, "optimizer": empty, "scheduler": empty, "scaler": empty, "epoch": 1,
            "step": 1, "guidance": empty, "augment": empty, "sampler": empty, "rng": empty,
            "config": empty, "class_names": [], "igfiqa_version": "0.1.0",
        },
        path,
    )  # fmt: skip
    return path


@pytest.fixture(scope="module")
def user_data(tmp_path_factory) -> dict[str, str]:
    """A RecordIO training set (12 identities x 4 images) and a 40-pair ``.bin`` of 6 other
    identities, written by igfiqa's own converters, and a zoo FR model."""
    from igfiqa.data.convert import write_recordio, write_verification_bin
    from igfiqa.data.datasets import open_training_dataset

    root = tmp_path_factory.mktemp("user_data")
    train = open_training_dataset("synthetic:identities=12,samples=4,image_size=32", hflip=False)
    write_recordio(train, root / "rec")
    held_out = open_training_dataset(
        "synthetic:identities=6,samples=4,seed=1,first_identity=500,image_size=32", hflip=False
    )
    write_verification_bin(held_out, root / "val.bin", num_pairs=40)
    return {
        "data": f"tiny:{root / 'rec'}",
        "benchmark": f"val=bin:{root / 'val.bin'}",
        "fr_model": f"ext=igfiqa:{_fr_checkpoint(root / 'fr.pt')}",
    }


def _settings(user_data: dict[str, str]) -> dict[str, object]:
    return dict(
        data=user_data["data"], benchmarks=(user_data["benchmark"],),
        fr_models=(user_data["fr_model"],), seeds=2, variants=("ig_distance",), image_size=32,
        batch_size=16, epochs=1, real_photos=False,
    )  # fmt: skip


def test_plan_counts_units_and_steps_from_the_data(user_data, tmp_path) -> None:
    args = ["study", "--out", str(tmp_path / "s"), "--data", user_data["data"], "--benchmark",
            user_data["benchmark"], "--seeds", "2", "--variants", "ig_distance", "--image-size",
            "32", "--batch-size", "16", "--epochs", "3", "--plan", "--step-seconds", "2"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout.strip().splitlines()[-1])
    assert plan["training_images"] == 48 and plan["steps_per_epoch"] == 3
    assert [(u["seed"], u["variant"]) for u in plan["units"]] == [
        (s, v) for s in (0, 1) for v in ("crfiqa", "ig_distance", "fr_only")
    ]
    assert all(u["steps"] == 9 and u["status"] == "to do" for u in plan["units"])
    # an IG-FIQA step (two streams) takes the given 2 s, a CR-FIQA one half
    assert plan["step_seconds"] == {"1 stream": 1.0, "2 streams": 2.0}
    assert plan["hours"] == pytest.approx(2 * 9 * (1 + 2 + 1) / 3600)
    assert "Expected training time left: 0.02 hours" in result.stdout
    assert not (tmp_path / "s").exists()  # a plan trains and writes nothing


@pytest.mark.slow  # six tiny trainings on a RecordIO set, one of them killed and resumed: ~1 min
def test_the_study_trains_on_the_users_data_and_a_killed_run_resumes(
    user_data, tmp_path, monkeypatch
) -> None:
    from igfiqa.engine.trainer import Trainer
    from igfiqa.experiments.plan import plan
    from igfiqa.experiments.study import unit_folder

    out = tmp_path / "study"
    settings = study_settings(**_settings(user_data))
    step = Trainer.train_step

    def killed_step(self, images, labels):  # SIGTERM in the second step of seed 1's IG-FIQA unit
        if self.run_dir.parts[-2:] == ("seed_1", "ig_distance") and self.step == 1:
            os.kill(os.getpid(), signal.SIGTERM)
        return step(self, images, labels)

    monkeypatch.setattr(Trainer, "train_step", killed_step)
    with pytest.raises(ExperimentStopped, match="while training ig_distance"):
        run_study(out, settings, log=lambda _: None)
    monkeypatch.undo()
    assert not (out / "study.json").exists() and (out / "seed_0" / "seed.json").is_file()

    logs: list[str] = []
    summary = run_study(out, settings, log=logs.append)
    assert "seed 0: done earlier" in logs
    assert any(
        "training IG-FIQA distance (paper): 1 epochs, continuing from step 2" in x for x in logs
    )
    assert not any("training CR-FIQA" in line for line in logs)  # seed 1's baseline was done
    # every variant trained on the RecordIO set and evaluated on the .bin with three FR models
    config = (out / "seed_1" / "ig_distance" / "config.yaml").read_text()
    assert str(Path(user_data["data"].split(":", 1)[1])) in config
    assert summary["fr_models"] == {
        "crfiqa": "CR-FIQA backbone", "fr_only": "independent FR model", "ext": "ext",
    }  # fmt: skip
    assert summary["cells"][0] == CELL and len(summary["cells"]) == 4
    for fr_key in summary["fr_models"]:
        paired = summary["paired_difference"][fr_key]["ig_distance"][CELL]
        assert paired["n"] == 2 and 0 <= paired["better_seeds"] <= 2
        assert summary["pauc_normalized"][fr_key]["crfiqa"][CELL]["n"] == 2
    backbone = summary["per_variant"]["fr_only"]["backbone_fnmr"]
    assert (
        set(backbone) == {"val: FMR=0.01", "val: FMR=0.001"} and backbone["val: FMR=0.01"]["n"] == 2
    )
    report = (out / "report.md").read_text()
    assert "**Trained on tiny**" in report and f"## Headline ({CELL})" in report
    assert "ext: paired diff to CR-FIQA" in report
    assert (out / "seed_0" / "evaluation" / "results.md").is_file()
    assert any(f.startswith("seed_0/evaluation/edc_val__ext") for f in summary["files"])

    # resumed again: everything is reused, nothing opened or trained
    logs.clear()
    again = run_study(out, settings, log=logs.append)
    assert logs == ["seed 0: done earlier", "seed 1: done earlier"]
    assert again["paired_difference"] == summary["paired_difference"]

    # the plan of the finished study: nothing left; step times measured here
    done = plan(
        settings, out, lambda s, k: unit_folder(out, s, k), measure_steps=1, log=logs.append
    )
    assert {u["status"] for u in done["units"]} == {"done"} and done["hours"] == 0.0
    assert done["step_seconds_measured"] and all(v > 0 for v in done["step_seconds"].values())
