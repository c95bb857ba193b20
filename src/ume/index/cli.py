"""`ume index build` and `ume search` (faiss and the model are imported inside the commands)."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

index_app = typer.Typer(no_args_is_help=True, help="Vector indexes over a corpus (faiss, on disk, resumable).")


class IndexMode(StrEnum):
    disc = "disc"
    gen = "gen"


class IndexKind(StrEnum):
    exact = "exact"
    hnsw = "hnsw"


@index_app.command("build")
def build_cmd(
    model: Annotated[str, typer.Option(help="Checkpoint: local directory or hub id.")],
    input: Annotated[Path, typer.Option("--input", help="corpus.jsonl (text, image(s), video, id) or a directory "
                                                         "of images / videos / .txt files.")],
    output: Annotated[Path, typer.Option(help="Index directory (a killed build resumes here).")],
    mode: Annotated[IndexMode, typer.Option(help="disc: one forward; gen: reason, then embed.")] = IndexMode.disc,
    ann: Annotated[IndexKind, typer.Option(help="exact (flat inner product) or hnsw (approximate, large corpora).")] = (
        IndexKind.exact),
    batch_size: Annotated[int, typer.Option(help="Items per encoder batch.")] = 8,
    chunk_size: Annotated[int, typer.Option(help="Items per resumable chunk.")] = 64,
    max_new_tokens: Annotated[int | None, typer.Option(help="Reasoning budget (gen).")] = None,
    instruction: Annotated[str, typer.Option(help="Text given with each media file of a directory.")] = "",
    device: Annotated[str | None, typer.Option(help="cpu, cuda, ...")] = None,
) -> None:
    """Embed a corpus into an index directory; failed items are listed, never silently dropped."""
    from ume.index import Index

    idx = Index.build(model, input, output, mode=mode.value, kind=ann.value, batch_size=batch_size,
                      chunk_size=chunk_size, max_new_tokens=max_new_tokens, instruction=instruction, device=device)
    m = idx.meta
    typer.echo(f"indexed {m['indexed']}/{m['count']} items ({m['mode']}, {m['kind']}, dim {m['dim']}) in {output}; "
               f"{m['failed']} failed, {m['encoded_this_run']} encoded this run, {m['build_s']:.1f} s")
    for rec in idx.items:
        if not rec["ok"]:
            typer.echo(f"failed {rec['id']}: {rec.get('error')}", err=True)


def _table(label: str, idx, hits) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=160)
    console.print(f"{label} in {idx.path} ({idx.mode}, {len(idx)} items)", highlight=False, markup=False)
    table = Table()
    for col, just in (("#", "right"), ("score", "right"), ("id", "left"), ("text", "left")):
        table.add_column(col, justify=just)
    gen = any(h.reasoning for h in hits)
    if gen:
        table.add_column("reasoning", overflow="fold")
    for h in hits:
        row = [str(h.rank), f"{h.score:.4f}", h.id, (h.text or "")[:40]]
        table.add_row(*(row + ([(h.reasoning or "")[:80]] if gen else [])))
    console.print(table)


def search_cmd(
    index: Annotated[Path, typer.Argument(help="An index directory from `ume index build`.")],
    query: Annotated[str, typer.Argument(help="Query text.")] = "",
    image: Annotated[Path | None, typer.Option(help="A query image (with or without text).")] = None,
    queries: Annotated[Path | None, typer.Option(
        help="Many queries: a JSONL file of items (text, image(s), video, id), one search each.")] = None,
    k: Annotated[int, typer.Option("-k", "--top-k", help="Hits to show.")] = 10,
    mode: Annotated[IndexMode | None, typer.Option(help="Query mode (default: the index's).")] = None,
    max_new_tokens: Annotated[int | None, typer.Option(help="Query reasoning budget (gen).")] = None,
    sheet: Annotated[Path | None, typer.Option(help="Write a contact-sheet PNG of the top hits.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the hits as JSON lines.")] = False,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, ...")] = None,
) -> None:
    """Search an index with a text and/or image query (or a file of queries); prints a ranked table."""
    from ume.index import Index, contact_sheet

    if not query and image is None and queries is None:
        raise typer.BadParameter("give a query text, --image, or --queries FILE")
    idx = Index(index)
    if device is not None:
        idx.meta["device"] = device
    qmode = mode.value if mode else None
    if queries is not None:
        from ume.index import read_item_rows

        parsed = read_item_rows(queries)
        bad = [err for _, row, err in parsed if row is None]
        if bad:
            raise typer.BadParameter(bad[0], param_hint="--queries")
        rows = [row for _, row, _ in parsed]
        labels = [str(r.get("id", i)) for i, r in enumerate(rows)]
        results = idx.search(rows, k=k, mode=qmode, max_new_tokens=max_new_tokens)
    else:
        labels = [repr(query) + (f" + {image.name}" if image else "")]
        results = [idx.search(query, k=k, image=image, mode=qmode, max_new_tokens=max_new_tokens)]
    for label, hits in zip(labels, results, strict=True):
        if as_json:
            for h in hits:
                typer.echo(json.dumps({"query": label, **h.to_dict()}, ensure_ascii=False))
        else:
            _table(label, idx, hits)
    if sheet is not None:
        typer.echo(f"contact sheet: {contact_sheet(results[0], sheet, title=labels[0])}", err=True)
