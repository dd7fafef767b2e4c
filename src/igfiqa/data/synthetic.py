"""Procedural identity-labelled faces: the project's embedded default data (no download needed).

Image ``(identity i, sample j)`` is a pure function of ``(seed, i, j)`` and of the image size:

- **Identity** (drawn from ``(seed, i)``): skin tone and skin texture, head shape, ears, hair colour and
  style, eye spacing / size / iris colour, brows, nose, mouth, moles, beard and glasses. The face is
  laid out on the 112x112 ArcFace template (eye centres near ``ARCFACE_TEMPLATE[0:2]``, nose tip near
  point 2, mouth corners near points 3-4), so alignment conventions hold.
- **Nuisance** (drawn from ``(seed, i, j)``): pose proxy (yaw/pitch shift of the inner features),
  expression (smile, open mouth, eye openness), illumination (gain, directional gradient, colour
  temperature), background, clothing and a small misalignment (shift, roll, scale).
- **Degradation** with a known severity ``s`` in [0, 1] of one kind among blur, downscale, noise, JPEG,
  occlusion and exposure (:data:`DEGRADATIONS`); with probability 0.25 a second kind is added. The
  **ground-truth quality** is ``prod_k (1 - s_k)`` (1 = clean).
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

DEGRADATIONS = ("blur", "downscale", "noise", "jpeg", "occlusion", "exposure")
"""Degradation kinds, each driven by a severity in [0, 1] (0 = no change)."""

LOW_VARIANCE_SCALE = 0.12
"""Nuisance amplitude of low-variance identities relative to normal identities."""

_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0
_SHIFT = 4  # OpenCV sub-pixel drawing: coordinates in 1/16 pixel
_ONE = 1 << _SHIFT


@dataclass(frozen=True, eq=False)
class IdentityParameters:
    """The shape, colour and texture parameters of one synthetic identity (112x112 units)."""

    skin: tuple[float, float, float]
    texture: np.ndarray  # (4, 4) low-frequency skin texture multipliers around 1
    head_center_y: float
    head_axes: tuple[float, float]
    jaw: float  # 0 round .. 1 narrow chin
    ear_size: float
    hair: tuple[float, float, float]
    hair_style: int  # 0 bald, 1 short cap, 2 long, 3 fringe
    hairline: float
    eye_dx: float  # change of half eye distance
    eye_dy: float
    eye_size: tuple[float, float]
    iris: tuple[float, float, float]
    brow_lift: float
    brow_thickness: float
    brow_slant: float
    nose_length: float
    nose_width: float
    mouth_dy: float
    mouth_width: float
    lip_thickness: float
    lips: tuple[float, float, float]
    moles: tuple[tuple[float, float, float], ...]
    beard: float  # 0 none .. 1 full
    glasses: int  # 0 none, 1 round, 2 square
    glasses_color: tuple[float, float, float]
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
    # Skin: a range of natural tones with an identity-specific tint.
    tone = rng.uniform(0.0, 1.0)
    base = np.array([236, 200, 170]) * (1 - tone) + np.array([110, 70, 45]) * tone
    skin = np.clip(base + rng.normal(0, 10, 3), 30, 250)
    hair_kind = rng.integers(0, 5)
    hair_palette = np.array(
        [[25, 20, 18], [70, 45, 25], [140, 95, 50], [215, 180, 110], [160, 160, 165]], float
    )
    hair = np.clip(hair_palette[hair_kind] + rng.normal(0, 18, 3), 5, 250)
    low = is_low_variance(seed, identity, share)
    degradation = _draw_degradation(rng) if low else ()
    moles = tuple(
        (float(rng.uniform(30, 82)), float(rng.uniform(55, 95)), float(rng.uniform(0.8, 2.0)))
        for _ in range(int(rng.integers(0, 4)))
    )
    return IdentityParameters(
        skin=tuple(skin),
        texture=rng.uniform(0.82, 1.18, (4, 4)).astype(np.float32),
        head_center_y=float(rng.uniform(62, 68)),
        head_axes=(float(rng.uniform(30, 40)), float(rng.uniform(40, 50))),
        jaw=float(rng.uniform(0, 1)),
        ear_size=float(rng.uniform(5, 9)),
        hair=tuple(hair),
        hair_style=int(rng.integers(0, 4)),
        hairline=float(rng.uniform(28, 38)),
        eye_dx=float(rng.uniform(-3.5, 3.5)),
        eye_dy=float(rng.uniform(-2.5, 2.5)),
        eye_size=(float(rng.uniform(4.5, 7.5)), float(rng.uniform(2.2, 3.6))),
        iris=tuple(rng.uniform(20, 160, 3) * np.array([0.8, 1.0, 1.1])),
        brow_lift=float(rng.uniform(6, 11)),
        brow_thickness=float(rng.uniform(1.2, 3.2)),
        brow_slant=float(rng.uniform(-3, 3)),
        nose_length=float(rng.uniform(-4, 4)),
        nose_width=float(rng.uniform(4, 8)),
        mouth_dy=float(rng.uniform(-3, 3)),
        mouth_width=float(rng.uniform(-4, 4)),
        lip_thickness=float(rng.uniform(1.5, 4.0)),
        lips=tuple(np.clip(skin * np.array([0.85, 0.55, 0.6]) + rng.normal(0, 10, 3), 20, 250)),
        moles=moles,
        beard=float(rng.uniform(0.3, 1.0)) if rng.random() < 0.2 else 0.0,
        glasses=int(rng.integers(1, 3)) if rng.random() < 0.18 else 0,
        glasses_color=tuple(rng.uniform(0, 200, 3)),
        low_variance=low,
        fixed_degradation=degradation,
    )


def _draw_degradation(rng: np.random.Generator) -> tuple[tuple[str, float], ...]:
    """One or two (kind, severity) pairs; severities skewed towards mild (s = u^2)."""
    first = DEGRADATIONS[int(rng.integers(len(DEGRADATIONS)))]
    chosen = [(first, float(rng.random() ** 2))]
    if rng.random() < 0.25:
        others = [kind for kind in DEGRADATIONS if kind != first]
        chosen.append((others[int(rng.integers(len(others)))], float(rng.random() ** 2)))
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


def _line(img, a, b, k, color, thickness):
    cv2.line(img, _pt(*a, k), _pt(*b, k), color, max(round(thickness * k), 1), cv2.LINE_AA, _SHIFT)


def _shade(color, factor):
    return tuple(float(min(max(c * factor, 0.0), 255.0)) for c in color)


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
        if first_identity < 0:
            raise ConfigError(f"first_identity must be >= 0, got {first_identity}")
        self.num_identities = int(num_identities)
        self.samples_per_identity = int(samples_per_identity)
        self.seed = int(seed)
        self.image_size = int(image_size)
        self.low_variance_share = float(low_variance_share)
        self.first_identity = int(first_identity)
        self._ramp = np.linspace(0.0, 1.0, self.image_size, dtype=np.float32)
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
        """Image (identity, sample) as (S, S, 3) uint8 RGB and its ground-truth quality in [0, 1]."""
        degradations = self.degradations(identity, sample)
        clean = self.render_clean(identity, sample)
        params = identity_parameters(self.seed, identity, self.low_variance_share)
        # Low-variance identities also share the degradation's randomness (occluder placement,
        # exposure direction, noise pattern), so their images really barely vary.
        key = [self.seed, 3, identity] if params.low_variance else [self.seed, 3, identity, sample]
        rng = np.random.default_rng(key)
        image = clean
        for kind, severity in degradations:
            image = degrade(image, kind, severity, rng)
        return image, ground_truth_quality(degradations)

    def render_clean(self, identity: int, sample: int) -> np.ndarray:
        """Image (identity, sample) with its nuisance but without degradation."""
        params = identity_parameters(self.seed, identity, self.low_variance_share)
        rng = np.random.default_rng([self.seed, 1, identity, sample])
        amp = LOW_VARIANCE_SCALE if params.low_variance else 1.0
        return self._draw(params, rng, amp)

    def _skin_layer(self, p: IdentityParameters) -> np.ndarray:
        """The identity's textured skin at this image size (cached per identity)."""
        layer = self._skin_cache.get(p)
        if layer is None:
            size = self.image_size
            texture = cv2.resize(p.texture, (size, size), interpolation=cv2.INTER_CUBIC)
            skin = np.asarray(p.skin, np.float32)[None, None, :] * texture[:, :, None]
            layer = np.clip(skin, 0, 255).astype(np.uint8)
            if len(self._skin_cache) >= 2048:
                self._skin_cache.clear()
            self._skin_cache[p] = layer
        return layer

    def _draw(self, p: IdentityParameters, rng: np.random.Generator, amp: float) -> np.ndarray:
        size = self.image_size
        k = size / 112.0
        u = rng.uniform
        # Nuisance draws (always the same number of draws, so each sample is reproducible).
        yaw, pitch = u(-1, 1) * amp, u(-1, 1) * amp
        smile, mouth_open, eye_open = (
            u(-1, 1) * amp,
            max(u(-1, 1), 0) * amp,
            1 - 0.6 * u(0, 1) * amp,
        )
        gain = 1.0 + 0.35 * u(-1, 1) * amp
        light = u(-1, 1, 2) * 0.35 * amp
        tint = 1.0 + u(-1, 1, 3) * 0.05 * amp
        bg_a, bg_b = u(30, 230, 3), u(30, 230, 3)
        if amp < 1.0:  # low-variance identities keep a nearly fixed background too
            bg_mix = np.random.default_rng(int(p.skin[0] * 1000)).uniform(30, 230, (2, 3))
            bg_a = bg_mix[0] * (1 - amp) + bg_a * amp
            bg_b = bg_mix[1] * (1 - amp) + bg_b * amp
        clothes = u(20, 230, 3)
        shift = u(-1, 1, 2) * 3.0 * amp
        roll = u(-1, 1) * 6.0 * amp
        zoom = 1.0 + u(-1, 1) * 0.05 * amp

        # Background: a two-colour gradient along x or y.
        ramp = self._ramp[:, None]
        line = (bg_a[None, :] * (1 - ramp) + bg_b[None, :] * ramp).astype(np.uint8)  # (S, 3)
        if bg_a[0] > bg_b[0]:
            img = np.ascontiguousarray(np.broadcast_to(line[None, :, :], (size, size, 3)))
        else:
            img = np.ascontiguousarray(np.broadcast_to(line[:, None, :], (size, size, 3)))
        skin = p.skin
        hair = p.hair
        cx, cy = 56.0, p.head_center_y
        rx, ry = p.head_axes
        fx = 56.0 + yaw * 6.0  # inner features move with the pose proxy
        fy = pitch * 3.0

        # Shoulders and neck.
        _ellipse(img, (56, 128), (52, 22), k, tuple(clothes))
        _poly(img, [(44, 90), (68, 90), (70, 116), (42, 116)], k, _shade(skin, 0.85))
        if p.hair_style == 2:  # long hair behind the head
            _ellipse(img, (cx, cy + 6), (rx + 6, ry + 6), k, hair)
        # Ears (the far ear hides as the head turns).
        for side in (-1, 1):
            visible = 1.0 - max(0.0, side * yaw) * 0.6
            _ellipse(
                img,
                (cx + side * (rx - 1), cy + 4),
                (p.ear_size * 0.6 * visible, p.ear_size),
                k,
                _shade(skin, 0.92),
            )
        # Head: an ellipse plus a chin polygon (narrow jaw pulls the chin in).
        face_mask = np.zeros((size, size), np.uint8)
        _ellipse(face_mask, (cx, cy), (rx, ry), k, 255)
        chin = ry * (0.25 + 0.35 * p.jaw)
        _poly(
            face_mask,
            [
                (cx - rx * 0.8, cy + ry * 0.4),
                (cx + rx * 0.8, cy + ry * 0.4),
                (cx + rx * 0.3, cy + ry + 2 - chin * 0.1),
                (cx - rx * 0.3, cy + ry + 2 - chin * 0.1),
            ],
            k,
            255,
        )
        skin_layer = self._skin_layer(p)
        np.copyto(img, skin_layer, where=face_mask[:, :, None] > 127)
        # Hair on top of the head.
        if p.hair_style != 0:
            top = cy - ry
            cap_h = p.hairline - top + 2
            _ellipse(img, (cx, p.hairline + 2), (rx + 1.5, cap_h), k, hair, start=180, end=360)
            if p.hair_style == 3:
                _poly(
                    img,
                    [
                        (cx - rx * 0.7, p.hairline),
                        (cx + rx * 0.5, p.hairline - 2),
                        (cx + rx * 0.1, p.hairline + 9),
                        (cx - rx * 0.5, p.hairline + 7),
                    ],
                    k,
                    hair,
                )
        else:
            _ellipse(img, (cx, cy - ry * 0.55), (rx * 0.5, ry * 0.2), k, _shade(skin, 1.08))
        # Eyes and brows around the template eye points.
        for side, (tx, ty) in ((-1, ARCFACE_TEMPLATE[0]), (1, ARCFACE_TEMPLATE[1])):
            ex = fx + (tx - 56.0) + side * p.eye_dx
            ey = ty + p.eye_dy + fy
            erx, ery = p.eye_size
            _ellipse(img, (ex, ey), (erx, max(ery * eye_open, 0.4)), k, (245, 245, 240))
            if eye_open > 0.35:
                iris_r = min(ery * 1.1, erx * 0.6) * min(1.0, eye_open + 0.2)
                _ellipse(img, (ex + yaw * 1.5, ey), (iris_r, iris_r), k, p.iris)
                _ellipse(img, (ex + yaw * 1.5, ey), (iris_r * 0.45, iris_r * 0.45), k, (15, 15, 15))
            _ellipse(
                img,
                (ex, ey),
                (erx, max(ery * eye_open, 0.4)),
                k,
                _shade(skin, 0.45),
                start=180,
                end=360,
                thickness=1.0,
            )
            by = ey - p.brow_lift
            _line(
                img,
                (ex - side * erx * 1.1, by + p.brow_slant * 0.5),
                (ex + side * erx * 1.2, by - p.brow_slant * 0.5 - 1),
                k,
                _shade(hair, 0.9),
                p.brow_thickness,
            )
        # Nose.
        nx, ny = (
            fx + (ARCFACE_TEMPLATE[2, 0] - 56.0) * 0.5,
            ARCFACE_TEMPLATE[2, 1] + p.nose_length * 0.5 + fy,
        )
        nose_dark = _shade(skin, 0.72)
        _line(
            img,
            (nx - yaw * 1.0, ny - 14 - p.nose_length * 0.5),
            (nx + yaw * 2.0, ny),
            k,
            _shade(skin, 0.85),
            1.6,
        )
        for side in (-1, 1):
            _ellipse(img, (nx + side * p.nose_width * 0.45, ny + 1.5), (1.6, 1.0), k, nose_dark)
        # Beard before the mouth.
        my = (ARCFACE_TEMPLATE[3, 1] + ARCFACE_TEMPLATE[4, 1]) / 2 + p.mouth_dy + fy - 1
        if p.beard > 0:
            beard = _shade(hair, 0.9)
            _ellipse(
                img, (fx, my + 3), (rx * 0.62 * p.beard + 6, ry * 0.35), k, beard, start=0, end=180
            )
            _ellipse(img, (fx, my - 4), (10 + p.mouth_width * 0.5, 2.5 * p.beard + 0.5), k, beard)
        # Mouth around the template mouth corners.
        half = (ARCFACE_TEMPLATE[4, 0] - ARCFACE_TEMPLATE[3, 0]) / 2 + p.mouth_width * 0.5
        lip = p.lips
        _ellipse(img, (fx, my), (half, p.lip_thickness + mouth_open * 3.5), k, lip)
        if mouth_open > 0.15:
            _ellipse(img, (fx, my), (half * 0.75, mouth_open * 3.0), k, (60, 20, 25))
        curve = smile * 3.0
        _ellipse(
            img,
            (fx, my - curve),
            (half * 0.95, abs(curve) + 0.5),
            k,
            _shade(lip, 0.55),
            start=0 if curve >= 0 else 180,
            end=180 if curve >= 0 else 360,
            thickness=1.0,
        )
        # Moles.
        for mx, mole_y, r in p.moles:
            _ellipse(img, (mx + yaw * 5, mole_y + fy), (r, r), k, _shade(skin, 0.45))
        # Glasses.
        if p.glasses:
            frame = p.glasses_color
            for tx, ty in ARCFACE_TEMPLATE[:2]:
                gx = fx + (tx - 56.0) + np.sign(tx - 56.0) * p.eye_dx
                gy = ty + p.eye_dy + fy
                if p.glasses == 1:
                    _ellipse(img, (gx, gy), (10, 8), k, frame, thickness=1.5)
                else:
                    cv2.rectangle(
                        img,
                        _pt(gx - 10, gy - 7, k),
                        _pt(gx + 10, gy + 7, k),
                        frame,
                        max(round(1.5 * k), 1),
                        cv2.LINE_AA,
                        _SHIFT,
                    )
            _line(
                img,
                (fx - 7 + p.eye_dx * 0, ARCFACE_TEMPLATE[0, 1] + fy - 1),
                (fx + 7, ARCFACE_TEMPLATE[1, 1] + fy - 1),
                k,
                frame,
                1.5,
            )

        # Illumination: gain, directional light (including the side light of the pose), tint.
        light_x = (self._ramp - 0.5) * np.float32(2 * light[0] - yaw * 0.12)
        light_y = (self._ramp - 0.5) * np.float32(2 * light[1])
        light_map = np.float32(gain) * (1.0 + light_x[None, :] + light_y[:, None])
        light_map = light_map[:, :, None] * tint.astype(np.float32)[None, None, :]
        img = cv2.multiply(img, light_map, dtype=cv2.CV_8U)
        # Misalignment: small roll, zoom and shift about the image centre.
        if amp > 0:
            centre = (size / 2.0, size / 2.0)
            matrix = cv2.getRotationMatrix2D(centre, roll, zoom)
            matrix[:, 2] += shift * k
            img = cv2.warpAffine(
                img, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101
            )
        return img


