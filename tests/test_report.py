"""The leaderboard JSON matches VLM2Vec's experiments/report_score_v2.py and its published score files."""

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest

from ume.evaluate.metrics import mean_metrics, query_metrics
from ume.evaluate.report import LeaderboardMeta, leaderboard, write_reports
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
