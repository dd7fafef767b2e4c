"""Procedural identity-labelled faces: the project's embedded default data (no download needed).

Image ``(identity i, sample j)`` is a pure function of ``(seed, i, j)`` and of the image size. The
generator is built so that, as with real faces, **identity lives in fine structure that camera
degradations destroy**, while coarse appearance is a poor identity cue (docs/formats.md,
"Synthetic faces", has the calibration):

- **Identity** (drawn from ``(seed, i)``): the shape of the eyes (size, tilt, lid), brows (arch,
  thickness, length, slant), nose (length, bridge, tip, nostrils), mouth (width, lip thickness, bow)
  and face outline (axes, jaw, chin); iris and lip colour; a pattern of freckles and moles; and a
  skin texture with pore-scale grain. These are details of a few pixels at 112x112: blur, low resolution, noise, JPEG and occlusion
  erase them.
- **Coarse attributes**, deliberately weak cues: skin tone from four shared clusters, hair colour
  and style from a small shared palette (many identities share each combination); glasses,
  background, clothing and illumination are drawn per image, so they vary within an identity.
- **Nuisance** (drawn from ``(seed, i, j)``): pose (yaw as a cylindrical warp of the head, pitch,
  roll), expression (smile, open mouth, eye openness, raised brows), illumination direction, strength
  and colour, a small misalignment (shift, scale) and mild sensor noise, all scaled by
  :data:`NUISANCE_SCALE`.
- **Degradation** with a known severity ``s`` in [0, 1] (:data:`DEGRADATIONS`): defocus and motion
  blur, low resolution, sensor noise, JPEG, occlusion by an object (hand, mask, sunglasses, hair,
  object), under/over exposure and extreme pose. :data:`CLEAN_SHARE` (40 %) of the images are
  clean; the others get one kind with ``s ~ U(0, 1)``, and a quarter of those a second kind. The **ground-truth quality**
  is ``prod_k (1 - s_k)`` (1 = clean).
- **Low-variance identities**: a ``low_variance_share`` of identities whose nuisance is scaled down to
  :data:`LOW_VARIANCE_SCALE` of the normal range and whose samples all share the identity's single
  degradation (kind, severity and its random details), so they share one ground-truth quality.
  Membership depends only on ``(seed, i)`` and follows a low-discrepancy sequence, so any block of
  identities has the share to within a few identities.

Images are drawn directly at ``image_size`` (coordinates scaled by ``image_size / 112``), so small
sizes are fast. Rendering uses OpenCV primitives only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from igfiqa.data.align import ARCFACE_TEMPLATE
from igfiqa.errors import ConfigError

DEGRADATIONS = (
    "defocus",
    "motion",
    "downscale",
    "noise",
    "jpeg",
    "occlusion",
    "exposure",
    "pose",
)
"""Degradation kinds, each driven by a severity in [0, 1] (0 = no change)."""

OCCLUDERS = ("hand", "mask", "sunglasses", "hair", "object")
"""Objects that the ``occlusion`` degradation puts in front of the face."""

CLEAN_SHARE = 0.4
"""Share of ordinary images without any degradation."""

SECOND_DEGRADATION_SHARE = 0.25
"""Share of degraded images that get a second, different kind."""

NUISANCE_SCALE = 0.4
"""Amplitude of every nuisance relative to the ranges written in ``_draw``: small enough that a tiny FR
model trained in minutes recognises clean faces (clean-pair FNMR measured by the demo)."""

LOW_VARIANCE_SCALE = 0.12
"""Nuisance amplitude of low-variance identities relative to normal identities."""

TEXTURE_GRID = 16
"""Resolution of the identity's skin texture field (cells of 7x7 pixels at 112x112)."""

_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0
_SHIFT = 4  # OpenCV sub-pixel drawing: coordinates in 1/16 pixel
_ONE = 1 << _SHIFT
_SKIN_TONES = np.array([[232, 196, 170], [205, 160, 125], [160, 110, 75], [100, 66, 45]], float)
_HAIR_COLOURS = np.array(
    [[28, 22, 20], [75, 50, 30], [140, 95, 55], [210, 175, 110], [150, 150, 155]], float
)


@dataclass(frozen=True, eq=False)
class IdentityParameters:
    """The shape, colour and texture parameters of one synthetic identity (112x112 units)."""

    skin: tuple[float, float, float]
    texture: np.ndarray  # (TEXTURE_GRID, TEXTURE_GRID) zero-mean field, unit std
    texture_strength: float
    grain_seed: int  # seeds the identity's pore-scale skin grain, drawn at the image size
    grain_strength: float
    head_center_y: float
    head_axes: tuple[float, float]
    jaw: float  # 0 round .. 1 narrow
    chin: float  # chin length
    ear_size: float
    hair: tuple[float, float, float]
    hair_style: int  # 0 short, 1 long, 2 fringe, 3 receding
    hairline: float
    eye_dx: float  # change of half eye distance
    eye_dy: float
    eye_size: tuple[float, float]
    eye_tilt: float  # degrees, outer corner up > 0
    eye_lid: float  # 0..1 heaviness of the upper lid
    iris: tuple[float, float, float]
    iris_scale: float
    brow_lift: float
    brow_thickness: float
    brow_arch: float
    brow_length: float
    brow_slant: float
    nose_length: float
    nose_width: float
    nose_bridge: float
    nose_tip: float
    mouth_dy: float
    mouth_width: float
    upper_lip: float
    lower_lip: float
    lip_bow: float
    lips: tuple[float, float, float]
    marks: np.ndarray  # (n, 4): x, y, radius, darkness of freckles and moles
    beard: float  # 0 none .. 1 full
    low_variance: bool
    fixed_degradation: tuple[tuple[str, float], ...]


def identity_parameters(
    seed: int, identity: int, low_variance_share: float = 0.0
) -> IdentityParameters:
    """The parameters of ``identity`` under ``seed`` (a pure function, cached)."""
    return _identity_parameters(int(seed), int(identity), float(low_variance_share))


