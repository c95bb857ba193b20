"""`ume synth`: build MiniMMEB and draw a contact sheet of it (registered by ume.cli as a sub-app)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

synth_app = typer.Typer(no_args_is_help=True, help="MiniMMEB: a procedurally generated, MMEB-V2-shaped benchmark "
                                                   "and training set that runs on a CPU.")


class ScaleOpt(StrEnum):
    tiny = "tiny"
    small = "small"
    full = "full"


@synth_app.command("build")
def build_cmd(
    out: Annotated[Path, typer.Argument(help="Output directory (the data root for `ume eval --data-root`).")],
    seed: Annotated[int, typer.Option(help="Generator seed; the same seed gives byte-identical files.")] = 0,
    scale: Annotated[ScaleOpt, typer.Option(help="tiny: 12 queries/task; small: 200; full: 1000.")] = ScaleOpt.small,
    overwrite: Annotated[bool, typer.Option(help="Replace a previous MiniMMEB build in OUT.")] = False,
    jobs: Annotated[int | None, typer.Option(help="Worker processes (default: one per CPU, at most 8).")] = None,
) -> None:
    """Write every eval and hold-out task, train/sft.json, train/rl.json and manifest.json."""
    from ume.synth.build import build

    try:
        manifest = build(out, seed=seed, scale=scale.value, overwrite=overwrite, jobs=jobs)
    except FileExistsError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from None
    n = sum(t["n_queries"] for t in manifest["tasks"])
    typer.echo(f"wrote MiniMMEB ({scale.value}, seed {seed}) to {out}: {len(manifest['tasks'])} tasks, {n} queries, "
               f"{manifest['train']['sft']['pairs']} SFT and {manifest['train']['rl']['pairs']} RL pairs")


@synth_app.command("preview")
def preview_cmd(
    out: Annotated[Path, typer.Argument(help="A MiniMMEB build directory.")],
) -> None:
    """Write OUT/preview.png: for every task a query, its positive, a negative and the query's reasoning."""
    from ume.synth.preview import preview

    typer.echo(f"wrote {preview(out)}")
