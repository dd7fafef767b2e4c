"""Synthetic-to-real transfer check: does a quality model rank degraded copies of a face below it?

The benchmark behind ``benchmarks/real_photos.py``: aligned 112x112 RGB crops of real faces are
degraded by four kinds of damage at three levels each, and a model's qualities should fall with the
level. This module holds the benchmark's definition (the degradations and their levels) and its
metrics, as pure functions of arrays; fetching the photos and running models stay in the script.

Degradations, each a pure function ``(image, level, rng) -> image`` on an (H, W, 3) uint8 RGB crop,
``level`` being the severity 1, 2, 3 (0 returns an unchanged copy, the clean image):

- ``blur``: Gaussian blur with sigma :data:`BLUR_SIGMAS` = 1.5, 3.0, 4.5 px (defocus, motion-free).
- ``downscale``: area-resize down by :data:`DOWNSCALE_FACTORS` = 3, 5, 8 (112 -> 37, 22, 14 px),
  bilinear back up (a face far from a low-resolution camera).
- ``noise``: additive Gaussian sensor noise of std :data:`NOISE_STDS` = 10, 20, 35 grey levels,
  independent per pixel and channel, rounded and clipped to 0..255 (low light, high gain).
- ``occlusion``: one opaque patch, rectangle or ellipse, covering :data:`OCCLUSION_SHARES` = 15, 30,
  45 % of the central face region :data:`FACE_REGION` (x in [16, 96), y in [24, 112) of the 112 crop,
  eyes to chin), of one uniform colour taken from the crop's own surroundings (a local mean colour
  outside that region), at a random position inside the region (a hand, a scarf, an object).

Why these levels: level 1 is damage a person notices but still recognises the face through, level 3
is damage that removes most identity detail (eyes and mouth contours gone at sigma 4.5 px; a 14 px
face; noise that dominates skin texture; half the face hidden). The levels must also survive the
resize to a small model input: the demo's models take 48 x 48 crops, to which the scorer shrinks the
112 crops with area interpolation (a factor 2.33). Blur sigma 1.5 px at 112 is still 0.64 px at 48,
and a face downscaled by 3 (37 px) holds less detail than the 48 px input could; noise is averaged
by the shrink (std / ~2.3 at 48 px), which is why its levels are larger than a 112 px model would
need. Severities of different kinds are not meant to be equally harmful; the metrics compare levels
within a kind and against the clean image.

Randomness: :func:`degrade_face` gives every (face, kind) its own generator seeded from the face's
seed, and re-creates it for every level, so the levels of a kind share their draws: the noise
pattern is the same, scaled; the occlusion patches have one shape, aspect, colour and centre and are
nested (a level's patch contains the previous level's).

Metrics (:func:`transfer_metrics`), from per-image arrays ``quality``, ``face`` (id), ``kind``
("clean" for the clean image) and ``severity`` (0 for clean, else 1..3):

- ``spearman``: Spearman(quality, -severity) pooled over all images (ties averaged);
- ``spearman_per_kind``: the same on each kind's images plus the clean ones;
- ``per_face_spearman``: the mean over faces of each face's Spearman(quality, -severity); faces with
  constant quality are skipped and counted;
- ``clean_above_degraded``: the share of (clean, degraded copy of the same face) pairs where the
  clean image scores higher, ties counting 1/2; overall, per kind and per kind and level;
- ``bootstrap``: percentile confidence intervals of ``spearman`` and ``clean_above_degraded`` from
  resampling faces with replacement (seeded).

Diagnostics (:func:`embedding_diagnostics`), from the FR embeddings of the same images, say where a
failed transfer comes from: whether the embedding's length falls with the damage, whether the
quality follows it, and whether the backbone tells different real people apart at all
(:func:`concentration` of the clean embeddings: near 0 for distinct identities, near 1 when every
face maps to one direction).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import cv2
import numpy as np

from igfiqa.evaluation.correlation import spearman, weighted_spearman

CLEAN = "clean"
"""The ``kind`` of the undegraded image of a face."""

BLUR_SIGMAS: tuple[float, ...] = (1.5, 3.0, 4.5)
"""Gaussian blur sigma in pixels of the 112 crop, per level 1, 2, 3."""

DOWNSCALE_FACTORS: tuple[int, ...] = (3, 5, 8)
"""Downscale factors per level (112 -> 37, 22, 14 px), area down, bilinear back up."""

NOISE_STDS: tuple[float, ...] = (10.0, 20.0, 35.0)
"""Standard deviation of the additive Gaussian noise in grey levels (0..255), per level."""

OCCLUSION_SHARES: tuple[float, ...] = (0.15, 0.30, 0.45)
"""Share of :data:`FACE_REGION` that the occluding patch covers, per level."""

FACE_REGION: tuple[int, int, int, int] = (16, 24, 96, 112)
"""Central face region of the 112 ArcFace crop, ``(x0, y0, x1, y1)``, ends exclusive."""

OCCLUSION_ASPECT_RANGE: tuple[float, float] = (0.6, 1.6)
"""Range of the patch's width / height (drawn log-uniformly)."""