def is_low_variance(seed: int, identity: int, low_variance_share: float) -> bool:
    """Whether ``identity`` is low-variance: ``frac(u(seed) + identity * golden) < share``."""
    offset = np.random.default_rng([int(seed), 7]).random()
    return ((offset + identity * _GOLDEN) % 1.0) < low_variance_share


@lru_cache(maxsize=8192)
def _identity_parameters(seed: int, identity: int, share: float) -> IdentityParameters:
    rng = np.random.default_rng([seed, 0, identity])
    u = rng.uniform
    skin = np.clip(_SKIN_TONES[rng.integers(len(_SKIN_TONES))] + rng.normal(0, 6, 3), 30, 250)
    hair = _HAIR_COLOURS[rng.integers(len(_HAIR_COLOURS))]
    texture = rng.standard_normal((TEXTURE_GRID, TEXTURE_GRID)).astype(np.float32)
    low = is_low_variance(seed, identity, share)
    degradation = _draw_degradation(rng, always=True) if low else ()
    count = int(rng.integers(2, 6))
    marks = np.stack(
        [
            u(20, 92, count),  # x
            u(36, 98, count),  # y: forehead to chin
            u(2.0, 3.5, count),  # radius
            u(0.35, 0.7, count),  # remaining brightness
        ],
        axis=1,
    )
    lip_colour = skin * rng.uniform([0.7, 0.4, 0.4], [1.0, 0.75, 0.8])
    return IdentityParameters(
        skin=tuple(skin),
        texture=texture,
        texture_strength=float(u(0.05, 0.10)),
        grain_seed=int(rng.integers(2**31)),
        grain_strength=float(u(0.04, 0.08)),
        head_center_y=float(u(58, 64)),
        head_axes=(float(u(44, 54)), float(u(44, 52))),
        jaw=float(u(0, 1)),
        chin=float(u(0, 1)),
        ear_size=float(u(5, 9)),
        hair=tuple(hair),
        hair_style=int(rng.integers(0, 4)),
        hairline=float(u(14, 26)),
        eye_dx=float(u(-3.0, 3.0)),
        eye_dy=float(u(-2.0, 2.0)),
        eye_size=(float(u(4.5, 9.0)), float(u(1.8, 4.2))),
        eye_tilt=float(u(-15, 15)),
        eye_lid=float(u(0, 1)),
        iris=tuple(rng.uniform([40, 30, 20], [110, 130, 160])),
        iris_scale=float(u(0.75, 1.1)),
        brow_lift=float(u(6, 11)),
        brow_thickness=float(u(1.0, 4.0)),
        brow_arch=float(u(-1.0, 4.0)),
        brow_length=float(u(0.9, 1.5)),
        brow_slant=float(u(-3, 3)),
        nose_length=float(u(-4, 4)),
        nose_width=float(u(4, 11)),
        nose_bridge=float(u(0.8, 2.2)),
        nose_tip=float(u(1.5, 3.5)),
        mouth_dy=float(u(-3, 3)),
        mouth_width=float(u(-7, 7)),
        upper_lip=float(u(0.8, 3.2)),
        lower_lip=float(u(1.4, 4.8)),
        lip_bow=float(u(0, 1.5)),
        lips=tuple(np.clip(lip_colour, 20, 250)),
        marks=marks.astype(np.float32),
        beard=float(u(0.3, 1.0)) if rng.random() < 0.15 else 0.0,
        low_variance=low,
        fixed_degradation=degradation,
    )


def _draw_degradation(
    rng: np.random.Generator, *, always: bool = False
) -> tuple[tuple[str, float], ...]:
    """No degradation (share :data:`CLEAN_SHARE`, unless ``always``), else one or two kinds."""
    clean = rng.random() < CLEAN_SHARE
    first = DEGRADATIONS[int(rng.integers(len(DEGRADATIONS)))]
    severity = float(rng.random())
    second = rng.random() < SECOND_DEGRADATION_SHARE
    other = int(rng.integers(len(DEGRADATIONS) - 1))
    severity_2 = float(rng.random())
    if clean and not always:
        return ()
    chosen = [(first, severity)]
    if second:
        others = [kind for kind in DEGRADATIONS if kind != first]
        chosen.append((others[other], severity_2))
    return tuple(chosen)


def ground_truth_quality(degradations: tuple[tuple[str, float], ...]) -> float:
    """``prod_k (1 - s_k)`` over the (kind, severity) pairs applied to an image."""
    quality = 1.0
    for _, severity in degradations:
        quality *= 1.0 - severity
    return float(quality)


# -- drawing helpers (coordinates in 112x112 template units, scaled by `k`) -------------------------


def _pt(x: float, y: float, k: float) -> tuple[int, int]:
    return (round(x * k * _ONE), round(y * k * _ONE))


def _ax(a: float, b: float, k: float) -> tuple[int, int]:
    return (max(round(a * k * _ONE), 1), max(round(b * k * _ONE), 1))


def _ellipse(img, c, axes, k, color, angle=0.0, start=0.0, end=360.0, thickness=-1):
    t = thickness if thickness < 0 else max(round(thickness * k), 1)
    cv2.ellipse(img, _pt(*c, k), _ax(*axes, k), angle, start, end, color, t, cv2.LINE_AA, _SHIFT)


def _poly(img, points, k, color):
    pts = np.round(np.asarray(points, np.float64) * k * _ONE).astype(np.int32)
    cv2.fillPoly(img, [pts], color, cv2.LINE_AA, _SHIFT)


def _polyline(img, points, k, color, thickness):
    pts = np.round(np.asarray(points, np.float64) * k * _ONE).astype(np.int32)
    cv2.polylines(img, [pts], False, color, max(round(thickness * k), 1), cv2.LINE_AA, _SHIFT)


def _line(img, a, b, k, color, thickness):
    cv2.line(img, _pt(*a, k), _pt(*b, k), color, max(round(thickness * k), 1), cv2.LINE_AA, _SHIFT)


