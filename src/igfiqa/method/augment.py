"""On-the-fly degradations for the quality branch (IG-FIQA, METHOD.md section 4)."""

from __future__ import annotations

from dataclasses import dataclass

from igfiqa.errors import ConfigError

JPEG_BACKENDS = ("kornia", "cv2")


@dataclass
class AugmentConfig:
    """Degradations of the quality stream; each one draws its own parameters per image.

    Every operation is switched off by ``enabled=False`` (all of them) or by its probability 0.
    Ranges are closed intervals ``[min, max]``; defaults are METHOD.md section 4.

    Attributes:
        enabled: master switch.
        downscale_p, downscale_min, downscale_max: shrink by a factor in [min, max] (area filter)
            and scale back up (bilinear).
        blur_p, blur_sigma_min, blur_sigma_max: Gaussian blur with sigma in [min, max] pixels.
        erase_p, erase_area_min, erase_area_max, erase_aspect_min, erase_aspect_max: random
            erasing of one rectangle whose area is a share in [min, max] of the image and whose
            aspect (height/width, log-uniform) lies in [min, max]; filled with ``erase_value``.
        erase_value: fill value in pixel scale [0, 1] (0 = black, i.e. -1 after normalisation).
        jitter_p, brightness, contrast, saturation: colour jitter; each factor is drawn from
            [1 - x, 1 + x].
        greyscale_p: convert to greyscale (kept as 3 channels).
        jpeg_p, jpeg_quality_min, jpeg_quality_max: JPEG re-encoding with quality in [min, max].
        jpeg_backend: ``kornia`` (differentiable JPEG, batched, on any device) or ``cv2``
            (real libjpeg, one image at a time on the CPU).
    """

    enabled: bool = True
    downscale_p: float = 0.5
    downscale_min: float = 0.15
    downscale_max: float = 1.0
    blur_p: float = 0.3
    blur_sigma_min: float = 0.1
    blur_sigma_max: float = 2.5
    erase_p: float = 0.5
    erase_area_min: float = 0.02
    erase_area_max: float = 0.4
    erase_aspect_min: float = 0.3
    erase_aspect_max: float = 3.3
    erase_value: float = 0.0
    jitter_p: float = 0.5
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    greyscale_p: float = 0.2
    jpeg_p: float = 0.2
    jpeg_quality_min: int = 10
    jpeg_quality_max: int = 60
    jpeg_backend: str = "kornia"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first invalid field."""
        for name in ("downscale_p", "blur_p", "erase_p", "jitter_p", "greyscale_p", "jpeg_p"):
            value = float(getattr(self, name))
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"augment.{name} must be a probability in [0, 1], got {value}")
        _check_range("downscale", self.downscale_min, self.downscale_max, low=0.0, high=1.0)
        if float(self.downscale_min) <= 0.0:
            raise ConfigError(f"augment.downscale_min must be > 0, got {self.downscale_min}")
        _check_range("blur_sigma", self.blur_sigma_min, self.blur_sigma_max, low=0.0)
        if float(self.blur_sigma_min) <= 0.0:
            raise ConfigError(f"augment.blur_sigma_min must be > 0, got {self.blur_sigma_min}")
        _check_range("erase_area", self.erase_area_min, self.erase_area_max, low=0.0, high=1.0)
        if float(self.erase_area_min) <= 0.0:
            raise ConfigError(f"augment.erase_area_min must be > 0, got {self.erase_area_min}")
        _check_range("erase_aspect", self.erase_aspect_min, self.erase_aspect_max, low=0.0)
        if float(self.erase_aspect_min) <= 0.0:
            raise ConfigError(f"augment.erase_aspect_min must be > 0, got {self.erase_aspect_min}")
        if not 0.0 <= float(self.erase_value) <= 1.0:
            raise ConfigError(f"augment.erase_value must be in [0, 1], got {self.erase_value}")
        for name in ("brightness", "contrast", "saturation"):
            value = float(getattr(self, name))
            if not 0.0 <= value < 1.0:
                raise ConfigError(f"augment.{name} must be in [0, 1), got {value}")
        _check_range("jpeg_quality", self.jpeg_quality_min, self.jpeg_quality_max, low=1, high=100)
        if self.jpeg_backend not in JPEG_BACKENDS:
            raise ConfigError(
                f"augment.jpeg_backend must be one of {JPEG_BACKENDS}, got {self.jpeg_backend!r}"
            )


def _check_range(
    name: str, low_value: float, high_value: float, *, low: float, high: float | None = None
) -> None:
    lo, hi = float(low_value), float(high_value)
    if lo > hi:
        raise ConfigError(f"augment.{name}_min ({lo}) must be <= augment.{name}_max ({hi})")
    if lo < low or (high is not None and hi > high):
        bound = f"[{low}, {high}]" if high is not None else f">= {low}"
        raise ConfigError(f"augment.{name}_min/_max must lie in {bound}, got [{lo}, {hi}]")
