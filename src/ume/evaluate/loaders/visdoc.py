"""Visual-document retrieval in BEIR layout (`vidore`, `visrag`; global ranking, graded qrels)."""

from __future__ import annotations

from pathlib import Path

from ume.evaluate.loaders.common import EvalQuery, RowError, TaskData, find_table, get, read_table
from ume.evaluate.tasks import TaskMeta
from ume.inputs import Item

QUERY_PREFIX = "Find a document image that matches the given query:"
DOC_TEXT = "<|image_pad|> Understand the content of the provided document image."


def load_visdoc_task(task: TaskMeta, root: Path) -> TaskData:
    data = TaskData(task)
    base = root / "visdoc" / task.name
    docs: dict[str, Item] = {}
    for i, row in enumerate(read_table(find_table(base, ("corpus",), task.name), task.name)):
        try:
            cid = str(get(row, "corpus-id", (str, int)))
            image = base / get(row, "image", str)
            if not image.is_file():
                raise RowError(f"page image not found: {image}")
            docs.setdefault(cid, Item(text=DOC_TEXT, images=[str(image)]))
        except RowError as e:
            data.row_error(f"corpus:{i}", str(e))
    grades: dict[str, dict[str, int]] = {}
    for i, row in enumerate(read_table(find_table(base, ("qrels",), task.name), task.name)):
        try:
            qid, cid = str(get(row, "query-id", (str, int))), str(get(row, "corpus-id", (str, int)))
            score = int(get(row, "score", (int, float)))
        except RowError as e:
            data.row_error(f"qrels:{i}", str(e))
            continue
        if score > 0:  # the reference keeps score > 0 and the max over duplicate pairs
            per_query = grades.setdefault(qid, {})
            per_query[cid] = max(per_query.get(cid, 0), score)
    for name, item in docs.items():
        data.add_candidate(name, item)
    for i, row in enumerate(read_table(find_table(base, ("queries",), task.name), task.name)):
        try:
            qid = str(get(row, "query-id", (str, int)))
            text = get(row, "query", str)
            rel = grades.get(qid)
            if not rel:
                raise RowError(f"query {qid!r} has no relevant document in qrels")
            missing = [c for c in rel if c not in docs]
            if missing:
                raise RowError(f"query {qid!r}: relevant document(s) {missing[:3]} have no page image")
        except RowError as e:
            data.row_error(f"queries:{i}", str(e))
            continue
        data.queries.append(EvalQuery(Item(text=f"{QUERY_PREFIX} {text}"), labels=list(rel),
                                      rel_scores=list(rel.values()), info={"query_id": qid}))
    return data
