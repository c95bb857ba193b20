"""Dense descriptions of fresh MiniMMEB-world renders: the perception pre-training data (`ume train pretrain`).

A real VLM is pre-trained on captions before it is taught to reason; ours starts from random weights, so it
first learns to *see* the MiniMMEB worlds: every object of a scene with its size, colour, shape, letter and
cell; the first frame of a video and every change with its frame numbers; every line and table value of a
document page. Items are generated on the fly, each from its own stream
`SeedSequence([seed, PRETRAIN_SPLIT, part, index])` (part 0 = training, 1 = held-out perception eval), which
no eval, hold-out, SFT or RL stream can equal (their split ids are 0-3), and they never show a hold-out
(colour, shape) pair. The text is canonical (one fixed order and wording), so that the ground truth can be
read back out of a generated description attribute by attribute (`parse_*`, used by `ume.train.perception`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from ume.synth.doc_tasks import report, table_series
from ume.synth.docpage import Page, render_page
from ume.synth.draw import crop_object, render_scene
from ume.synth.rng import SPLIT_IDS, pick
from ume.synth.scene import Obj, Policy, reading_order, sample_scene, scene_spec
from ume.synth.video import KINDS as EVENT_KINDS
from ume.synth.video import Event, EventPlanner, Video, before, cell_name, direction, policy_ok, render_video, state_at
from ume.synth.vocab import CELL_NAMES, DOC_COMPANIES, DOC_SECTORS, DOC_TOPICS

PRETRAIN_SPLIT = 4  # after eval 0, holdout 1, sft 2, rl 3: no other split can draw these streams
assert PRETRAIN_SPLIT not in SPLIT_IDS.values()
PARTS = {"train": 0, "heldout": 1}
KINDS = ("scene", "crop", "video", "page")
DEFAULT_MIX = (0.45, 0.1, 0.3, 0.15)  # scene, crop, video, page
PROMPTS = {
    "scene": "Describe every object in the image: its size, colour, shape, letter and position.",
    "crop": "Describe the object in the image.",
    "video": "Describe the first frame of the video, then every change with its frame numbers.",
    "page": "Read the document page: its title, subtitle, text and every value.",
}


@dataclass(frozen=True)
class Described:
    """One pre-training item: the visual (an image, or a frame list for a video), the instruction, the
    canonical description (the training target) and the ground truth it was written from."""

    kind: str
    prompt: str
    visual: Image.Image | list[Image.Image]
    text: str
    truth: dict[str, Any]


def stream(seed: int, part: str, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, PRETRAIN_SPLIT, PARTS[part], index]))


# ---- wording -------------------------------------------------------------------------------------------
def _art(phrase: str) -> str:
    return ("an " if phrase[:1] in "aeiou" else "a ") + phrase


def obj_phrase(o: Obj, colour: str | None = None) -> str:
    """"a large red circle labelled A" (no position)."""
    label = f" labelled {o.label}" if o.label else ""
    return _art(f"{o.size} {colour or o.colour} {o.shape}{label}")


def objects_text(objs: list[Obj], colours: dict[int, str] | None = None) -> str:
    """"3 objects: a large red circle at the top left; ...", in reading order."""
    if not objs:
        return "0 objects"
    entries = [f"{obj_phrase(o, (colours or {}).get(id(o)))} at the {o.where()}" for o in reading_order(objs)]
    return f"{len(objs)} object{'s' if len(objs) != 1 else ''}: " + "; ".join(entries)


def describe_scene(scene: tuple[Obj, ...]) -> str:
    return objects_text(list(scene)) + "."


def describe_crop(obj: Obj) -> str:
    return f"One object: {obj_phrase(obj)}."


def event_text(video: Video, e: Event) -> str:
    """One change, canonical: "frames 2 to 4: the blue triangle moves down from the centre to the bottom"."""
    o = video.objects[e.obj]
    colour, cell = before(video, e)
    name = f"{colour} {o.shape}"
    if e.kind == "move":
        return (f"frames {e.start + 1} to {e.end + 1}: the {name} moves {direction(cell, e.to)} from the "
                f"{cell_name(cell)} to the {cell_name(e.to)}")
    if e.kind == "appear":
        return f"frame {e.start + 1}: {_art(f'{o.size} {name}')} appears at the {cell_name(cell)}"
    if e.kind == "disappear":
        return f"frame {e.start + 1}: the {name} disappears"
    return f"frame {e.start + 1}: the {name} turns {e.to}"


def describe_video(video: Video) -> str:
    first = [p.obj for p in state_at(video, 0)]
    parts = [f"Frame 1 shows {objects_text(first)}."]
    parts += [event_text(video, e)[:1].upper() + event_text(video, e)[1:] + "."
              for e in sorted(video.events, key=lambda e: (e.start, e.obj))]
    return " ".join(parts)


def describe_page(page: Page) -> str:
    parts = [f"Title: {page.title}.", f"{page.subtitle}.", page.text]
    if page.kind in ("table", "chart"):
        cells = ", ".join(f"{i} {v}" for i, v in zip(page.items, page.values, strict=True))
        parts.append(f"{'Table' if page.kind == 'table' else 'Bar chart'} of {page.metric}: {cells}.")
    return " ".join(parts)


# ---- generators ----------------------------------------------------------------------------------------
POLICY = Policy(holdout=False)  # training-side data: never a hold-out (colour, shape) pair


def make_scene(rng: np.random.Generator, level: float = 1.0) -> Described:
    scene = sample_scene(rng, int(rng.integers(1, 2 + round(8 * level))), label_prob=0.5)
    return Described("scene", PROMPTS["scene"], render_scene(scene), describe_scene(scene),
                     {"scene": scene_spec(scene)})


def make_crop(rng: np.random.Generator) -> Described:
    scene = sample_scene(rng, int(rng.integers(1, 7)), label_prob=0.5, distinct=True)
    obj = scene[0]
    return Described("crop", PROMPTS["crop"], crop_object(render_scene(scene), obj), describe_crop(obj),
                     {"scene": scene_spec([obj])})


def _video(rng: np.random.Generator) -> Video:
    while True:
        n_frames = 8 if rng.random() < 0.8 else 4
        n_events = int(rng.integers(1, 3)) if n_frames == 8 else 1
        n_obj = int(rng.integers(max(2, n_events), 5))
        objs = sample_scene(rng, n_obj, unique_names=True)
        kinds = [pick(rng, EVENT_KINDS) for _ in range(n_events)]
        hidden = [i for i, k in enumerate(kinds) if k == "appear"]
        planner = EventPlanner(rng, objs, hidden)
        windows = [(0, 3)] if n_frames == 4 else ([(1, 3), (4, 6)] if n_events == 2 else [(pick(rng, (1, 2, 3)),
                                                                                           pick(rng, (5, 6)))])
        if n_events == 2 and rng.random() < 0.5:
            windows = windows[::-1]
        events = []
        for i, (kind, (start, end)) in enumerate(zip(kinds, windows, strict=True)):
            if kind not in planner.options(i):
                break
            events.append(planner.make(i, kind, start, end))
        else:
            video = Video(objs, tuple(events), n_frames)
            if policy_ok(POLICY, video):
                return video


def make_video(rng: np.random.Generator) -> Described:
    video = _video(rng)
    return Described("video", PROMPTS["video"], render_video(video), describe_video(video), {"video": video.spec()})


def make_page(rng: np.random.Generator) -> Described:
    if rng.random() < 0.6:
        group = table_series(rng, int(rng.integers(0, 20 * len(DOC_TOPICS))))
    else:
        group = report(rng, int(rng.integers(0, 3 * len(DOC_COMPANIES) * len(DOC_SECTORS))))
    page = pick(rng, group.pages)
    return Described("page", PROMPTS["page"], render_page(page), describe_page(page), {"page": page.spec()})


MAKERS = {"scene": make_scene, "crop": make_crop, "video": make_video, "page": make_page}


def item(seed: int, part: str, index: int, mix: tuple[float, ...] = DEFAULT_MIX,
         kind: str | None = None, level: float = 1.0) -> Described:
    """Item `index` of a part: its kind drawn from `mix` (or fixed), then the item, all from one stream.

    `level` < 1 is the curriculum's early world: crops take the share `1 - level` on top of the mix scaled
    by `level`, and scenes hold at most 1 + 8·level objects. Level 0 is crops only, where a model first
    learns to see (measured: from random init, one object filling a 56 px crop is seen within 200 steps, a
    small one in a 112 px scene is not after 600)."""
    rng = stream(seed, part, index)
    weights = np.asarray(mix, dtype=float)
    weights = level * weights / weights.sum() + (1 - level) * np.eye(len(KINDS))[KINDS.index("crop")]
    chosen = KINDS[int(rng.choice(len(KINDS), p=weights / weights.sum()))]
    kind = kind or chosen
    return make_scene(rng, level) if kind == "scene" else MAKERS[kind](rng)


# ---- reading a description back ------------------------------------------------------------------------
_CELLS = "|".join(sorted((re.escape(n) for n in CELL_NAMES.values()), key=len, reverse=True))
_OBJ = r"an? (?P<size>\w+) (?P<colour>\w+) (?P<shape>\w+)(?: labelled (?P<label>[A-Z]))?"
OBJ_RE = re.compile(_OBJ + rf" at the (?P<where>{_CELLS})\b")
COUNT_RE = re.compile(r"(\d+) objects?\b")


def parse_objects(text: str) -> tuple[int | None, list[dict[str, str]]]:
    """(stated count, objects with size/colour/shape/label/where) of an object list."""
    m = COUNT_RE.search(text)
    objs = [{k: (v or "") for k, v in g.groupdict().items()} for g in OBJ_RE.finditer(text)]
    return (int(m.group(1)) if m else None), objs


def parse_crop(text: str) -> dict[str, str] | None:
    m = re.search(_OBJ, text)
    return None if m is None else {k: (v or "") for k, v in m.groupdict().items()}


def split_video(text: str) -> tuple[str, list[str]]:
    """(first-frame object list, event clauses in canonical lower-case form)."""
    first, _, rest = text.partition(". Frame")
    rest = "Frame" + rest if rest else ""
    events = [s.strip().rstrip(".").lower() for s in re.split(r"(?<=\.)\s+(?=Frames? \d)", rest) if s.strip()]
    return first, events


def parse_page(text: str) -> dict[str, Any]:
    title = re.search(r"Title: (.*?)\.(?: |$)", text)
    cells = re.search(r"(?:Table|Bar chart) of [^:]*: (.*?)\.(?: |$)", text)
    pairs = {}
    if cells:
        for part in cells.group(1).split(", "):
            m = re.fullmatch(r"(.+) (\d+)", part.strip())
            if m:
                pairs[m.group(1)] = int(m.group(2))
    return {"title": title.group(1) if title else None, "cells": pairs}
