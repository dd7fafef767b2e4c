"""``serfiq``: SER-FIQ (Terhorst et al., CVPR 2020) on any FR kind whose network has its dropout
before ``fc`` (the iResNets): T stochastic embeddings, their mean pairwise distance, the
authors' sigmoid. The file is read by its own kind (detected, or ``base=KIND``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from igfiqa.errors import CheckpointError, ConfigError
from igfiqa.inference.kinds.base import (
    EXPORT,
    KINDS,
    TORCH,
    LoadedModel,
    ModelFile,
    ModelKind,
    detect_kind,
    get_kind,
    register_kind,
)
from igfiqa.models.convention import InputConvention
from igfiqa.models.scoring import ScoringNetwork

DEFAULT_PASSES = 100
DEFAULT_RATE = 0.5


def serfiq_network(
    network: Any, *, passes: int, rate: float, seed: int, rescale: bool = True
) -> ScoringNetwork:
    """SER-FIQ over an FR network (an iResNet, or a released network around one)."""
    convention = getattr(network, "convention", None) or InputConvention(
        size=int(network.input_size)
    )
    backbone = getattr(network, "backbone", network)
    if not hasattr(backbone, "hidden"):
        raise ConfigError(
            "SER-FIQ needs an FR network with a dropout before its fc (an iResNet kind: igfiqa, "
            f"crfiqa, arcface, magface); this one is a {type(backbone).__name__}"
        )
    return ScoringNetwork(
        backbone, convention=convention, quality="serfiq", serfiq_passes=passes,
        serfiq_rate=rate, serfiq_seed=seed, serfiq_rescale=rescale,
    )  # fmt: skip


@register_kind
class SerfiqKind(ModelKind):
    name = "serfiq"
    method = "SER-FIQ (on an FR model)"
    paper = "Terhorst et al., SER-FIQ: Unsupervised Estimation of Face Image Quality Based on Stochastic Embedding Robustness, CVPR 2020"
    architecture = "the FR model's iResNet with dropout before fc"
    input = "as the FR model's kind"
    output = "quality in (0, 1), higher is better; the FR model's embedding"
    roles = ("quality", "fr")
    page = "https://github.com/pterhoer/FaceImageQuality"
    licence = "SER-FIQ code: CC BY-NC-SA 4.0 (non-commercial); the FR model's own weights"
    files = "any FR file of an iResNet kind"
    file_formats = (TORCH, EXPORT)
    expects = "an FR model file of an iResNet kind (base=KIND to name it), options T, p, seed"
    options = ("base", "T", "p", "seed", "rescale")
    options_help: ClassVar[dict[str, str]] = {
        "base": "the FR file's kind (default: recognised from the file)",
        "T": "stochastic passes, 2 to 10000 (default 100, as the authors)",
        "p": "dropout rate in (0, 1) (default 0.5)",
        "seed": "seed of the dropout masks (default 0)",
        "rescale": "true (default, the released code's 1/(1+e^(-130(s-0.88)))) or false",
    }
    auto = False

    def load(self, file: ModelFile, options: Mapping[str, str]) -> LoadedModel:
        base = get_kind(options["base"]) if "base" in options else detect_kind(file)
        if base.name == self.name or base.name not in KINDS:
            raise ConfigError("serfiq needs another kind as its base")
        if file.format not in base.file_formats:
            raise ConfigError(
                f"serfiq base={base.name} reads {' or '.join(base.file_formats)} files; {file.path} is a "
                f"{file.format} file"
            )
        inner = base.load(file, {})
        if inner.network is None:
            raise CheckpointError(f"{file.path}: SER-FIQ needs a torch network, not {base.name}")
        try:
            passes = int(options.get("T", DEFAULT_PASSES))
            rate = float(options.get("p", DEFAULT_RATE))
            seed = int(options.get("seed", 0))
        except ValueError as error:
            raise ConfigError(f"serfiq options T, p, seed: {error}") from None
        rescale_text = options.get("rescale", "true").strip().lower()
        if rescale_text not in ("1", "true", "yes", "0", "false", "no"):
            raise ConfigError(f"serfiq option rescale={rescale_text!r}: use true or false")
        rescale = rescale_text in ("1", "true", "yes")
        if not 2 <= passes <= 10_000:
            raise ConfigError(f"serfiq option T={passes}: use 2 to 10000 passes")
        try:
            network = serfiq_network(
                inner.network, passes=passes, rate=rate, seed=seed, rescale=rescale
            )
        except ValueError as error:
            raise ConfigError(f"serfiq: {error}") from None
        card = dict(inner.card)
        card["model_spec"] = {
            **card["model_spec"], "kind": self.name, "base_kind": base.name,
            "serfiq": {"T": passes, "p": rate, "seed": seed, "rescale": rescale},
        }  # fmt: skip
        card["kind"] = {
            "kind": self.name,
            "method": self.method,
            "paper": self.paper,
            "page": self.page,
            "licence": self.licence,
            "base": card.get("kind"),
        }
        card["architecture"] = {**card["architecture"], "quality_head": True}
        card["outputs"] = {**card["outputs"], "quality": {
            "shape": ["batch", 1], "higher_is_better": True, "range": [0, 1],
            "meaning": f"SER-FIQ: T={passes} dropout masks (rate {p_text(rate)}) on the features "
                       "before fc, d = mean Euclidean distance of the L2-normalised stochastic "
                       "embeddings over pairs, s = 2 / (1 + e^d)" + (
                           ", then 1 / (1 + e^(-130 (s - 0.88)))" if rescale else ""),
        }}  # fmt: skip
        return LoadedModel(card=card, network=network.eval(), kind=self.name)

    def build(self, spec: Mapping[str, Any]) -> Any:
        base = get_kind(str(spec.get("base_kind", "arcface")))
        if base.name == self.name:
            raise CheckpointError("a serfiq model's base_kind cannot be serfiq")
        options = dict(spec.get("serfiq") or {})
        inner = base.build({k: v for k, v in spec.items() if k not in ("kind", "serfiq")})
        return serfiq_network(
            inner, passes=int(options.get("T", DEFAULT_PASSES)),
            rate=float(options.get("p", DEFAULT_RATE)), seed=int(options.get("seed", 0)),
            rescale=bool(options.get("rescale", True)),
        )  # fmt: skip


def p_text(rate: float) -> str:
    return f"{rate:g}"
