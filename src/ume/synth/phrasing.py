"""Varied wording for reasoning traces: several templates and word orders per step, chosen by the item's RNG.

Traces must not all read alike, or a model learns the template instead of the scene; every helper here
picks among equivalent phrasings and the callers shuffle the order of independent observations.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ume.synth.rng import pick, shuffled
from ume.synth.scene import Obj, reading_order
from ume.synth.vocab import NUMBER_WORDS


class Phraser:
    """Random but reproducible wording, bound to one item's RNG."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng

    def pick(self, options: Sequence[str]) -> str:
        return pick(self.rng, options)

    def obj(self, o: Obj, where: bool = True) -> str:
        """A noun phrase for one object, in one of several word orders, with its letter when it has one."""
        label = ""
        if o.label:
            label = self.pick([f" marked {o.label}", f" with the letter {o.label} on it", f" labelled {o.label}"])
        if not where:
            return self.pick([f"a {o.size} {o.colour} {o.shape}{label}", a(f"{o.colour} {o.shape} ({o.size}){label}")])
        return self.pick([
            f"a {o.size} {o.colour} {o.shape}{label} at the {o.where()}",
            a(f"{o.colour} {o.shape}{label}, {o.size}, in the {o.where()} cell"),
            f"a {o.size} {o.colour} {o.shape}{label} in the {o.where()} cell",
        ])

    def _entry(self, o: Obj) -> str:
        """An inventory entry: a noun phrase, or a clause that leads with the cell."""
        if self.rng.random() < 0.6:
            return self.obj(o)
        thing = self.obj(o, where=False)
        return self.pick([f"at the {o.where()} {thing}", f"the {o.where()} cell holds {thing}"])

    def inventory(self, objs: Sequence[Obj]) -> str:
        """A sentence listing the objects, in reading order or scrambled."""
        order = reading_order(objs) if self.rng.random() < 0.5 else shuffled(self.rng, list(objs))
        parts = [self._entry(o) for o in order]
        lead = self.pick([
            f"I can see {len(objs)} object{'s' if len(objs) != 1 else ''}: ",
            "Going through the picture: ",
            "Objects in the image: ",
            f"There are {len(objs)} shape{'s' if len(objs) != 1 else ''}. ",
            "Scanning the image cell by cell: ",
        ])
        return lead + join_list(parts) + "."

    def conclude(self, fact: str) -> str:
        return self.pick([f"So {fact}.", f"Therefore {fact}.", f"This means {fact}.", f"Hence {fact}.",
                          f"That gives: {fact}."])


def a(phrase: str) -> str:
    """The phrase with its indefinite article: "a red circle", "an orange square"."""
    return ("an " if phrase[:1] in "aeiou" else "a ") + phrase


def count_word(n: int, noun: str) -> str:
    """"a red circle" / "two red circles"."""
    return a(noun) if n == 1 else f"{NUMBER_WORDS[n]} {noun}s"


def join_list(parts: Sequence[str]) -> str:
    """"a, b and c"."""
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def sentence(text: str) -> str:
    """Capitalised and ending in a full stop."""
    text = text.strip()
    return text[:1].upper() + text[1:] + ("" if text.endswith((".", "?", "!")) else ".")


def think(*sentences: str) -> str:
    return " ".join(sentence(s) for s in sentences if s.strip())
