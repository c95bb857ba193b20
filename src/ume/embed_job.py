"""`ume embed`: a JSONL file of items in; embeddings, per-item records and errors out.

No single line can take the run down. Each line is read as bytes, split on "\\n" only, decoded and parsed on its
own, its fields type-checked and its length estimated against the per-item token limit before the model runs; a
bad line is that line's error, named `FILE:LINE`, and every other line keeps its row. Items are grouped under a
token budget (`batching.token_batches`), so one long item never pads a batch of short ones. `--output` is checked
before any work; the outputs are written into a staging folder and swapped in whole, so a folder holds one run's
files, never a mix of two.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ume.inputs import InputError, Item
from ume.io import (
    DEFAULT_MAX_LINE_BYTES,
    check_output_dir,
    iter_json_lines,
    staged_dir,
    write_json,
    write_jsonl,
    write_npy,
)

OUTPUT_FILES = ("embeddings.npy", "disc_embeddings.npy", "items.jsonl", "errors.jsonl", "run.json")
DEFAULT_MAX_BATCH_TOKENS = 16384  # padded prompt tokens per batch (items x longest, x samples in gen mode)


@dataclass
class Row:
    """One non-blank input line: its item, or why it has none."""

    line: int
    item: Item | None
    id: Any = None  # the id as written (str or int), also for rows that failed
    error: str | None = None


def _resolve(value: Any, base: Path) -> Any:
    """Relative media paths in a JSONL file are relative to that file's directory."""
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


def read_items(path: Path, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> list[Row]:
    """The rows of an items file, one per non-blank line; a line that is not valid UTF-8 / JSON / an item is
    a row with an `error` naming `FILE:LINE` (and the field), and never moves another row."""
    rows: list[Row] = []
    base = path.parent
    for line in iter_json_lines(path, max_line_bytes):
        where = f"{path.name}:{line.number}"
        if line.error is not None:
            rows.append(Row(line.number, None, None, f"{where}: invalid item row ({line.error})"))
            continue
        value, rid = line.value, _raw_id(line.value)
        if isinstance(value, dict):
            value = {k: _resolve(v, base) if k in ("image", "images", "video") else v for k, v in value.items()}
        try:
            item = Item.from_dict(value, source=where)
        except InputError as e:
            label = where + (f" (id={rid!r})" if rid is not None else "")
            rows.append(Row(line.number, None, rid, f"{label}: invalid item row ({e})"))
            continue
        rows.append(Row(line.number, item, rid))
    return rows


def item_seed(seed: int, index: int) -> int:
    """The sampling seed of row `index` under `--seed`: fixed by the row, whatever the batching."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1, dtype=np.uint64)[0] >> 1)


def run_embed(model: str, input_path: Path, output: Path, mode: str = "disc", samples: int = 1,
              batch_size: int = 8, max_new_tokens: int | None = None, temperature: float | None = None,
              top_p: float | None = None, top_k: int | None = None, repetition_penalty: float | None = None,
              seed: int | None = None, device: str | None = None, dtype: str | None = None,
              on_error: str = "skip", max_item_tokens: int | None = None,
              max_batch_tokens: int | None = DEFAULT_MAX_BATCH_TOKENS,
              max_line_bytes: int = DEFAULT_MAX_LINE_BYTES, backend: str = "hf") -> str:
    """Run the job and write `embeddings.npy` (+ `disc_embeddings.npy` in mode both), `items.jsonl`,
    `errors.jsonl` and `run.json` as one folder.

    `max_item_tokens` (default: the model's context) is the longest prompt an item may have; `max_batch_tokens`
    bounds each batch's padded prompt tokens (None: batches of `batch_size` whatever their lengths)."""
    input_path, output = Path(input_path), Path(output)
    if not input_path.is_file():
        raise FileNotFoundError(f"input file not found (or not a regular file): {input_path}")
    check_output_dir(output, OUTPUT_FILES)  # before any work: a bad --output fails now, not after the model ran
    rows = read_items(input_path, max_line_bytes)
    errors: list[dict[str, Any]] = [{"index": i, "line": r.line, "id": r.id, "reason": r.error}
                                    for i, r in enumerate(rows) if r.error is not None]
    if errors and on_error == "raise":
        raise ValueError(errors[0]["reason"])

    from ume.encoder import load  # imported here: the checks above need no model

    encoder = load(model, device=device, dtype=dtype, backend=backend)
    limit = max_item_tokens or encoder.context_length()
    idx = [i for i, r in enumerate(rows) if r.item is not None]
    result = encoder.encode([rows[i].item for i in idx], mode=mode, batch_size=batch_size, num_samples=samples,
                            temperature=temperature, top_p=top_p, top_k=top_k, repetition_penalty=repetition_penalty,
                            max_new_tokens=max_new_tokens, on_error=on_error, show_progress=True,
                            seed=None if seed is None else [item_seed(seed, i) for i in idx],
                            max_item_tokens=limit, max_batch_tokens=max_batch_tokens)
    dim = encoder.dim
    embeddings = np.full((len(rows), *result.embeddings.shape[1:]), np.nan, dtype=np.float32)
    embeddings[idx] = result.embeddings
    discs = None
    if result.disc_embeddings is not None:
        discs = np.full((len(rows), dim), np.nan, dtype=np.float32)
        discs[idx] = result.disc_embeddings
    for e in result.errors:  # the encoder names each item by its source line already
        i = idx[e.index]
        errors.append({"index": i, "line": rows[i].line, "id": rows[i].id, "reason": e.reason})
    gen: dict[int, list[dict[str, Any]]] = {}
    forced = 0
    if result.texts is not None:
        forced = int(result.forced.sum())
        for j, i in enumerate(idx):
            gen[i] = [{"text": result.texts[j][s], "token_ids": result.token_ids[j][s],
                       "num_tokens": int(result.num_tokens[j, s]), "forced": bool(result.forced[j, s])}
                      for s in range(samples)]
    settings = dict(result.settings)
    failed = {e["index"] for e in errors}
    embeddings[sorted(failed)] = np.nan
    if discs is not None:
        discs[sorted(failed)] = np.nan
    records = []
    for i in idx:
        rec: dict[str, Any] = {"index": i, "line": rows[i].line, "id": rows[i].id, "ok": i not in failed}
        if i in gen:
            rec["samples"] = gen[i]
        records.append(rec)
    if seed is not None:
        settings["seed"] = {"seed": seed, "per_item": "item_seed(seed, row index)"}
    run = {"model": model, "input": str(input_path), "n_items": len(rows), "n_errors": len(failed), "dim": dim,
           "max_item_tokens": limit, "max_batch_tokens": max_batch_tokens, "settings": settings,
           "recipe": encoder.recipe.to_dict()}
    with staged_dir(output) as stage:
        write_npy(stage / "embeddings.npy", embeddings)
        if discs is not None:
            write_npy(stage / "disc_embeddings.npy", discs)
        write_jsonl(stage / "items.jsonl", records)
        write_jsonl(stage / "errors.jsonl", sorted(errors, key=lambda e: e["index"]))
        write_json(stage / "run.json", run)
    return (f"embedded {len(rows) - len(failed)}/{len(rows)} items ({mode}, dim {dim}); "
            f"{len(failed)} error(s), {forced} forced <gen_emb>; wrote {output}")
