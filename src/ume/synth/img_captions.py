"""Caption retrieval both ways: MiniCaps_t2i (caption -> scene) and MiniCount_i2t (scene -> caption).

Both are built against bag-of-attributes matching. In t2i every negative image shows the same words as
the caption in a different binding (colours or shapes swapped between the objects, the relation flipped,
a size exchanged); in i2t the negative captions keep the colours and shapes but change a count or the
colour that goes with a shape. Telling them apart needs attributes bound to objects and counts per group,
which the trace spells out object by object.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from functools import partial
from itertools import permutations
from typing import Any

import numpy as np

from ume.synth.draw import render_scene
from ume.synth.example import Example, Media, Side, pick_negatives
from ume.synth.phrasing import Phraser, count_word, join_list, think
from ume.synth.rng import pick, sample, shuffled
from ume.synth.scene import Obj, Policy, Scene, canonical, make_obj, other_combo, sample_scene, scene_spec
from ume.synth.tasks import MiniTask
from ume.synth.vocab import ALLOWED_COMBOS, CELLS, COLOUR_NAMES, SHAPES, SIZES

RELATIONS: dict[str, Callable[[Obj, Obj], bool]] = {
    "left of": lambda a, b: a.col < b.col,
    "right of": lambda a, b: a.col > b.col,
    "above": lambda a, b: a.row < b.row,
    "below": lambda a, b: a.row > b.row,
}
REL_PHRASES = {"left of": ("to the left of", "left of"), "right of": ("to the right of", "right of"),
               "above": ("above", "over"), "below": ("below", "underneath")}
N_NEG = 9


# ---- t2i --------------------------------------------------------------------------------------------
def satisfies(desc: dict[str, Any], scene: Scene) -> bool:
    """Whether a scene shows exactly the described objects, with the relation between the first two."""
    want = sorted(tuple(d) for d in desc["objects"])
    if sorted((o.size, o.colour, o.shape) for o in scene) != want:
        return False
    a_desc, b_desc = (tuple(d) for d in desc["objects"][:2])
    return any(RELATIONS[desc["relation"]](a, b) for a, b in permutations(scene, 2)
               if (a.size, a.colour, a.shape) == a_desc and (b.size, b.colour, b.shape) == b_desc)


def _t2i_perturbations(rng: np.random.Generator, scene: Scene) -> list[Scene]:
    """Same words, other bindings: swaps between the two related objects and single-attribute changes."""
    a, b, *rest = scene
    out = [
        (replace(a, colour=b.colour), replace(b, colour=a.colour), *rest),
        (replace(a, row=b.row, col=b.col), replace(b, row=a.row, col=a.col), *rest),
        (replace(a, shape=b.shape), replace(b, shape=a.shape), *rest),
        (replace(a, size=b.size), replace(b, size=a.size), *rest),
        (replace(a, colour=pick(rng, COLOUR_NAMES)), b, *rest),
        (a, replace(b, shape=pick(rng, SHAPES)), *rest),
        (replace(a, size="small" if a.size == "large" else "large"), b, *rest),
        (a, replace(b, colour=pick(rng, COLOUR_NAMES)), *rest),
    ]
    if rest:
        out.append((a, b))
    else:
        free = [c for c in CELLS if c not in (a.cell, b.cell)]
        out.append((a, b, make_obj(rng, other_combo(rng), pick(rng, free))))
    return out


def caption_text(p: Phraser, desc: dict[str, Any]) -> str:
    names = [f"a {s} {c} {sh}" for s, c, sh in desc["objects"]]
    core = f"{names[0]} {p.pick(REL_PHRASES[desc['relation']])} {names[1]}"
    if len(names) == 2:
        return core
    return p.pick([f"{core}, plus {names[2]}", f"{names[2]} and {core}", f"{core}, and also {names[2]}"])


def caps_t2i(rng: np.random.Generator, task: MiniTask, policy: Policy) -> Example:
    scene = sample_scene(rng, int(rng.integers(2, 4)), policy.key_combo(rng), distinct=True)
    a, b = scene[0], scene[1]
    relation = pick(rng, [r for r, holds in RELATIONS.items() if holds(a, b)])
    desc = {"objects": [[o.size, o.colour, o.shape] for o in scene], "relation": relation}
    negs = pick_negatives(
        rng, scene, _t2i_perturbations(rng, scene), N_NEG,
        fill=lambda: sample_scene(rng, len(scene), other_combo(rng), distinct=True), key=canonical,
        ok=lambda s: not satisfies(desc, s) and policy.admits(o.combo for o in s))
    p = Phraser(rng)
    caption = caption_text(p, desc)
    rel = p.pick(REL_PHRASES[relation])
    q_think = think(
        p.pick([f"The caption describes {len(scene)} objects: ", f"I need an image with exactly {len(scene)} "
                "objects: "]) + join_list([f"a {s} {c} {sh}" for s, c, sh in desc["objects"]]) + ".",
        p.pick([f"The {a.colour} {a.shape} must be {rel} the {b.colour} {b.shape}.",
                f"Position matters: the {a.shape} is {rel} the {b.shape}."]),
        p.pick(["Colours, shapes and sizes must stay bound to the right objects.",
                "An image with the attributes swapped between the objects would not match."]))
    a_where, b_where = p.obj(a), p.obj(b)
    pos_think = think(p.inventory(scene),
                      f"comparing positions, {a_where} versus {b_where}: the {a.shape} is {rel} the {b.shape}")
    summary = caption[:1].upper() + caption[1:] + "."
    media = partial(render_scene, scene)
    return Example(
        spec={"caption": desc, "candidates": [scene_spec(scene)] + [scene_spec(s) for s in negs]},
        query=Side(task.qry_inst, caption, None, q_think, summary),
        positive=Side(task.tgt_inst, "", Media("image", "c0", media), pos_think, summary),
        negatives=[Side(task.tgt_inst, "", Media("image", f"c{i + 1}", partial(render_scene, s)))
                   for i, s in enumerate(negs)],
    )


# ---- i2t --------------------------------------------------------------------------------------------
Groups = tuple[tuple[int, str, str], ...]  # (count, colour, shape), sorted


def groups_of(scene: Scene) -> Groups:
    return _normalise([(1, o.colour, o.shape) for o in scene])


def _normalise(groups: list[tuple[int, str, str]]) -> Groups:
    """Counts merged per (colour, shape), sorted: equal keys mean equal captions."""
    merged: dict[tuple[str, str], int] = {}
    for k, c, s in groups:
        merged[(c, s)] = merged.get((c, s), 0) + k
    return tuple(sorted((k, c, s) for (c, s), k in merged.items()))


def _i2t_perturbations(rng: np.random.Generator, groups: Groups) -> list[Groups]:
    g = list(groups)
    out: list[list[tuple[int, str, str]]] = []
    for i, (k, c, s) in enumerate(g):
        out.append([*g[:i], (k + 1, c, s), *g[i + 1:]])
        if k > 1:
            out.append([*g[:i], (k - 1, c, s), *g[i + 1:]])
        out.append([*g[:i], (k, pick(rng, COLOUR_NAMES), s), *g[i + 1:]])
        out.append([*g[:i], (k, c, pick(rng, SHAPES)), *g[i + 1:]])
        if len(g) > 1:
            out.append(g[:i] + g[i + 1:])
    for i, j in permutations(range(len(g)), 2):
        if i < j:
            (ki, ci, si), (kj, cj, sj) = g[i], g[j]
            out.append([(ki, cj, si), (kj, ci, sj)] + [x for n, x in enumerate(g) if n not in (i, j)])
            out.append([(ki, ci, sj), (kj, cj, si)] + [x for n, x in enumerate(g) if n not in (i, j)])
    out.append([*g, (1, *pick(rng, ALLOWED_COMBOS))])
    return [_normalise(x) for x in out]


def count_caption(p: Phraser, groups: Groups) -> str:
    parts = [count_word(k, f"{c} {s}") for k, c, s in shuffled(p.rng, list(groups))]
    return join_list(parts)


def count_i2t(rng: np.random.Generator, task: MiniTask, policy: Policy) -> Example:
    n_groups = int(rng.integers(2, 4))
    combos = [policy.key_combo(rng)]
    while len(combos) < n_groups:
        c = other_combo(rng)
        if c not in combos:
            combos.append(c)
    counts = [int(rng.integers(1, 4)) for _ in combos]
    cells = sample(rng, CELLS, sum(counts))
    scene = tuple(make_obj(rng, combo, cells.pop(), pick(rng, SIZES))
                  for combo, k in zip(combos, counts, strict=True) for _ in range(k))
    truth = groups_of(scene)
    negs = pick_negatives(rng, truth, _i2t_perturbations(rng, truth), N_NEG,
                          fill=lambda: _normalise([(int(rng.integers(1, 4)), *other_combo(rng))
                                                   for _ in range(n_groups)]),
                          ok=lambda g: policy.admits((c, s) for _, c, s in g))
    p = Phraser(rng)
    caption = count_caption(p, truth)
    grouped = [f"{k} {c} {s}{'s' if k > 1 else ''} ("
               + join_list([f"{o.where()}" for o in scene if o.combo == (c, s)]) + ")" for k, c, s in truth]
    q_think = think(p.inventory(scene),
                    p.pick(["Grouping by colour and shape: ", "Per colour-and-shape group: "])
                    + join_list(shuffled(rng, grouped)) + ".",
                    f"{len(scene)} objects in all, sizes aside")
    pos_think = think(p.pick(["The caption lists ", "The caption asks for "])
                      + join_list([f"{k} {c} {s}{'s' if k > 1 else ''}" for k, c, s in truth])
                      + f", {len(scene)} objects in all.",
                      p.pick(["The image must show exactly these groups.", "No other objects should appear."]))
    summary = caption[:1].upper() + caption[1:] + "."
    return Example(
        spec={"scene": scene_spec(scene), "captions": [[list(g) for g in truth]] + [[list(g) for g in n]
                                                                                    for n in negs]},
        query=Side(task.qry_inst, "", Media("image", "q", partial(render_scene, scene)), q_think, summary),
        positive=Side(task.tgt_inst, caption, None, pos_think, summary),
        negatives=[Side(task.tgt_inst, count_caption(p, n)) for n in negs],
    )
