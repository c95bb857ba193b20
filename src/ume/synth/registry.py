"""Which generator makes which task, and the item streams every writer (eval, train, preview) draws from.

All randomness flows through `item_rng(seed, split, task_id, index)`, so the same (seed, split, task,
index) always yields the same item, whichever writer asks for it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial

import numpy as np

from ume.synth.doc_tasks import DocGroup, report, table_series
from ume.synth.docpage import render_page
from ume.synth.example import Example, Media, Side
from ume.synth.img_captions import caps_t2i, count_i2t
from ume.synth.img_cls import majority, shapes
from ume.synth.img_edit import edit
from ume.synth.img_ref import ref
from ume.synth.img_vqa import vqa
from ume.synth.rng import item_rng, seed_key
from ume.synth.scene import Policy
from ume.synth.tasks import TASK_IDS, VISDOC_QUERY, VISDOC_TARGET, MiniTask
from ume.synth.vid_tasks import events_cls, moment, track_qa, vid_ret

ItemGenerator = Callable[[np.random.Generator, MiniTask, Policy], Example]
GroupGenerator = Callable[[np.random.Generator, int], DocGroup]

ITEM_GENERATORS: dict[str, ItemGenerator] = {
    "MiniShapes": shapes, "MiniMajority": majority, "MiniVQA": vqa, "MiniCaps_t2i": caps_t2i,
    "MiniCount_i2t": count_i2t, "MiniEdit": edit, "MiniRef": ref, "MiniEvents": events_cls,
    "MiniTrackQA": track_qa, "MiniVidRet": vid_ret, "MiniMoment": moment,
}
GROUP_GENERATORS: dict[str, GroupGenerator] = {"MiniDocTable": table_series, "MiniDocReport": report}


def item_examples(task: MiniTask, split: str, seed: int, n: int) -> Iterator[tuple[list[int], Example]]:
    """n examples with their seed keys. An example whose `extra["unique"]` repeats an earlier one (a
    global pool cannot hold two right answers) is redrawn from the same stream."""
    gen = ITEM_GENERATORS[task.base]
    policy = Policy(holdout=task.split == "holdout")
    seen = set()
    for i in range(n):
        rng = item_rng(seed, split, TASK_IDS[task.base], i)
        ex = gen(rng, task, policy)
        while ex.extra.get("unique") is not None and ex.extra["unique"] in seen:
            ex = gen(rng, task, policy)
        if ex.extra.get("unique") is not None:
            seen.add(ex.extra["unique"])
        yield seed_key(seed, split, TASK_IDS[task.base], i), ex


def doc_groups(task: MiniTask, split: str, seed: int, n_queries: int) -> Iterator[tuple[list[int], DocGroup]]:
    """Groups until n_queries queries exist; the last group's queries are cut to fit."""
    gen = GROUP_GENERATORS[task.base]
    made, g = 0, 0
    while made < n_queries:
        group = gen(item_rng(seed, split, TASK_IDS[task.base], g), g)
        group.queries = group.queries[:n_queries - made]
        made += len(group.queries)
        yield seed_key(seed, split, TASK_IDS[task.base], g), group
        g += 1


def doc_examples(task: MiniTask, split: str, seed: int, n: int) -> Iterator[tuple[list[int], Example]]:
    """Training pairs from document groups: each query with its best-graded page."""
    for key, group in doc_groups(task, split, seed, n):
        for q in group.queries:
            k = max(q.relevant, key=lambda j: (q.relevant[j], -j))
            page = Media("image", f"page{k}", partial(render_page, group.pages[k]))
            yield key, Example(
                spec={"query": q.spec, "page": group.pages[k].spec()},
                query=Side(VISDOC_QUERY, q.text, None, q.think, q.answer),
                positive=Side(VISDOC_TARGET, "", page, group.page_think[k], group.page_answer[k]),
            )


def examples(task: MiniTask, split: str, seed: int, n: int) -> Iterator[tuple[list[int], Example]]:
    """Query/positive pairs of any task (documents flattened to one pair per query)."""
    if task.base in GROUP_GENERATORS:
        return doc_examples(task, split, seed, n)
    return item_examples(task, split, seed, n)
