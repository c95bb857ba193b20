"""Loaders: rows of a task's repos -> queries, candidate pool and ground truth (MMEB-V2 and MiniMMEB alike).

Where the files are is `ume.evaluate.sources`' business; a loader only turns rows into items, chosen from one
table by the task's `loader` name.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ume.evaluate.loaders.common import PROTOCOLS, EvalQuery, LoadContext, LoaderError, Protocol, TaskData
from ume.evaluate.loaders.image import load_image_task
from ume.evaluate.loaders.video import load_video_task
from ume.evaluate.loaders.visdoc import load_visdoc_task
from ume.evaluate.sources import Sources
from ume.evaluate.tasks import TaskMeta

__all__ = ["LOADERS", "PROTOCOLS", "EvalQuery", "LoadContext", "LoaderError", "Protocol", "TaskData", "load_task"]

LOADERS: dict[str, Callable[[TaskMeta, LoadContext], TaskData]] = {
    **dict.fromkeys(("image_cls", "image_qa", "image_t2i", "image_i2t", "image_i2i_vg"), load_image_task),
    **dict.fromkeys(("video_classification", "ssv2", "msrvtt", "msvd", "didemo", "youcook2", "vatex", "nextqa",
                     "mvbench", "videomme", "egoschema", "activitynetqa", "moment_retrieval", "momentseeker"),
                    load_video_task),
    **dict.fromkeys(("vidore", "visrag"), load_visdoc_task),
}


def load_task(task: TaskMeta, where: LoadContext | Sources | str | Path | None = None) -> TaskData:
    """Load one task. `where`: a LoadContext, Sources, a data root (a tree of `<owner>/<repo>` snapshots,
    see docs/data-layout.md) or None (the Hugging Face hub cache)."""
    if isinstance(where, LoadContext):
        ctx = where
    else:
        ctx = LoadContext(where if isinstance(where, Sources) else Sources(None if where is None else Path(where)))
    if task.loader not in LOADERS:
        raise LoaderError(f"task {task.name}: no loader named {task.loader!r}")
    return LOADERS[task.loader](task, ctx)
