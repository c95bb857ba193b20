"""`ume embed`: a corpus in, embeddings out, chunk by chunk: resumable after a kill, sharded across torchrun ranks
or Ray actors, memory flat in the corpus size.

The input is cut into chunks of `chunk_size` rows (`ume.embed.sources`); `ChunkJob.run` embeds one chunk with one
`Encoder.encode` call and writes it atomically (`ume.embed.chunks`). That one function is what every engine
drives: one process runs every missing chunk; under torchrun the j-th missing chunk goes to rank j % world (all
ranks see the same missing set, so the split is deterministic and each rank writes its own chunks); with
`engine="ray"` Ray Data hands the missing chunks to its actors (`ume.ray`). A chunk's vectors depend only on its
rows and the run's settings (per-row seeds are `item_seed(seed, row index)`), so a resumed, sharded or Ray run
writes the same chunks as one uninterrupted process. Rank 0 (or the Ray driver) holds the folder's lock, writes
the manifest before any work, and when every chunk is there writes errors.jsonl, the merge and run.json.

No single row can take the run down: a row that cannot be read or embedded is that row's error (named `FILE:LINE`
for JSONL), NaN in the vectors and listed in errors.jsonl; every other row keeps its vector.
"""

from __future__ import annotations

import importlib.util
import math
import os
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from itertools import chain, islice
from pathlib import Path
from typing import Any

import numpy as np

from ume.embed.chunks import ChunkStore, OutputConflict, check_output
from ume.embed.progress import Progress
from ume.embed.sources import FIELDS, ChunkRef, Row, Source, SourceError, open_source
from ume.generation import row_seed
from ume.inputs import InputError
from ume.io import DEFAULT_MAX_LINE_BYTES, FolderInUse, lock_dir, write_json

DEFAULT_MAX_BATCH_TOKENS = 16384  # padded prompt tokens per batch (items x longest, x samples in gen mode)
DEFAULT_CHUNK_SIZE = 256  # rows per chunk: what a kill can cost, and the unit of work of a rank or an actor
KEY_FORMAT = 1


class EmbedError(ValueError):
    """A run refused before any work; the message names the cause and the fix."""


REFUSALS = (EmbedError, SourceError, OutputConflict, FolderInUse)  # runs refused: one-line errors on the CLI


@dataclass
class EmbedConfig:
    """One `ume embed` run. Every field that changes a vector or a record is part of the run's key (the
    manifest), so a rerun resumes only a run with the same key; batching fields (`batch_size`,
    `max_batch_tokens`) are not: a resumed run may batch differently."""

    model: str  # checkpoint: local directory or hub id
    input: str  # JSONL file, folder of media files, parquet file/folder, or a `datasets.save_to_disk` folder
    output: str  # the run's folder (ume.embed.chunks)
    mode: str = "disc"  # disc | gen | both (gen vectors + the disc vectors of the same prefill)
    samples: int = 1  # reasoning samples per item (gen, both); > 1 samples at temperature 1
    batch_size: int = 8
    max_new_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    repetition_penalty: float | None = None
    seed: int | None = None  # row i samples with item_seed(seed, i), whatever the batching, shard or actor
    device: str | None = None
    dtype: str | None = None
    attn_implementation: str | None = None  # ume.load's; min/max_pixels change vectors, so they are in the key
    min_pixels: int | None = None
    max_pixels: int | None = None
    backend: str = "hf"  # generation backend: hf | vllm
    on_error: str = "skip"  # skip: a bad row is its error; raise: stop at the first (--fail-fast)
    max_item_tokens: int | None = None  # longest prompt an item may have (default: the model's context)
    max_batch_tokens: int | None = DEFAULT_MAX_BATCH_TOKENS
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
    chunk_size: int = DEFAULT_CHUNK_SIZE
    columns: dict[str, str] = field(default_factory=dict)  # table inputs: ume field -> column name
    instruction: str = ""  # text of items that have none (media files from a folder, image-only rows)
    merge: bool = True  # write embeddings.npy / items.jsonl when every chunk is done
    overwrite: bool = False  # replace a folder holding a run with another key instead of refusing
    engine: str = "local"  # local (one process, or one per torchrun rank) | ray
    workers: int = 1  # Ray actors (engine ray)
    gpus_per_worker: float = 0.0  # engine ray
    cpus_per_worker: float = 1.0  # engine ray
    progress: bool = True


