"""The leaderboard JSON matches VLM2Vec's experiments/report_score_v2.py and its published score files."""

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ume.evaluate.metrics import mean_metrics, query_metrics
from ume.evaluate.report import (
    PASSK_PER_TASK,
    LeaderboardMeta,
    aggregate,
    compare,
    leaderboard,
    meta_task_figure,
    passk_figure,
    plots,
    write_reports,
)
from ume.evaluate.runner import TaskResult
from ume.evaluate.tasks import TaskMeta, select_tasks

# `modality2dataset`, verbatim from VLM2Vec experiments/report_score_v2.py lines 68-87 (commit 6e1e1d4);
# CI has no VLM2Vec checkout, so the lists are copied here.
IMAGE = [
    "ImageNet-1K", "N24News", "HatefulMemes", "VOC2007", "SUN397", "Place365", "ImageNet-A", "ImageNet-R",
    "ObjectNet", "Country211", "OK-VQA", "A-OKVQA", "DocVQA", "InfographicsVQA", "ChartQA", "Visual7W",
    "ScienceQA", "VizWiz", "GQA", "TextVQA", "VisDial", "CIRR", "VisualNews_t2i", "VisualNews_i2t", "MSCOCO_t2i",
    "MSCOCO_i2t", "NIGHTS", "WebQA", "FashionIQ", "Wiki-SS-NQ", "OVEN", "EDIS", "MSCOCO", "RefCOCO",
    "RefCOCO-Matching", "Visual7W-Pointing"]
VIDEO = [
    "K700", "SmthSmthV2", "HMDB51", "UCF101", "Breakfast", "MVBench", "Video-MME", "NExTQA", "EgoSchema",
    "ActivityNetQA", "DiDeMo", "MSR-VTT", "MSVD", "VATEX", "YouCook2", "QVHighlight", "Charades-STA",
    "MomentSeeker"]
VISDOC = [
    "ViDoRe_arxivqa", "ViDoRe_docvqa", "ViDoRe_infovqa", "ViDoRe_tabfquad", "ViDoRe_tatdqa",
    "ViDoRe_shiftproject", "ViDoRe_syntheticDocQA_artificial_intelligence", "ViDoRe_syntheticDocQA_energy",
    "ViDoRe_syntheticDocQA_government_reports", "ViDoRe_syntheticDocQA_healthcare_industry",
    "ViDoRe_esg_reports_human_labeled_v2", "ViDoRe_biomedical_lectures_v2_multilingual",
    "ViDoRe_economics_reports_v2_multilingual", "ViDoRe_esg_reports_v2_multilingual", "VisRAG_ArxivQA",
    "VisRAG_ChartQA", "VisRAG_MP-DocVQA", "VisRAG_SlideVQA", "VisRAG_InfoVQA", "VisRAG_PlotQA",
    "ViDoSeek-page", "ViDoSeek-doc", "MMLongBench-page", "MMLongBench-doc"]
# the script's line 142 ("temp fix")
VISDOC_FIXED = [f"{n}-fixed" if n in ("ViDoSeek-page", "MMLongBench-page") else n for n in VISDOC]
# the metadata template, report_score_v2.py lines 47-55, plus line 141's report_generated_date
METADATA_KEYS = ["model_name", "model_backbone", "model_size", "embedding_dimension", "max_length_tokens",
                 "model_release_date", "data_source", "url", "report_generated_date"]
# the keys of every task entry, in order, of VLM2Vec
# experiments/public/all_scores/v2.1-baselines-visdoc-page-fixed/VLM2Vec-V2.0-Qwen2VL-2B.json
PUBLISHED_KEYS = [
    "hit@1", "hit@5", "hit@10", "ndcg_linear@1", "ndcg_linear@5", "ndcg_linear@10", "ndcg_exponential@1",
    "ndcg_exponential@5", "ndcg_exponential@10", "precision@1", "precision@5", "precision@10", "recall@1",
    "recall@5", "recall@10", "f1@1", "f1@5", "f1@10", "map@1", "map@5", "map@10", "mrr@1", "mrr@5", "mrr@10",
    "num_pred", "num_data"]

SCORE = mean_metrics([query_metrics(["a", "b"], ["a"]), query_metrics(["a", "b"], ["b"])])
META = LeaderboardMeta(model_name="UME-R1-2B", model_backbone="qwen2_vl", model_size="2B parameters",
                       embedding_dimension=1536)


