"""What every loader returns, and the helpers that keep loaders byte-identical to the reference and their
errors precise."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ume.evaluate.sources import LoaderError, Sources
from ume.evaluate.tasks import TaskMeta
from ume.inputs import Item, sample_indices

__all__ = ["EvalQuery", "LoadContext", "LoaderError", "RowError", "TaskData"]

IMAGE_TOKEN = "<|image_pad|>"
VIDEO_TOKEN = "<|video_pad|>"
Protocol = Literal["ume-r1", "vlm2vec"]
PROTOCOLS: tuple[Protocol, ...] = ("ume-r1", "vlm2vec")


class RowError(ValueError):
    """One row is malformed; the loader records it and goes on with the others."""


@dataclass
class LoadContext:
    """What a loader needs besides its task: where the files are, and which prompt set to use
    (`ume-r1`: UME-R1's own eval strings; `vlm2vec`: the VLM2Vec harness's)."""

    sources: Sources
    protocol: Protocol = "ume-r1"


@dataclass
class EvalQuery:
    """A query with its ground truth; `cand_names` is its own candidate list for local ranking."""

    item: Item
    labels: list[str]
    cand_names: list[str] | None = None
    rel_scores: list[int] | None = None
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class TaskData:
    """A loaded task: queries, the candidate pool deduplicated by name (first wins), row errors, and a record
    of every table read (repo, revision, files, rows)."""

    task: TaskMeta
    queries: list[EvalQuery] = field(default_factory=list)
    pool: dict[str, Item] = field(default_factory=dict)
    errors: list[dict[str, Any]] = field(default_factory=list)
    provenance: list[dict[str, Any]] = field(default_factory=list)
    notes: dict[str, int] = field(default_factory=dict)  # counts of reference quirks reproduced, by name

    def add_candidate(self, name: str, item: Item) -> None:
        self.pool.setdefault(name, item)

    def row_error(self, row: int | str, reason: str, field_name: str | None = None) -> None:
        where = f"task {self.task.name}: row {row}" + (f": field {field_name!r}" if field_name else "")
        self.errors.append({"task": self.task.name, "row": row, "field": field_name,
                            "reason": f"{where}: {reason}"})

    def tag_rows(self, row: int | str) -> None:
        """Record in `info["row"]` which row the queries added since the last call came from (so an encoding
        failure can name its row)."""
        for q in reversed(self.queries):
            if "row" in q.info:
                break
            q.info["row"] = row

    def add_rows(self, rows: list[dict[str, Any]], add: Callable[[dict[str, Any]], None]) -> None:
        """Each row through `add`; a RowError is that row's error (named by task and row), never the task's."""
        for i, row in enumerate(rows):
            try:
                add(row)
            except RowError as e:
                self.row_error(i, str(e))
            self.tag_rows(i)

    def note(self, what: str) -> None:
        self.notes[what] = self.notes.get(what, 0) + 1

    def rows(self, ctx: LoadContext, config: str | None = None, repo: str | None = None) -> list[dict[str, Any]]:
        """The task's rows (its own repo/config/split unless told), recorded in `provenance`."""
        task = self.task
        table = ctx.sources.table(repo or task.source, config if config is not None else task.subset,
                                  task.split, task.name, task.max_rows)
        self.provenance.append(table.record)
        # a row that is not an object (a JSON number or list line) becomes that row's error, never a crash
        return [r if isinstance(r, dict) else {"__error__": f"not a JSON object (got {type(r).__name__})"}
                for r in table.rows]


def input_text(instruction: str, text: str | None = None, image: bool = False, video: bool = False) -> str:
    """The reference's `process_input_text` for Qwen2-VL (VLM2Vec `src/model/processor.py`): the instruction,
    `" " + text` when there is text, then the video and image tokens prepended, each followed by a space."""
    prompt = instruction
    if text:
        prompt = f"{prompt} {text}"
    if video:
        prompt = f"{VIDEO_TOKEN} {prompt}"
    if image:
        prompt = f"{IMAGE_TOKEN} {prompt}"
    return prompt


def get(row: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    """A required field of a given type, or a RowError naming the field."""
    if "__error__" in row:
        raise RowError(row["__error__"])
    if name not in row or row[name] is None:
        raise RowError(f"missing field {name!r}")
    value = row[name]
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _kinds(kind)):
        names = "/".join(k.__name__ for k in _kinds(kind))
        raise RowError(f"field {name!r} should be {names}, got {type(value).__name__}")
    return value


def _kinds(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def existing(path: Path, what: str) -> Path:
    if not path.exists():
        raise RowError(f"{what} not found: {path}")
    return path


FRAME_SUFFIXES = (".jpg", ".jpeg", ".png")  # VLM2Vec vision_utils.IMAGE_EXTENSIONS
NUM_FRAMES = 8  # num_frames / num_video_frames / num_clip_frames of every task in video.yaml


def _natural_key(name: str) -> list[Any]:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def frame_files(directory: Path, what: str = "frame directory") -> list[str]:
    """Every frame of a directory, as the reference's `load_frames` lists them: files ending in .jpg, .jpeg or
    .png (any case), natural-sorted with digit runs as numbers and text lower-cased. None is a RowError (the
    reference would try to extract frames from a raw video that MMEB-V2 does not ship)."""
    if not directory.is_dir():
        raise RowError(f"{what} not found: {directory}")
    names = sorted((n for n in os.listdir(directory) if os.path.splitext(n)[1].lower() in FRAME_SUFFIXES),
                   key=_natural_key)
    if not names:
        raise RowError(f"{what} holds no .jpg/.jpeg/.png frame: {directory}")
    return [str(directory / n) for n in names]


def sampled_frames(directory: Path, what: str = "frame directory", num_frames: int = NUM_FRAMES) -> list[str]:
    """`process_video_frames(dir, num_frames)`: `linspace(0, n-1, k).astype(int)` of the listed frames, all of
    them when there are fewer than k."""
    frames = frame_files(directory, what)
    return [frames[i] for i in sample_indices(len(frames), num_frames)]
