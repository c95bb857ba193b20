"""The OpenAI-compatible request, turned into `ume.Item`s under the server's limits and media policy.

Accepted shapes (POST /v1/embeddings):

- OpenAI: `input` is a string or a list of strings; `encoding_format` float | base64; `dimensions`.
- vLLM's chat form: `messages` (one conversation = one item) whose user content holds `text`,
  `image_url` and `video_url` parts; media as data URLs.
- ume extension: `input` entries may be objects `{"text", "image" | "images", "video", "id"}` whose media are
  data URLs (a video may also be a list of frame data URLs), so one request can carry many multimodal items.

Media sources: `data:` URLs always; local paths / `file://` only under `--allow-local-media DIR`; `http(s)://`
only with `--allow-url-fetch`. A request that breaks a limit or the media policy is refused whole (4xx naming
the limit); an item whose media cannot be decoded is that item's error and the others are embedded.
"""

from __future__ import annotations

import base64
import binascii
import io
import stat
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ume.inputs import IMAGE_SUFFIXES, VIDEO_SUFFIXES, Item
from ume.serve.limits import LimitError, RequestError, ServeConfig

MODES = ("disc", "gen", "both")
KNOWN_FIELDS = {"model", "input", "messages", "encoding_format", "dimensions", "user", "mode", "num_samples",
                "max_new_tokens", "temperature", "top_p", "top_k", "return_reasoning", "seed"}
ITEM_FIELDS = {"text", "image", "images", "video", "id"}


class ItemFailure(Exception):
    """One item that cannot be embedded (bad data URL, missing file...): reported, the rest go on."""


@dataclass
class EmbedRequest:
    """A validated request: items to encode (None where parsing already failed) and the options."""

    items: list[Item | None]
    failures: dict[int, str]  # index -> reason, for items that never reach the encoder
    model: str | None = None
    encoding_format: str = "float"
    dimensions: int | None = None
    mode: str = "disc"
    num_samples: int = 1
    max_new_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = None
    return_reasoning: bool = False
    cleanups: list[Callable[[], None]] = field(default_factory=list)

    def cleanup(self) -> None:
        for fn in self.cleanups:
            fn()
        self.cleanups.clear()


def _bad(message: str, param: str | None = None) -> RequestError:
    return RequestError(400, message, param=param)


def _typed(body: dict[str, Any], name: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
    value = body.get(name)
    if value is None:
        return default
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in kinds):
        want = " or ".join(k.__name__ for k in kinds)
        raise _bad(f"`{name}` must be {want}, got {type(value).__name__}", name)
    return value


