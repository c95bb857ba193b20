"""MiniEdit (CIRR-like composed retrieval): a source scene plus one or two edits -> the edited scene.

The target is never shown; it must be computed. Negatives are the source itself, the edits applied only
in part, applied to the wrong object, or with the wrong colour or cell, so the embedding of the query has
to represent the result of the edit, which the trace writes out before summarising.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from functools import partial
from typing import Any

import numpy as np

from ume.synth.draw import render_scene
from ume.synth.example import Example, Media, Side, pick_negatives
from ume.synth.phrasing import Phraser, join_list, think
from ume.synth.rng import pick
from ume.synth.scene import Obj, Policy, Scene, canonical, free_cells, make_obj, other_combo, sample_scene, scene_spec
from ume.synth.tasks import MiniTask
from ume.synth.vocab import CELL_NAMES, COLOUR_NAMES, SIZES

OPS = ("recolour", "remove", "move", "add")


def apply_edits(scene: Scene, edits: list[dict[str, Any]]) -> Scene:
    """The scene after the edits; targets are named by (colour, shape). An edit whose target is gone is
    skipped: only near-miss negatives (an earlier edit applied to the wrong object) produce that."""
    out = list(scene)
    for e in edits:
        if e["op"] == "add":
            out.append(Obj(**e["object"]))
            continue
        i = next((i for i, o in enumerate(out) if [o.colour, o.shape] == e["target"]), None)
        if i is None:
            continue
        if e["op"] == "recolour":
            out[i] = replace(out[i], colour=e["to"])
        elif e["op"] == "remove":
            del out[i]
        else:
            out[i] = replace(out[i], row=e["to"][0], col=e["to"][1])
    return tuple(out)


def _edit(rng: np.random.Generator, scene: Scene, target: Obj, op: str) -> dict[str, Any] | None:
    """One edit of `target` (or an added object), valid on `scene`; None when the op cannot apply."""
    free = free_cells(scene)
    if op == "recolour":  # never to a pair already in the scene, so every name stays unambiguous
        taken = [o.combo for o in scene]
        colours = [c for c in COLOUR_NAMES if (c, target.shape) not in taken]
        return {"op": op, "target": [target.colour, target.shape], "to": pick(rng, colours)} if colours else None
    if op == "remove":
        return {"op": op, "target": [target.colour, target.shape]}
    if not free:
        return None
    if op == "move":
        return {"op": op, "target": [target.colour, target.shape], "to": list(pick(rng, free))}
    return {"op": op, "object": asdict(make_obj(rng, other_combo(rng), pick(rng, free), pick(rng, SIZES)))}


def edit_text(p: Phraser, e: dict[str, Any]) -> str:
    if e["op"] == "add":
        o = Obj(**e["object"])
        return p.pick([f"add a {o.size} {o.colour} {o.shape} at the {o.where()}",
                       f"place a {o.size} {o.colour} {o.shape} in the {o.where()} cell"])
    name = f"{e['target'][0]} {e['target'][1]}"
    if e["op"] == "recolour":
        return p.pick([f"make the {name} {e['to']}", f"turn the {name} {e['to']}",
                       f"change the colour of the {name} to {e['to']}"])
    if e["op"] == "remove":
        return p.pick([f"remove the {name}", f"take away the {name}", f"delete the {name}"])
    cell = CELL_NAMES[tuple(e["to"])]
    return p.pick([f"move the {name} to the {cell}", f"put the {name} in the {cell} cell"])


def _wrong_versions(rng: np.random.Generator, scene: Scene, edits: list[dict[str, Any]]) -> list[Scene]:
    """Near misses: nothing done, part done, wrong object, wrong parameter, one change too many."""
    out = [scene]
    if len(edits) > 1:
        out += [apply_edits(scene, [e]) for e in edits]
    for e in edits:
        for other in scene:
            if e["op"] != "add" and [other.colour, other.shape] != e["target"]:
                wrong = dict(e, target=[other.colour, other.shape])
                out.append(apply_edits(scene, [wrong if x is e else x for x in edits]))
        redo = _edit(rng, scene, next((o for o in scene if [o.colour, o.shape] == e.get("target")), scene[0]),
                     e["op"])
        if redo is not None:
            out.append(apply_edits(scene, [redo if x is e else x for x in edits]))
    done = apply_edits(scene, edits)
    victim = pick(rng, done)
    out.append(tuple(replace(o, colour=pick(rng, COLOUR_NAMES)) if o is victim else o for o in done))
    return out


def _one_per_cell(scene: Scene) -> bool:
    return len({o.cell for o in scene}) == len(scene)


def edit(rng: np.random.Generator, task: MiniTask, policy: Policy) -> Example:
    while True:
        scene = sample_scene(rng, int(rng.integers(3, 6)), policy.key_combo(rng), unique_names=True)
        edits = [_edit(rng, scene, scene[0], pick(rng, OPS[:3]))]
        if rng.random() < 0.5:
            edits.append(_edit(rng, scene, scene[1], pick(rng, OPS)))
        if None in edits or not _one_per_cell(apply_edits(scene, edits)):
            continue
        target = apply_edits(scene, edits)
        if policy.admits(o.combo for o in target):
            break
    fill_base = target

    def fill() -> Scene:
        victim = pick(rng, fill_base)
        return tuple(replace(o, colour=pick(rng, COLOUR_NAMES)) if o is victim else o for o in fill_base)

    negs = pick_negatives(rng, target, _wrong_versions(rng, scene, edits), 9, fill=fill, key=canonical,
                          ok=lambda s: _one_per_cell(s) and policy.admits(o.combo for o in s))
    p = Phraser(rng)
    instruction = p.pick([" and ", ", then "]).join(edit_text(p, e) for e in edits)
    result = join_list([p.obj(o) for o in target]) if target else "an empty canvas"
    summary = "An image with " + join_list([f"a {o.size} {o.colour} {o.shape} at the {o.where()}"
                                            for o in target]) + "."
    q_think = think(p.inventory(scene), p.pick([f"The requested change: {instruction}.",
                                                f"I apply the edit: {instruction}."]),
                    p.pick(["After the change the image should hold ", "The edited scene has "]) + result + ".")
    pos_think = think(p.inventory(target))
    return Example(
        spec={"source": scene_spec(scene), "edits": edits,
              "candidates": [scene_spec(target)] + [scene_spec(s) for s in negs]},
        query=Side(task.qry_inst, instruction, Media("image", "q", partial(render_scene, scene)), q_think, summary),
        positive=Side(task.tgt_inst, "", Media("image", "c0", partial(render_scene, target)), pos_think, summary),
        negatives=[Side(task.tgt_inst, "", Media("image", f"c{i + 1}", partial(render_scene, s)))
                   for i, s in enumerate(negs)],
    )
