"""What one request may ask of the server, and how a refusal is answered.

Every limit is a field here, a `ume serve` option, and the `param` of the 4xx error that refuses it, so a
client always learns which limit it hit and how to raise it. Nothing in this module imports a web framework.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ServeLimits:
    """Per-request limits (each answered with a 4xx naming the field when exceeded)."""

    max_body_bytes: int = 32 * 2**20  # 413: the whole JSON body, data URLs included
    max_items: int = 64  # 413: items in one request
    max_text_chars: int = 16_384  # 413: characters of one item's text
    max_image_pixels: int = 4096 * 4096  # per item: width x height of one image or video frame, from the header
    max_frames: int = 512  # 413: frames of one video (a frame list, or a file's frame count)
    max_new_tokens: int = 1024  # 400: ceiling on the reasoning budget (gen / both)
    max_num_samples: int = 8  # 400: reasoning samples per item
    request_timeout_s: float = 120.0  # 408: time from arrival to answer, queueing included

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


@dataclass(frozen=True)
class ServeConfig:
    """How `ume serve` runs: model, batching, queue, media policy, auth."""

    model: str
    model_name: str | None = None  # the id clients send as `model` (default: the checkpoint's directory name)
    device: str | None = None
    dtype: str | None = None
    limits: ServeLimits = field(default_factory=ServeLimits)
    batching: bool = True  # merge concurrent requests into encoder calls
    max_batch_items: int = 32  # items per merged encoder call
    max_wait_ms: float = 5.0  # how long an idle worker waits for companions before it starts
    batch_size: int = 16  # the encoder's own micro-batch (rows per forward / decoder slots per sample)
    max_queue_items: int = 256  # items waiting; beyond it: 503 with Retry-After
    default_max_new_tokens: int | None = None  # None: the limit's ceiling
    truncate_dims: tuple[int, ...] = ()  # `dimensions` values allowed (prefix + re-normalise); () = native only
    api_key: str | None = None
    allow_local_media: Path | None = None  # a directory requests may read files from
    allow_url_fetch: bool = False
    url_timeout_s: float = 10.0

    @property
    def served_name(self) -> str:
        return self.model_name or Path(str(self.model).rstrip("/")).name


class RequestError(Exception):
    """A request refused as a whole: HTTP status, OpenAI-style error body."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str = "invalid_request",
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        kind = "invalid_request_error" if self.status < 500 else "server_error"
        return {"error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}}


class LimitError(RequestError):
    """A configured limit exceeded; `param` is the ServeLimits field (the CLI option is its dashed form)."""

    def __init__(self, status: int, limit: str, message: str) -> None:
        option = "--" + limit.replace("_", "-")
        super().__init__(status, f"{message} (limit {limit}; server option {option})", param=limit,
                         code="limit_exceeded")
