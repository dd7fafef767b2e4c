"""RecordIO: exact chunk bytes, round trips, the insightface layout, and corrupt files."""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np
import pytest

from igfiqa.data.convert import encode_image
from igfiqa.data.recordio import (
    MAGIC,
    IRHeader,
    RecordIOReader,
    RecordIOWriter,
    encode_record,
    pack,
    read_layout,
    read_property,
    unpack,
    write_insightface_recordio,
)
from igfiqa.errors import DataError, ImageDecodeError

M = struct.pack("<I", 0xCED7230A)


def chunk(cflag: int, payload: bytes) -> bytes:
    """Hand-made chunk: magic, lrec = cflag << 29 | length, payload (padding added by caller)."""
    return M + struct.pack("<I", (cflag << 29) | len(payload)) + payload


def test_magic_constant_bytes() -> None:
    assert MAGIC == 0xCED7230A and M == b"\x0a\x23\xd7\xce"


def test_plain_record_is_one_chunk_with_padding() -> None:
    assert encode_record(b"ABCDEFG") == chunk(0, b"ABCDEFG") + b"\x00"
    assert encode_record(b"ABCDEFGH") == chunk(0, b"ABCDEFGH")
    assert encode_record(b"") == chunk(0, b"")


def test_record_with_aligned_magic_is_split_exactly() -> None:
    record = b"ABCD" + M + b"EFGHIJ"
    expected = chunk(1, b"ABCD") + chunk(3, b"EFGHIJ") + b"\x00\x00"
    assert encode_record(record) == expected
    # Two magic words: first, middle and last chunks.
    record = b"ABCD" + M + b"EFGH" + M + b"XYZ"
    expected = chunk(1, b"ABCD") + chunk(2, b"EFGH") + chunk(3, b"XYZ") + b"\x00"
    assert encode_record(record) == expected
    # Magic at the very start and at the very end: empty first / last chunks.
    assert encode_record(M + b"XY") == chunk(1, b"") + chunk(3, b"XY") + b"\x00\x00"
    assert encode_record(b"ABCD" + M) == chunk(1, b"ABCD") + chunk(3, b"")
    # Adjacent magic words: an empty middle chunk.
    assert (
        encode_record(M + M + b"Q") == chunk(1, b"") + chunk(2, b"") + chunk(3, b"Q") + b"\x00" * 3
    )


def test_unaligned_magic_is_not_split() -> None:
    record = b"AB" + M + b"CD"
    assert encode_record(record) == chunk(0, record)
    # An unaligned occurrence before an aligned one: only the aligned one splits.
    record = b"A" + M + b"BCD" + M
    assert encode_record(record) == chunk(1, b"A" + M + b"BCD") + chunk(3, b"")


def _write(path: Path, records: dict[int, bytes]) -> None:
    with RecordIOWriter(path) as writer:
        for key, record in records.items():
            writer.write(key, record)


def test_reader_joins_hand_made_split_records(tmp_path: Path) -> None:
    rec = tmp_path / "x.rec"
    first = b"ABCD" + M + b"EFGH" + M + b"XYZ"
    second = b"plain"
    data = encode_record(first)
    rec.write_bytes(data + encode_record(second))
    (tmp_path / "x.idx").write_text(f"7\t0\n9\t{len(data)}\n")
    reader = RecordIOReader(rec)
    assert reader.keys == [7, 9]
    assert reader.read(7) == first and reader.read(9) == second


def test_writer_files_and_random_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    records = {}
    for key in range(40):
        parts = [rng.bytes(int(rng.integers(0, 30))) for _ in range(3)]
        # Plant magic words at random (aligned or not) positions.
        records[key] = parts[0] + M + parts[1] + (M if key % 3 else b"") + parts[2]
    _write(tmp_path / "r.rec", records)
    lines = (tmp_path / "r.idx").read_text().splitlines()
    assert lines[0] == "0\t0" and all(len(line.split("\t")) == 2 for line in lines)
    offsets = [int(line.split("\t")[1]) for line in lines]
    assert all(o % 4 == 0 for o in offsets)
    reader = RecordIOReader(tmp_path / "r.rec")
    for key, record in records.items():
        assert reader.read(key) == record
    assert (tmp_path / "r.rec").stat().st_size == sum(
        len(encode_record(r)) for r in records.values()
    )


