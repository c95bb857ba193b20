"""Items to embed, and turning them into validated PIL images and video frames.

Validation happens here, before anything reaches the processor, so that a bad file produces an error
that names the item and the reason instead of a stack trace from deep inside an image library.

What a file may be: only a regular file (or, for a video, a directory of frames) is read; FIFOs, devices,
sockets and symlinks to them are refused from a `stat`, before anything is opened, and every read is bounded
(`InputLimits.max_file_bytes`, `max_video_bytes`), so no input can block a run or fill its memory. Images are
opened with Pillow's common raster formats only; videos with PyAV restricted to plain container formats (no
playlists, concat lists or nested protocols: an HLS playlist is refused, never followed).

Pixels (`load_image`): the EXIF orientation is applied; 16-bit greyscale is scaled to 8 bits (the high byte,
as Pillow itself reduces 16-bit RGB) instead of being clipped; transparency (RGBA, LA, PA, palette with a
transparent index) is composited on white, as qwen-vl-utils' `to_rgb` does for RGBA. qwen-vl-utils itself
ignores EXIF orientation, clips 16-bit greyscale and drops the alpha of LA/PA/palette images (black or the
palette colour): these are deliberate deviations, the picture a viewer shows instead.
"""

from __future__ import annotations

import io
import os
import re
import stat
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

ImageLike = str | Path | bytes | Image.Image
VideoLike = str | Path | Sequence[ImageLike]

DEFAULT_MAX_IMAGE_PIXELS = 64_000_000  # 8000 x 8000; anything larger is treated as a decompression bomb
DEFAULT_MAX_FILE_BYTES = 256 * 2**20  # an image or frame file larger than this is refused before it is read
DEFAULT_MAX_VIDEO_BYTES = 16 * 2**30  # a video file larger than this is refused before it is opened
DEFAULT_MAX_VIDEO_FRAMES = 1_000_000  # ≈9 h at 30 fps: more frames than this is refused while counting
DEFAULT_NUM_FRAMES = 8  # MMEB-V2 samples 8 frames per video
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpeg", ".mpg", ".gif"}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
# Pillow plugins an image may be decoded with (JPEG covers MPO; no EPS/PDF/PSD/...: EPS would run ghostscript)
IMAGE_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "DIB", "WEBP", "TIFF", "PPM", "TGA", "ICO", "JPEG2000")
# FFmpeg demuxers a video file may be read with: plain containers that never open another file or URL
VIDEO_FORMATS = ("mov", "mp4", "matroska", "webm", "avi", "mpeg", "mpegts", "flv", "gif", "ogg", "asf", "m4v",
                 "h264", "hevc", "mjpeg", "ivf", "yuv4mpegpipe")
_AV_OPTIONS = {"format_whitelist": ",".join(VIDEO_FORMATS), "protocol_whitelist": "none"}
# what a corrupt image can raise inside Pillow (a broad `except Exception` would also swallow alarms/timeouts)
PIXEL_ERRORS = (OSError, SyntaxError, ValueError, TypeError, KeyError, IndexError, struct.error, EOFError,
                 ZeroDivisionError, Image.DecompressionBombError)


