"""On-disk embedding cache: one directory per (model, recipe, task, side, mode, samples, decoding).

Vectors are appended in chunk files written atomically as they are computed, so a killed run loses at
most the chunk in flight and resumes by encoding only the missing keys.

What the cache never serves:
- a failure: an item that produced no vector (an error record or a NaN row) is not stored, so once its file
  is repaired the next run encodes it;
- a stale file: a media file's key includes its stamp (size, modification time and a hash of its first and
  last 4 KiB, `media_stamp`), so an image replaced in place is a new key, encoded again;
- a damaged chunk: one that cannot be read whole (a truncated .npz, a torn sidecar line, keys without their
  records) is named in `problems`, set aside as `*.damaged` and its entries recomputed.
Chunks are named by writer, time and a random suffix, never by a count, so a lost chunk cannot make a later run
overwrite another one.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import secrets
import stat
import time
import warnings
import zipfile
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

from ume.inputs import Item
from ume.io import atomic_write, parse_json_line

StampMode = Literal["stat", "sample", "content"]
STAMP_MODE: StampMode = "sample"  # see media_stamp; benchmarks/cache_keys.py measures the three
SAMPLE_BYTES = 4096  # read at each end of a file for its "sample" stamp


def _media_key(src: object) -> str:
    """A file by its path, in-memory bytes (visdoc pages from parquet) and PIL images by a hash of their content."""
    if isinstance(src, (bytes, bytearray)):
        return "sha256:" + hashlib.sha256(src).hexdigest()
    if isinstance(src, Image.Image):
        digest = hashlib.sha256(f"{src.mode}:{src.size}:".encode())
        digest.update(src.tobytes())
        return "pil-sha256:" + digest.hexdigest()
    return str(src)


def _paths(item: Item) -> list[str]:
    srcs = list(item.images) + ([item.video] if isinstance(item.video, (str, Path)) else list(item.video or []))
    return [str(s) for s in srcs if isinstance(s, (str, Path))]


def item_key(item: Item, stamp: StampMode | None = None) -> str:
    """A content key: two inputs with the same text and media are the same input.

    The first 40 hex digits identify the input (text, media paths, in-memory media by their hash) and seed its
    sampling (`key_seed`); when the item names files, `-` and a 16-digit digest of their stamps follow, so the key
    changes when a file does."""
    video = item.video if item.video is None or isinstance(item.video, str) else [_media_key(v) for v in item.video]
    blob = json.dumps({"text": item.text, "images": [_media_key(i) for i in item.images], "video": video},
                      sort_keys=True, ensure_ascii=False)
    key = hashlib.sha1(blob.encode("utf-8", "surrogatepass")).hexdigest()
    paths = _paths(item)
    if not paths:
        return key
    stamps = "\n".join(media_stamp(p, stamp or STAMP_MODE) for p in paths)
    return f"{key}-{hashlib.sha1(stamps.encode('utf-8', 'surrogatepass')).hexdigest()[:16]}"


def media_stamp(path: str | Path, mode: StampMode = "sample") -> str:
    """What identifies a file's current content, without blocking on special files:
    - "stat": size and modification time (free; misses a same-size replacement that keeps the mtime, as
      `cp -p`, `rsync -a` or `tar x` do);
    - "sample" (default): that plus a hash of the first and last SAMPLE_BYTES;
    - "content": a hash of the whole file (reads every byte of the benchmark on every run).
    A directory (a video as frame files) is stamped by its entries' names, sizes and times."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return "missing"
    if stat.S_ISDIR(st.st_mode):
        try:
            entries = sorted(os.scandir(path), key=lambda e: e.name)
            parts = [f"{e.name}:{e.stat().st_size}:{e.stat().st_mtime_ns}" for e in entries]
        except OSError:
            return "unreadable-dir"
        return "dir:" + hashlib.sha1("\n".join(parts).encode("utf-8", "surrogatepass")).hexdigest()
    if not stat.S_ISREG(st.st_mode):
        return f"special:{stat.S_IFMT(st.st_mode)}"  # never opened: loading reports it
    base = f"{st.st_size}:{st.st_mtime_ns}"
    if mode == "stat":
        return base
    return f"{base}:{_file_digest(str(path), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, mode == 'content')}"


@lru_cache(maxsize=2**16)
def _file_digest(path: str, size: int, mtime_ns: int, ctime_ns: int, ino: int, whole: bool) -> str:
    """Hash of a file's ends (or all of it); memoised within a process by (path, size, mtime, ctime, inode): any
    write changes the ctime, which no tool can set back, so a rewrite is never served from the memo."""
    digest = hashlib.sha256()
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                return "special"
            if whole or size <= 2 * SAMPLE_BYTES:
                for block in iter(lambda: f.read(2**20), b""):
                    digest.update(block)
            else:
                digest.update(f.read(SAMPLE_BYTES))
                f.seek(size - SAMPLE_BYTES)
                digest.update(f.read(SAMPLE_BYTES))
    except OSError:
        return "unreadable"
    return digest.hexdigest()[:16]


def key_seed(key: str, seed: int) -> int:
    """A per-input sampling seed that depends on the input, not on its position in a batch or shard."""
    return (int(key[:12], 16) ^ seed) & (2**62 - 1)


