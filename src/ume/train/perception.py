"""Perception accuracy: does the model see what is in a render? Exact match against the generator's truth.

The model describes held-out renders (`ume.synth.describe`, part "heldout": streams no training item,
eval or hold-out query uses) greedily, with the pre-training prompt; each description is read back
(`parse_*`) and compared attribute by attribute with the ground truth it should state:

- scenes (and the first frame of videos): objects are matched by cell. `colour`, `shape`, `size`,
  `letter` = share of true objects whose cell is described with that attribute right (a missing or
  misplaced object counts wrong for all); `position` = |described cells ∩ true cells| / max(|described|,
  |true|) per item (extra and missing objects both cost); `count` = the stated number equals the truth;
  `exact` = the whole description is the canonical one.
- crops: `colour`, `shape`, `size`, `letter` of the one object.
- videos: `events` = share of true change clauses ("frame 5: the green diamond disappears") stated exactly,
  frame numbers included; `events_what` the same without frame numbers.
- pages: `table_cells` = share of true (item, value) pairs read exactly; `title` exact.

`ume train perception --model DIR --per-kind 100 --output perception.json` writes the report.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import torch

from ume.batching import make_batch
from ume.synth.describe import (
    KINDS,
    Described,
    describe_video,
    event_text,
    item,
    parse_crop,
    parse_objects,
    parse_page,
    split_video,
)
from ume.synth.video import Event, Video, state_at
from ume.synth.vocab import CELL_NAMES

HELDOUT_OFFSET = 1_000_000  # per-kind index blocks of the held-out part


def heldout_items(seed: int, per_kind: int, kinds: Sequence[str] = KINDS) -> list[Described]:
    return [item(seed, "heldout", k * HELDOUT_OFFSET + i, kind=kind)
            for k, kind in enumerate(KINDS) if kind in kinds for i in range(per_kind)]


def describe(backbone: Any, items: Sequence[Described], max_new_tokens: int = 256,
             batch_size: int = 16) -> list[str]:
    """Greedy descriptions with the pre-training prompt (batched per kind, left padded)."""
    from ume.train.pretrain import caption_recipe, loaded

    recipe = caption_recipe(backbone.recipe)
    model, proc = backbone.model, backbone.processor
    out: list[str] = [""] * len(items)
    order = sorted(range(len(items)), key=lambda i: KINDS.index(items[i].kind))
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        batch = make_batch(proc, recipe, [loaded(items[i]) for i in idx])
        batch = {k: v.to(backbone.device) for k, v in batch.items()}
        with torch.no_grad():
            gen = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                                 eos_token_id=backbone.eos_id, pad_token_id=backbone.pad_id)
        texts = proc.tokenizer.batch_decode(gen[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
        for i, t in zip(idx, texts, strict=True):
            out[i] = t.strip()
    return out


# ---- scoring -------------------------------------------------------------------------------------------
def _objects_scores(truth: list[dict[str, Any]], text: str) -> dict[str, float]:
    count, got = parse_objects(text)
    by_cell = {o["where"]: o for o in got}
    true_cells = {CELL_NAMES[(o["row"], o["col"])] for o in truth}
    s: dict[str, float] = {}
    for attr, key in (("colour", "colour"), ("shape", "shape"), ("size", "size"), ("letter", "label")):
        hits = [by_cell.get(CELL_NAMES[(o["row"], o["col"])], {}).get(key, None) == o[key] for o in truth]
        s[attr] = sum(hits) / len(truth) if truth else 1.0
    cells = set(by_cell)
    s["position"] = len(cells & true_cells) / max(len(cells), len(true_cells), 1)
    s["count"] = float(count == len(truth))
    return s


def _video(spec: dict[str, Any]) -> Video:
    from ume.synth.scene import Obj

    objs = tuple(Obj(**o) for o in spec["objects"])
    events = tuple(Event(**e) for e in spec["events"])
    return Video(objs, events, spec["n_frames"])


def _what(clause: str) -> str:
    return re.sub(r"^frames? \d+(?: to \d+)?: ", "", clause)


def score_item(d: Described, text: str) -> dict[str, float]:
    """Attribute scores of one generated description (see the module docstring)."""
    if d.kind == "scene":
        return {**_objects_scores(d.truth["scene"]["objects"], text), "exact": float(text == d.text)}
    if d.kind == "crop":
        o, got = d.truth["scene"]["objects"][0], parse_crop(text) or {}
        return {"colour": float(got.get("colour") == o["colour"]), "shape": float(got.get("shape") == o["shape"]),
                "size": float(got.get("size") == o["size"]), "letter": float(got.get("label", None) == o["label"]),
                "exact": float(text == d.text)}
    if d.kind == "video":
        video = _video(d.truth["video"])
        first_text, clauses = split_video(text)
        first = [{"row": p.obj.row, "col": p.obj.col, "colour": p.colour, "shape": p.obj.shape, "size": p.obj.size,
                  "label": p.obj.label} for p in state_at(video, 0)]
        true = [event_text(video, e).lower() for e in video.events]
        got, got_what = Counter(clauses), Counter(_what(c) for c in clauses)
        s = {f"first_frame_{k}": v for k, v in _objects_scores(first, first_text).items()}
        s["events"] = sum(min(got[c], 1) for c in true) / len(true)
        s["events_what"] = sum(min(got_what[_what(c)], 1) for c in true) / len(true)
        s["exact"] = float(text == describe_video(video))
        return s
    page, got = d.truth["page"], parse_page(text)
    s = {"title": float(got["title"] == page["title"]), "exact": float(text == d.text)}
    if page["items"]:
        s["table_cells"] = sum(got["cells"].get(i) == v for i, v in zip(page["items"], page["values"],
                                                                         strict=True)) / len(page["items"])
    return s


def aggregate(items: Sequence[Described], texts: Sequence[str]) -> dict[str, Any]:
    """{kind: {attribute: mean accuracy}, "n": {kind: items}}."""
    sums: dict[str, dict[str, list[float]]] = {}
    for d, t in zip(items, texts, strict=True):
        for k, v in score_item(d, t).items():
            sums.setdefault(d.kind, {}).setdefault(k, []).append(v)
    out: dict[str, Any] = {kind: {k: sum(v) / len(v) for k, v in attrs.items()} for kind, attrs in sums.items()}
    out["n"] = {kind: sum(d.kind == kind for d in items) for kind in sums}
    return out


def headline(report: dict[str, Any]) -> dict[str, float]:
    """The attributes the issue asks for, one number each (scenes; videos; pages)."""
    keys = {"colour": ("scene", "colour"), "shape": ("scene", "shape"), "size": ("scene", "size"),
            "count": ("scene", "count"), "position": ("scene", "position"), "letter": ("scene", "letter"),
            "crop_shape": ("crop", "shape"), "events": ("video", "events"),
            "events_what": ("video", "events_what"), "first_frame_colour": ("video", "first_frame_colour"),
            "table_cells": ("page", "table_cells"), "title": ("page", "title")}
    return {name: report[k][a] for name, (k, a) in keys.items() if k in report and a in report[k]}


def perception(backbone: Any, per_kind: int, seed: int = 0, max_new_tokens: int = 256, batch_size: int = 16,
               examples: int = 2) -> dict[str, Any]:
    items = heldout_items(seed, per_kind)
    t = time.perf_counter()
    texts = describe(backbone, items, max_new_tokens, batch_size)
    report = aggregate(items, texts)
    shown = {kind: [{"truth": d.text, "generated": g} for d, g in zip(items, texts, strict=True)
                    if d.kind == kind][:examples] for kind in KINDS}
    return {"headline": headline(report), "by_kind": report, "per_kind": per_kind, "seed": seed,
            "examples": shown, "wall_s": time.perf_counter() - t}


def perception_eval_fn(per_kind_total: int, seed: int) -> Callable[[Any, int], dict[str, Any]]:
    """The pretrain eval hook: a small perception report (headline numbers) every `eval_steps` steps."""
    per_kind = max(1, per_kind_total // len(KINDS))

    def run(backbone: Any, step: int) -> dict[str, Any]:
        return perception(backbone, per_kind, seed, examples=0)["headline"]

    return run

