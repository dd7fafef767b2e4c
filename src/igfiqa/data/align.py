"""5-point face alignment to the 112x112 ArcFace template (the one alignment routine).

The transform is the least-squares similarity (rotation, isotropic scale, translation; no reflection)
from the detected landmarks to the template, estimated in closed form (Umeyama 1991, "Least-squares
estimation of transformation parameters between two point patterns"). The warp is bilinear with a
black (0) border.
"""

from __future__ import annotations

import cv2
import numpy as np

from igfiqa.errors import DataError

ARCFACE_TEMPLATE = np.array(
    [
        [38.2946, 51.6963],  # left eye
        [73.5318, 51.5014],  # right eye
        [56.0252, 71.7366],  # nose tip
        [41.5493, 92.3655],  # left mouth corner
        [70.7299, 92.2041],  # right mouth corner
    ],
    dtype=np.float64,
)
"""Landmarks (x, y) of the 112x112 ArcFace crop: eyes, nose tip, mouth corners."""


def estimate_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity ``dst ~ s R src + t`` (Umeyama, no reflection) as a (2, 3) matrix.

    With centred points ``x_i = src_i - mean(src)``, ``y_i = dst_i - mean(dst)``, the covariance
    ``A = (1/n) sum y_i x_i^T = U S V^T`` and ``D = diag(1, sign(det A))``: ``R = U D V^T``,
    ``s = trace(S D) / ((1/n) sum |x_i|^2)`` and ``t = mean(dst) - s R mean(src)``.
    Returns ``[[s R, t]]`` so that ``dst ~ M @ [x, y, 1]``.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.ndim != 2 or src.shape[1] != 2 or src.shape != dst.shape or len(src) < 2:
        raise DataError(
            f"landmarks must be two (N, 2) arrays of the same shape with N >= 2, "
            f"got {src.shape} and {dst.shape}"
        )
    if not (np.isfinite(src).all() and np.isfinite(dst).all()):
        raise DataError("landmarks contain NaN or infinite coordinates")
    src_mean = src.mean(axis=0)
    dst_mean = dst.mean(axis=0)
    src_c = src - src_mean
    dst_c = dst - dst_mean
    src_var = (src_c**2).sum() / len(src)
    if src_var <= 1e-12:
        raise DataError("landmarks are degenerate (all points coincide); cannot align")
    cov = dst_c.T @ src_c / len(src)
    u, singular, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(cov) < 0:
        d[1] = -1.0
    elif np.linalg.matrix_rank(cov) == 1 and np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[1] = -1.0  # rank-deficient (collinear points): still a proper rotation
    rotation = u @ np.diag(d) @ vt
    scale = float(singular @ d) / src_var
    matrix = np.empty((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = dst_mean - scale * rotation @ src_mean
    return matrix


def align_face(
    image: np.ndarray,
    landmarks: np.ndarray,
    size: int = 112,
    *,
    template: np.ndarray | None = None,
) -> np.ndarray:
    """Warp ``image`` (H, W, 3) so that its five ``landmarks`` (5, 2) land on the ArcFace template.

    The template is scaled by ``size / 112`` for other output sizes; ``template`` (5, 2), in pixels
    of the ``size`` crop, replaces it (a model card's own template, e.g. OFIQ's). Returns
    (size, size, 3) uint8.
    """
    image = np.asarray(image)
    landmarks = np.asarray(landmarks, dtype=np.float64)
    if landmarks.shape != (5, 2):
        raise DataError(
            f"align_face needs 5 landmarks (5, 2) in pixels, got shape {landmarks.shape}"
        )
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise DataError(
            f"align_face needs an (H, W, 3) uint8 image, got {image.shape} {image.dtype}; "
            "decode it with igfiqa.data.decode.decode_image"
        )
    target = ARCFACE_TEMPLATE * (size / 112.0) if template is None else np.asarray(template, float)
    if target.shape != (5, 2):
        raise DataError(f"an alignment template is 5 points (5, 2), got shape {target.shape}")
    matrix = estimate_similarity(landmarks, target)
    return cv2.warpAffine(
        image,
        matrix,
        (size, size),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(0, 0, 0),
    )


__all__ = ["ARCFACE_TEMPLATE", "align_face", "estimate_similarity"]