def board(names, **kw) -> dict[str, Any]:
    return leaderboard({n: SCORE for n in names}, META, **kw)


def test_canonical_lists_whatever_ran():
    metrics = board(["ImageNet-1K"], fixed_page_names=False)["metrics"]
    assert list(metrics) == ["image", "video", "visdoc"]
    assert (len(IMAGE), len(VIDEO), len(VISDOC)) == (36, 18, 24)
    assert list(metrics["image"]) == IMAGE and list(metrics["video"]) == VIDEO and list(metrics["visdoc"]) == VISDOC


def test_missing_tasks_and_modalities():
    metrics = board(["ImageNet-1K", "MSCOCO_t2i", "ViDoRe_arxivqa"])["metrics"]
    assert metrics["image"]["ImageNet-1K"] == SCORE == metrics["image"]["MSCOCO_t2i"]
    assert {v for k, v in metrics["image"].items() if k not in ("ImageNet-1K", "MSCOCO_t2i")} == {"FILE_N/A"}
    assert set(metrics["video"].values()) == {"DIR_N/A"}  # no video score: the script's missing directory
    assert {v for k, v in metrics["visdoc"].items() if k != "ViDoRe_arxivqa"} == {"FILE_N/A"}


def test_nothing_scored_is_dir_na_everywhere():
    metrics = board([])["metrics"]
    assert all(set(metrics[m].values()) == {"DIR_N/A"} for m in metrics)
    assert list(metrics["visdoc"]) == VISDOC_FIXED  # the script renames whatever the entries hold


@pytest.mark.parametrize("fixed", [True, False])
def test_page_rename_switch(fixed):
    visdoc = board(["ViDoSeek-page", "MMLongBench-page", "ViDoSeek-doc"], fixed_page_names=fixed)["metrics"]["visdoc"]
    assert list(visdoc) == (VISDOC_FIXED if fixed else VISDOC)
    page = "ViDoSeek-page-fixed" if fixed else "ViDoSeek-page"
    assert visdoc[page] == SCORE and visdoc["ViDoSeek-doc"] == SCORE and visdoc["ViDoRe_docvqa"] == "FILE_N/A"


def test_default_applies_the_rename():
    assert list(board(["ViDoSeek-page"])["metrics"]["visdoc"]) == VISDOC_FIXED


def test_metadata_template_and_iso_timestamp():
    meta = board(["K700"])["metadata"]
    assert list(meta) == METADATA_KEYS
    assert meta["model_name"] == "UME-R1-2B" and meta["model_backbone"] == "qwen2_vl"
    assert meta["embedding_dimension"] == 1536 and meta["data_source"] == "Self-Reported"
    assert meta["max_length_tokens"] is None and meta["url"] is None
    stamp = datetime.fromisoformat(meta["report_generated_date"])
    assert "T" in meta["report_generated_date"] and abs((datetime.now() - stamp).total_seconds()) < 60


def test_entries_hold_exactly_the_published_keys():
    extra = {**SCORE, "_meta": {"run": "disc-disc"}, "se": 0.1}
    metrics = leaderboard({"ImageNet-1K": extra, "K700": SCORE, "VisRAG_PlotQA": SCORE}, META)["metrics"]
    entries = [v for mod in metrics.values() for v in mod.values() if isinstance(v, dict)]
    assert len(entries) == 3 and all(list(e) == PUBLISHED_KEYS for e in entries)


def test_names_the_script_does_not_list_are_dropped():
    mini = select_tasks(benchmark="minimmeb")[0].name
    metrics = board([mini, "MomentSeeker_1k8", "K700"])["metrics"]
    assert list(metrics["video"]) == VIDEO and set(metrics["image"].values()) == {"DIR_N/A"}
    assert all(mini not in mod for mod in metrics.values())


def test_json_round_trip():
    out = board(["ImageNet-1K", "K700", "ViDoSeek-page"])
    assert json.loads(json.dumps(out)) == out


@dataclass
class Cfg:
    model: str = "org/UME-R1-2B"


def result(task: TaskMeta) -> TaskResult:
    chance = {task.metric: 0.5, "num_pred": 2, "num_data": 2}
    return TaskResult(task, {"disc-disc": SCORE, "chance": chance}, {"disc-disc": [1.0, 0.0], "chance": [0.5, 0.5]})


