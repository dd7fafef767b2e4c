"""On-the-fly degradations for the quality branch (IG-FIQA; docs/method.md, "Quality-stream
augmentation")."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from igfiqa.errors import CheckpointError, ConfigError

JPEG_BACKENDS = ("auto", "kornia", "cv2")


@dataclass
class AugmentConfig:
    """Degradations of the quality stream; each one draws its own parameters per image.

    Every operation is switched off by ``enabled=False`` (all of them) or by its probability 0.
    Ranges are closed intervals ``[min, max]``; defaults are the paper's (docs/method.md).

    Attributes:
        enabled: master switch.
        image_p: share of the quality stream's images that are degraded at all; the others pass
            through clean, so the quality head also sees clean images (1.0: every image draws
            every operation with its own probability, as in the paper).
        downscale_p, downscale_min, downscale_max: shrink by a factor in [min, max] (area filter)
            and scale back up (bilinear).
        blur_p, blur_sigma_min, blur_sigma_max: Gaussian blur with sigma in [min, max] pixels.
        erase_p, erase_area_min, erase_area_max, erase_aspect_min, erase_aspect_max: random
            erasing of one rectangle whose area is a share in [min, max] of the image and whose
            aspect (height/width, log-uniform) lies in [min, max]; filled with ``erase_value``.
        erase_value: fill value in pixel scale [0, 1]; the default 0.5 is 0 in the model's
            input scale (zero fill of the normalised image); 0 = black, the box of the paper's
            figure (docs/method.md).
        jitter_p, brightness, contrast, saturation: colour jitter; each factor is drawn from
            [1 - x, 1 + x].
        greyscale_p: convert to greyscale (kept as 3 channels).
        jpeg_p, jpeg_quality_min, jpeg_quality_max: JPEG re-encoding with quality in [min, max].
        jpeg_backend: ``cv2`` (real libjpeg through OpenCV, one image at a time, on the CPU:
            images on another device make a round trip), ``kornia`` (kornia's differentiable
            JPEG approximation, batched, on any device) or ``auto`` (``cv2`` for CPU images,
            ``kornia`` otherwise). ``jpeg_p=0`` switches JPEG off.
    """

    enabled: bool = True
    image_p: float = 1.0
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
    erase_value: float = 0.5
    jitter_p: float = 0.5
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    greyscale_p: float = 0.2
    jpeg_p: float = 0.2
    jpeg_quality_min: int = 10
    jpeg_quality_max: int = 60
    jpeg_backend: str = "auto"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first invalid field."""
        probabilities = ("image_p", "downscale_p", "blur_p", "erase_p", "jitter_p", "greyscale_p")
        for name in (*probabilities, "jpeg_p"):
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


# --------------------------------------------------------------------------------------------------
# Per-sample parameters


@dataclass
class AugmentParams:
    """Parameters drawn for one batch: one entry per image (see :meth:`QualityAugmentation.sample`).

    Boolean masks say which images an operation touches; the numeric fields hold that image's
    draw (ignored where its mask is False).
    """

    jitter: Tensor
    brightness: Tensor
    contrast: Tensor
    saturation: Tensor
    greyscale: Tensor
    downscale: Tensor
    scale: Tensor
    blur: Tensor
    sigma: Tensor
    jpeg: Tensor
    quality: Tensor
    erase: Tensor
    erase_box: Tensor  # (B, 4) top, left, height, width in pixels

    def to(self, device: torch.device) -> AugmentParams:
        return AugmentParams(**{k: v.to(device) for k, v in self.__dict__.items()})


