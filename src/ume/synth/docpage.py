"""Document pages: a title, a line or paragraph of text, and a small table or bar chart, drawn with PIL.

Pages are 224x224 (16x16 patches of 14 px -> 64 visual tokens after Qwen2-VL's 2x2 merge) with fonts of
12 px and up, so the text stays legible to a small model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from PIL import Image, ImageDraw

from ume.synth.draw import font

PAGE_PX = 224
MARGIN = 10
INK = (20, 20, 20)
BAR = (70, 110, 190)


@dataclass(frozen=True)
class Page:
    """`kind` is "table", "chart" or "text"; tables and charts show `values[i]` for `items[i]`."""

    title: str
    subtitle: str
    kind: str
    text: str
    metric: str = ""
    items: list[str] = field(default_factory=list)
    values: list[int] = field(default_factory=list)

    def spec(self) -> dict[str, Any]:
        return asdict(self)


def wrap(draw: ImageDraw.ImageDraw, text: str, size: int, width: int) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        trial = f"{line} {word}".strip()
        if line and draw.textlength(trial, font=font(size)) > width:
            lines.append(line)
            line = word
        else:
            line = trial
    return [*lines, line] if line else lines


def render_page(page: Page) -> Image.Image:
    img = Image.new("RGB", (PAGE_PX, PAGE_PX), (255, 255, 255))
    d = ImageDraw.Draw(img)
    y = MARGIN
    for line in wrap(d, page.title, 17, PAGE_PX - 2 * MARGIN):
        d.text((MARGIN, y), line, font=font(17), fill=INK)
        y += 20
    d.text((MARGIN, y), page.subtitle, font=font(12), fill=(110, 110, 110))
    y += 16
    d.line((MARGIN, y, PAGE_PX - MARGIN, y), fill=(150, 150, 150), width=1)
    y += 6
    body = 14 if page.kind == "text" else 12
    for line in wrap(d, page.text, body, PAGE_PX - 2 * MARGIN):
        d.text((MARGIN, y), line, font=font(body), fill=INK)
        y += body + 4
    if page.kind == "table":
        _table(d, page, y + 4)
    elif page.kind == "chart":
        _chart(d, page, y + 4)
    return img


def _table(d: ImageDraw.ImageDraw, page: Page, top: int) -> None:
    row_h, x0, x1, x2 = 20, MARGIN + 4, PAGE_PX // 2 + 10, PAGE_PX - MARGIN - 4
    rows = [("Item", page.metric.capitalize())] + [(i, str(v)) for i, v in zip(page.items, page.values, strict=True)]
    for r, (a, b) in enumerate(rows):
        y = top + r * row_h
        if r == 0:
            d.rectangle((x0, y, x2, y + row_h), fill=(225, 232, 245))
        d.text((x0 + 5, y + 3), a, font=font(13), fill=INK)
        d.text((x1 + 5, y + 3), b, font=font(13), fill=INK)
        d.line((x0, y + row_h, x2, y + row_h), fill=(120, 120, 120))
    d.rectangle((x0, top, x2, top + row_h * len(rows)), outline=(80, 80, 80))
    d.line((x1, top, x1, top + row_h * len(rows)), fill=(80, 80, 80))


def _chart(d: ImageDraw.ImageDraw, page: Page, top: int) -> None:
    base, height = PAGE_PX - MARGIN - 16, PAGE_PX - MARGIN - 16 - top - 16
    n = len(page.items)
    slot = (PAGE_PX - 2 * MARGIN) / n
    vmax = max(page.values)
    d.line((MARGIN, base, PAGE_PX - MARGIN, base), fill=INK)
    for i, (item, v) in enumerate(zip(page.items, page.values, strict=True)):
        cx = MARGIN + slot * (i + 0.5)
        h = height * v / vmax
        d.rectangle((cx - slot * 0.3, base - h, cx + slot * 0.3, base), fill=BAR)
        d.text((cx, base - h - 2), str(v), font=font(12), fill=INK, anchor="mb")
        d.text((cx, base + 2), item, font=font(11), fill=INK, anchor="mt")
