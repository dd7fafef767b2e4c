"""Read the MTCNN weights that the ``mtcnn`` package (MIT, github.com/ipazc/mtcnn) ships, without
its code, TensorFlow or unpickling anything but arrays.

Each ``assets/weights/{pnet,rnet,onet}.lz4`` is an LZ4 frame holding a joblib pickle of a list of
numpy arrays (the Keras layers' weights in creation order). joblib writes every array as a
``NumpyArrayWrapper`` record followed by the raw bytes (after an alignment pad) outside the pickle
stream; :func:`read_weight_file` rebuilds the list with a pure-Python unpickler that allows only
that record and numpy's dtype, and reads the raw bytes itself.
"""

from __future__ import annotations

import importlib.util
import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from igfiqa.detection.base import DetectorUnavailable
from igfiqa.errors import DataError, UnsafePickleError
from igfiqa.files import read_regular_file

PACKAGE = "mtcnn"
NETS = ("pnet", "rnet", "onet")
INSTALL_HINT = 'pip install "igfiqa[detect]" (installs the mtcnn package, whose weights are used)'
MAX_WEIGHT_BYTES = 64 * 2**20


def weights_folder() -> Path:
    """``assets/weights`` inside the installed ``mtcnn`` package (located, never imported)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise DetectorUnavailable(f"face detection needs the MTCNN weights: {INSTALL_HINT}")
    folder = Path(next(iter(spec.submodule_search_locations))) / "assets" / "weights"
    missing = [f"{net}.lz4" for net in NETS if not (folder / f"{net}.lz4").is_file()]
    if missing:
        raise DetectorUnavailable(
            f"{folder} lacks {', '.join(missing)}; reinstall the weights: {INSTALL_HINT}"
        )
    return folder


class _ArrayRecord:
    """Stand-in for joblib's ``NumpyArrayWrapper``: only its attributes are kept."""

    shape: tuple[int, ...]
    order: str
    dtype: np.dtype


class _ArrayNotAllowed:
    """Stand-in for ``numpy.ndarray`` as the record's ``subclass`` field (never called)."""


_ALLOWED = {
    ("joblib.numpy_pickle", "NumpyArrayWrapper"): _ArrayRecord,
    ("numpy", "ndarray"): _ArrayNotAllowed,
    ("numpy", "dtype"): np.dtype,
}


class _WeightUnpickler(pickle._Unpickler):  # type: ignore[name-defined]
    """Pure-Python unpickler (its BUILD can be extended) that refuses every other global."""

    def __init__(self, file: io.BytesIO, source: str) -> None:
        super().__init__(file)
        self.raw = file
        self.source = source
        self.dispatch = dict(pickle._Unpickler.dispatch)  # type: ignore[attr-defined]
        self.dispatch[pickle.BUILD[0]] = _WeightUnpickler._build

    def find_class(self, module: str, name: str) -> Any:
        allowed = _ALLOWED.get((module, name))
        if allowed is None:
            raise UnsafePickleError(
                f"{self.source}: wants to load {module}.{name}, which a weight file never needs "
                "(it may try to run code); refused. Reinstall the mtcnn package"
            )
        return allowed

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(f"{self.source}: persistent ids are not allowed in a weight file")

    def _build(self) -> None:
        pickle._Unpickler.load_build(self)  # type: ignore[attr-defined]
        record = self.stack[-1]
        if isinstance(record, _ArrayRecord):
            self.stack[-1] = self._read_array(record)

    def _read_array(self, record: _ArrayRecord) -> np.ndarray:
        dtype = np.dtype(record.dtype)
        if dtype.hasobject or dtype.kind not in "fiub":
            raise UnsafePickleError(f"{self.source}: array of dtype {dtype} refused")
        if getattr(record, "numpy_array_alignment_bytes", None):
            pad = self.raw.read(1)
            self.raw.read(int.from_bytes(pad, "little"))
        shape = tuple(int(n) for n in record.shape)
        count = int(np.prod(shape)) if shape else 1
        data = self.raw.read(count * dtype.itemsize)
        if len(data) != count * dtype.itemsize:
            raise DataError(f"{self.source}: truncated array data; reinstall the mtcnn package")
        order = "F" if getattr(record, "order", "C") == "F" else "C"
        return np.frombuffer(data, dtype).reshape(shape, order=order).copy()


def read_weight_file(path: Path) -> list[np.ndarray]:
    """The list of arrays in one ``.lz4`` weight file."""
    try:
        import lz4.frame
    except ImportError:
        raise DetectorUnavailable(f"reading the MTCNN weights needs lz4: {INSTALL_HINT}") from None
    raw = read_regular_file(path, f"{path} (MTCNN weights)", MAX_WEIGHT_BYTES)
    try:
        data = lz4.frame.decompress(raw)
    except RuntimeError as error:
        raise DataError(
            f"{path}: not an LZ4 frame ({error}); reinstall the mtcnn package"
        ) from None
    try:
        arrays = _WeightUnpickler(io.BytesIO(data), str(path)).load()
    except (UnsafePickleError, DataError):
        raise
    except Exception as error:
        raise DataError(
            f"{path}: not a readable weight file ({type(error).__name__}: {error}); reinstall the "
            "mtcnn package"
        ) from None
    if not isinstance(arrays, list) or not all(isinstance(a, np.ndarray) for a in arrays):
        raise DataError(f"{path}: expected a list of arrays; reinstall the mtcnn package")
    return arrays
