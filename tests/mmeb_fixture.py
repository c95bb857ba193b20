"""A miniature MMEB-V2 in the trees and schemas the official repos publish, for every one of the 78 tasks.

`build_mmeb_tree(ROOT)` writes what a user has after `huggingface-cli download <owner>/<repo> --repo-type dataset
--local-dir ROOT/<owner>/<repo>` for each repo of the task registry, plus TIGER-Lab/MMEB-V2's media unpacked as
TIGER-AI-Lab/VLM2Vec `experiments/public/data/download_data.sh` unpacks them. Nothing here is written by ume's
own code: file names, configs, column names and types copy the published repos (each block cites what it
copies; the research notes behind it list the URLs read). Where a repo's card was not available its upstream
is copied (the VLM2Vec video repos are copies of friedrichor/*, lmms-lab/* and OpenGVLab/MVBench), and the
columns are those the reference loader reads (`src/data/eval_dataset/<loader>_dataset.py`).
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

MEDIA = "TIGER-Lab/MMEB-V2"
IMAGE_REPO = "ziyjiang/MMEB_Test_Instruct"
MVBENCH = ("episodic_reasoning", "action_sequence", "action_prediction", "action_antonym", "fine_grained_action",
           "unexpected_action", "object_existence", "object_interaction", "object_shuffle", "moving_direction",
           "action_localization", "scene_transition", "action_count", "moving_count", "moving_attribute",
           "state_change", "fine_grained_pose", "character_order", "egocentric_navigation", "counterfactual_inference")
# The parquet schema metadata `datasets` writes for an HF `Image` column (what push_to_hub leaves in the files).
IMAGE_FEATURE = {"_type": "Image"}


# --- writers --------------------------------------------------------------------------------------------
def _colour(seed: str) -> tuple[int, int, int]:
    h = sum(ord(c) * (i + 7) for i, c in enumerate(seed))  # stable across processes (hash() is salted)
    return (h % 251, (h // 7) % 241, (h // 13) % 239)


def image(path: Path, seed: str, size: tuple[int, int] = (40, 32)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.new("RGB", size, _colour(seed))
    img.save(path, format="JPEG" if path.suffix.lower() in (".jpg", ".jpeg") else "PNG")


def image_bytes(seed: str, fmt: str = "PNG", size: tuple[int, int] = (48, 64)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, _colour(seed)).save(buf, format=fmt)
    return buf.getvalue()


def frames(directory: Path, n: int, names: str = "frame_{:04d}.jpg", start: int = 1) -> None:
    """`n` frames; the default names are those the reference's ffmpeg `save_frames` writes (frame_%04d.jpg)."""
    for i in range(n):
        image(directory / names.format(i + start), f"{directory}/{i}", size=(32, 32))


def jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def json_array(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows, indent=2), encoding="utf-8")


def parquet(path: Path, rows: list[dict[str, Any]], schema: pa.Schema | None = None,
            features: dict[str, Any] | None = None) -> None:
    """A parquet file as `datasets` writes one; `features` adds its `huggingface` schema metadata."""
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(rows, schema=schema)
    if features is not None:
        meta = {b"huggingface": json.dumps({"info": {"features": features}}).encode()}
        table = table.replace_schema_metadata(meta)
    pq.write_table(table, path)


def readme(path: Path, configs: list[tuple[str, list[tuple[str, str]]]]) -> None:
    """A dataset card whose YAML `configs:` maps each config's splits to file patterns, as the hub's cards do."""
    lines = ["---", "configs:"]
    for name, splits in configs:
        lines += [f"- config_name: {name}", "  data_files:"]
        lines += [f"  - split: {split}\n    path: {pattern}" for split, pattern in splits]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([*lines, "---", "", "Fixture copy of the published layout.", ""]), encoding="utf-8")


