"""MiniRef (RefCOCO-like grounding): a referring expression -> the crop of the object it picks out.

The candidates are crops of every object in the scene, and every expression is chosen so that no single
word settles it: "the small red object" when a large red one exists, "the circle directly below the blue
square" when there are other circles, "the triangle that is not green" among green triangles. Resolving
it means finding an anchor or filtering by two attributes, then looking at the survivor.
"""

from __future__ import annotations

from functools import cache, partial
from typing import Any

import numpy as np
from PIL import Image

from ume.synth.draw import crop_object, render_scene
from ume.synth.example import Example, Media, Side
from ume.synth.img_vqa import REL_WORDS, neighbour
from ume.synth.phrasing import Phraser, join_list, think
from ume.synth.rng import pick
from ume.synth.scene import Obj, Policy, Scene, sample_scene, scene_spec, unique_by_name
from ume.synth.tasks import MiniTask
from ume.synth.vocab import DIRECTIONS, ROW_NAMES


def resolve(expr: dict[str, Any], scene: Scene) -> list[Obj]:
    """The objects an expression selects (a valid expression selects exactly one)."""
    kind = expr["kind"]
    if kind == "size_colour":
        return [o for o in scene if o.size == expr["size"] and o.colour == expr["colour"]]
    if kind == "size_shape":
        return [o for o in scene if o.size == expr["size"] and o.shape == expr["shape"]]
    if kind == "row":
        return [o for o in scene if o.colour == expr["colour"] and o.row == expr["row"]]
    if kind == "not":
        return [o for o in scene if o.shape == expr["shape"] and o.colour != expr["colour"]]
    anchors = [o for o in scene if [o.colour, o.shape] == expr["anchor"]]
    nb = neighbour(scene, anchors[0], expr["dir"]) if len(anchors) == 1 else None
    return [nb] if nb is not None and nb.shape == expr["shape"] else []


def _candidates(scene: Scene, t: Obj) -> dict[str, list[dict[str, Any]]]:
    """Expressions for t by kind, each needing more than one attribute (a lookalike exists)."""
    others = [o for o in scene if o is not t]
    out: dict[str, list[dict[str, Any]]] = {}
    if any(o.colour == t.colour for o in others):
        out["size_colour"] = [{"kind": "size_colour", "size": t.size, "colour": t.colour}]
        out["row"] = [{"kind": "row", "colour": t.colour, "row": t.row}]
    if any(o.shape == t.shape for o in others):
        out["size_shape"] = [{"kind": "size_shape", "size": t.size, "shape": t.shape}]
        out["not"] = [{"kind": "not", "shape": t.shape, "colour": o.colour} for o in others
                      if o.shape == t.shape and o.colour != t.colour]
        rel = []
        for d, (dr, dc) in DIRECTIONS.items():
            anchor = next((o for o in others if o.cell == (t.row - dr, t.col - dc)), None)
            if anchor is not None and unique_by_name(scene, anchor):
                rel.append({"kind": "relation", "shape": t.shape, "dir": d, "anchor": [anchor.colour, anchor.shape]})
        out["relation"] = rel
    valid = {k: [e for e in v if resolve(e, scene) == [t]] for k, v in out.items()}
    return {k: v for k, v in valid.items() if v}


def expression_text(p: Phraser, e: dict[str, Any]) -> str:
    if e["kind"] == "size_colour":
        return p.pick([f"the {e['size']} {e['colour']} object", f"the {e['colour']} shape that is {e['size']}"])
    if e["kind"] == "size_shape":
        return p.pick([f"the {e['size']} {e['shape']}", f"the {e['shape']} that is {e['size']}"])
    if e["kind"] == "row":
        return p.pick([f"the {e['colour']} object in the {ROW_NAMES[e['row']]} row",
                       f"the {e['colour']} shape on the {ROW_NAMES[e['row']]} row"])
    if e["kind"] == "not":
        return p.pick([f"the {e['shape']} that is not {e['colour']}", f"the only non-{e['colour']} {e['shape']}"])
    return f"the {e['shape']} directly {REL_WORDS[e['dir']]} the {e['anchor'][0]} {e['anchor'][1]}"


def _steps(p: Phraser, scene: Scene, e: dict[str, Any], t: Obj) -> list[str]:
    kind = e["kind"]
    if kind == "relation":
        anchor = next(o for o in scene if [o.colour, o.shape] == e["anchor"])
        return [f"I first find the {anchor.colour} {anchor.shape}: it is at the {anchor.where()}",
                f"directly {REL_WORDS[e['dir']]} it, at the {t.where()}, is {p.obj(t, where=False)}"]
    if kind in ("size_colour", "row"):
        group = [o for o in scene if o.colour == t.colour]
        filt = f"only one is {t.size}" if kind == "size_colour" else f"only one is in the {ROW_NAMES[t.row]} row"
    else:
        group = [o for o in scene if o.shape == t.shape]
        filt = f"only one is {t.size}" if kind == "size_shape" else f"only one is not {e['colour']}"
    return [p.pick([f"the candidates sharing the {'colour' if kind in ('size_colour', 'row') else 'shape'} are ",
                    "lookalikes: "]) + join_list([p.obj(o) for o in group]), filt]


def ref(rng: np.random.Generator, task: MiniTask, policy: Policy) -> Example:
    key = policy.key_combo(rng)
    while True:
        scene = sample_scene(rng, int(rng.integers(7, 10)), key, label_prob=0.3, distinct=True)
        options = _candidates(scene, scene[0])
        if options:
            break
    target = scene[0]  # candidates are the crops of scene[0] (the positive), scene[1], ...
    expr = pick(rng, options[pick(rng, sorted(options))])

    @cache
    def image() -> Image.Image:
        return render_scene(scene)

    def crop(obj: Obj) -> Image.Image:
        return crop_object(image(), obj)

    p = Phraser(rng)
    text = expression_text(p, expr)
    summary = f"The {target.size} {target.colour} {target.shape} at the {target.where()}."
    q_think = think(p.pick([f"I need {text}.", f"The expression is '{text}'."]), *_steps(p, scene, expr, target),
                    p.conclude(f"the object meant is the {target.name(True)} at the {target.where()}"))
    pos_think = think(p.pick(["The crop shows one object: ", "A single object fills the crop: "])
                      + p.obj(target, where=False) + ".")
    return Example(
        spec={"scene": scene_spec(scene), "expression": expr, "candidates": list(range(len(scene)))},
        query=Side(task.qry_inst, text, Media("image", "q", image), q_think, summary),
        positive=Side(task.tgt_inst, "", Media("image", "c0", partial(crop, target)), pos_think,
                      f"A {target.size} {target.colour} {target.shape}."),
        negatives=[Side(task.tgt_inst, "", Media("image", f"c{i + 1}", partial(crop, o)))
                   for i, o in enumerate(scene[1:])],
    )
