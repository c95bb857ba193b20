"""MiniMMEB through the MMEB-V2 loaders and the runner, end to end."""

import io
import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from ume.cli import app
from ume.evaluate.loaders import LoadContext, load_task
from ume.evaluate.runner import EvalConfig, Runner
from ume.evaluate.sources import Sources
from ume.evaluate.tasks import select_tasks
from ume.inputs import sample_indices
from ume.synth.build import SCALES
from ume.synth.docpage import render_page
from ume.synth.registry import doc_groups, item_examples
from ume.synth.tasks import MINI_TASKS, TASKS_BY_NAME, VISDOC_QUERY, VISDOC_TARGET

N = SCALES["tiny"].queries  # the conftest build: seed 0, scale tiny


def test_every_minimmeb_task_loads_through_the_mmeb_loaders(minimmeb_root):
    tasks = select_tasks(benchmark="minimmeb") + select_tasks(benchmark="minimmeb-holdout")
    assert sorted(t.name for t in tasks) == sorted(t.name for t in MINI_TASKS)
    for task in tasks:
        data = load_task(task, minimmeb_root)
        assert len(data.queries) == N and not data.errors, (task.name, data.errors[:2])
        assert [r["repo"] for r in data.provenance] == [task.source] * len(data.provenance)
        assert all(r["origin"] == "data-root" and r["rows"] for r in data.provenance)
        for q in data.queries:
            assert all(lab in data.pool for lab in q.labels), task.name
            if task.ranking == "local":
                assert q.cand_names and all(n in data.pool for n in q.cand_names)


def pixels(image) -> bytes:
    """RGB pixels of a loaded image: a file path or the bytes of an HF `Image` struct."""
    return Image.open(io.BytesIO(image) if isinstance(image, bytes) else image).convert("RGB").tobytes()


def examples(name: str) -> list:
    task = TASKS_BY_NAME[name]
    return [ex for _, ex in item_examples(task, task.split, 0, N)]


def test_loaded_image_task_is_what_the_generator_made(minimmeb_root):
    """MiniVQA through the image_qa loader: query string, image pixels, candidates and label as generated."""
    [task] = select_tasks(["MiniVQA"])
    data = load_task(task, minimmeb_root)
    for q, ex in zip(data.queries, examples("MiniVQA"), strict=True):
        cands = [ex.positive.text, *(s.text for s in ex.negatives)]
        assert q.item.text == f"<|image_pad|>\n{ex.query.inst} {ex.query.text}\n"
        assert q.cand_names == cands and q.labels == [ex.positive.text]
        assert [data.pool[c].text for c in cands] == cands and not data.pool[cands[0]].images
        [image] = q.item.images
        assert pixels(image) == ex.query.media.render().tobytes()


def test_loaded_video_tasks_are_what_the_generator_made(minimmeb_root):
    """MiniTrackQA (nextqa: the query carries the video) and MiniVidRet (msrvtt: the candidates do)."""
    def frames(media) -> list[bytes]:  # the 8 frames the reference samples (linspace), as generated
        rendered = media.render()
        return [rendered[i].tobytes() for i in sample_indices(len(rendered), 8)]

    [task] = select_tasks(["MiniTrackQA"])
    data = load_task(task, minimmeb_root)
    for q, ex in zip(data.queries, examples("MiniTrackQA"), strict=True):
        # the reference's process_query puts a space after a prompt that already ends in one ("Question: ")
        assert task.instruction.endswith("Question: ") and ex.query.inst == task.instruction.strip()
        assert q.item.text == f"<|video_pad|> {task.instruction} {ex.query.text}"
        assert q.cand_names == ex.extra["options"] and q.labels == [ex.positive.text]
        assert ex.extra["options"][ex.extra["answer"]] == ex.positive.text
        assert [pixels(f) for f in q.item.video] == frames(ex.query.media)
    [task] = select_tasks(["MiniVidRet"])
    data = load_task(task, minimmeb_root)
    exs = examples("MiniVidRet")
    assert len(data.pool) == len(exs)
    for q, ex in zip(data.queries, exs, strict=True):
        assert q.item.text == f"{ex.query.inst} {ex.query.text}" and not q.item.video
        [label] = q.labels
        assert data.pool[label].text == f"<|video_pad|> {ex.positive.inst}"
        assert [pixels(f) for f in data.pool[label].video] == frames(ex.positive.media)


