"""A fuzz corpus for `ume embed`: good items mixed with every kind of odd or broken line and file.

`build_corpus(DIR)` writes DIR/items.jsonl and its media, and returns, per input line, what must come out:
None for an item that embeds, or a substring of its error. Used by tests/test_bad_inputs.py and
benchmarks/embed_bad_inputs.py (peak RSS and alone-vs-batched cosines).
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
from PIL import Image


def _png(path: Path, colour, size=(64, 48)) -> Path:
    Image.new("RGB", size, colour).save(path)
    return path


def write_video(path: Path, frames: int, size=(64, 64), fmt: str | None = None) -> Path:
    import av

    with av.open(str(path), "w", format=fmt) as out:
        stream = out.add_stream("mpeg4", rate=25)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        for t in range(frames):
            arr = np.full((size[1], size[0], 3), (t * 7) % 256, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def png16(path: Path) -> Path:
    """A 16-bit greyscale gradient (0 .. 65535): `convert('RGB')` would clip it to almost all white."""
    ramp = np.linspace(0, 65535, 64 * 64).astype(np.uint16).reshape(64, 64)
    Image.fromarray(ramp).save(path)
    return path


def exif_jpeg(path: Path, orientation: int = 6, size=(80, 40)) -> Path:
    """A JPEG stored landscape with an EXIF orientation that shows it rotated (6: 90 degrees clockwise)."""
    img = Image.new("RGB", size, (200, 30, 30))
    img.paste((30, 30, 200), (0, 0, size[0] // 4, size[1]))  # a blue band on the stored left edge
    exif = img.getexif()
    exif[0x0112] = orientation
    img.save(path, "JPEG", exif=exif.tobytes(), quality=95)
    return path


def transparent_palette_png(path: Path) -> Path:
    img = Image.new("P", (56, 56), 0)
    img.putpalette([0, 0, 0, 200, 30, 30] + [0, 0, 0] * 254)
    img.paste(1, (28, 0, 56, 56))
    img.save(path, transparency=0)  # index 0 (black in the palette) is transparent
    return path


def hls_playlist(path: Path, segment: Path) -> Path:
    path.write_text(f"#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\nfile://{segment}\n"
                    f"#EXTINF:2.0,\n{segment}\n#EXT-X-ENDLIST\n")
    return path


def build_corpus(root: Path, long_video_frames: int = 750) -> tuple[Path, list[str | None]]:
    """items.jsonl (60 lines) and the expected outcome of each line (None: embedded)."""
    root.mkdir(parents=True, exist_ok=True)
    m = root / "media"
    m.mkdir(exist_ok=True)
    red, blue = _png(m / "red.png", (220, 30, 30)), _png(m / "blue.png", (30, 60, 220), (96, 40))
    frames = m / "frames"
    frames.mkdir(exist_ok=True)
    for t in range(10):
        Image.new("RGB", (56, 56), (t * 20, 100, 50)).save(frames / f"f{t}.jpg")
    clip = write_video(m / "clip.mp4", 16)
    long_clip = write_video(m / "long.mp4", long_video_frames, size=(320, 240))
    segment = write_video(m / "seg.ts", 16, fmt="mpegts")
    playlist = hls_playlist(m / "list.m3u8", segment)
    disguised = hls_playlist(m / "playlist.mp4", segment)
    png16(m / "g16.png")
    exif_jpeg(m / "exif.jpg")
    transparent_palette_png(m / "palette.png")
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), "green").save(buf, "PNG")
    (m / "truncated.png").write_bytes(buf.getvalue()[:70])
    (m / "empty.png").write_bytes(b"")
    (m / "notimage.png").write_bytes(b"this is text, not a picture")
    Image.new("1", (9000, 9000)).save(m / "bomb.png")  # 81 MP in a tiny file
    for name, target in (("zero.png", "/dev/zero"), ("random.png", "/dev/urandom"), ("zero.mp4", "/dev/zero")):
        link = m / name
        if not link.is_symlink():
            link.symlink_to(target)
    for name in ("fifo.png", "fifo.mp4"):
        if not (m / name).exists():
            os.mkfifo(m / name)
    (m / "dir.png").mkdir(exist_ok=True)

    lines: list[tuple[bytes | str | dict, str | None]] = []

    def add(row, expect=None):
        lines.append((row, expect))

    ok = None
    add({"id": "bom", "text": "the first row, after a byte-order mark"}, ok)
    add({"id": "t1", "text": "Find me a picture of a red circle."}, ok)
    add({"id": "i1", "text": "Represent the given image.", "image": "media/red.png"}, ok)
    add(b'{"id": "bad-utf8", "text": "caf\xe9 au lait"}', "invalid UTF-8")
    add({"id": "sep", "text": "line\u2028separator and next\u0085line inside one string"}, ok)
    add({"id": "i2", "text": "two images", "images": ["media/red.png", "media/blue.png"]}, ok)
    add("not json at all", "invalid JSON")
    add("5", "expected a JSON object")
    add('["a", "list"]', "expected a JSON object")
    add({"id": "v1", "text": "Which way does the square move?", "video": "media/clip.mp4"}, ok)
    add({"id": "types-images", "images": 5}, "field 'images' should be a path or a list of paths")
    add({"id": "types-video", "video": 3}, "field 'video' should be a path or a list of paths")
    add({"id": "types-text", "text": 5}, "field 'text' should be a string")
    add({"id": "types-text-list", "text": ["a", "list"]}, "field 'text' should be a string")
    add({"id": "types-images-obj", "images": {"a": 1}}, "field 'images' should be a path or a list of paths")
    add({"id": "f1", "text": "frames", "video": "media/frames"}, ok)
    add({"id": "zero", "text": "x", "image": "media/zero.png"}, "is a character device, not a regular file")
    add({"id": "random", "text": "x", "image": "media/random.png"}, "is a character device, not a regular file")
    add({"id": "fifo", "text": "x", "image": "media/fifo.png"}, "is a FIFO, not a regular file")
    add({"id": "fifo-video", "text": "x", "video": "media/fifo.mp4"}, "is a FIFO, not a regular file")
    add({"id": "zero-video", "text": "x", "video": "media/zero.mp4"}, "is a character device")
    add({"id": "huge-text", "text": "many words " * 100_000}, "exceeds the limit of")
    add({"id": "long-ok", "text": "a long but legal item " * 250}, ok)
    add('{"id": "\\ud800", "text": "lone surrogate in the id"}', "field 'id' is not valid Unicode")
    add('{"id": "sur-text", "text": "bad \\udc80 text"}', "field 'text' is not valid Unicode")
    add({"id": "missing", "text": "x", "image": "media/nope.png"}, "file not found")
    add({"id": "truncated", "text": "x", "image": "media/truncated.png"}, "truncated or corrupt")
    add({"id": "empty-file", "text": "x", "image": "media/empty.png"}, "empty file")
    add({"id": "not-image", "text": "x", "image": "media/notimage.png"}, "not a recognised image format")
    add({"id": "dir-image", "text": "x", "image": "media/dir.png"}, "is a directory")
    add({"id": "bomb", "text": "x", "image": "media/bomb.png"}, "exceeds the limit of 64000000")
    add({"id": "hls", "text": "x", "video": "media/list.m3u8"}, "playlist")
    add({"id": "hls-mp4", "text": "x", "video": "media/playlist.mp4"}, "playlist")
    add({"id": "long-video", "text": "a long clip", "video": "media/long.mp4"}, ok)
    add({"id": "g16", "text": "16-bit", "image": "media/g16.png"}, ok)
    add({"id": "exif", "text": "rotated", "image": "media/exif.jpg"}, ok)
    add({"id": "palette", "text": "transparent", "image": "media/palette.png"}, ok)
    add({"id": "unknown", "txt": "typo"}, "unknown field(s) ['txt']")
    add({"id": "both", "text": "x", "image": "media/red.png", "images": ["media/blue.png"]}, "both given")
    add({"id": "empty"}, "empty item")
    add({"id": [1], "text": "list id"}, "field 'id' should be a string or an integer")
    add('{"id": "nan", "text": NaN}', "field 'text' should be a string")
    add("[" * 100_000 + "]" * 100_000, "invalid JSON")
    add('{"id": 1, "text": ' + "9" * 5000 + "}", "invalid JSON")
    add({"id": "empty-path", "text": "x", "image": ""}, "empty path")
    add({"id": "frames-list", "text": "frame list", "video": ["media/frames/f0.jpg", "media/frames/f3.jpg"]}, ok)
    add({"id": "frames-bad", "text": "x", "video": ["media/frames/f0.jpg", 5]}, "field 'video'[1]")
    for k in range(13):  # plain good items, short and medium
        row = {"id": f"g{k}", "text": f"good item {k} " * (1 + 5 * k)}
        if k % 3 == 1:
            row["image"] = "media/blue.png"
        add(row, ok)
    assert len(lines) == 60, len(lines)

    out = io.BytesIO()
    out.write(b"\xef\xbb\xbf")
    for row, _ in lines:
        if isinstance(row, dict):
            blob = json.dumps(row, ensure_ascii=False).encode("utf-8", "surrogatepass")
        elif isinstance(row, str):
            blob = row.encode()
        else:
            blob = row
        out.write(blob + b"\n")
        if row is lines[5][0]:
            out.write(b"\n   \n")  # blank lines are not rows
    path = root / "items.jsonl"
    path.write_bytes(out.getvalue())
    del clip, long_clip, playlist, disguised, red, blue
    return path, [e for _, e in lines]


def line_numbers(expect: list[str | None]) -> list[int]:
    """The input line of each row of the corpus (two blank lines follow row 5)."""
    return [i + 1 if i <= 5 else i + 3 for i in range(len(expect))]
