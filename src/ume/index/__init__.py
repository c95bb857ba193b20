"""`ume.Index`: a corpus embedded into a faiss index on disk, searched by text and/or image queries.

Layout of an index directory:

    meta.json       model, mode, settings, dim, kind (exact | hnsw), counts, recipe digest
    items.jsonl     one row per corpus item: row, id, path, ok (+ error, or in gen mode the reasoning)
    vectors.npy     [n, d] float32, L2-normalised; NaN rows for failed items (not in the faiss index)
    index.faiss     IndexIDMap over IndexFlatIP (exact, default) or IndexHNSWFlat (--ann hnsw); ids = rows
    chunks/         the build's progress: one atomically written .npz per chunk of items; a killed build
                    resumes from the first missing chunk (plan.json pins the corpus and settings)

faiss-cpu was chosen on measurements (benchmarks/index_libs.py, benchmarks/results/index_libs.json): the
fastest exact inner-product search of the three candidates at UME-R1-2B's width (1536) and level with hnswlib
at 128, HNSW and IVF in the same library for large corpora, and a plain save/load. Scores are cosines (vectors
are unit length). Ranking rule, as `ume eval`'s: scores rounded to 1e-6, ties broken by corpus order, so a
search reproduces the harness's ranking over the same pool.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ume.inputs import IMAGE_SUFFIXES, VIDEO_SUFFIXES, Item
from ume.io import atomic_write, iter_json_lines, read_jsonl, write_json, write_jsonl, write_npy

TEXT_SUFFIXES = {".txt", ".md"}
FORMAT = 1


@dataclass
class Hit:
    rank: int
    row: int
    id: str
    score: float
    path: str | None = None
    text: str | None = None  # the item's text (truncated in tables)
    reasoning: str | None = None  # gen-mode corpus: the generated reasoning behind its vector

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass
class CorpusRow:
    id: str
    item: dict[str, Any] | Item | None  # None: the input row itself was unreadable
    path: str | None = None
    error: str | None = None


def read_corpus(source: str | Path, instruction: str = "") -> list[CorpusRow]:
    """Rows of a corpus: a JSONL file (as `ume embed` reads it) or a directory of files (images, videos,
    .txt/.md texts; walked recursively in sorted order, ids are the relative paths). `instruction` is set as
    the text of media files from a directory (e.g. "Represent the given image.")."""
    source = Path(source)
    if source.is_dir():
        rows = []
        for p in sorted(q for q in source.rglob("*") if q.is_file() and not q.name.startswith(".")):
            rel, suffix = p.relative_to(source).as_posix(), p.suffix.lower()
            if suffix in IMAGE_SUFFIXES:
                rows.append(CorpusRow(rel, {"text": instruction, "images": [str(p)]}, str(p)))
            elif suffix in VIDEO_SUFFIXES:
                rows.append(CorpusRow(rel, {"text": instruction, "video": str(p)}, str(p)))
            elif suffix in TEXT_SUFFIXES:
                rows.append(CorpusRow(rel, {"text": p.read_text(encoding="utf-8", errors="replace")}, str(p)))
        if not rows:
            raise ValueError(f"{source}: no image, video or text file found")
        return rows
    if not source.is_file():
        raise FileNotFoundError(f"corpus not found: {source}")
    out = []
    for n, row, error in read_item_rows(source):
        if row is None:
            out.append(CorpusRow(str(n), None, error=error))
            continue
        media = row.get("video") or row.get("image") or (row.get("images") or [None])[0]
        out.append(CorpusRow(str(row.get("id", n)), row, media if isinstance(media, str) else None))
    return out


def _resolve(value: Any, base: Path) -> Any:
    if isinstance(value, str) and value and not Path(value).is_absolute():
        return str(base / value)
    if isinstance(value, list):
        return [_resolve(v, base) for v in value]
    return value


def read_item_rows(path: str | Path) -> list[tuple[int, dict[str, Any] | None, str | None]]:
    """(row number, item dict or None, error) per non-blank line of a JSONL items file; media paths relative
    to the file. A line that is not a JSON object is that row's error; the others keep their rows."""
    path = Path(path)
    rows: list[tuple[int, dict[str, Any] | None, str | None]] = []
    for line in iter_json_lines(path):
        error = line.error or (None if isinstance(line.value, dict) else "expected a JSON object")
        if error is not None:
            rows.append((len(rows), None, f"{path.name}:{line.number}: invalid item row ({error})"))
            continue
        value = {k: _resolve(v, path.parent) if k in ("image", "images", "video") else v
                 for k, v in line.value.items()}
        rows.append((len(rows), value, None))
    return rows


