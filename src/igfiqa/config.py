"""Typed, validated training configuration, loaded from packaged presets or YAML files.

A config is built in layers: a preset (``src/igfiqa/presets/<name>.yaml``, by name) or a YAML file,
then an optional YAML file merged on top, then ``--data PATH``, then ``--set a.b.c=value`` overrides
(values parsed as YAML: ``--set train.amp=bf16``, ``--set optim.milestones=[8,14]``).

Every section forbids unknown keys. Any problem (unknown key, wrong type, value out of range, missing
data path, unknown preset) raises :class:`igfiqa.errors.ConfigError` naming the dotted field path and
what to do, with a did-you-mean for misspelt keys. One rule covers every number of every section,
the method's dataclasses included: NaN and infinities are refused (no setting has a use for them).
:func:`igfiqa.engine.resources.check_resources` bounds what the machine must hold (data loader
workers, the model's weights and optimizer state, a batch's activations) before any work starts.

The method options are the method's own dataclasses (:class:`igfiqa.method.objective.ObjectiveConfig`,
:class:`igfiqa.method.augment.AugmentConfig`): they are the source of truth for names and defaults.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import typing
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from igfiqa.errors import ConfigError
from igfiqa.method.augment import AugmentConfig
from igfiqa.method.guidance import GuidanceConfig
from igfiqa.method.objective import ObjectiveConfig

SYNTHETIC_PREFIX = "synthetic:"


class _Section(BaseModel):
    # allow_inf_nan=False: the rule for every float field, the method dataclasses' fields included
    # (pydantic validates them with this config): NaN and infinities are refused.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class ModelConfig(_Section):
    """The backbone, as a model spec for :func:`igfiqa.models.create_model`."""

    name: str = "iresnet50"
    num_features: int = Field(512, ge=1)
    dropout: float = Field(0.4, ge=0.0, lt=1.0)
    width: float = Field(1.0, gt=0.0)
    input_size: int = Field(112, ge=16, le=1024)

    def spec(self) -> dict[str, Any]:
        """The model spec dict of the interface contract."""
        return self.model_dump()


class HeadConfig(_Section):
    """The margin head: ArcFace ``cos(theta + m)`` or CosFace ``cos(theta) - m``, scale ``s``."""

    kind: Literal["arcface", "cosface"] = "arcface"
    s: float = Field(64.0, gt=0.0)
    m: float = Field(0.5, ge=0.0, lt=3.14159)
    sharded: bool = False


class MethodConfig(_Section):
    guidance: GuidanceConfig = Field(default_factory=GuidanceConfig)
    objective: ObjectiveConfig = Field(default_factory=ObjectiveConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)


class DataConfig(_Section):
    """Training data: a RecordIO folder, identity folder, list file or ``synthetic:...`` spec."""

    source: str = ""
    image_size: int | None = Field(
        None, ge=16, le=1024, description="None = model.input_size, which it must equal if set"
    )
    hflip: bool = True
    num_workers: int = Field(4, ge=0)
    batch_size: int = Field(128, ge=1, description="per process (GPU)")


class OptimConfig(_Section):
    """SGD with the CR-FIQA schedule; ``lr`` is for a global batch of ``base_batch`` (scaled linearly)."""

    lr: float = Field(0.1, gt=0.0)
    base_batch: int = Field(512, ge=1)
    scale_lr: bool = True
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    weight_decay: float = Field(5e-4, ge=0.0)
    schedule: Literal["multistep", "poly"] = "multistep"
    milestones: list[int] = Field(default_factory=lambda: [20, 28, 32])
    gamma: float = Field(0.1, gt=0.0, le=1.0)
    warmup_epochs: float = Field(0.0, ge=0.0)
    poly_power: float = Field(2.0, gt=0.0)
    grad_clip: float | None = Field(5.0, gt=0.0, description="max grad norm of the backbone")
    train_embedding_bn_scale: bool = Field(
        False,
        description="let the embedding BatchNorm's scale (features.weight) train, as the official "
        "CR-FIQA training does; igfiqa keeps it at 1 by default, as the published ArcFace models",
    )

    @field_validator("milestones")
    @classmethod
    def _milestones_increasing(cls, value: list[int]) -> list[int]:
        if any(m < 1 for m in value):
            raise ValueError("milestones are 1-based epoch numbers (>= 1)")
        if list(value) != sorted(set(value)):
            raise ValueError("milestones must be strictly increasing")
        return value


class TrainConfig(_Section):
    epochs: int = Field(34, ge=1)
    max_steps: int | None = Field(None, ge=1)
    device: str = "auto"
    amp: Literal["none", "bf16", "fp16"] = "none"
    channels_last: bool = False
    compile: bool = False
    deterministic: bool = False
    seed: int = Field(0, ge=0)
    max_nonfinite_in_a_row: int = Field(10, ge=1)

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        if value not in ("auto", "cpu", "cuda") and not value.startswith("cuda:"):
            raise ValueError("device must be auto, cpu, cuda or cuda:N")
        return value


class CheckpointConfig(_Section):
    every_steps: int = Field(2000, ge=0, description="0 = only at epoch ends and at the end")
    at_epoch_end: bool = True
    keep: int = Field(3, ge=0, description="newest checkpoints kept; 0 = all")


class LoggingConfig(_Section):
    every_steps: int = Field(50, ge=1, description="a metrics.jsonl record every N steps")
    stderr_every_steps: int = Field(
        50,
        ge=0,
        description="a text line on standard error every N steps where no progress bar is shown "
        "(standard error not a terminal, or the bar off), and at the start, epoch ends, "
        "verifications and the end; 0 = no text lines at all",
    )
    tensorboard: bool = False
    progress: bool = True


class VerificationSet(_Section):
    """One periodic check: ``bin`` (verification accuracy) or ``synthetic`` (EDC on a held-out split)."""

    name: str
    kind: Literal["bin", "synthetic"]
    path: str


class VerificationConfig(_Section):
    sets: list[VerificationSet] = Field(default_factory=list)
    every_steps: int = Field(0, ge=0, description="0 = only at the end of training")
    at_end: bool = True
    batch_size: int = Field(64, ge=1)


class IgfiqaConfig(_Section):
    """The whole training configuration (see ``docs/training.md``)."""

    name: str = "custom"
    description: str = ""
    model: ModelConfig = Field(default_factory=ModelConfig)
    head: HeadConfig = Field(default_factory=HeadConfig)
    method: MethodConfig = Field(default_factory=MethodConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    verification: VerificationConfig = Field(default_factory=VerificationConfig)

    @model_validator(mode="after")
    def _image_size_is_the_models(self) -> IgfiqaConfig:
        size = self.data.image_size
        if size is not None and size != self.model.input_size:
            raise ValueError(
                f"data.image_size: {size} differs from model.input_size {self.model.input_size} "
                "(the model takes images of its input size); set them equal or leave "
                "data.image_size unset"
            )
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (YAML/JSON/``weights_only``-safe)."""
        return _plain(self.model_dump(mode="python"))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def check_paths(self) -> None:
        """Raise ConfigError if the data source or a verification set does not exist."""
        source = self.data.source.strip()
        if not source:
            raise ConfigError(
                "data.source is empty: pass --data PATH (a RecordIO folder, identity folder or list "
                "file) or --set data.source='synthetic:identities=200,samples=20'"
            )
        if not source.startswith(SYNTHETIC_PREFIX) and not Path(source).expanduser().exists():
            raise ConfigError(
                f"data.source: {source!r} does not exist; pass --data PATH pointing at the training "
                "data (RecordIO folder with train.rec/train.idx/property, identity folder or list file)"
            )
        for index, item in enumerate(self.verification.sets):
            if item.kind == "bin" and not Path(item.path).expanduser().is_file():
                raise ConfigError(
                    f"verification.sets.{index}.path: {item.path!r} ({item.name}) does not exist; "
                    "fix the path or remove the set (--set verification.sets=[])"
                )


