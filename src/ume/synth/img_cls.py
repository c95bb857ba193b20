"""Image classification: MiniShapes (one object, perception only) and MiniMajority (count, compare, total).

MiniMajority's class "mostly red, 3 of 7" is a function of every object in the scene: a single forward
pass must count each colour and the total at once, while the negatives are off by one count or name a
colour that is present but not the most common one. Writing the tally first turns it into easy steps.
"""

from __future__ import annotations

from functools import partial

import numpy as np

from ume.synth.draw import render_scene
from ume.synth.example import Example, Media, Side, pick_negatives
from ume.synth.phrasing import Phraser, a, think
from ume.synth.rng import pick, sample, shuffled
from ume.synth.scene import Policy, make_obj, scene_spec
from ume.synth.tasks import MiniTask
from ume.synth.vocab import ALLOWED_COMBOS, CELLS, COLOUR_NAMES, SHAPES

SHAPE_CUES: dict[str, tuple[str, ...]] = {
    "circle": ("a round outline with no corners", "a smooth curved edge"),
    "square": ("four equal sides at right angles", "four corners and straight equal sides"),
    "triangle": ("three corners", "three straight sides"),
    "diamond": ("four corners and is taller than it is wide", "a rhombus standing on one point"),
}
N_NEG = 9


def shapes(rng: np.random.Generator, task: MiniTask, policy: Policy) -> Example:
    """One object anywhere on the grid; the class is its colour and shape."""
    obj = make_obj(rng, policy.key_combo(rng), pick(rng, CELLS))
    label = f"{obj.colour} {obj.shape}"
    same_colour = [f"{obj.colour} {s}" for s in SHAPES if s != obj.shape]
    same_shape = [f"{c} {obj.shape}" for c in COLOUR_NAMES if c != obj.colour]
    pool = [f"{c} {s}" for c, s in ALLOWED_COMBOS]
    negs = pick_negatives(rng, label, same_colour + same_shape, N_NEG, fill=lambda: pick(rng, pool),
                          ok=lambda lab: policy.admits([tuple(lab.split())]))
    p = Phraser(rng)
    facts = shuffled(rng, [f"its outline has {pick(rng, SHAPE_CUES[obj.shape])}, so it is a {obj.shape}",
                           f"it is filled with {obj.colour}"])
    q_think = think(p.pick([f"The image shows a single {obj.size} object at the {obj.where()}.",
                            f"There is one object, {obj.size}, near the {obj.where()}."]),
                    *facts, p.conclude(f"the class is {label}"))
    pos_think = think(p.pick([f"The label '{label}' names a colour and a shape.",
                              f"This class is given by colour ({obj.colour}) and shape ({obj.shape})."]),
                      f"An image of it shows a {obj.shape} coloured {obj.colour}.")
    answer = a(label)
    return Example(
        spec={"scene": scene_spec([obj]), "label": label},
        query=Side(task.qry_inst, "", Media("image", "q", partial(render_scene, (obj,))), q_think, answer),
        positive=Side(task.tgt_inst, label, None, pos_think, answer),
        negatives=[Side(task.tgt_inst, n) for n in negs],
    )


def majority_label(colour: str, m: int, n: int) -> str:
    return f"mostly {colour}, {m} of {n}"


def majority(rng: np.random.Generator, task: MiniTask, policy: Policy) -> Example:
    """5-8 objects; one colour strictly outnumbers every other."""
    while True:
        n, m = int(rng.integers(5, 9)), int(rng.integers(2, 5))
        if n - m <= (len(COLOUR_NAMES) - 1) * (m - 1):
            break
    key = policy.key_combo(rng)
    others = [c for c in COLOUR_NAMES if c != key[0]]
    counts = dict.fromkeys(others, 0)
    for _ in range(n - m):
        counts[pick(rng, [c for c in others if counts[c] < m - 1])] += 1
    colours = [key[0]] * m + [c for c in others for _ in range(counts[c])]
    objs = []
    for i, (colour, cell) in enumerate(zip(colours, sample(rng, CELLS, n), strict=True)):
        shape = key[1] if i == 0 else pick(rng, [s for s in SHAPES if (colour, s) in ALLOWED_COMBOS])
        objs.append(make_obj(rng, (colour, shape), cell))
    scene = tuple(shuffled(rng, objs))
    label = majority_label(key[0], m, n)
    present = [c for c in others if counts[c]]
    hard = [majority_label(key[0], m + 1, n), majority_label(key[0], m - 1, n), majority_label(key[0], m, n + 1),
            majority_label(key[0], m, n - 1), *(majority_label(c, counts[c], n) for c in present),
            *(majority_label(c, m, n) for c in others)]
    negs = pick_negatives(rng, label, hard, N_NEG, fill=lambda: majority_label(
        pick(rng, COLOUR_NAMES), int(rng.integers(2, 6)), int(rng.integers(5, 9))))

    p = Phraser(rng)
    tally = [(key[0], m)] + [(c, counts[c]) for c in present]
    tally = sorted(tally, key=lambda t: -t[1]) if rng.random() < 0.5 else shuffled(rng, tally)
    tally_text = ", ".join(f"{c} {k}" for c, k in tally)
    q_think = think(p.inventory(scene),
                    p.pick([f"Counting by colour: {tally_text}.", f"Tally per colour: {tally_text}.",
                            f"Colour counts are {tally_text}."]),
                    p.pick([f"That is {n} objects in total.", f"All together {n} objects."]),
                    p.pick([f"{key[0]} is the most common colour with {m}", f"no colour beats {key[0]} ({m})"])
                    + ".", p.conclude(f"the class is '{label}'"))
    pos_think = think(p.pick([f"This class describes a picture in which {key[0]} is the most frequent colour.",
                              f"The label says the dominant colour is {key[0]}."]),
                      f"{m} of its {n} objects are {key[0]} and every other colour appears fewer than {m} times.")
    return Example(
        spec={"scene": scene_spec(scene), "label": label},
        query=Side(task.qry_inst, "", Media("image", "q", partial(render_scene, scene)), q_think, label),
        positive=Side(task.tgt_inst, label, None, pos_think, label),
        negatives=[Side(task.tgt_inst, n) for n in negs],
    )
