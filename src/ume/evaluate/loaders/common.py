"""What every loader returns, and the table / field helpers that make their errors precise."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ume.evaluate.tasks import TaskMeta
from ume.inputs import Item

TABLE_SUFFIXES = (".parquet", ".jsonl")


class LoaderError(ValueError):
    """A task cannot be loaded at all (missing annotation file, unsupported loader)."""


class RowError(ValueError):
    """One row is malformed; the loader records it and goes on with the others."""


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
    """A loaded task: queries, the candidate pool deduplicated by name (first wins), row errors."""

    task: TaskMeta
    queries: list[EvalQuery] = field(default_factory=list)
    pool: dict[str, Item] = field(default_factory=dict)
    errors: list[dict[str, Any]] = field(default_factory=list)

    def add_candidate(self, name: str, item: Item) -> None:
        self.pool.setdefault(name, item)

    def row_error(self, row: int | str, reason: str, field_name: str | None = None) -> None:
        where = f"task {self.task.name}: row {row}" + (f": field {field_name!r}" if field_name else "")
        self.errors.append({"task": self.task.name, "row": row, "field": field_name,
                            "reason": f"{where}: {reason}"})


def find_table(directory: Path, stems: tuple[str, ...], task: str) -> Path:
    """The first `<stem>.parquet|.jsonl` (or `<stem>-*.parquet` shard) in `directory`."""
    for stem in stems:
        for suffix in TABLE_SUFFIXES:
            path = directory / f"{stem}{suffix}"
            if path.is_file():
                return path
        shards = sorted(directory.glob(f"{stem}-*.parquet"))
        if shards:
            return shards[0]
    tried = ", ".join(f"{s}{x}" for s in stems for x in TABLE_SUFFIXES)
    raise LoaderError(f"task {task}: annotation file not found in {directory} (tried {tried})")


def read_table(path: Path, task: str) -> list[dict[str, Any]]:
    """Rows of a parquet (all shards of the same stem) or JSONL table."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        stem = path.name.split("-")[0] if "-" in path.name else path.stem
        shards = sorted(path.parent.glob(f"{stem}-*.parquet")) or [path]
        rows: list[dict[str, Any]] = []
        for shard in shards:
            rows += pq.read_table(shard).to_pylist()
        return rows
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                rows.append({"__error__": f"{path.name}:{n}: invalid JSON ({e.msg})"})
    return rows


def get(row: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    """A required field of a given type, or a RowError naming the field."""
    if "__error__" in row:
        raise RowError(row["__error__"])
    if name not in row or row[name] is None:
        raise RowError(f"missing field {name!r}")
    value = row[name]
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise RowError(f"field {name!r} should be {names}, got {type(value).__name__}")
    return value


def existing(path: Path, what: str) -> Path:
    if not path.exists():
        raise RowError(f"{what} not found: {path}")
    return path
