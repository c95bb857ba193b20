"""`ume index build` / `ume search` and `ume.Index`: folders and JSONL corpora, failed items, resume, ANN,
and the harness's ranking reproduced on a MiniMMEB task (same top-1 per query, disc and gen)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("faiss")

import itertools

import ume
from ume.index import Index

DEMO = Path(__file__).resolve().parents[1] / "models" / "ume-demo-rl"


@pytest.fixture(scope="module")
def enc():
    return ume.load(DEMO, device="cpu")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    from PIL import Image, ImageDraw

    root = tmp_path_factory.mktemp("corpus")
    shapes = [("red_circle", (220, 30, 30), "ellipse"), ("blue_square", (30, 60, 220), "rectangle"),
              ("green_circle", (30, 200, 60), "ellipse"), ("yellow_square", (230, 210, 30), "rectangle")]
    for name, colour, shape in shapes:
        img = Image.new("RGB", (64, 64), "white")
        getattr(ImageDraw.Draw(img), shape)((12, 12, 52, 52), fill=colour)
        img.save(root / f"{name}.png")
    (root / "notes").mkdir()
    (root / "notes" / "caption.txt").write_text("A small red circle on a white background.")
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return root


def run_cli(*args: str) -> str:
    from typer.testing import CliRunner

    from ume.cli import app

    res = CliRunner().invoke(app, list(args), catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res.output


def json_lines(out: str) -> list[dict]:
    """JSON hits from CLI output (stderr progress bars may share a line with them)."""
    return [json.loads(ln[ln.index('{"query"'):]) for ln in out.splitlines() if '{"query"' in ln]


def test_folder_build_search_and_contact_sheet(folder, tmp_path, enc):
    out = run_cli("index", "build", "--model", str(DEMO), "--input", str(folder), "--output", str(tmp_path / "idx"),
                  "--chunk-size", "2")
    assert "indexed 5/6 items" in out and "failed broken.png" in out
    idx = Index(tmp_path / "idx", encoder=enc)
    assert len(idx) == 5 and idx.meta["failed"] == 1
    ids = [r["id"] for r in idx.items]
    assert ids == sorted(ids) and "notes/caption.txt" in ids
    broken = next(r for r in idx.items if r["id"] == "broken.png")
    assert not broken["ok"] and "not a recognised image" in broken["error"]
    # stored vectors are the encoder's
    want = enc.encode([ume.Item("", images=[folder / "red_circle.png"])], mode="disc").embeddings[0]
    row = ids.index("red_circle.png")
    assert float(np.asarray(idx.vectors[row]) @ want) > 0.9999
    # search: ranked, no failed item, scores descending
    hits = idx.search("a red circle", k=10)
    assert len(hits) == 5 and "broken.png" not in [h.id for h in hits]
    assert [h.rank for h in hits] == [1, 2, 3, 4, 5]
    assert all(a.score >= b.score for a, b in itertools.pairwise(hits))
    q = enc.encode(["a red circle"], mode="disc").embeddings[0]
    assert abs(hits[0].score - float(np.asarray(idx.vectors[hits[0].row], np.float64) @ q)) < 1e-6
    # the CLI: a table, JSON lines, an image query and a contact sheet
    table = run_cli("search", str(tmp_path / "idx"), "a red circle", "-k", "3", "--sheet", str(tmp_path / "s.png"))
    assert "score" in table and hits[0].id in table
    lines = json_lines(run_cli("search", str(tmp_path / "idx"), "a red circle", "-k", "3", "--json"))
    assert [x["id"] for x in lines] == [h.id for h in hits[:3]]
    from PIL import Image

    with Image.open(tmp_path / "s.png") as im:
        assert im.size[0] >= 3 * 160
    by_image = idx.search("", image=folder / "blue_square.png", k=1)
    assert by_image[0].id == "blue_square.png"  # the same image is its own nearest neighbour


def test_build_resumes_after_a_kill(folder, tmp_path, enc):
    calls: list[int] = []

    class Counting:
        def __init__(self, e):
            self.e = e

        def __getattr__(self, n):
            return getattr(self.e, n)

        def encode(self, items, **kw):
            calls.append(len(items))
            return self.e.encode(items, **kw)

    counting = Counting(enc)

    def kill(chunk, total):
        if chunk == 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Index.build(counting, folder, tmp_path / "idx", chunk_size=2, progress=False, on_chunk=kill)
    assert calls == [2] and not (tmp_path / "idx" / "meta.json").exists()
    idx = Index.build(counting, folder, tmp_path / "idx", chunk_size=2, progress=False)
    assert calls == [2, 2, 2]  # chunk 0 was not encoded again
    assert idx.meta["encoded_this_run"] == 4 and idx.meta["count"] == 6
    fresh = Index.build(enc, folder, tmp_path / "fresh", chunk_size=2, progress=False)
    ok = np.array([r["ok"] for r in fresh.items])
    np.testing.assert_allclose(np.asarray(idx.vectors)[ok], np.asarray(fresh.vectors)[ok], atol=1e-6)
    with pytest.raises(ValueError, match="another corpus"):
        Index.build(enc, folder, tmp_path / "idx", mode="gen", chunk_size=2, progress=False)


def test_jsonl_corpus_gen_mode_stores_reasoning_and_hnsw(folder, tmp_path, enc):
    corpus = tmp_path / "corpus.jsonl"
    rows = [{"id": "r", "image": str(folder / "red_circle.png"), "text": "Represent the given image."},
            {"id": "b", "image": str(folder / "blue_square.png"), "text": "Represent the given image."},
            {"id": "t", "text": "a yellow square"}]
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rows) + "not json\n")
    idx = Index.build(enc, corpus, tmp_path / "gen", mode="gen", max_new_tokens=12, progress=False, kind="hnsw")
    assert idx.meta["kind"] == "hnsw" and len(idx) == 3 and idx.meta["failed"] == 1
    want = enc.encode([ume.Item(r["text"], images=[r["image"]] if "image" in r else []) for r in rows],
                      mode="gen", max_new_tokens=12)
    for j in range(3):
        assert idx.items[j]["reasoning"] == want.texts[j]
        assert float(np.asarray(idx.vectors[j]) @ want.embeddings[j]) > 0.9999
    hits = idx.search("a yellow square", k=3)
    exact = Index.build(enc, corpus, tmp_path / "gen-exact", mode="gen", max_new_tokens=12, progress=False)
    assert [h.id for h in hits] == [h.id for h in exact.search("a yellow square", k=3)]
    assert hits[0].reasoning is not None


@pytest.mark.parametrize("mode", ["disc", "gen"])
def test_search_reproduces_the_harness_ranking_on_minimmeb(minimmeb_root, tmp_path, enc, mode):
    """An index over MiniDocTable's candidate pool, searched with `ume search --queries`, gives every query the
    same top-1 as `ume eval`'s runner."""
    from ume.evaluate.loaders import load_task
    from ume.evaluate.runner import EvalConfig, Runner
    from ume.evaluate.tasks import select_tasks

    task_name, budget = "MiniDocTable", 8
    cfg = EvalConfig(model=str(DEMO), data_root=str(minimmeb_root), output=str(tmp_path / "eval"), tasks=(task_name,),
                     qry_mode=mode, tgt_mode=mode, max_new_tokens=budget, pred_top_k=0)
    Runner(cfg, encoder=enc).run()
    (pred_file,) = (tmp_path / "eval").rglob(f"{task_name}_pred.jsonl")
    preds = [json.loads(x) for x in pred_file.read_text().splitlines()]

    (task,) = select_tasks([task_name])
    data = load_task(task, minimmeb_root)
    pages = tmp_path / "pages"
    pages.mkdir()
    corpus = []
    for name, item in data.pool.items():
        (pages / f"{name}.png").write_bytes(item.images[0])
        corpus.append({"id": name, "text": item.text, "image": f"pages/{name}.png"})
    (tmp_path / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in corpus))
    (tmp_path / "queries.jsonl").write_text("".join(json.dumps({"id": f"q{i}", "text": q.item.text}) + "\n"
                                                    for i, q in enumerate(data.queries)))
    assert all(not q.item.images and q.item.video is None for q in data.queries)  # text queries, as written
    run_cli("index", "build", "--model", str(DEMO), "--input", str(tmp_path / "corpus.jsonl"), "--output",
            str(tmp_path / "idx"), "--mode", mode, "--max-new-tokens", str(budget))
    out = run_cli("search", str(tmp_path / "idx"), "--queries", str(tmp_path / "queries.jsonl"), "-k", "1", "--json")
    top1 = {x["query"]: x["id"] for x in json_lines(out)}
    assert len(top1) == len(preds) == len(data.queries)
    assert [top1[f"q{i}"] for i in range(len(preds))] == [p["prediction"][0] for p in preds]
    # and the full ranking, through the Python API
    idx = Index(tmp_path / "idx", encoder=enc)
    ranked = idx.search([{"text": q.item.text} for q in data.queries], k=len(data.pool))
    assert [[h.id for h in hits] for hits in ranked] == [p["prediction"] for p in preds]