def _digest(x: Any) -> Any:
    """A JSON-able stand-in for an item's content (bytes and images hashed)."""
    if isinstance(x, Item):
        return {"text": x.text, "images": [_digest(i) for i in x.images], "video": _digest(x.video)}
    if isinstance(x, bytes):
        return hashlib.sha1(x).hexdigest()
    if isinstance(x, (list, tuple)):
        return [_digest(v) for v in x]
    if isinstance(x, dict):
        return {k: _digest(v) for k, v in x.items()}
    if x is None or isinstance(x, (str, int, float, bool)):
        return x
    if isinstance(x, Path):
        return str(x)
    return hashlib.sha1(x.tobytes()).hexdigest() if hasattr(x, "tobytes") else repr(x)


def _fingerprint(model: str, mode: str, settings: dict[str, Any], rows: list[CorpusRow]) -> str:
    h = hashlib.sha256(json.dumps({"model": model, "mode": mode, "settings": settings}, sort_keys=True).encode())
    for r in rows:
        h.update(json.dumps([r.id, _digest(r.item)], sort_keys=True).encode())
    return h.hexdigest()[:16]


def _text_of(item: Any) -> str | None:
    text = item.text if isinstance(item, Item) else (item or {}).get("text")
    return text or None


def _faiss_index(vectors: np.ndarray, ok: np.ndarray, kind: str, hnsw_m: int = 32) -> Any:
    import faiss

    d = vectors.shape[1]
    if kind == "exact":
        base = faiss.IndexFlatIP(d)
    elif kind == "hnsw":
        base = faiss.IndexHNSWFlat(d, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        base.hnsw.efConstruction = 128
    else:
        raise ValueError(f"index kind must be 'exact' or 'hnsw', got {kind!r}")
    index = faiss.IndexIDMap(base)
    rows = np.flatnonzero(ok).astype(np.int64)
    if len(rows):
        index.add_with_ids(np.ascontiguousarray(vectors[rows], dtype=np.float32), rows)
    return index


def _resolve_model(model: str) -> str:
    p = Path(model)
    return str(p.resolve()) if p.exists() else model


class Index:
    """An index directory opened for search. Build one with `Index.build(...)`."""

    def __init__(self, path: str | Path, encoder: Any = None) -> None:
        import faiss

        self.path = Path(path)
        meta_path = self.path / "meta.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"{self.path}: not a ume index (no meta.json; was the build finished?)")
        self.meta = json.loads(meta_path.read_text())
        self.items = read_jsonl(self.path / "items.jsonl")
        self.vectors = np.load(self.path / "vectors.npy", mmap_mode="r")
        self.faiss = faiss.read_index(str(self.path / "index.faiss"))
        self._encoder = encoder

    # --- properties ----------------------------------------------------------------------------------
    @property
    def mode(self) -> str:
        return self.meta["mode"]

    @property
    def dim(self) -> int:
        return int(self.meta["dim"])

    def __len__(self) -> int:
        return int(self.faiss.ntotal)

    @property
    def encoder(self) -> Any:
        if self._encoder is None:
            import ume

            self._encoder = ume.load(self.meta["model"], device=self.meta.get("device"))
        return self._encoder

    # --- build ---------------------------------------------------------------------------------------
    @classmethod
    def build(cls, model: str | Any, input: str | Path | Sequence[Any], output: str | Path, mode: str = "disc",
              kind: str = "exact", ids: Sequence[str] | None = None, batch_size: int = 8, chunk_size: int = 64,
              max_new_tokens: int | None = None, instruction: str = "", device: str | None = None,
              progress: bool = True, on_chunk: Callable[[int, int], None] | None = None) -> Index:
        """Embed a corpus (JSONL file, directory, or a list of items/dicts/strings with `ids`) into `output`.

        `model` is a checkpoint path / hub id or a loaded `ume.Encoder`. The build is resumable: each chunk
        of `chunk_size` items is written atomically, and running the same build again continues from the first
        missing chunk (a different corpus or settings in the same directory is refused)."""
        if mode not in ("disc", "gen"):
            raise ValueError(f"mode must be 'disc' or 'gen', got {mode!r}")
        out = Path(output)
        if isinstance(input, (str, Path)):
            rows = read_corpus(input, instruction)
            source = str(input)
        else:
            from ume.encoder import as_item

            names = list(ids) if ids is not None else [str(i) for i in range(len(input))]
            if len(names) != len(input):
                raise ValueError(f"{len(names)} ids for {len(input)} items")
            rows = []
            for name, x in zip(names, input, strict=True):
                it = as_item(x)
                first = it.video if it.video is not None else (it.images[0] if it.images else None)
                if isinstance(first, (list, tuple)):
                    first = first[0] if first else None
                rows.append(CorpusRow(str(name), it, str(first) if isinstance(first, (str, Path)) else None))
            source = "<items>"
        encoder = model
        if isinstance(model, (str, Path)):
            import ume

            encoder = ume.load(str(model), device=device)
            model_name = _resolve_model(str(model))
        else:
            model_name = _resolve_model(str(encoder.backbone.source))
        settings: dict[str, Any] = {"mode": mode, "instruction": instruction}
        if mode == "gen":
            settings["max_new_tokens"] = max_new_tokens
        from ume.evaluate.cache import model_fingerprint

        # the checkpoint's identity (weights' sizes and mtimes) and recipe pin the plan too: a retrained model at
        # the same path starts a fresh build instead of mixing old and new vectors
        ident = f"{model_name}|{model_fingerprint(model_name)}|{encoder.recipe.digest()}"
        plan = {"format": FORMAT, "fingerprint": _fingerprint(ident, mode, settings, rows), "n": len(rows),
                "chunk_size": chunk_size, "source": source}
        chunks = out / "chunks"
        if (out / "plan.json").exists():
            old = json.loads((out / "plan.json").read_text())
            if old.get("fingerprint") != plan["fingerprint"] or old.get("chunk_size") != chunk_size:
                raise ValueError(f"{out} holds a build of another corpus or other settings; choose a new output "
                                 "directory (or delete it)")
        chunks.mkdir(parents=True, exist_ok=True)
        write_json(out / "plan.json", plan)
        n_chunks = (len(rows) + chunk_size - 1) // chunk_size
        from tqdm.auto import tqdm

        t0 = time.perf_counter()
        encoded_now = 0
        with tqdm(total=len(rows), desc=f"index {mode}", unit="item", disable=not progress) as bar:
            for c in range(n_chunks):
                part = rows[c * chunk_size:(c + 1) * chunk_size]
                target = chunks / f"{c:05d}.npz"
                if target.exists():
                    bar.update(len(part))
                    continue
                vecs, recs = cls._encode_chunk(encoder, part, c * chunk_size, mode, batch_size, max_new_tokens)
                blob = json.dumps(recs).encode()
                atomic_write(target, lambda f, v=vecs, b=blob: np.savez(f, vectors=v,
                                                                      records=np.frombuffer(b, dtype=np.uint8)))
                encoded_now += len(part)
                bar.update(len(part))
                if on_chunk is not None:
                    on_chunk(c, n_chunks)
        vectors, records = [], []
        for c in range(n_chunks):
            with np.load(chunks / f"{c:05d}.npz") as z:
                vectors.append(z["vectors"])
                records += json.loads(z["records"].tobytes())
        vectors_arr = np.concatenate(vectors) if vectors else np.zeros((0, encoder.dim), np.float32)
        ok = np.array([r["ok"] for r in records], dtype=bool)
        index = _faiss_index(vectors_arr, ok, kind)
        import faiss

        write_npy(out / "vectors.npy", vectors_arr)
        write_jsonl(out / "items.jsonl", records)
        tmp = out / ".index.faiss.tmp"
        faiss.write_index(index, str(tmp))
        tmp.replace(out / "index.faiss")
        meta = {"format": FORMAT, "model": model_name, "mode": mode, "kind": kind, "dim": int(vectors_arr.shape[1]),
                "count": len(records), "indexed": int(ok.sum()), "failed": int((~ok).sum()), "settings": settings,
                "recipe": encoder.recipe.digest(), "source": source, "device": device,
                "build_s": round(time.perf_counter() - t0, 3), "encoded_this_run": encoded_now}
        write_json(out / "meta.json", meta)
        return cls(out, encoder=encoder)

    @staticmethod
    def _encode_chunk(encoder: Any, part: list[CorpusRow], offset: int, mode: str, batch_size: int,
                      max_new_tokens: int | None) -> tuple[np.ndarray, list[dict[str, Any]]]:
        todo = [j for j, r in enumerate(part) if r.item is not None]
        vecs = np.full((len(part), encoder.dim), np.nan, dtype=np.float32)
        errors = {j: r.error for j, r in enumerate(part) if r.item is None}
        res = None
        if todo:
            kwargs: dict[str, Any] = {"mode": mode, "batch_size": batch_size, "on_error": "skip",
                                      "show_progress": False}
            if mode == "gen":
                kwargs["max_new_tokens"] = max_new_tokens
            res = encoder.encode([part[j].item for j in todo], **kwargs)
            vecs[todo] = res.embeddings
            for e in res.errors:
                errors[todo[e.index]] = e.reason
        recs = []
        where = {j: t for t, j in enumerate(todo)}
        for j, r in enumerate(part):
            rec: dict[str, Any] = {"row": offset + j, "id": r.id, "path": r.path,
                                   "text": _text_of(r.item), "ok": j not in errors}
            if j in errors:
                rec["error"] = errors[j]
            elif res is not None and (got := res.samples) is not None:
                t = where[j]
                rec.update(reasoning=got.texts[t][0], num_tokens=int(got.num_tokens[t][0]),
                           forced=bool(got.forced[t][0]))
            recs.append(rec)
        return vecs, recs

    # --- search --------------------------------------------------------------------------------------
    def embed_queries(self, queries: Sequence[Any], mode: str | None = None,
                      max_new_tokens: int | None = None) -> np.ndarray:
        mode = mode or self.mode
        kwargs: dict[str, Any] = {"mode": mode, "on_error": "raise", "show_progress": False}
        if mode == "gen":
            kwargs["max_new_tokens"] = max_new_tokens or self.meta["settings"].get("max_new_tokens")
        return self.encoder.encode(list(queries), **kwargs).embeddings

    def search(self, query: str | Item | dict | Sequence[Any], k: int = 10, image: str | Path | None = None,
               mode: str | None = None, max_new_tokens: int | None = None,
               ef_search: int | None = None) -> list[Hit] | list[list[Hit]]:
        """Top-k hits for one query (a string, optionally with `image`; an Item; a dict) or for a list of them.
        The query is embedded in the index's mode unless `mode` says otherwise."""
        single = isinstance(query, (str, Item, dict))
        if single:
            q = Item(text=query, images=[str(image)] if image else []) if isinstance(query, str) else query
            queries = [q]
        else:
            queries = list(query)
        hits = self.search_vectors(self.embed_queries(queries, mode, max_new_tokens), k, ef_search)
        return hits[0] if single else hits

    def search_vectors(self, q: np.ndarray, k: int = 10, ef_search: int | None = None) -> list[list[Hit]]:
        """Top-k hits per query vector. faiss proposes candidates (k + a margin); they are re-scored in float64
        from the stored vectors and ranked as `ume eval` ranks (round to 1e-6, ties by corpus order)."""
        q = np.atleast_2d(np.asarray(q, dtype=np.float32))
        if ef_search is not None and hasattr(self.faiss, "index") and self.meta["kind"] == "hnsw":
            import faiss

            faiss.downcast_index(self.faiss.index).hnsw.efSearch = ef_search
        n = len(self)
        want = min(n, k + 16)
        if n == 0:
            return [[] for _ in q]
        _, ids = self.faiss.search(np.ascontiguousarray(q), want)
        out = []
        for qi, row_ids in enumerate(ids):
            rows = np.array([r for r in row_ids if r >= 0], dtype=np.int64)
            scores = np.asarray(self.vectors[rows], dtype=np.float64) @ q[qi].astype(np.float64)
            order = np.lexsort((rows, -np.round(scores, 6)))[:k]  # by rounded score, then corpus order
            hits = []
            for rank, j in enumerate(order, 1):
                rec = self.items[int(rows[j])]
                hits.append(Hit(rank, int(rows[j]), rec["id"], float(scores[j]), rec.get("path"), rec.get("text"),
                                rec.get("reasoning")))
            out.append(hits)
        return out


@dataclass
class SheetStyle:
    thumb: int = 160
    columns: int = 5
    caption: int = 30


def contact_sheet(hits: Sequence[Hit], out: str | Path, title: str = "", style: SheetStyle | None = None) -> Path:
    """A PNG grid of the hits' images (first frame for videos), each captioned with rank, score and id."""
    from PIL import Image, ImageDraw

    from ume.inputs import InputError, InputLimits, load_image, load_video

    s = style or SheetStyle()
    cols = max(1, min(s.columns, len(hits)))
    rows = max(1, (len(hits) + cols - 1) // cols)
    head = 24 if title else 0
    sheet = Image.new("RGB", (cols * s.thumb, head + rows * (s.thumb + s.caption)), "white")
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((6, 5), title[:120], fill="black")
    limits = InputLimits()
    for n, h in enumerate(hits):
        x, y = (n % cols) * s.thumb, head + (n // cols) * (s.thumb + s.caption)
        img = None
        if h.path:
            try:
                p = Path(h.path)
                img = (load_video(p, InputLimits(num_frames=1))[0] if p.suffix.lower() in VIDEO_SUFFIXES
                       or p.is_dir() else load_image(p, limits))
            except (InputError, OSError):
                img = None
        if img is not None:
            img = img.copy()
            img.thumbnail((s.thumb - 8, s.thumb - 8))
            sheet.paste(img, (x + (s.thumb - img.width) // 2, y + (s.thumb - img.height) // 2))
        else:
            draw.rectangle((x + 4, y + 4, x + s.thumb - 4, y + s.thumb - 4), outline="grey")
            draw.text((x + 10, y + s.thumb // 2), (h.text or "(no image)")[:22], fill="grey")
        draw.text((x + 4, y + s.thumb + 2), f"#{h.rank}  {h.score:.3f}", fill="black")
        draw.text((x + 4, y + s.thumb + 15), h.id[-24:], fill="dimgrey")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, lambda f: sheet.save(f, format="PNG"))
    return out


__all__ = ["CorpusRow", "Hit", "Index", "contact_sheet", "read_corpus"]
