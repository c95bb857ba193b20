"""The `ume` command line: one Typer app over the library's dataclasses and functions."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from ume.backends import BACKENDS
from ume.families import FAMILIES

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="UME-R1 multimodal embeddings: embed, build tiny checkpoints, evaluate, train.")
tiny_app = typer.Typer(no_args_is_help=True, help="Tiny offline Qwen-VL checkpoints for tests and demos.")
app.add_typer(tiny_app, name="tiny")
data_app = typer.Typer(no_args_is_help=True, help="Benchmark data on disk.")
app.add_typer(data_app, name="data")


def _add_subapps() -> None:
    from ume.index.cli import index_app, search_cmd
    from ume.serve.cli import serve_cmd
    from ume.synth.cli import synth_app
    from ume.train.cli import train_app

    app.add_typer(synth_app, name="synth")
    app.add_typer(train_app, name="train")
    app.add_typer(index_app, name="index")
    app.command("serve")(serve_cmd)
    app.command("search")(search_cmd)


_add_subapps()


class ModeOpt(StrEnum):
    disc = "disc"
    gen = "gen"


BackendOpt = StrEnum("BackendOpt", {name: name for name in BACKENDS})  # the registry's names are the choices
BACKEND_HELP = "; ".join(f"{name}: {b.summary}" for name, b in BACKENDS.items())


class EmbedModeOpt(StrEnum):
    disc = "disc"
    gen = "gen"
    both = "both"


FamilyOpt = StrEnum("FamilyOpt", {name: name for name in FAMILIES})  # the family records are the choices


class SizeOpt(StrEnum):
    tiny = "tiny"
    small = "small"
    demo = "demo"
    mid = "mid"


class EngineOpt(StrEnum):
    local = "local"
    ray = "ray"


# how a checkpoint is loaded (ume.load's arguments), shared by the commands that load one
AttnOpt = Annotated[str | None, typer.Option(
    help="transformers attention kernel: sdpa, eager, flash_attention_2 (GPU; fast on large images).")]
MinPixelsOpt = Annotated[int | None, typer.Option(help="Per-image pixel floor (default: the recipe's).")]
MaxPixelsOpt = Annotated[int | None, typer.Option(
    help="Per-image pixel cap (default: the recipe's 1536^2); lower it to bound memory (changes vectors).")]

@app.command()
def embed(
    model: Annotated[str, typer.Option(help="Checkpoint: local directory or hub id.")],
    input: Annotated[Path, typer.Option("--input", help=(
        "JSONL (one item per line: text, image(s), video, id), a folder of media files, a parquet file or folder "
        "(image columns as HF publishes them), or a datasets save_to_disk folder."))],
    output: Annotated[Path, typer.Option(help="Run folder: chunks/, manifest.json, errors.jsonl, run.json and "
                                              "the merged embeddings.npy, items.jsonl.")],
    mode: Annotated[EmbedModeOpt, typer.Option(
        help="disc: one forward; gen: reason, then embed; both: gen + disc from the same prefill.")] = (
        EmbedModeOpt.disc),
    samples: Annotated[int, typer.Option(help="Reasoning samples per item (gen); >1 samples at T=1.")] = 1,
    batch_size: Annotated[int, typer.Option(help="Items per batch.")] = 8,
    max_new_tokens: Annotated[int | None, typer.Option(help="Reasoning budget (gen).")] = None,
    temperature: Annotated[float | None, typer.Option(help="Sampling temperature (gen); 0 = greedy.")] = None,
    top_p: Annotated[float | None, typer.Option(help="Nucleus sampling (gen).")] = None,
    top_k: Annotated[int | None, typer.Option(help="Top-k sampling (gen); 0 = off.")] = None,
    repetition_penalty: Annotated[float | None, typer.Option(help="Repetition penalty (gen).")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed for reproducible sampling.")] = None,
    backend: Annotated[BackendOpt, typer.Option(help=f"Generation backend ({BACKEND_HELP}).")] = BackendOpt.hf,
    max_item_tokens: Annotated[int | None, typer.Option(
        help="Longest prompt an item may have, in tokens (default: the model's context).")] = None,
    max_batch_tokens: Annotated[int, typer.Option(
        help="Padded prompt tokens per batch (items x longest); 0 = no budget.")] = 16384,
    chunk_size: Annotated[int, typer.Option(help="Rows per chunk: the unit written, resumed and sharded.")] = 256,
    column: Annotated[list[str] | None, typer.Option(
        help="Parquet / datasets inputs: FIELD=COLUMN for a field (text, image, images, video, id) whose column has "
             "another name (repeatable).")] = None,
    instruction: Annotated[str, typer.Option(
        help="Text of items that have none (media files from a folder, image-only rows).")] = "",
    merge: Annotated[bool, typer.Option(
        help="When every chunk is done, also write embeddings.npy and items.jsonl (--no-merge: chunks only; "
             "ume.open_embeddings merges on first use).")] = True,
    overwrite: Annotated[bool, typer.Option(
        help="Replace a run of other settings in --output instead of refusing.")] = False,
    engine: Annotated[EngineOpt, typer.Option(
        help="local: this process (one per rank under torchrun); ray: Ray Data actors (pip install 'ume[ray]').")] = (
        EngineOpt.local),
    workers: Annotated[int, typer.Option(help="Ray actors (--engine ray).")] = 1,
    gpus_per_worker: Annotated[float, typer.Option(help="GPUs per Ray actor (--engine ray).")] = 0.0,
    cpus_per_worker: Annotated[float, typer.Option(help="CPUs per Ray actor (--engine ray).")] = 1.0,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, cuda:1 ... (default: cuda if present).")] = None,
    dtype: Annotated[str | None, typer.Option(help="float32 | bfloat16 (default: bf16 on GPU, fp32 on CPU).")] = None,
    attn_implementation: AttnOpt = None,
    min_pixels: MinPixelsOpt = None,
    max_pixels: MaxPixelsOpt = None,
    fail_fast: Annotated[bool, typer.Option(help="Stop at the first bad item instead of reporting it.")] = False,
    allow_errors: Annotated[bool, typer.Option(
        help="Exit 0 even when some items produced no embedding (they are listed in errors.jsonl).")] = False,
) -> None:
    """Embed a corpus, chunk by chunk: resumable (rerun the same command after a kill), shardable with torchrun
    (torchrun --nproc-per-node N -m ume embed ...) or Ray. Bad items are listed in errors.jsonl, never lost
    silently; exits 1 when an item produced no embedding (unless --allow-errors), 2 when the run is refused."""
    from ume.embed.job import REFUSALS, EmbedConfig, run
    from ume.inputs import InputError

    pairs = [c.partition("=") for c in column or []]
    if any(not sep or not name for _, sep, name in pairs):
        typer.echo("error: --column takes FIELD=COLUMN, e.g. --column image=page", err=True)
        raise typer.Exit(2)
    cfg = EmbedConfig(model=model, input=str(input), output=str(output), mode=mode.value, samples=samples,
                      batch_size=batch_size, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                      top_k=top_k, repetition_penalty=repetition_penalty, seed=seed, device=device, dtype=dtype,
                      backend=backend.value, on_error="raise" if fail_fast else "skip",
                      max_item_tokens=max_item_tokens, max_batch_tokens=max_batch_tokens or None,
                      chunk_size=chunk_size, columns={f: c for f, _, c in pairs}, instruction=instruction,
                      merge=merge, overwrite=overwrite, engine=engine.value, workers=workers,
                      gpus_per_worker=gpus_per_worker, cpus_per_worker=cpus_per_worker,
                      attn_implementation=attn_implementation, min_pixels=min_pixels, max_pixels=max_pixels)
    try:
        summary = run(cfg)
    except REFUSALS as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    except InputError as e:  # --fail-fast
        typer.echo(f"error: {e}\nstopped by --fail-fast; the chunks done are kept: rerun to resume", err=True)
        raise typer.Exit(1) from None
    if summary is None:  # a torchrun rank other than 0: rank 0 reports
        return
    if summary.n_errors and not allow_errors:
        typer.echo(f"{summary.line}; exit 1: {summary.n_errors} item(s) produced no embedding (errors.jsonl; "
                   "--allow-errors exits 0)")
        raise typer.Exit(1)
    typer.echo(summary.line)


class ProtocolOpt(StrEnum):
    ume_r1 = "ume-r1"
    vlm2vec = "vlm2vec"


class TiesOpt(StrEnum):
    ume = "ume"
    reference = "reference"


@app.command("eval")
def eval_cmd(
    model: Annotated[str | None, typer.Option(help="Checkpoint: local directory or hub id.")] = None,
    data_root: Annotated[Path | None, typer.Option(
        help="A tree of dataset snapshots, ROOT/<owner>/<repo> (huggingface-cli download ... --local-dir), or a "
             "MiniMMEB build. Default: the Hugging Face hub cache, offline.")] = None,
    output: Annotated[Path, typer.Option(help="Report directory.")] = Path("runs/eval"),
    task: Annotated[list[str] | None, typer.Option(help="Task name (repeatable).")] = None,
    benchmark: Annotated[str | None, typer.Option(help="mmeb-v2 | mmeb-v2-image|video|visdoc | minimmeb")] = None,
    modality: Annotated[str | None, typer.Option(help="image | video | visdoc")] = None,
    meta_task: Annotated[str | None, typer.Option(help="e.g. CLS, QA, RET, GD, MRET, VDRv1, image/CLS")] = None,
    qry_mode: Annotated[ModeOpt, typer.Option(help="Query-side embedding mode.")] = ModeOpt.disc,
    tgt_mode: Annotated[ModeOpt, typer.Option(help="Candidate-side embedding mode.")] = ModeOpt.disc,
    samples: Annotated[int, typer.Option(help="pass@k: k sampled gen embeddings per query.")] = 1,
    oracle: Annotated[bool, typer.Option(help="Also run disc/disc and gen/gen and the per-query oracle.")] = False,
    batch_size: Annotated[int, typer.Option(help="Items per batch.")] = 8,
    max_new_tokens: Annotated[int | None, typer.Option(help="Reasoning budget (gen).")] = None,
    seed: Annotated[int, typer.Option(help="Seed for pass@k sampling.")] = 0,
    pred_top_k: Annotated[int, typer.Option(help="Predictions kept per query (0 = all).")] = 10,
    limit: Annotated[int | None, typer.Option(help="First N queries per task (smoke runs).")] = None,
    pool_limit: Annotated[int | None, typer.Option(help="Global tasks: positives + first N other candidates.")] = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, ... (default: cuda if present).")] = None,
    dtype: Annotated[str | None, typer.Option(help="float32 | bfloat16.")] = None,
    cache_dir: Annotated[Path | None, typer.Option(help="Embedding cache (default OUTPUT/cache).")] = None,
    media_root: Annotated[Path | None, typer.Option(
        help="An unpacked TIGER-Lab/MMEB-V2 (image-tasks/, video-tasks/frames/) outside the data root.")] = None,
    download: Annotated[bool, typer.Option(help="Fetch repos missing from the data root / cache (online).")] = False,
    protocol: Annotated[ProtocolOpt, typer.Option(
        help="Prompt set: ume-r1 (UME-R1's eval strings: no instructions on ViDoRe tasks) or vlm2vec.")] = (
        ProtocolOpt.ume_r1),
    ties: Annotated[TiesOpt, typer.Option(
        help="Ranking ties: ume (scores rounded to 1e-6, stable) or reference (raw float32 argsort).")] = TiesOpt.ume,
    allow_missing: Annotated[bool, typer.Option(
        help="Exit 0 even when some selected tasks could not be loaded (they are still reported).")] = False,
    fixed_page_names: Annotated[bool, typer.Option(
        "--fixed-page-names/--canonical-page-names",
        help="Leaderboard keys ViDoSeek-page-fixed / MMLongBench-page-fixed, as report_score_v2.py writes them "
             "for the current split; canonical names for comparisons with the old split's files.")] = True,
    backend: Annotated[BackendOpt, typer.Option(
        help=f"Generation backend of gen mode ({BACKEND_HELP}).")] = BackendOpt.hf,
    fail_fast: Annotated[bool, typer.Option(help="Stop at the first bad row or item instead of reporting it.")] = False,
    overwrite: Annotated[bool, typer.Option(
        help="Reuse an output folder holding results of other settings (its runs/ are replaced).")] = False,
    attn_implementation: AttnOpt = None,
    min_pixels: MinPixelsOpt = None,
    max_pixels: MaxPixelsOpt = None,
    list_tasks: Annotated[bool, typer.Option("--list", help="List the selected tasks and exit.")] = False,
) -> None:
    """Evaluate on MMEB-V2 or MiniMMEB: cached, resumable, shardable with torchrun; writes a report.

    Exits 1 when a selected task could not be loaded (unless --allow-missing) or when no task scored; the
    last line says how many tasks scored and which are missing."""
    from ume.evaluate.tasks import select_tasks

    if list_tasks:  # tab-separated, one task per line after a header: `cut` / `column -t` friendly
        typer.echo("task\tbenchmark\tmodality\tmeta_task\tloader\tranking\tmetric\tdataset\tconfig\tsplit\tmedia")
        for t in select_tasks(task or (), benchmark, modality, meta_task):
            typer.echo("\t".join((t.name, t.benchmark, t.modality, t.meta_task, t.loader, t.ranking, t.metric,
                                  t.source, t.subset or "-", t.split, t.media or "-")))
        return
    if model is None:
        raise typer.BadParameter("--model is required (or use --list)")
    select_tasks(task or (), benchmark, modality, meta_task)  # a bad selection fails before any model loads
    if qry_mode != tgt_mode:
        typer.echo(f"warning: --qry-mode {qry_mode.value} with --tgt-mode {tgt_mode.value} compares a {qry_mode.value} "
                   f"and a {tgt_mode.value} vector, two spaces UME-R1 never trained against each other (R@1 fell "
                   "from 0.475 to 0.10 on a 40-image test); the paper's runs are gen/gen and disc/disc", err=True)
    from ume.evaluate.runner import EvalConfig, run_eval

    cfg = EvalConfig(model=model, data_root=None if data_root is None else str(data_root), output=str(output),
                     tasks=tuple(task or ()), benchmark=benchmark, modality=modality, meta_task=meta_task,
                     qry_mode=qry_mode.value, tgt_mode=tgt_mode.value, samples=samples, oracle=oracle,
                     batch_size=batch_size, max_new_tokens=max_new_tokens, seed=seed, pred_top_k=pred_top_k,
                     limit=limit, pool_limit=pool_limit, device=device, dtype=dtype,
                     cache_dir=str(cache_dir) if cache_dir else None,
                     media_root=None if media_root is None else str(media_root), download=download,
                     protocol=protocol.value, ties=ties.value, allow_missing=allow_missing,
                     fixed_page_names=fixed_page_names, backend=backend.value, fail_fast=fail_fast,
                     overwrite=overwrite, attn_implementation=attn_implementation, min_pixels=min_pixels,
                     max_pixels=max_pixels)
    summary = run_eval(cfg)
    if not summary:  # a torchrun rank other than 0: rank 0 reports
        return
    if (output / "report.md").exists():
        typer.echo((output / "report.md").read_text())
    missing = summary.get("missing", {})
    for name, reason in missing.items():
        typer.echo(f"missing {name}: {reason}", err=True)
    scored, selected = summary["scored"], summary["selected"]
    typer.echo(f"report: {output}")
    typer.echo(f"{scored}/{selected} tasks scored, {len(missing)} missing"
               + (f": {', '.join(missing)}" if missing else ""))
    if scored == 0 or (missing and not allow_missing):
        raise typer.Exit(1)


@app.command("demo")
def demo_cmd(
    output: Annotated[Path, typer.Option(help="Report directory.")] = Path("runs/demo-report"),
    retrain: Annotated[bool, typer.Option(help="Rebuild the shipped models with ume's own commands first.")] = False,
    limit: Annotated[int, typer.Option(help="Queries per task (the full build has 200).")] = 20,
    pool_limit: Annotated[int, typer.Option(help="Global tasks: distractors besides the positives.")] = 30,
    samples: Annotated[int, typer.Option(help="pass@k: reasoning samples per query.")] = 8,
    models: Annotated[Path | None, typer.Option(
        help="Folder of the shipped demo models (default: the repository's models/).")] = None,
) -> None:
    """The built-in default: evaluate the shipped MiniMMEB models (disc, gen, oracle, pass@k)."""
    from ume.demo import MODELS, DemoPlan, ensure_data, run_demo, write_card
    from ume.demo import retrain as do_retrain

    plan = DemoPlan(models=models or MODELS)
    if not retrain and not (plan.models / "ume-demo-sft").is_dir():  # ume installed from a wheel, not a clone
        raise FileNotFoundError(f"the shipped demo models are not at {plan.models}: run `ume demo` from a clone of "
                                "the repository, pass --models DIR, or build them with --retrain")
    times = None
    if retrain:
        ensure_data(plan)
        times = do_retrain(plan)
    summary = run_demo(output, plan, limit=limit, pool_limit=pool_limit, samples=samples)
    if times is not None:
        typer.echo(f"training card: {write_card(plan, times, summary)}")
    typer.echo((output / "demo.md").read_text())
    typer.echo(f"report: {output} ({summary['wall_s']:.0f} s)")


@app.command("report")
def report_cmd(dirs: Annotated[list[Path], typer.Argument(help="Report directories from `ume eval`.")]) -> None:
    """Compare several evaluation runs side by side."""
    from ume.evaluate.report import compare

    typer.echo(compare(dirs))


@data_app.command("repos")
def data_repos(
    benchmark: Annotated[str, typer.Option(help="mmeb-v2 | mmeb-v2-image|video|visdoc")] = "mmeb-v2",
    data_root: Annotated[Path, typer.Option(help="Where the snapshots go (ROOT/<owner>/<repo>).")] = Path("ROOT"),
) -> None:
    """Print the download command of every repo a benchmark reads (rows and media), one per line."""
    from ume.evaluate.sources import download_hint
    from ume.evaluate.tasks import select_tasks

    tasks = select_tasks(benchmark=benchmark)
    repos = dict.fromkeys([t.source for t in tasks] + [t.media for t in tasks if t.media])
    for repo in repos:
        typer.echo(download_hint(repo, data_root))
    if any(t.media for t in tasks):
        typer.echo(f"ume data unpack {data_root / 'TIGER-Lab/MMEB-V2'}")


@data_app.command("unpack")
def data_unpack(
    directory: Annotated[Path, typer.Argument(help="A download of TIGER-Lab/MMEB-V2 (its archives inside).")],
) -> None:
    """Extract MMEB-V2's image and frame archives in place, as the reference's download_data.sh does."""
    from ume.evaluate.unpack import unpack_media

    done = unpack_media(directory)
    typer.echo(f"unpacked {len(done)} archive(s) in {directory}" + (f": {', '.join(done)}" if done else
                                                                    " (nothing left to unpack)"))


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
    corpus: Annotated[Path | None, typer.Option(help="Extra tokenizer text: a .txt file or an SFT .json.")] = None,
) -> None:
    """Write a small random checkpoint (real transformers classes, offline BPE tokenizer)."""
    from ume.tiny import build_tiny, read_corpus

    path = build_tiny(out, family=family.value, seed=seed, size=size.value, with_ume_tokens=with_ume_tokens,
                      vocab_room=vocab_room, corpus=read_corpus(corpus) if corpus else ())
    typer.echo(f"wrote {family.value} ({size.value}, seed {seed}) to {path}")


# what a person can fix from a one-line message (a path, a value, a setting, a busy folder, the network);
# anything else is a bug and keeps its traceback
USER_ERRORS = (OSError, ValueError, LookupError, ImportError)


def main(argv: list[str] | None = None) -> None:
    """`ume`: expected errors print one or two lines naming the cause and exit 2; `--debug` (anywhere on the
    command line) or UME_DEBUG=1 shows the traceback instead."""
    import os
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("UME_DEBUG", "") not in ("", "0")
    args = [a for a in args if a != "--debug"]
    try:
        code = app(args, prog_name="ume", standalone_mode=False)  # a command's typer.Exit(n) comes back as n
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except typer.Abort:
        sys.exit(130)
    except typer.TyperException as e:  # usage errors (a bad option or value): their own message, exit 2
        e.show()  # type: ignore[attr-defined]
        sys.exit(getattr(e, "exit_code", 2))
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except USER_ERRORS as e:
        if debug:
            raise
        typer.echo(f"error: {one_line(e)}", err=True)
        typer.echo("(run with --debug or UME_DEBUG=1 for the traceback)", err=True)
        sys.exit(2)
    if isinstance(code, int) and code:
        sys.exit(code)


def one_line(error: BaseException) -> str:
    """The message of an error, at most a few hundred characters: its first paragraph, its type if empty."""
    text = str(error).strip() or type(error).__name__
    if isinstance(error, KeyError):  # str(KeyError) is the key's repr
        text = f"missing key {text}"
    first = text.split("\n\n")[0].replace("\n", " ")
    return first if len(first) <= 400 else first[:397] + "..."


if __name__ == "__main__":
    main()