# --- image tasks: ziyjiang/MMEB_Test_Instruct + TIGER-Lab/MMEB-V2 image-tasks/ ---------------------------------
# Layout copied from the same author's sibling repos (ziyjiang/MMEB_5K, EmbVision/MMEB_Test_5K: push_to_hub
# `<Task>/test-0000k-of-0000N.parquet`, README `configs: [{config_name: <Task>, data_files: [{split: test,
# path: <Task>/test-*}]}]`); columns: the six the image loaders read (qry_inst, qry_text, qry_img_path,
# tgt_inst, tgt_text list[str], tgt_img_path list[str]); image paths are relative to image-tasks/.
IMAGE_SCHEMA = pa.schema([("qry_inst", pa.string()), ("qry_text", pa.string()), ("qry_img_path", pa.string()),
                          ("tgt_inst", pa.string()), ("tgt_text", pa.list_(pa.string())),
                          ("tgt_img_path", pa.list_(pa.string()))])
TWO_SHARDS = ("EDIS", "WebQA")  # EmbVision/MMEB_Test_5K/tree/main/EDIS: test-00000-of-00002 + test-00001-of-00002


def image_rows(task: str, loader: str, media: Path) -> list[dict[str, Any]]:
    rows = []
    for r in range(2):
        def img(name: str, r: int = r) -> str:
            rel = f"{task}/{name}_{r}.jpg"
            image(media / "image-tasks" / rel, f"{task}{name}{r}")
            return rel

        if loader in ("image_cls", "image_qa", "image_i2t"):
            inst = {"image_cls": "<|image_1|> Represent the given image for classification\n",
                    "image_qa": "<|image_1|> Represent the given image with the following question:",
                    "image_i2t": "<|image_1|> Find an image caption describing the given everyday image.\n"}[loader]
            text = f"What is in picture {r}? \n" if loader == "image_qa" else ""
            rows.append({"qry_inst": inst, "qry_text": text, "qry_img_path": img("q"), "tgt_inst": "",
                         "tgt_text": [f"{task} label {r}", f"{task} other {r}", f"{task} third"],
                         "tgt_img_path": ["", "", ""]})
        elif loader == "image_t2i":
            captions = [f"caption {k} of {task}" for k in range(3)] if task in TWO_SHARDS else ["", "", ""]
            rows.append({"qry_inst": "Find me an everyday image that matches the given caption:",
                         "qry_text": f"A scene number {r}.", "qry_img_path": "",
                         "tgt_inst": "<|image_1|> Represent the given image.", "tgt_text": captions,
                         "tgt_img_path": [img(f"t{k}") for k in range(3)]})
        else:  # image_i2i_vg
            same = img("t")
            paths = [same] * 3 if task == "RefCOCO-Matching" else [img(f"t{k}") for k in range(3)]
            captions = ['"the left one"', '"the middle one"', '"the right one"'] if task == "RefCOCO-Matching" \
                else ["", "", ""]
            rows.append({"qry_inst": "<|image_1|> Given an image, find a similar everyday image with the described "
                                     "changes:", "qry_text": f"make it brighter {r}", "qry_img_path": img("q"),
                         "tgt_inst": "<|image_1|> Represent the given image.\n", "tgt_text": captions,
                         "tgt_img_path": paths})
    return rows


def write_image_repo(root: Path, tasks: list[tuple[str, str]]) -> None:
    repo, media = root / IMAGE_REPO, root / MEDIA
    for task, loader in tasks:
        rows = image_rows(task, loader, media)
        if task in TWO_SHARDS:
            for k in range(2):
                parquet(repo / task / f"test-0000{k}-of-00002.parquet", rows[k:k + 1], IMAGE_SCHEMA)
        else:
            parquet(repo / task / "test-00000-of-00001.parquet", rows, IMAGE_SCHEMA)
    readme(repo / "README.md", [(t, [("test", f"{t}/test-*")]) for t, _ in tasks])


# --- video tasks -----------------------------------------------------------------------------------------
def _frames_root(root: Path) -> Path:
    return root / MEDIA / "video-tasks" / "frames"