def test_write_reports_passes_the_metadata_and_skips_minimmeb(tmp_path):
    mmeb, mini = select_tasks(["ImageNet-1K"])[0], select_tasks(benchmark="minimmeb")[0]
    write_reports(tmp_path / "both", Cfg(), [mmeb, mini], [result(mmeb), result(mini)], [], meta=META)
    written = json.loads((tmp_path / "both" / "leaderboard_disc-disc.json").read_text())
    assert written["metadata"]["model_backbone"] == "qwen2_vl"
    assert written["metrics"]["image"]["ImageNet-1K"] == SCORE
    assert not (tmp_path / "both" / "leaderboard_chance.json").exists()
    write_reports(tmp_path / "default", Cfg(), [mmeb], [result(mmeb)], [])
    default = json.loads((tmp_path / "default" / "leaderboard_disc-disc.json").read_text())["metadata"]
    assert default["model_name"] == "org/UME-R1-2B" and default["model_backbone"] is None
    write_reports(tmp_path / "mini", Cfg(), [mini], [result(mini)], [])
    assert (tmp_path / "mini" / "report.json").exists() and not list((tmp_path / "mini").glob("leaderboard_*"))


# --- comparison and plots, from summaries shaped as write_reports writes them --------------------------------
MINI = select_tasks(benchmark="minimmeb")
ZERO_KEY = MINI[0].meta_key  # gen-gen scores 0 on every task of the first meta-task


def summary(tasks=MINI, model="/models/ume-demo-sft", qry="gen", samples=4, limit=8) -> dict[str, Any]:
    gen = {t.name: 0.0 if t.meta_key == ZERO_KEY else 10.0 + i for i, t in enumerate(tasks)}
    disc = {t.name: 20.0 + i for i, t in enumerate(tasks)}
    chance = {t.name: 5.0 for t in tasks}
    se = {t.name: 3.0 for t in tasks}
    scores = {"gen-gen": gen, "disc-disc": disc} if qry == "gen" else {"disc-disc": disc}
    runs = {lab: {"tasks": s, "aggregate": aggregate(s, MINI, se)} for lab, s in scores.items()}
    runs["chance"] = {"tasks": chance, "aggregate": aggregate(chance, MINI)}
    cfg = {"model": model, "qry_mode": qry, "tgt_mode": qry, "samples": samples, "oracle": False, "limit": limit,
           "pool_limit": None, "benchmark": "minimmeb", "tasks": [], "modality": None, "meta_task": None}
    missing = {t.name: "not found" for t in MINI if t not in tasks}
    return {"model": model, "config": cfg, "runs": runs, "scored": len(tasks), "selected": len(MINI),
            "missing": missing, "errors": 0,
            "tasks": {t.name: {"modality": t.modality, "meta_task": t.meta_key, "metric": t.metric} for t in MINI},
            "passk": {t.name: {"1": 0.1, "2": 0.2, "4": 0.1 * (i % 5) + 0.2} for i, t in enumerate(tasks)}
            if samples > 1 else {}}


def test_compare_keeps_errors_settings_and_task_counts(tmp_path):
    partial = summary(MINI[1:], model="/m/other", qry="disc", samples=1, limit=None)
    for name, s in {"a": summary(), "b": partial}.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "report.json").write_text(json.dumps(s))
    rows = {r.split("|")[1].strip(): [c.strip() for c in r.split("|")[2:-1]]
            for r in compare([tmp_path / "a", tmp_path / "b"]).splitlines() if r.startswith("| ")}
    assert rows["group"] == ["a:gen-gen", "a:disc-disc", "a:chance", "b:disc-disc", "b:chance"]
    assert rows["*model*"] == ["ume-demo-sft"] * 3 + ["other"] * 2
    assert rows["*qry/tgt*"] == ["gen/gen", "disc/disc", "random ranking", "disc/disc", "random ranking"]
    assert rows["*samples (pass@k)*"] == ["4", "4", "–", "1", "–"]
    assert rows["*queries/task*"] == ["first 8"] * 3 + ["all"] * 2
    assert rows["*tasks scored*"] == ["13/13 minimmeb"] * 3 + ["12/13 minimmeb"] * 2
    key, mod = MINI[0].meta_key, MINI[0].modality
    of = sum(t.meta_key == key for t in MINI)
    assert rows[key][0] == f"0.0 ± {3 / np.sqrt(of):.1f} ({of})"  # a zero score keeps its error and count
    assert rows[key][1].startswith("20.5 ± 2.1") and rows[key][2] == f"5.0 ({of})"  # chance: exact, no ±
    assert rows[key][3].endswith(f"({of - 1}/{of})")  # the partial run says so in every group it touches
    assert all("±" in rows[g][c] for g in (key, f"**{mod}**", "**overall**") for c in (0, 1, 3))
    assert rows["**overall**"][3].endswith("(12/13)") and rows["**overall**"][4] == "5.0 (12/13)"
    text = compare([tmp_path / "a", tmp_path / "b"])
    assert f"b: 1 of 13 selected task(s) missing: {MINI[0].name}" in text