def test_pack_unpack_headers() -> None:
    record = pack(IRHeader(0, 3.0, 5, 0), b"IMG")
    assert record == struct.pack("<IfQQ", 0, 3.0, 5, 0) + b"IMG"
    header, payload = unpack(record)
    assert header.flag == 0 and header.label == 3.0 and header.id == 5 and payload == b"IMG"
    record = pack(IRHeader(0, [10.0, 20.0], 0, 0), b"")
    assert record == struct.pack("<IfQQ", 2, 0.0, 0, 0) + struct.pack("<2f", 10, 20)
    header, payload = unpack(record)
    assert header.flag == 2 and list(header.label) == [10.0, 20.0] and payload == b""
    with pytest.raises(DataError, match="shorter"):
        unpack(b"\x00" * 10)
    with pytest.raises(DataError, match="3 labels"):
        unpack(struct.pack("<IfQQ", 3, 0.0, 0, 0) + b"\x00" * 4)


def _insightface(tmp_path: Path, labels: list[int], size: int = 16) -> Path:
    rng = np.random.default_rng(1)
    images = [
        encode_image(rng.integers(0, 256, (size, size, 3), dtype=np.uint8), "png") for _ in labels
    ]
    return write_insightface_recordio(tmp_path, zip(images, labels, strict=True), image_size=size)[
        0
    ]


def test_insightface_layout_written_and_read(tmp_path: Path) -> None:
    labels = [0, 0, 0, 1, 2, 2]
    rec = _insightface(tmp_path, labels)
    reader = RecordIOReader(rec)
    header0 = reader.read_header(0)
    assert header0.flag == 2 and list(header0.label) == [7.0, 10.0]  # images 1..6, identities 7..9
    assert [list(reader.read_header(k).label) for k in (7, 8, 9)] == [[1, 4], [4, 5], [5, 7]]
    assert reader.read_header(4).label == 1.0
    layout = read_layout(reader)
    assert layout.image_keys.tolist() == [1, 2, 3, 4, 5, 6]
    assert layout.labels.tolist() == labels
    assert layout.identity_ranges.tolist() == [[1, 4], [4, 5], [5, 7]]
    assert read_property(tmp_path) == (3, 16, 16)
    assert (tmp_path / "property").read_text() == "3,16,16"


def test_layout_without_header_record_scans_labels(tmp_path: Path) -> None:
    # Plain RecordIO (no header record 0): every key is an image, label from each header.
    records = {k: pack(IRHeader(0, float(label), k, 0), b"x") for k, label in enumerate([2, 0, 1])}
    records[3] = pack(IRHeader(0, [1.0, 7.0], 3, 0), b"x")  # multi-label: class = label[0]
    _write(tmp_path / "p.rec", records)
    layout = read_layout(RecordIOReader(tmp_path / "p.rec"))
    assert layout.image_keys.tolist() == [0, 1, 2, 3] and layout.labels.tolist() == [2, 0, 1, 1]
    assert layout.identity_ranges is None


def test_wrong_magic_names_file_and_key(tmp_path: Path) -> None:
    rec = _insightface(tmp_path, [0, 1])
    offsets = [
        int(line.split("\t")[1]) for line in (tmp_path / "train.idx").read_text().splitlines()
    ]
    data = bytearray(rec.read_bytes())
    data[offsets[2] : offsets[2] + 4] = b"JUNK"
    rec.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"train\.rec \(key 2, offset \d+\): bad magic"):
        RecordIOReader(rec).read(2)


def test_truncated_chunk_and_offset_past_end(tmp_path: Path) -> None:
    rec = _insightface(tmp_path, [0, 1])
    offsets = [
        int(line.split("\t")[1]) for line in (tmp_path / "train.idx").read_text().splitlines()
    ]
    rec.write_bytes(rec.read_bytes()[: offsets[2] + 20])
    reader = RecordIOReader(rec)
    with pytest.raises(DataError, match=r"key 2.*truncated chunk"):
        reader.read(2)
    with pytest.raises(DataError, match=r"key 3.*past the end"):
        reader.read(3)
    with pytest.raises(DataError, match="no record with key 99"):
        reader.read(99)


def test_bad_index_and_missing_files(tmp_path: Path) -> None:
    rec = _insightface(tmp_path, [0])
    (tmp_path / "train.idx").write_text("0\tzero\n")
    with pytest.raises(DataError, match=r"train\.idx, line 1"):
        RecordIOReader(rec)
    (tmp_path / "train.idx").unlink()
    with pytest.raises(DataError, match="index not found"):
        RecordIOReader(rec)
    with pytest.raises(DataError, match="not found"):
        RecordIOReader(tmp_path / "nope.rec")


def test_non_integer_label_is_refused(tmp_path: Path) -> None:
    records = {0: pack(IRHeader(0, 1.0, 0, 0), b"x"), 1: pack(IRHeader(0, 2.5, 1, 0), b"x")}
    _write(tmp_path / "f.rec", records)
    with pytest.raises(DataError, match=r"f\.rec key 1: label 2\.5 is not a non-negative integer"):
        read_layout(RecordIOReader(tmp_path / "f.rec"))


