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


# --- robust readers and run folders (issue 13) -----------------------------------------------------------
def test_a_lone_surrogate_is_written_escaped_not_crashing(tmp_path):
    from ume.io import write_jsonl

    bad = json.loads('"\\ud800"')
    path = write_jsonl(tmp_path / "a.jsonl", [{"id": bad, "t": "café"}, {"id": "ok", "t": "é"}])
    lines = path.read_bytes().decode("utf-8").splitlines()  # valid UTF-8
    assert json.loads(lines[0])["id"] == bad and json.loads(lines[1])["t"] == "é"  # round-trips exactly
    assert "é" in lines[1]  # rows without surrogates stay readable


def test_json_lines_are_split_on_newline_only_and_decoded_per_line(tmp_path):
    from ume.io import iter_json_lines

    path = tmp_path / "x.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + '{"a": "sep\u2028ara\u0085ted\u2029text"}\r\n'.encode()
                     + b'{"a": "caf\xe9"}\n\n  \n[1, 2\n' + b"[" * 50_000 + b"]" * 50_000 + b"\n"
                     + b'{"a": ' + b"9" * 5000 + b"}\n" + b'{"a": "last"}')
    got = list(iter_json_lines(path))
    assert [g.number for g in got] == [1, 2, 5, 6, 7, 8]
    assert got[0].value == {"a": "sep\u2028ara\u0085ted\u2029text"} and got[0].error is None  # BOM dropped
    assert "invalid UTF-8" in got[1].error and "invalid JSON" in got[2].error
    assert "RecursionError" in got[3].error and "ValueError" in got[4].error
    assert got[5].value == {"a": "last"}


def test_an_over_long_line_is_an_error_and_is_not_kept(tmp_path):
    from ume.io import iter_json_lines

    path = tmp_path / "x.jsonl"
    path.write_bytes(b'{"a": 1}\n' + b'{"a": "' + b"x" * 5000 + b'"}\n{"a": 3}\n')
    got = list(iter_json_lines(path, max_line_bytes=1000))
    assert [(g.number, g.value) for g in got] == [(1, {"a": 1}), (2, None), (3, {"a": 3})]
    assert "longer than 1000 bytes" in got[1].error


def test_lock_dir_keeps_a_second_run_out(tmp_path):
    from ume.io import FolderInUse, lock_dir

    in_use = pytest.raises(FolderInUse, match=r"in use by another ume eval \(pid \d+")
    with lock_dir(tmp_path / "out", "ume eval"), in_use, lock_dir(tmp_path / "out", "ume eval"):
        pass
    with lock_dir(tmp_path / "out"):  # released when the first run ends
        pass


def test_check_output_dir_refuses_foreign_files(tmp_path):
    from ume.io import check_output_dir

    check_output_dir(tmp_path / "new", ["run.json"])
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "run.json").write_text("{}")
    check_output_dir(tmp_path / "mine", ["run.json"])
    (tmp_path / "mine" / "thesis.tex").write_text("")
    with pytest.raises(ValueError, match=r"holds files this command did not write \(thesis.tex\)"):
        check_output_dir(tmp_path / "mine", ["run.json"])
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="is not a directory"):
        check_output_dir(tmp_path / "file", [])


def test_staged_dir_swaps_in_whole_or_not_at_all(tmp_path):
    from ume.io import staged_dir

    out = tmp_path / "out"
    with staged_dir(out) as stage:
        (stage / "a.json").write_text("1")
        (stage / "old-only.json").write_text("1")
    with staged_dir(out) as stage:
        (stage / "a.json").write_text("2")
    assert sorted(p.name for p in out.iterdir()) == ["a.json"]  # no file of the first run is left beside
    with pytest.raises(RuntimeError), staged_dir(out) as stage:
        (stage / "a.json").write_text("3")
        raise RuntimeError("crash before the swap")
    assert (out / "a.json").read_text() == "2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging folder left behind
