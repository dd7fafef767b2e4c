"""A Python function as quality method (library use): uint8 faces (B, S, S, 3) -> scores (B,)."""

from __future__ import annotations

from typing import Any

from igfiqa.evaluation.quality.base import Consumer, QualityMethod, register


@register
class FunctionQuality(QualityMethod):
    kind = "callable"
    needs_images = True

    def image_function(self, model: Any, device: str) -> Consumer:
        assert self.function is not None
        return self.function