TARGETS: dict[str, Any] = {
    "spearman": 0.5,
    "clean_above_degraded": 0.85,
    "per_kind_spearman_positive": True,
}
"""What a model that transfers to real photos should reach (point estimates)."""

LEVELS = 3
"""Degradation levels per kind (severities 1..LEVELS)."""


def _check_image(image: np.ndarray, level: int, name: str) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"{name}: needs an (H, W, 3) uint8 image, got {image.shape} {image.dtype}")
    if not 0 <= level <= LEVELS:
        raise ValueError(f"{name}: level must be 0..{LEVELS}, got {level}")
    return image


def blur(image: np.ndarray, level: int, rng: np.random.Generator) -> np.ndarray:
    """Gaussian blur with sigma ``BLUR_SIGMAS[level - 1]`` px (reflected border); level 0: a copy."""
    image = _check_image(image, level, "blur")
    if level == 0:
        return image.copy()
    sigma = BLUR_SIGMAS[level - 1]
    return cv2.GaussianBlur(
        image, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT
    )


def downscale(image: np.ndarray, level: int, rng: np.random.Generator) -> np.ndarray:
    """Area-resize down by ``DOWNSCALE_FACTORS[level - 1]``, bilinear back up; level 0: a copy."""
    image = _check_image(image, level, "downscale")
    if level == 0:
        return image.copy()
    height, width = image.shape[:2]
    factor = DOWNSCALE_FACTORS[level - 1]
    small = (max(1, round(width / factor)), max(1, round(height / factor)))
    reduced = cv2.resize(image, small, interpolation=cv2.INTER_AREA)
    return cv2.resize(reduced, (width, height), interpolation=cv2.INTER_LINEAR)


def noise(image: np.ndarray, level: int, rng: np.random.Generator) -> np.ndarray:
    """Add Gaussian noise of std ``NOISE_STDS[level - 1]`` drawn from ``rng``, round and clip."""
    image = _check_image(image, level, "noise")
    if level == 0:
        return image.copy()
    values = image + rng.normal(0.0, NOISE_STDS[level - 1], size=image.shape)
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def face_region(size: int) -> tuple[float, float, float, float]:
    """:data:`FACE_REGION` scaled from the 112 crop to a ``size`` x ``size`` crop."""
    scale = size / 112.0
    x0, y0, x1, y1 = FACE_REGION
    return x0 * scale, y0 * scale, x1 * scale, y1 * scale


