"""Byte-stable file writing: fixed PNG and parquet settings, sorted-free JSON (dicts keep insertion order),
'\\n' endings."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from ume.inputs import sample_indices
from ume.synth.example import Media

PNG_LEVEL = 1  # fastest zlib level; PIL adds no timestamps to PNGs, so equal pixels give equal bytes
# Parquet files are written with every setting fixed (pyarrow records only its version, no timestamp), so equal
# rows give equal bytes. One row group per file: the tables are small, and the pages are already compressed.
PARQUET_SETTINGS: dict[str, Any] = {"compression": "snappy", "use_dictionary": True, "write_statistics": True,
                                    "version": "2.6", "data_page_version": "1.0", "row_group_size": 1 << 20}


def png_bytes(img: Image.Image) -> bytes:
    """The PNG file `save_png` would write, as bytes."""
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=PNG_LEVEL)
    return buf.getvalue()


def save_png(img: Image.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format="PNG", compress_level=PNG_LEVEL)


def save_frames(frames: Sequence[Image.Image], directory: Path) -> list[Path]:
    """frame_0000.png, frame_0001.png ... (natural order equals lexical order)."""
    paths = [directory / f"frame_{t:04d}.png" for t in range(len(frames))]
    for frame, path in zip(frames, paths, strict=True):
        save_png(frame, path)
    return paths


def save_media(media: Media, root: Path, rel: str, num_frames: int | None = None) -> str | list[str]:
    """Write an image to root/rel.png, or frames to root/rel/; return path(s) relative to root.

    With `num_frames`, only the frames a loader would sample (MMEB's linspace rule) are written.
    """
    if media.kind == "image":
        save_png(media.render(), root / f"{rel}.png")
        return f"{rel}.png"
    frames = media.render()
    if num_frames is not None:
        frames = [frames[i] for i in sample_indices(len(frames), num_frames)]
    return [p.relative_to(root).as_posix() for p in save_frames(frames, root / rel)]


def dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False)


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(dumps(row) + "\n")
            n += 1
    return n


def write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, ensure_ascii=False, indent=1) + "\n", encoding="utf-8", newline="\n")


def write_text_atomic(path: Path, text: str) -> None:
    """Write via a sibling temporary file and rename, so processes writing the same text never tear it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8", newline="\n")
    os.replace(tmp, path)


def write_parquet(path: Path, rows: Sequence[dict[str, Any]], schema: Any,
                  features: dict[str, Any] | None = None) -> int:
    """Rows as one parquet file with a fixed pyarrow `schema`. `features` (a `datasets.Features.to_dict()`-
    style mapping) is stored as the `huggingface` schema metadata `datasets` itself writes, which is how it
    knows a struct column is an `Image`. Returns the number of rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist(list(rows), schema=schema)
    if features is not None:
        table = table.replace_schema_metadata({"huggingface": json.dumps({"info": {"features": features}})})
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, **PARQUET_SETTINGS)
    return table.num_rows
