"""The `ume` command line: one Typer app over the library's dataclasses and functions."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="UME-R1 multimodal embeddings: embed, build tiny checkpoints, evaluate, train.")
tiny_app = typer.Typer(no_args_is_help=True, help="Tiny offline Qwen-VL checkpoints for tests and demos.")
app.add_typer(tiny_app, name="tiny")


class ModeOpt(StrEnum):
    disc = "disc"
    gen = "gen"


class FamilyOpt(StrEnum):
    qwen2_vl = "qwen2_vl"
    qwen2_5_vl = "qwen2_5_vl"
    qwen3_vl = "qwen3_vl"


class SizeOpt(StrEnum):
    tiny = "tiny"
    small = "small"
    mid = "mid"


@app.command()
def embed(
    model: Annotated[str, typer.Option(help="Checkpoint: local directory or hub id.")],
    input: Annotated[Path, typer.Option("--input", help="JSONL, one item per line: text, image(s), video, id.")],
    output: Annotated[Path, typer.Option(help="Directory for embeddings.npy, items.jsonl, errors.jsonl.")],
    mode: Annotated[ModeOpt, typer.Option(help="disc: one forward; gen: reason, then embed.")] = ModeOpt.disc,
    samples: Annotated[int, typer.Option(help="Reasoning samples per item (gen); >1 samples at T=1.")] = 1,
    batch_size: Annotated[int, typer.Option(help="Items per batch.")] = 8,
    max_new_tokens: Annotated[int | None, typer.Option(help="Reasoning budget (gen).")] = None,
    temperature: Annotated[float | None, typer.Option(help="Sampling temperature (gen); 0 = greedy.")] = None,
    top_p: Annotated[float | None, typer.Option(help="Nucleus sampling (gen).")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed for reproducible sampling.")] = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, cuda:1 ... (default: cuda if present).")] = None,
    dtype: Annotated[str | None, typer.Option(help="float32 | bfloat16 (default: bf16 on GPU, fp32 on CPU).")] = None,
    fail_fast: Annotated[bool, typer.Option(help="Stop at the first bad item instead of reporting it.")] = False,
) -> None:
    """Embed the items of a JSONL file; bad items are reported in errors.jsonl, never lost silently."""
    from ume.embed_job import run_embed

    summary = run_embed(model=model, input_path=input, output=output, mode=mode.value, samples=samples,
                        batch_size=batch_size, max_new_tokens=max_new_tokens, temperature=temperature,
                        top_p=top_p, seed=seed, device=device, dtype=dtype,
                        on_error="raise" if fail_fast else "skip")
    typer.echo(summary)


@tiny_app.command("build")
def tiny_build(
    out: Annotated[Path, typer.Argument(help="Output directory.")],
    family: Annotated[FamilyOpt, typer.Option(help="Model family.")] = FamilyOpt.qwen2_vl,
    seed: Annotated[int, typer.Option(help="Seed for tokenizer corpus and weights.")] = 0,
    size: Annotated[SizeOpt, typer.Option(help="tiny (~0.3M params), small, mid (hidden 512, 8 layers).")] = (
        SizeOpt.tiny
    ),
    with_ume_tokens: Annotated[bool, typer.Option(help="Include <gen_emb>/<disc_emb> (a released UME-R1).")] = False,
    vocab_room: Annotated[int, typer.Option(help="Spare embedding rows (0 forces a resize on load).")] = 64,
) -> None:
    """Write a small random checkpoint (real transformers classes, offline BPE tokenizer)."""
    from ume.tiny import build_tiny

    path = build_tiny(out, family=family.value, seed=seed, size=size.value, with_ume_tokens=with_ume_tokens,
                      vocab_room=vocab_room)
    typer.echo(f"wrote {family.value} ({size.value}, seed {seed}) to {path}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