@pytest.mark.parametrize("protocol", ["vlm2vec", "ume-r1"])
def test_loaded_visdoc_task_is_what_the_generator_made(minimmeb_root, protocol):
    """MiniDocTable through the vidore loader: query strings, graded relevant pages (matched by their pixels)
    and a pool of every page. The prompt protocol is about MMEB-V2: MiniMMEB keeps the strings its training
    pairs use under either."""
    [task] = select_tasks(["MiniDocTable"])
    data = load_task(task, LoadContext(Sources(minimmeb_root), protocol=protocol))
    mini = TASKS_BY_NAME["MiniDocTable"]
    groups = [g for _, g in doc_groups(mini, mini.split, 0, N)]
    made = [(q, g) for g in groups for q in g.queries]
    assert len(data.pool) == sum(len(g.pages) for g in groups)
    page_text = f"<|image_pad|> {VISDOC_TARGET}"
    assert {item.text for item in data.pool.values()} == {page_text}
    assert len(data.queries) == len(made) == N
    for q, (want, group) in zip(data.queries, made, strict=True):
        assert q.item.text == f"{VISDOC_QUERY} {want.text}"
        got = {pixels(data.pool[cid].images[0]): score for cid, score in zip(q.labels, q.rel_scores, strict=True)}
        assert got == {render_page(group.pages[k]).tobytes(): g for k, g in want.relevant.items()}


def test_random_model_scores_near_chance(minimmeb_root, encoder, tmp_path):
    """No label leaks into the inputs: an untrained model ranks the positive first about 1/#candidates."""
    cfg = EvalConfig(model="tiny", data_root=str(minimmeb_root), output=str(tmp_path), benchmark="minimmeb",
                     qry_mode="disc", tgt_mode="disc", limit=8, pred_top_k=0)
    runner = Runner(cfg, encoder=encoder)
    hits, chance = [], []
    for task in select_tasks(benchmark="minimmeb"):
        res = runner.run_task(task)
        data = load_task(task, minimmeb_root)
        sizes = [len(q.cand_names) if q.cand_names else len(data.pool) for q in data.queries[:8]]
        hits.append(res.scores["disc-disc"]["hit@1"])
        chance.append(np.mean([1 / n for n in sizes]))
        if task.metric == "hit@1":  # one positive per query: the report's chance column is 1/#candidates
            assert res.scores["chance"]["hit@1"] == pytest.approx(chance[-1]), task.name
    assert abs(np.mean(hits) - np.mean(chance)) < 0.08, (np.mean(hits), np.mean(chance))


def test_cli_eval_gen_oracle_passk_end_to_end(minimmeb_root, tiny_dirs, tmp_path):
    out = tmp_path / "report"
    res = CliRunner().invoke(app, [
        "eval", "--model", str(tiny_dirs["qwen2_vl"]), "--data-root", str(minimmeb_root), "--benchmark",
        "minimmeb", "--qry-mode", "gen", "--tgt-mode", "gen", "--oracle", "--samples", "4", "--limit", "2",
        "--max-new-tokens", "4", "--output", str(out)])
    assert res.exit_code == 0, res.output
    report = json.loads((out / "report.json").read_text())
    assert set(report["runs"]) == {"gen-gen", "disc-disc", "oracle", "chance"}
    assert report["runs"]["oracle"]["aggregate"]["overall"]["n"] == 13
    assert all(set(c) == {"1", "2", "4"} for c in report["passk"].values())
    assert (out / "plots" / "passk.png").exists() and "overall" in (out / "report.md").read_text()
    listing = CliRunner().invoke(app, ["eval", "--benchmark", "mmeb-v2-visdoc", "--list"])
    lines = listing.output.strip().splitlines()
    assert listing.exit_code == 0 and len(lines) == 25 and lines[0].split("\t")[:2] == ["task", "benchmark"]
    assert lines[1].split("\t")[7] == "vidore/arxivqa_test_subsampled_beir"  # each task's hub dataset id