class InputError(ValueError):
    """An item that cannot be embedded; the message names the item and the reason.

    From `load_item`, `field` says which part failed ("images" or "video"; None: the item as a whole) and
    `reason` is the message without the item's label, so a caller with its own names for the parts (SFT's
    file, row and field) reports the same reason under those.
    """

    def __init__(self, message: str, field: str | None = None, reason: str | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.reason = message if reason is None else reason


@dataclass
class Item:
    """One thing to embed: text, images, a video (file or frames), or a combination.

    `images` entries may be paths, raw bytes or PIL images. `video` is a video file path, a directory
    of frame files, or a list of frames (paths, bytes or PIL images). `id` only labels error messages;
    `source` says where the item came from (e.g. "items.jsonl:20") and then labels them instead of the
    item's position in the call.
    """

    text: str = ""
    images: Sequence[ImageLike] = field(default_factory=list)
    video: VideoLike | None = None
    id: str | None = None
    source: str | None = None

    @classmethod
    def from_dict(cls, row: dict[str, Any], source: str | None = None) -> Item:
        """Build from a JSON row: `text`, `image` | `images`, `video` (path or list of frame paths), `id`.
        Every field's type is checked; a wrong one raises InputError naming the field."""
        if not isinstance(row, dict):
            raise InputError(f"expected a JSON object, got {_kind(row)}")
        unknown = set(row) - {"text", "image", "images", "video", "id"}
        if unknown:
            raise InputError(f"unknown field(s) {sorted(unknown)}; expected text, image(s), video, id")
        text = row.get("text")
        if text is not None and not isinstance(text, str):
            raise InputError(f"field 'text' should be a string, got {_kind(text)}")
        if row.get("image") is not None and row.get("images") is not None:
            raise InputError("fields 'image' and 'images' are both given; use one")
        if row.get("image") is not None:
            images = [_path_field(row["image"], "image")]
        else:
            images = _paths_field(row.get("images"), "images", allow_empty=True)
        video = row.get("video")
        if video is not None:
            video = _path_field(video, "video") if isinstance(video, str) else _paths_field(video, "video")
        rid = row.get("id")
        if rid is not None and (isinstance(rid, bool) or not isinstance(rid, (str, int))):
            raise InputError(f"field 'id' should be a string or an integer, got {_kind(rid)}")
        item = cls(text=text or "", images=images, video=video, id=None if rid is None else str(rid), source=source)
        check_item(item)
        return item


def _kind(value: Any) -> str:
    return "null" if value is None else "a list" if isinstance(value, list) else \
        "an object" if isinstance(value, dict) else type(value).__name__


def _path_field(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise InputError(f"field {name!r} should be a path string, got {_kind(value)}")
    if not value:
        raise InputError(f"field {name!r} is an empty path")
    return value


def _paths_field(value: Any, name: str, allow_empty: bool = False) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [_path_field(value, name)]
    if not isinstance(value, list):
        raise InputError(f"field {name!r} should be a path or a list of paths, got {_kind(value)}")
    if not value and not allow_empty:
        raise InputError(f"field {name!r} is an empty list")
    for j, v in enumerate(value):
        if not isinstance(v, str) or not v:
            raise InputError(f"field {name!r}[{j}] should be a non-empty path string, got {_kind(v)}")
    return list(value)


def _check_text(value: str, name: str) -> None:
    """A string that cannot be written as UTF-8 (an unpaired surrogate from a JSON "\\ud800") is refused here,
    not when the run's outputs are written; a NUL byte cannot be part of a path."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InputError(f"field {name!r} is not valid Unicode (unpaired surrogate at character {e.start})") from None


def _check_source(src: Any, name: str) -> None:
    if isinstance(src, (str, Path)):
        s = str(src)
        if not s:
            raise InputError(f"field {name!r} is an empty path")
        _check_text(s, name)
        if "\x00" in s:
            raise InputError(f"field {name!r} contains a NUL byte")
    elif not isinstance(src, (bytes, bytearray, Image.Image)):
        raise InputError(f"field {name!r} should be a path, bytes or a PIL image, got {_kind(src)}")


def check_item(item: Item) -> None:
    """Type-check every field of an Item (as `from_dict` and `load_item` do); raises InputError naming it."""
    if item.text is not None and not isinstance(item.text, str):
        raise InputError(f"field 'text' should be a string, got {_kind(item.text)}")
    _check_text(item.text or "", "text")
    if item.id is not None:
        if not isinstance(item.id, str):
            raise InputError(f"field 'id' should be a string, got {_kind(item.id)}")
        _check_text(item.id, "id")
    images = item.images
    if isinstance(images, (str, Path, bytes, Image.Image)) or not isinstance(images, Sequence):
        raise InputError(f"field 'images' should be a list of paths, bytes or PIL images, got {_kind(images)}")
    for j, src in enumerate(images):
        _check_source(src, f"images[{j}]")
    video = item.video
    if video is None:
        return
    if isinstance(video, (str, Path)):
        _check_source(video, "video")
    elif isinstance(video, Sequence) and not isinstance(video, (bytes, bytearray)):
        for j, src in enumerate(video):
            _check_source(src, f"video[{j}]")
    else:
        raise InputError(f"field 'video' should be a path or a list of frames, got {_kind(video)}")


def item_label(item: Any, index: int) -> str:
    """How messages name an item: where it came from (`source`) or its position, and its id."""
    source = getattr(item, "source", None)
    label = source if isinstance(source, str) and source else f"item {index}"
    rid = getattr(item, "id", None)
    return label + (f" (id={rid!r})" if rid is not None else "")


@dataclass
class LoadedItem:
    """An item whose media are decoded and validated."""

    text: str
    images: list[Image.Image]
    video: list[Image.Image] | None


@dataclass(frozen=True)
class InputLimits:
    """Limits applied while loading media."""

    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS  # per image and per video frame
    num_frames: int = DEFAULT_NUM_FRAMES
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES  # per image / frame file
    max_video_bytes: int = DEFAULT_MAX_VIDEO_BYTES  # per video file
    max_video_frames: int = DEFAULT_MAX_VIDEO_FRAMES  # per video file


def as_list(value: Any) -> list[Any]:
    """A media field that holds one value, a list of them or nothing, as a list (client inputs: mteb, ST)."""
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _describe(src: Any) -> str:
    if isinstance(src, (str, Path)):
        return repr(str(src))
    if isinstance(src, (bytes, bytearray)):
        return f"<{len(src)} bytes>"
    return f"<{type(src).__name__}>"


_SPECIAL = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
            (stat.S_ISSOCK, "a socket"))


def _not_regular(mode: int) -> str | None:
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "is a directory, not a file"
    kind = next((name for test, name in _SPECIAL if test(mode)), "not a regular file")
    return f"is {kind}, not a regular file (refused: reading it could block or never end)"


def _stat(path: str | Path, what: str) -> os.stat_result:
    """`os.stat` (following symlinks), its failures as the item's error."""
    try:
        return os.stat(path)
    except FileNotFoundError:
        raise InputError(f"{what} {_describe(path)}: file not found") from None
    except (OSError, ValueError) as e:
        raise InputError(f"{what} {_describe(path)}: unreadable ({getattr(e, 'strerror', None) or e})") from None


def open_regular(path: str | Path, what: str, max_bytes: int) -> int:
    """An fd of a regular file of at most `max_bytes`: checked with `stat` (following symlinks) before it is
    opened, so a FIFO or a device is never opened, then again on the open fd (O_NONBLOCK: never blocks)."""
    shown = _describe(path)
    st = _stat(path, what)
    why = _not_regular(st.st_mode)
    if why:
        raise InputError(f"{what} {shown}: {why}")
    if st.st_size > max_bytes:
        raise InputError(f"{what} {shown}: {st.st_size} bytes exceeds the limit of {max_bytes} bytes")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0))
    except OSError as e:
        raise InputError(f"{what} {shown}: unreadable ({e.strerror or e})") from None
    why = _not_regular(os.fstat(fd).st_mode)  # replaced between the two calls
    if why:
        os.close(fd)
        raise InputError(f"{what} {shown}: {why}")
    return fd


