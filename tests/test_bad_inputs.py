"""No single input takes a run down, and nothing is silently wrong (issue 13).

`ume embed` on a 60-line fuzz corpus (tests/bad_corpus.py: bad bytes, wrong types, devices, a FIFO, a
1,000,000-character text, surrogates, playlists, 16-bit / EXIF / palette images, a long video) runs in a child
process under a memory cap and a timeout, so a regression fails the test instead of the machine; then the eval
loaders under row-type fuzzing, the eval cache, training rows and the training log.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from bad_corpus import build_corpus, line_numbers
from PIL import Image

from ume.batching import estimate_tokens, make_batch, prompt_overhead, token_batches
from ume.embed.chunks import OUTPUT_FILES
from ume.embed.job import run_embed
from ume.embed.sources import read_items
from ume.inputs import InputError, InputLimits, Item, load_item

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
TINY = EXAMPLES / "tiny-qwen2-vl"
MEMORY_CAP = 6 * 2**30  # address space of the child: the model and torch take ≈4.1 GB of it


def run_capped(code: str, timeout: int = 300, cap: int = MEMORY_CAP) -> subprocess.CompletedProcess:
    """Run Python `code` in a child process limited to `cap` bytes of address space and `timeout` seconds."""
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"}
    return subprocess.run([sys.executable, "-c", code], preexec_fn=limit, timeout=timeout, capture_output=True,
                          text=True, env=env)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    path, expect = build_corpus(root)
    out = root / "out"
    code = ("import json, resource; from pathlib import Path; from ume.embed.job import run_embed; "
            f"print(run_embed({str(TINY)!r}, Path({str(path)!r}), Path({str(out)!r}))); "
            "print(json.dumps({'maxrss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}))")
    res = run_capped(code)
    assert res.returncode == 0, res.stderr[-3000:]
    return path, expect, out, json.loads(res.stdout.strip().splitlines()[-1])


# --- ume embed ------------------------------------------------------------------------------------------------
def test_every_bad_line_is_its_own_named_error_and_no_line_takes_the_run_down(corpus):
    _, expect, out, _ = corpus
    emb = np.load(out / "embeddings.npy")
    assert emb.shape == (60, 64)  # one row per non-blank line: U+2028 / U+0085 inside a string split nothing
    errors = {e["index"]: e for e in map(json.loads, (out / "errors.jsonl").read_text().splitlines())}
    lines = line_numbers(expect)
    for i, want in enumerate(expect):
        if want is None:
            assert i not in errors, errors.get(i)
            assert not np.isnan(emb[i]).any(), i
            continue
        assert i in errors, (i, want)
        e = errors[i]
        assert want in e["reason"], (want, e["reason"])
        assert e["reason"].startswith(f"items.jsonl:{lines[i]}"), e["reason"]  # the input line, not a position
        assert e["line"] == lines[i] and np.isnan(emb[i]).all()
    records = [json.loads(x) for x in (out / "items.jsonl").read_text().splitlines()]
    assert records[0]["id"] == "bom" and records[0]["ok"]  # the BOM did not cost row 0
    sur = next(e for e in errors.values() if "lone surrogate" in e["reason"] or e["id"] == "\ud800")
    assert sur["id"] == "\ud800"  # written escaped: the final write never crashes
    run = json.loads((out / "run.json").read_text())
    assert run["n_items"] == 60 and run["n_errors"] == sum(e is not None for e in expect)
    assert run["max_item_tokens"] == 4096  # the tiny model's context


def test_every_good_item_equals_the_item_embedded_alone(corpus):
    import ume

    encoder = ume.load(TINY, device="cpu")  # the child's checkpoint (recipe v1, unlike the session fixture)
    path, expect, out, _ = corpus
    emb = np.load(out / "embeddings.npy")
    rows = read_items(path)
    good = [i for i, e in enumerate(expect) if e is None]
    for i in good:
        alone = encoder.encode([rows[i].item], mode="disc").embeddings[0]
        assert float(alone @ emb[i]) >= 0.9999, (i, rows[i].id)


def test_the_corpus_runs_in_bounded_memory(corpus):
    *_, stats = corpus  # the child ran under MEMORY_CAP; its peak RSS is recorded for the note
    assert stats["maxrss_mb"] < MEMORY_CAP // 2**20


def test_output_is_checked_before_any_work_and_never_mixes_two_runs(tmp_path):
    items = tmp_path / "items.jsonl"
    items.write_text('{"text": "a"}\n{"text": "b"}\n')
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="holds files this command did not write"):
        run_embed("/nonexistent/model", items, out)  # refused before the model is even looked for
    (out / "notes.txt").unlink()
    run_embed(str(TINY), items, out)
    first = np.load(out / "embeddings.npy")
    items.write_text('{"text": "a"}\n{"text": "b", "image": "nope.png"}\n{"text": "c"}\n')
    with pytest.raises(ValueError, match=r"holds a run with other settings \(input.fingerprint"):
        run_embed(str(TINY), items, out)  # another input is never mixed into the old run's folder
    assert np.array_equal(np.load(out / "embeddings.npy"), first)
    assert json.loads((out / "run.json").read_text())["n_items"] == 2
    with pytest.raises(Exception, match="file not found"):  # fail-fast, replacing it: the old run is gone whole
        run_embed(str(TINY), items, out, on_error="raise", overwrite=True)
    assert not (out / "embeddings.npy").exists() and not (out / "run.json").exists()
    run_embed(str(TINY), items, out)  # the same input and settings: resumes the replacing run
    assert sorted(p.name for p in out.iterdir()) == sorted(set(OUTPUT_FILES) - {"disc_embeddings.npy"})  # disc mode
    assert json.loads((out / "run.json").read_text())["n_items"] == 3 and np.load(out / "embeddings.npy").shape[0] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["items.jsonl", "out"]  # no staging folder left


def test_messages_name_the_input_line_after_earlier_parse_failures(tmp_path):
    items = tmp_path / "items.jsonl"
    lines = ["not json"] * 5 + ['{"text": "ok"}'] * 14 + ['{"id": "x", "text": "t", "image": "missing.png"}']
    items.write_text("\n".join(lines) + "\n")
    run_embed(str(TINY), items, tmp_path / "out")
    errors = [json.loads(x) for x in (tmp_path / "out" / "errors.jsonl").read_text().splitlines()]
    last = errors[-1]
    assert last["index"] == 19 and last["line"] == 20
    assert last["reason"].startswith("items.jsonl:20 (id='x'): image") and "item 14" not in last["reason"]


def test_one_text_over_the_token_limit_is_a_per_item_error(tmp_path):
    items = tmp_path / "items.jsonl"
    items.write_text(json.dumps({"id": "long", "text": "word " * 300}) + "\n" + '{"text": "short"}\n')
    run_embed(str(TINY), items, tmp_path / "out", max_item_tokens=200)
    err = json.loads((tmp_path / "out" / "errors.jsonl").read_text())
    assert err["index"] == 0 and "exceeds the limit of 200 tokens per item" in err["reason"]
    assert not np.isnan(np.load(tmp_path / "out" / "embeddings.npy")[1]).any()


# --- token budgets --------------------------------------------------------------------------------------------
def test_token_batches_keep_long_items_apart():
    lengths = [3000] + [40] * 7 + [500, 520]
    batches = token_batches(lengths, max_items=8, max_tokens=4096)
    assert batches[0] == [0]  # the long item never pads seven short ones
    for b in batches:
        assert (len(b) <= 8 and len(b) * max(lengths[i] for i in b) <= 4096) or len(b) == 1
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert token_batches([10] * 5, max_items=2) == [[0, 1], [2, 3], [4]]
    assert token_batches([9000], max_items=8, max_tokens=4096) == [[0]]  # alone, even over the budget


def test_the_encoder_batches_short_items_together_and_long_ones_under_the_budget(encoder):
    items = [Item("short"), Item("long " * 400), Item("short too"), Item("long " * 300), Item("tiny")]
    parsed, errors = list(items), []
    free = encoder._batches(parsed, 8, None, None, errors, "raise", weight=1)
    assert free == [[1, 3, 2, 0, 4]]  # longest first, all in one batch without a budget
    budget = encoder._batches(parsed, 8, None, 1000, errors, "raise", weight=1)
    assert budget[0] == [1] and budget[1] == [3] and sorted(budget[2]) == [0, 2, 4]
    a = encoder.encode(items, batch_size=8)
    b = encoder.encode(items, batch_size=8, max_batch_tokens=1000)
    assert np.allclose(a.embeddings, b.embeddings, atol=1e-5)  # batching never changes a vector


def test_estimated_tokens_match_the_processor(encoder, media):
    proc, recipe = encoder.backbone.processor, encoder.recipe
    overhead = prompt_overhead(proc, recipe)
    buf = __import__("io").BytesIO()
    Image.new("RGB", (300, 200), "red").save(buf, "PNG")
    for item in [Item("hello world " * 80), Item("two", images=[media["red"], buf.getvalue()]), Item("x")]:
        real = make_batch(proc, recipe, [load_item(item, 0, InputLimits())])["input_ids"].shape[1]
        assert abs(estimate_tokens(item, recipe, proc, overhead) - real) <= 3, item.text[:20]


# --- eval loaders: row types ----------------------------------------------------------------------------------
BAD_VALUES = [5, None, [], {}, "", [5], 1.5, True, {"a": 1}, "\ud800"]


def test_no_row_value_crashes_a_loader(mmeb_root, monkeypatch):
    """Every field of the first row of every table of all 78 tasks, set to each odd value (and the row itself
    replaced by a number, a string, a list, null): a row error or a loaded task, never an exception."""
    import copy

    from ume.evaluate.loaders import LoadContext, LoaderError, load_task
    from ume.evaluate.sources import Sources, Table
    from ume.evaluate.tasks import select_tasks

    real = Sources.table
    memo: dict = {}
    mutate: dict = {}

    def table(self, repo, config, split, task, max_rows=None):
        key = (task, config, repo)
        if key not in memo:
            memo[key] = real(self, repo, config, split, task, max_rows)
        rows = copy.deepcopy(memo[key].rows)
        if mutate.get("key") == key and rows:
            rows[0] = mutate["row"](rows[0])
        return Table(rows, memo[key].record)

    monkeypatch.setattr(Sources, "table", table)
    ctx = LoadContext(Sources(mmeb_root))
    crashes = []
    for t in select_tasks(benchmark="mmeb-v2"):
        load_task(t, ctx)
        for key in [k for k in memo if k[0] == t.name and memo[k].rows]:
            first = memo[key].rows[0]
            cases = [(f, lambda r, f=f, v=v: {**r, f: v}) for f in first for v in BAD_VALUES]
            cases += [("<row>", lambda r, v=v: v) for v in (5, "text", [1, 2], None)]
            for name, change in cases:
                mutate.update(key=key, row=change)
                try:
                    data = load_task(t, ctx)
                    assert all(e["task"] == t.name and "row" in e for e in data.errors)
                except LoaderError:
                    pass
                except Exception as e:
                    crashes.append((t.name, key[1], name, f"{type(e).__name__}: {e}"))
                mutate.clear()
    assert not crashes, crashes[:10]


def test_a_number_image_path_is_a_row_error(mmeb_root, monkeypatch):
    from ume.evaluate.loaders import LoadContext, load_task
    from ume.evaluate.sources import Sources, Table
    from ume.evaluate.tasks import select_tasks

    real = Sources.table

    def table(self, *args, **kw):
        t = real(self, *args, **kw)
        return Table([{**t.rows[0], "qry_img_path": 5}, 7, *t.rows[1:]], t.record)

    monkeypatch.setattr(Sources, "table", table)
    data = load_task(select_tasks(["ImageNet-1K"])[0], LoadContext(Sources(mmeb_root)))
    assert [e["row"] for e in data.errors] == [0, 1]
    assert "query image not found" in data.errors[0]["reason"] and "not a JSON object" in data.errors[1]["reason"]
    assert data.errors[0]["reason"].startswith("task ImageNet-1K: row 0")
    assert [q.info["row"] for q in data.queries][:1] == [2]  # each query knows its row, to name decode failures


# --- eval cache -----------------------------------------------------------------------------------------------
def _cache(tmp_path):
    from ume.evaluate.cache import EmbeddingCache

    return EmbeddingCache(tmp_path / "c")


def test_failures_are_never_cached(tmp_path):
    cache = _cache(tmp_path)
    vecs = np.array([[1.0, 0.0], [np.nan, np.nan], [0.0, 1.0]], dtype=np.float32)
    cache.append(["a", "b", "c"], vecs, [{"key": "a"}, {"key": "b", "error": "truncated"}, {"key": "c", "error": "x"}])
    vectors, records = cache.load()
    assert set(vectors) == {"a"} and set(records) == {"a"}  # b and c are encoded again next run
    cache.append(["b"], vecs[1:2], [{"key": "b", "error": "still broken"}])
    assert len(list(cache.dir.glob("chunk-*.npz"))) == 1  # nothing to store: no chunk at all


def test_old_caches_with_failures_do_not_serve_them(tmp_path):
    from ume.io import atomic_write

    cache = _cache(tmp_path)
    stem = cache.dir / "chunk-0-000000"  # the old format: a failed item's NaN row was stored
    atomic_write(stem.with_suffix(".jsonl"), lambda f: f.write(b'{"key": "a"}\n{"key": "b", "error": "e"}\n'))
    with open(stem.with_suffix(".npz"), "wb") as f:
        np.savez(f, keys=np.array(["a", "b"]), vectors=np.array([[1.0, 0.0], [np.nan, np.nan]], np.float32))
    assert set(cache.load()[0]) == {"a"}


def test_a_file_replaced_in_place_gets_a_new_key(tmp_path):
    from ume.evaluate.cache import item_key, key_seed

    img = tmp_path / "a.png"
    Image.new("RGB", (64, 64), "red").save(img)
    item = Item("x", images=[str(img)])
    before = item_key(item)
    assert item_key(item) == before  # stable while the file is
    Image.new("RGB", (64, 64), "blue").save(img)
    os.utime(img, ns=(os.stat(img).st_atime_ns, os.stat(img).st_mtime_ns))
    after = item_key(item)
    assert after != before
    assert after[:40] == before[:40] and key_seed(after, 0) == key_seed(before, 0)  # seeds follow the input
    big = tmp_path / "big.bin"
    big.write_bytes(b"a" * 100_000)
    st = os.stat(big)
    k1 = item_key(Item("x", images=[str(big)]))
    with open(big, "r+b") as f:  # same size, same mtime, other bytes at the end: the sample sees it
        f.seek(99_000)
        f.write(b"b")
    os.utime(big, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert item_key(Item("x", images=[str(big)])) != k1
    assert item_key(Item("text only")) == item_key(Item("text only")) and "-" not in item_key(Item("t"))


def test_special_files_are_keyed_without_being_opened(tmp_path):
    from ume.evaluate.cache import item_key

    os.mkfifo(tmp_path / "f.png")
    assert item_key(Item("x", images=[str(tmp_path / "f.png"), "/dev/zero", str(tmp_path / "gone.png")]))


def test_a_truncated_chunk_or_torn_sidecar_is_named_set_aside_and_recomputed(tmp_path):
    cache = _cache(tmp_path)
    for k in ("a", "b", "c"):
        cache.append([k], np.ones((1, 2), np.float32), [{"key": k}])
    chunks = sorted(cache.dir.glob("chunk-*.npz"))
    chunks[0].write_bytes(chunks[0].read_bytes()[:40])  # truncated: BadZipFile
    side = chunks[1].with_suffix(".jsonl")
    side.write_bytes(side.read_bytes()[:-4])  # torn sidecar line
    with pytest.warns(RuntimeWarning, match="set aside"):
        vectors, _ = cache.load()
    assert set(vectors) == {"c"}
    assert len(cache.problems) == 2 and "BadZipFile" in cache.problems[0] and "torn" in cache.problems[1]
    assert len(list(cache.dir.glob("*.damaged"))) == 4
    again = _cache(tmp_path)
    assert set(again.load()[0]) == {"c"} and not again.problems  # named once; the keys are simply missing now
    with zipfile.ZipFile(sorted(cache.dir.glob("chunk-*.npz"))[0]) as z:
        assert z.namelist()  # the surviving chunk is intact


def test_a_lost_chunk_never_makes_a_later_chunk_overwrite_another(tmp_path):
    cache = _cache(tmp_path)
    for k in ("a", "b", "c"):
        cache.append([k], np.ones((1, 2), np.float32), [{"key": k}])
    first = sorted(cache.dir.glob("chunk-*.npz"))[0]
    first.unlink()
    first.with_suffix(".jsonl").unlink()
    cache.append(["a"], np.ones((1, 2), np.float32), [{"key": "a"}])
    assert set(cache.load()[0]) == {"a", "b", "c"}  # with chunks named by count, "a" would have replaced "c"
    assert len(list(cache.dir.glob("chunk-0-*.npz"))) == 3


def test_a_repaired_image_is_encoded_again(mmeb_root, encoder, tiny_dirs, tmp_path):
    """End to end: a truncated query image scores 0; once repaired, the next run encodes and scores it."""
    import shutil

    from ume.evaluate.runner import EvalConfig, Runner

    root = tmp_path / "data"
    for repo in ("ziyjiang/MMEB_Test_Instruct", "TIGER-Lab/MMEB-V2"):
        shutil.copytree(mmeb_root / repo, root / repo, symlinks=True)
    victim = root / "TIGER-Lab/MMEB-V2/image-tasks/ImageNet-1K/q_0.jpg"
    good = victim.read_bytes()
    victim.write_bytes(good[:30])
    cfg = EvalConfig(model=str(tiny_dirs["qwen2_vl"]), data_root=str(root), output=str(tmp_path / "out"),
                     tasks=("ImageNet-1K",), batch_size=4)
    first = Runner(cfg, encoder=encoder).run()
    errors = [json.loads(x) for x in (tmp_path / "out" / "errors.jsonl").read_text().splitlines()]
    assert any("truncated or corrupt" in e["reason"] for e in errors)
    victim.write_bytes(good)
    second = Runner(cfg, encoder=encoder).run()
    assert second["encoding"]["ImageNet-1K"]["qry-disc"]["encoded_now"] >= 1  # not served a cached failure
    assert (tmp_path / "out" / "errors.jsonl").read_text() == ""
    assert first["encoding"]["ImageNet-1K"]["tgt-disc"]["encoded_now"] > 0
    assert second["encoding"]["ImageNet-1K"]["tgt-disc"]["encoded_now"] == 0  # the rest came from the cache


# --- training rows and the training log -----------------------------------------------------------------------
def _sft_row(**qry_extra):
    side = {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "<think>a</think><gen_emb>"}]}
    return {"qry": {**side, **qry_extra}, "pos": side, "source": "s"}


def test_sft_typo_keys_are_row_errors(tmp_path):
    from ume.recipe import Recipe
    from ume.train.data import DataError, load_file

    path = tmp_path / "sft.json"
    path.write_text(json.dumps([_sft_row(), _sft_row(imgae="x.png"), {**_sft_row(), "sorce": "s"}]))
    with pytest.raises(DataError, match=r"row 1: qry: unknown key\(s\) \['imgae'\]"):
        load_file(path, None, Recipe(), check_files=False)
    pairs, bad = load_file(path, None, Recipe(), check_files=False, skip_bad_rows=True)
    assert [p.row for p in pairs] == [0] and [(b.row, b.field) for b in bad] == [(1, "qry"), (2, "record")]


def test_rl_typo_keys_are_row_errors(tmp_path):
    from ume.recipe import Recipe
    from ume.train.rl_data import DataError, load_rl_pairs

    rows = [{"qry_text": "a", "pos_text": "b"}, {"qry_text": "c", "pos_text": "d"},
            {"qry_text": "e", "qry_imgae": "x.png", "pos_text": "f"}]
    path = tmp_path / "rl.json"
    path.write_text(json.dumps(rows))
    with pytest.raises(DataError, match=r"rl.json: row 2: row: unknown key\(s\) \['qry_imgae'\]"):
        load_rl_pairs([str(path)], None, Recipe(), check_files=False)


def test_sft_jsonl_bad_bytes_bom_and_separators(tmp_path):
    from ume.recipe import Recipe
    from ume.train.data import DataError, load_file

    row = json.dumps(_sft_row(), ensure_ascii=False)
    sep = json.dumps({**_sft_row(), "source": "a\u2028b"}, ensure_ascii=False)
    path = tmp_path / "sft.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + row.encode() + b"\n" + sep.encode() + b"\n" + b'{"qry": "\xff"}\n')
    with pytest.raises(DataError, match=r"sft.jsonl: not valid JSON \(line 3: invalid UTF-8"):
        load_file(path, None, Recipe(), check_files=False)
    path.write_bytes(b"\xef\xbb\xbf" + row.encode() + b"\n" + sep.encode() + b"\n")
    pairs, _ = load_file(path, None, Recipe(), check_files=False)
    assert [p.row for p in pairs] == [0, 1] and pairs[1].source == "a\u2028b"


def test_sft_media_must_be_regular_files(tmp_path):
    from ume.recipe import Recipe
    from ume.train.data import load_file

    os.mkfifo(tmp_path / "f.png")
    (tmp_path / "z.png").symlink_to("/dev/zero")
    path = tmp_path / "sft.json"
    path.write_text(json.dumps([_sft_row(image="f.png"), _sft_row(image="z.png")]))
    pairs, bad = load_file(path, None, Recipe(), skip_bad_rows=True)
    assert not pairs and all("not a regular file" in b.reason for b in bad) and len(bad) == 2


def test_sft_sides_load_through_inference_load_item(encoder, tmp_path):
    """SFT decodes sides with `inputs.load_item` and its limits: a FIFO is refused unopened, a size limit holds,
    a bad frame is the row's `video` field; the reasons are inference's, under the row's file, row and field."""
    from ume.recipe import Recipe
    from ume.train.collate import Collator
    from ume.train.data import load_file

    Image.new("RGB", (32, 32), "red").save(tmp_path / "ok.png")
    Image.new("RGB", (400, 400), "blue").save(tmp_path / "big.png")
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    os.mkfifo(tmp_path / "f.png")
    rows = [_sft_row(image="ok.png"), _sft_row(video=["ok.png", "bad.jpg"]), _sft_row(image="f.png"),
            _sft_row(image="big.png"), _sft_row(image="ok\x00.png")]
    path = tmp_path / "sft.json"
    path.write_text(json.dumps(rows))
    pairs, bad = load_file(path, None, Recipe(), check_files=False, skip_bad_rows=True)
    assert [(b.row, b.field, b.stage) for b in bad] == [(4, "qry", "validate")] and "NUL" in bad[0].reason
    collator = Collator(encoder.backbone.processor, encoder.backbone.recipe, 4096, skip_bad_rows=True)
    collator.limits = InputLimits(num_frames=8, max_file_bytes=(tmp_path / "big.png").stat().st_size - 1)
    mb = collator(pairs)
    assert [r for _, r in mb.rows] == [0]
    got = {b.row: (b.field, b.stage, b.reason) for b in mb.skipped}
    assert got[1][:2] == ("qry.video", "load") and got[1][2].startswith(f"image {str(tmp_path / 'bad.jpg')!r}")
    assert got[2][:2] == ("qry.image", "load") and "is a FIFO, not a regular file" in got[2][2]
    assert got[3][:2] == ("qry.image", "load") and "exceeds the limit" in got[3][2]
    for b in mb.skipped:  # the reason is the one inference gives for the same item
        item = pairs[[p.row for p in pairs].index(b.row)].qry
        with pytest.raises(InputError) as e:
            load_item(item, 0, collator.limits)
        assert e.value.reason == b.reason


