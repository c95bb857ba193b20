"""The FastAPI app: OpenAI-compatible `/v1/embeddings` over `Encoder.encode` (no second model path).

Routes: `POST /v1/embeddings`, `GET /v1/models` (API key required when one is set), `GET /health`,
`GET /metrics` (Prometheus text; open, for scrapers). Errors use OpenAI's shape:
`{"error": {"message", "type", "param", "code"}}`, with `param` naming the limit or field at fault.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hmac
import json
import re
import time
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from ume.encoder import Encoder, EncodeResult
from ume.serve.batcher import Batcher, Job, QueueFull
from ume.serve.limits import LimitError, RequestError, ServeConfig
from ume.serve.metrics import Metrics
from ume.serve.protocol import EmbedRequest, parse_request


def supports_both() -> bool:
    """Whether this ume's encoder has `mode="both"` (disc and gen vectors from one prefill)."""
    return "disc_embeddings" in {f.name for f in dataclasses.fields(EncodeResult)}


def item_seed(seed: int, index: int) -> int:
    """The per-item seed the server gives item `index` of a request with `seed`: the same mixing as
    `ume.generation.row_seed(seed, index)`, so `Encoder.encode(items, seed=[item_seed(S, i) ...])` in Python
    reproduces a served request whatever it was batched with."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1, dtype=np.uint64)[0] >> 1)


def _vector(v: np.ndarray, fmt: str, dims: int | None) -> Any:
    v = np.asarray(v, dtype=np.float32)
    if dims is not None and dims < v.shape[-1]:
        v = v[:dims]
        v = v / max(float(np.linalg.norm(v)), 1e-12)
    if fmt == "base64":
        return base64.b64encode(v.astype("<f4").tobytes()).decode("ascii")
    return v.tolist()


class Server:
    """The app's state: config, encoder, batcher and metrics."""

    def __init__(self, cfg: ServeConfig, encoder: Encoder | None = None) -> None:
        self.cfg = cfg
        self.encoder = encoder
        self.batcher: Batcher | None = None
        self.metrics = Metrics(lambda: self.batcher.pending_items if self.batcher else 0,
                               lambda: self.batcher.pending_requests if self.batcher else 0)
        self.started = int(time.time())

    # --- lifecycle -----------------------------------------------------------------------------------
    def start(self) -> None:
        if self.encoder is None:
            from ume.encoder import load

            self.encoder = load(self.cfg.model, device=self.cfg.device, dtype=self.cfg.dtype)
        if self.batcher is None:
            cfg = self.cfg
            self.batcher = Batcher(self._encode, batching=cfg.batching, max_batch_items=cfg.max_batch_items,
                                   max_wait_s=cfg.max_wait_ms / 1000, max_queue_items=cfg.max_queue_items,
                                   on_batch=self._on_batch)

    def stop(self) -> None:
        if self.batcher is not None:
            self.batcher.close()
            self.batcher = None

    @property
    def dim(self) -> int:
        assert self.encoder is not None
        return self.encoder.dim

    # --- encoding ------------------------------------------------------------------------------------
    def _encode(self, items: list[Any], key: tuple, seeds: list[int] | None) -> EncodeResult:
        mode, k, max_new_tokens, temperature, top_p, top_k = key
        kwargs: dict[str, Any] = {"mode": mode, "batch_size": self.cfg.batch_size, "on_error": "skip",
                                  "show_progress": False}
        if mode != "disc":
            kwargs.update(num_samples=k, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                          top_k=top_k, seed=seeds)
        assert self.encoder is not None
        return self.encoder.encode(items, **kwargs)

    def _on_batch(self, key: tuple, n_requests: int, n_items: int, seconds: float) -> None:
        m = self.metrics
        m.batch_seconds.labels(key[0]).observe(seconds)
        m.batch_items.labels(key[0]).observe(n_items)
        m.batch_requests.labels(key[0]).observe(n_requests)

    def key(self, req: EmbedRequest) -> tuple:
        if req.mode == "disc":
            return ("disc", 1, None, None, None, None)
        budget = req.max_new_tokens or self.cfg.default_max_new_tokens or self.cfg.limits.max_new_tokens
        return (req.mode, req.num_samples, budget, req.temperature, req.top_p, req.top_k)

    async def embed(self, req: EmbedRequest, deadline: float) -> dict[str, Any]:
        if req.mode == "both" and not supports_both():  # the endpoint cleans up the request's temp files
            raise RequestError(400, "mode 'both' is not supported by this ume version (its Encoder has no "
                               "disc_embeddings); use 'disc' or 'gen'", param="mode", code="unsupported_mode")
        good = [i for i, it in enumerate(req.items) if it is not None]
        res = None
        job = None
        if good:
            seeds = None if req.seed is None else [item_seed(req.seed, i) for i in good]
            job = Job(items=[req.items[i] for i in good], key=self.key(req), seeds=seeds, on_done=req.cleanup)
            assert self.batcher is not None
            try:
                fut = self.batcher.submit(job)
            except QueueFull as e:
                req.cleanup()
                self.metrics.rejected.labels("queue_full").inc()
                raise RequestError(503, f"server busy: {e}; retry after {e.retry_after_s} s", param="max_queue_items",
                                   code="queue_full", headers={"Retry-After": str(e.retry_after_s)}) from None
            try:
                res = await asyncio.wait_for(asyncio.wrap_future(fut), timeout=max(0.0, deadline - time.perf_counter()))
            except TimeoutError:
                self.batcher.withdraw(job)
                limit = self.cfg.limits.request_timeout_s
                self.metrics.rejected.labels("request_timeout_s").inc()
                raise LimitError(408, "request_timeout_s", f"no answer within {limit} s (queue depth "
                                 f"{self.batcher.pending_items} items)") from None
            except Exception as e:  # not an item's fault (those are per-item errors): the encoder itself failed
                raise RequestError(500, f"the encoder failed: {type(e).__name__}: {e}", code="server_error") from e
            if job.started is not None:
                self.metrics.queue_wait.labels(req.mode).observe(job.started - job.enqueued)
        else:
            req.cleanup()
        return await run_in_threadpool(self._response, req, good, res)

    def _response(self, req: EmbedRequest, good: list[int], res: EncodeResult | None) -> dict[str, Any]:
        errors = [{"index": i, "id": None, "message": reason} for i, reason in req.failures.items()]
        data = []
        prompt_tokens = generated = 0
        fmt, dims = req.encoding_format, req.dimensions
        tok = self.encoder.backbone.tokenizer if self.encoder is not None else None
        if res is not None:
            failed = {e.index: e.reason for e in res.errors}
            for j, i in enumerate(good):
                item = req.items[i]
                if j in failed:  # the encoder names an item by its place in its call; name it as the client did
                    message = re.sub(r"^item \d+", f"input[{i}]", failed[j])
                    errors.append({"index": i, "id": item.id, "message": message})
                    continue
                vecs = res.embeddings[j]
                entry: dict[str, Any] = {"object": "embedding", "index": i}
                if vecs.ndim == 2:  # num_samples > 1: [k, d]
                    entry["embedding"] = _vector(vecs[0], fmt, dims)
                    entry["sample_embeddings"] = [_vector(v, fmt, dims) for v in vecs]
                else:
                    entry["embedding"] = _vector(vecs, fmt, dims)
                if req.mode == "both":
                    entry["disc_embedding"] = _vector(res.disc_embeddings[j], fmt, dims)
                if item.id is not None:
                    entry["id"] = item.id
                if (got := res.samples) is not None:
                    generated += int(got.num_tokens[j].sum())
                    if req.return_reasoning:
                        entry["reasoning"] = [
                            {"text": got.texts[j][s], "token_ids": list(got.token_ids[j][s]),
                             "num_tokens": int(got.num_tokens[j][s]), "forced": bool(got.forced[j][s])}
                            for s in range(len(got.texts[j]))]
                if tok is not None and item.text:
                    prompt_tokens += len(tok(item.text, add_special_tokens=False)["input_ids"])
                data.append(entry)
        errors.sort(key=lambda e: e["index"])
        m = self.metrics
        m.items.labels(req.mode, "ok").inc(len(data))
        m.items.labels(req.mode, "error").inc(len(errors))
        m.prompt_tokens.inc(prompt_tokens)
        m.generated_tokens.inc(generated)
        usage = {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens + generated}
        if req.mode != "disc":
            usage["completion_tokens"] = generated
        out = {"object": "list", "model": self.cfg.served_name, "data": data, "usage": usage}
        if errors:
            out["errors"] = errors
        if not data:
            raise RequestError(422, "no item could be embedded: " + "; ".join(e["message"] for e in errors),
                               param="input", code="invalid_input")
        return out

    def check_auth(self, request: Request) -> None:
        key = self.cfg.api_key
        if key is None:
            return
        given = request.headers.get("authorization", "")
        scheme, _, token = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), key.encode()):
            self.metrics.rejected.labels("auth").inc()
            raise RequestError(401, "invalid or missing API key (Authorization: Bearer ...)", code="invalid_api_key")

    async def read_json(self, request: Request) -> Any:
        cap = self.cfg.limits.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > cap:
            raise LimitError(413, "max_body_bytes", f"request body of {declared} bytes, above {cap}")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > cap:
                raise LimitError(413, "max_body_bytes", f"request body above {cap} bytes")
            chunks.append(chunk)
        try:
            return json.loads(b"".join(chunks))
        except (ValueError, UnicodeDecodeError) as e:
            raise RequestError(400, f"the body is not valid JSON ({e})", code="invalid_json") from None