def read_bounded(path: str | Path, what: str, max_bytes: int) -> bytes:
    """The bytes of a regular file, reading at most `max_bytes` (+1 to see that there is more)."""
    fd = open_regular(path, what, max_bytes)
    try:
        with os.fdopen(fd, "rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as e:
        raise InputError(f"{what} {_describe(path)}: unreadable ({e.strerror or e})") from None
    if len(data) > max_bytes:  # a file that grows, or reports size 0 (procfs)
        raise InputError(f"{what} {_describe(path)}: more than the limit of {max_bytes} bytes")
    return data


def load_image(src: ImageLike, limits: InputLimits) -> Image.Image:
    """Open, check and fully decode one image as RGB; raise InputError with the reason."""
    if isinstance(src, Image.Image):
        img = src
    else:
        if isinstance(src, (str, Path)):
            _check_source(src, "image")
            data = read_bounded(src, "image", limits.max_file_bytes)
        elif isinstance(src, (bytes, bytearray)):
            data = bytes(src)
            if len(data) > limits.max_file_bytes:
                raise InputError(f"image {_describe(src)}: exceeds the limit of {limits.max_file_bytes} bytes")
        else:
            raise InputError(f"image {_describe(src)}: expected a path, bytes or a PIL image")
        if not data:
            raise InputError(f"image {_describe(src)}: empty file")
        try:
            img = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
        except UnidentifiedImageError as e:
            raise InputError(f"image {_describe(src)}: not a recognised image format") from e
        except Image.DecompressionBombError as e:
            raise InputError(f"image {_describe(src)}: decompression bomb ({e})") from e
        except PIXEL_ERRORS as e:
            raise InputError(f"image {_describe(src)}: truncated or corrupt ({e})") from e
    w, h = img.size
    if w == 0 or h == 0:
        raise InputError(f"image {_describe(src)}: zero-size image ({w}x{h})")
    if w * h > limits.max_image_pixels:
        raise InputError(
            f"image {_describe(src)}: {w}x{h} = {w * h} pixels exceeds the limit of "
            f"{limits.max_image_pixels} (possible decompression bomb; raise max_image_pixels to allow it)"
        )
    try:
        img.load()
        return _to_rgb(img)
    except PIXEL_ERRORS as e:
        raise InputError(f"image {_describe(src)}: truncated or corrupt ({e})") from e


def _upright(img: Image.Image) -> Image.Image:
    """The EXIF orientation applied (a phone photo stored sideways is embedded the way it is shown)."""
    try:
        orientation = img.getexif().get(0x0112, 1)
    except PIXEL_ERRORS:  # an unreadable EXIF block says nothing about the orientation
        return img
    if orientation in (None, 1):
        return img
    return ImageOps.exif_transpose(img)


def _to_rgb(img: Image.Image) -> Image.Image:
    """RGB as the picture is shown: EXIF orientation applied, 16-bit greyscale scaled to 8 bits, transparent
    pixels on white (as qwen-vl-utils does for RGBA; `convert` would put them on black)."""
    img = _upright(img)
    if img.mode == "RGB":
        return img
    if img.mode.startswith("I;16") or (img.mode == "I" and img.getextrema()[1] > 255):
        # high byte, as Pillow reduces 16-bit RGB; `convert` would clip everything above 255 to white
        wide = np.asarray(img)
        if img.mode == "I":
            wide = wide.clip(0, 65535)
        return Image.fromarray((wide >> 8).astype(np.uint8), "L").convert("RGB")
    if not img.has_transparency_data:
        return img.convert("RGB")
    rgba = img.convert("RGBA")
    out = Image.new("RGB", rgba.size, (255, 255, 255))
    out.paste(rgba, mask=rgba.getchannel("A"))
    return out


def sample_indices(n: int, num_frames: int) -> list[int]:
    """MMEB-V2's uniform frame choice: `linspace(0, n-1, k).astype(int)`, or all frames if n < k."""
    if n <= num_frames:
        return list(range(n))
    return np.linspace(0, n - 1, num_frames).astype(int).tolist()


def _natural_key(name: str) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def decode_video_file(path: Path, num_frames: int | InputLimits) -> list[Image.Image]:
    """Decode a video file with PyAV and keep `num_frames` uniformly spaced frames.

    Only the kept frames become images: one pass over the packets counts the frames (no decoding), one
    decoding pass converts the chosen ones and drops the rest, so memory does not grow with the video's
    length. Each frame's size is checked against `max_image_pixels` before anything is decoded.
    """
    import av  # imported lazily: decoding is the only use

    limits = num_frames if isinstance(num_frames, InputLimits) else InputLimits(num_frames=num_frames)
    shown = _describe(path)
    fd = open_regular(path, "video", limits.max_video_bytes)
    with os.fdopen(fd, "rb") as f:
        head = f.read(16)
        if head.lstrip(b"\xef\xbb\xbf").startswith((b"#EXTM3U", b"ffconcat")):
            raise InputError(f"video {shown}: a playlist / concat list, not a video file (refused: it points to "
                             "other files)")
        try:
            n = _count_frames(f, shown, limits)
            frames, decoded = _decode_chosen(f, sample_indices(n, limits.num_frames), shown)
            if decoded != n:  # the packet count was not the frame count (rare codecs): choose again, exactly
                frames, decoded = _decode_chosen(f, sample_indices(decoded, limits.num_frames), shown)
        except InputError:
            raise
        except (av.error.FFmpegError, OSError, ValueError, IndexError, EOFError) as e:
            raise InputError(f"video {shown}: undecodable or not a plain video container ({e})") from e
    if not frames:
        raise InputError(f"video {shown}: no video frames decoded")
    return frames


def _open_container(f: Any) -> Any:
    import av

    f.seek(0)
    return av.open(f, mode="r", options=dict(_AV_OPTIONS))


def _count_frames(f: Any, shown: str, limits: InputLimits) -> int:
    with _open_container(f) as container:
        if not container.streams.video:
            raise InputError(f"video {shown}: no video stream")
        stream = container.streams.video[0]
        w, h = stream.codec_context.width, stream.codec_context.height
        if w * h > limits.max_image_pixels:
            raise InputError(f"video {shown}: frames of {w}x{h} = {w * h} pixels exceed the limit of "
                             f"{limits.max_image_pixels}")
        n = 0
        for packet in container.demux(stream):
            if packet.size:
                n += 1
                if n > limits.max_video_frames:
                    raise InputError(f"video {shown}: more than {limits.max_video_frames} frames (max_video_frames)")
        return n


def _decode_chosen(f: Any, chosen: list[int], shown: str) -> tuple[list[Image.Image], int]:
    """The frames at `chosen` (decode order = presentation order after PyAV's reordering), and the count."""
    want = set(chosen)
    kept: dict[int, Image.Image] = {}
    n = 0
    with _open_container(f) as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            if n in want:
                kept[n] = frame.to_image().convert("RGB")
            n += 1
    return [kept[i] for i in chosen if i in kept], n


def load_video(src: VideoLike, limits: InputLimits) -> list[Image.Image]:
    """A video as a list of RGB frames: from a file, a frame directory, or a list of frames."""
    if isinstance(src, (str, Path)):
        _check_source(src, "video")
        path = Path(src)
        st = _stat(src, "video")
        if stat.S_ISDIR(st.st_mode):
            try:
                names = sorted((p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES),
                               key=lambda p: _natural_key(p.name))
            except OSError as e:
                raise InputError(f"video {_describe(src)}: unreadable directory ({e.strerror or e})") from None
            if not names:
                raise InputError(f"video {_describe(src)}: frame directory holds no image files")
            return [load_image(names[i], limits) for i in sample_indices(len(names), limits.num_frames)]
        return decode_video_file(path, limits)
    if isinstance(src, (bytes, bytearray, Image.Image)) or not isinstance(src, Sequence):
        raise InputError(f"video: expected a path or a list of frames, got {type(src).__name__}")
    frames = list(src)
    if not frames:
        raise InputError("video: empty frame list")
    return [load_image(frames[i], limits) for i in sample_indices(len(frames), limits.num_frames)]


def load_item(item: Item, index: int, limits: InputLimits) -> LoadedItem:
    """Validate and decode one item; errors are prefixed with the item's source or index (and id)."""
    if not isinstance(item, Item):
        raise InputError(f"item {index}: expected ume.Item, got {type(item).__name__}")
    label = item_label(item, index)
    try:
        check_item(item)
    except InputError as e:
        raise InputError(f"{label}: {e}", reason=str(e)) from None
    if not (item.text or "").strip() and not item.images and item.video is None:
        empty = "empty item (no text, image or video)"
        raise InputError(f"{label}: {empty}", reason=empty)
    try:
        images = [load_image(src, limits) for src in item.images]
    except InputError as e:
        raise InputError(f"{label}: {e}", "images", str(e)) from None
    try:
        video = None if item.video is None else load_video(item.video, limits)
    except InputError as e:
        raise InputError(f"{label}: {e}", "video", str(e)) from None
    return LoadedItem(text=item.text or "", images=images, video=video)
