"""MXNet RecordIO (``.rec`` + ``.idx``) in pure Python, byte-compatible with MXNet / dmlc-core.

File layout (see docs/formats.md):

- ``.rec``: a sequence of chunks ``magic (uint32 LE 0xCED7230A) | lrec (uint32 LE) | payload | pad``,
  where ``lrec = cflag << 29 | length`` and padding brings the chunk to a multiple of 4 bytes. A record
  whose bytes contain the magic word at a 4-byte-aligned offset is written as several chunks (cflag 1
  first, 2 middle, 3 last) with each such magic word removed; the reader joins the chunks and puts the
  magic words back. cflag 0 is a record in one chunk.
- ``.idx``: text lines ``key<TAB>offset`` (offset of the record's first chunk).
- Record payload: ``struct '<IfQQ'`` header (flag, label, id, id2); if ``flag > 0``, ``flag`` float32
  labels follow (the scalar label is then 0); then the encoded image.
- insightface layout: record 0 has ``flag > 0`` and labels ``[A, B]``: keys ``1 .. A-1`` are images,
  keys ``A .. B-1`` identity records whose labels ``[a, b)`` give one identity's image keys.
"""

from __future__ import annotations

import os
import struct
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from igfiqa.errors import DataError
from igfiqa.files import writing

MAGIC = 0xCED7230A
_MAGIC_BYTES = struct.pack("<I", MAGIC)
_LENGTH_MASK = (1 << 29) - 1
_IR_FORMAT = "<IfQQ"
_IR_SIZE = struct.calcsize(_IR_FORMAT)  # 24
_HAS_PREAD = hasattr(os, "pread")


@dataclass(frozen=True)
class IRHeader:
    """The image-record header: ``flag`` (number of extra float labels), ``label``, ``id``, ``id2``.

    ``label`` is a float when ``flag == 0`` and a float32 array of ``flag`` values otherwise.
    """

    flag: int
    label: float | np.ndarray
    id: int = 0
    id2: int = 0


# -- record payloads -----------------------------------------------------------------------------


def pack(header: IRHeader | tuple, payload: bytes) -> bytes:
    """Header + payload -> record bytes (MXNet ``recordio.pack``).

    A scalar label is stored in the header (flag 0); a sequence label is stored as ``flag`` float32
    values after the header (the header's label field is then 0).
    """
    if not isinstance(header, IRHeader):
        header = IRHeader(*header)
    label = header.label
    if isinstance(label, (int, float, np.integer, np.floating)):
        head = struct.pack(_IR_FORMAT, 0, float(label), header.id, header.id2)
        return head + bytes(payload)
    labels = np.asarray(label, dtype="<f4").ravel()
    head = struct.pack(_IR_FORMAT, labels.size, 0.0, header.id, header.id2)
    return head + labels.tobytes() + bytes(payload)


def unpack(record: bytes, *, name: str = "<record>") -> tuple[IRHeader, bytes]:
    """Record bytes -> (header, payload) (MXNet ``recordio.unpack``)."""
    if len(record) < _IR_SIZE:
        raise DataError(f"{name}: record of {len(record)} bytes is shorter than its 24-byte header")
    flag, label, ident, ident2 = struct.unpack_from(_IR_FORMAT, record)
    if flag > 0:
        end = _IR_SIZE + 4 * flag
        if len(record) < end:
            raise DataError(f"{name}: header announces {flag} labels but the record is too short")
        labels = np.frombuffer(record, dtype="<f4", count=flag, offset=_IR_SIZE).astype(np.float32)
        return IRHeader(flag, labels, ident, ident2), record[end:]
    return IRHeader(0, float(label), ident, ident2), record[_IR_SIZE:]


# -- chunk encoding ------------------------------------------------------------------------------


def _lrec(cflag: int, length: int) -> bytes:
    return struct.pack("<II", MAGIC, (cflag << 29) | length)


def encode_record(record: bytes) -> bytes:
    """The bytes dmlc-core's ``RecordIOWriter::WriteRecord`` writes for ``record`` (chunks + pad)."""
    length = len(record)
    if length > _LENGTH_MASK:
        raise DataError(f"record of {length} bytes exceeds the RecordIO limit of 2^29 - 1 bytes")
    out = bytearray()
    start = 0
    # Magic words at 4-byte-aligned offsets split the record; they are not written.
    position = record.find(_MAGIC_BYTES)
    while 0 <= position <= length - 4:
        if position % 4 == 0:
            out += _lrec(1 if start == 0 else 2, position - start)
            out += record[start:position]
            start = position + 4
            position = record.find(_MAGIC_BYTES, start)
        else:
            position = record.find(_MAGIC_BYTES, position + 1)
    out += _lrec(3 if start else 0, length - start)
    out += record[start:]
    out += b"\x00" * (-length % 4)
    return bytes(out)


