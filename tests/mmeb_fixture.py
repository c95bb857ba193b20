"""Small MMEB-V2 fixtures in the exact published layouts (see docs/data-layout.md)."""

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image


def jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def png(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (32, 32), "white").save(path)


def frames(directory: Path, n: int = 3) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.new("RGB", (28, 28), (i * 40, 0, 0)).save(directory / f"frame_{i:04d}.jpg")


def build_mmeb_fixture(r: Path) -> Path:
    """A few rows of several tasks in the published layouts."""
    media = r / "MMEB-V2" / "image-tasks"
    for p in ["imagenet/q0.jpg", "coco/a.jpg", "coco/b.jpg", "cirr/q.jpg", "cirr/t0.jpg", "cirr/t1.jpg"]:
        png(media / p)
    inst = "<|image_1|> Represent the given image for classification"
    table = pa.table({"qry_inst": [inst], "qry_text": [""], "qry_img_path": ["imagenet/q0.jpg"],
                      "tgt_inst": [""], "tgt_text": [["tench", "goldfish", "tench"]], "tgt_img_path": [["", "", ""]]})
    (r / "MMEB_Test_Instruct" / "ImageNet-1K").mkdir(parents=True)
    pq.write_table(table, r / "MMEB_Test_Instruct" / "ImageNet-1K" / "test-00000-of-00001.parquet")
    jsonl(r / "MMEB_Test_Instruct" / "ChartQA" / "test.jsonl", [
        {"qry_inst": "<|image_1|> Represent the given image with the following question:", "qry_text": "How many?",
         "qry_img_path": "imagenet/q0.jpg", "tgt_inst": "", "tgt_text": ["3", "4"], "tgt_img_path": ["", ""]},
        {"qry_inst": "x", "qry_text": "y", "qry_img_path": "nope.jpg", "tgt_inst": "", "tgt_text": ["1"],
         "tgt_img_path": [""]},
        {"qry_inst": "x", "qry_img_path": "imagenet/q0.jpg", "tgt_inst": "", "tgt_text": ["1"], "tgt_img_path": [""]},
    ])
    jsonl(r / "MMEB_Test_Instruct" / "MSCOCO_t2i" / "test.jsonl", [
        {"qry_inst": "Find me an everyday image that matches the given caption:", "qry_text": "A dog.",
         "qry_img_path": "", "tgt_inst": "<|image_1|> Represent the given image.", "tgt_text": [""],
         "tgt_img_path": ["coco/a.jpg", "coco/b.jpg"]},
        {"qry_inst": "Find me an everyday image that matches the given caption:", "qry_text": "A cat.",
         "qry_img_path": "", "tgt_inst": "<|image_1|> Represent the given image.", "tgt_text": [""],
         "tgt_img_path": ["coco/b.jpg", "coco/a.jpg"]},
    ])
    jsonl(r / "MMEB_Test_Instruct" / "CIRR" / "test.jsonl", [
        {"qry_inst": "<|image_1|> Given an image, find a similar everyday image with the described changes:",
         "qry_text": "make it red", "qry_img_path": "cirr/q.jpg", "tgt_inst": "<|image_1|> Represent the given image.",
         "tgt_text": ["", ""], "tgt_img_path": ["cirr/t0.jpg", "cirr/t1.jpg"]},
    ])
    vroot = r / "MMEB-V2" / "video-tasks" / "frames"
    for vid in ["v1", "v2"]:
        frames(vroot / "video_cls" / "K700" / vid)
        frames(vroot / "video_ret" / "MSR-VTT" / vid)
        frames(vroot / "video_qa" / "NExTQA" / vid)
    jsonl(r / "video-annotations" / "K700" / "test.jsonl",
          [{"video_id": "v1", "pos_text": "dancing"}, {"video_id": "v2", "pos_text": "running"},
           {"video_id": "v3", "pos_text": "x"}])
    jsonl(r / "video-annotations" / "MSR-VTT" / "test.jsonl",
          [{"video_id": "v1", "video": "v1.mp4", "caption": "a man sings"},
           {"video_id": "v2", "video": "v2.mp4", "caption": "a dog runs"}])
    jsonl(r / "video-annotations" / "NExTQA" / "test.jsonl",
          [{"video": "v1", "question": "what is he doing?", "a0": "sing", "a1": "run", "a2": "sit", "a3": "eat",
            "a4": "cry", "answer": 2}])
    mret = vroot / "video_mret" / "QVHighlight" / "vid1"
    for sub in ["query", "positive_0", "negative_0", "negative_1"]:
        frames(mret / sub, 2)
    jsonl(r / "video-annotations" / "QVHighlight" / "test.jsonl", [{"video": "vid1", "query": "a man cooks"}])
    doc = r / "visdoc" / "ViDoRe_esg_reports_human_labeled_v2"
    for c in ["c1", "c2", "c3"]:
        png(doc / "images" / f"{c}.png")
    jsonl(doc / "corpus.jsonl", [{"corpus-id": c, "image": f"images/{c}.png"} for c in ["c1", "c2", "c3", "c4"]])
    jsonl(doc / "queries.jsonl", [{"query-id": "q1", "query": "emissions 2021"}, {"query-id": "q2", "query": "x"}])
    jsonl(doc / "qrels.jsonl", [{"query-id": "q1", "corpus-id": "c2", "score": 2},
                                {"query-id": "q1", "corpus-id": "c1", "score": 1},
                                {"query-id": "q1", "corpus-id": "c2", "score": 1},
                                {"query-id": "q1", "corpus-id": "c3", "score": 0},
                                {"query-id": "q2", "corpus-id": "c4", "score": 1}])
    return r