@dataclass
class EmbedSummary:
    """What a finished run did; `line` is the one line the CLI prints last."""

    output: Path
    mode: str
    n_items: int
    n_errors: int
    forced: int
    dim: int | None
    n_chunks: int
    computed: int  # chunks embedded by this run (all ranks / actors)
    skipped_files: int = 0

    @property
    def line(self) -> str:
        skipped = (f"; {self.skipped_files} file(s) of other kinds in the folder not read"
                   if self.skipped_files else "")
        return (f"embedded {self.n_items - self.n_errors}/{self.n_items} items ({self.mode}, dim {self.dim}); "
                f"{self.n_errors} error(s), {self.forced} forced <gen_emb>; {self.computed} of {self.n_chunks} "
                f"chunk(s) computed now, {self.n_chunks - self.computed} done before{skipped}; wrote {self.output}")


def item_seed(seed: int, index: int) -> int:
    """The sampling seed of row `index` under `--seed`: fixed by the row, whatever the batching or shard."""
    return row_seed(seed, index)


def validate(cfg: EmbedConfig) -> None:
    """Refuse, before any work, arguments that cannot run."""
    if cfg.mode not in ("disc", "gen", "both"):
        raise EmbedError(f"--mode must be disc, gen or both, got {cfg.mode!r}")
    if cfg.samples < 1 or cfg.batch_size < 1 or cfg.chunk_size < 1 or cfg.workers < 1:
        raise EmbedError("--samples, --batch-size, --chunk-size and --workers must be >= 1")
    if cfg.mode == "disc" and cfg.samples > 1:
        raise EmbedError(f"--samples {cfg.samples} needs --mode gen or both: disc mode is deterministic, every "
                         "sample would be the same vector")
    if cfg.max_new_tokens is not None and cfg.max_new_tokens < 1:
        raise EmbedError("--max-new-tokens must be >= 1")
    if cfg.temperature is not None and cfg.temperature < 0:
        raise EmbedError("--temperature must be >= 0 (0 = greedy)")
    if cfg.top_p is not None and not 0 < cfg.top_p <= 1:
        raise EmbedError("--top-p must be in (0, 1]")
    if cfg.on_error not in ("skip", "raise"):
        raise EmbedError(f"on_error must be 'skip' or 'raise', got {cfg.on_error!r}")
    bad = sorted(set(cfg.columns) - set(FIELDS))
    if bad:
        raise EmbedError(f"--column {bad[0]}=...: the fields are {', '.join(FIELDS)} (FIELD=COLUMN)")
    if cfg.engine not in ("local", "ray"):
        raise EmbedError(f"--engine must be local or ray, got {cfg.engine!r}")
    if cfg.engine == "ray":
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise EmbedError("--engine ray runs from one driver process; start it with python/ume, not torchrun")
        if importlib.util.find_spec("ray") is None:
            raise EmbedError("--engine ray needs Ray: pip install 'ume[ray]'")


def _model_path(model: str) -> str:
    p = Path(model)
    return str(p.resolve()) if p.exists() else model


def load_options(cfg: EmbedConfig) -> dict[str, Any]:
    """`ume.load`'s loading arguments of the run (the engines load the same way)."""
    return {"attn_implementation": cfg.attn_implementation, "min_pixels": cfg.min_pixels,
            "max_pixels": cfg.max_pixels}


