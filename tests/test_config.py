"""Config loading, presets, overrides and error messages."""

from __future__ import annotations

import dataclasses
import re

import pytest
import yaml

from igfiqa.config import (
    IgfiqaConfig,
    apply_overrides,
    config_from_dict,
    list_presets,
    load_config,
    parse_override,
)
from igfiqa.errors import ConfigError
from igfiqa.method.augment import AugmentConfig
from igfiqa.method.guidance import GuidanceConfig
from igfiqa.method.objective import ObjectiveConfig

PRESETS = {
    "casia_r50",
    "casia_r50_crfiqa",
    "ms1mv2_r100",
    "ms1mv2_r100_crfiqa",
    "synthetic_demo",
    "synthetic_demo_crfiqa",
}


def test_all_presets_load_and_match_the_recipes() -> None:
    assert set(list_presets()) >= PRESETS
    small = load_config("casia_r50")
    assert small.model.name == "iresnet50" and small.model.dropout == 0.4
    assert small.train.epochs == 34 and small.optim.milestones == [20, 28, 32]
    assert (small.optim.lr, small.optim.base_batch, small.optim.momentum) == (0.1, 512, 0.9)
    assert small.optim.weight_decay == 5e-4 and small.optim.grad_clip == 5.0
    assert (small.head.kind, small.head.s, small.head.m) == ("arcface", 64.0, 0.5)
    large = load_config("ms1mv2_r100")
    assert large.model.name == "iresnet100" and large.train.epochs == 18
    assert large.optim.milestones == [8, 14]
    for name in ("casia_r50", "ms1mv2_r100", "synthetic_demo"):
        ig = load_config(name)
        assert ig.method.guidance.enabled and ig.method.objective.fiqa_batch == "duplicate"
        base = load_config(f"{name}_crfiqa")
        # CR-FIQA: guidance off, augmentation off, fiqa_batch same
        assert not base.method.guidance.enabled and not base.method.augment.enabled
        assert base.method.objective.fiqa_batch == "same"
        # Everything else is the same recipe, except what the official CR-FIQA training does
        # differently on the real-data protocols: CCS / NNCCS and a trainable embedding-BN scale.
        a, b = ig.to_dict(), base.to_dict()
        official = name != "synthetic_demo"
        assert b["optim"].pop("train_embedding_bn_scale") is official
        assert a["optim"].pop("train_embedding_bn_scale") is False
        assert base.method.objective.cr_formula == ("code" if official else "paper")
        for section in ("model", "head", "data", "optim", "train"):
            assert a[section] == b[section], section


def test_method_sections_are_the_method_dataclasses_with_their_defaults() -> None:
    config = IgfiqaConfig()
    assert isinstance(config.method.objective, ObjectiveConfig)
    assert isinstance(config.method.augment, AugmentConfig)
    assert isinstance(config.method.guidance, GuidanceConfig)
    assert config.method.objective == ObjectiveConfig()
    assert config.method.augment == AugmentConfig()
    assert config.method.guidance == GuidanceConfig()
    fields = {f.name for f in dataclasses.fields(AugmentConfig)}
    assert fields == set(config.to_dict()["method"]["augment"])