def _surround_colour(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A local mean colour (Gaussian, sigma 3 px) at a random pixel outside the face region.

    Pixels that are pure black (the alignment's border fill) are avoided where possible.
    """
    height, width = image.shape[:2]
    x0, y0, x1, y1 = face_region(width)
    ys, xs = np.mgrid[0:height, 0:width]
    outside = ~((xs >= x0) & (xs < x1) & (ys >= y0) & (ys < y1))
    candidates = outside & (image.max(axis=2) > 0)
    if not candidates.any():
        candidates = outside if outside.any() else np.ones_like(outside)
    rows, cols = np.nonzero(candidates)
    pick = int(rng.integers(len(rows)))
    smooth = cv2.GaussianBlur(image, (0, 0), sigmaX=3.0, sigmaY=3.0, borderType=cv2.BORDER_REFLECT)
    return smooth[rows[pick], cols[pick]].copy()


def _patch_size(
    share: float, ellipse: bool, aspect: float, region_w: float, region_h: float
) -> tuple[float, float]:
    """Width and height of the patch's bounding box covering ``share`` of the region."""
    area = share * region_w * region_h
    box = area * (4.0 / math.pi if ellipse else 1.0)
    width = math.sqrt(box * aspect)
    height = box / width
    if width > region_w:
        width, height = region_w, box / region_w
    if height > region_h:
        width, height = box / region_h, region_h
    return width, height


def occlusion_mask(
    size: int, level: int, *, ellipse: bool, aspect: float, position: tuple[float, float]
) -> np.ndarray:
    """Boolean (size, size) mask of the occluding patch of ``level`` (1..3).

    The patch is a rectangle or an axis-aligned ellipse of width / height ``aspect`` whose area is
    ``OCCLUSION_SHARES[level - 1]`` of the face region. ``position`` (u, v) in [0, 1]^2 places the
    centre so that the largest level's patch lies inside the region; all levels share that centre,
    so their patches are nested.
    """
    x0, y0, x1, y1 = face_region(size)
    region_w, region_h = x1 - x0, y1 - y0
    largest_w, largest_h = _patch_size(OCCLUSION_SHARES[-1], ellipse, aspect, region_w, region_h)
    cx = x0 + largest_w / 2 + position[0] * (region_w - largest_w)
    cy = y0 + largest_h / 2 + position[1] * (region_h - largest_h)
    width, height = _patch_size(OCCLUSION_SHARES[level - 1], ellipse, aspect, region_w, region_h)
    centres = np.arange(size) + 0.5
    dx = (centres[None, :] - cx) / (width / 2)
    dy = (centres[:, None] - cy) / (height / 2)
    if ellipse:
        return dx * dx + dy * dy <= 1.0
    return (np.abs(dx) <= 1.0) & (np.abs(dy) <= 1.0)


def occlude(image: np.ndarray, level: int, rng: np.random.Generator) -> np.ndarray:
    """Paint an opaque patch over ``OCCLUSION_SHARES[level - 1]`` of the face region.

    Draws from ``rng``, in this order and for every level alike: the shape (rectangle or ellipse),
    the aspect, the position and the colour (from the crop's surroundings). Level 0: a copy.
    """
    image = _check_image(image, level, "occlude")
    if image.shape[0] != image.shape[1]:
        raise ValueError(f"occlude: needs a square aligned crop, got {image.shape}")
    ellipse = bool(rng.random() < 0.5)
    low, high = OCCLUSION_ASPECT_RANGE
    aspect = float(math.exp(rng.uniform(math.log(low), math.log(high))))
    u, v = (float(value) for value in rng.random(2))
    colour = _surround_colour(image, rng)
    if level == 0:
        return image.copy()
    mask = occlusion_mask(image.shape[0], level, ellipse=ellipse, aspect=aspect, position=(u, v))
    out = image.copy()
    out[mask] = colour
    return out


Degradation = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]

DEGRADATIONS: dict[str, Degradation] = {
    "blur": blur,
    "downscale": downscale,
    "noise": noise,
    "occlusion": occlude,
}
"""The benchmark's degradation kinds, in report order."""

KINDS: tuple[str, ...] = tuple(DEGRADATIONS)


def degrade_face(
    image: np.ndarray, seed: int | Sequence[int]
) -> tuple[list[np.ndarray], list[str], list[int]]:
    """The clean crop and its 4 kinds x 3 levels degraded copies: ``(images, kinds, severities)``.

    ``seed`` identifies the face (e.g. ``[run_seed, face_index]``); kind ``k`` draws from
    ``default_rng([*seed, k])``, re-created for every level (see the module docstring).
    """
    words = [int(seed)] if isinstance(seed, (int, np.integer)) else [int(w) for w in seed]
    images, kinds, severities = [np.array(image, copy=True)], [CLEAN], [0]
    for index, (kind, degrade) in enumerate(DEGRADATIONS.items()):
        for level in range(1, LEVELS + 1):
            images.append(degrade(image, level, np.random.default_rng([*words, index])))
            kinds.append(kind)
            severities.append(level)
    return images, kinds, severities


# -- metrics ----------------------------------------------------------------------------------------


def _as_arrays(
    quality: Any, face: Any, kind: Any, severity: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    quality = np.asarray(quality, dtype=np.float64).reshape(-1)
    face = np.asarray(face).reshape(-1)
    kind = np.asarray(kind).astype(str).reshape(-1)
    severity = np.asarray(severity).reshape(-1)
    if not (quality.size == face.size == kind.size == severity.size):
        raise ValueError(
            f"quality, face, kind and severity differ in length "
            f"({quality.size}, {face.size}, {kind.size}, {severity.size})"
        )
    if not np.array_equal(severity.astype(np.float64), np.round(severity.astype(np.float64))):
        raise ValueError("severity must hold whole numbers (0 for clean, 1.. for degraded)")
    severity = severity.astype(np.int64)
    if not np.array_equal(kind == CLEAN, severity == 0):
        raise ValueError(f"kind {CLEAN!r} and severity 0 must mark the same images")
    if (severity < 0).any():
        raise ValueError("severity must be >= 0")
    return quality, face, kind, severity


def _float(value: float) -> float | None:
    """A JSON-ready float: NaN becomes None."""
    value = float(value)
    return None if math.isnan(value) else value


def spearman_per_kind(quality: Any, kind: Any, severity: Any) -> dict[str, float | None]:
    """Spearman(quality, -severity) over each kind's images plus the clean ones."""
    quality = np.asarray(quality, dtype=np.float64).reshape(-1)
    kind = np.asarray(kind).astype(str).reshape(-1)
    severity = np.asarray(severity, dtype=np.float64).reshape(-1)
    clean = kind == CLEAN
    result = {}
    for name in _degraded_kinds(kind):
        keep = clean | (kind == name)
        result[name] = _float(spearman(quality[keep], -severity[keep]))
    return result


def _degraded_kinds(kind: np.ndarray) -> list[str]:
    """The kinds present other than clean: :data:`KINDS` order first, then any others sorted."""
    present = set(np.unique(kind).tolist()) - {CLEAN}
    return [k for k in KINDS if k in present] + sorted(present - set(KINDS))


def per_face_spearman(quality: Any, face: Any, severity: Any) -> dict[str, Any]:
    """Mean over faces of Spearman(quality, -severity) within the face (ties averaged).

    Faces where the correlation is undefined (constant quality, fewer than two images) are skipped:
    ``{"mean", "faces_used", "faces_skipped", "per_face": {face id: rho or None}}``.
    """
    quality = np.asarray(quality, dtype=np.float64).reshape(-1)
    severity = np.asarray(severity, dtype=np.float64).reshape(-1)
    labels, codes = np.unique(np.asarray(face).reshape(-1), return_inverse=True)
    member = codes[None, :] == np.arange(len(labels))[:, None]
    rho = weighted_spearman(quality, -severity, member)
    used = np.isfinite(rho)
    return {
        "mean": _float(rho[used].mean()) if used.any() else None,
        "faces_used": int(used.sum()),
        "faces_skipped": int((~used).sum()),
        "per_face": {str(label): _float(r) for label, r in zip(labels, rho, strict=True)},
    }


def _pair_wins(
    quality: np.ndarray, face_codes: np.ndarray, kind: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per image: (wins, pairs) of the clean images of its face against it (degraded images only).

    ``wins[j]`` sums 1 for each clean image of j's face scoring higher than j and 1/2 for a tie;
    ``pairs[j]`` counts those clean images. Clean images get 0 and 0.
    """
    clean = kind == CLEAN
    same_face = face_codes[clean][:, None] == face_codes[None, :]
    same_face &= ~clean[None, :]
    q_clean = quality[clean][:, None]
    wins = (q_clean > quality[None, :]) + 0.5 * (q_clean == quality[None, :])
    return (wins * same_face).sum(axis=0), same_face.sum(axis=0).astype(np.float64)


def _share(wins: np.ndarray, pairs: np.ndarray) -> float | None:
    total = pairs.sum()
    return _float(wins.sum() / total) if total > 0 else None


def clean_above_degraded(quality: Any, face: Any, kind: Any, severity: Any) -> dict[str, Any]:
    """Share of (clean, degraded copy of the same face) pairs where the clean image scores higher.

    Ties count 1/2. ``{"overall", "per_kind": {kind: share}, "per_level": {kind: {"1": share, ...}},
    "pairs"}``.
    """
    quality, face, kind, severity = _as_arrays(quality, face, kind, severity)
    _, codes = np.unique(face, return_inverse=True)
    wins, pairs = _pair_wins(quality, codes, kind)
    per_kind, per_level = {}, {}
    for name in _degraded_kinds(kind):
        of_kind = kind == name
        per_kind[name] = _share(wins[of_kind], pairs[of_kind])
        per_level[name] = {
            str(level): _share(
                wins[of_kind & (severity == level)], pairs[of_kind & (severity == level)]
            )
            for level in np.unique(severity[of_kind]).tolist()
        }
    return {
        "overall": _share(wins, pairs),
        "per_kind": per_kind,
        "per_level": per_level,
        "pairs": int(pairs.sum()),
    }


def bootstrap_over_faces(
    quality: Any,
    face: Any,
    kind: Any,
    severity: Any,
    *,
    resamples: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """Percentile bootstrap intervals of the pooled Spearman and the clean-above-degraded share.

    Each resample draws as many faces as there are, with replacement (``default_rng(seed)``); a face
    drawn k times counts with all its images k times. Vectorised: a resample is a row of face
    multiplicities, the Spearman is :func:`weighted_spearman` with those weights and the share a
    ratio of weighted per-face sums. Resamples where a statistic is undefined are left out (counted).
    """
    quality, face, kind, severity = _as_arrays(quality, face, kind, severity)
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    _, codes = np.unique(face, return_inverse=True)
    faces = int(codes.max()) + 1 if codes.size else 0
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, max(faces, 1), size=(resamples, faces))
    multiplicity = np.zeros((resamples, faces))
    np.add.at(multiplicity, (np.arange(resamples)[:, None], draws), 1.0)
    rho = weighted_spearman(quality, -severity.astype(np.float64), multiplicity[:, codes])
    wins, pairs = _pair_wins(quality, codes, kind)
    face_wins = np.bincount(codes, weights=wins, minlength=faces)
    face_pairs = np.bincount(codes, weights=pairs, minlength=faces)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = (multiplicity @ face_wins) / (multiplicity @ face_pairs)
    tail = (1.0 - confidence) / 2.0

    def interval(values: np.ndarray) -> list[float | None]:
        values = values[np.isfinite(values)]
        if values.size == 0:
            return [None, None]
        low, high = np.quantile(values, [tail, 1.0 - tail])
        return [_float(low), _float(high)]

    return {
        "resamples": int(resamples),
        "seed": int(seed),
        "confidence": float(confidence),
        "spearman_ci": interval(rho),
        "clean_above_degraded_ci": interval(share),
        "undefined_resamples": {
            "spearman": int((~np.isfinite(rho)).sum()),
            "clean_above_degraded": int((~np.isfinite(share)).sum()),
        },
    }


def concentration(embeddings: Any) -> dict[str, float | None]:
    """How much a set of embeddings points one way, whatever their lengths.

    ``resultant``: the mean resultant length ``||mean_i e_i / ||e_i||||`` (1 = all one direction,
    near 0 = spread over the sphere, as distinct identities are in a trained FR space);
    ``mean_cosine``: the mean cosine similarity over pairs of different rows, which equals
    ``(n R^2 - 1) / (n - 1)`` for ``n`` rows of resultant length ``R``.
    """
    e = np.asarray(embeddings, dtype=np.float64)
    if e.ndim != 2:
        raise ValueError(f"embeddings must be (N, F), got shape {e.shape}")
    n = e.shape[0]
    if n < 2:
        return {"resultant": None, "mean_cosine": None}
    unit = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
    resultant = float(np.linalg.norm(unit.mean(axis=0)))
    return {
        "resultant": _float(resultant),
        "mean_cosine": _float((n * resultant**2 - 1.0) / (n - 1)),
    }


def embedding_diagnostics(
    embeddings: Any, quality: Any, face: Any, kind: Any, severity: Any
) -> dict[str, Any]:
    """Where a failed transfer comes from: the FR embeddings of the benchmark's images.

    - ``norm_spearman``: Spearman(||e||, -severity) pooled: whether the unnormalised embedding
      shrinks with the damage (a signal the quality head could have read);
    - ``norm_spearman_per_kind``: the same per kind (with the clean images);
    - ``quality_norm_spearman``: Spearman(quality, ||e||): whether the quality head reads it;
    - ``clean``: :func:`concentration` of the clean images' embeddings: different real people
      should point different ways (a resultant near 1 means the backbone maps them all alike).
    """
    quality, face, kind, severity = _as_arrays(quality, face, kind, severity)
    e = np.asarray(embeddings, dtype=np.float64)
    if e.ndim != 2 or e.shape[0] != quality.size:
        raise ValueError(f"embeddings must be ({quality.size}, F), got shape {e.shape}")
    norm = np.linalg.norm(e, axis=1)
    return {
        "norm_spearman": _float(spearman(norm, -severity.astype(np.float64))),
        "norm_spearman_per_kind": spearman_per_kind(norm, kind, severity),
        "quality_norm_spearman": _float(spearman(quality, norm)),
        "clean": concentration(e[kind == CLEAN]),
    }


def transfer_metrics(
    quality: Any,
    face: Any,
    kind: Any,
    severity: Any,
    *,
    resamples: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """All the benchmark's metrics of one model's qualities as a JSON-ready dict (see module doc).

    ``quality`` (N,) per image, ``face`` (N,) face ids, ``kind`` (N,) strings ("clean" for the clean
    image), ``severity`` (N,) 0 for clean, 1.. for degraded. Undefined values are None.
    """
    quality, face, kind, severity = _as_arrays(quality, face, kind, severity)
    share = clean_above_degraded(quality, face, kind, severity)
    return {
        "images": int(quality.size),
        "faces": len(np.unique(face)),
        "spearman": _float(spearman(quality, -severity.astype(np.float64))),
        "spearman_per_kind": spearman_per_kind(quality, kind, severity),
        "per_face_spearman": per_face_spearman(quality, face, severity),
        "clean_above_degraded": share["overall"],
        "clean_above_degraded_per_kind": share["per_kind"],
        "clean_above_degraded_per_level": share["per_level"],
        "pairs": share["pairs"],
        "bootstrap": bootstrap_over_faces(
            quality,
            face,
            kind,
            severity,
            resamples=resamples,
            seed=seed,
            confidence=confidence,
        ),
    }


def check_targets(
    metrics: Mapping[str, Any], targets: Mapping[str, Any] = TARGETS
) -> dict[str, bool]:
    """Which of ``targets`` the point estimates in ``metrics`` (from :func:`transfer_metrics`) meet.

    ``spearman`` and ``clean_above_degraded`` are minima; ``per_kind_spearman_positive`` asks every
    kind's Spearman to be > 0 (an undefined one fails).
    """

    def at_least(value: float | None, target: float) -> bool:
        return value is not None and value >= target

    checks = {}
    if "spearman" in targets:
        checks["spearman"] = at_least(metrics["spearman"], float(targets["spearman"]))
    if "clean_above_degraded" in targets:
        checks["clean_above_degraded"] = at_least(
            metrics["clean_above_degraded"], float(targets["clean_above_degraded"])
        )
    if targets.get("per_kind_spearman_positive"):
        values = list(metrics["spearman_per_kind"].values())
        checks["per_kind_spearman_positive"] = bool(values) and all(
            v is not None and v > 0 for v in values
        )
    return checks


__all__ = [
    "BLUR_SIGMAS",
    "CLEAN",
    "DEGRADATIONS",
    "DOWNSCALE_FACTORS",
    "FACE_REGION",
    "KINDS",
    "LEVELS",
    "NOISE_STDS",
    "OCCLUSION_ASPECT_RANGE",
    "OCCLUSION_SHARES",
    "TARGETS",
    "blur",
    "bootstrap_over_faces",
    "check_targets",
    "clean_above_degraded",
    "concentration",
    "degrade_face",
    "downscale",
    "embedding_diagnostics",
    "face_region",
    "noise",
    "occlude",
    "occlusion_mask",
    "per_face_spearman",
    "spearman_per_kind",
    "transfer_metrics",
]
