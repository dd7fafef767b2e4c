"""``bin``: an insightface verification ``.bin`` (lfw, agedb_30, cfp_fp, ...), read through a
restricted unpickler (:func:`load_verification_bin`); pair i = images 2i and 2i + 1."""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from igfiqa.data.benchmarks.pairset import EncodedImages, PairSet
from igfiqa.data.benchmarks.registry import BenchmarkReader, register_benchmark
from igfiqa.errors import DataError, UnsafePickleError
from igfiqa.files import MAX_TABLE_BYTES, read_regular_file

_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),  # how protocol-2 pickles written by Python 3 store bytes
    ("builtins", "bytearray"),
    ("__builtin__", "bytearray"),
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Allows tuples, lists, bytes, bools and numpy's array reconstruction; refuses every other
    global (``os.system``, ``builtins.eval``, any class ``__reduce__`` would call)."""

    def __init__(self, file: Any, source: str) -> None:
        super().__init__(file, encoding="bytes")
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise UnsafePickleError(
                f"{self.source}: the pickle wants to load {module}.{name}, which a verification "
                "file never needs (it may try to run code); refused. Only use .bin files you trust"
            )
        return super().find_class(module, name)

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(f"{self.source}: persistent ids are not allowed in a .bin file")


def restricted_unpickle(data: bytes, source: str = "<pickle>") -> Any:
    """Unpickle ``data`` allowing only plain containers, bytes, bools and uint8 numpy arrays."""
    try:
        return _RestrictedUnpickler(io.BytesIO(data), source).load()
    except UnsafePickleError:
        raise
    except Exception as error:
        raise DataError(
            f"{source}: not a readable pickle ({type(error).__name__}: {error})"
        ) from None


def load_verification_bin(path: str | os.PathLike[str]) -> tuple[list, np.ndarray]:
    """Read an insightface ``.bin``: (encoded images, issame (P,) bool) with len(images) == 2P."""
    path = Path(path)
    data = read_regular_file(path, f"{path} (verification file)", MAX_TABLE_BYTES)
    loaded = restricted_unpickle(data, str(path))
    if not isinstance(loaded, (tuple, list)) or len(loaded) != 2:
        raise DataError(
            f"{path}: expected a pickled (bins, issame_list) pair, got {type(loaded).__name__}"
        )
    bins, issame = loaded
    if not isinstance(bins, (list, tuple)) or not isinstance(issame, (list, tuple, np.ndarray)):
        raise DataError(f"{path}: bins and issame_list must be sequences")
    for i, item in enumerate(bins):
        ok = isinstance(item, (bytes, bytearray, memoryview)) or (
            isinstance(item, np.ndarray) and item.dtype == np.uint8 and item.ndim == 1
        )
        if not ok:
            raise DataError(
                f"{path}: image {i} is a {type(item).__name__}, not encoded image bytes"
            )
    if not all(isinstance(v, (bool, np.bool_)) or v in (0, 1) for v in issame):
        raise DataError(f"{path}: issame_list must hold booleans")
    mated = np.asarray([bool(v) for v in issame], dtype=bool)
    if len(bins) != 2 * len(mated):
        raise DataError(
            f"{path}: {len(bins)} images for {len(mated)} pairs (expected {2 * len(mated)})"
        )
    return list(bins), mated


def open_bin(path: str | os.PathLike[str]) -> PairSet:
    """An insightface verification ``.bin`` as a PairSet (pair i = samples 2i, 2i+1)."""
    path = Path(path)
    bins, mated = load_verification_bin(path)
    pairs = np.arange(len(bins), dtype=np.int64).reshape(-1, 2)
    names = [f"{path.name}[{i}]" for i in range(len(bins))]
    return PairSet(
        path.stem, names, pairs, mated, EncodedImages(bins, str(path)), files=[str(path)]
    )


register_benchmark(
    BenchmarkReader("bin", open_bin, detect=lambda path: Path(path).suffix == ".bin", priority=10)
)