def _shade(color, factor):
    return tuple(float(min(max(c * factor, 0.0), 255.0)) for c in color)


def _arc(x0: float, x1: float, y: float, bulge: float, n: int = 7) -> np.ndarray:
    """Points of a parabolic arc from (x0, y) to (x1, y) rising by ``bulge`` in the middle."""
    t = np.linspace(0.0, 1.0, n)
    return np.stack([x0 + (x1 - x0) * t, y - bulge * 4 * t * (1 - t)], axis=1)


def pose_maps(size: int, yaw: float, pitch: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """``cv2.remap`` maps that turn a frontal head by ``yaw`` (radians, + = to the image's right).

    The head is a vertical cylinder of radius 46 template units about x = 56: an output pixel at
    angle ``phi = asin((x - 56) / R)`` shows the frontal image at angle ``phi - yaw``; ``pitch``
    (radians) does the same about a horizontal axis at y = 60. Outside the cylinder the maps taper
    back to the identity so the background stays continuous.
    """
    k = size / 112.0
    coords = (np.arange(size, dtype=np.float32) + 0.5) / k - 0.5 / k
    x = _cylinder(coords, 56.0, 46.0, yaw)
    y = _cylinder(coords, 60.0, 52.0, pitch)
    map_x = np.broadcast_to((x * k)[None, :], (size, size))
    map_y = np.broadcast_to((y * k)[:, None], (size, size))
    return np.ascontiguousarray(map_x), np.ascontiguousarray(map_y)


def _cylinder(coords: np.ndarray, centre: float, radius: float, angle: float) -> np.ndarray:
    rel = np.clip((coords - centre) / radius, -1.0, 1.0)
    phi = np.arcsin(rel) - angle
    source = centre + radius * np.sin(np.clip(phi, -math.pi / 2, math.pi / 2))
    weight = np.clip(1.5 - np.abs(coords - centre) / radius, 0.0, 1.0)  # taper beyond R
    return (coords + (source - coords) * weight).astype(np.float32)


MAX_SYNTHETIC_IMAGES = 20_000_000
"""Largest synthetic data set: its label arrays (8 bytes per image) stay under 200 MB."""


class SyntheticFaces:
    """Identities ``first_identity .. first_identity + num_identities - 1``, each with
    ``samples_per_identity`` images; labels are ``identity - first_identity``.

    ``render(identity, sample)`` takes the global identity number, so the same identity looks the same
    in any generator with the same seed (the train/test split relies on this).
    """

    def __init__(
        self,
        num_identities: int,
        samples_per_identity: int,
        *,
        seed: int = 0,
        image_size: int = 112,
        low_variance_share: float = 0.2,
        first_identity: int = 0,
    ) -> None:
        if num_identities < 1 or samples_per_identity < 1:
            raise ConfigError(
                f"synthetic faces need identities >= 1 and samples >= 1, got "
                f"{num_identities} and {samples_per_identity}"
            )
        if not 16 <= image_size <= 1024:
            raise ConfigError(f"synthetic image_size must be in [16, 1024], got {image_size}")
        if not 0.0 <= low_variance_share <= 1.0:
            raise ConfigError(f"low_variance_share must be in [0, 1], got {low_variance_share}")
        if not 0 <= first_identity < 2**31:
            raise ConfigError(f"first_identity must be in [0, 2**31), got {first_identity}")
        if not 0 <= seed < 2**31:
            raise ConfigError(f"synthetic seed must be in [0, 2**31), got {seed}")
        if num_identities * samples_per_identity > MAX_SYNTHETIC_IMAGES:
            raise ConfigError(
                f"synthetic faces: {num_identities} identities x {samples_per_identity} samples = "
                f"{num_identities * samples_per_identity:,} images, more than the "
                f"{MAX_SYNTHETIC_IMAGES:,} allowed (MS1MV2 has 5.8M); ask for fewer"
            )
        self.num_identities = int(num_identities)
        self.samples_per_identity = int(samples_per_identity)
        self.seed = int(seed)
        self.image_size = int(image_size)
        self.low_variance_share = float(low_variance_share)
        self.first_identity = int(first_identity)
        self._ramp = np.linspace(-1.0, 1.0, self.image_size, dtype=np.float32)
        self._skin_cache: dict[IdentityParameters, np.ndarray] = {}

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_skin_cache"] = {}  # a cache (up to ~77 MB at 112 px): rebuilt in each process
        return state

    # -- indexing ---------------------------------------------------------------------------------

    def __len__(self) -> int:
        return self.num_identities * self.samples_per_identity

    @property
    def identities(self) -> np.ndarray:
        """The global identity numbers of this generator, in label order."""
        return np.arange(self.first_identity, self.first_identity + self.num_identities)

    @property
    def labels(self) -> np.ndarray:
        """Label of every flat index (``index // samples_per_identity``)."""
        return np.repeat(np.arange(self.num_identities, dtype=np.int64), self.samples_per_identity)

    def locate(self, index: int) -> tuple[int, int]:
        """Flat index -> (global identity, sample)."""
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} synthetic images")
        label, sample = divmod(int(index), self.samples_per_identity)
        return self.first_identity + label, sample

    def is_low_variance(self, identity: int) -> bool:
        """Whether the global ``identity`` is one of the low-variance identities."""
        return is_low_variance(self.seed, identity, self.low_variance_share)

    def split(self, test_share: float = 0.2) -> tuple[SyntheticFaces, SyntheticFaces]:
        """Split by identity: the first identities train, the last ``test_share`` of them test."""
        num_test = round(self.num_identities * test_share)
        if not 0 < num_test < self.num_identities:
            raise ConfigError(
                f"test_share {test_share} leaves no identity on one side of the split "
                f"({self.num_identities} identities)"
            )
        common = dict(
            samples_per_identity=self.samples_per_identity,
            seed=self.seed,
            image_size=self.image_size,
            low_variance_share=self.low_variance_share,
        )
        train = SyntheticFaces(
            self.num_identities - num_test, first_identity=self.first_identity, **common
        )
        test = SyntheticFaces(
            num_test, first_identity=self.first_identity + self.num_identities - num_test, **common
        )
        return train, test

    # -- rendering --------------------------------------------------------------------------------

    def degradations(self, identity: int, sample: int) -> tuple[tuple[str, float], ...]:
        """The (kind, severity) pairs applied to image (identity, sample)."""
        params = identity_parameters(self.seed, identity, self.low_variance_share)
        if params.low_variance:
            return params.fixed_degradation
        return _draw_degradation(np.random.default_rng([self.seed, 2, identity, sample]))

    def render(self, identity: int, sample: int) -> tuple[np.ndarray, float]:
        """Image (identity, sample) as RGB uint8 ``(S, S, 3)`` and its ground-truth quality."""
        clean = self.render_clean(identity, sample)
        degradations = self.degradations(identity, sample)
        params = identity_parameters(self.seed, identity, self.low_variance_share)
        # Low-variance identities also share the degradation's randomness (occluder placement,
        # exposure direction, noise pattern), so their images really barely vary.
        key = [self.seed, 3, identity] if params.low_variance else [self.seed, 3, identity, sample]
        rng = np.random.default_rng(key)
        image = clean
        for kind, severity in degradations:
            image = degrade(image, kind, severity, rng, skin=params.skin)
        return image, ground_truth_quality(degradations)

    def render_clean(self, identity: int, sample: int) -> np.ndarray:
        """Image (identity, sample) with its nuisance but without degradation."""
        params = identity_parameters(self.seed, identity, self.low_variance_share)
        rng = np.random.default_rng([self.seed, 1, identity, sample])
        amp = LOW_VARIANCE_SCALE if params.low_variance else 1.0
        return self._draw(params, rng, amp * NUISANCE_SCALE)

    def render_frontal(self, identity: int) -> tuple[np.ndarray, np.ndarray]:
        """The identity without nuisance or degradation, and its five landmarks (5, 2) in pixels
        (eye centres, nose tip, mouth corners as drawn): exact ground truth for detectors."""
        params = identity_parameters(self.seed, identity, self.low_variance_share)
        image = self._draw(params, np.random.default_rng([self.seed, 4, identity]), 0.0)
        t = ARCFACE_TEMPLATE
        nose_y = t[2, 1] + params.nose_length * 0.5 - 1.0
        mouth_y = (t[3, 1] + t[4, 1]) / 2 + params.mouth_dy - 1.0
        half = (t[4, 0] - t[3, 0]) / 2 + params.mouth_width * 0.5
        points = np.array(
            [
                [t[0, 0] - params.eye_dx, t[0, 1] + params.eye_dy],
                [t[1, 0] + params.eye_dx, t[1, 1] + params.eye_dy],
                [t[2, 0] * 0.5 + 28.0, nose_y],
                [56.0 - half, mouth_y],
                [56.0 + half, mouth_y],
            ]
        )
        # drawing coordinates are template units scaled by k, with pixel centres at integers
        return image, points * (self.image_size / 112.0)

    def _skin_layer(self, p: IdentityParameters) -> np.ndarray:
        """The identity's textured skin at this image size, float32 RGB (cached per identity)."""
        layer = self._skin_cache.get(p)
        if layer is None:
            size = self.image_size
            texture = cv2.resize(p.texture, (size, size), interpolation=cv2.INTER_LINEAR)
            # Pore-scale grain at about 1 px of a 112 crop: real skin is never flat, so fine texture
            # is a sign of a sharp image, not of noise.
            grain = np.random.default_rng(p.grain_seed).standard_normal((112, 112), np.float32)
            grain = cv2.resize(cv2.GaussianBlur(grain, (0, 0), 0.7), (size, size),
                               interpolation=cv2.INTER_AREA)  # fmt: skip
            grain *= p.grain_strength / max(float(grain.std()), 1e-6)
            skin = np.asarray(p.skin, np.float32)[None, None, :]
            layer = skin * (1.0 + p.texture_strength * texture[:, :, None] + grain[:, :, None])
            layer = np.clip(layer, 0, 255).astype(np.uint8)
            if len(self._skin_cache) >= 2048:
                self._skin_cache.clear()
            self._skin_cache[p] = layer
        return layer

    def _draw(self, p: IdentityParameters, rng: np.random.Generator, amp: float) -> np.ndarray:
        size = self.image_size
        k = size / 112.0
        u = rng.uniform
        # Nuisance draws (always the same number of draws, so each sample is reproducible).
        yaw, pitch = u(-0.12, 0.12) * amp, u(-0.08, 0.08) * amp
        smile, mouth_open = u(-0.8, 0.8) * amp, max(u(-1, 0.8), 0.0) * amp
        eye_open, brow_raise = 1.0 - 0.4 * u(0, 1) * amp, u(-0.8, 0.8) * amp
        light_dir = u(-0.8, 0.8, 2) * amp
        light_strength = 0.1 + 0.25 * u(0, 1) * amp
        gain = 1.0 + 0.2 * u(-1, 1) * amp
        tint = 1.0 + u(-1, 1, 3) * 0.05 * amp
        roll, zoom = u(-1, 1) * 2.5 * amp, 1.0 + u(-1, 1) * 0.025 * amp
        shift = u(-1, 1, 2) * 1.2 * amp
        wear_glasses = u(0, 1) < 0.12
        sensor = u(0.5, 3.0)
        glasses = (int(rng.integers(0, 2)), u(0, 200, 3))
        bg = u(50, 210, 3) + np.stack([np.zeros(3), u(-35, 35, 3)])
        blobs = u(0, 1, (3, 6))
        clothes = u(20, 230, 3)
        # Hair as photographed: its lightness varies, and one image in four shows another style.
        hair = _shade(p.hair, 1.0 + 0.3 * u(-1, 1) * amp)
        style = int(rng.integers(0, 4)) if u(0, 1) < 0.2 * amp else p.hair_style
        if p.low_variance:  # a nearly fixed background and clothing too
            fixed = np.random.default_rng(np.frombuffer(p.marks.tobytes()[:16], np.uint32)).uniform(
                20, 235, (3, 3)
            )
            bg = fixed[:2] * (1 - amp) + bg * amp
            clothes = fixed[2] * (1 - amp) + clothes * amp
            wear_glasses = False

        img = self._background(bg, blobs)
        cx, cy = 56.0, p.head_center_y
        rx, ry = p.head_axes
        skin = p.skin
        # Shoulders, neck, hair behind the head, ears.
        _ellipse(img, (56, 130), (54, 24), k, tuple(clothes))
        _poly(img, [(45, 90), (67, 90), (69, 118), (43, 118)], k, _shade(skin, 0.8))
        if style == 1:
            _ellipse(img, (cx, cy + 8), (rx + 6, ry + 8), k, hair)
        for side in (-1, 1):
            _ellipse(img, (cx + side * (rx - 1), cy + 4), (p.ear_size * 0.55, p.ear_size), k, skin)
        # Head: the identity's textured skin inside the face outline.
        face_mask = np.zeros((size, size), np.uint8)
        _ellipse(face_mask, (cx, cy - 4), (rx, ry - 4), k, 255)
        jaw_half = rx * (0.95 - 0.45 * p.jaw)
        chin_y = cy + ry + 1 + 3 * p.chin
        _poly(
            face_mask,
            [
                (cx - rx, cy),
                (cx + rx, cy),
                (cx + jaw_half, chin_y - 8),
                (cx + jaw_half * 0.45, chin_y),
                (cx - jaw_half * 0.45, chin_y),
                (cx - jaw_half, chin_y - 8),
            ],
            k,
            255,
        )
        np.copyto(img, self._skin_layer(p), where=face_mask[:, :, None] > 127)
        # Freckles and moles.
        for mx, my, r, dark in p.marks:
            _ellipse(img, (mx, my), (r, r), k, _shade(skin, float(dark)))
        # Eyes and brows around the template eye points.
        for side, (tx, ty) in ((-1, ARCFACE_TEMPLATE[0]), (1, ARCFACE_TEMPLATE[1])):
            self._eye(img, p, k, side, tx + side * p.eye_dx, ty + p.eye_dy, eye_open, brow_raise)
        self._nose(img, p, k)
        self._mouth(img, p, k, smile, mouth_open)
        self._hair(img, p, k, hair, style)
        if wear_glasses:
            self._glasses(img, p, k, *glasses)
        # Illumination: a Lambertian head under a directional light, plus gain and colour tint.
        img = self._light(img, p, light_dir, light_strength, gain, tint)
        # Pose and misalignment in one resampling.
        map_x, map_y = pose_maps(size, yaw, pitch)
        if amp > 0:
            matrix = cv2.getRotationMatrix2D((size / 2.0, size / 2.0), roll, zoom)
            matrix[:, 2] += shift * k
            inverse = cv2.invertAffineTransform(matrix)
            inverse = inverse.astype(np.float32)
            grid = np.arange(size, dtype=np.float32)
            ax = inverse[0, 0] * grid[None, :] + inverse[0, 1] * grid[:, None] + inverse[0, 2]
            ay = inverse[1, 0] * grid[None, :] + inverse[1, 1] * grid[:, None] + inverse[1, 2]
            # The pose maps are separable, so composing them with the affine map is interpolation.
            map_x = np.interp(ax, grid, map_x[0]).astype(np.float32)
            map_y = np.interp(ay, grid, map_y[:, 0]).astype(np.float32)
        img = cv2.remap(img, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
        # Every camera adds a little sensor noise, even to a good image.
        return cv2.add(img, (rng.standard_normal(img.shape, np.float32) * sensor).astype(np.int16),
                       dtype=cv2.CV_8U)  # fmt: skip

    def _background(self, colours: np.ndarray, blobs: np.ndarray) -> np.ndarray:
        """A two-colour gradient with a few soft blobs of clutter."""
        size = self.image_size
        k = size / 112.0
        ramp = (self._ramp[:, None] + 1.0) / 2.0
        line = colours[0][None, :] * (1 - ramp) + colours[1][None, :] * ramp
        if colours[0, 0] > colours[1, 0]:
            img = np.broadcast_to(line[None, :, :], (size, size, 3))
        else:
            img = np.broadcast_to(line[:, None, :], (size, size, 3))
        img = np.ascontiguousarray(img, dtype=np.uint8)
        for bx, by, br, c0, c1, c2 in blobs:
            # Low-contrast clutter near the background's own colour, as behind most portraits.
            mix = 0.7 * colours[0] + 0.3 * 255 * np.array([c0, c1, c2])
            colour = tuple(float(c) for c in mix)
            _ellipse(img, (bx * 112, by * 112), (5 + 12 * br, 4 + 9 * br), k, colour)
        return cv2.GaussianBlur(img, (0, 0), sigmaX=2.0 * k)

    def _eye(self, img, p, k, side, ex, ey, eye_open, brow_raise) -> None:
        erx, ery = p.eye_size
        tilt = -side * p.eye_tilt
        open_ry = max(ery * eye_open, 0.4)
        _ellipse(img, (ex, ey), (erx, open_ry), k, (240, 238, 232), angle=tilt)
        if eye_open > 0.3:
            iris_r = min(ery * 1.15, erx * 0.62) * p.iris_scale
            _ellipse(img, (ex, ey), (iris_r, min(iris_r, open_ry)), k, p.iris)
            _ellipse(img, (ex, ey), (iris_r * 0.45, min(iris_r * 0.45, open_ry)), k, (12, 12, 12))
        lid = _shade(p.skin, 0.4)
        # Upper lid: a line whose thickness is the identity's lid heaviness.
        _ellipse(img, (ex, ey), (erx, open_ry), k, lid, angle=tilt, start=180, end=360,
                 thickness=0.8 + 1.2 * p.eye_lid)  # fmt: skip
        _ellipse(img, (ex, ey + 0.8), (erx * 0.9, open_ry + 0.8), k, _shade(p.skin, 0.82),
                 angle=tilt, start=20, end=160, thickness=0.7)  # fmt: skip
        # Brow: an arched line above the eye.
        by = ey - p.brow_lift - 1.5 * brow_raise
        inner, outer = ex - side * erx * 0.9, ex + side * erx * p.brow_length
        arc = _arc(inner, outer, by, p.brow_arch)
        arc[:, 1] += np.linspace(0.5, -0.5, len(arc)) * p.brow_slant
        _polyline(img, arc, k, _shade(p.hair, 0.85), p.brow_thickness)

    def _nose(self, img, p, k) -> None:
        nx = ARCFACE_TEMPLATE[2, 0] * 0.5 + 28.0
        ny = ARCFACE_TEMPLATE[2, 1] + p.nose_length * 0.5
        top = ny - 16 - p.nose_length * 0.5
        dark, light = _shade(p.skin, 0.78), _shade(p.skin, 1.12)
        for side in (-1, 1):
            _line(img, (nx + side * p.nose_bridge, top), (nx + side * p.nose_width * 0.4, ny - 2),
                  k, dark, 0.9)  # fmt: skip
        _ellipse(img, (nx, ny - 1), (p.nose_tip, p.nose_tip * 0.8), k, light)
        for side in (-1, 1):
            _ellipse(img, (nx + side * p.nose_width * 0.45, ny + 1.2), (1.5, 0.9), k,
                     _shade(p.skin, 0.5), angle=side * 20)  # fmt: skip

    def _mouth(self, img, p, k, smile, mouth_open) -> None:
        mx = 56.0
        my = (ARCFACE_TEMPLATE[3, 1] + ARCFACE_TEMPLATE[4, 1]) / 2 + p.mouth_dy - 1
        half = (ARCFACE_TEMPLATE[4, 0] - ARCFACE_TEMPLATE[3, 0]) / 2 + p.mouth_width * 0.5
        lift = smile * 2.5
        gap = mouth_open * 3.0
        upper = [
            (mx - half, my - lift),
            (mx - half * 0.4, my - p.upper_lip - 0.3),
            (mx, my - p.upper_lip + p.lip_bow * 0.7),
            (mx + half * 0.4, my - p.upper_lip - 0.3),
            (mx + half, my - lift),
            (mx, my - gap * 0.5 + 0.4),
        ]
        lower = [
            (mx - half, my - lift),
            (mx, my + gap * 0.5 - 0.4),
            (mx + half, my - lift),
            (mx + half * 0.5, my + gap * 0.5 + p.lower_lip),
            (mx - half * 0.5, my + gap * 0.5 + p.lower_lip),
        ]
        if gap > 0.5:
            _ellipse(img, (mx, my), (half * 0.8, gap * 0.5 + 0.3), k, (70, 25, 30))
        _poly(img, upper, k, p.lips)
        _poly(img, lower, k, _shade(p.lips, 1.08))
        line = np.array([(mx - half, my - lift), (mx, my + 0.3), (mx + half, my - lift)])
        _polyline(img, line, k, _shade(p.lips, 0.5), 0.7)
        if p.beard > 0:
            beard = _shade(p.hair, 0.95)
            _ellipse(img, (mx, my + 9), (12 + 10 * p.beard, 4 + 5 * p.beard), k, beard)
            _ellipse(img, (mx, my - p.upper_lip - 2.5), (half + 1, 1.2 + p.beard), k, beard)

    def _hair(self, img, p, k, hair, style) -> None:
        cx, cy = 56.0, p.head_center_y
        rx, ry = p.head_axes
        top = cy - ry
        height = p.hairline - top + 3
        if style == 3:  # receding: hair only at the sides
            for side in (-1, 1):
                _ellipse(img, (cx + side * (rx - 3), p.hairline + 2), (5, height), k, hair,
                         start=180, end=360)  # fmt: skip
            return
        _ellipse(img, (cx, p.hairline + 3), (rx + 2, height), k, hair, start=180, end=360)
        if style == 2:  # fringe
            _poly(img, [(cx - rx * 0.8, p.hairline), (cx + rx * 0.6, p.hairline - 2),
                        (cx + rx * 0.2, p.hairline + 8), (cx - rx * 0.6, p.hairline + 6)],
                  k, hair)  # fmt: skip

    def _glasses(self, img, p, k, style: int, colour: np.ndarray) -> None:
        frame = tuple(float(c) for c in colour)
        for side, (tx, ty) in ((-1, ARCFACE_TEMPLATE[0]), (1, ARCFACE_TEMPLATE[1])):
            gx, gy = tx + side * p.eye_dx, ty + p.eye_dy
            if style == 0:
                _ellipse(img, (gx, gy), (10, 8), k, frame, thickness=1.3)
            else:
                cv2.rectangle(img, _pt(gx - 10, gy - 7, k), _pt(gx + 10, gy + 7, k), frame,
                              max(round(1.3 * k), 1), cv2.LINE_AA, _SHIFT)  # fmt: skip
        left = ARCFACE_TEMPLATE[0, 0] - p.eye_dx + 10
        right = ARCFACE_TEMPLATE[1, 0] + p.eye_dx - 10
        _line(img, (left, ARCFACE_TEMPLATE[0, 1] + p.eye_dy - 1),
              (right, ARCFACE_TEMPLATE[1, 1] + p.eye_dy - 1), k, frame, 1.3)  # fmt: skip

    def _light(self, img, p, direction, strength, gain, tint) -> np.ndarray:
        """Lambertian shading of an ellipsoidal head (flat elsewhere), then gain and tint."""
        rx, ry = p.head_axes
        nx = np.clip(self._ramp * (56.0 / rx), -1.0, 1.0)[None, :]
        ny = np.clip((self._ramp * 56.0 + 56.0 - p.head_center_y) / ry, -1.0, 1.0)[:, None]
        nz = np.sqrt(np.clip(1.0 - nx**2 - ny**2, 0.0, 1.0))
        lx, ly = float(direction[0]), float(direction[1])
        lz = math.sqrt(max(1.0 - 0.5 * (lx * lx + ly * ly), 0.2))
        norm = math.sqrt(lx * lx + ly * ly + lz * lz)
        lambert = np.clip((nx * lx + ny * ly + nz * lz) / norm, 0.0, 1.0)
        shading = (1.0 - strength) + strength * 1.25 * lambert
        shading = np.where(nz > 0, shading, 1.0 - strength * 0.3).astype(np.float32)
        light = (np.float32(gain) * shading)[:, :, None] * tint.astype(np.float32)[None, None, :]
        return cv2.multiply(img, light, dtype=cv2.CV_8U)


def _disk_kernel(radius: float) -> np.ndarray:
    """A normalised anti-aliased disk (defocus point-spread function) of ``radius`` pixels."""
    half = math.ceil(radius) + 1
    size = 2 * half + 1
    kernel = np.zeros((size * 4, size * 4), np.float32)
    cv2.circle(kernel, (size * 2, size * 2), max(round(radius * 4), 1), 1.0, -1, cv2.LINE_AA)
    kernel = cv2.resize(kernel, (size, size), interpolation=cv2.INTER_AREA)
    return kernel / kernel.sum()


def _motion_kernel(length: float, angle: float) -> np.ndarray:
    """A normalised line (linear motion blur) of ``length`` pixels at ``angle`` radians."""
    half = math.ceil(length / 2) + 1
    size = 2 * half + 1
    kernel = np.zeros((size * 4, size * 4), np.float32)
    dx, dy = math.cos(angle) * length * 2, math.sin(angle) * length * 2
    c = size * 2
    cv2.line(kernel, (round(c - dx), round(c - dy)), (round(c + dx), round(c + dy)), 1.0, 4)
    kernel = cv2.resize(kernel, (size, size), interpolation=cv2.INTER_AREA)
    return kernel / kernel.sum()


def degrade(
    image: np.ndarray,
    kind: str,
    severity: float,
    rng: np.random.Generator,
    *,
    skin: tuple[float, float, float] = (200.0, 160.0, 130.0),
) -> np.ndarray:
    """Apply degradation ``kind`` of ``severity`` in [0, 1] (0 = unchanged) to an RGB uint8 face.

    Strength at severity ``s`` for a 112-pixel aligned face (pixel sizes scale with the image),
    calibrated so that the demo's FR model fails more often as ``s`` grows and rarely below
    ``s = 0.3`` (docs/formats.md, "Synthetic faces"):

    - ``defocus``: disk point-spread function of radius ``24 s^1.5`` px;
    - ``motion``: linear motion blur of length ``60 s^1.5`` px in a random direction;
    - ``downscale``: down by a factor ``1 + 10 s`` (area) and back up (bilinear);
    - ``noise``: sensor noise, Gaussian with std ``130 s^1.5`` grey levels (80% shared by the
      channels);
    - ``jpeg``: JPEG quality ``round(1 + 44 (1 - s)^2)``;
    - ``occlusion``: an object from :data:`OCCLUDERS` of about ``min(125 s^1.3, 120)`` % of the
      inner face's area (beyond 100 % it spills over the cheeks and brow; ``skin`` colours the hand);
    - ``exposure``: with ``e = s^1.2``, over (gain ``1 + 1.2 e``, offset ``+50 e``) or under (gain
      ``1 - 0.8 e``), contrast reduced by ``0.5 e``, clipped;
    - ``pose``: a further head turn of ``0.75 s^2.5`` radians to a random side (cylindrical warp).
    """
    if severity <= 0.0:
        return image
    size = image.shape[0]
    k = size / 112.0
    s = float(min(severity, 1.0))
    if kind == "defocus":
        radius = 24.0 * s**1.5 * k
        if radius < 0.75:
            return cv2.GaussianBlur(image, (0, 0), sigmaX=max(radius * 0.7, 1e-3))
        return cv2.filter2D(image, -1, _disk_kernel(radius), borderType=cv2.BORDER_REFLECT_101)
    if kind == "motion":
        angle = rng.uniform(0, math.pi)
        length = max(60.0 * s**1.5 * k, 1.0)
        return cv2.filter2D(
            image, -1, _motion_kernel(length, angle), borderType=cv2.BORDER_REFLECT_101
        )
    if kind == "downscale":
        small = max(round(size / (1.0 + 10.0 * s)), 2)
        low = cv2.resize(image, (small, small), interpolation=cv2.INTER_AREA)
        return cv2.resize(low, (size, size), interpolation=cv2.INTER_LINEAR)
    if kind == "noise":
        std = 130.0 * s**1.5
        shared = rng.standard_normal(image.shape[:2], dtype=np.float32)[:, :, None]
        colour = rng.standard_normal(image.shape, dtype=np.float32)
        noise = (0.8 * shared + 0.6 * colour) * std
        return np.clip(image + noise, 0, 255).astype(np.uint8)
    if kind == "jpeg":
        quality = round(1 + 44 * (1.0 - s) ** 2)
        _ok, encoded = cv2.imencode(".jpg", image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
        return np.ascontiguousarray(cv2.imdecode(encoded, cv2.IMREAD_COLOR)[:, :, ::-1])
    if kind == "occlusion":
        return _occlude(image, s, rng, skin)
    if kind == "exposure":
        s = s**1.2  # a camera's auto-exposure absorbs mild errors
        if rng.random() < 0.5:
            gain, offset = 1.0 + 1.2 * s, 50.0 * s
        else:
            gain, offset = 1.0 - 0.8 * s, 0.0
        mean = float(image.mean())
        out = (image.astype(np.float32) - mean) * (1.0 - 0.5 * s) + mean
        return np.clip(out * gain + offset, 0, 255).astype(np.uint8)
    if kind == "pose":
        side = 1.0 if rng.random() < 0.5 else -1.0
        map_x, map_y = pose_maps(size, side * 0.75 * s**2.5)
        return cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    raise ConfigError(f"unknown degradation {kind!r}; choose one of {', '.join(DEGRADATIONS)}")


_INNER_FACE = 64.0 * 72.0  # area of the inner face (x 24..88, y 36..108) in template units


def _occlude(
    image: np.ndarray, s: float, rng: np.random.Generator, skin: tuple[float, float, float]
) -> np.ndarray:
    """Draw one occluding object of about ``min(125 s^1.3, 120)`` % of the inner face's area."""
    k = image.shape[0] / 112.0
    out = image.copy()
    kind = OCCLUDERS[int(rng.integers(len(OCCLUDERS)))]
    area = min(1.25 * s**1.3, 1.2) * _INNER_FACE
    ex, ey = ARCFACE_TEMPLATE[:2].mean(0)
    jitter = rng.uniform(-1, 1, 2)
    shade = rng.uniform(0.6, 1.1)
    if kind == "hand":  # palm and fingers in a skin tone
        colour = _shade(skin, shade)
        r = math.sqrt(area / (math.pi * 1.6))
        px, py = 56 + jitter[0] * 18, 72 + jitter[1] * 20
        _ellipse(out, (px, py), (r * 1.1, r), k, colour)
        for f in range(4):
            fx = px - r * 0.9 + f * r * 0.6
            _poly(out, [(fx - r * 0.2, py), (fx + r * 0.2, py), (fx + r * 0.15, py - r * 1.9),
                        (fx - r * 0.15, py - r * 1.9)], k, colour)  # fmt: skip
    elif kind == "mask":  # medical mask from the chin up
        colour = tuple(
            float(c) for c in rng.choice([[235, 235, 235], [140, 190, 225], [40, 40, 45]])
        )
        height = min(area / 60.0, 75.0)
        top = 110 - height
        _poly(out, [(22, top + 4), (56, top), (90, top + 4), (86, 112), (26, 112)], k, colour)
        _line(out, (22, top + 4), (8, top - 2), k, colour, 1.2)
        _line(out, (90, top + 4), (104, top - 2), k, colour, 1.2)
    elif kind == "sunglasses":  # dark lenses over the eyes, growing with severity
        lens = math.sqrt(area / (2 * math.pi * 0.8))
        colour = _shade((30, 30, 35), shade)
        for tx, ty in ARCFACE_TEMPLATE[:2]:
            _ellipse(out, (tx, ty + 1), (lens, lens * 0.8), k, colour)
        _line(out, (ex - 6, ey), (ex + 6, ey), k, colour, 1.5)
    elif kind == "hair":  # a band of hair across the face
        colour = _shade(tuple(_HAIR_COLOURS[int(rng.integers(len(_HAIR_COLOURS)))]), shade)
        width = area / 90.0
        angle = rng.uniform(-0.6, 0.6)
        x0 = 56 + jitter[0] * 15
        dx, dy = math.sin(angle) * 60, math.cos(angle) * 60
        _line(out, (x0 - dx, 70 - dy), (x0 + dx, 70 + dy), k, colour, width)
    else:  # an object: a textured rectangle
        aspect = rng.uniform(0.6, 1.7)
        w = min(math.sqrt(area * aspect), 90.0)
        h = min(area / w, 90.0)
        x0 = 56 + jitter[0] * max(0.0, 32 - w / 2) - w / 2
        y0 = 72 + jitter[1] * max(0.0, 36 - h / 2) - h / 2
        colour = tuple(float(c) for c in rng.uniform(20, 235, 3))
        cv2.rectangle(out, _pt(x0, y0, k), _pt(x0 + w, y0 + h, k), colour, -1, cv2.LINE_AA, _SHIFT)
        stripe = _shade(colour, 0.7)
        for i in range(1, 4):
            _line(out, (x0 + w * i / 4, y0), (x0 + w * i / 4, y0 + h), k, stripe, 1.0)
    return out


def parse_synthetic_spec(spec: str) -> dict[str, float | int]:
    """``synthetic:identities=200,samples=20,seed=0,low_variance_share=0.2,image_size=48`` -> options.

    Keys: ``identities``, ``samples``, ``seed``, ``low_variance_share``, ``image_size``,
    ``first_identity``; all optional (defaults 100, 10, 0, 0.2, 112, 0).
    """
    text = spec.strip()
    if not text.lower().startswith("synthetic"):
        raise ConfigError(f"not a synthetic spec: {spec!r} (expected 'synthetic:key=value,...')")
    body = text[len("synthetic") :].lstrip(":")
    options: dict[str, float | int] = {
        "identities": 100,
        "samples": 10,
        "seed": 0,
        "low_variance_share": 0.2,
        "image_size": 112,
        "first_identity": 0,
    }
    for item in filter(None, (part.strip() for part in body.split(","))):
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in options:
            raise ConfigError(
                f"bad synthetic spec item {item!r} in {spec!r}; use key=value with keys "
                f"{', '.join(options)}"
            )
        try:
            options[key] = float(value) if key == "low_variance_share" else int(value)
        except ValueError:
            raise ConfigError(f"synthetic spec {spec!r}: {key}={value!r} is not a number") from None
    return options


def synthetic_from_spec(spec: str) -> SyntheticFaces:
    """Build the generator described by a ``synthetic:...`` spec string."""
    o = parse_synthetic_spec(spec)
    return SyntheticFaces(
        int(o["identities"]),
        int(o["samples"]),
        seed=int(o["seed"]),
        image_size=int(o["image_size"]),
        low_variance_share=float(o["low_variance_share"]),
        first_identity=int(o["first_identity"]),
    )


__all__ = [
    "DEGRADATIONS",
    "LOW_VARIANCE_SCALE",
    "MAX_SYNTHETIC_IMAGES",
    "NUISANCE_SCALE",
    "OCCLUDERS",
    "IdentityParameters",
    "SyntheticFaces",
    "degrade",
    "ground_truth_quality",
    "identity_parameters",
    "is_low_variance",
    "parse_synthetic_spec",
    "pose_maps",
    "synthetic_from_spec",
]