def run_key(cfg: EmbedConfig, source: Source, device: str) -> dict[str, Any]:
    """What the run's chunks depend on. Decoding fields are left out in disc mode (they change nothing there)."""
    import torch

    from ume.backbone import find_recipe, resolve_dtype
    from ume.evaluate.cache import model_fingerprint

    model = _model_path(cfg.model)
    gen = cfg.mode != "disc"
    decoding = {"samples": cfg.samples, "max_new_tokens": cfg.max_new_tokens, "temperature": cfg.temperature,
                "top_p": cfg.top_p, "top_k": cfg.top_k, "repetition_penalty": cfg.repetition_penalty,
                "seed": cfg.seed, "backend": cfg.backend}
    return {"format": KEY_FORMAT, "model": model, "model_fingerprint": model_fingerprint(model),
            "recipe": find_recipe(model).digest(),
            "dtype": str(resolve_dtype(cfg.dtype, torch.device(device))).removeprefix("torch."),
            "pixels": [cfg.min_pixels, cfg.max_pixels], "mode": cfg.mode, "decoding": decoding if gen else None,
            "max_item_tokens": cfg.max_item_tokens,
            "max_line_bytes": cfg.max_line_bytes, "chunk_size": cfg.chunk_size, "instruction": cfg.instruction,
            "input": {"kind": source.kind, "fingerprint": source.fingerprint()}}


@dataclass
class Embedded:
    """One embedded run of rows: vectors (NaN rows for failures), disc vectors (mode both), one record per row."""

    vectors: np.ndarray
    discs: np.ndarray | None
    records: list[dict[str, Any]]
    settings: dict[str, Any]
    tokens: int = 0


def embed_rows(encoder: Any, rows: list[Row], indices: Sequence[int], cfg: EmbedConfig) -> Embedded:
    """Embed `rows`, the input's rows `indices` (which name them in records and seed their sampling), with one
    `Encoder.encode` call."""
    errors = {j: r.error for j, r in enumerate(rows) if r.error is not None}
    if errors and cfg.on_error == "raise":
        raise InputError(next(iter(errors.values())))
    todo = [j for j, r in enumerate(rows) if r.item is not None]
    k, dim = cfg.samples, encoder.dim
    vectors = np.full((len(rows), dim) if k == 1 else (len(rows), k, dim), np.nan, dtype=np.float32)
    discs = np.full((len(rows), dim), np.nan, dtype=np.float32) if cfg.mode == "both" else None
    samples: dict[int, list[dict[str, Any]]] = {}
    settings: dict[str, Any] = {}
    tokens = 0
    if todo:
        res = encoder.encode([rows[j].item for j in todo], mode=cfg.mode, batch_size=cfg.batch_size, num_samples=k,
                             temperature=cfg.temperature, top_p=cfg.top_p, top_k=cfg.top_k,
                             repetition_penalty=cfg.repetition_penalty, max_new_tokens=cfg.max_new_tokens,
                             on_error=cfg.on_error, show_progress=False,
                             seed=None if cfg.seed is None else [item_seed(cfg.seed, indices[j]) for j in todo],
                             max_item_tokens=cfg.max_item_tokens or encoder.context_length(),
                             max_batch_tokens=cfg.max_batch_tokens)
        vectors[todo] = res.embeddings
        if discs is not None:
            discs[todo] = res.disc_embeddings
        for e in res.errors:  # the encoder names each item by its source (FILE:LINE) already
            errors[todo[e.index]] = e.reason
        if (got := res.samples) is not None:
            tokens = int(got.num_tokens.sum())
            for t, j in enumerate(todo):
                samples[j] = [{"text": got.texts[t][s], "token_ids": got.token_ids[t][s],
                               "num_tokens": int(got.num_tokens[t, s]), "forced": bool(got.forced[t, s])}
                              for s in range(k)]
        settings = dict(res.settings)
        if cfg.seed is not None:
            settings["seed"] = {"seed": cfg.seed, "per_item": "item_seed(seed, row index)"}
    failed = sorted(errors)
    vectors[failed] = np.nan
    if discs is not None:
        discs[failed] = np.nan
    records = []
    for j, r in enumerate(rows):
        rec: dict[str, Any] = {"index": int(indices[j]), "line": r.line, "id": r.id, "ok": j not in errors}
        if j in errors:
            rec["error"] = errors[j]
        if j in samples:
            rec["samples"] = samples[j]
        records.append(rec)
    return Embedded(vectors, discs, records, settings, tokens)


