"""Writing eval tasks in the exact on-disk layouts of docs/data-layout.md (what the MMEB-V2 loaders read).

image  -> ROOT/MMEB_Test_Instruct/<Task>/test.jsonl + ROOT/MMEB-V2/image-tasks/<Task>/...
video  -> ROOT/video-annotations/<Task>/test.jsonl + ROOT/MMEB-V2/video-tasks/frames/<group>/<Task>/<video_id>/
visdoc -> ROOT/visdoc/<Task>/{queries,corpus,qrels}.jsonl + pages/
Every task also gets ROOT/scenes/<Task>.jsonl: the ground-truth spec of each query, in query order.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ume.synth.docpage import render_page
from ume.synth.example import Example, Side
from ume.synth.files import save_media, save_png, write_jsonl
from ume.synth.registry import doc_groups, item_examples
from ume.synth.tasks import MiniTask

IMAGE_ROOT = "MMEB-V2/image-tasks"
FRAME_ROOT = "MMEB-V2/video-tasks/frames"
IMAGE_TOKEN = "<|image_1|>\n"  # MMEB-V1 style; the loaders strip it (and the "\n" through their " \n" rule)


def _mmeb_inst(inst: str, side: Side) -> str:
    return IMAGE_TOKEN + inst if side.media is not None and inst else inst


def _image_rows(root: Path, task: MiniTask, items: Iterable[tuple[int, Example]]) -> Iterable[dict[str, Any]]:
    media_root = root / IMAGE_ROOT

    def path(i: int, side: Side) -> str:
        return "" if side.media is None else str(save_media(side.media, media_root, f"{task.name}/{i:05d}_"
                                                                                     f"{side.media.name}"))

    for i, ex in items:
        cands = [ex.positive, *ex.negatives]
        yield {"qry_inst": _mmeb_inst(task.qry_inst, ex.query), "qry_text": ex.query.text,
               "qry_img_path": path(i, ex.query), "tgt_inst": _mmeb_inst(task.tgt_inst, ex.positive),
               "tgt_text": [s.text for s in cands], "tgt_img_path": [path(i, s) for s in cands]}


def _video_rows(root: Path, task: MiniTask, items: Iterable[tuple[int, Example]]) -> Iterable[dict[str, Any]]:
    frames = root / FRAME_ROOT / task.group / task.name
    for i, ex in items:
        vid = f"vid{i:05d}"
        if task.loader == "moment_retrieval":
            for side in (ex.query, ex.positive, *ex.negatives):
                save_media(side.media, frames / vid, side.media.name)
            yield {"video": vid, "video_path": f"{vid}.mp4", "query": ex.query.text}
            continue
        visual = ex.query.media or ex.positive.media
        save_media(visual, frames, vid)
        if task.loader == "video_classification":
            yield {"video_id": vid, "pos_text": ex.positive.text}
        elif task.loader == "msrvtt":
            yield {"video_id": vid, "video": f"{vid}.mp4", "caption": ex.query.text}
        else:  # nextqa
            options = ex.extra["options"]
            yield {"video": vid, "question": ex.extra["question"], **{f"a{k}": o for k, o in enumerate(options)},
                   "answer": ex.extra["answer"], "qid": i, "type": ex.extra["type"]}


def _write_items(root: Path, task: MiniTask, seed: int, n: int) -> int:
    specs: list[dict[str, Any]] = []

    def items() -> Iterable[tuple[int, Example]]:
        for i, (key, ex) in enumerate(item_examples(task, task.split, seed, n)):
            specs.append({"index": i, "seed_key": key, "spec": ex.spec})
            yield i, ex

    if task.modality == "image":
        count = write_jsonl(root / "MMEB_Test_Instruct" / task.name / "test.jsonl", _image_rows(root, task, items()))
    else:
        count = write_jsonl(root / "video-annotations" / task.name / "test.jsonl", _video_rows(root, task, items()))
    write_jsonl(root / "scenes" / f"{task.name}.jsonl", specs)
    return count


def _write_visdoc(root: Path, task: MiniTask, seed: int, n: int) -> int:
    tdir = root / "visdoc" / task.name
    queries, corpus, qrels, specs = [], [], [], []
    for key, group in doc_groups(task, task.split, seed, n):
        ids = []
        for page in group.pages:
            cid = f"d{len(corpus):05d}"
            save_png(render_page(page), tdir / "pages" / f"{cid}.png")
            corpus.append({"corpus-id": cid, "image": f"pages/{cid}.png"})
            ids.append(cid)
        for q in group.queries:
            qid = f"q{len(queries):05d}"
            queries.append({"query-id": qid, "query": q.text})
            qrels += [{"query-id": qid, "corpus-id": ids[k], "score": g} for k, g in sorted(q.relevant.items())]
            specs.append({"query-id": qid, "seed_key": key, "spec": {
                "query": q.spec, "pages": {cid: page.spec() for cid, page in zip(ids, group.pages, strict=True)}}})
    write_jsonl(tdir / "queries.jsonl", queries)
    write_jsonl(tdir / "corpus.jsonl", corpus)
    write_jsonl(tdir / "qrels.jsonl", qrels)
    write_jsonl(root / "scenes" / f"{task.name}.jsonl", specs)
    return len(queries)


def write_task(root: Path, task: MiniTask, seed: int, n: int) -> int:
    """Write one eval task with n queries; returns the number of queries written."""
    if task.modality == "visdoc":
        return _write_visdoc(root, task, seed, n)
    return _write_items(root, task, seed, n)
