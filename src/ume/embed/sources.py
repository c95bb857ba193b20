"""Where `ume embed` reads its items: a JSONL file, a folder of media files, parquet (image columns as HF
datasets publish them, struct {bytes, path}), or a `datasets` dataset saved with `save_to_disk`.

Every reader is lazy and cut into chunks of a fixed number of rows: `chunks()` yields one small, JSON-able
`ChunkRef` per chunk (a JSONL byte offset, a folder's file names, a table's row range) and `read(ref)` gives that
chunk's rows. One process, a torchrun rank or a Ray actor thus reads only the chunks it embeds, and memory never
grows with the corpus. `fingerprint()` identifies the input's content, so a resumed run refuses an input that
changed. A row that cannot become an item is that row's error, named by where it is (`FILE:LINE`, `FILE row N`,
a file name), and never moves another row.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from ume.inputs import (
    DEFAULT_MAX_FILE_BYTES,
    IMAGE_SUFFIXES,
    VIDEO_SUFFIXES,
    InputError,
    Item,
    check_item,
    read_bounded,
)
from ume.io import DEFAULT_MAX_LINE_BYTES, iter_json_lines

FIELDS = ("text", "image", "images", "video", "id")
TEXT_SUFFIXES = {".txt", ".md"}
BOM = b"\xef\xbb\xbf"


class SourceError(ValueError):
    """An input that cannot be read at all (missing, of no known kind, without the columns it needs)."""


@dataclass
class Row:
    """One input row: its item, or why it has none."""

    line: int | None  # the JSONL line number (None for other inputs)
    item: Item | None
    id: Any = None  # the id as written (str or int), also for rows that failed
    error: str | None = None


@dataclass(frozen=True)
class ChunkRef:
    """Rows [start, start + rows) of the input; `where` tells the reader how to find them without a scan."""

    index: int
    start: int
    rows: int
    where: Any = None

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, blob: str) -> ChunkRef:
        return cls(**json.loads(blob))


class Source(Protocol):
    kind: str
    path: Path

    def fingerprint(self) -> str: ...

    def __len__(self) -> int: ...

    def chunks(self) -> Iterator[ChunkRef]: ...

    def read(self, ref: ChunkRef) -> list[Row]: ...


def _resolve(value: Any, base: Path) -> Any:
    """Relative media paths are relative to the input's directory."""
    if isinstance(value, str) and value:
        p = Path(value)
        return str(base / p) if not p.is_absolute() else value
    if isinstance(value, list):
        return [_resolve(v, base) for v in value]
    return value


def _raw_id(value: Any) -> Any:
    if isinstance(value, dict):
        rid = value.get("id")
        if isinstance(rid, (str, int)) and not isinstance(rid, bool):
            return rid
    return None


def _labelled(where: str, rid: Any) -> str:
    return where + (f" (id={rid!r})" if rid is not None else "")