def png_size(path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def test_plots_write_both_pngs(tmp_path):
    import sys

    written = plots(tmp_path, summary())
    assert [Path(p).name for p in written] == ["meta_tasks.png", "passk.png"]
    for p in written:
        w, h = png_size(Path(p))
        assert 800 <= w <= 2500 and 400 <= h <= 800 and 20_000 < Path(p).stat().st_size < 1_000_000
    assert "matplotlib.pyplot" not in sys.modules  # Agg canvases only: the caller's backend is left alone


def test_meta_task_figure_draws_errors_chance_and_zero():
    from matplotlib.container import BarContainer, ErrorbarContainer

    s = summary()
    keys = list(s["runs"]["gen-gen"]["aggregate"]["meta_task"])
    ax = meta_task_figure(s).axes[0]
    bars = [c for c in ax.containers if isinstance(c, BarContainer)]
    assert [len(b) for b in bars] == [len(keys)] * 2  # gen-gen, disc-disc; chance is no bar
    errors = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    for err, lab in zip(errors, ("gen-gen", "disc-disc"), strict=True):
        tops = [seg[1][1] for seg in err.lines[2][0].get_segments()]
        agg = s["runs"][lab]["aggregate"]["meta_task"]
        assert tops == pytest.approx([agg[k]["mean"] + agg[k]["se"] for k in keys])
    assert min(seg[0][1] for seg in errors[0].lines[2][0].get_segments()) == 0  # never below 0
    drawn = {c.get_gid(): c.get_segments() for c in ax.collections if c.get_gid()}
    chance = s["runs"]["chance"]["aggregate"]["meta_task"]
    assert [seg[0][1] for seg in drawn["chance"]] == [chance[k]["mean"] for k in keys]
    assert len(drawn["zero"]) == 1 and drawn["zero"][0][0][1] == 0  # the zero bar keeps a visible stub
    assert len(ax.texts) == 2 * len(keys) and ax.texts[0].get_text() == "0.0"
    title = ax.get_title()
    assert all(w in title for w in ("ume-demo-sft", "qry gen / tgt gen", "samples 4", "first 8 queries/task",
                                    "13/13 tasks (minimmeb)"))
    assert ax.get_legend() is None and len(ax.figure.legends) == 1  # the legend sits outside the axes


@pytest.mark.parametrize("bench", ["minimmeb", "mmeb-v2"])
def test_passk_figure_curves_ticks_and_mean(bench):
    tasks = select_tasks(benchmark=bench)
    s = summary()
    s["tasks"] = {t.name: {"modality": t.modality, "meta_task": t.meta_key, "metric": t.metric} for t in tasks}
    s["passk"] = {t.name: {"1": 0.1, "2": 0.2, "4": 0.1 * (i % 5) + 0.2} for i, t in enumerate(tasks)}
    ax = passk_figure(s).axes[0]
    lines = ax.get_lines()
    curves = len(tasks) if len(tasks) <= PASSK_PER_TASK else len({t.meta_key for t in tasks})
    assert len(lines) == curves + 1
    mean = next(ln for ln in lines if ln.get_gid() == "mean")
    assert mean.get_linewidth() > max(ln.get_linewidth() for ln in lines if ln is not mean)
    last = np.mean([0.1 * (i % 5) + 0.2 for i in range(len(tasks))])
    assert list(mean.get_ydata()) == pytest.approx([0.1, 0.2, last])
    assert list(ax.get_xticks()) == [1, 2, 4] and [t.get_text() for t in ax.get_xticklabels()] == ["1", "2", "4"]
    assert ax.yaxis.get_major_formatter()(0.5, 0) == "50%" and "coverage" in ax.get_ylabel()
    assert len({ln.get_color() + ln.get_linestyle() for ln in lines}) == len(lines)  # every curve distinct
    assert ax.get_legend() is None and len(ax.figure.legends) == 1
