"""A contact sheet of a build: per task its first query, the positive, a negative and the query's reasoning.

The rows are regenerated from the manifest's seed through the same item streams the build used, so the
sheet shows exactly item 0 of every task (with its reasoning trace, which eval files do not store).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ume.synth.docpage import render_page, wrap
from ume.synth.draw import font
from ume.synth.example import Media, Side
from ume.synth.registry import GROUP_GENERATORS, doc_groups, item_examples
from ume.synth.tasks import TASKS_BY_NAME, VISDOC_QUERY, VISDOC_TARGET, MiniTask

ROW_H = 196
VIS_H = 112
COLS = (("task", 170), ("query", 300), ("positive", 260), ("negative", 260), ("reasoning (query side)", 560))
TEXT = (25, 25, 25)


def _visual(media: Media | None) -> Image.Image | None:
    """An image scaled to VIS_H, or four evenly spaced frames side by side."""
    if media is None:
        return None
    rendered = media.render()
    if media.kind == "image":
        img = rendered
        return img.resize((round(img.width * VIS_H / img.height), VIS_H), Image.Resampling.BICUBIC)
    idx = np.linspace(0, len(rendered) - 1, 4).astype(int)
    size = VIS_H // 2
    strip = Image.new("RGB", (4 * size + 6, size), (255, 255, 255))
    for k, i in enumerate(idx):
        strip.paste(rendered[int(i)].resize((size, size), Image.Resampling.BICUBIC), (k * (size + 2), 0))
    return strip


def _cell(draw: ImageDraw.ImageDraw, sheet: Image.Image, x: int, y: int, width: int, media: Media | None,
          text: str, size: int = 12) -> None:
    """A visual (if any) with as much of the wrapped text under it as fits in the row."""
    top = y + 4
    vis = _visual(media)
    if vis is not None:
        sheet.paste(vis, (x + 4, top))
        top += vis.height + 4
    for line in wrap(draw, text.replace("\n", " / "), size, width - 10)[:max(1, (y + ROW_H - top) // (size + 3))]:
        draw.text((x + 4, top), line, font=font(size), fill=TEXT)
        top += size + 3


def _examples(task: MiniTask, seed: int) -> tuple[Side, Side, Side]:
    """Query, positive and a negative of item 0; for global tasks the negative is another pool member."""
    if task.base not in GROUP_GENERATORS:
        (_, ex), (_, other) = item_examples(task, task.split, seed, 2)
        return ex.query, ex.positive, ex.negatives[0] if ex.negatives else other.positive
    group = next(doc_groups(task, task.split, seed, 1))[1]
    q = group.queries[0]
    best = max(q.relevant, key=lambda j: (q.relevant[j], -j))

    def page(j: int) -> Side:
        return Side(VISDOC_TARGET, "", Media("image", f"p{j}", lambda: render_page(group.pages[j])))

    return Side(VISDOC_QUERY, q.text, None, q.think), page(best), page((best + 1) % len(group.pages))


def preview(root: str | Path) -> Path:
    """Write root/preview.png and return its path."""
    root = Path(root)
    manifest = json.loads((root / "manifest.json").read_text())
    tasks = [TASKS_BY_NAME[t["name"]] for t in manifest["tasks"]]
    width = sum(w for _, w in COLS)
    sheet = Image.new("RGB", (width, 24 + ROW_H * len(tasks)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    x = 0
    for title, w in COLS:
        draw.text((x + 4, 4), title, font=font(15), fill=TEXT)
        x += w
    for r, task in enumerate(tasks):
        y = 24 + r * ROW_H
        draw.rectangle((0, y, width, y + ROW_H), fill=(246, 246, 252) if r % 2 else (255, 255, 255))
        query, pos, neg = _examples(task, manifest["seed"])
        head = [task.name, f"{task.modality} {task.meta_task}", f"loader {task.loader}",
                f"{task.ranking}, {task.metric}", "reasoning-heavy" if task.reasoning_heavy else "perception / lookup"]
        for k, line in enumerate(head):
            draw.text((4, y + 6 + k * 17), line, font=font(14 if k == 0 else 12), fill=TEXT)
        x = COLS[0][1]
        for side, (_, w) in zip((query, pos, neg), COLS[1:4], strict=True):
            _cell(draw, sheet, x, y, w, side.media, side.prompt())
            x += w
        _cell(draw, sheet, x, y, COLS[4][1], None, query.think, size=11)
    path = root / "preview.png"
    sheet.save(path)
    return path
