"""Ray Data for `ume embed`: the `--engine ray` runner, and `Embedder` for your own Ray Data pipelines.

Ray is an optional extra (`pip install "ume[ray]"`); only Ray's public API is used, and only inside functions,
so importing this module does not import Ray.

`ume embed --engine ray` cuts the input into the same chunks as one process does and gives Ray Data only the
unfinished ones: a dataset of chunk references, one block each, mapped by `--workers` actors that each hold one
`Encoder`, read their chunk from the input and write it into the output folder in the same format
(`ChunkJob.run`, the function a torchrun rank runs). Input and output must be on storage every node sees.

What Ray guarantees, within one job: a failed task is retried and a dead actor restarted, and blocks lost with a
node are recomputed from lineage. A job whose driver dies is gone: Ray keeps no state across jobs for a pipeline
like this one (its row-level checkpointing, `DataContext.checkpoint_config`, beta in Ray 2.60, covers pipelines
that end in a Ray Data write keyed by an id column; see the README's recipe). What ume adds: the chunk files are
the checkpoint. Each is written atomically under a name fixed by its index, so a retried task rewrites the same
bytes and a killed job leaves whole chunks only; the next run checks its key against the manifest and submits
just the missing chunks.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ume.embed.job import ChunkJob, EmbedConfig, embed_rows, load_options, validate
from ume.embed.progress import Progress
from ume.embed.sources import FIELDS, ChunkRef, Row, table_item
from ume.inputs import InputError


def _plain(value: Any) -> Any:
    """A cell as Ray's numpy batches hold it, as plain Python (numpy scalars and arrays, dicts of them)."""
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


class Embedder:
    """A callable class for `Dataset.map_batches`: one `Encoder` per actor.

    Each batch's rows (columns text, image | images, video, id, read as `ume embed` reads tables: an image cell is
    HF's struct {bytes, path}, a path or bytes; `columns` maps these fields to other column names) come back with
    their other columns plus `embedding` (NaN rows for failures), `ok` and `error`; in gen mode `reasoning` and
    `num_tokens` (first sample); in both mode `disc_embedding`. The media columns are dropped (they would double
    the output). With `seed`, row seeds are `item_seed(seed, index)` from the `index_column`, as `ume embed`
    seeds them; `options` are `EmbedConfig` fields (samples, max_new_tokens, batch_size, device, ...)."""

    def __init__(self, model: str, mode: str = "disc", columns: dict[str, str] | None = None,
                 index_column: str = "index", **options: Any) -> None:
        self.cfg = EmbedConfig(model=model, input="", output="", mode=mode, columns=dict(columns or {}), **options)
        validate(self.cfg)
        self.columns = {f: self.cfg.columns.get(f, f) for f in FIELDS}
        self.index_column = index_column
        from ume.encoder import load

        self.encoder = load(model, device=self.cfg.device, dtype=self.cfg.dtype, backend=self.cfg.backend,
                            **load_options(self.cfg))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(next(iter(batch.values())))
        if self.index_column in batch:
            indices = [int(i) for i in batch[self.index_column]]
        elif self.cfg.seed is not None:
            raise ValueError(f"seed: each row is seeded by its index; add an {self.index_column!r} column (or name "
                             "yours with index_column=...)")
        else:
            indices = list(range(n))
        rows = []
        for j in range(n):
            values = {f: _plain(batch[c][j]) for f, c in self.columns.items() if c in batch}
            rid = values.get("id") if isinstance(values.get("id"), (str, int)) else None
            where = f"row {indices[j]}"
            try:
                rows.append(Row(None, table_item(values, where, Path(), self.cfg.instruction), rid))
            except InputError as e:
                rows.append(Row(None, None, rid, f"{where}: invalid item row ({e})"))
        got = embed_rows(self.encoder, rows, indices, self.cfg)
        media = {self.columns[f] for f in ("image", "images", "video")}
        out = {k: v for k, v in batch.items() if k not in media}
        out.update(embedding=got.vectors, ok=np.array([r["ok"] for r in got.records]),
                   error=np.array([r.get("error", "") for r in got.records], dtype=object))
        if got.discs is not None:
            out["disc_embedding"] = got.discs
        if self.cfg.mode != "disc":
            first = [r.get("samples", [{"text": "", "num_tokens": 0}])[0] for r in got.records]
            out["reasoning"] = np.array([s["text"] for s in first], dtype=object)
            out["num_tokens"] = np.array([s["num_tokens"] for s in first], dtype=np.int64)
        return out


class _ChunkWorker:
    """A Ray Data actor of `--engine ray`: embeds and writes the chunks it is handed."""

    def __init__(self, cfg: EmbedConfig) -> None:
        from transformers.utils import logging

        logging.disable_progress_bar()  # the driver shows the run's one bar
        self.job = ChunkJob(cfg)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        done = [(ref, self.job.run(ref)) for ref in map(ChunkRef.from_json, batch["ref"])]
        return {"chunk": np.array([ref.index for ref, _ in done]), "rows": np.array([ref.rows for ref, _ in done]),
                "tokens": np.array([got.tokens for _, got in done])}


def run_chunks(cfg: EmbedConfig, refs: list[ChunkRef], progress: Progress) -> None:
    """Embed the chunks `refs` on `cfg.workers` Ray actors (a local Ray instance, or the cluster RAY_ADDRESS
    names); returns when every one is written."""
    if not refs:
        return
    import ray

    if not ray.is_initialized():
        ray.init(logging_level="warning")
    ray.data.DataContext.get_current().enable_progress_bars = False  # one bar: ume's
    model = str(Path(cfg.model).resolve()) if Path(cfg.model).exists() else cfg.model  # else a hub id
    actor_cfg = replace(cfg, model=model, input=str(Path(cfg.input).resolve()), output=str(Path(cfg.output).resolve()),
                        progress=False)
    chunks = ray.data.from_items([{"ref": r.to_json()} for r in refs], override_num_blocks=len(refs))
    done = chunks.map_batches(_ChunkWorker, fn_constructor_kwargs={"cfg": actor_cfg}, batch_size=1,
                              compute=ray.data.ActorPoolStrategy(size=cfg.workers), num_cpus=cfg.cpus_per_worker,
                              num_gpus=cfg.gpus_per_worker or None)
    for row in done.iter_rows():
        progress.add(int(row["rows"]), int(row["tokens"]))
