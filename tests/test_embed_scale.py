"""`ume embed` at corpus scale (issue 17): lazy readers over the real artifacts (HF-style parquet, a `datasets`
save_to_disk folder, a media folder, JSONL read from chunk offsets), chunks resumed after `kill -9` byte for byte,
2 torchrun ranks and 2 Ray actors writing the same bytes as one process, and refusals before any model loads.

Every run here uses one torch thread (torchrun ranks and 1-CPU Ray actors do), so runs are compared bytewise.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from ume.cli import app
from ume.embed import EmbedConfig, open_embeddings, run
from ume.embed.chunks import OutputConflict
from ume.embed.progress import Progress
from ume.embed.sources import FolderSource, SourceError, TableSource, open_source, read_items
from ume.io import iter_json_lines

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "examples" / "tiny-qwen2-vl"
GEN = dict(mode="both", samples=2, seed=3, temperature=1.0, max_new_tokens=6, batch_size=4, chunk_size=4)
CLI_GEN = ["--mode", "both", "--samples", "2", "--seed", "3", "--temperature", "1", "--max-new-tokens", "6",
           "--batch-size", "4", "--chunk-size", "4", "--allow-errors"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1", "HF_HUB_OFFLINE": "1"}


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _png(colour: str, size=(40, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "PNG")
    return buf.getvalue()


def _files(out: Path) -> dict[str, bytes]:
    """Every file of a run folder except the lock, by relative path."""
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and not p.name.startswith(".")}


def assert_same_run(a: Path, b: Path) -> None:
    fa, fb = _files(a), _files(b)
    assert sorted(fa) == sorted(fb)
    different = [name for name in fa if fa[name] != fb[name]]
    assert not different, different


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """22 rows (a blank line between them): texts, two images, an unparseable line, a missing image."""
    root = tmp_path_factory.mktemp("corpus")
    (root / "media").mkdir()
    (root / "media" / "red.png").write_bytes(_png("red"))
    (root / "media" / "blue.png").write_bytes(_png("blue", (64, 28)))
    lines = [json.dumps({"id": f"t{i}", "text": f"item {i}: " + "a few words " * (1 + i % 4)}) for i in range(18)]
    lines[3] = json.dumps({"id": "red", "text": "Represent the given image.", "image": "media/red.png"})
    lines[9] = json.dumps({"id": "blue", "image": "media/blue.png", "text": "What colour?"})
    lines[12] = "{not json"
    lines += ["", json.dumps({"id": "gone", "text": "x", "image": "media/nope.png"}), '{"text": "y"}',
              '{"text": "z", "id": 7}', '{"text": "last"}']
    path = root / "items.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def reference(corpus, tmp_path_factory):
    """One uninterrupted process (gen + disc, 2 samples, seeded), the run every other engine must reproduce."""
    out = tmp_path_factory.mktemp("ref") / "one"
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        summary = run(EmbedConfig(model=str(TINY), input=str(corpus), output=str(out), progress=False, **GEN))
    finally:
        torch.set_num_threads(before)
    assert (summary.n_items, summary.n_errors, summary.n_chunks, summary.computed) == (22, 2, 6, 6)
    return out


# --- readers ----------------------------------------------------------------------------------------------
def test_jsonl_chunks_read_from_their_offsets_equal_the_whole_file_read(tmp_path):
    sys.path.insert(0, str(Path(__file__).parent))
    from bad_corpus import build_corpus

    path, expect = build_corpus(tmp_path / "c", long_video_frames=10)
    raw = path.read_bytes()  # a BOM'd first line, a bad byte, a torn line, U+2028 inside strings ...
    path.write_bytes(raw + b"\n\n" + b'{"text": "' + b"x" * 3000 + b'"}\n' + b"\xef\xbb\xbf{\"text\": \"mid bom\"}\n"
                     + b'   \n{"text": "after"}')
    whole = list(iter_json_lines(path, max_line_bytes=2000))
    every = read_items(path, max_line_bytes=2000)
    assert len(every) == len(whole) == len(expect) + 3
    assert [r.line for r in every] == [jl.number for jl in whole]
    for r, jl in zip(every, whole, strict=True):  # each line's parse outcome is the whole-file reader's
        assert (r.error == f"items.jsonl:{jl.number}: invalid item row ({jl.error})") == (jl.error is not None)
    assert every[0].id == "bom" and every[0].item is not None
    assert "line longer than 2000 bytes" in every[-3].error and every[-1].item.text == "after"
    assert "invalid JSON" in every[-2].error  # a BOM inside the file is not the file's BOM
    for size in (1, 7):  # any chunk may start anywhere: after a long line, at a BOM'd line, after blank lines
        src = open_source(path, size, max_line_bytes=2000)
        assert len(src) == len(every) and [r for ref in src.chunks() for r in src.read(ref)] == every


def test_parquet_as_hf_publishes_it_and_a_datasets_save_to_disk_folder(tmp_path):
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    pngs = [_png(c) for c in ("red", "green", "blue", "white", "black")]
    features = {"image": {"_type": "Image"}, "query": {"dtype": "string", "_type": "Value"},
                "doc_id": {"dtype": "int64", "_type": "Value"}}
    struct = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    (tmp_path / "pages").mkdir()
    (tmp_path / "pages" / "p3.png").write_bytes(pngs[3])
    images = [{"bytes": b, "path": f"p{i}.png"} for i, b in enumerate(pngs)]
    images[3] = {"bytes": None, "path": "pages/p3.png"}  # no bytes: the path, relative to the parquet file
    table = pa.table({"image": pa.array(images, struct), "query": ["a", None, "c", "d", 5 * "e"],
                      "doc_id": [10, 11, 12, 13, 14]})
    table = table.replace_schema_metadata({"huggingface": json.dumps({"info": {"features": features}})})
    pq.write_table(table, tmp_path / "train-00000-of-00001.parquet", row_group_size=2)
    pq.write_table(pa.table({"doc_id": [1], "caption": ["c"]}), tmp_path / "other.parquet")
    with pytest.raises(SourceError, match=r"no text, image, images or video column .*--column image=page"):
        open_source(tmp_path / "other.parquet", 2)
    with pytest.raises(SourceError, match=r"no column text=question"):
        open_source(tmp_path / "train-00000-of-00001.parquet", 2, {"text": "question"})
    cols = {"text": "query", "id": "doc_id"}
    src = open_source(tmp_path / "train-00000-of-00001.parquet", 3, cols)
    assert isinstance(src, TableSource) and src.kind == "parquet" and len(src) == 5
    rows = [r for ref in src.chunks() for r in src.read(ref)]  # chunks of 3 across row groups of 2
    assert [r.item.images[0] for r in rows if r.id != 13] == [pngs[i] for i in (0, 1, 2, 4)]
    assert rows[3].item.images[0] == str(tmp_path / "pages" / "p3.png") and rows[1].item.text == ""
    assert [r.id for r in rows] == [10, 11, 12, 13, 14] and rows[4].item.source == "train-00000-of-00001.parquet row 4"

    ds = datasets.Dataset.from_dict(
        {"image": [{"bytes": b, "path": None} for b in pngs[:3]] + [None], "text": ["x", "y", "z", None],
         "id": ["a", "b", "c", "d"]},
        features=datasets.Features({"image": datasets.Image(), "text": datasets.Value("string"),
                                    "id": datasets.Value("string")}))
    ds.save_to_disk(tmp_path / "saved")
    datasets.DatasetDict({"train": ds}).save_to_disk(tmp_path / "dict")
    with pytest.raises(SourceError, match=r"DatasetDict \(splits: train\); pass one split's folder"):
        open_source(tmp_path / "dict", 2)
    src = open_source(tmp_path / "saved", 2)
    assert src.kind == "dataset" and len(src) == 4
    rows = [r for ref in src.chunks() for r in src.read(ref)]
    assert [r.item.images for r in rows] == [[pngs[0]], [pngs[1]], [pngs[2]], []]
    assert [r.item.text for r in rows] == ["x", "y", "z", ""] and rows[3].id == "d"


def test_a_media_folder_in_a_fixed_order_with_other_files_counted(tmp_path):
    for rel, data in [("b.png", _png("red")), ("a/z.jpg", _png("blue")), ("a/note.txt", b"a text file"),
                      ("c.md", b"# heading"), (".hidden.png", _png("red")), ("notes.pdf", b"%PDF"),
                      (".git/x.png", _png("red")), ("bad.txt", b"\xff\xfe")]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(data)
    src = open_source(tmp_path, 2, instruction="Represent the given image.")
    assert isinstance(src, FolderSource) and len(src) == 5 and src.skipped == 1
    rows = [r for ref in src.chunks() for r in src.read(ref)]
    assert [r.id for r in rows] == ["b.png", "bad.txt", "c.md", "a/note.txt", "a/z.jpg"]  # files, then folders
    by_id = {r.id: r for r in rows}
    assert by_id["b.png"].item.text == "Represent the given image." and by_id["c.md"].item.text == "# heading"
    assert "not valid UTF-8" in by_id["bad.txt"].error
    before = src.fingerprint()
    (tmp_path / "b.png").write_bytes(_png("green", (41, 30)))
    assert open_source(tmp_path, 2).fingerprint() != before


def test_one_bar_counts_every_rank(tmp_path):
    bar = Progress(tmp_path, total=100, initial=20, rank=0, world=2, poll_s=60, enabled=False)
    (tmp_path / ".progress-1.json").write_text('{"items": 30, "tokens": 900}')
    bar.add(10, 100)
    assert bar.done == 40  # 10 here + 30 on rank 1 (after the 20 done before)
    other = Progress(tmp_path, total=100, initial=20, rank=1, world=2, enabled=False)
    other.add(5, 50)
    assert json.loads((tmp_path / ".progress-1.json").read_text()) == {"items": 5, "tokens": 50}
    bar.close()
    assert not list(tmp_path.glob(".progress-*"))


def test_arguments_are_refused_before_a_model_loads(corpus, tmp_path):
    runner = CliRunner()
    base = ["embed", "--model", str(tmp_path / "no-such-model"), "--output", str(tmp_path / "out")]
    cases = [(["--input", str(corpus), "--samples", "2"], "--samples 2 needs --mode gen or both"),
             (["--input", str(tmp_path / "nope.jsonl")], "input not found"),
             (["--input", str(corpus), "--column", "txt"], "--column takes FIELD=COLUMN"),
             (["--input", str(corpus), "--column", "caption=c"], "--column caption=...: the fields are"),
             (["--input", str(corpus), "--column", "text=caption"], "--column applies to parquet"),
             (["--input", str(corpus), "--top-p", "0"], "--top-p must be in (0, 1]")]
    for args, message in cases:
        res = runner.invoke(app, base + args)
        assert res.exit_code == 2 and message in res.output, (args, res.output)
        assert len(res.output.strip().splitlines()) <= 2 and "Traceback" not in res.output
    res = runner.invoke(app, base)
    assert res.exit_code == 2 and "--input" in res.output  # missing: typer's own usage error


# --- resumable ------------------------------------------------------------------------------------------------
def test_kill_9_then_rerun_equals_an_uninterrupted_run(corpus, reference, tmp_path, one_thread):
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "ume", "embed", "--model", str(TINY), "--input", str(corpus), "--output", str(out),
           *CLI_GEN]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    first = out / "chunks" / "items-00000.jsonl"
    deadline = time.time() + 240
    while not first.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(list((out / "chunks").glob("items-*.jsonl")))
    assert 1 <= done < 6 and not (out / "run.json").exists(), proc.stderr.read()[-2000:]
    (out / "chunks" / ".embeddings-00005.npy.x1y2z3.tmp").write_bytes(b"torn")  # as a kill mid-write leaves it
    (out / ".embeddings.npy.a1b2c3.tmp").write_bytes(b"torn")
    again = run(EmbedConfig(model=str(TINY), input=str(corpus), output=str(out), progress=False, **GEN))
    assert again.computed == 6 - done  # only the unfinished chunks
    assert_same_run(out, reference)
    assert not list(out.rglob("*.tmp"))
    assert run(EmbedConfig(model=str(TINY), input=str(corpus), output=str(out), progress=False, **GEN)).computed == 0
    assert_same_run(out, reference)


def test_a_rerun_with_other_settings_is_refused_and_says_why(corpus, reference):
    for change, field in [({"seed": 4}, "decoding.seed: 3 -> 4"), ({"mode": "gen"}, "mode: 'both' -> 'gen'"),
                          ({"chunk_size": 5}, "chunk_size: 4 -> 5"), ({"dtype": "bfloat16"}, "dtype"),
                          ({"max_pixels": 3136}, "pixels")]:
        with pytest.raises(OutputConflict, match=f"holds a run with other settings \\(.*{field}"):
            run(EmbedConfig(model=str(TINY), input=str(corpus), output=str(reference), progress=False,
                            **{**GEN, **change}))
    assert run(EmbedConfig(model=str(TINY), input=str(corpus), output=str(reference), progress=False,
                           **{**GEN, "batch_size": 2})).computed == 0  # batching is not a setting of the vectors


def test_outputs_keep_todays_layout(reference):
    emb, disc = np.load(reference / "embeddings.npy"), np.load(reference / "disc_embeddings.npy")
    assert emb.shape == (22, 2, 64) and disc.shape == (22, 64)
    errors = [json.loads(x) for x in (reference / "errors.jsonl").read_text().splitlines()]
    assert [(e["index"], e["line"], e["id"]) for e in errors] == [(12, 13, None), (18, 20, "gone")]
    assert errors[0]["reason"].startswith("items.jsonl:13: invalid item row (invalid JSON")
    assert np.isnan(emb[[12, 18]]).all() and not np.isnan(np.delete(emb, [12, 18], 0)).any()
    records = [json.loads(x) for x in (reference / "items.jsonl").read_text().splitlines()]
    assert [r["index"] for r in records] == list(range(22)) and records[21]["line"] == 23
    assert len(records[0]["samples"]) == 2 and records[12]["ok"] is False
    assert not np.array_equal(emb[0, 0], emb[0, 1])  # two samples, seeded per row
    assert np.array_equal(open_embeddings(reference), emb, equal_nan=True)
    assert np.array_equal(open_embeddings(reference, disc=True), disc, equal_nan=True)
    meta = json.loads((reference / "run.json").read_text())
    assert meta["n_errors"] == 2 and meta["settings"]["num_samples"] == 2 and meta["max_item_tokens"] == 4096


# --- sharded --------------------------------------------------------------------------------------------------
def test_two_torchrun_ranks_write_the_bytes_of_one_process(corpus, reference, tmp_path):
    out = tmp_path / "two"
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                          "-m", "ume", "embed", "--model", str(TINY), "--input", str(corpus), "--output", str(out),
                          *CLI_GEN], env=ENV, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.strip().splitlines()[-1].startswith("embedded 20/22 items (both, dim 64); 2 error(s)")
    assert_same_run(out, reference)


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=3, include_dashboard=False, logging_level="warning")  # 2 actors + the read task
    yield ray
    ray.shutdown()


def test_two_ray_actors_write_the_bytes_of_one_process_and_resume_only_missing_chunks(
        corpus, reference, local_ray, tmp_path):
    out = tmp_path / "ray"
    cfg = dict(model=str(TINY), input=str(corpus), output=str(out), progress=False, engine="ray", workers=2, **GEN)
    assert run(EmbedConfig(**cfg)).computed == 6
    assert_same_run(out, reference)
    for c in (1, 4):  # what a killed job had not finished
        (out / "chunks" / f"items-{c:05d}.jsonl").unlink()
    (out / "chunks" / "embeddings-00004.npy").unlink()
    (out / "embeddings.npy").unlink()
    summary = run(EmbedConfig(**{**cfg, "merge": False, "workers": 1}))
    assert summary.computed == 2 and not (out / "embeddings.npy").exists()
    assert np.array_equal(open_embeddings(out), np.load(reference / "embeddings.npy"), equal_nan=True)  # merged now
    assert_same_run(out, reference)


def test_the_ray_data_recipe_gives_the_vectors_of_ume_embed(local_ray, tmp_path, one_thread):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ume.ray import Embedder

    struct = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    pngs = [_png(c, (32 + 8 * i, 30)) for i, c in enumerate(["red", "green", "blue", "white", "black", "grey"])]
    table = pa.table({"index": list(range(6)), "image": pa.array([{"bytes": b, "path": None} for b in pngs], struct),
                      "text": ["Represent the given image."] * 5 + [None], "id": [f"p{i}" for i in range(6)]})
    pq.write_table(table, tmp_path / "pages.parquet", row_group_size=3)
    run(EmbedConfig(model=str(TINY), input=str(tmp_path / "pages.parquet"), output=str(tmp_path / "one"),
                    progress=False, chunk_size=4))
    ds = local_ray.data.read_parquet(str(tmp_path / "pages.parquet"), override_num_blocks=2)
    got = ds.map_batches(Embedder, fn_constructor_kwargs={"model": str(TINY)}, batch_size=2,
                         compute=local_ray.data.ActorPoolStrategy(size=2), num_cpus=1).take_all()
    got = sorted(got, key=lambda r: r["index"])
    assert [r["id"] for r in got] == [f"p{i}" for i in range(6)] and "image" not in got[0]
    assert all(r["ok"] and r["error"] == "" for r in got)
    vectors = np.stack([r["embedding"] for r in got])
    assert np.allclose(vectors, np.load(tmp_path / "one" / "embeddings.npy"), atol=1e-5)


def test_a_folder_run_merges_and_reads_back(tmp_path, one_thread):
    media = tmp_path / "media"
    media.mkdir()
    for i, colour in enumerate(["red", "green", "blue"]):
        (media / f"{i}.png").write_bytes(_png(colour))
    (media / "notes.pdf").write_bytes(b"%PDF")
    shutil.copy(ROOT / "examples" / "media" / "red_circle.png", media / "3.png")
    summary = run(EmbedConfig(model=str(TINY), input=str(media), output=str(tmp_path / "out"), progress=False,
                              chunk_size=2, instruction="Represent the given image."))
    assert (summary.n_items, summary.n_errors, summary.n_chunks, summary.skipped_files) == (4, 0, 2, 1)
    assert "1 file(s) of other kinds in the folder not read" in summary.line
    ids = [json.loads(x)["id"] for x in (tmp_path / "out" / "items.jsonl").read_text().splitlines()]
    assert ids == ["0.png", "1.png", "2.png", "3.png"] and open_embeddings(tmp_path / "out").shape == (4, 64)
