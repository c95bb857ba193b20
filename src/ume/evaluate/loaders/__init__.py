"""Loaders: rows of a task's repos -> queries, candidate pool and ground truth (MMEB-V2 and MiniMMEB alike).

Where the files are is `ume.evaluate.sources`' business; a loader only turns rows into items, chosen from one
table by the task's `loader` name.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ume.evaluate.loaders.common import PROTOCOLS, EvalQuery, LoadContext, LoaderError, Protocol, TaskData
from ume.evaluate.loaders.image import IMAGE_LOADERS
from ume.evaluate.loaders.video import VIDEO_LOADERS
from ume.evaluate.loaders.visdoc import VISDOC_LOADERS
from ume.evaluate.sources import Sources
from ume.evaluate.tasks import TaskMeta

__all__ = ["LOADERS", "PROTOCOLS", "EvalQuery", "LoadContext", "LoaderError", "Protocol", "TaskData", "load_task"]

# the one table from a task's `loader` name to its loader; a new loader is a function and its entry here
LOADERS: dict[str, Callable[[TaskMeta, LoadContext], TaskData]] = {**IMAGE_LOADERS, **VIDEO_LOADERS,
                                                                  **VISDOC_LOADERS}


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