# files of a checkpoint folder that no vector depends on (the sentence-transformers entry point ume writes)
NOT_MODEL_FILES = ("modules.json", "config_sentence_transformers.json")


def model_fingerprint(source: str) -> str:
    """Identity of a checkpoint: a local directory by its weight/config files' names, sizes and
    modification times (hashing GBs of weights would cost minutes); a hub id by its name."""
    path = Path(source)
    if path.is_dir():
        files = sorted(p for p in path.iterdir()
                       if p.suffix in (".safetensors", ".bin", ".json") and p.name not in NOT_MODEL_FILES)
        parts = [str(path.resolve())] + [f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files]
    else:
        parts = [source]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


class DamagedChunk(ValueError):
    """A cache chunk that cannot be read whole."""


def _failed(vector: np.ndarray, record: dict[str, Any] | None) -> bool:
    return bool(np.isnan(vector).any()) or (record is not None and "error" in record)


class EmbeddingCache:
    """Chunked, append-only store of key -> (vector, per-item record); failures are never stored."""

    def __init__(self, directory: Path, tag: str = "0") -> None:
        self.dir = directory
        self.tag = tag  # distinguishes writers (ranks) so they never write the same file
        self.problems: list[str] = []  # damaged chunks met by `load`, each set aside and recomputed
        self.dir.mkdir(parents=True, exist_ok=True)

    def load(self) -> tuple[dict[str, np.ndarray], dict[str, dict[str, Any]]]:
        vectors: dict[str, np.ndarray] = {}
        records: dict[str, dict[str, Any]] = {}
        for chunk in sorted(self.dir.glob("chunk-*.npz")):
            try:
                keys, vecs, recs = self._read(chunk)
            except DamagedChunk as e:
                self._set_aside(chunk, str(e))
                continue
            for k, v in zip(keys, vecs, strict=True):
                if _failed(v, recs.get(k)):  # written by an older ume: a failure is never served
                    continue
                vectors[k] = v
                if k in recs:
                    records[k] = recs[k]
        return vectors, records

    @staticmethod
    def _read(chunk: Path) -> tuple[list[str], np.ndarray, dict[str, dict[str, Any]]]:
        try:
            with np.load(chunk, allow_pickle=False) as z:
                keys, vecs = z["keys"].tolist(), np.asarray(z["vectors"])
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, KeyError) as e:
            raise DamagedChunk(f"unreadable ({type(e).__name__}: {e})") from None
        if len(keys) != len(vecs):
            raise DamagedChunk(f"{len(keys)} keys for {len(vecs)} vectors")
        sidecar = chunk.with_suffix(".jsonl")
        recs: dict[str, dict[str, Any]] = {}
        try:
            lines = sidecar.read_bytes().split(b"\n")
        except OSError as e:
            raise DamagedChunk(f"sidecar {sidecar.name} unreadable ({e.strerror or e})") from None
        for n, raw in enumerate(lines, 1):
            line = parse_json_line(raw, n)
            if line is None:
                continue
            rec = line.value
            if line.error is not None or not isinstance(rec, dict) or not isinstance(rec.get("key"), str):
                why = line.error or "not a record with a key"
                raise DamagedChunk(f"sidecar {sidecar.name} line {n} is torn or malformed ({why})")
            recs[rec["key"]] = rec
        missing = [k for k in keys if k not in recs]
        if missing:
            raise DamagedChunk(f"sidecar {sidecar.name} lacks the records of {len(missing)} key(s)")
        return keys, vecs, recs

    def _set_aside(self, chunk: Path, reason: str) -> None:
        msg = f"embedding cache: {chunk}: {reason}; set aside as {chunk.name}.damaged, its entries are recomputed"
        self.problems.append(msg)
        warnings.warn(msg, RuntimeWarning, stacklevel=3)
        for path in (chunk, chunk.with_suffix(".jsonl")):
            with contextlib.suppress(OSError):  # already set aside by another rank, or the sidecar never existed
                os.replace(path, path.with_name(path.name + ".damaged"))

    def append(self, keys: list[str], vectors: np.ndarray, records: list[dict[str, Any]]) -> None:
        """Store the successful entries of one encoded chunk (failed ones are dropped, so they are retried)."""
        by_key = {r["key"]: r for r in records}
        keep = [i for i, k in enumerate(keys) if not _failed(vectors[i], by_key.get(k))]
        if not keep:
            return
        keys = [keys[i] for i in keep]
        vectors = np.asarray(vectors)[keep]
        stem = self.dir / f"chunk-{self.tag}-{time.time_ns():020d}-{secrets.token_hex(4)}"
        lines = b"".join(json.dumps(by_key.get(k, {"key": k}), ensure_ascii=True).encode() + b"\n" for k in keys)
        atomic_write(stem.with_suffix(".jsonl"), lambda f: f.write(lines))

        def write(f: Any) -> None:
            buf = io.BytesIO()
            np.savez(buf, keys=np.array(keys), vectors=vectors.astype(np.float32))
            f.write(buf.getvalue())

        atomic_write(stem.with_suffix(".npz"), write)  # written last: its presence marks the chunk complete