class QualityAugmentation:
    """Batched, per-sample degradations of face images for the quality branch.

    Images are (B, 3, H, W) float in [-1, 1] (the model's input scale) on any device; the output has
    the same shape, dtype and device. Order: colour jitter (brightness, contrast, saturation) ->
    greyscale -> downscale and back up -> Gaussian blur -> JPEG -> erasing. Every parameter is
    drawn per image from this object's own CPU ``torch.Generator`` (seeded by ``seed``), so a
    run is reproducible on any device and resumes exactly from :meth:`state_dict`. All random
    numbers of a batch are drawn whatever the probabilities, so switching one operation off does
    not change the others' draws.

    Downscaling and blurring are linear and separable: for each image they are folded into one
    (H, H) and one (W, W) matrix and applied as two batched matrix products, so images with
    different factors and sigmas run in one batch without a Python loop.
    """

    def __init__(self, config: AugmentConfig | None = None, seed: int = 0) -> None:
        self.config = config if config is not None else AugmentConfig()
        self.config.validate()
        self.seed = int(seed)
        self.generator = torch.Generator(device="cpu")
        self.generator.manual_seed(self.seed)

    # ------------------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """The RNG state (a uint8 tensor) and the seed."""
        return {"seed": self.seed, "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; raises :class:`CheckpointError` if it is malformed."""
        if not isinstance(state, dict) or "generator" not in state:
            raise CheckpointError("augmentation state must be a dict with a 'generator' entry")
        generator_state = state["generator"]
        if not isinstance(generator_state, Tensor) or generator_state.dtype != torch.uint8:
            raise CheckpointError("augmentation 'generator' state must be a uint8 tensor")
        try:
            self.generator.set_state(generator_state.cpu())
        except RuntimeError as error:
            raise CheckpointError(f"augmentation 'generator' state is invalid: {error}") from error
        self.seed = int(state.get("seed", self.seed))

    # ------------------------------------------------------------------------------- sampling
    def sample(self, batch: int, height: int, width: int) -> AugmentParams:
        """Draw every image's parameters (on the CPU) for a batch of ``batch`` images."""
        c, g = self.config, self.generator

        def uniform(low: float, high: float, shape: tuple[int, ...] = (batch,)) -> Tensor:
            return low + (high - low) * torch.rand(shape, generator=g, dtype=torch.float64)

        def chance(p: float) -> Tensor:
            return torch.rand(batch, generator=g, dtype=torch.float64) < (p if c.enabled else 0.0)

        jitter = chance(c.jitter_p)
        brightness = uniform(1 - c.brightness, 1 + c.brightness)
        contrast = uniform(1 - c.contrast, 1 + c.contrast)
        saturation = uniform(1 - c.saturation, 1 + c.saturation)
        greyscale = chance(c.greyscale_p)
        downscale = chance(c.downscale_p)
        scale = uniform(c.downscale_min, c.downscale_max)
        blur = chance(c.blur_p)
        sigma = uniform(c.blur_sigma_min, c.blur_sigma_max)
        jpeg = chance(c.jpeg_p)
        quality = torch.floor(uniform(c.jpeg_quality_min, c.jpeg_quality_max + 1)).clamp(
            max=c.jpeg_quality_max
        )
        erase = chance(c.erase_p)
        area = uniform(c.erase_area_min, c.erase_area_max)
        # The aspect range is narrowed per image so that the box fits: height share sqrt(a r) <= 1
        # and width share sqrt(a / r) <= 1, i.e. r in [a, 1/a]; log-uniform inside.
        low = torch.log(torch.clamp(area, min=c.erase_aspect_min))
        high = torch.log(torch.clamp(1.0 / area, max=c.erase_aspect_max))
        high = torch.maximum(high, low)
        aspect = torch.exp(low + (high - low) * torch.rand(batch, generator=g, dtype=torch.float64))
        box_h = torch.round(height * torch.sqrt(area * aspect)).clamp(1, height)
        box_w = torch.round(width * torch.sqrt(area / aspect)).clamp(1, width)
        top = torch.floor(uniform(0.0, 1.0) * (height - box_h + 1))
        left = torch.floor(uniform(0.0, 1.0) * (width - box_w + 1))
        erase_box = torch.stack([top, left, box_h, box_w], dim=1).long()
        if c.image_p < 1.0:  # drawn last and only then: the default keeps the paper's draws
            degraded = chance(c.image_p)
            jitter, greyscale, downscale = (
                jitter & degraded,
                greyscale & degraded,
                downscale & degraded,
            )
            blur, jpeg, erase = blur & degraded, jpeg & degraded, erase & degraded
        return AugmentParams(
            jitter=jitter,
            brightness=brightness,
            contrast=contrast,
            saturation=saturation,
            greyscale=greyscale,
            downscale=downscale & (scale < 1.0),
            scale=scale,
            blur=blur,
            sigma=sigma,
            jpeg=jpeg,
            quality=quality.float(),
            erase=erase,
            erase_box=erase_box,
        )

    # ------------------------------------------------------------------------------- apply
    def __call__(self, images: Tensor) -> Tensor:
        """Degrade a batch (B, 3, H, W) in [-1, 1]; returns a new tensor of the same shape."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images (B, 3, H, W), got {tuple(images.shape)}")
        batch, _, height, width = images.shape
        params = self.sample(batch, height, width)
        return self.apply(images, params)

    def apply(self, images: Tensor, params: AugmentParams) -> Tensor:
        """Apply the drawn parameters (deterministic).

        Each operation runs only on the images that drew it (index_select / index_copy); the
        choice is made on the CPU-side parameters, so no device synchronisation is needed.
        """
        dtype, device = images.dtype, images.device
        work = torch.promote_types(dtype, torch.float32)  # float16/bfloat16 run in float32
        x = (images.to(work) + 1.0) * 0.5
        params = params.to(torch.device("cpu"))

        def chosen(mask: Tensor) -> Tensor | None:
            index = mask.nonzero().squeeze(1)
            return index if index.numel() else None

        if (index := chosen(params.jitter)) is not None:
            factors = torch.stack([params.brightness, params.contrast, params.saturation], dim=1)
            factors = factors.index_select(0, index).to(device, work)
            index = index.to(device)
            x = x.index_copy(0, index, _colour_jitter(x.index_select(0, index), factors))
        if (index := chosen(params.greyscale)) is not None:
            index = index.to(device)
            x = x.index_copy(0, index, _grey(x.index_select(0, index)).expand(-1, 3, -1, -1))
        if (index := chosen(params.downscale | params.blur)) is not None:
            x = _resample_and_blur(x, params, index)
        if (index := chosen(params.jpeg)) is not None:
            quality = params.quality.index_select(0, index)
            index = index.to(device)
            coded = self._jpeg(x.index_select(0, index).clamp(0.0, 1.0), quality)
            x = x.index_copy(0, index, coded.to(work))
        if (index := chosen(params.erase)) is not None:
            x = _erase(x, params.erase_box, index, float(self.config.erase_value))
        return (x * 2.0 - 1.0).to(dtype)

    def _jpeg(self, x: Tensor, quality: Tensor) -> Tensor:
        backend = self.config.jpeg_backend
        if backend == "auto":
            backend = "cv2" if x.device.type == "cpu" else "kornia"
        if backend == "kornia":
            from kornia.enhance import jpeg_codec_differentiable

            return jpeg_codec_differentiable(x, quality.to(x.device, x.dtype))
        return _cv2_jpeg(x, quality)


# --------------------------------------------------------------------------------------------------
# Operations (pure functions of images in [0, 1] and parameters)

_LUMA = (0.299, 0.587, 0.114)


def _grey(x: Tensor) -> Tensor:
    """ITU-R 601 luma, (B, 1, H, W)."""
    r, g, b = x.unbind(1)
    return (_LUMA[0] * r + _LUMA[1] * g + _LUMA[2] * b).unsqueeze(1)


def _colour_jitter(x: Tensor, factors: Tensor) -> Tensor:
    """Brightness (scale), contrast (blend with the mean luma), saturation (blend with the luma);
    ``factors`` (N, 3) holds each image's three factors; clamped to [0, 1] after each step."""
    brightness, contrast, saturation = (f.view(-1, 1, 1, 1) for f in factors.unbind(1))
    out = (x * brightness).clamp(0.0, 1.0)
    mean = _grey(out).mean(dim=(2, 3), keepdim=True)
    out = ((out - mean) * contrast + mean).clamp(0.0, 1.0)
    grey = _grey(out)
    return ((out - grey) * saturation + grey).clamp(0.0, 1.0)


def area_matrix(length: int, sizes: Tensor, dtype: torch.dtype = torch.float64) -> Tensor:
    """(N, length, length) matrices; row k < n averages source pixels over [k L/n, (k+1) L/n)
    (an exact box filter); rows k >= n are zero. ``sizes`` holds n per image (1 <= n <= L)."""
    sizes = sizes.to(dtype).view(-1, 1, 1)
    k = torch.arange(length, dtype=dtype, device=sizes.device).view(1, -1, 1)
    src = torch.arange(length, dtype=dtype, device=sizes.device).view(1, 1, -1)
    step = length / sizes
    start, end = k * step, (k + 1) * step
    overlap = (torch.minimum(src + 1, end) - torch.maximum(src, start)).clamp(min=0.0)
    return torch.where(k < sizes, overlap / step, torch.zeros_like(overlap))


def bilinear_matrix(length: int, sizes: Tensor, dtype: torch.dtype = torch.float64) -> Tensor:
    """(N, length, length) matrices scaling an n-pixel signal (first n columns) up to ``length``
    pixels with linear interpolation, half-pixel centres (``align_corners=False``), edges clamped."""
    sizes = sizes.to(dtype).view(-1, 1, 1)
    j = torch.arange(length, dtype=dtype, device=sizes.device).view(1, -1, 1)
    col = torch.arange(length, dtype=dtype, device=sizes.device).view(1, 1, -1)
    position = ((j + 0.5) * sizes / length - 0.5).clamp(min=0.0)
    position = torch.minimum(position, sizes - 1)
    lower = torch.floor(position)
    frac = position - lower
    upper = torch.minimum(lower + 1, sizes - 1)
    return (col == lower) * (1 - frac) + (col == upper) * frac


def gaussian_matrix(
    length: int, sigma: Tensor, radius: int, dtype: torch.dtype = torch.float64
) -> Tensor:
    """(N, length, length) Gaussian blur matrices with reflect borders (edge pixel not repeated);
    image i uses the taps within ceil(3 sigma_i) (``radius`` >= all of them; capped at L - 1),
    normalised to sum 1."""
    radius = max(0, min(length - 1, int(radius)))
    sigma = sigma.to(dtype).view(-1, 1, 1)
    taps = torch.arange(-radius, radius + 1, dtype=dtype, device=sigma.device).view(1, 1, -1)
    kernel = torch.exp(-0.5 * (taps / sigma) ** 2) * (taps.abs() <= torch.ceil(3 * sigma))
    kernel = kernel / kernel.sum(dim=2, keepdim=True)  # (N, 1, T)
    rows = torch.arange(length, device=sigma.device).view(-1, 1)
    source = (rows + torch.arange(-radius, radius + 1, device=sigma.device).view(1, -1)).abs()
    source = torch.where(source > length - 1, 2 * (length - 1) - source, source)  # (L, T)
    n = sigma.shape[0]
    matrix = torch.zeros(n, length, length, dtype=dtype, device=sigma.device)
    index = source.unsqueeze(0).expand(n, -1, -1)
    return matrix.scatter_add_(2, index, kernel.expand(-1, length, -1).contiguous())


def resample_matrix(
    length: int,
    scale: Tensor,
    downscale: Tensor,
    sigma: Tensor,
    blur: Tensor,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """Per-image (N, L, L) operator ``blur o upscale o downscale`` (a factor is the identity where
    its mask is off), built on ``device`` from CPU-side parameters."""
    n = scale.shape[0]
    sizes = torch.round(scale.double() * length).clamp(1, length)
    sizes = torch.where(downscale, sizes, torch.full_like(sizes, length))
    eye = torch.eye(length, dtype=dtype, device=device).expand(n, -1, -1)
    operator = eye
    if bool(downscale.any()):
        sizes = sizes.to(device)
        resample = torch.bmm(
            bilinear_matrix(length, sizes, dtype), area_matrix(length, sizes, dtype)
        )
        operator = torch.where(downscale.to(device).view(-1, 1, 1), resample, eye)
    if bool(blur.any()):
        radius = int(torch.ceil(3 * sigma[blur].max()).item())
        gauss = gaussian_matrix(length, sigma.to(device), radius, dtype)
        operator = torch.where(blur.to(device).view(-1, 1, 1), torch.bmm(gauss, operator), operator)
    return operator


def _resample_and_blur(x: Tensor, p: AugmentParams, index: Tensor) -> Tensor:
    """Apply each chosen image's (H, H) and (W, W) operators: ``A_h @ X @ A_w^T`` per channel."""
    height, width = x.shape[2], x.shape[3]
    args = [t.index_select(0, index) for t in (p.scale, p.downscale, p.sigma, p.blur)]
    options = {"device": x.device, "dtype": x.dtype}
    rows = resample_matrix(height, *args, **options)
    cols = rows if width == height else resample_matrix(width, *args, **options)
    index = index.to(x.device)
    part = x.index_select(0, index)
    part = torch.matmul(rows.unsqueeze(1), torch.matmul(part, cols.transpose(1, 2).unsqueeze(1)))
    return x.index_copy(0, index, part.clamp(0.0, 1.0))


def _erase(x: Tensor, boxes: Tensor, index: Tensor, value: float) -> Tensor:
    """Fill each chosen image's box (top, left, height, width) with ``value``."""
    height, width = x.shape[2], x.shape[3]
    top, left, box_h, box_w = (
        t.view(-1, 1, 1).to(x.device) for t in boxes.index_select(0, index).unbind(1)
    )
    rows = torch.arange(height, device=x.device).view(1, -1, 1)
    cols = torch.arange(width, device=x.device).view(1, 1, -1)
    inside = (rows >= top) & (rows < top + box_h) & (cols >= left) & (cols < left + box_w)
    index = index.to(x.device)
    part = x.index_select(0, index).masked_fill(inside.unsqueeze(1), value)
    return x.index_copy(0, index, part)


def _cv2_jpeg(x: Tensor, quality: Tensor) -> Tensor:
    """Real JPEG (libjpeg through OpenCV), one image at a time on the CPU."""
    import cv2
    import numpy as np

    pixels = (x.detach().permute(0, 2, 3, 1).cpu().numpy() * 255.0 + 0.5).astype(np.uint8)
    out = np.empty_like(pixels)
    for i, (image, q) in enumerate(zip(pixels, quality.tolist(), strict=True)):
        ok, encoded = cv2.imencode(".jpg", image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(q)])
        if not ok:
            raise RuntimeError("OpenCV failed to encode a JPEG")
        out[i] = cv2.imdecode(encoded, cv2.IMREAD_COLOR)[:, :, ::-1]
    return torch.from_numpy(out).to(x.device).permute(0, 3, 1, 2).to(x.dtype) / 255.0
