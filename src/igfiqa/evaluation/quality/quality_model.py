"""``model:PATH``, ``KIND:PATH`` or a path: a quality model of any kind (``igfiqa models``): an
igfiqa checkpoint or export, CR-FIQA, MagFace, SDD-FIQA, DifFIQA(R), eDifFIQA, OFIQ's unified
quality score... ``KIND:PATH`` names the kind; ``PATH@sha256=HEX`` pins the file."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from igfiqa.errors import ConfigError
from igfiqa.evaluation.quality.base import QUALITY_METHODS, Consumer, QualityMethod, register
from igfiqa.files import content_digest, file_signature
from igfiqa.inference.fr_models import fr_batch, split_model_spec


def _hint(spec: str) -> str:
    """``; did you mean 'random'?`` when the head of ``spec`` (not a file name) is close to the
    name of a quality method or of a model kind."""
    from igfiqa.inference.kinds import KINDS

    head, sep, _ = spec.partition(":")
    if len(head) < 2 or any(c in head for c in "/\\."):
        return ""
    names = [*QUALITY_METHODS.names(), *QUALITY_METHODS.aliases()]
    names += [*KINDS.names(), *KINDS.aliases()] if sep else []
    close = difflib.get_close_matches(head.strip().lower(), names, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


@register
class ModelQuality(QualityMethod):
    kind = "model"
    needs_images = True
    usage = "model:PATH, KIND:PATH or PATH"

    @classmethod
    def parse(cls, rest: str, name: str | None) -> QualityMethod:
        kind, text, sha256 = split_model_spec(rest)
        path = Path(text).expanduser()
        if not path.exists():
            usages = sorted({m.usage for m in QUALITY_METHODS.values() if m.usage} - {cls.usage})
            raise ConfigError(
                f"quality method {rest!r} is neither one of {', '.join(usages)} nor an existing "
                f"model file (KIND:PATH for a model of a named kind: igfiqa models){_hint(rest)}"
            )
        options = {key: value for key, value in (("kind", kind), ("sha256", sha256)) if value}
        return cls(name or path.name, options=options, path=path)

    def cache_key(self, model: Any) -> str | None:
        kind = self.options.get("kind", "")
        settings = self.options.get("model_options", "")
        return content_digest("model", kind, settings, file_signature(self.path))

    def image_function(self, model: Any, device: str) -> Consumer:
        from igfiqa.inference import load_model

        quality_model = load_model(
            self.path, kind=self.options.get("kind"), sha256=self.options.get("sha256"),
            options=self.options.get("model_options"), device=device,
        )  # fmt: skip
        if not quality_model.has_quality_head:
            raise ConfigError(f"{self.path} has no quality output: it cannot be a quality method")
        size = int(quality_model.input_size)
        return lambda images: quality_model.forward_batch(fr_batch(images, size))[1]
