"""``model:PATH`` (or a path): an igfiqa quality model (checkpoint, export, CR-FIQA backbone)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from igfiqa.errors import ConfigError
from igfiqa.evaluation.quality.base import QUALITY_METHODS, Consumer, QualityMethod, register
from igfiqa.files import content_digest, file_signature
from igfiqa.inference.fr_models import fr_batch


@register
class ModelQuality(QualityMethod):
    kind = "model"
    needs_images = True
    usage = "model:PATH or PATH"

    @classmethod
    def parse(cls, rest: str, name: str | None) -> QualityMethod:
        path = Path(rest).expanduser()
        if not path.exists():
            usages = sorted({m.usage for m in QUALITY_METHODS.values() if m.usage} - {cls.usage})
            raise ConfigError(
                f"quality method {rest!r} is neither one of {', '.join(usages)} nor an existing "
                "model file"
            )
        return cls(name or path.name, path=path)

    def cache_key(self, model: Any) -> str | None:
        return content_digest("model", file_signature(self.path))

    def image_function(self, model: Any, device: str) -> Consumer:
        from igfiqa.inference import load_model

        quality_model = load_model(self.path, device=device)
        if not quality_model.has_quality_head:
            raise ConfigError(f"{self.path} has no quality head: it cannot be a quality method")
        size = int(quality_model.input_size)
        return lambda images: quality_model.forward_batch(fr_batch(images, size))[1]