# ------------------------------------------------------------------------------------------ loading
def list_presets() -> list[str]:
    """Names of the packaged presets."""
    folder = resources.files("igfiqa") / "presets"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def preset_text(name: str) -> str:
    """The YAML text of a packaged preset."""
    names = list_presets()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"unknown preset {name!r}{hint}; available presets: {', '.join(names)}")
    return (resources.files("igfiqa") / "presets" / f"{name}.yaml").read_text(encoding="utf-8")


def preset_mapping(name: str, _seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """The settings of a packaged preset, with ``extends: OTHER`` resolved: the preset's own
    settings deep-merged over those of the preset it extends (chains allowed, cycles refused)."""
    if name in _seen:
        raise ConfigError(f"preset {name!r} extends itself: {' -> '.join([*_seen, name])}")
    data = _read_yaml(preset_text(name), f"preset {name}")
    base = data.pop("extends", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise ConfigError(f"preset {name}: extends must name another preset, got {base!r}")
    return deep_merge(preset_mapping(base, (*_seen, name)), data)


def _read_yaml(text: str, origin: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"{origin} is not valid YAML: {error}") from error
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{origin} must hold a YAML mapping (section: values), got {type(data).__name__}"
        )
    return data


def read_config_file(path: str | Path) -> dict[str, Any]:
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    return _read_yaml(path.read_text(encoding="utf-8"), f"config file {path}")


def deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive merge of mappings; values of ``update`` win, lists are replaced whole."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"a.b.c=value"`` -> (["a", "b", "c"], yaml-parsed value)."""
    if "=" not in text:
        raise ConfigError(
            f"override {text!r} must look like section.key=value (e.g. train.amp=bf16)"
        )
    key, raw = text.split("=", 1)
    parts = [p for p in key.strip().split(".")]
    if not key.strip() or any(not p for p in parts):
        raise ConfigError(f"override {text!r}: the key must be a dotted path like train.epochs")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as error:
        raise ConfigError(f"override {text!r}: the value is not valid YAML ({error})") from error
    return parts, value


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides to a nested dict (a copy)."""
    result = deep_merge(data, {})
    for text in overrides:
        parts, value = parse_override(text)
        node: Any = result
        for depth, part in enumerate(parts[:-1]):
            child = node.get(part) if isinstance(node, dict) else None
            if child is None:
                child = {}
            elif isinstance(child, Mapping):
                child = dict(child)
            else:
                where = ".".join(parts[: depth + 1])
                raise ConfigError(f"override {text!r}: {where} is a value, not a section")
            node[part] = child
            node = child
        node[parts[-1]] = value
    return result


def _field_names(cls: Any) -> list[str]:
    if isinstance(cls, type) and issubclass(cls, BaseModel):
        return list(cls.model_fields)
    if dataclasses.is_dataclass(cls):
        return [f.name for f in dataclasses.fields(cls)]
    return []


def _field_type(cls: Any, name: str) -> Any:
    if isinstance(cls, type) and issubclass(cls, BaseModel):
        field = cls.model_fields.get(name)
        return field.annotation if field else None
    if dataclasses.is_dataclass(cls):
        return typing.get_type_hints(cls).get(name)
    return None


def _class_at(path: Sequence[Any]) -> Any:
    """The section class at a (pydantic) location path inside :class:`IgfiqaConfig`."""
    cls: Any = IgfiqaConfig
    for part in path:
        if isinstance(part, int):
            args = typing.get_args(cls)
            cls = args[0] if args else None
            continue
        cls = _field_type(cls, str(part))
        origin = typing.get_origin(cls)
        if origin in (list, typing.Union) or str(origin) == "types.UnionType":
            if origin is list:
                continue
            cls = next((a for a in typing.get_args(cls) if a is not type(None)), None)
        if cls is None:
            return None
    return cls


def _format_errors(error: ValidationError, origin: str) -> str:
    lines = []
    for item in error.errors():
        loc = list(item["loc"])
        dotted = ".".join(str(p) for p in loc) or "(top level)"
        kind = item["type"]
        message = item["msg"].removeprefix("Value error, ")
        named = re.match(r"^([a-z_]+(?:\.[a-z_]+)+): (.*)$", message, re.DOTALL)
        if not loc and named:  # a check across sections names its field itself
            lines.append(f"{message}; fix it with --set {named.group(1)}=...")
            continue
        if kind in ("extra_forbidden", "unexpected_keyword_argument"):
            known = _field_names(_class_at(loc[:-1]))
            close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.5)
            hint = f"did you mean {'.'.join([*map(str, loc[:-1]), close[0]])!r}? " if close else ""
            section = ".".join(map(str, loc[:-1])) or "the top level"
            lines.append(
                f"{dotted}: unknown key; {hint}known keys in {section}: {', '.join(known)}"
            )
        elif kind == "missing":
            lines.append(
                f"{dotted}: required value is missing; set it in the YAML or with --set {dotted}=..."
            )
        elif kind == "finite_number":
            lines.append(
                f"{dotted}: must be a finite number, not {item.get('input')!r}; fix it with "
                f"--set {dotted}=..."
            )
        else:
            message = item["msg"].removeprefix("Value error, ")
            shown = item.get("input")
            # The method dataclasses validate themselves and name the field as "section.field ...".
            match = re.match(r"^(\w+)\.(\w+) (.*)$", message, re.DOTALL)
            if match and loc and str(loc[-1]) == match.group(1):
                dotted = f"{dotted}.{match.group(2)}"
                message = match.group(3)
                lines.append(f"{dotted}: {message}; fix it with --set {dotted}=...")
                continue
            got = (
                ""
                if isinstance(shown, (dict, list)) and len(str(shown)) > 60
                else f" (got {shown!r})"
            )
            lines.append(f"{dotted}: {message}{got}; fix it with --set {dotted}=...")
    return f"invalid config ({origin}):\n  " + "\n  ".join(lines)


def config_from_dict(data: Mapping[str, Any], origin: str = "config") -> IgfiqaConfig:
    """Validate a nested dict into :class:`IgfiqaConfig` (ConfigError with readable messages)."""
    try:
        return IgfiqaConfig.model_validate(dict(data))
    except ValidationError as error:
        raise ConfigError(_format_errors(error, origin)) from None


def load_config(
    preset: str | None = None,
    *,
    config_file: str | Path | None = None,
    data: str | None = None,
    overrides: Iterable[str] = (),
    check_paths: bool = False,
) -> IgfiqaConfig:
    """Build a config from a preset name and/or a YAML file, ``--data`` and ``--set`` overrides.

    ``preset`` may also be the path of a YAML file. With both ``preset`` and ``config_file`` the file
    is merged on top of the preset.
    """
    overrides = list(overrides)
    if preset is None and config_file is None:
        raise ConfigError(
            f"no config given: pass --preset NAME (one of {', '.join(list_presets())}) or --config FILE"
        )
    raw: dict[str, Any] = {}
    origin_parts = []
    if preset is not None:
        if preset.endswith((".yaml", ".yml")) or Path(preset).is_file():
            raw = read_config_file(preset)
        else:
            raw = preset_mapping(preset)
        origin_parts.append(f"preset {preset}")
    if config_file is not None:
        raw = deep_merge(raw, read_config_file(config_file))
        origin_parts.append(f"file {config_file}")
    if data is not None:
        raw = deep_merge(raw, {"data": {"source": str(data)}})
    if overrides:
        raw = apply_overrides(raw, overrides)
        origin_parts.append("--set " + " ".join(overrides))
    config = config_from_dict(raw, ", ".join(origin_parts))
    if check_paths:
        config.check_paths()
    return config


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value))
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


__all__ = [
    "CheckpointConfig",
    "DataConfig",
    "GuidanceConfig",
    "HeadConfig",
    "IgfiqaConfig",
    "LoggingConfig",
    "MethodConfig",
    "ModelConfig",
    "OptimConfig",
    "TrainConfig",
    "VerificationConfig",
    "VerificationSet",
    "apply_overrides",
    "config_from_dict",
    "deep_merge",
    "list_presets",
    "load_config",
    "parse_override",
    "preset_mapping",
    "preset_text",
]
