"""Output folders: created where asked, a clear error where they cannot be."""

from __future__ import annotations

import pytest

from igfiqa.errors import ConfigError
from igfiqa.files import ensure_dir


def test_ensure_dir_creates_parents_and_accepts_an_existing_folder(tmp_path) -> None:
    folder = ensure_dir(tmp_path / "a" / "b")
    assert folder.is_dir() and ensure_dir(folder) == folder


def test_ensure_dir_refuses_a_file_and_a_file_as_parent(tmp_path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(ConfigError, match=r"--out .*afile exists and is not a folder"):
        ensure_dir(afile)
    with pytest.raises(ConfigError, match=r"--report .*afile/sub: cannot create this folder"):
        ensure_dir(afile / "sub", "--report")


def test_read_regular_file_refuses_fifos_devices_links_and_oversize_files_without_reading(
    tmp_path,
) -> None:
    import os

    from igfiqa.errors import DataError
    from igfiqa.files import read_regular_file, read_text_file

    good = tmp_path / "good.bin"
    good.write_bytes(b"x" * 100)
    assert read_regular_file(good) == b"x" * 100
    fifo = tmp_path / "f.jpg"
    os.mkfifo(fifo)  # opening it for reading would block forever; it must not be read
    with pytest.raises(DataError, match=r"f\.jpg: not a regular file"):
        read_regular_file(fifo)
    if os.path.exists("/dev/zero"):  # endless: reading it would exhaust memory
        with pytest.raises(DataError, match="/dev/zero: not a regular file"):
            read_regular_file("/dev/zero")
    with pytest.raises(DataError, match="100 bytes, more than the 99-byte limit"):
        read_regular_file(good, max_bytes=99)
    with pytest.raises(DataError, match="is a directory"):
        read_regular_file(tmp_path)
    broken = tmp_path / "broken.png"
    broken.symlink_to(tmp_path / "gone.png")
    with pytest.raises(DataError, match="broken symbolic link"):
        read_regular_file(broken)
    (tmp_path / "latin.txt").write_bytes(b"caf\xe9\n")
    with pytest.raises(DataError, match=r"latin\.txt: not UTF-8 text \(byte 3\)"):
        read_text_file(tmp_path / "latin.txt")


def test_atomic_output_keeps_the_old_file_on_failure_and_sets_the_mode(tmp_path) -> None:
    import os
    import stat

    import pytest

    from igfiqa.files import atomic_output, atomic_write_bytes

    target = tmp_path / "out.bin"
    atomic_write_bytes(b"old", target, private=False)
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
    with pytest.raises(RuntimeError), atomic_output(target) as temporary:
        temporary.write_bytes(b"half")
        raise RuntimeError("writer crashed")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]  # no temporary left behind
    atomic_write_bytes(b"new", target)
    assert target.read_bytes() == b"new" and stat.S_IMODE(target.stat().st_mode) == 0o600


def test_json_safe_cleans_numpy_nan_infinity_and_objects() -> None:
    import math
    from pathlib import Path

    import numpy as np

    from igfiqa.files import json_safe

    value = {1: (np.float32(0.5), np.int64(3), math.nan, math.inf), "p": Path("/x"), "a": np.eye(2)}
    assert json_safe(value) == {"1": [0.5, 3, None, None], "p": "/x", "a": [[1.0, 0.0], [0.0, 1.0]]}
    assert json_safe([-math.inf, math.inf], infinite_as_text=True) == ["-inf", "inf"]


def test_file_signature_covers_every_file_below_a_folder_and_a_replaced_file(tmp_path) -> None:
    """Issue 25, item 7: a folder's signature covered only the files directly in it. Now every file
    at any depth enters with its size, mtime and ctime, so a file replaced under the same name (its
    size and mtime even set back, as ``cp -p`` / ``rsync -t`` do) changes it."""
    import os
    import time

    from igfiqa.files import file_signature, files_signature

    root = tmp_path / "bench"
    image = root / "alice" / "deep" / "0001.png"
    image.parent.mkdir(parents=True)
    image.write_bytes(b"A" * 64)
    (root / "bob").mkdir()
    (root / "bob" / "0001.png").write_bytes(b"B" * 64)
    os.symlink(root, root / "bob" / "loop")  # a link cycle is followed once, not forever
    (root / "cache").mkdir()
    before = file_signature(root)
    listed = files_signature([image, root / "bob" / "0001.png"])
    assert file_signature(root) == before and "2 files" in before
    # A cache written inside the benchmark does not change it when excluded.
    (root / "cache" / "x.npz").write_bytes(b"cache")
    assert file_signature(root, exclude=(root / "cache",)).endswith(before.split(":")[-1])
    assert file_signature(root) != before

    time.sleep(0.05)  # beyond any file system's timestamp granularity
    old = image.stat()
    image.write_bytes(b"Z" * 64)  # the same name and size ...
    os.utime(image, ns=(old.st_atime_ns, old.st_mtime_ns))  # ... and the old mtime
    assert image.stat().st_mtime_ns == old.st_mtime_ns and image.stat().st_size == old.st_size
    assert file_signature(root, exclude=(root / "cache",)) != before
    assert files_signature([image, root / "bob" / "0001.png"]) != listed
    assert file_signature(image) != f"{image}:{old.st_size}:{old.st_mtime_ns}:{old.st_ctime_ns}"
    # A missing file enters as missing, not as an error.
    assert files_signature([tmp_path / "gone.png"]).startswith("1 files:")


def test_file_signature_of_many_files_is_fast(tmp_path) -> None:
    """One os.scandir walk, nothing opened: 10,000 files in well under the bound (20,000 take about
    0.2 s on the shared 2-core machine)."""
    import time

    from igfiqa.files import file_signature

    for i in range(40):
        folder = tmp_path / f"id{i:02d}"
        folder.mkdir()
        for j in range(250):
            (folder / f"{j:03d}.jpg").touch()
    start = time.perf_counter()
    signature = file_signature(tmp_path)
    assert time.perf_counter() - start < 3.0
    assert "10000 files" in signature