def write_video_repo(root: Path, task: str) -> None:
    """One branch per published repo."""
    fr = _frames_root(root)
    if task in ("K700", "HMDB51", "UCF101", "Breakfast", "SmthSmthV2"):
        # VLM2Vec/{Kinetics-700,HMDB51,UCF101,SmthSmthV2}: data/train.jsonl + data/test.jsonl ("update configs"
        # commits); rows {video_id, pos_text} (+ neg_text, the option list, for SSv2).
        repo = {"K700": "Kinetics-700"}.get(task, task)
        sub = {"K700": "K700", "SmthSmthV2": "SSv2"}.get(task, task)
        labels = {"K700": ["waiting_in_line", "fly_tying"], "HMDB51": ["ride_bike", "wave"],
                  "UCF101": ["Kayaking", "PlayingDaf"], "Breakfast": ["pancake", "cereal"],
                  "SmthSmthV2": ["Closing something", "Opening something"]}[task]
        rows = []
        for k, label in enumerate(labels):
            vid = f"{task.lower()}_{k}"
            frames(fr / "video_cls" / sub / vid, 12 if k == 0 else 5)  # >8 frames sampled, <8 kept whole
            row: dict[str, Any] = {"video_id": vid, "pos_text": label}
            if task == "SmthSmthV2":
                row = {"video_id": 100 + k, "pos_text": label, "neg_text": [*labels, "Pushing something"]}
                frames(fr / "video_cls" / sub / str(100 + k), 8)
            rows.append(row)
        if task == "SmthSmthV2":  # only the first 1,000 rows count (video.yaml num_sample_per_subset)
            rows = [rows[k % 2] for k in range(1003)]
            rows[1000] = {"video_id": 999999, "pos_text": "never read", "neg_text": ["x"]}
        base = root / "VLM2Vec" / repo
        jsonl(base / "data" / "test.jsonl", rows)
        jsonl(base / "data" / "train.jsonl", [{"video_id": "train_0", "pos_text": labels[0]}])
        readme(base / "README.md", [("default", [("train", "data/train.jsonl"), ("test", "data/test.jsonl")])])
    elif task == "MSR-VTT":
        # friedrichor/MSR-VTT (copied as VLM2Vec/MSR-VTT): configs train_9k/train_7k/test_1k -> msrvtt_*.json
        base = root / "VLM2Vec" / "MSR-VTT"
        rows = [{"video_id": f"video{7020 + k}", "video": f"video{7020 + k}.mp4", "caption": f"a man sings {k}"}
                for k in range(2)]
        for r in rows:
            frames(fr / "video_ret" / "MSR-VTT" / r["video_id"], 9)
        json_array(base / "msrvtt_test_1k.json", rows)
        json_array(base / "msrvtt_train_9k.json", [{"video_id": "video1", "video": "video1.mp4", "caption": "x"}])
        readme(base / "README.md", [("train_9k", [("train", "msrvtt_train_9k.json")]),
                                    ("test_1k", [("test", "msrvtt_test_1k.json")])])
    elif task == "MSVD":
        # VLM2Vec/MSVD: one root file msvd_test.json (blob/main/msvd_test.json); captions are lists
        rows = [{"video_id": f"fr9H1WLcF1A_{k}", "video": f"fr9H1WLcF1A_{k}.avi",
                 "caption": [f"two men play table tennis {k}", "men play"]} for k in range(2)]
        for r in rows:
            frames(fr / "video_ret" / "MSVD" / r["video_id"], 8)
        json_array(root / "VLM2Vec" / "MSVD" / "msvd_test.json", rows)
    elif task == "DiDeMo":
        # VLM2Vec/DiDeMo (commit 265dc6a): didemo_test.json, didemo_train.json, raw_data/, raw_videos/, README
        base = root / "VLM2Vec" / "DiDeMo"
        rows = [{"video": f"raw_videos/10015567@N08_365508429{k}_d8b58466fa.mp4", "caption": f"a dog jumps {k}"}
                for k in range(2)]
        for r in rows:
            frames(fr / "video_ret" / "DiDeMo" / Path(r["video"]).stem, 8)
        json_array(base / "didemo_test.json", rows)
        json_array(base / "didemo_train.json", rows[:1])
        json_array(base / "raw_data" / "didemo_test.json", [{"unrelated": "raw annotations"}])
        readme(base / "README.md", [("default", [("train", "didemo_train.json"), ("test", "didemo_test.json")])])
    elif task == "YouCook2":
        # lmms-lab/YouCook2 (README: data/val-*, data/test-*; val 3179, test 1471 rows); the task uses split val
        base = root / "lmms-lab" / "YouCook2"
        schema = pa.schema([("id", pa.string()), ("video_url", pa.string()), ("recipe_type", pa.string()),
                            ("segment", pa.list_(pa.float32())), ("sentence", pa.string()),
                            ("video_path", pa.string()), ("youtube_id", pa.string())])

        def yc(split: str, k: int) -> dict[str, Any]:
            return {"id": f"{split}_{k}", "video_url": "https://www.youtube.com/watch?v=x", "recipe_type": "113",
                    "segment": [1.0, 9.0], "sentence": f"add the onions {split} {k}",
                    "video_path": f"validation/113/x_{k}.mp4", "youtube_id": "x"}
        for k in range(3):
            frames(fr / "video_ret" / "YouCook2" / f"val_{k}", 8)
        parquet(base / "data" / "val-00000-of-00001.parquet", [yc("val", k) for k in range(3)], schema)
        parquet(base / "data" / "test-00000-of-00001.parquet", [yc("test", 0)], schema)
        readme(base / "README.md", [("default", [("val", "data/val-*"), ("test", "data/test-*")])])
    elif task == "VATEX":
        # lmms-lab/VATEX (copied as VLM2Vec/VATEX): config vatex_test -> vatex_test/test-*; videoID, enCap list
        base = root / "VLM2Vec" / "VATEX"
        rows = [{"videoID": f"G9zN5TTuGO4_00017{k}_000{k}", "enCap": [f"a woman cooks {k}", "cooking"]}
                for k in range(2)]
        for r in rows:
            frames(fr / "video_ret" / "VATEX" / r["videoID"], 8)
        parquet(base / "vatex_test" / "test-00000-of-00001.parquet", rows)
        readme(base / "README.md", [("vatex_test", [("test", "vatex_test/test-*")])])
    elif task == "NExTQA":
        # lmms-lab/NExTQA (copied as VLM2Vec/NExTQA): MC/test-00000-of-00001.parquet (+ OE); answer = index
        base = root / "VLM2Vec" / "NExTQA"
        rows = [{"video": 4010069381 + k, "frame_count": 300, "width": 640, "height": 480,
                 "question": f"why did the boy run {k}", "answer": k, "qid": k, "type": "CW",
                 **{f"a{j}": f"option {j}" for j in range(5)}} for k in range(2)]
        for r in rows:
            frames(fr / "video_qa" / "NExTQA" / str(r["video"]), 8, "{:04d}.jpeg", 0)  # the QA loaders' own names
        parquet(base / "MC" / "test-00000-of-00001.parquet", rows)
        parquet(base / "OE" / "test-00000-of-00001.parquet", [{"video": 1, "question": "q", "answer": "a"}])
        readme(base / "README.md", [("MC", [("test", "MC/test-*")]), ("OE", [("test", "OE/test-*")])])
    elif task == "EgoSchema":
        # lmms-lab/egoschema (copied as VLM2Vec/EgoSchema): configs GENERATION, MC, MC_PPL, Subset
        base = root / "VLM2Vec" / "EgoSchema"
        rows = [{"question_idx": f"q{k}", "question": f"What is C doing {k}?", "video_idx": f"vid-{k}",
                 "option": ["A. cooking.", "B. cleaning.", "C. reading", "D. writing.", "E. sleeping."],
                 "answer": str(k)} for k in range(2)]
        for r in rows:
            frames(fr / "video_qa" / "EgoSchema" / r["video_idx"], 8, "{:04d}.jpeg", 0)
        parquet(base / "Subset" / "test-00000-of-00001.parquet", rows)
        parquet(base / "MC" / "test-00000-of-00001.parquet", rows)
        readme(base / "README.md", [("MC", [("test", "MC/test-*")]), ("Subset", [("test", "Subset/test-*")])])
    elif task == "MVBench":
        # OpenGVLab/MVBench (copied as VLM2Vec/MVBench): json/<task>.json arrays, one config each, split train
        base = root / "VLM2Vec" / "MVBench"
        for c in MVBENCH:
            rows = [{"video": f"{c}_clip.mp4", "question": f"What happens in {c}?",
                     "candidates": ["it moves", "it stops", "it spins"], "answer": "it stops"}]
            frames(fr / "video_qa" / "MVBench" / c / rows[0]["video"], 8, "{:04d}.jpeg", 0)
            json_array(base / "json" / f"{c}.json", rows)
        readme(base / "README.md", [(c, [("train", f"json/{c}.json")]) for c in MVBENCH])
    elif task == "Video-MME":
        # lmms-lab/Video-MME (copied as VLM2Vec/Video-MME): config videomme -> videomme/test-*
        base = root / "VLM2Vec" / "Video-MME"
        rows = [{"video_id": f"00{k}", "duration": "short", "domain": "Knowledge", "sub_category": "Humanity",
                 "url": "https://www.youtube.com/watch?v=x", "videoID": f"fFjv93ACGo{k}", "question_id": f"00{k}-1",
                 "task_type": "Counting Problem", "question": f"How many people appear {k}?",
                 "options": ["A. 1.", "B. 2.", "C. 3.", "D. 4."], "answer": "BC"[k]} for k in range(2)]
        for r in rows:
            frames(fr / "video_qa" / "Video-MME" / r["videoID"], 8, "{:04d}.jpeg", 0)
        parquet(base / "videomme" / "test-00000-of-00001.parquet", rows)
        readme(base / "README.md", [("videomme", [("test", "videomme/test-*")])])
    elif task == "ActivityNetQA":
        # VLM2Vec/ActivityNetQA README: data/test-*; video_name, question_id, question, answer, type (all str)
        base = root / "VLM2Vec" / "ActivityNetQA"
        rows = [{"video_name": f"OtWlsnsj4{k}", "question_id": f"v_OtWlsnsj4{k}_1", "question": f"is he outdoors {k}",
                 "answer": "yes" if k == 0 else "no", "type": "3"} for k in range(2)]
        for r in rows:
            frames(fr / "video_qa" / "ActivityNetQA" / f"v_{r['video_name']}", 8, "{:04d}.jpeg", 0)
        parquet(base / "data" / "test-00000-of-00001.parquet", rows)
        readme(base / "README.md", [("default", [("test", "data/test-*")])])
    elif task in ("QVHighlight", "Charades-STA"):
        # VLM2Vec/{QVHighlight,Charades-STA}: rows {query, video_path} (moment_retrieval_datasets.py); frames at
        # video_mret/<yaml dir>/<stem>/query/ + one clip dir per candidate, the positive's name starts "positive"
        sub = {"Charades-STA": "Charades_STA"}.get(task, task)
        base = root / "VLM2Vec" / task
        rows = [{"query": f"a person opens the door {k}", "video_path": f"AO8RW_{k}.mp4"} for k in range(2)]
        for r in rows:
            vdir = fr / "video_mret" / sub / Path(r["video_path"]).stem
            frames(vdir / "query", 10)
            for clip in ("positive_clip", "negative_clip_0", "negative_clip_1"):
                frames(vdir / clip, 8)
            (vdir / "note.txt").write_text("files beside the clip directories are skipped")
        if task == "QVHighlight":
            parquet(base / "data" / "test-00000-of-00001.parquet", rows)
        else:
            jsonl(base / "test.jsonl", rows)
    elif task == "MomentSeeker":
        # VLM2Vec/MomentSeeker: rows {query, input_frames, positive_frames[{output_path}], negative_frames[...]};
        # clip frames at video_mret/MomentSeeker/video_frames/<output_path, "/" -> "_", no .mp4>/ (issue #99 names
        # one: videos_ego_19_334.00_338.00); image queries at video_mret/MomentSeeker/query_<input_frames>
        base = root / "VLM2Vec" / "MomentSeeker"
        ms = fr / "video_mret" / "MomentSeeker"
        rows = []
        for k, source in enumerate(["", "images/movie101_77/frame_173.jpg", "videos/ego_19_300.00_330.00.mp4"]):
            pos = [f"videos/ego_19_334.00_338.0{k}.mp4", f"videos/ego_19_340.00_344.0{k}.mp4"]
            neg = [f"videos/ego_19_{k}0.00_{k}4.00.mp4"]
            for p in pos + neg:
                frames(ms / "video_frames" / p.replace("/", "_").split(".mp4")[0], 4)
            rows.append({"query": f"the person picks up a cup {k}", "input_frames": source,
                         "positive_frames": [{"output_path": p} for p in pos],
                         "negative_frames": [{"output_path": p} for p in neg]})
        image(ms / "query_images/movie101_77/frame_173.jpg", "ms-query")
        frames(ms / "video_frames" / "videos_ego_19_300.00_330.00", 6)
        jsonl(base / "data" / "test.jsonl", rows)
    else:
        raise KeyError(task)