def test_rl_bad_media_at_rollout_time_is_skipped_reported_and_replaced(tmp_path):
    from ume.recipe import Recipe
    from ume.train.rl_data import DataError, load_rl_batch, load_rl_pairs, spare_indices

    Image.new("RGB", (32, 32), "red").save(tmp_path / "ok.png")
    (tmp_path / "bad.png").write_bytes((tmp_path / "ok.png").read_bytes()[:40])  # passes the up-front check
    rows = [{"qry_text": f"q{i}", "qry_image": "bad.png" if i == 1 else "ok.png", "pos_text": f"p{i}"}
            for i in range(6)]
    (tmp_path / "rl.json").write_text(json.dumps(rows))
    pairs, _ = load_rl_pairs([str(tmp_path / "rl.json")], None, Recipe())
    bad_image = r"rl.json: row 1: qry_image: image .*(truncated or corrupt|not a recognised image)"
    with pytest.raises(DataError, match=bad_image):
        load_rl_batch(pairs, [0, 1], InputLimits(), skip_bad_rows=False)
    known: set[int] = set()
    spares = spare_indices(len(pairs), seed=0, step=0, size=2)
    used, loaded, bad = load_rl_batch(pairs, [0, 1], InputLimits(), True, spares, known)
    assert used[0] == 0 and len(used) == 2 and 1 not in used and used[1] in spares
    assert len(loaded["qry"]) == len(loaded["tgt"]) == 2 and loaded["qry"][0].images[0].size == (32, 32)
    assert [(b.row, b.field, b.stage) for b in bad] == [(1, "qry_image", "load")] and known == {1}
    with pytest.raises(InputError) as e:  # the reason is the one inference gives for the same item
        load_item(pairs[1].qry, 0, InputLimits())
    assert bad[0].reason == e.value.reason
    used2, _, bad2 = load_rl_batch(pairs, [1, 2], InputLimits(), True, [3, 4], known)
    assert used2 == [3, 2] and not bad2  # a known bad row is replaced without decoding it again


def test_a_torn_last_log_line_does_not_stop_a_resume():
    from ume.train.engine import kept_log_lines

    blob = b'{"step": 1, "loss": 1.0}\n{"step": 2, "loss": 0.9}\n{"step": 3, "lo'
    assert kept_log_lines(blob, 2) == [b'{"step": 1, "loss": 1.0}', b'{"step": 2, "loss": 0.9}']
    assert kept_log_lines(b'{"step": 1}\n\xff\xfe\n[1]\n{"eval": 1}\n', 5) == [b'{"step": 1}']