def degrade(image: np.ndarray, kind: str, severity: float, rng: np.random.Generator) -> np.ndarray:
    """Apply degradation ``kind`` of ``severity`` in [0, 1] (0 = unchanged) to an RGB uint8 image.

    Strength at severity ``s`` for a 112-pixel image (scaled with the image size where it applies):
    blur = Gaussian with sigma ``3.5 s``; downscale = by a factor ``1 + 6 s`` and back (area, then
    bilinear); noise = Gaussian with std ``45 s`` grey levels; JPEG = quality ``round(95 - 90 s)``;
    occlusion = a grey-to-black block covering ``55 s`` % of the central face area; exposure = gain
    ``1 + 0.9 s`` plus ``30 s`` grey levels (over) or ``1 - 0.75 s`` (under) with matching contrast loss.
    """
    if severity <= 0.0:
        return image
    size = image.shape[0]
    k = size / 112.0
    if kind == "blur":
        sigma = 3.5 * severity * k
        return cv2.GaussianBlur(image, (0, 0), sigmaX=max(sigma, 1e-3))
    if kind == "downscale":
        factor = 1.0 + 6.0 * severity
        small = max(round(size / factor), 2)
        low = cv2.resize(image, (small, small), interpolation=cv2.INTER_AREA)
        return cv2.resize(low, (size, size), interpolation=cv2.INTER_LINEAR)
    if kind == "noise":
        noise = rng.standard_normal(image.shape, dtype=np.float32) * (45.0 * severity)
        return np.clip(image + noise, 0, 255).astype(np.uint8)
    if kind == "jpeg":
        quality = round(95 - 90 * severity)
        _ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
        return cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED)
    if kind == "occlusion":
        area = 0.55 * severity * (64 * 64)
        aspect = rng.uniform(0.5, 2.0)
        w = min(math.sqrt(area * aspect), 80.0)
        h = min(area / max(w, 1.0), 80.0)
        x0 = rng.uniform(24, 88 - w) if w < 64 else 56 - w / 2
        y0 = rng.uniform(40, 104 - h) if h < 64 else 72 - h / 2
        out = image.copy()
        shade = float(rng.uniform(0, 120))
        cv2.rectangle(
            out,
            _pt(x0, y0, k),
            _pt(x0 + w, y0 + h, k),
            (shade, shade, shade),
            -1,
            cv2.LINE_AA,
            _SHIFT,
        )
        return out
    if kind == "exposure":
        if rng.random() < 0.5:
            gain, offset = 1.0 + 0.9 * severity, 30.0 * severity
        else:
            gain, offset = 1.0 - 0.75 * severity, 0.0
        mean = float(image.mean())
        out = (image.astype(np.float32) - mean) * (1.0 - 0.5 * severity) + mean
        return np.clip(out * gain + offset, 0, 255).astype(np.uint8)
    raise ConfigError(f"unknown degradation {kind!r}; choose one of {', '.join(DEGRADATIONS)}")


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
    "IdentityParameters",
    "SyntheticFaces",
    "degrade",
    "ground_truth_quality",
    "identity_parameters",
    "is_low_variance",
    "parse_synthetic_spec",
    "synthetic_from_spec",
]
