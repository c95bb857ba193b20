"""Atomic writes: the old file survives a failed write, and new files get the usual permissions."""

import json
import stat

import pytest

from ume.io import atomic_write, write_json


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    path = write_json(tmp_path / "a.json", {"v": 1})

    def boom(f):
        f.write(b"{half")
        raise RuntimeError("crash mid-write")

    with pytest.raises(RuntimeError):
        atomic_write(path, boom)
    assert json.loads(path.read_text()) == {"v": 1} and [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_files_get_the_mode_open_would_give(tmp_path):
    path = write_json(tmp_path / "r.json", {})
    with open(tmp_path / "plain", "w"):
        pass
    assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE((tmp_path / "plain").stat().st_mode)  # not 0600