def _error(e: RequestError) -> JSONResponse:
    return JSONResponse(e.body(), status_code=e.status, headers=e.headers)


def create_app(cfg: ServeConfig, encoder: Encoder | None = None) -> FastAPI:
    """The server app; `encoder` (already loaded) or `cfg.model` loaded at startup."""
    server = Server(cfg, encoder)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await run_in_threadpool(server.start)
        try:
            yield
        finally:
            await run_in_threadpool(server.stop)

    app = FastAPI(title="ume", version="1", lifespan=lifespan, docs_url="/docs", redoc_url=None)
    app.state.server = server

    @app.middleware("http")
    async def count(request: Request, call_next):
        response = await call_next(request)
        route = request.scope.get("route")
        server.metrics.requests.labels(getattr(route, "path", "other"), str(response.status_code)).inc()
        return response

    @app.post("/v1/embeddings")
    async def embeddings(request: Request) -> Response:
        t0 = time.perf_counter()
        deadline = t0 + cfg.limits.request_timeout_s
        mode = "unknown"
        req = None
        try:
            server.check_auth(request)
            body = await server.read_json(request)
            req = await run_in_threadpool(parse_request, body, cfg, server.dim)
            mode = req.mode
            if req.model is not None and req.model != cfg.served_name:
                raise RequestError(404, f"model {req.model!r} is not served here (this server serves "
                                   f"{cfg.served_name!r})", param="model", code="model_not_found")
            out = await server.embed(req, deadline)
        except RequestError as e:
            if req is not None:
                req.cleanup()  # idempotent; a job that is still running cleans up after itself too
            if isinstance(e, LimitError) and e.param not in ("request_timeout_s",):
                server.metrics.rejected.labels(e.param or "limit").inc()
            return _error(e)
        server.metrics.latency.labels(mode).observe(time.perf_counter() - t0)
        return JSONResponse(out)

    @app.get("/v1/models")
    async def models(request: Request) -> Response:
        try:
            server.check_auth(request)
        except RequestError as e:
            return _error(e)
        modes = ["disc", "gen", "both"] if supports_both() else ["disc", "gen"]
        return JSONResponse({"object": "list", "data": [
            {"id": cfg.served_name, "object": "model", "created": server.started, "owned_by": "ume",
             "dimensions": server.dim, "truncate_dims": sorted(cfg.truncate_dims), "modes": modes,
             "limits": dataclasses.asdict(cfg.limits)}]})

    @app.get("/health")
    async def health() -> Response:
        b = server.batcher
        ok = server.encoder is not None and b is not None and b.alive
        return JSONResponse({"status": "ok" if ok else "unavailable", "model": cfg.served_name,
                             "queue_items": b.pending_items if b else 0,
                             "queue_requests": b.pending_requests if b else 0}, status_code=200 if ok else 503)

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(server.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    return app
