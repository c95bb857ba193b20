"""Items to embed, and turning them into validated PIL images and video frames.

Validation happens here, before anything reaches the processor, so that a bad file produces an error
that names the item and the reason instead of a stack trace from deep inside an image library.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

ImageLike = str | Path | bytes | Image.Image
VideoLike = str | Path | Sequence[ImageLike]

DEFAULT_MAX_IMAGE_PIXELS = 64_000_000  # 8000 x 8000; anything larger is treated as a decompression bomb
DEFAULT_NUM_FRAMES = 8  # MMEB-V2 samples 8 frames per video
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpeg", ".mpg", ".gif"}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


class InputError(ValueError):
    """An item that cannot be embedded; the message names the item and the reason."""


@dataclass
class Item:
    """One thing to embed: text, images, a video (file or frames), or a combination.

    `images` entries may be paths, raw bytes or PIL images. `video` is a video file path, a directory
    of frame files, or a list of frames (paths, bytes or PIL images). `id` only labels error messages.
    """

    text: str = ""
    images: Sequence[ImageLike] = field(default_factory=list)
    video: VideoLike | None = None
    id: str | None = None

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> Item:
        """Build from a JSON row: `text`, `image` | `images`, `video` (path or list of frame paths), `id`."""
        unknown = set(row) - {"text", "image", "images", "video", "id"}
        if unknown:
            raise InputError(f"unknown field(s) {sorted(unknown)}; expected text, image(s), video, id")
        images = row.get("images") or ([] if row.get("image") is None else [row["image"]])
        if isinstance(images, str):
            images = [images]
        rid = row.get("id")
        return cls(text=row.get("text") or "", images=list(images), video=row.get("video"),
                   id=None if rid is None else str(rid))


@dataclass
class LoadedItem:
    """An item whose media are decoded and validated."""

    text: str
    images: list[Image.Image]
    video: list[Image.Image] | None


@dataclass(frozen=True)
class InputLimits:
    """Limits applied while loading media."""

    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    num_frames: int = DEFAULT_NUM_FRAMES


def _describe(src: Any) -> str:
    if isinstance(src, (str, Path)):
        return repr(str(src))
    if isinstance(src, bytes):
        return f"<{len(src)} bytes>"
    return f"<{type(src).__name__}>"


def load_image(src: ImageLike, limits: InputLimits) -> Image.Image:
    """Open, check and fully decode one image as RGB; raise InputError with the reason."""
    if isinstance(src, Image.Image):
        img = src
    else:
        if isinstance(src, (str, Path)):
            path = Path(src)
            if not path.exists():
                raise InputError(f"image {_describe(src)}: file not found")
            if path.is_dir():
                raise InputError(f"image {_describe(src)}: is a directory, not an image file")
            try:
                data = path.read_bytes()
            except OSError as e:
                raise InputError(f"image {_describe(src)}: unreadable ({e.strerror or e})") from e
        elif isinstance(src, bytes):
            data = src
        else:
            raise InputError(f"image {_describe(src)}: expected a path, bytes or a PIL image")
        if not data:
            raise InputError(f"image {_describe(src)}: empty file")
        try:
            img = Image.open(io.BytesIO(data))
        except UnidentifiedImageError as e:
            raise InputError(f"image {_describe(src)}: not a recognised image format") from e
        except Image.DecompressionBombError as e:
            raise InputError(f"image {_describe(src)}: decompression bomb ({e})") from e
        except (OSError, SyntaxError, ValueError) as e:
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
    except (OSError, SyntaxError, ValueError) as e:
        raise InputError(f"image {_describe(src)}: truncated or corrupt ({e})") from e
    return _to_rgb(img)


def _to_rgb(img: Image.Image) -> Image.Image:
    """RGB with transparent pixels on white, as qwen-vl-utils does for RGBA (`convert` would put them on black)."""
    if img.mode == "RGB":
        return img
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


def decode_video_file(path: Path, num_frames: int) -> list[Image.Image]:
    """Decode a video file with PyAV and keep `num_frames` uniformly spaced frames."""
    import av  # imported lazily: decoding is the only use

    try:
        with av.open(str(path)) as container:
            frames = [f.to_image() for f in container.decode(video=0)]
    except (av.error.FFmpegError, OSError, ValueError, IndexError) as e:
        raise InputError(f"video {_describe(path)}: undecodable ({e})") from e
    if not frames:
        raise InputError(f"video {_describe(path)}: no video frames decoded")
    return [frames[i].convert("RGB") for i in sample_indices(len(frames), num_frames)]


def load_video(src: VideoLike, limits: InputLimits) -> list[Image.Image]:
    """A video as a list of RGB frames: from a file, a frame directory, or a list of frames."""
    if isinstance(src, (str, Path)):
        path = Path(src)
        if not path.exists():
            raise InputError(f"video {_describe(src)}: file not found")
        if path.is_dir():
            names = sorted((p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES),
                           key=lambda p: _natural_key(p.name))
            if not names:
                raise InputError(f"video {_describe(src)}: frame directory holds no image files")
            return [load_image(names[i], limits) for i in sample_indices(len(names), limits.num_frames)]
        return decode_video_file(path, limits.num_frames)
    frames = list(src)
    if not frames:
        raise InputError("video: empty frame list")
    return [load_image(frames[i], limits) for i in sample_indices(len(frames), limits.num_frames)]


def load_item(item: Item, index: int, limits: InputLimits) -> LoadedItem:
    """Validate and decode one item; errors are prefixed with the item's index (and id)."""
    label = f"item {index}" + (f" (id={item.id!r})" if item.id is not None else "")
    if not isinstance(item, Item):
        raise InputError(f"{label}: expected ume.Item, got {type(item).__name__}")
    if not (item.text or "").strip() and not item.images and item.video is None:
        raise InputError(f"{label}: empty item (no text, image or video)")
    try:
        images = [load_image(src, limits) for src in item.images]
        video = None if item.video is None else load_video(item.video, limits)
    except InputError as e:
        raise InputError(f"{label}: {e}") from None
    return LoadedItem(text=item.text or "", images=images, video=video)