# --- JSONL ---------------------------------------------------------------------------------------------------
class JsonlSource:
    """One JSON object per line, read as `ume.io.iter_json_lines` reads it (split on "\\n" only, each line
    decoded and parsed on its own). One pass hashes the file and notes the byte offset of every chunk's first
    line, so a chunk is read from its offset, never by parsing the lines before it."""

    kind = "jsonl"

    def __init__(self, path: Path, chunk_size: int, instruction: str = "",
                 max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> None:
        self.path, self.size, self.instruction, self.max_line_bytes = path, chunk_size, instruction, max_line_bytes
        self._scan: tuple[str, int, list[tuple[int, int]]] | None = None

    def _scanned(self) -> tuple[str, int, list[tuple[int, int]]]:
        """(sha256 of the bytes, number of rows, (byte offset, line number) of each chunk's first row)."""
        if self._scan is None:
            digest, rows, starts, offset, number = hashlib.sha256(), 0, [], 0, 0
            with open(self.path, "rb") as f:
                while raw := f.readline(self.max_line_bytes + 1):
                    number += 1
                    begin = offset
                    offset += len(raw)
                    digest.update(raw)
                    is_row = True  # a line too long to read is a row: its error
                    if len(raw) > self.max_line_bytes and not raw.endswith(b"\n"):
                        while raw and not raw.endswith(b"\n"):
                            raw = f.readline(2**20)
                            offset += len(raw)
                            digest.update(raw)
                    else:
                        is_row = _has_content(raw, number)
                    if is_row:
                        if rows % self.size == 0:
                            starts.append((begin, number))
                        rows += 1
            self._scan = (digest.hexdigest(), rows, starts)
        return self._scan

    def fingerprint(self) -> str:
        return "sha256:" + self._scanned()[0]

    def __len__(self) -> int:
        return self._scanned()[1]

    def chunks(self) -> Iterator[ChunkRef]:
        _, n, starts = self._scanned()
        for c, (offset, line) in enumerate(starts):
            yield ChunkRef(c, c * self.size, min(self.size, n - c * self.size), [offset, line])

    def read(self, ref: ChunkRef) -> list[Row]:
        offset, line = ref.where
        fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        # iter_json_lines open()s what it is given: a seeked fd starts it at this chunk. From the "\n" before the
        # chunk (offset - 1), so its first "line" is that empty fragment and the BOM rule of line 1 never applies.
        os.lseek(fd, max(offset - 1, 0), os.SEEK_SET)
        shift = line - 2 if offset else 0
        rows: list[Row] = []
        for jl in iter_json_lines(fd, self.max_line_bytes):  # type: ignore[arg-type]  (an fd is what open() takes)
            if len(rows) == ref.rows:
                break
            rows.append(self._row(jl.number + shift, jl.value, jl.error))
        return rows

    def _row(self, number: int, value: Any, error: str | None) -> Row:
        where = f"{self.path.name}:{number}"
        if error is not None:
            return Row(number, None, None, f"{where}: invalid item row ({error})")
        rid = _raw_id(value)
        if isinstance(value, dict):
            value = {k: _resolve(v, self.path.parent) if k in ("image", "images", "video") else v
                     for k, v in value.items()}
            if self.instruction and not value.get("text"):
                value["text"] = self.instruction
        try:
            item = Item.from_dict(value, source=where)
        except InputError as e:
            return Row(number, None, rid, f"{_labelled(where, rid)}: invalid item row ({e})")
        return Row(number, item, rid)


def _has_content(raw: bytes, number: int) -> bool:
    """Whether `iter_json_lines` counts this line as a row (it skips lines that decode to whitespace only)."""
    line = raw.rstrip(b"\n").removesuffix(b"\r")
    if number == 1:
        line = line.removeprefix(BOM)
    try:
        return bool(line.decode("utf-8").strip())
    except UnicodeDecodeError:
        return True


# --- a folder of media files ---------------------------------------------------------------------------------
class FolderSource:
    """Images, videos and .txt/.md texts under a folder, in a fixed order (names sorted within each folder,
    files before subfolders; hidden entries skipped); ids are the relative paths. Files of other kinds are
    counted in `skipped`, not read. The fingerprint covers every name, size and modification time."""

    kind = "folder"

    def __init__(self, path: Path, chunk_size: int, instruction: str = "") -> None:
        self.path, self.size, self.instruction = path, chunk_size, instruction
        self.skipped = 0
        self._count: int | None = None
        self._digest: str | None = None

    def _walk(self) -> Iterator[tuple[str, bool]]:
        """(relative path, whether it is a file ume reads) of every non-hidden file, in the fixed order."""
        for top, dirs, files in os.walk(self.path):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(f for f in files if not f.startswith(".")):
                rel = Path(top, name).relative_to(self.path).as_posix()
                yield rel, Path(name).suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES | TEXT_SUFFIXES

    def _scanned(self) -> tuple[str, int]:
        if self._digest is None:
            from ume.evaluate.cache import media_stamp

            digest, count, skipped = hashlib.sha256(), 0, 0
            for rel, usable in self._walk():
                if not usable:
                    skipped += 1
                    continue
                digest.update(f"{rel}\t{media_stamp(self.path / rel, 'stat')}\n".encode("utf-8", "surrogatepass"))
                count += 1
            if not count:
                raise SourceError(f"{self.path}: no image, video or text file found (suffixes: "
                                  f"{', '.join(sorted(IMAGE_SUFFIXES | VIDEO_SUFFIXES | TEXT_SUFFIXES))})")
            self._digest, self._count, self.skipped = digest.hexdigest(), count, skipped
        return self._digest, self._count or 0

    def fingerprint(self) -> str:
        return "files:" + self._scanned()[0]

    def __len__(self) -> int:
        return self._scanned()[1]

    def chunks(self) -> Iterator[ChunkRef]:
        part: list[str] = []
        c = 0
        for rel, usable in self._walk():
            if not usable:
                continue
            part.append(rel)
            if len(part) == self.size:
                yield ChunkRef(c, c * self.size, len(part), part)
                part, c = [], c + 1
        if part:
            yield ChunkRef(c, c * self.size, len(part), part)

    def read(self, ref: ChunkRef) -> list[Row]:
        rows = []
        for rel in ref.where:
            path, suffix = self.path / rel, Path(rel).suffix.lower()
            try:
                if suffix in TEXT_SUFFIXES:
                    data = read_bounded(path, "text", DEFAULT_MAX_FILE_BYTES)
                    try:
                        text = data.decode("utf-8")
                    except UnicodeDecodeError as e:
                        raise InputError(f"text file is not valid UTF-8 (byte {e.start})") from None
                    item = Item(text=text, id=rel, source=rel)
                elif suffix in VIDEO_SUFFIXES:
                    item = Item(text=self.instruction, video=str(path), id=rel, source=rel)
                else:
                    item = Item(text=self.instruction, images=[str(path)], id=rel, source=rel)
                check_item(item)
            except InputError as e:
                rows.append(Row(None, None, rel, f"{rel}: invalid item ({e})"))
                continue
            rows.append(Row(None, item, rel))
        return rows


# --- tables: parquet, datasets on disk -----------------------------------------------------------------------
def _media(value: Any, base: Path) -> Any:
    """An image cell: HF's struct {bytes, path} (the bytes when present), a path, or raw bytes."""
    if isinstance(value, Mapping) and ("bytes" in value or "path" in value):
        data, path = value.get("bytes"), value.get("path")
        return bytes(data) if data else _resolve(path, base) if path else None
    if isinstance(value, str):
        return _resolve(value, base)
    return value


def _cells(value: Any) -> list[Any]:
    """A list cell (a list, or an array as Ray hands it over); a single value is a list of one."""
    return [value] if isinstance(value, (str, bytes, Mapping)) else list(value)


def table_item(values: Mapping[str, Any], where: str, base: Path, instruction: str = "") -> Item:
    """The item of one table row: `text`, `image` | `images` (cells as `_media` reads them), `video` (a path
    or a list of frames), `id`; absent fields are None. Raises InputError naming the field."""
    text = values.get("text")
    if text is not None and not isinstance(text, str):
        raise InputError(f"column 'text' should hold strings, got {type(text).__name__}")
    image, images = values.get("image"), values.get("images")
    if image is not None and images is not None:
        raise InputError("columns 'image' and 'images' both have a value; use one")
    cells = _cells(images) if images is not None else [image] if image is not None else []
    video = values.get("video")
    if video is not None:
        video = _resolve(video, base) if isinstance(video, str) else [_media(v, base) for v in _cells(video)]
    rid = values.get("id")
    if rid is not None and (isinstance(rid, bool) or not isinstance(rid, (str, int))):
        raise InputError(f"column 'id' should hold strings or integers, got {type(rid).__name__}")
    item = Item(text=text or instruction, images=[m for m in (_media(v, base) for v in cells) if m is not None],
                video=video, id=None if rid is None else str(rid), source=where)
    check_item(item)
    return item


class TableSource:
    """Rows of Arrow tables: parquet files (one, or a folder of them, in name order) read by row group, or a
    `datasets.Dataset` saved with `save_to_disk` (its memory-mapped Arrow files, sliced). `columns` maps
    ume's fields (text, image, images, video, id) to column names; a field's default column is its own name."""

    def __init__(self, path: Path, chunk_size: int, columns: Mapping[str, str] | None = None,
                 instruction: str = "") -> None:
        self.path, self.size, self.instruction = path, chunk_size, instruction
        self.kind = "dataset" if path.is_dir() and (path / "state.json").is_file() else "parquet"
        self._dataset: Any = None
        self._groups: list[tuple[Path, int, int, int]] = []  # (file, row group, first row, rows)
        self._file_starts: list[int] = []  # first row of each parquet file
        self._cached: tuple[tuple[Path, int], Any] | None = None  # the last row group read (chunks often share one)
        if self.kind == "dataset":
            import datasets

            self._dataset = datasets.load_from_disk(str(path)).with_format("arrow")
            names = list(self._dataset.column_names)
            self._files = sorted(path.glob("*.arrow"))
        else:
            import pyarrow.parquet as pq

            self._files = [path] if path.is_file() else sorted(path.glob("*.parquet"))
            first = 0
            for f in self._files:
                self._file_starts.append(first)
                meta = pq.ParquetFile(f).metadata
                for g in range(meta.num_row_groups):
                    n = meta.row_group(g).num_rows
                    self._groups.append((f, g, first, n))
                    first += n
            self._rows = first
            names = list(pq.ParquetFile(self._files[0]).schema_arrow.names)
        columns = dict(columns or {})
        missing = [f"{field}={col}" for field, col in columns.items() if col not in names]
        if missing:
            raise SourceError(f"{path}: no column {', '.join(missing)} (columns: {', '.join(names)}); fix --column")
        self.columns = {f: columns.get(f, f) for f in FIELDS if columns.get(f, f) in names}
        if not set(self.columns) & {"text", "image", "images", "video"}:
            raise SourceError(f"{path}: no text, image, images or video column (columns: {', '.join(names)}); "
                              "name yours with --column FIELD=COLUMN, e.g. --column image=page")

    def fingerprint(self) -> str:
        from ume.evaluate.cache import media_stamp

        parts = [f"{f.name}:{media_stamp(f, 'sample')}" for f in self._files]
        if self.kind == "dataset":
            parts += [(self.path / n).read_text() for n in ("state.json", "dataset_info.json")
                      if (self.path / n).is_file()]
        parts.append(json.dumps(self.columns, sort_keys=True))
        return self.kind + ":" + hashlib.sha256("\n".join(parts).encode()).hexdigest()

    def __len__(self) -> int:
        return len(self._dataset) if self._dataset is not None else self._rows

    def chunks(self) -> Iterator[ChunkRef]:
        n = len(self)
        for c, start in enumerate(range(0, n, self.size)):
            yield ChunkRef(c, start, min(self.size, n - start))

    def _table(self, start: int, stop: int) -> Any:
        if self._dataset is not None:
            return self._dataset[start:stop]
        import pyarrow as pa
        import pyarrow.parquet as pq

        parts = []
        for f, g, first, n in self._groups:
            if first + n <= start or first >= stop:
                continue
            if self._cached is None or self._cached[0] != (f, g):
                table = pq.ParquetFile(f).read_row_group(g, columns=list(dict.fromkeys(self.columns.values())))
                self._cached = ((f, g), table)
            lo, hi = max(start, first) - first, min(stop, first + n) - first
            parts.append(self._cached[1].slice(lo, hi - lo))
        return pa.concat_tables(parts)

    def _where(self, index: int) -> str:
        if self._dataset is not None:
            return f"{self.path.name} row {index}"
        k = bisect.bisect_right(self._file_starts, index) - 1
        return f"{self._files[k].name} row {index - self._file_starts[k]}"

    def read(self, ref: ChunkRef) -> list[Row]:
        table = self._table(ref.start, ref.start + ref.rows)
        cols = {field: table.column(col).to_pylist() for field, col in self.columns.items()}
        rows = []
        for j in range(ref.rows):
            values = {field: cells[j] for field, cells in cols.items()}
            rid = values.get("id") if isinstance(values.get("id"), (str, int)) else None
            where = self._where(ref.start + j)
            try:
                rows.append(Row(None, table_item(values, where, self._files[0].parent, self.instruction), rid))
            except InputError as e:
                rows.append(Row(None, None, rid, f"{_labelled(where, rid)}: invalid item row ({e})"))
        return rows


def open_source(path: str | Path, chunk_size: int, columns: Mapping[str, str] | None = None,
                instruction: str = "", max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> Source:
    """The reader for `path`: a `.parquet` file or a folder holding only parquet files; a `save_to_disk`
    folder (state.json); another folder: its media files; any other file: JSONL."""
    path = Path(path)
    if not path.exists():
        raise SourceError(f"input not found: {path}")
    if path.is_dir():
        if (path / "dataset_dict.json").is_file():
            splits = json.loads((path / "dataset_dict.json").read_text()).get("splits", [])
            raise SourceError(f"{path} is a DatasetDict (splits: {', '.join(splits)}); pass one split's folder, "
                              f"e.g. {path / (splits or ['train'])[0]}")
        top = [p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")]
        if (path / "state.json").is_file() or (top and all(p.suffix == ".parquet" for p in top)):
            return TableSource(path, chunk_size, columns, instruction)
        if columns:
            raise SourceError("--column applies to parquet and datasets inputs, not to a folder of files")
        return FolderSource(path, chunk_size, instruction)
    if not path.is_file():
        raise SourceError(f"input is not a regular file or a folder: {path}")
    if path.suffix == ".parquet":
        return TableSource(path, chunk_size, columns, instruction)
    if columns:
        raise SourceError("--column applies to parquet and datasets inputs, not to JSONL (its fields are named)")
    return JsonlSource(path, chunk_size, instruction, max_line_bytes)


def read_items(path: Path, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> list[Row]:
    """Every row of a JSONL items file, one per non-blank line (a whole-file read, for small files and tests)."""
    source = JsonlSource(Path(path), 2**20, max_line_bytes=max_line_bytes)
    return [row for ref in source.chunks() for row in source.read(ref)]