class MediaResolver:
    """Turns a media reference into bytes (images) or a path / frame list (videos), under the policy."""

    def __init__(self, cfg: ServeConfig) -> None:
        self.cfg = cfg
        self.limits = cfg.limits
        self._tmp: tempfile.TemporaryDirectory | None = None
        self.root = None if cfg.allow_local_media is None else Path(cfg.allow_local_media).resolve()

    def tmpdir(self, req: EmbedRequest) -> Path:
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="ume-serve-")
            req.cleanups.append(self._tmp.cleanup)
        return Path(self._tmp.name)

    # --- sources -------------------------------------------------------------------------------------
    def fetch(self, ref: Any, where: str) -> bytes | Path:
        """bytes for data: and http(s): URLs; a checked Path for local files."""
        if not isinstance(ref, str) or not ref:
            raise ItemFailure(f"{where}: expected a data URL{self._also()}, got {type(ref).__name__}")
        if ref.startswith("data:"):
            return self._data_url(ref, where)
        scheme = urllib.parse.urlsplit(ref).scheme.lower()
        if scheme in ("http", "https"):
            if not self.cfg.allow_url_fetch:
                raise RequestError(400, f"{where}: this server does not fetch URLs (start it with --allow-url-fetch)",
                                   param="allow_url_fetch", code="media_source_forbidden")
            return self._http(ref, where)
        if scheme and scheme != "file" and len(scheme) > 1:  # a Windows drive letter is not a scheme
            raise _bad(f"{where}: unsupported media URL scheme {scheme!r} (data:, file:, http(s):)")
        return self._local(urllib.parse.unquote(urllib.parse.urlsplit(ref).path) if scheme == "file" else ref,
                           where)

    def _also(self) -> str:
        extra = [" a path under --allow-local-media"] if self.root else []
        extra += [" an http(s) URL"] if self.cfg.allow_url_fetch else []
        return ("," + ",".join(extra)) if extra else ""

    def _data_url(self, ref: str, where: str) -> bytes:
        head, sep, payload = ref.partition(",")
        if not sep:
            raise ItemFailure(f"{where}: malformed data URL (no comma)")
        if head.endswith(";base64"):
            try:
                data = base64.b64decode(payload, validate=True)
            except (binascii.Error, ValueError) as e:
                raise ItemFailure(f"{where}: data URL is not valid base64 ({e})") from None
        else:
            data = urllib.parse.unquote_to_bytes(payload)
        if not data:
            raise ItemFailure(f"{where}: empty data URL")
        return data

    def _http(self, url: str, where: str) -> bytes:
        cap = self.limits.max_body_bytes
        try:
            with urllib.request.urlopen(url, timeout=self.cfg.url_timeout_s) as resp:
                data = resp.read(cap + 1)
        except Exception as e:  # network, HTTP status, timeout: this item's error
            raise ItemFailure(f"{where}: fetching {url!r} failed ({e})") from None
        if len(data) > cap:
            raise LimitError(413, "max_body_bytes", f"{where}: {url!r} is larger than {cap} bytes")
        return data

    def _local(self, ref: str, where: str) -> Path:
        if self.root is None:
            raise RequestError(400, f"{where}: this server does not read local files (start it with "
                               "--allow-local-media DIR); send media as data URLs", param="allow_local_media",
                               code="media_source_forbidden")
        path = Path(ref)
        path = (path if path.is_absolute() else self.root / path).resolve()
        if not path.is_relative_to(self.root):
            raise RequestError(403, f"{where}: {ref!r} is outside the allowed media directory",
                               param="allow_local_media", code="media_source_forbidden")
        try:
            st = path.stat()
        except FileNotFoundError:
            raise ItemFailure(f"{where}: file not found: {ref!r}") from None
        except OSError as e:
            raise ItemFailure(f"{where}: {ref!r} unreadable ({e.strerror or e})") from None
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
            raise ItemFailure(f"{where}: {ref!r} is not a regular file")
        if stat.S_ISREG(st.st_mode) and st.st_size > self.limits.max_body_bytes:
            raise LimitError(413, "max_body_bytes", f"{where}: {ref!r} is {st.st_size} bytes")
        return path

    # --- media kinds ---------------------------------------------------------------------------------
    def image(self, ref: Any, where: str) -> bytes:
        src = self.fetch(ref, where)
        if isinstance(src, Path):
            if src.is_dir():
                raise ItemFailure(f"{where}: {src.name!r} is a directory, not an image")
            try:
                src = src.read_bytes()
            except OSError as e:
                raise ItemFailure(f"{where}: unreadable ({e.strerror or e})") from None
        self.check_pixels(src, where)
        return src

    def check_pixels(self, data: bytes, where: str) -> None:
        """Refuse an image whose header declares more than max_image_pixels, before anything decodes it: a
        decompression bomb is this item's error (the request's other items still embed)."""
        from PIL import Image

        try:
            with Image.open(io.BytesIO(data)) as im:
                w, h = im.size
        except Image.DecompressionBombError as e:
            raise ItemFailure(f"{where}: above max_image_pixels ({e})") from None
        except Exception:  # not an image we can read: the encoder reports it as this item's error
            return
        self._pixels(w, h, where)

    def _pixels(self, w: int, h: int, where: str) -> None:
        cap = self.limits.max_image_pixels
        if w * h > cap:
            raise ItemFailure(f"{where}: {w}x{h} = {w * h} pixels, above max_image_pixels={cap} (server option "
                              "--max-image-pixels)")

    def video(self, ref: Any, where: str, req: EmbedRequest) -> Path | list[bytes]:
        if isinstance(ref, list):  # frames
            if len(ref) > self.limits.max_frames:
                raise LimitError(413, "max_frames", f"{where}: {len(ref)} frames, above {self.limits.max_frames}")
            if not ref:
                raise ItemFailure(f"{where}: empty frame list")
            return [self.image(f, f"{where}[{j}]") for j, f in enumerate(ref)]
        src = self.fetch(ref, where)
        if isinstance(src, bytes):  # PyAV reads files: the bytes go to a temp file, removed with the request
            tmp = self.tmpdir(req)
            path = tmp / f"video-{len(list(tmp.iterdir()))}{_video_suffix(ref)}"
            path.write_bytes(src)
            src = path
        if src.is_dir():
            frames = [p for p in src.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]
            if len(frames) > self.limits.max_frames:
                raise LimitError(413, "max_frames", f"{where}: {len(frames)} frames, above {self.limits.max_frames}")
            return src
        self._probe_video(src, where)
        return src

    def _probe_video(self, path: Path, where: str) -> None:
        """Frame count and frame size from the container, before the encoder decodes every frame."""
        import av

        try:
            with av.open(str(path)) as container:
                stream = container.streams.video[0]
                w, h = stream.codec_context.width, stream.codec_context.height
                frames = stream.frames
                if not frames and stream.duration and stream.average_rate:
                    frames = int(float(stream.duration * stream.time_base) * float(stream.average_rate))
        except Exception:  # undecodable: the encoder reports it as this item's error
            return
        if frames and frames > self.limits.max_frames:
            raise LimitError(413, "max_frames", f"{where}: video has {frames} frames, above {self.limits.max_frames}")
        if w and h:
            self._pixels(w, h, where)


