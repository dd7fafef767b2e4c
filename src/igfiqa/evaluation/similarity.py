"""Comparison scores: the cosine similarity of pairs of embeddings (or template features), the one
path every evaluation takes (``igfiqa evaluate``, the demo, the study, the trainer's synthetic
verification)."""

from __future__ import annotations

import itertools

import numpy as np

CHUNK = 131_072
"""Pairs per chunk of the row-wise dot product."""


def normalise_rows(features: np.ndarray) -> np.ndarray:
    """Rows divided by their L2 norm, float32 (a zero row gives NaN: no direction, no similarity)."""
    norm = np.linalg.norm(features, axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (features / norm).astype(np.float32)


def pair_similarity(
    features: np.ndarray, pairs: np.ndarray, chunk: int = CHUNK, block: int | None = None
) -> np.ndarray:
    """Cosine similarity of each pair of rows of ``features`` (L2-normalised here).

    Sparse pairs: gather both rows and take a row-wise dot product, in chunks of ``chunk`` pairs.
    Dense pairs (more than about T^2 / 200 pairs of T rows, e.g. IJB-C's 15.6M pairs of 23k
    templates): pairs are bucketed by (row block, row block) and each bucket is served from one
    matrix product of two blocks of ``block`` rows, which is far cheaper than gathering rows.
    ``block`` forces the blocked method with that block size.
    """
    unit = normalise_rows(np.asarray(features, dtype=np.float32))
    pairs = np.asarray(pairs, dtype=np.int64)
    out = np.empty(len(pairs), dtype=np.float32)
    rows = len(unit)
    if block is None and len(pairs) * 200 > rows * rows and rows > 4096:
        block = 2048
    if block is None:
        for start in range(0, len(pairs), chunk):
            a = unit[pairs[start : start + chunk, 0]]
            b = unit[pairs[start : start + chunk, 1]]
            out[start : start + chunk] = np.einsum("ij,ij->i", a, b)
        return out
    num_blocks = -(-rows // block)
    first, second = pairs[:, 0], pairs[:, 1]
    bucket = (first // block) * num_blocks + second // block
    order = np.argsort(bucket)
    bucket = bucket[order]
    bounds = np.concatenate(([0], np.flatnonzero(bucket[1:] != bucket[:-1]) + 1, [len(order)]))
    for start, stop in itertools.pairwise(bounds):
        if start == stop:
            continue
        i, j = divmod(int(bucket[start]), num_blocks)
        products = unit[i * block : (i + 1) * block] @ unit[j * block : (j + 1) * block].T
        index = order[start:stop]
        out[index] = products[first[index] - i * block, second[index] - j * block]
    return out


__all__ = ["normalise_rows", "pair_similarity"]
