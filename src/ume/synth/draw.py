"""Rasterising objects: scenes, object crops and video frames, drawn at 2x and downsampled for clean edges.

Only Pillow's bundled font is used (`ImageFont.load_default(size)`), so output depends on no system font.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont

from ume.synth.scene import Obj
from ume.synth.vocab import BACKGROUND, COLOURS

SCENE_PX = 112  # 8x8 patches of 14 px -> 16 visual tokens after Qwen2-VL's 2x2 merge
FRAME_PX = 84
CROP_PX = 56
SUPERSAMPLE = 2
RADIUS = {"small": 0.2, "large": 0.36}  # in cells


@lru_cache(maxsize=32)
def font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


@dataclass(frozen=True)
class Placed:
    """An object at a position in cell units (0..3 on each axis) with a colour of the moment."""

    obj: Obj
    x: float
    y: float
    colour: str


def place(obj: Obj) -> Placed:
    return Placed(obj, obj.col + 0.5 + obj.dx / 1000, obj.row + 0.5 + obj.dy / 1000, obj.colour)


def _polygon(shape: str, cx: float, cy: float, r: float, angle: int) -> list[tuple[float, float]]:
    if shape == "square":
        pts = [(-0.82, -0.82), (0.82, -0.82), (0.82, 0.82), (-0.82, 0.82)]
    elif shape == "triangle":
        pts = [(0.0, -1.0), (0.95, 0.72), (-0.95, 0.72)]
    else:  # diamond: a rhombus, taller than wide, so it never looks like a rotated square
        pts = [(0.0, -1.05), (0.68, 0.0), (0.0, 1.05), (-0.68, 0.0)]
    a = math.radians(angle)
    ca, sa = math.cos(a), math.sin(a)
    return [(cx + r * (px * ca - py * sa), cy + r * (px * sa + py * ca)) for px, py in pts]


def _draw_one(draw: ImageDraw.ImageDraw, p: Placed, cell_px: float) -> None:
    cx, cy, r = p.x * cell_px, p.y * cell_px, RADIUS[p.obj.size] * cell_px
    fill, outline = COLOURS[p.colour], (40, 40, 40)
    width = max(1, round(cell_px / 40))
    if p.obj.shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill, outline=outline, width=width)
    else:
        draw.polygon(_polygon(p.obj.shape, cx, cy, r, p.obj.angle), fill=fill, outline=outline, width=width)
    if p.obj.label:
        draw.text((cx, cy + (0.12 * r if p.obj.shape == "triangle" else 0)), p.obj.label,
                  font=font(round(r * 1.05)), fill=(255, 255, 255), anchor="mm", stroke_width=max(1, width),
                  stroke_fill=(0, 0, 0))


def render(placed: Sequence[Placed], px: int) -> Image.Image:
    """The objects on a px x px canvas."""
    big = Image.new("RGB", (px * SUPERSAMPLE, px * SUPERSAMPLE), BACKGROUND)
    draw = ImageDraw.Draw(big)
    cell_px = px * SUPERSAMPLE / 3
    for p in placed:
        _draw_one(draw, p, cell_px)
    return big.reduce(SUPERSAMPLE)  # box filter: exact 2x2 averages, much faster than a resampling filter


def render_scene(scene: Sequence[Obj], px: int = SCENE_PX) -> Image.Image:
    return render([place(o) for o in scene], px)


def crop_object(image: Image.Image, obj: Obj) -> Image.Image:
    """The object's neighbourhood (never reaching a neighbour's cell content), resized to CROP_PX."""
    cell_px = image.width / 3
    p = place(obj)
    half = 0.46 * cell_px
    box = (round(p.x * cell_px - half), round(p.y * cell_px - half),
           round(p.x * cell_px + half), round(p.y * cell_px + half))
    return image.crop(box).resize((CROP_PX, CROP_PX), Image.Resampling.BICUBIC)