def test_overrides_parse_yaml_values_and_reach_nested_fields() -> None:
    config = load_config(
        "synthetic_demo",
        overrides=[
            "method.guidance.statistic=similarity",
            "optim.milestones=[3, 5]",
            "train.amp=bf16",
            "method.augment.blur_p=0",
            "head.sharded=true",
            "data.source=synthetic:identities=4,samples=2",
        ],
    )
    assert config.method.guidance.statistic == "similarity"
    assert config.optim.milestones == [3, 5]
    assert config.train.amp == "bf16" and config.head.sharded is True
    assert config.method.augment.blur_p == 0.0
    assert config.data.source == "synthetic:identities=4,samples=2"
    assert parse_override("a.b=1.5e-3") == (["a", "b"], 1.5e-3)
    assert apply_overrides({"a": {"b": 1}}, ["a.c=x"]) == {"a": {"b": 1, "c": "x"}}


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("train.epoch=3", r"train\.epoch: unknown key; did you mean 'train\.epochs'\?"),
        ("method.guidance.statstic=distance", r"did you mean 'method\.guidance\.statistic'"),
        ("method.objective.fiqa_bach=same", r"did you mean 'method\.objective\.fiqa_batch'"),
        ("modle.name=r50", r"modle: unknown key; did you mean 'model'"),
        ("train.epochs=many", r"train\.epochs: .*valid integer.*--set train\.epochs="),
        ("optim.lr=-0.1", r"optim\.lr: .*greater than 0"),
        ("train.amp=fp8", r"train\.amp: .*'none', 'bf16' or 'fp16'"),
        ("method.objective.fiqa_batch=both", r"method\.objective\.fiqa_batch: must be one of"),
        ("method.augment.erase_p=1.5", r"method\.augment\.erase_p: must be a probability"),
        ("method.guidance.momentum_start=2", r"method\.guidance\.momentum_start: must be in"),
        ("optim.milestones=[28, 20]", r"optim\.milestones.*increasing"),
        ("head.s.value=1", r"head\.s is a value, not a section"),
        ("train.epochs", r"must look like section\.key=value"),
        ("logging.stderr_every_steps=-1", r"logging\.stderr_every_steps: .*greater than or equal"),
    ],
)
def test_bad_values_raise_config_error_naming_the_field(override: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        load_config("synthetic_demo", overrides=[override])


def test_unknown_preset_and_missing_files_and_data_paths(tmp_path) -> None:
    with pytest.raises(
        ConfigError, match=r"unknown preset 'casia_r5' \(did you mean 'casia_r50'\?\)"
    ):
        load_config("casia_r5")
    with pytest.raises(ConfigError, match="no config given"):
        load_config(None)
    with pytest.raises(ConfigError, match=r"config file .*nope\.yaml does not exist"):
        load_config(config_file=tmp_path / "nope.yaml")
    missing = tmp_path / "faces_webface"
    with pytest.raises(
        ConfigError, match=r"data\.source: .*faces_webface.* does not exist; pass --data"
    ):
        load_config("casia_r50", data=str(missing), check_paths=True)
    with pytest.raises(ConfigError, match=r"data\.source is empty"):
        load_config("casia_r50", overrides=["data.source="], check_paths=True)
    bad_bin = "verification.sets=[{name: lfw, kind: bin, path: /nowhere/lfw.bin}]"
    with pytest.raises(ConfigError, match=r"verification\.sets\.0\.path: .*lfw\.bin"):
        load_config("synthetic_demo", overrides=[bad_bin], check_paths=True)
    missing.mkdir()
    assert load_config("casia_r50", data=str(missing), check_paths=True).data.source == str(missing)


def test_config_file_layers_on_a_preset_and_round_trips_through_yaml(tmp_path) -> None:
    override = tmp_path / "mine.yaml"
    override.write_text("train: {epochs: 2}\nmethod: {guidance: {init: first}}\n")
    config = load_config("casia_r50", config_file=override, overrides=["train.seed=7"])
    assert config.train.epochs == 2 and config.method.guidance.init == "first"
    assert config.train.seed == 7 and config.model.name == "iresnet50"
    saved = tmp_path / "config.yaml"
    saved.write_text(config.to_yaml())
    again = load_config(str(saved))
    assert again == config
    assert config_from_dict(yaml.safe_load(config.to_yaml())) == config
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml is not valid YAML"):
        load_config(config_file=bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("42\n")
    with pytest.raises(ConfigError, match="must hold a YAML mapping"):
        load_config(config_file=scalar)


def test_a_preset_extends_another_and_cycles_are_refused(monkeypatch) -> None:
    import igfiqa.config as config_module

    texts = {
        "base": "name: base\ntrain: {epochs: 3, seed: 1}\nmethod: {guidance: {enabled: true}}\n",
        "child": "extends: base\nname: child\ntrain: {epochs: 5}\n",
        "loop_a": "extends: loop_b\n",
        "loop_b": "extends: loop_a\n",
    }
    monkeypatch.setattr(config_module, "preset_text", lambda name: texts[name])
    child = config_module.preset_mapping("child")
    assert child == {
        "name": "child",
        "train": {"epochs": 5, "seed": 1},
        "method": {"guidance": {"enabled": True}},
    }
    with pytest.raises(ConfigError, match="loop_a -> loop_b -> loop_a"):
        config_module.preset_mapping("loop_a")


def test_baseline_presets_are_their_recipe_with_three_switches_changed() -> None:
    for name in ("casia_r50", "ms1mv2_r100", "synthetic_demo"):
        ig, base = load_config(name).to_dict(), load_config(f"{name}_crfiqa").to_dict()
        assert (
            base["model"] == ig["model"]
            and base["data"] == ig["data"]
            and base["train"] == ig["train"]
        )
        assert base["method"]["guidance"] == {**ig["method"]["guidance"], "enabled": False}


def _float_fields(cls, prefix: str = "") -> list[str]:
    """Dotted paths of every float field of a config section class, nested sections included."""
    import typing

    from pydantic import BaseModel

    if isinstance(cls, type) and issubclass(cls, BaseModel):
        items = [(name, field.annotation) for name, field in cls.model_fields.items()]
    elif dataclasses.is_dataclass(cls):
        hints = typing.get_type_hints(cls)
        items = [(f.name, hints[f.name]) for f in dataclasses.fields(cls)]
    else:
        return []
    found = []
    for name, annotation in items:
        options = typing.get_args(annotation) or (annotation,)
        if float in options:
            found.append(f"{prefix}{name}")
        for option in options:
            if isinstance(option, type) and (
                issubclass(option, BaseModel) or dataclasses.is_dataclass(option)
            ):
                found += _float_fields(option, f"{prefix}{name}.")
    return found


def test_no_float_field_accepts_nan_or_infinity() -> None:
    """Issue 25 item 8: `--set optim.lr=.inf` was accepted (and trained NaN weights). The rule
    covers every float of every section, the method dataclasses included."""
    fields = _float_fields(IgfiqaConfig)
    assert {"optim.lr", "optim.momentum", "optim.weight_decay", "head.s", "head.m"} <= set(fields)
    assert "method.objective.quality_weight" in fields and "method.augment.blur_p" in fields
    for path in fields:
        for value in (".inf", "-.inf", ".nan"):
            with pytest.raises(ConfigError, match=rf"{re.escape(path)}: must be a finite number"):
                load_config("synthetic_demo", overrides=[f"{path}={value}"])
    with pytest.raises(ConfigError, match=r"optim\.lr: must be a finite number"):
        config_from_dict({"optim": {"lr": "inf"}})
    with pytest.raises(ConfigError, match=r"optim\.lr: .*greater than 0"):
        load_config("synthetic_demo", overrides=["optim.lr=0"])


def test_image_size_must_be_the_models_input_size() -> None:
    """data.image_size != model.input_size ended in a shape traceback in the first step."""
    with pytest.raises(ConfigError, match=r"data\.image_size: 64 differs from model\.input_size"):
        load_config("synthetic_demo", overrides=["data.image_size=64"])
    with pytest.raises(ConfigError, match=r"model\.input_size: .*less than or equal to 1024"):
        load_config("synthetic_demo", overrides=["model.input_size=100000"])
    same = load_config("synthetic_demo", overrides=["data.image_size=48"])
    assert same.data.image_size == same.model.input_size == 48


def test_text_log_cadence_defaults_to_50_and_0_turns_it_off() -> None:
    """Issue 26 item 4: the cadence of the text lines is a setting; 0 is allowed (no lines)."""
    assert load_config("casia_r50").logging.stderr_every_steps == 50
    off = load_config("casia_r50", overrides=["logging.stderr_every_steps=0"])
    assert off.logging.stderr_every_steps == 0
