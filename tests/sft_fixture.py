"""A small SFT set in the reference format, with learnable query/positive pairs.

Every pair names one (colour, shape) combination on both sides, so InfoNCE and the CE over the
templated reasoning both have something to learn from a random tiny model in a few dozen steps.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from ume.recipe import GENERATION_PROMPT

COLOURS = {"red": (220, 30, 30), "green": (30, 180, 60), "blue": (30, 60, 220), "yellow": (230, 210, 30)}
SHAPES = ("circle", "square", "triangle")


def draw(colour: str, shape: str, size: int = 56, shade: int = 0) -> Image.Image:
    img = Image.new("RGB", (size, size), (255 - shade, 255, 255))
    d = ImageDraw.Draw(img)
    box = (size // 6, size // 6, size - size // 6, size - size // 6)
    fill = COLOURS[colour]
    if shape == "circle":
        d.ellipse(box, fill=fill)
    elif shape == "square":
        d.rectangle(box, fill=fill)
    else:
        d.polygon([(box[0], box[3]), (box[2], box[3]), ((box[0] + box[2]) // 2, box[1])], fill=fill)
    return img


def turn(human: str, gpt: str, **media: Any) -> dict[str, Any]:
    return {"conversations": [{"from": "human", "value": human}, {"from": "gpt", "value": gpt}], **media}


def response(kind: str, colour: str, shape: str) -> str:
    return f"<think>The {kind} shows a {colour} {shape}.</think><answer>{colour} {shape}</answer><gen_emb>"


def build_sft_fixture(root: Path, seed: int = 0) -> dict[str, Path]:
    """root/images.json (sources i2t and t2i) and root/videos.jsonl (source v2t); media under root."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    (root / "img").mkdir(exist_ok=True)
    combos = [(c, s) for c in COLOURS for s in SHAPES]
    images: list[dict[str, Any]] = []
    for k, (colour, shape) in enumerate(combos * 2):
        name = f"img/{colour}_{shape}_{k}.png"
        draw(colour, shape, size=rng.choice([28, 56]), shade=rng.randrange(40)).save(root / name)
        text = f"{colour} {shape}"
        if k % 2 == 0:  # image -> caption; the released data carries the prompt suffix in the human turn
            qry = turn(f"<image>\nFind a caption for the picture.\n<disc_emb>\n{GENERATION_PROMPT}",
                       response("picture", colour, shape), image=name)
            pos = turn(text, response("text", colour, shape))
            source = "i2t"
        else:
            qry = turn(f"Find the picture of: {text}", response("text", colour, shape))
            pos = turn("<image>\n", response("picture", colour, shape), image=name)
            source = "t2i"
        images.append({"qry": qry, "pos": pos, "source": source})
    videos: list[dict[str, Any]] = []
    for k, (colour, shape) in enumerate(combos):
        frames = []
        for t in range(4):
            name = f"img/v{k}_f{t}.jpg"
            draw(colour, shape, size=28 + 4 * t).resize((56, 56)).save(root / name)
            frames.append(name)
        videos.append({"qry": turn("<video>\nWhat moves in the clip?", response("clip", colour, shape), video=frames),
                       "pos": turn(f"a {colour} {shape}", response("text", colour, shape)), "source": "v2t"})
    (root / "images.json").write_text(json.dumps(images, indent=1))
    (root / "videos.jsonl").write_text("".join(json.dumps(v) + "\n" for v in videos))
    return {"images": root / "images.json", "videos": root / "videos.jsonl"}
