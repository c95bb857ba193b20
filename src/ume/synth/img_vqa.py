"""MiniVQA: questions that need two or three reads of the scene.

Every question names an object by colour and shape (the "key"), then asks about something reached from
it: the colour or shape of its neighbour, how many objects lie on one side of it or share its row, the
letter written on it, or how many copies of it exist. A single pass has to locate the key, follow the
relation and read the attribute at once; the reasoning trace does it one step at a time.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from typing import Any

import numpy as np

from ume.synth.draw import render_scene
from ume.synth.example import Example, Media, Side, pick_negatives
from ume.synth.phrasing import Phraser, a, join_list, think
from ume.synth.rng import pick
from ume.synth.scene import Obj, Policy, Scene, sample_scene, scene_spec, unique_by_name
from ume.synth.tasks import MiniTask
from ume.synth.vocab import CELL_NAMES, COLOUR_NAMES, DIRECTIONS, EXTRA_COLOURS, EXTRA_SHAPES, LETTERS, SHAPES

QTYPES = ("count_combo", "count_dir", "count_row", "colour_rel", "shape_rel", "letter_on", "colour_of_letter")
REL_WORDS = {"left": "to the left of", "right": "to the right of", "up": "above", "down": "below"}
ANSWER_SPACES: dict[str, tuple[str, ...]] = {
    "count": tuple(str(i) for i in range(9)),
    "colour": COLOUR_NAMES + EXTRA_COLOURS,
    "shape": SHAPES + EXTRA_SHAPES,
    "letter": LETTERS,
}


def neighbour(scene: Scene, obj: Obj, direction: str) -> Obj | None:
    dr, dc = DIRECTIONS[direction]
    return next((o for o in scene if o.cell == (obj.row + dr, obj.col + dc)), None)


def in_direction(scene: Scene, obj: Obj, direction: str) -> list[Obj]:
    """Objects anywhere on that side of obj (strictly further left/right/up/down)."""
    dr, dc = DIRECTIONS[direction]
    return [o for o in scene if (dc and (o.col - obj.col) * dc > 0) or (dr and (o.row - obj.row) * dr > 0)]


def _question(rng: np.random.Generator, qtype: str, scene: Scene) -> dict[str, Any] | None:
    """The question spec about the key object scene[0], or None when this scene cannot host it."""
    key = scene[0]
    if qtype == "count_combo":
        return {"type": qtype, "colour": key.colour, "shape": key.shape}
    if not unique_by_name(scene, key):
        return None
    if qtype in ("count_dir", "colour_rel", "shape_rel"):
        direction = pick(rng, list(DIRECTIONS))
        if qtype != "count_dir" and neighbour(scene, key, direction) is None:
            return None
        return {"type": qtype, "colour": key.colour, "shape": key.shape, "dir": direction}
    if qtype == "count_row":
        return {"type": qtype, "colour": key.colour, "shape": key.shape}
    if not key.label or sum(bool(o.label) for o in scene) < 2:
        return None
    return {"type": qtype, "colour": key.colour, "shape": key.shape, "letter": key.label}


def answer(scene: Scene, q: dict[str, Any]) -> tuple[str, str]:
    """(answer, answer kind) of a question spec; the key is the unique object named by colour and shape."""
    if q["type"] == "count_combo":
        return str(sum(o.colour == q["colour"] and o.shape == q["shape"] for o in scene)), "count"
    key = next(o for o in scene if o.colour == q["colour"] and o.shape == q["shape"])
    if q["type"] == "count_dir":
        return str(len(in_direction(scene, key, q["dir"]))), "count"
    if q["type"] == "count_row":
        return str(sum(o.row == key.row for o in scene) - 1), "count"
    if q["type"] == "colour_rel":
        return neighbour(scene, key, q["dir"]).colour, "colour"
    if q["type"] == "shape_rel":
        return neighbour(scene, key, q["dir"]).shape, "shape"
    if q["type"] == "letter_on":
        return key.label, "letter"
    return key.colour, "colour"  # colour_of_letter


def question_text(p: Phraser, q: dict[str, Any]) -> str:
    name = f"{q['colour']} {q['shape']}"
    t = q["type"]
    if t == "count_combo":
        return p.pick([f"How many {name}s are there?", f"How many {name}s does the image contain?"])
    if t == "count_dir":
        return p.pick([f"How many objects are {REL_WORDS[q['dir']]} the {name}?",
                       f"Count the objects {REL_WORDS[q['dir']]} the {name}."])
    if t == "count_row":
        return p.pick([f"How many other objects share a row with the {name}?",
                       f"How many other objects are in the same row as the {name}?"])
    if t == "colour_rel":
        return p.pick([f"What colour is the object directly {REL_WORDS[q['dir']]} the {name}?",
                       f"Which colour has the shape directly {REL_WORDS[q['dir']]} the {name}?"])
    if t == "shape_rel":
        return p.pick([f"What shape is directly {REL_WORDS[q['dir']]} the {name}?",
                       f"Which shape sits directly {REL_WORDS[q['dir']]} the {name}?"])
    if t == "letter_on":
        return p.pick([f"Which letter is written on the {name}?", f"What letter does the {name} carry?"])
    return p.pick([f"What colour is the shape marked {q['letter']}?",
                   f"Which colour is the object labelled {q['letter']}?"])


def _steps(p: Phraser, scene: Scene, q: dict[str, Any], ans: str) -> list[str]:
    """The reasoning steps for one question, written from the scene."""
    name = f"{q['colour']} {q['shape']}"
    if q["type"] == "count_combo":
        hits = [o for o in scene if o.colour == q["colour"] and o.shape == q["shape"]]
        where = join_list([f"the {o.where()}" for o in hits])
        return [p.pick([f"I look for every {name}.", f"I check each object for {a(name)}."]),
                f"{name}s are at {where}" if hits else f"no object is {a(name)}",
                p.conclude(f"there {'is' if ans == '1' else 'are'} {ans}")]
    key = next(o for o in scene if o.combo == (q["colour"], q["shape"]))
    locate = p.pick([f"First I find the {name}: it is at the {key.where()}.",
                     f"The {name} sits at the {key.where()}.", f"The {name} is in the {key.where()} cell."])
    if q["type"] == "count_dir":
        found = in_direction(scene, key, q["dir"])
        listed = join_list([p.obj(o) for o in found]) if found else "nothing"
        return [locate, f"{REL_WORDS[q['dir']]} it I find {listed}", p.conclude(f"the count is {ans}")]
    if q["type"] == "count_row":
        row = [o for o in scene if o.row == key.row and o is not key]
        listed = join_list([p.obj(o) for o in row]) if row else "no other object"
        return [locate, f"its row also holds {listed}", p.conclude(f"the count is {ans}")]
    if q["type"] in ("colour_rel", "shape_rel"):
        nb = neighbour(scene, key, q["dir"])
        attr = "colour" if q["type"] == "colour_rel" else "shape"
        return [locate, f"directly {REL_WORDS[q['dir']]} it, in the {CELL_NAMES[nb.cell]} cell, is "
                f"{p.obj(nb, where=False)}", p.conclude(f"the {attr} asked for is {ans}")]
    labelled = join_list([f"{o.label} on the {o.colour} {o.shape}" for o in scene if o.label])
    read = p.pick([f"The letters in the image: {labelled}.", f"Reading the labels: {labelled}."])
    if q["type"] == "letter_on":
        return [read, locate, p.conclude(f"the letter on the {name} is {ans}")]
    return [read, f"the letter {q['letter']} is on the {name}", p.conclude(f"its colour is {ans}")]


def _scene_for(rng: np.random.Generator, qtype: str, policy: Policy) -> tuple[Scene, dict[str, Any]]:
    key = policy.key_combo(rng)
    while True:
        scene = sample_scene(rng, int(rng.integers(4, 8)), key, label_prob=0.6)
        if qtype == "count_combo":  # 1-3 copies of the key pair, nothing else with that pair
            k = int(rng.integers(1, 4))
            scene = tuple(replace(o, colour=key[0], shape=key[1]) if i < k else o for i, o in enumerate(scene))
            if sum(o.combo == key for o in scene) != k:
                continue
        q = _question(rng, qtype, scene)
        if q is not None:
            return scene, q


def vqa(rng: np.random.Generator, task: MiniTask, policy: Policy) -> Example:
    qtype = pick(rng, QTYPES)
    scene, q = _scene_for(rng, qtype, policy)
    ans, kind = answer(scene, q)
    p = Phraser(rng)
    question = question_text(p, q)
    hard = [o.colour for o in scene] if kind == "colour" else [o.label for o in scene if o.label]
    negs = pick_negatives(rng, ans, hard if kind in ("colour", "letter") else [], 9,
                          fill=lambda: pick(rng, ANSWER_SPACES[kind]))
    steps = _steps(p, scene, q, ans)
    if rng.random() < 0.4:
        steps = [p.inventory(scene), *steps]
    summary = f"{question} Answer: {ans}."
    kind_words = {"count": f"the number {ans}, a count of objects", "colour": f"the colour {ans}",
                  "shape": f"the shape {ans}", "letter": f"the letter {ans}, read off a label"}
    pos_think = think(p.pick([f"This is a short answer: {kind_words[kind]}.",
                              f"The candidate answer is {kind_words[kind]}."]))
    return Example(
        spec={"scene": scene_spec(scene), "question": q, "answer": ans},
        query=Side(task.qry_inst, question, Media("image", "q", partial(render_scene, scene)), think(*steps),
                   summary),
        positive=Side(task.tgt_inst, ans, None, pos_think, ans),
        negatives=[Side(task.tgt_inst, n) for n in negs],
    )