_VIDEO_MIME = {"mp4": ".mp4", "webm": ".webm", "quicktime": ".mov", "x-msvideo": ".avi", "x-matroska": ".mkv",
               "mpeg": ".mpg", "gif": ".gif"}


def _video_suffix(ref: str) -> str:
    """A file suffix for video bytes, from the data URL's MIME type or the URL's path (default .mp4)."""
    if ref.startswith("data:"):
        mime = ref[5:].split(";", 1)[0].split(",", 1)[0]
        return _VIDEO_MIME.get(mime.partition("/")[2].lower(), ".mp4")
    suffix = Path(urllib.parse.urlsplit(ref).path).suffix.lower()
    return suffix if suffix in VIDEO_SUFFIXES else ".mp4"


def _item_from_dict(row: dict[str, Any], where: str, media: MediaResolver, req: EmbedRequest) -> Item:
    unknown = set(row) - ITEM_FIELDS
    if unknown:
        raise _bad(f"{where}: unknown field(s) {sorted(unknown)}; an item has {sorted(ITEM_FIELDS)}", "input")
    text = row.get("text") or ""
    if not isinstance(text, str):
        raise _bad(f"{where}.text must be a string", "input")
    images = row.get("images")
    if images is None:
        images = [] if row.get("image") is None else [row["image"]]
    if not isinstance(images, list):
        images = [images]
    got = [media.image(ref, f"{where}.images[{j}]") for j, ref in enumerate(images)]
    video = None if row.get("video") is None else media.video(row["video"], f"{where}.video", req)
    rid = row.get("id")
    return Item(text=text, images=got, video=video, id=None if rid is None else str(rid))


def _item_from_messages(messages: Any, media: MediaResolver, req: EmbedRequest) -> Item:
    if not isinstance(messages, list) or not messages:
        raise _bad("`messages` must be a non-empty list of chat messages", "messages")
    texts: list[str] = []
    images: list[bytes] = []
    video: Any = None
    for m, msg in enumerate(messages):
        where = f"messages[{m}]"
        if not isinstance(msg, dict):
            raise _bad(f"{where} must be an object with role and content", "messages")
        if msg.get("role", "user") != "user":
            raise _bad(f"{where}: role {msg.get('role')!r}; ume builds its own prompt around the input, so only "
                       "user messages are accepted", "messages")
        content = msg.get("content")
        parts = [{"type": "text", "text": content}] if isinstance(content, str) else content
        if not isinstance(parts, list):
            raise _bad(f"{where}.content must be a string or a list of parts", "messages")
        for p, part in enumerate(parts):
            pw = f"{where}.content[{p}]"
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text":
                texts.append(str(part.get("text") or ""))
            elif kind in ("image_url", "image"):
                ref = part.get(kind)
                ref = ref.get("url") if isinstance(ref, dict) else ref
                images.append(media.image(ref, pw))
            elif kind in ("video_url", "video"):
                if video is not None:
                    raise _bad(f"{pw}: one video per item", "messages")
                ref = part.get(kind)
                ref = ref.get("url") if isinstance(ref, dict) else ref
                video = media.video(ref, pw, req)
            else:
                raise _bad(f"{pw}: unsupported part type {kind!r} (text, image_url, video_url)", "messages")
    return Item(text="\n".join(t for t in texts if t), images=images, video=video)