class RecordIOWriter:
    """Append records to a ``.rec`` file and write its ``.idx`` (MXNet ``MXIndexedRecordIO('w')``).

    A failed write (a full disk, a read-only folder) raises :class:`igfiqa.errors.OutputError`
    naming the file."""

    def __init__(
        self, rec_path: str | os.PathLike[str], idx_path: str | os.PathLike[str] | None = None
    ):
        self.rec_path = Path(rec_path)
        self.idx_path = (
            Path(idx_path) if idx_path is not None else self.rec_path.with_suffix(".idx")
        )
        with writing(self.rec_path, "create"):
            self._rec = open(self.rec_path, "wb")  # noqa: SIM115 - closed in close()
            try:
                self._idx = open(self.idx_path, "w", encoding="ascii", newline="\n")  # noqa: SIM115
            except OSError:
                self._rec.close()
                raise
        self.keys: list[int] = []

    def write(self, key: int, record: bytes) -> int:
        """Write ``record`` under ``key``; returns its byte offset."""
        with writing(self.rec_path):
            offset = self._rec.tell()
            self._rec.write(encode_record(record))
            self._idx.write(f"{int(key)}\t{offset}\n")
        self.keys.append(int(key))
        return offset

    def rewrite(self, offset: int, record: bytes) -> None:
        """Overwrite the record at ``offset`` with one of the same encoded size; then append."""
        with writing(self.rec_path):
            self._rec.seek(offset)
            self._rec.write(encode_record(record))
            self._rec.seek(0, os.SEEK_END)

    def close(self) -> None:
        """Flush and close both files."""
        try:
            with writing(self.rec_path):
                self._rec.close()
        finally:
            with writing(self.idx_path):
                self._idx.close()

    def __enter__(self) -> RecordIOWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_index(idx_path: str | os.PathLike[str]) -> dict[int, int]:
    """Parse a ``.idx`` file into ``{key: offset}`` (in file order)."""
    path = Path(idx_path)
    try:
        text = path.read_text(encoding="ascii", errors="replace")
    except FileNotFoundError:
        raise DataError(
            f"{path}: RecordIO index not found (it must sit next to the .rec file)"
        ) from None
    index: dict[int, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split("\t") if "\t" in line else line.split()
        try:
            key, offset = int(parts[0]), int(parts[1])
        except (IndexError, ValueError):
            raise DataError(
                f"{path}, line {number}: expected 'key<TAB>offset', got {line[:80]!r}"
            ) from None
        if offset < 0:
            raise DataError(f"{path}, line {number}: negative offset {offset}")
        index[key] = offset
    return index


class RecordIOReader:
    """Random access to the records of a ``.rec`` file through its ``.idx``.

    The file handle is opened lazily and re-opened in each process (pid check), so a reader can be
    pickled into DataLoader workers; reads are positional (``os.pread``), so threads may share it.
    """

    def __init__(
        self, rec_path: str | os.PathLike[str], idx_path: str | os.PathLike[str] | None = None
    ):
        self.rec_path = Path(rec_path)
        if not self.rec_path.is_file():
            raise DataError(f"{self.rec_path}: RecordIO file not found")
        self.idx_path = (
            Path(idx_path) if idx_path is not None else self.rec_path.with_suffix(".idx")
        )
        self.index = read_index(self.idx_path)
        self.file_size = self.rec_path.stat().st_size
        self._handle = None
        self._pid: int | None = None
        self._lock = threading.Lock()

    @property
    def keys(self) -> list[int]:
        """Keys in index order."""
        return list(self.index)

    def __len__(self) -> int:
        return len(self.index)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_handle"] = None
        state["_pid"] = None
        del state["_lock"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def _file(self):
        if self._handle is None or self._pid != os.getpid():
            self._handle = open(self.rec_path, "rb", buffering=0)  # noqa: SIM115 - random access
            self._pid = os.getpid()
        return self._handle

    def _pread(self, offset: int, size: int) -> bytes:
        """``size`` bytes at ``offset`` (fewer at the end of the file); safe to call from threads."""
        handle = self._file()
        if _HAS_PREAD:
            return os.pread(handle.fileno(), size, offset)
        with self._lock:
            handle.seek(offset)
            return handle.read(size)

    def close(self) -> None:
        """Close the file handle (it reopens on the next read)."""
        if self._handle is not None and self._pid == os.getpid():
            self._handle.close()
        self._handle = None

    def read(self, key: int) -> bytes:
        """The record stored under ``key`` (chunks joined, magic words restored)."""
        try:
            offset = self.index[key]
        except KeyError:
            raise DataError(
                f"{self.rec_path}: no record with key {key} in {self.idx_path}"
            ) from None
        return self.read_at(offset, key=key)

    def read_at(self, offset: int, *, key: int | None = None) -> bytes:
        """The record whose first chunk starts at byte ``offset``."""
        where = f"{self.rec_path} (key {key}, offset {offset})"
        if offset >= self.file_size:
            raise DataError(
                f"{where}: offset past the end of the file ({self.file_size} bytes); the .idx does "
                "not belong to this .rec or the .rec is truncated"
            )
        parts: list[bytes] = []
        first = True
        while True:
            head = self._pread(offset, 8)
            if len(head) < 8:
                raise DataError(f"{where}: truncated chunk header (file ends)")
            magic, lrec = struct.unpack("<II", head)
            if magic != MAGIC:
                raise DataError(
                    f"{where}: bad magic 0x{magic:08X} (expected 0x{MAGIC:08X}); not a RecordIO "
                    "file, or the .idx offsets are wrong"
                )
            cflag, length = lrec >> 29, lrec & _LENGTH_MASK
            if (first and cflag not in (0, 1)) or (not first and cflag not in (2, 3)):
                raise DataError(f"{where}: unexpected chunk flag {cflag}; the file is corrupt")
            padded = length + (-length % 4)
            body = self._pread(offset + 8, length)
            if len(body) < length:
                raise DataError(
                    f"{where}: truncated chunk (needs {padded} bytes, {len(body)} left)"
                )
            parts.append(body)
            offset += 8 + padded
            if cflag in (0, 3):
                return _MAGIC_BYTES.join(parts)
            first = False

    def read_header(self, key: int) -> IRHeader:
        """The header of record ``key`` (reads the whole record; use for a few keys)."""
        return unpack(self.read(key), name=f"{self.rec_path} key {key}")[0]

    def __iter__(self) -> Iterator[tuple[int, bytes]]:
        for key in self.index:
            yield key, self.read(key)


@dataclass(frozen=True)
class InsightfaceLayout:
    """Which keys are images and what their classes are, in an insightface RecordIO."""

    image_keys: np.ndarray  # (N,) int64
    labels: np.ndarray  # (N,) int64
    identity_ranges: np.ndarray | None  # (C, 2) int64 [a, b) key ranges, when present


def read_layout(reader: RecordIOReader) -> InsightfaceLayout:
    """Image keys and classes of an insightface RecordIO (see the module docstring).

    With identity records, the class of the images in identity ``c``'s key range is ``c``; without,
    every image header is read once to take its label (an integral, non-negative float).
    """
    name = str(reader.rec_path)
    if not reader.index:
        raise DataError(f"{reader.idx_path}: the index is empty")
    header0 = unpack(reader.read(0), name=f"{name} key 0")[0] if 0 in reader.index else None
    if header0 is not None and header0.flag > 0:
        if header0.flag < 2:
            raise DataError(
                f"{name} key 0: header record needs two labels [A, B], got {header0.flag}"
            )
        a, b = (_integral(v, name, 0) for v in header0.label[:2])
        image_keys = np.arange(1, a, dtype=np.int64)
        missing = [
            k for k in image_keys[:: max(len(image_keys) // 1000, 1)] if int(k) not in reader.index
        ]
        if missing:
            raise DataError(
                f"{name}: header says images are keys 1..{a - 1} but key {missing[0]} is missing"
            )
        ranges = []
        for key in range(a, b):
            if key not in reader.index:
                break
            header = reader.read_header(key)
            if header.flag < 2:
                raise DataError(f"{name} key {key}: identity record without an [a, b) label pair")
            lo, hi = (_integral(v, name, key) for v in header.label[:2])
            if not 1 <= lo <= hi <= a:
                raise DataError(
                    f"{name} key {key}: identity range [{lo}, {hi}) outside images 1..{a - 1}"
                )
            ranges.append((lo, hi))
        if ranges:
            identity_ranges = np.asarray(ranges, dtype=np.int64)
            labels = np.full(len(image_keys), -1, dtype=np.int64)
            for cls, (lo, hi) in enumerate(ranges):
                labels[lo - 1 : hi - 1] = cls
            if (labels < 0).any():
                hole = int(image_keys[np.flatnonzero(labels < 0)[0]])
                raise DataError(f"{name}: image key {hole} belongs to no identity record")
            return InsightfaceLayout(image_keys, labels, identity_ranges)
        return InsightfaceLayout(image_keys, _scan_labels(reader, image_keys), None)
    image_keys = np.asarray(list(reader.index), dtype=np.int64)
    return InsightfaceLayout(image_keys, _scan_labels(reader, image_keys), None)


def _scan_labels(reader: RecordIOReader, keys: Sequence[int] | np.ndarray) -> np.ndarray:
    """Read the class label of each image record (scalar label, or label[0] when flag > 0).

    Reads only the first 36 bytes of each record when they hold the whole header; anything unusual
    (a bad magic, a header split across chunks, an offset past the end) goes through the checked
    :meth:`RecordIOReader.read_header`, which raises a clear error.
    """
    labels = np.empty(len(keys), dtype=np.int64)
    need = 8 + _IR_SIZE + 4
    for i, key in enumerate(keys):
        key = int(key)
        offset = reader.index.get(key)
        if offset is None:
            raise DataError(f"{reader.rec_path}: key {key} is missing from {reader.idx_path}")
        head = reader._pread(offset, need)
        label = None
        if len(head) == need:
            magic, lrec = struct.unpack_from("<II", head)
            if magic == MAGIC and lrec >> 29 in (0, 1) and (lrec & _LENGTH_MASK) >= _IR_SIZE + 4:
                flag, scalar, _, _ = struct.unpack_from(_IR_FORMAT, head, 8)
                label = scalar if flag == 0 else struct.unpack_from("<f", head, 8 + _IR_SIZE)[0]
        if label is None:
            header = reader.read_header(key)
            label = header.label if header.flag == 0 else float(header.label[0])
        labels[i] = _integral(label, str(reader.rec_path), key)
    return labels


def _integral(value: float, name: str, key: int) -> int:
    if not np.isfinite(value) or value != np.floor(value) or value < 0:
        raise DataError(
            f"{name} key {key}: label {value!r} is not a non-negative integer class id; "
            "this RecordIO does not hold class-labelled face images"
        )
    return int(value)


def read_property(root: str | os.PathLike[str]) -> tuple[int, int, int] | None:
    """``property`` file -> (num_classes, height, width), or None if absent."""
    path = Path(root) / "property"
    if not path.is_file():
        return None
    text = path.read_text(encoding="ascii", errors="replace").strip()
    try:
        values = tuple(int(v) for v in text.replace(" ", "").split(","))
    except ValueError:
        raise DataError(f"{path}: expected 'num_classes,height,width', got {text[:60]!r}") from None
    if len(values) != 3 or min(values) <= 0:
        raise DataError(
            f"{path}: expected three positive integers 'num_classes,height,width', got {text!r}"
        )
    return values  # type: ignore[return-value]


def write_property(root: str | os.PathLike[str], num_classes: int, size: int) -> None:
    """Write the insightface ``property`` file ``num_classes,size,size``."""
    path = Path(root) / "property"
    with writing(path):
        path.write_text(f"{num_classes},{size},{size}")


def write_insightface_recordio(
    root: str | os.PathLike[str],
    items: Iterable[tuple[bytes, int]],
    *,
    image_size: int,
    num_classes: int | None = None,
    prefix: str = "train",
) -> tuple[Path, int]:
    """Write ``root/{prefix}.rec/.idx/property`` in the insightface layout; returns (.rec path, images).

    ``items`` yields (encoded image bytes, class id) grouped by class in non-decreasing class order
    (as insightface writes them). Classes without images get an empty identity range. Record 0 is
    written first as a placeholder and rewritten in place at the end (same size: 24 + 8 bytes).
    """
    root = Path(root)
    with writing(root, "create the folder"):
        root.mkdir(parents=True, exist_ok=True)
    rec_path = root / f"{prefix}.rec"
    starts: list[int] = []  # first image key of each class
    key = 0
    last = -1
    with RecordIOWriter(rec_path) as writer:
        placeholder = pack(IRHeader(2, np.array([0.0, 0.0], np.float32)), b"")
        writer.write(0, placeholder)
        for image, label in items:
            label = int(label)
            if label < last or label < 0:
                raise DataError(
                    "write_insightface_recordio: images must be grouped by class in increasing order"
                )
            key += 1
            while len(starts) <= label:
                starts.append(key)
            last = label
            writer.write(key, pack(IRHeader(0, float(label), key, 0), image))
        classes = max(len(starts), num_classes or 0)
        a = key + 1
        starts += [a] * (classes - len(starts))
        ends = [*starts[1:], a]
        for cls in range(classes):
            header = IRHeader(2, np.array([starts[cls], ends[cls]], np.float32), a + cls, 0)
            writer.write(a + cls, pack(header, b""))
        header0 = pack(IRHeader(2, np.array([a, a + classes], np.float32)), b"")
        writer.rewrite(0, header0)
    write_property(root, classes, image_size)
    return rec_path, key


__all__ = [
    "MAGIC",
    "IRHeader",
    "InsightfaceLayout",
    "RecordIOReader",
    "RecordIOWriter",
    "encode_record",
    "pack",
    "read_index",
    "read_layout",
    "read_property",
    "unpack",
    "write_insightface_recordio",
    "write_property",
]
