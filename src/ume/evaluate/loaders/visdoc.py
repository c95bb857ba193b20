"""Visual-document retrieval in BEIR layout (`vidore`, `visrag`; global ranking, graded qrels).

Follows TIGER-AI-Lab/VLM2Vec `src/data/eval_dataset/{vidore,visrag}_dataset.py`: configs `queries`, `qrels`
and `corpus` of the task's repo and split; qrels keep score > 0 and the max over duplicate pairs
(`load_qrels_mapping`); the candidate pool is each query's relevant pages in query order, then the corpus
(first occurrence wins). Page images are the HF `Image` structs of the corpus rows: their bytes go to the
model as they are (the reference re-saves them as PNG first, which keeps the pixels).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ume.evaluate.loaders.common import EvalQuery, LoadContext, RowError, TaskData, get, input_text
from ume.evaluate.tasks import TaskMeta
from ume.inputs import Item

QUERY_INSTRUCTION = "Find a document image that matches the given query:"
DOC_INSTRUCTION = "Understand the content of the provided document image."
# UME-R1's own copy of the vidore loader uses the ColPali setting, no instruction on either side (the
# commented-out alternative in the VLM2Vec file); its visrag loader keeps VLM2Vec's strings.
PROMPTS = {("vlm2vec", "vidore"): (QUERY_INSTRUCTION, DOC_INSTRUCTION), ("ume-r1", "vidore"): ("", "")}


def instructions(protocol: str, loader: str) -> tuple[str, str]:
    """(query instruction, page instruction) of a visdoc loader under a prompt protocol."""
    return PROMPTS.get((protocol, loader), (QUERY_INSTRUCTION, DOC_INSTRUCTION))


def load_visdoc_task(task: TaskMeta, ctx: LoadContext) -> TaskData:
    data = TaskData(task)
    # the protocol is about MMEB-V2; MiniMMEB's training pairs carry VLM2Vec's strings, so its eval does too
    qry_inst, doc_inst = instructions(ctx.protocol if task.benchmark == "mmeb-v2" else "vlm2vec", task.loader)
    doc_text = input_text(doc_inst, image=True)
    snap = ctx.sources.snapshot(task.source)
    docs: dict[str, Item] = {}
    for i, row in enumerate(data.rows(ctx, config="corpus")):
        try:
            cid = str(get(row, "corpus-id", (str, int)))
            docs.setdefault(cid, Item(text=doc_text, images=[_page(get(row, "image", (dict, str)), snap.path)]))
        except RowError as e:
            data.row_error(f"corpus:{i}", str(e))
    grades: dict[str, dict[str, int]] = {}
    for i, row in enumerate(data.rows(ctx, config="qrels")):
        try:
            qid, cid = str(get(row, "query-id", (str, int))), str(get(row, "corpus-id", (str, int)))
            score = get(row, "score", (int, float))
        except RowError as e:
            data.row_error(f"qrels:{i}", str(e))
            continue
        if score > 0:
            per_query = grades.setdefault(qid, {})
            per_query[cid] = max(per_query.get(cid, 0), int(score))
    for i, row in enumerate(data.rows(ctx, config="queries")):
        try:
            qid = str(get(row, "query-id", (str, int)))
            if task.subset is not None and row.get("language") != task.subset:  # English-only ViDoRe-V2 variants
                continue
            text = get(row, "query", str)
            rel = grades.get(qid)
            if not rel:
                raise RowError(f"query {qid!r} has no relevant document in qrels")
            missing = [c for c in rel if c not in docs]
            if missing:
                raise RowError(f"query {qid!r}: relevant document(s) {missing[:3]} are not in the corpus")
        except RowError as e:
            data.row_error(f"queries:{i}", str(e))
            continue
        for cid in rel:
            data.add_candidate(cid, docs[cid])
        data.queries.append(EvalQuery(Item(text=input_text(qry_inst, text)), labels=list(rel),
                                      rel_scores=list(rel.values()), info={"query_id": qid, "row": f"queries:{i}"}))
    for cid, item in docs.items():
        data.add_candidate(cid, item)
    return data


def _page(image: dict[str, Any] | str, repo_dir: Path) -> bytes | str:
    """A page of an HF `Image` column: its bytes, else its file (relative to the repo)."""
    if isinstance(image, dict) and image.get("bytes"):
        return bytes(image["bytes"])
    path = image.get("path") if isinstance(image, dict) else image
    if not path:
        raise RowError("field 'image' holds neither bytes nor a path")
    file = Path(path) if Path(path).is_absolute() else repo_dir / path
    if not file.is_file():
        raise RowError(f"page image not found: {file}")
    return str(file)


VISDOC_LOADERS = dict.fromkeys(("vidore", "visrag"), load_visdoc_task)