class ChunkJob:
    """Embeds and writes single chunks: the function one process, each torchrun rank and each Ray actor runs.
    The model is loaded on the first chunk, so a process with nothing left to do never loads it."""

    def __init__(self, cfg: EmbedConfig, source: Source | None = None, device: str | None = None) -> None:
        self.cfg = cfg
        self.source = source or open_source(cfg.input, cfg.chunk_size, cfg.columns, cfg.instruction,
                                            cfg.max_line_bytes)
        self.store = ChunkStore(cfg.output, both=cfg.mode == "both")
        self.device = cfg.device or device
        self._encoder: Any = None
        self._info_done = False

    @property
    def encoder(self) -> Any:
        if self._encoder is None:
            from ume.encoder import load

            self._encoder = load(self.cfg.model, device=self.device, dtype=self.cfg.dtype, backend=self.cfg.backend,
                                 **load_options(self.cfg))
        return self._encoder

    def run(self, ref: ChunkRef) -> Embedded:
        rows = self.source.read(ref)
        got = embed_rows(self.encoder, rows, range(ref.start, ref.start + len(rows)), self.cfg)
        self.store.write(ref.index, got.vectors, got.discs, got.records)
        if not self._info_done and (got.settings or not self.store.info()):
            enc = self.encoder
            self.store.write_info({"dim": enc.dim, "max_item_tokens": self.cfg.max_item_tokens or enc.context_length(),
                                   "settings": got.settings, "recipe": enc.recipe.to_dict()})
            self._info_done = bool(got.settings)
        return got


def run(cfg: EmbedConfig) -> EmbedSummary | None:
    """Run (or resume) the job; returns the summary on rank 0 / the driver, None on other torchrun ranks."""
    validate(cfg)
    out = Path(cfg.output)
    source = open_source(cfg.input, cfg.chunk_size, cfg.columns, cfg.instruction, cfg.max_line_bytes)
    check_output(out)  # before any work: a bad --output fails now, not after the model ran
    if len(source) == 0:
        raise EmbedError(f"{cfg.input} holds no items")
    from ume.backbone import default_device
    from ume.evaluate.distributed import Dist

    dist = Dist.from_env()
    if cfg.engine == "ray":  # the actors' device, not the driver's
        device = cfg.device or ("cuda" if cfg.gpus_per_worker > 0 else "cpu")
    else:
        device = cfg.device or dist.device or str(default_device())
    key = run_key(cfg, source, device)
    store = ChunkStore(out, both=cfg.mode == "both")
    with lock_dir(out, "ume embed") if dist.rank == 0 else nullcontext():
        refusal = ""
        if dist.rank == 0:
            try:
                store.prepare(key, cfg.overwrite)
            except OutputConflict as e:
                refusal = str(e)
        if dist.world > 1:
            refusal = dist.merge_lists([refusal])[0]  # every rank learns rank 0's verdict
        if refusal:
            raise OutputConflict(refusal)
        done = store.snapshot()
        dist.barrier()  # every rank has its snapshot before any rank writes a chunk
        n, size = len(source), cfg.chunk_size
        n_chunks = math.ceil(n / size)
        complete = {c for c, rows in done.items() if c < n_chunks and rows == min(size, n - c * size)}
        pending = (ref for ref in source.chunks() if ref.index not in complete)
        job = ChunkJob(cfg, source, device)
        mine = islice(pending, dist.rank, None, dist.world)  # the j-th missing chunk goes to rank j % world
        first = next(mine, None) if cfg.engine == "local" else None
        if first is not None:
            job.encoder  # noqa: B018  (loaded before the bar starts, so its rate counts embedding only)
        progress = Progress(store.dir, n, sum(min(size, n - c * size) for c in complete), dist.rank, dist.world,
                            f"embed {cfg.mode}", tokens=cfg.mode != "disc", enabled=cfg.progress)
        try:
            if cfg.engine == "ray":
                from ume.ray import run_chunks

                run_chunks(replace(cfg, device=device), list(pending), progress)
            else:
                for ref in chain([first] if first else [], mine):
                    progress.add(ref.rows, job.run(ref).tokens)
                while dist.rank == 0 and not _all_done(store, n, size, n_chunks):
                    time.sleep(1.0)  # the other ranks' chunks (a failed rank makes torchrun stop this one)
        finally:
            progress.close()
        if dist.rank != 0:
            return None
        return _finish(cfg, store, source, n_chunks, n_chunks - len(complete))


