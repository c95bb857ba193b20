"""The output folder of `ume embed`: append-only chunks, the manifest that pins what they were computed with,
and the merge into one memory-mappable array.

    manifest.json                    the run's key: model fingerprint, recipe digest, dtype, mode, decoding
                                     settings, seed, input hash and kind, chunk size
    chunks/embeddings-00000.npy      rows [c*S, (c+1)*S) of the input: [rows, d] (or [rows, k, d])
    chunks/disc_embeddings-00000.npy --mode both: the disc vectors of the same rows
    chunks/items-00000.jsonl         one record per row; written last, so its presence marks the chunk complete
    chunks/info.json                 settings resolved from the model (written by whichever process loads it)
    errors.jsonl, run.json           written once every chunk is complete (run.json last)
    embeddings.npy, disc_embeddings.npy, items.jsonl   the merge (default; `--no-merge` leaves it to
                                     `open_embeddings`)

Every file is written atomically (`ume.io.atomic_write`) under a name fixed by its chunk index, so a killed
writer leaves a whole chunk or none (plus a temp file the next run removes), a retried writer rewrites the same
bytes, and a rerun computes exactly the chunks that are missing. A folder holds one key's chunks: a different
key is refused, never mixed in.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

from ume.io import atomic_write, check_output_dir, dumps, iter_json_lines, write_json, write_jsonl, write_npy

FORMAT = 1
CHUNK_DIR = "chunks"
MANIFEST = "manifest.json"
INFO = "info.json"
MERGED = ("embeddings.npy", "disc_embeddings.npy", "items.jsonl")
OUTPUT_FILES = (MANIFEST, CHUNK_DIR, *MERGED, "errors.jsonl", "run.json", ".lock")
_CHUNK_RE = re.compile(r"(embeddings|disc_embeddings|items)-(\d+)\.(npy|jsonl)")
_TEMP_RE = re.compile(r"\.(.+)\.[A-Za-z0-9_]+\.tmp")  # what atomic_write leaves behind when killed mid-write


class OutputConflict(ValueError):
    """The output folder holds another run (other settings or input); resuming it would mix two runs."""


def _ours(name: str) -> bool:
    return name in OUTPUT_FILES or name == INFO or bool(_CHUNK_RE.fullmatch(name)) or name.startswith(".progress-")


def _leftovers(directory: Path) -> list[Path]:
    """Temp files of interrupted atomic writes of our files."""
    if not directory.is_dir():
        return []
    return [p for p in directory.iterdir() if (m := _TEMP_RE.fullmatch(p.name)) and _ours(m.group(1))]


def check_output(out: Path) -> None:
    """Before any work: `out` is absent, empty, or holds only what `ume embed` writes (also an older ume's
    outputs, and the temp files of a killed run)."""
    try:
        check_output_dir(out, [*OUTPUT_FILES, *(p.name for p in _leftovers(out))])
    except ValueError as e:
        raise OutputConflict(str(e)) from None


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:24] + "..."


def key_diff(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """`field: old -> new` for every field of a run key that differs."""
    a, b = _flat(old), _flat(new)
    return [f"{k}: {_shown(a.get(k))} -> {_shown(b.get(k))}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


class ChunkStore:
    """The chunk files of one output folder."""

    def __init__(self, out: str | Path, both: bool = False) -> None:
        self.out = Path(out)
        self.dir = self.out / CHUNK_DIR
        self.both = both

    def file(self, kind: str, c: int) -> Path:
        return self.dir / f"{kind}-{c:05d}.{'jsonl' if kind == 'items' else 'npy'}"

    # --- the run's key -------------------------------------------------------------------------------------
    def prepare(self, key: dict[str, Any], overwrite: bool = False) -> bool:
        """Make the folder hold the run keyed by `key`; True when it resumes one. A folder keyed otherwise is
        refused with the fields that differ, or with `overwrite` cleared first. Call it holding the folder's lock,
        before any writer starts."""
        key = json.loads(json.dumps(key))  # as it reads back from the file
        path = self.out / MANIFEST
        if path.is_file():
            try:
                old = json.loads(path.read_text())["key"]
            except (ValueError, KeyError, TypeError):
                old = {"manifest": "unreadable"}
            if old == key:
                for p in _leftovers(self.out) + _leftovers(self.dir) + list(self.dir.glob(".progress-*")):
                    p.unlink(missing_ok=True)
                return True
            if not overwrite:
                diff = key_diff(old, key)
                shown = "; ".join(diff[:4]) + ("; ..." if len(diff) > 4 else "")
                raise OutputConflict(f"{self.out} holds a run with other settings ({shown}); rerun with its "
                                     "settings to resume it, or choose another --output (--overwrite replaces it)")
        self.clear()
        self.dir.mkdir(parents=True, exist_ok=True)
        write_json(path, {"format": FORMAT, "key": key})
        return False

    def clear(self) -> None:
        """Remove every file a run wrote here except the manifest (replaced next): chunks first, so a clear cut
        short leaves the old manifest with fewer chunks, never new chunks under an old key."""
        if self.dir.is_dir():
            shutil.rmtree(self.dir)
        for name in (*MERGED, "errors.jsonl", "run.json"):
            (self.out / name).unlink(missing_ok=True)
        for p in _leftovers(self.out):
            p.unlink(missing_ok=True)

    # --- chunks --------------------------------------------------------------------------------------------
    def snapshot(self) -> dict[int, int]:
        """Complete chunks and their rows: the items file (written last) is there and the vector files read."""
        if not self.dir.is_dir():
            return {}
        done = {}
        for name in os.listdir(self.dir):
            m = _CHUNK_RE.fullmatch(name)
            if not m or m.group(1) != "items":
                continue
            c = int(m.group(2))
            try:
                rows = {np.load(self.file(kind, c), mmap_mode="r").shape[0] for kind in self.vector_kinds}
            except (OSError, ValueError, EOFError):
                continue
            if len(rows) == 1:
                done[c] = rows.pop()
        return done

    @property
    def vector_kinds(self) -> tuple[str, ...]:
        return ("embeddings", "disc_embeddings") if self.both else ("embeddings",)

    def write(self, c: int, vectors: np.ndarray, discs: np.ndarray | None, records: list[dict[str, Any]]) -> None:
        if self.both:
            if discs is None:
                raise ValueError("mode both: a chunk needs its disc vectors")
            write_npy(self.file("disc_embeddings", c), discs)
        write_npy(self.file("embeddings", c), vectors)
        write_jsonl(self.file("items", c), records)  # last: marks the chunk complete

    def vectors(self, c: int, kind: str = "embeddings") -> np.ndarray:
        return np.load(self.file(kind, c), mmap_mode="r")

    def records(self, c: int) -> Iterator[dict[str, Any]]:
        for line in iter_json_lines(self.file("items", c)):
            if line.error is not None:
                raise ValueError(f"{self.file('items', c)}:{line.number}: {line.error}")
            yield line.value

    def write_info(self, info: dict[str, Any]) -> None:
        path = self.dir / INFO
        if not path.is_file() or json.loads(path.read_text()) != json.loads(json.dumps(info)):
            write_json(path, info)

    def info(self) -> dict[str, Any]:
        path = self.dir / INFO
        return json.loads(path.read_text()) if path.is_file() else {}

    # --- the end of a run ----------------------------------------------------------------------------------
    def write_errors(self, n_chunks: int) -> dict[str, int]:
        """errors.jsonl from the chunks' records, streamed; returns the counts of the whole run."""
        counts = {"errors": 0, "forced": 0, "tokens": 0}

        def write(f: IO[bytes]) -> None:
            for c in range(n_chunks):
                for rec in self.records(c):
                    samples = rec.get("samples", [])
                    counts["forced"] += sum(bool(s["forced"]) for s in samples)
                    counts["tokens"] += sum(int(s["num_tokens"]) for s in samples)
                    if not rec["ok"]:
                        counts["errors"] += 1
                        f.write(dumps({"index": rec["index"], "line": rec["line"], "id": rec["id"],
                                       "reason": rec.get("error")}) + b"\n")

        atomic_write(self.out / "errors.jsonl", write)
        return counts

    def merge(self, n_chunks: int, n_rows: int, items: bool = True) -> None:
        """embeddings.npy (+ disc_embeddings.npy, items.jsonl): the chunks concatenated, one chunk in memory at a
        time, each file written atomically."""
        for kind in self.vector_kinds:
            first = self.vectors(0, kind)
            header = {"descr": np.lib.format.dtype_to_descr(first.dtype), "fortran_order": False,
                      "shape": (n_rows, *first.shape[1:])}

            def write(f: IO[bytes], kind: str = kind, header: dict[str, Any] = header) -> None:
                np.lib.format.write_array_header_1_0(f, header)
                for c in range(n_chunks):
                    f.write(np.ascontiguousarray(self.vectors(c, kind)).tobytes())

            atomic_write(self.out / f"{kind}.npy", write)
        if items:
            def copy(f: IO[bytes]) -> None:
                for c in range(n_chunks):
                    with open(self.file("items", c), "rb") as src:
                        shutil.copyfileobj(src, f)

            atomic_write(self.out / "items.jsonl", copy)


def open_embeddings(directory: str | Path, disc: bool = False) -> np.ndarray:
    """The vectors of a finished `ume embed` run as one read-only memory-mapped array ([n, d], or [n, k, d]);
    `disc=True`: the disc vectors of a `--mode both` run. A run made with `--no-merge` is merged here first
    (embeddings.npy written beside the chunks, once)."""
    out = Path(directory)
    if not (out / "run.json").is_file():
        done = len(ChunkStore(out).snapshot())
        raise FileNotFoundError(f"{out}: no finished `ume embed` run ({done} chunk(s) done; run.json is written when "
                                "all are): rerun the same `ume embed` command to finish it")
    run = json.loads((out / "run.json").read_text())
    name = "disc_embeddings.npy" if disc else "embeddings.npy"
    if disc and run["mode"] != "both":
        raise ValueError(f"{out}: disc vectors come with --mode both; this run is --mode {run['mode']}")
    if not (out / name).is_file():
        ChunkStore(out, both=run["mode"] == "both").merge(run["n_chunks"], run["n_items"], items=False)
    return np.load(out / name, mmap_mode="r")
