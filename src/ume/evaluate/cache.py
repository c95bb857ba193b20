"""On-disk embedding cache: one directory per (model, recipe, task, side, mode, samples, decoding).

Vectors are appended in chunk files written atomically as they are computed, so a killed run loses at
most the chunk in flight and resumes by encoding only the missing keys.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from ume.inputs import Item
from ume.io import atomic_write


def _media_key(src: object) -> str:
    """A file by its path, in-memory bytes (visdoc pages from parquet) by the hash of their content."""
    return "sha256:" + hashlib.sha256(src).hexdigest() if isinstance(src, bytes) else str(src)


def item_key(item: Item) -> str:
    """A content key: two inputs with the same text and media are the same input."""
    video = item.video if item.video is None or isinstance(item.video, str) else [_media_key(v) for v in item.video]
    blob = json.dumps({"text": item.text, "images": [_media_key(i) for i in item.images], "video": video},
                      sort_keys=True, ensure_ascii=False)
    return hashlib.sha1(blob.encode()).hexdigest()


def key_seed(key: str, seed: int) -> int:
    """A per-input sampling seed that depends on the input, not on its position in a batch or shard."""
    return (int(key[:12], 16) ^ seed) & (2**62 - 1)


def model_fingerprint(source: str) -> str:
    """Identity of a checkpoint: a local directory by its weight/config files' names, sizes and
    modification times (hashing GBs of weights would cost minutes); a hub id by its name."""
    path = Path(source)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".safetensors", ".bin", ".json"))
        parts = [str(path.resolve())] + [f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files]
    else:
        parts = [source]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


class EmbeddingCache:
    """Chunked, append-only store of key -> (vector, per-item record)."""

    def __init__(self, directory: Path, tag: str = "0") -> None:
        self.dir = directory
        self.tag = tag  # distinguishes writers (ranks) so they never write the same file
        self.dir.mkdir(parents=True, exist_ok=True)

    def load(self) -> tuple[dict[str, np.ndarray], dict[str, dict[str, Any]]]:
        vectors: dict[str, np.ndarray] = {}
        records: dict[str, dict[str, Any]] = {}
        for chunk in sorted(self.dir.glob("chunk-*.npz")):
            with np.load(chunk) as z:
                for k, v in zip(z["keys"].tolist(), z["vectors"], strict=True):
                    vectors[k] = v
            sidecar = chunk.with_suffix(".jsonl")
            if sidecar.exists():
                for line in sidecar.read_text(encoding="utf-8").splitlines():
                    rec = json.loads(line)
                    records[rec["key"]] = rec
        return vectors, records

    def append(self, keys: list[str], vectors: np.ndarray, records: list[dict[str, Any]]) -> None:
        n = len(list(self.dir.glob(f"chunk-{self.tag}-*.npz")))
        stem = self.dir / f"chunk-{self.tag}-{n:06d}"
        lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode()
        atomic_write(stem.with_suffix(".jsonl"), lambda f: f.write(lines))

        def write(f: Any) -> None:
            buf = io.BytesIO()
            np.savez(buf, keys=np.array(keys), vectors=vectors.astype(np.float32))
            f.write(buf.getvalue())

        atomic_write(stem.with_suffix(".npz"), write)  # written last: its presence marks the chunk complete
