"""`ume embed`: a JSONL file of items in; embeddings, per-item records and errors out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ume.encoder import load
from ume.io import write_json, write_jsonl, write_npy


def _resolve(value: Any, base: Path) -> Any:
    """Relative media paths in a JSONL file are relative to that file's directory."""
    if isinstance(value, str):
        p = Path(value)
        return str(base / p) if not p.is_absolute() else value
    if isinstance(value, list):
        return [_resolve(v, base) for v in value]
    return value


def read_items(path: Path) -> tuple[list[Any], list[dict[str, Any]]]:
    """Rows of an items file; an unparseable line becomes an error row (its index kept)."""
    rows: list[Any] = []
    errors: list[dict[str, Any]] = []
    base = path.parent
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if not isinstance(row, dict):
                raise ValueError("expected a JSON object")
        except ValueError as e:
            errors.append({"index": len(rows), "id": None, "reason": f"{path}:{n}: invalid item row ({e})"})
            rows.append(None)
            continue
        for key in ("image", "images", "video"):
            if row.get(key) is not None:
                row[key] = _resolve(row[key], base)
        rows.append(row)
    return rows, errors


def run_embed(model: str, input_path: Path, output: Path, mode: str = "disc", samples: int = 1,
              batch_size: int = 8, max_new_tokens: int | None = None, temperature: float | None = None,
              top_p: float | None = None, seed: int | None = None, device: str | None = None,
              dtype: str | None = None, on_error: str = "skip") -> str:
    """Run the job and write `embeddings.npy`, `items.jsonl`, `errors.jsonl` and `run.json` atomically."""
    if not input_path.is_file():
        raise FileNotFoundError(f"input file not found: {input_path}")
    rows, row_errors = read_items(input_path)
    if row_errors and on_error == "raise":
        raise ValueError(row_errors[0]["reason"])
    encoder = load(model, device=device, dtype=dtype)
    good = [i for i, r in enumerate(rows) if r is not None]
    result = encoder.encode([rows[i] for i in good], mode=mode, batch_size=batch_size, num_samples=samples,
                            temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens, seed=seed,
                            on_error=on_error, show_progress=True)

    shape = (len(rows), *result.embeddings.shape[1:])
    embeddings = np.full(shape, np.nan, dtype=np.float32)
    embeddings[good] = result.embeddings
    errors = row_errors + [{**e.to_dict(), "index": good[e.index]} for e in result.errors]
    failed = {e["index"] for e in errors}
    records = []
    for j, i in enumerate(good):
        rec: dict[str, Any] = {"index": i, "id": rows[i].get("id"), "ok": i not in failed}
        if mode == "gen" and result.texts is not None:
            rec["samples"] = [
                {"text": result.texts[j][s], "token_ids": result.token_ids[j][s],
                 "num_tokens": int(result.num_tokens[j, s]), "forced": bool(result.forced[j, s])}
                for s in range(samples)]
        records.append(rec)
    output.mkdir(parents=True, exist_ok=True)
    write_npy(output / "embeddings.npy", embeddings)
    write_jsonl(output / "items.jsonl", records)
    write_jsonl(output / "errors.jsonl", sorted(errors, key=lambda e: e["index"]))
    write_json(output / "run.json", {"model": model, "input": str(input_path), "n_items": len(rows),
                                     "n_errors": len(errors), "dim": int(embeddings.shape[-1]),
                                     "settings": result.settings, "recipe": encoder.recipe.to_dict()})
    forced = int(result.forced.sum()) if result.forced is not None else 0
    return (f"embedded {len(rows) - len(errors)}/{len(rows)} items ({mode}, dim {embeddings.shape[-1]}); "
            f"{len(errors)} error(s), {forced} forced <gen_emb>; wrote {output}")
