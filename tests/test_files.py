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
