"""Where a task's files are found: split resolution by `datasets`, revisions, downloads, row reading."""

import json
from pathlib import Path

import pytest

from ume.evaluate import sources
from ume.evaluate.sources import LoaderError, Snapshot, iter_rows, locate, read_split, split_files


def test_a_local_dir_download_records_the_commit_huggingface_cli_wrote(tmp_path):
    from huggingface_hub._local_folder import write_download_metadata  # the writer `--local-dir` downloads use

    repo = tmp_path / "VLM2Vec" / "HMDB51"
    (repo / "data").mkdir(parents=True)
    (repo / "data" / "test.jsonl").write_text('{"video_id": "a", "pos_text": "wave"}\n')
    assert locate("VLM2Vec/HMDB51", tmp_path).revision is None
    write_download_metadata(repo, "data/test.jsonl", "c" * 40, "etag")
    snap = locate("VLM2Vec/HMDB51", tmp_path)
    assert (snap.origin, snap.revision, snap.path) == ("data-root", "c" * 40, repo)


def test_download_asks_the_hub_for_a_missing_repo(tmp_path, monkeypatch):
    calls = []

    def fake(repo_id, repo_type, local_dir=None, local_files_only=False):
        calls.append((repo_id, repo_type, local_dir, local_files_only))
        Path(local_dir).mkdir(parents=True)
        return local_dir

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake)
    with pytest.raises(LoaderError, match="or pass --download"):
        locate("VLM2Vec/MSVD", tmp_path)
    assert calls == []  # offline unless asked
    snap = locate("VLM2Vec/MSVD", tmp_path, download=True)
    assert calls == [("VLM2Vec/MSVD", "dataset", str(tmp_path / "VLM2Vec/MSVD"), False)]
    assert snap.path == tmp_path / "VLM2Vec/MSVD"


def test_split_resolution_follows_datasets(tmp_path):
    repo = tmp_path / "r"
    (repo / "data").mkdir(parents=True)
    (repo / "data" / "val.jsonl").write_text('{"a": 1}\n')
    snap = Snapshot("o/r", repo, "data-root", None)
    assert split_files(snap, None, "val", "T") == [repo / "data" / "val.jsonl"]  # datasets calls it validation
    with pytest.raises(LoaderError, match=r"split 'test' not found .*splits there: \['validation'\]"):
        split_files(snap, None, "test", "T")
    (repo / "MC").mkdir()
    (repo / "MC" / "test-00000-of-00001.jsonl").write_text('{"b": 2}\n')
    assert split_files(snap, "MC", "test", "T") == [repo / "MC" / "test-00000-of-00001.jsonl"]  # no README
    with pytest.raises(LoaderError, match="has no config 'OE'"):
        split_files(snap, "OE", "test", "T")


def test_rows_of_jsonl_json_arrays_and_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "a.jsonl").write_text('{"x": 1}\nnot json\n\n[1, 2]\n{"x": 2}\n')
    rows = list(iter_rows(tmp_path / "a.jsonl"))
    assert rows[0] == {"x": 1} and rows[3] == {"x": 2}
    assert rows[1] == {"__error__": "a.jsonl:2: invalid JSON (Expecting value at column 1)"}
    assert rows[2] == {"__error__": "a.jsonl:4: not a JSON object"}
    (tmp_path / "b.json").write_text(json.dumps([{"x": 1}, 3]))
    assert list(iter_rows(tmp_path / "b.json")) == [{"x": 1}, {"__error__": "b.json[1]: not a JSON object"}]
    (tmp_path / "c.json").write_text('{"x": 1}\n{"x": 2}\n')  # JSON lines under a .json name
    assert list(iter_rows(tmp_path / "c.json")) == [{"x": 1}, {"x": 2}]
    pq.write_table(pa.table({"x": list(range(3000))}), tmp_path / "d.parquet")
    assert [r["x"] for r in iter_rows(tmp_path / "d.parquet")] == list(range(3000))


def test_read_split_caps_rows_and_records_files(tmp_path):
    repo = tmp_path / "r"
    (repo / "data").mkdir(parents=True)
    (repo / "data" / "test.jsonl").write_text("".join(f'{{"i": {i}}}\n' for i in range(5)))
    table = read_split(Snapshot("o/r", repo, "data-root", None), None, "test", "T", max_rows=3)
    assert [r["i"] for r in table.rows] == [0, 1, 2]
    assert table.record["rows"] == 3 and table.record["max_rows"] == 3
    (f,) = table.record["files"]
    assert f["path"] == "data/test.jsonl" and f["size"] == 45 and len(f["sha256"]) == 64


def test_media_of_a_missing_repo_says_where_it_looked(tmp_path):
    with pytest.raises(LoaderError, match=r"TIGER-Lab/MMEB-V2: not found at"):
        sources.Sources(tmp_path).media_dir("TIGER-Lab/MMEB-V2", "image-tasks", "ImageNet-1K")
    (tmp_path / "TIGER-Lab/MMEB-V2").mkdir(parents=True)
    with pytest.raises(LoaderError, match=r"media directory not found: .*image-tasks"):
        sources.Sources(tmp_path).media_dir("TIGER-Lab/MMEB-V2", "image-tasks", "ImageNet-1K")
    elsewhere = tmp_path / "clone"
    (elsewhere / "image-tasks").mkdir(parents=True)
    assert sources.Sources(tmp_path, media_root=elsewhere).media_dir(
        "TIGER-Lab/MMEB-V2", "image-tasks", "ImageNet-1K") == elsewhere / "image-tasks"