def _all_done(store: ChunkStore, n: int, size: int, n_chunks: int) -> bool:
    done = store.snapshot()
    return all(done.get(c) == min(size, n - c * size) for c in range(n_chunks))


def _finish(cfg: EmbedConfig, store: ChunkStore, source: Source, n_chunks: int, computed: int) -> EmbedSummary:
    """errors.jsonl, the merge and run.json (last), from the chunks on disk."""
    out = store.out
    counts = store.write_errors(n_chunks)
    if cfg.merge and (computed or not (out / "embeddings.npy").is_file()):
        store.merge(n_chunks, len(source))
    info = store.info()
    shape = store.vectors(0).shape
    run_info = {"model": cfg.model, "input": cfg.input, "input_kind": source.kind, "mode": cfg.mode,
                "n_items": len(source), "n_errors": counts["errors"], "dim": info.get("dim", shape[-1]),
                "shape": [len(source), *shape[1:]], "n_chunks": n_chunks, "chunk_size": cfg.chunk_size,
                "max_item_tokens": info.get("max_item_tokens"),
                "max_batch_tokens": cfg.max_batch_tokens, "generated_tokens": counts["tokens"],
                "skipped_files": getattr(source, "skipped", 0), "settings": info.get("settings", {}),
                "recipe": info.get("recipe")}
    write_json(out / "run.json", run_info)
    return EmbedSummary(out, cfg.mode, len(source), counts["errors"], counts["forced"], run_info["dim"], n_chunks,
                        computed, run_info["skipped_files"])


def run_embed(model: str, input_path: Path, output: Path, mode: str = "disc", samples: int = 1,
              batch_size: int = 8, max_new_tokens: int | None = None, temperature: float | None = None,
              top_p: float | None = None, top_k: int | None = None, repetition_penalty: float | None = None,
              seed: int | None = None, device: str | None = None, dtype: str | None = None,
              on_error: str = "skip", max_item_tokens: int | None = None,
              max_batch_tokens: int | None = DEFAULT_MAX_BATCH_TOKENS,
              max_line_bytes: int = DEFAULT_MAX_LINE_BYTES, backend: str = "hf", **options: Any) -> str:
    """`run(EmbedConfig(...))` with today's keyword arguments (any other `EmbedConfig` field as a keyword);
    returns the summary line."""
    summary = run(EmbedConfig(model=str(model), input=str(input_path), output=str(output), mode=mode,
                              samples=samples, batch_size=batch_size, max_new_tokens=max_new_tokens,
                              temperature=temperature, top_p=top_p, top_k=top_k,
                              repetition_penalty=repetition_penalty, seed=seed, device=device, dtype=dtype,
                              on_error=on_error, max_item_tokens=max_item_tokens, max_batch_tokens=max_batch_tokens,
                              max_line_bytes=max_line_bytes, backend=backend, **options))
    return summary.line if summary is not None else ""
