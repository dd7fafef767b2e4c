"""One settings type: validation, the presets' defaults, records, the one list of overrides."""

from __future__ import annotations

import warnings

import pytest

from igfiqa.errors import ConfigError
from igfiqa.experiments import Settings, demo_settings, study_settings
from igfiqa.experiments.variants import DEMO_VARIANTS, STUDY_VARIANTS


def test_the_presets_defaults() -> None:
    demo, study = demo_settings(), study_settings()
    assert (demo.seeds, demo.epochs, demo.image_size, demo.batch_size) == (1, 6, 48, 64)
    assert (study.seeds, study.epochs, study.image_size, study.batch_size) == (3, 7, 48, 64)
    assert [v.key for v in demo.selected()] == [v.key for v in DEMO_VARIANTS]
    assert "ig_official" not in study.variants and "fr_only" in study.variants
    assert study_settings(variants=("all",)).selected() == list(STUDY_VARIANTS)


def test_records_keep_the_keys_of_earlier_outputs() -> None:
    """demo.json, study.json and the resume records name what igfiqa 0.1.0 named."""
    assert list(demo_settings(seed=3).record()) == [
        "seed", "train_identities", "samples_per_identity", "test_identities",
        "test_samples_per_identity", "low_variance_share", "test_low_variance_share",
        "image_size", "batch_size", "epochs", "fmrs", "limits", "variants",
    ]  # fmt: skip
    assert demo_settings(seed=3).record()["seed"] == 3
    study = study_settings(seeds=2, first_seed=4)
    assert study.record()["seed_list"] == [4, 5]
    assert list(study.fingerprint()) == [
        "train_identities", "samples_per_identity", "test_identities",
        "test_samples_per_identity", "low_variance_share", "image_size", "batch_size", "epochs",
        "width", "fmrs", "limits",
    ]  # fmt: skip
    # more seeds or variants resume the same study; other data does not
    assert study_settings(seeds=5, variants=("all",)).fingerprint() == study.fingerprint()
    assert study_settings(epochs=3).fingerprint() != study.fingerprint()


def test_bad_settings_name_the_field_and_the_experiment() -> None:
    with pytest.raises(ConfigError, match=r"study setting low_variance_share=1\.5"):
        study_settings(low_variance_share=1.5)
    with pytest.raises(ConfigError, match="demo setting batch_size=999"):
        demo_settings(train_identities=10, samples_per_identity=2, batch_size=999)
    with pytest.raises(ConfigError, match="limits"):
        study_settings(limits=(0.0,))
    with pytest.raises(ConfigError, match="--benchmark"):
        study_settings(data="/data/casia")  # the user's data needs benchmarks
    with pytest.raises(ConfigError, match="casia_r18 and casia_r18_crfiqa"):
        study_settings(preset="casia_r18")
    with pytest.raises(ConfigError, match="unknown experiment"):
        Settings(experiment="survey")


def test_budget_minutes_sets_epochs_and_is_deprecated_in_the_demo_only() -> None:
    with pytest.warns(DeprecationWarning, match="never limited the time"):
        assert demo_settings(budget_minutes=6.0).epochs == 6
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert study_settings(budget_minutes=0.1).epochs == 1
    with pytest.warns(DeprecationWarning):
        assert demo_settings(budget_minutes=1.0, epochs=4).epochs == 4  # --epochs wins


def test_one_override_list_for_every_unit() -> None:
    study = study_settings(width=0.125, sets=("optim.lr=0.01",))
    variant = STUDY_VARIANTS[2]  # ig_distance
    overrides = study.unit_overrides(variant, 1, "synthetic:identities=10")
    assert overrides[0] == "method.guidance.statistic=distance"
    assert "train.seed=1" in overrides and "checkpoint.keep=0" in overrides  # instruments
    assert "model.width=0.125" in overrides and overrides[-1] == "optim.lr=0.01"
    config = study.unit_config(STUDY_VARIANTS[-1], 1, "synthetic:identities=10")  # fr_only
    assert config.train.seed == 1 + 10_007 and config.method.objective.quality_weight == 0
    demo = demo_settings().unit_overrides(DEMO_VARIANTS[0], 0, "synthetic:identities=10")
    assert "checkpoint.keep=0" not in demo  # no instruments: the preset's checkpoints


def test_the_users_data_takes_the_recipes_defaults() -> None:
    settings = study_settings(
        data="casia:/data/faces_webface_112x112", benchmarks=("lfw:/data/lfw.bin",),
        preset="casia_r50",
    )  # fmt: skip
    assert (settings.image_size, settings.batch_size, settings.epochs) == (112, 128, 34)
    assert not settings.synthetic and not settings.instruments
    record = settings.record()
    assert record["data"] == "casia:/data/faces_webface_112x112" and record["preset"] == "casia_r50"
    assert "train_identities" not in record  # the synthetic faces' settings do not apply
    config = settings.unit_config(STUDY_VARIANTS[0], 0, "/data/faces_webface_112x112")
    assert config.model.name == "iresnet50" and config.data.source == "/data/faces_webface_112x112"
    assert config.checkpoint.keep == 3  # the recipe's own checkpoints
