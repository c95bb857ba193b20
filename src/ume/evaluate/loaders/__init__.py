"""Loaders for local copies of MMEB-V2 (and MiniMMEB, which is written in the same layouts)."""

from __future__ import annotations

from pathlib import Path

from ume.evaluate.loaders.common import EvalQuery, LoaderError, TaskData
from ume.evaluate.loaders.image import load_image_task
from ume.evaluate.loaders.video import load_video_task
from ume.evaluate.loaders.visdoc import load_visdoc_task
from ume.evaluate.tasks import TaskMeta

__all__ = ["EvalQuery", "LoaderError", "TaskData", "load_task"]


def load_task(task: TaskMeta, root: str | Path) -> TaskData:
    """Load one task from `root` (see docs/data-layout.md)."""
    root = Path(root)
    if not root.is_dir():
        raise LoaderError(f"data root not found: {root}")
    if task.loader.startswith("image_"):
        return load_image_task(task, root)
    if task.loader in ("vidore", "visrag"):
        return load_visdoc_task(task, root)
    return load_video_task(task, root)
