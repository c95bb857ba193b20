"""`ume eval --benchmark mmeb-v2` run the way the README says, on the official layouts: a local tree of
snapshots, the Hugging Face hub cache, missing tasks, and the media archives unpacked as download_data.sh does."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def ume(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ume", *args], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


def last_line(p: subprocess.CompletedProcess) -> str:
    return p.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def full_run(mmeb_root, tiny_dirs, tmp_path_factory):
    out = tmp_path_factory.mktemp("e2e") / "run"
    p = ume("eval", "--model", str(tiny_dirs["qwen2_vl"]), "--data-root", str(mmeb_root), "--benchmark", "mmeb-v2",
            "--output", str(out))
    return p, out


def test_all_78_tasks_score_from_the_published_layouts(full_run):
    p, out = full_run
    assert p.returncode == 0, p.stderr[-3000:]
    assert last_line(p) == "78/78 tasks scored, 0 missing"
    assert (out / "errors.jsonl").read_text() == ""  # 0 row errors
    report = json.loads((out / "report.json").read_text())
    assert report["scored"] == report["selected"] == 78 and report["missing"] == {}
    assert report["runs"]["disc-disc"]["aggregate"]["overall"]["n"] == 78
    board = json.loads((out / "leaderboard_disc-disc.json").read_text())
    assert [len(m) for m in board["metrics"].values()] == [36, 18, 24]
    assert all(isinstance(v, dict) and len(v) == 26 for m in board["metrics"].values() for v in m.values())
    assert "ViDoSeek-page-fixed" in board["metrics"]["visdoc"]  # the current report script's names
    meta = json.loads((out / "runs/disc-disc/video/YouCook2_meta.json").read_text())
    assert meta["data"][0]["split"] == "val" and meta["data"][0]["rows"] == 3


def test_a_missing_task_fails_the_run_and_is_named(mmeb_root, tiny_dirs, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(mmeb_root, root, symlinks=True)
    shutil.rmtree(root / "VLM2Vec" / "DiDeMo")
    common = ["eval", "--model", str(tiny_dirs["qwen2_vl"]), "--data-root", str(root), "--benchmark",
              "mmeb-v2-video", "--output", str(tmp_path / "run")]
    p = ume(*common)
    assert p.returncode == 1
    assert last_line(p) == "17/18 tasks scored, 1 missing: DiDeMo"
    assert f"missing DiDeMo: VLM2Vec/DiDeMo: not found at {root / 'VLM2Vec/DiDeMo'}" in p.stderr
    assert "huggingface-cli download VLM2Vec/DiDeMo --repo-type dataset --local-dir" in p.stderr
    report = json.loads((tmp_path / "run/report.json").read_text())
    assert list(report["missing"]) == ["DiDeMo"]
    assert "1 of 18 selected task(s) missing" in (tmp_path / "run/report.md").read_text()
    allowed = ume(*common, "--allow-missing")  # the encodings are cached: this rerun only scores
    assert allowed.returncode == 0 and last_line(allowed) == "17/18 tasks scored, 1 missing: DiDeMo"


def _put_in_hub_cache(cache: Path, repo: str, source: Path) -> None:
    """A repo as huggingface_hub's cache stores it (datasets--<owner>--<name>/{blobs,refs/main,snapshots/<commit>}
    with snapshot files symlinked to content-addressed blobs): the layout its documentation describes."""
    base = cache / ("datasets--" + repo.replace("/", "--"))
    (base / "refs").mkdir(parents=True)
    (base / "refs" / "main").write_text(COMMIT)
    (base / "blobs").mkdir()
    for f in sorted(p for p in source.rglob("*") if p.is_file()):
        data = f.read_bytes()
        blob = base / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        link = base / "snapshots" / COMMIT / f.relative_to(source)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))


def test_the_hub_cache_is_found_without_a_data_root(mmeb_root, tiny_dirs, tmp_path):
    from huggingface_hub import scan_cache_dir

    cache = tmp_path / "hub"
    for repo in ("VLM2Vec/HMDB51", "vidore/arxivqa_test_subsampled_beir"):
        _put_in_hub_cache(cache, repo, mmeb_root / repo)
    assert {r.repo_id for r in scan_cache_dir(cache).repos} == {"VLM2Vec/HMDB51",
                                                                "vidore/arxivqa_test_subsampled_beir"}
    env = {"HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    p = ume("eval", "--model", str(tiny_dirs["qwen2_vl"]), "--task", "HMDB51", "--task", "ViDoRe_arxivqa",
            "--media-root", str(mmeb_root / "TIGER-Lab/MMEB-V2"), "--output", str(tmp_path / "run"),
            "--canonical-page-names", env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    assert last_line(p) == "2/2 tasks scored, 0 missing"
    board = json.loads((tmp_path / "run/leaderboard_disc-disc.json").read_text())["metrics"]["visdoc"]
    assert board["ViDoSeek-page"] == "FILE_N/A" and "ViDoSeek-page-fixed" not in board  # the old split's names
    meta = json.loads((tmp_path / "run/runs/disc-disc/visdoc/ViDoRe_arxivqa_meta.json").read_text())
    record = meta["data"][0]
    assert record["origin"] == "hf-cache" and record["revision"] == COMMIT
    assert all(len(f["blob"]) == 64 for f in record["files"])  # the cache's content ids, no rehashing
    missing = ume("eval", "--model", str(tiny_dirs["qwen2_vl"]), "--task", "MSVD", "--output",
                  str(tmp_path / "run2"), env=env)
    assert missing.returncode == 1 and "VLM2Vec/MSVD: not in the Hugging Face cache" in missing.stderr


def test_unpack_matches_the_reference_script(mmeb_root, tmp_path):
    """`ume data unpack` against download_data.sh's own tar commands, run by bash on the same archives."""
    from mmeb_fixture import pack_media

    if shutil.which("tar") is None or shutil.which("bash") is None:
        pytest.skip("needs tar and bash to run the reference script's commands")
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    for d in (ours, theirs):
        pack_media(mmeb_root / "TIGER-Lab/MMEB-V2", d)
    script = ("set -e; pushd image-tasks; tar -xzf mmeb_v1.tar.gz; mv MMEB/* .; rmdir MMEB; popd; "
              "pushd video-tasks/frames; mkdir video_cls video_ret; tar -xzf video_cls.tar.gz -C video_cls; "
              "tar -xzf video_mret.tar.gz; tar -xzf video_ret.tar.gz -C video_ret; "
              "cat video_qa.tar.gz-0{0..4} | tar -xz; popd")  # experiments/public/data/download_data.sh, -v dropped
    subprocess.run(["bash", "-c", script], cwd=theirs, check=True, capture_output=True)
    p = ume("data", "unpack", str(ours))
    assert p.returncode == 0 and "unpacked 5 archive(s)" in p.stdout, p.stderr

    def tree(d: Path) -> dict[str, bytes]:  # what was extracted (the archives differ in their gzip timestamps)
        return {str(f.relative_to(d)): f.read_bytes() for f in d.rglob("*")
                if f.is_file() and ".tar.gz" not in f.name and f.name != ".ume-unpacked"}

    assert tree(ours) == tree(theirs)
    assert tree(ours).keys() >= {str(f.relative_to(mmeb_root / "TIGER-Lab/MMEB-V2"))
                                 for f in (mmeb_root / "TIGER-Lab/MMEB-V2").rglob("*") if f.is_file()}
    again = ume("data", "unpack", str(ours))
    assert "nothing left to unpack" in again.stdout


def test_data_repos_prints_one_download_per_repo_then_the_unpack(tmp_path):
    from ume.evaluate.tasks import select_tasks

    p = ume("data", "repos", "--data-root", str(tmp_path))
    lines = p.stdout.strip().splitlines()
    repos = [line.split()[2] for line in lines[:-1]]
    tasks = select_tasks(benchmark="mmeb-v2")
    assert sorted(repos) == sorted({t.source for t in tasks} | {"TIGER-Lab/MMEB-V2"})
    assert len(repos) == 44  # 43 repos with rows + the media repo, each once
    assert all(f"--local-dir {tmp_path / r}" in line for r, line in zip(repos, lines, strict=False))
    assert lines[-1] == f"ume data unpack {tmp_path / 'TIGER-Lab/MMEB-V2'}"