# --- visdoc tasks --------------------------------------------------------------------------------------------
# vidore/*_beir (e.g. arxivqa_test_subsampled_beir README): configs corpus / qrels / queries -> <cfg>/test-*;
# corpus-id int64 + image (HF Image), query-id int64 + query, score float64 (arxivqa, shiftproject, synthetic*)
# or int64 (docvqa, tabfquad, infovqa). ViDoRe-V2 (vidore/*_v2, mteb's Vidore2 loaders): queries add `language`.
# openbmb/VisRAG-Ret-Test-*: split train, corpus in 3 shards (train-0000k-of-00003.parquet), corpus-id strings
# like "2010.05458_3.jpg". VLM2Vec/ViDoSeek README: ids int64, queries add corpus_range (list[int64]), graded.
def write_visdoc_repo(root: Path, task: str, repo: str, split: str) -> None:
    base = root / repo
    visrag = repo.startswith("openbmb/")
    v2 = repo.startswith("vidore/") and repo.endswith("_v2")
    n_docs = 5

    def cid(k: int) -> Any:
        return f"{task[7:17]}.0{k}_{k}.jpg" if visrag else 1000 + k

    docs = [{"corpus-id": cid(k), "image": {"bytes": image_bytes(f"{task}{k}", "JPEG" if visrag else "PNG"),
                                            "path": None}} for k in range(n_docs)]
    graded = task in ("ViDoRe_esg_reports_human_labeled_v2", "ViDoSeek-doc")
    qrels = [{"query-id": q, "corpus-id": cid(q), "score": 2 if graded else 1} for q in range(3)]
    qrels += [{"query-id": 0, "corpus-id": cid(3), "score": 1}, {"query-id": 1, "corpus-id": cid(4), "score": 0}]
    if task == "ViDoRe_arxivqa":
        qrels.append({"query-id": 0, "corpus-id": cid(0), "score": 1})  # a duplicate pair: the max grade is kept
    float_scores = task in ("ViDoRe_arxivqa", "ViDoRe_shiftproject") or task.startswith("ViDoRe_synthetic")
    for q in qrels:
        q["query-id"] = f"q{q['query-id']}" if visrag else q["query-id"]
        q["score"] = float(q["score"]) if float_scores else q["score"]
    queries: list[dict[str, Any]] = [{"query-id": f"q{q}" if visrag else q, "query": f"What does page {q} say?"}
                                     for q in range(3)]
    if v2:
        for q, lang in zip(queries, ["english", "french", "german"], strict=True):
            q["language"] = lang
    if repo.startswith("VLM2Vec/ViDoSeek") or repo.startswith("VLM2Vec/MMLongBench"):
        for q in queries:
            q["corpus_range"] = [1000, 1004]
    corpus_schema = pa.schema([("corpus-id", pa.string() if visrag else pa.int64()),
                               ("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())]))])
    features = {"corpus-id": {"dtype": "string" if visrag else "int64", "_type": "Value"}, "image": IMAGE_FEATURE}
    if visrag:  # three corpus shards
        for k, chunk in enumerate([docs[:2], docs[2:4], docs[4:]]):
            parquet(base / "corpus" / f"{split}-0000{k}-of-00003.parquet", chunk, corpus_schema, features)
    else:
        parquet(base / "corpus" / f"{split}-00000-of-00001.parquet", docs, corpus_schema, features)
    parquet(base / "queries" / f"{split}-00000-of-00001.parquet", queries)
    parquet(base / "qrels" / f"{split}-00000-of-00001.parquet", qrels)
    if task == "VisRAG_ChartQA":  # openbmb/VisRAG-Ret-Test-ChartQA/tree/main/qrels also holds a TSV
        (base / "qrels" / "chartqa-eval-qrels.tsv").write_text("q0\t0\tx\t1\n")
    if task == "MMLongBench-doc":  # VLM2Vec/MMLongBench-doc has a stray root queries.jsonl
        jsonl(base / "queries.jsonl", [{"unrelated": 1}])
    readme(base / "README.md", [(c, [(split, f"{c}/{split}-*")]) for c in ("corpus", "qrels", "queries")])


# --- the whole tree ------------------------------------------------------------------------------------------
def build_mmeb_tree(root: Path, tasks: Iterable[str] | None = None) -> Path:
    """Every selected MMEB-V2 task (default: all 78) as published, under `root`."""
    from ume.evaluate.tasks import select_tasks

    selected = select_tasks(list(tasks or ()), benchmark="mmeb-v2")
    write_image_repo(root, [(t.name, t.loader) for t in selected if t.modality == "image"])
    for t in selected:
        if t.modality == "video":
            write_video_repo(root, t.name)
        elif t.modality == "visdoc":
            write_visdoc_repo(root, t.name, t.source, t.split)
    return root


def pack_media(media: Path, out: Path) -> Path:
    """TIGER-Lab/MMEB-V2 as downloaded (before unpacking): the archives download_data.sh extracts, built from an
    unpacked tree. mmeb_v1.tar.gz holds MMEB/<Task>/, video_cls / video_ret hold the dataset directories
    (extracted with -C), video_mret holds video_mret/, and video_qa is one gzip tar split into five parts."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "image-tasks").mkdir()
    frames_out = out / "video-tasks" / "frames"
    frames_out.mkdir(parents=True)

    def tar(path: Path, members: list[tuple[Path, str]]) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as t:
            for src, arc in members:
                t.add(src, arcname=arc)
        path.write_bytes(buf.getvalue())
        return buf.getvalue()

    img = media / "image-tasks"
    tar(out / "image-tasks" / "mmeb_v1.tar.gz", [(p, f"MMEB/{p.name}") for p in sorted(img.iterdir())])
    fr = media / "video-tasks" / "frames"
    for group in ("video_cls", "video_ret"):
        tar(frames_out / f"{group}.tar.gz", [(p, p.name) for p in sorted((fr / group).iterdir())])
    tar(frames_out / "video_mret.tar.gz", [(fr / "video_mret", "video_mret")])
    blob = tar(frames_out / "video_qa.tar.gz", [(fr / "video_qa", "video_qa")])
    (frames_out / "video_qa.tar.gz").unlink()
    step = len(blob) // 5 + 1
    for k in range(5):
        (frames_out / f"video_qa.tar.gz-0{k}").write_bytes(blob[k * step:(k + 1) * step])
    return out
