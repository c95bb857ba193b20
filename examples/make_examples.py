"""Rebuild the sample items and the tiny checkpoint shipped in examples/ (deterministic)."""

from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageDraw

from ume.tiny import build_tiny

HERE = Path(__file__).parent


def scene(colour: tuple[int, int, int], shape: str, size: int = 96) -> Image.Image:
    img = Image.new("RGB", (size, size), "white")
    d = ImageDraw.Draw(img)
    box = (size // 4, size // 4, 3 * size // 4, 3 * size // 4)
    (d.ellipse if shape == "circle" else d.rectangle)(box, fill=colour)
    return img


def video(path: Path, frames: int = 16, size: int = 64) -> None:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=8)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for t in range(frames):
            img = Image.new("RGB", (size, size), "white")
            x = 4 + t * (size - 20) // frames
            ImageDraw.Draw(img).rectangle((x, 24, x + 16, 40), fill=(220, 30, 30))
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.asarray(img), format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


if __name__ == "__main__":
    media = HERE / "media"
    media.mkdir(exist_ok=True)
    scene((220, 30, 30), "circle").save(media / "red_circle.png")
    scene((30, 60, 220), "square").save(media / "blue_square.png")
    video(media / "moving_square.mp4")
    build_tiny(HERE / "tiny-qwen2-vl", family="qwen2_vl", seed=0)
