"""MMEB-V2 loaders on small fixtures written in the published layouts (docs/data-layout.md)."""

from pathlib import Path

import pytest

from ume.evaluate.loaders import LoaderError, load_task
from ume.evaluate.tasks import QA_PROMPT, TaskMeta, select_tasks


def task(name: str) -> TaskMeta:
    return select_tasks([name])[0]


def test_registry_matches_the_spec_csv():
    tasks = select_tasks(benchmark="mmeb-v2")
    assert len(tasks) == 78
    assert len(select_tasks(benchmark="mmeb-v2-image")) == 36
    assert len(select_tasks(benchmark="mmeb-v2-video")) == 18
    assert len(select_tasks(benchmark="mmeb-v2-visdoc")) == 24
    spec = Path(__file__).resolve().parents[2] / "shared" / "spec" / "mmeb-v2-tasks.csv"
    if spec.exists():  # the packaged copy must stay identical to the spec
        from importlib import resources

        packaged = resources.files("ume.evaluate").joinpath("mmeb_v2_tasks.csv").read_text()
        assert packaged == spec.read_text()
    k700 = task("K700")
    assert (k700.ranking, k700.metric, k700.meta_task) == ("global", "hit@1", "CLS")
    assert k700.loader == "video_classification"
    assert task("Breakfast").instruction.endswith("video. ")  # the trailing space is part of the prompt
    assert task("ViDoRe_arxivqa").metric == "ndcg_linear@5" and task("CIRR").ranking == "local"
    assert task("VisRAG_ChartQA").split == "train"
    mret = select_tasks(benchmark="mmeb-v2", meta_task="video/MRET")
    assert [t.name for t in mret] == ["QVHighlight", "Charades-STA", "MomentSeeker"]
    with pytest.raises(ValueError, match="unknown task"):
        select_tasks(["NoSuchTask"])


def test_image_cls_parquet_and_dedup(mmeb_root):
    data = load_task(task("ImageNet-1K"), mmeb_root)
    q = data.queries[0]
    assert q.item.text == "<|image_pad|>  Represent the given image for classification\n"  # no " " + empty text
    assert q.item.images == [str(mmeb_root / "MMEB-V2/image-tasks/imagenet/q0.jpg")]
    assert q.cand_names == ["tench", "goldfish", "tench"] and q.labels == ["tench"]
    assert list(data.pool) == ["tench", "goldfish"]  # dedup by name, first occurrence wins


def test_image_qa_strings_and_row_errors(mmeb_root):
    data = load_task(task("ChartQA"), mmeb_root)
    assert len(data.queries) == 1
    assert data.queries[0].item.text == (
        "<|image_pad|>\nRepresent the given image with the following question: How many?\n")
    reasons = [e["reason"] for e in data.errors]
    assert reasons[0].startswith("task ChartQA: row 1") and "query image not found" in reasons[0]
    assert reasons[1].startswith("task ChartQA: row 2") and "missing field 'qry_text'" in reasons[1]


def test_image_t2i_names_are_paths(mmeb_root):
    data = load_task(task("MSCOCO_t2i"), mmeb_root)
    q0 = data.queries[0]
    assert q0.item.text == "Find me an everyday image that matches the given caption: A dog.\n"
    assert q0.item.images == [] and q0.labels == ["coco/a.jpg"]
    assert list(data.pool) == ["coco/a.jpg", "coco/b.jpg"]
    assert data.pool["coco/a.jpg"].text == "<|image_pad|>  Represent the given image.\n"


def test_image_i2i_names_are_path_and_caption(mmeb_root):
    data = load_task(task("CIRR"), mmeb_root)
    assert data.queries[0].cand_names == ["cirr/t0.jpg:", "cirr/t1.jpg:"]
    assert data.pool["cirr/t0.jpg:"].text == "<|image_pad|>  Represent the given image."  # no caption: no "\n"


def test_video_classification_global_pool(mmeb_root):
    data = load_task(task("K700"), mmeb_root)
    assert data.queries[0].item.text == "<|video_pad|> Recognize the category of the video content."
    assert data.queries[0].cand_names is None and list(data.pool) == ["dancing", "running"]
    assert "frame directory not found" in data.errors[0]["reason"] and data.errors[0]["row"] == 2


def test_video_retrieval_and_qa(mmeb_root):
    ret = load_task(task("MSR-VTT"), mmeb_root)
    assert ret.queries[1].item.text == "Find a video that contains the following visual content: a dog runs"
    assert ret.queries[1].labels == ["v2"] and list(ret.pool) == ["v1", "v2"]
    assert ret.pool["v1"].text == "<|video_pad|> Understand the content of the provided video."
    qa = load_task(task("NExTQA"), mmeb_root)
    q = qa.queries[0]
    assert q.item.text == ("<|video_pad|> " + QA_PROMPT + " what is he doing?\nOptions:\n(A) sing\n(B) run\n"
                           "(C) sit\n(D) eat\n(E) cry")
    assert "Question:  what" in q.item.text  # the reference's double space
    assert q.labels == ["sit"] and q.cand_names == ["sing", "run", "sit", "eat", "cry"]


def test_moment_retrieval(mmeb_root):
    data = load_task(task("QVHighlight"), mmeb_root)
    q = data.queries[0]
    assert q.labels == ["vid1/positive_0"]
    assert q.cand_names == ["vid1/negative_0", "vid1/negative_1", "vid1/positive_0"]
    assert q.item.video.endswith("vid1/query")


def test_visdoc_graded_qrels(mmeb_root):
    data = load_task(task("ViDoRe_esg_reports_human_labeled_v2"), mmeb_root)
    assert len(data.queries) == 1
    q = data.queries[0]
    assert q.item.text == "Find a document image that matches the given query: emissions 2021"
    assert dict(zip(q.labels, q.rel_scores, strict=True)) == {"c2": 2, "c1": 1}  # max over dups; 0 dropped
    assert list(data.pool) == ["c1", "c2", "c3"]
    reasons = " ".join(e["reason"] for e in data.errors)
    assert "page image not found" in reasons and "q2" in reasons


def test_missing_annotation_file_names_the_task(mmeb_root, tmp_path):
    with pytest.raises(LoaderError, match="task VisDial: annotation file not found"):
        load_task(task("VisDial"), mmeb_root)
    with pytest.raises(LoaderError, match="data root not found"):
        load_task(task("VisDial"), tmp_path / "nowhere")
    with pytest.raises(LoaderError, match="not supported yet"):
        load_task(task("MomentSeeker"), mmeb_root)