def test_undecodable_image_names_file_and_key(tmp_path: Path) -> None:
    from igfiqa.data.datasets import RecordIODataset

    rec = tmp_path / "train.rec"
    with RecordIOWriter(rec) as writer:
        writer.write(0, pack(IRHeader(0, [3.0, 5.0], 0, 0), b""))
        writer.write(
            1, pack(IRHeader(0, 0.0, 1, 0), encode_image(np.zeros((8, 8, 3), np.uint8), "png"))
        )
        writer.write(2, pack(IRHeader(0, 1.0, 2, 0), b"not an image at all"))
        writer.write(3, pack(IRHeader(0, [1.0, 2.0], 3, 0), b""))
        writer.write(4, pack(IRHeader(0, [2.0, 3.0], 4, 0), b""))
    dataset = RecordIODataset(rec)
    assert dataset.labels.tolist() == [0, 1] and dataset.num_classes == 2
    assert dataset[0][0].shape == (3, 8, 8)
    with pytest.raises(ImageDecodeError, match=r"train\.rec key 2: not a recognised image"):
        dataset[1]


def test_reader_pickles_and_reopens(tmp_path: Path) -> None:
    _write(tmp_path / "p.rec", {0: b"hello", 1: b"world" + M})
    reader = RecordIOReader(tmp_path / "p.rec")
    assert reader.read(0) == b"hello"  # handle now open
    clone = pickle.loads(pickle.dumps(reader))
    assert clone._handle is None and clone.read(1) == b"world" + M
    reader._pid = -1  # as if forked into a worker: a fresh handle is opened
    old = reader._handle
    assert reader.read(1) == b"world" + M and reader._handle is not old
    old.close()
    reader.close()


def test_writer_handles_empty_classes_and_rejects_unsorted(tmp_path: Path) -> None:
    png = encode_image(np.zeros((4, 4, 3), np.uint8), "png")
    rec, count = write_insightface_recordio(
        tmp_path / "a", [(png, 0), (png, 2), (png, 2)], image_size=4, num_classes=4
    )
    assert count == 3
    reader = RecordIOReader(rec)
    assert list(reader.read_header(0).label) == [4.0, 8.0]
    ranges = [list(reader.read_header(k).label) for k in range(4, 8)]
    assert ranges == [[1, 2], [2, 2], [2, 4], [4, 4]]  # classes 1 and 3 have no images
    assert read_layout(reader).labels.tolist() == [0, 2, 2]
    assert read_property(tmp_path / "a") == (4, 4, 4)
    with pytest.raises(DataError, match="grouped by class"):
        write_insightface_recordio(tmp_path / "b", [(png, 1), (png, 0)], image_size=4)


def test_reader_is_safe_to_share_between_threads(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(7)
    records = {k: rng.bytes(int(rng.integers(1, 400))) + M * (k % 2) for k in range(200)}
    _write(tmp_path / "t.rec", records)
    reader = RecordIOReader(tmp_path / "t.rec")
    keys = [int(k) for k in rng.integers(0, 200, 2000)]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(reader.read, keys))
    assert all(result == records[key] for key, result in zip(keys, results, strict=True))


def test_header_without_identity_records_and_label_mismatch(tmp_path: Path) -> None:
    from igfiqa.data.datasets import RecordIODataset

    png = encode_image(np.zeros((8, 8, 3), np.uint8), "png")
    rec = tmp_path / "train.rec"
    with RecordIOWriter(rec) as writer:
        writer.write(0, pack(IRHeader(0, [3.0, 3.0], 0, 0), b""))  # images 1..2, no identities
        writer.write(1, pack(IRHeader(0, 1.0, 1, 0), png))
        writer.write(2, pack(IRHeader(0, [0.0, 9.0], 2, 0), png))
    layout = read_layout(RecordIOReader(rec))
    assert layout.image_keys.tolist() == [1, 2] and layout.labels.tolist() == [1, 0]
    assert layout.identity_ranges is None
    # Identity ranges that contradict the image headers are reported on read.
    with RecordIOWriter(rec) as writer:
        writer.write(0, pack(IRHeader(0, [3.0, 4.0], 0, 0), b""))
        writer.write(1, pack(IRHeader(0, 0.0, 1, 0), png))
        writer.write(2, pack(IRHeader(0, 5.0, 2, 0), png))
        writer.write(3, pack(IRHeader(0, [1.0, 3.0], 3, 0), b""))
    dataset = RecordIODataset(rec)
    assert dataset.labels.tolist() == [0, 0]
    with pytest.raises(DataError, match=r"key 2: the image header says class 5"):
        dataset.load_image(1)