def parse_request(body: Any, cfg: ServeConfig, dim: int) -> EmbedRequest:
    """Validate an embeddings request body against the limits and policy; media fetched and checked."""
    limits = cfg.limits
    if not isinstance(body, dict):
        raise _bad("the request body must be a JSON object")
    unknown = set(body) - KNOWN_FIELDS
    if unknown:
        raise _bad(f"unknown field(s) {sorted(unknown)}; accepted: {sorted(KNOWN_FIELDS)}", sorted(unknown)[0])
    req = EmbedRequest(items=[], failures={})
    req.model = _typed(body, "model", str)
    req.encoding_format = _typed(body, "encoding_format", str, "float")
    if req.encoding_format not in ("float", "base64"):
        raise _bad(f"encoding_format must be 'float' or 'base64', got {req.encoding_format!r}", "encoding_format")
    req.mode = _typed(body, "mode", str, "disc")
    if req.mode not in MODES:
        raise _bad(f"mode must be one of {list(MODES)}, got {req.mode!r}", "mode")
    req.num_samples = _typed(body, "num_samples", int, 1)
    if req.num_samples < 1:
        raise _bad("num_samples must be >= 1", "num_samples")
    if req.num_samples > limits.max_num_samples:
        raise LimitError(400, "max_num_samples", f"num_samples={req.num_samples} above {limits.max_num_samples}")
    if req.num_samples > 1 and req.mode == "disc":
        raise _bad("num_samples > 1 needs mode 'gen' or 'both' (disc is deterministic)", "num_samples")
    req.max_new_tokens = _typed(body, "max_new_tokens", int)
    if req.max_new_tokens is not None:
        if req.max_new_tokens < 1:
            raise _bad("max_new_tokens must be >= 1", "max_new_tokens")
        if req.max_new_tokens > limits.max_new_tokens:
            raise LimitError(400, "max_new_tokens", f"max_new_tokens={req.max_new_tokens} above the ceiling "
                             f"{limits.max_new_tokens}")
    req.temperature = _typed(body, "temperature", (int, float))
    req.top_p = _typed(body, "top_p", (int, float))
    req.top_k = _typed(body, "top_k", int)
    req.seed = _typed(body, "seed", int)
    req.return_reasoning = bool(_typed(body, "return_reasoning", bool, False))
    req.dimensions = _typed(body, "dimensions", int)
    if req.dimensions is not None and req.dimensions != dim and req.dimensions not in cfg.truncate_dims:
        allowed = sorted({dim, *cfg.truncate_dims})
        raise _bad(f"dimensions={req.dimensions} not offered: this model gives {dim}-d vectors and was not trained "
                   f"for truncation (Matryoshka); the server allows {allowed} (--truncate-dims)", "dimensions")

    has_input, has_messages = body.get("input") is not None, body.get("messages") is not None
    if has_input == has_messages:
        raise _bad("send exactly one of `input` (OpenAI) or `messages` (chat form)", "input")
    media = MediaResolver(cfg)
    try:
        if has_messages:
            raw: list[Any] = [("messages", body["messages"])]
        else:
            inp = body["input"]
            raw = [inp] if isinstance(inp, str) else inp
            if not isinstance(raw, list):
                raise _bad("`input` must be a string or a list", "input")
            if not raw:
                raise _bad("`input` is empty", "input")
            if all(isinstance(x, int) and not isinstance(x, bool) for x in raw) or any(
                    isinstance(x, list) for x in raw):
                raise _bad("token-id input is not supported: send text (ume tokenises with the model's own "
                           "chat template)", "input")
        if len(raw) > limits.max_items:
            raise LimitError(413, "max_items", f"{len(raw)} items, above {limits.max_items}")
        for i, x in enumerate(raw):
            where = f"input[{i}]"
            try:
                if isinstance(x, tuple):
                    item = _item_from_messages(x[1], media, req)
                elif isinstance(x, str):
                    item = Item(text=x)
                elif isinstance(x, dict):
                    item = _item_from_dict(x, where, media, req)
                else:
                    raise _bad(f"{where}: expected a string or an item object, got {type(x).__name__}", "input")
                if len(item.text) > limits.max_text_chars:
                    raise LimitError(413, "max_text_chars", f"{where}: text of {len(item.text)} characters, above "
                                     f"{limits.max_text_chars}")
                req.items.append(item)
            except ItemFailure as e:
                req.items.append(None)
                req.failures[i] = str(e)
    except BaseException:
        req.cleanup()
        raise
    return req
