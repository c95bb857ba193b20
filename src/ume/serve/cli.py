"""`ume serve`: the Typer command (web-framework imports happen inside it)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ume.serve.limits import ServeConfig, ServeLimits

_D = ServeLimits()


def serve_cmd(
    model: Annotated[str, typer.Option(help="Checkpoint: local directory or hub id.")],
    host: Annotated[str, typer.Option(help="Bind address (0.0.0.0 to listen on every interface).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    model_name: Annotated[str | None, typer.Option(help="Model id clients send (default: directory name).")] = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, ... (default: cuda if present).")] = None,
    dtype: Annotated[str | None, typer.Option(help="float32 | bfloat16.")] = None,
    api_key: Annotated[str | None, typer.Option(envvar="UME_API_KEY",
                                                help="Require `Authorization: Bearer KEY` on /v1/*.")] = None,
    allow_local_media: Annotated[Path | None, typer.Option(
        help="Let requests name files under this directory (off: data URLs only).")] = None,
    allow_url_fetch: Annotated[bool, typer.Option(help="Let requests name http(s) media URLs.")] = False,
    batching: Annotated[bool, typer.Option(help="Merge concurrent requests into encoder calls.")] = True,
    max_batch_items: Annotated[int, typer.Option(help="Items per merged encoder call.")] = 32,
    max_wait_ms: Annotated[float, typer.Option(help="How long an idle worker waits for companions.")] = 5.0,
    batch_size: Annotated[int, typer.Option(help="The encoder's micro-batch.")] = 16,
    max_queue_items: Annotated[int, typer.Option(help="Items waiting before 503 + Retry-After.")] = 256,
    truncate_dims: Annotated[str, typer.Option(
        help="Comma-separated `dimensions` values to allow (prefix + re-normalise); default: native only.")] = "",
    max_body_bytes: Annotated[int, typer.Option(help="Request body limit.")] = _D.max_body_bytes,
    max_items: Annotated[int, typer.Option(help="Items per request.")] = _D.max_items,
    max_text_chars: Annotated[int, typer.Option(help="Characters of one item's text.")] = _D.max_text_chars,
    max_image_pixels: Annotated[int, typer.Option(help="Pixels of one image / frame.")] = _D.max_image_pixels,
    max_frames: Annotated[int, typer.Option(help="Frames of one video.")] = _D.max_frames,
    max_new_tokens: Annotated[int, typer.Option(help="Ceiling (and default) of the reasoning budget.")] = (
        _D.max_new_tokens),
    max_num_samples: Annotated[int, typer.Option(help="Reasoning samples per item.")] = _D.max_num_samples,
    request_timeout_s: Annotated[float, typer.Option(help="Seconds per request, queueing included.")] = (
        _D.request_timeout_s),
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Serve OpenAI-compatible /v1/embeddings (plus /v1/models, /health, /metrics) over the encoder."""
    import uvicorn

    from ume.serve.app import create_app

    limits = ServeLimits(max_body_bytes=max_body_bytes, max_items=max_items, max_text_chars=max_text_chars,
                         max_image_pixels=max_image_pixels, max_frames=max_frames, max_new_tokens=max_new_tokens,
                         max_num_samples=max_num_samples, request_timeout_s=request_timeout_s)
    if allow_local_media is not None and not allow_local_media.is_dir():
        raise typer.BadParameter(f"{allow_local_media} is not a directory", param_hint="--allow-local-media")
    cfg = ServeConfig(model=model, model_name=model_name, device=device, dtype=dtype, limits=limits,
                      batching=batching, max_batch_items=max_batch_items, max_wait_ms=max_wait_ms,
                      batch_size=batch_size, max_queue_items=max_queue_items,
                      truncate_dims=tuple(int(d) for d in truncate_dims.split(",") if d.strip()),
                      api_key=api_key, allow_local_media=allow_local_media, allow_url_fetch=allow_url_fetch)
    typer.echo(f"ume serve: {cfg.served_name} on http://{host}:{port}/v1 (batching {'on' if batching else 'off'}, "
               f"api key {'required' if api_key else 'off'}, local media {allow_local_media or 'off'}, "
               f"url fetch {'on' if allow_url_fetch else 'off'})", err=True)
    # on SIGTERM: stop taking connections, give in-flight requests 10 s, then cancel them and stop the worker
    uvicorn.run(create_app(cfg), host=host, port=port, log_level=log_level, timeout_graceful_shutdown=10)
