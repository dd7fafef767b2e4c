"""Verification benchmarks as one structure, :class:`PairSet`, read from their native formats.

``open_benchmark(kind, path)`` with ``kind`` one of (one module each, registered in
:mod:`.registry`; a new reader is one module that calls ``register_benchmark`` and is imported
here):

- ``bin``: an insightface verification ``.bin`` (lfw, agedb_30, cfp_fp, ...), read through a restricted
  unpickler (:func:`load_verification_bin`); pair i = images 2i and 2i + 1.
- ``xqlfw``: a folder with ``xqlfw_pairs.txt`` and ``xqlfw_aligned_112/<name>/<name>_<n:04d>.jpg``
  (``path`` may also be the pairs file itself).
- ``ijbb`` / ``ijbc``: the ``IJBB`` / ``IJBC`` folder (``loose_crop/`` and ``meta/``); samples are the
  loose crops aligned lazily with their five landmarks; ``pairs`` index *templates*.
- ``folder``: the pairs of a labelled folder ``root/<identity>/<image>`` (mated: same identity), at
  most ``max_mated`` mated and ``max_nonmated`` non-mated ones, beyond a uniform random sample
  reproducible from ``seed`` (see :func:`sample_pairs`; ``info`` holds how many there were).
- ``synthetic``: a ``synthetic:...`` spec (see :mod:`igfiqa.data.synthetic`) over held-out identities
  (``first_identity`` defaults to :data:`HELD_OUT_FIRST_IDENTITY`), pairs as for ``folder``, with the
  generator's ground-truth qualities.

Each reader lists in ``PairSet.files`` every file it read or will read, on which the evaluation
caches are keyed.
"""

from __future__ import annotations

from igfiqa.data.benchmarks import (  # noqa: F401  (each module registers its reader)
    bin,
    folder,
    ijb,
    synthetic_pairs,
    xqlfw,
)
from igfiqa.data.benchmarks.bin import load_verification_bin, open_bin, restricted_unpickle
from igfiqa.data.benchmarks.folder import open_labelled_folder
from igfiqa.data.benchmarks.ijb import open_ijb
from igfiqa.data.benchmarks.pairset import (
    DEFAULT_MAX_MATED,
    DEFAULT_MAX_NONMATED,
    HELD_OUT_FIRST_IDENTITY,
    MAX_PAIRS,
    PairSet,
    all_pairs,
    sample_pairs,
)
from igfiqa.data.benchmarks.registry import (
    BENCHMARK_READERS,
    BenchmarkReader,
    benchmark_kinds,
    detect_kind,
    list_benchmark_kinds,
    open_benchmark,
    register_benchmark,
)
from igfiqa.data.benchmarks.synthetic_pairs import open_synthetic_benchmark
from igfiqa.data.benchmarks.xqlfw import open_xqlfw

__all__ = [
    "BENCHMARK_READERS",
    "DEFAULT_MAX_MATED",
    "DEFAULT_MAX_NONMATED",
    "HELD_OUT_FIRST_IDENTITY",
    "MAX_PAIRS",
    "BenchmarkReader",
    "PairSet",
    "all_pairs",
    "benchmark_kinds",
    "detect_kind",
    "list_benchmark_kinds",
    "load_verification_bin",
    "open_benchmark",
    "open_bin",
    "open_ijb",
    "open_labelled_folder",
    "open_synthetic_benchmark",
    "open_xqlfw",
    "register_benchmark",
    "restricted_unpickle",
    "sample_pairs",
]
