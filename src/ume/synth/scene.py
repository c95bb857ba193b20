"""Scenes: objects on a 3x3 grid, how they are sampled, and how they are named in text.

A scene is a tuple of `Obj`; its JSON form (`scene_spec`) is the ground truth written beside every query,
from which each label can be re-derived. Objects occupy distinct cells, so "left of", "directly below" and
"in the top row" are always well defined.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ume.synth.rng import chance, pick, sample
from ume.synth.vocab import ALLOWED_COMBOS, CELL_NAMES, CELLS, HOLDOUT_COMBOS, LETTERS, SIZES

Combo = tuple[str, str]


@dataclass(frozen=True)
class Obj:
    """One object. `dx`/`dy` jitter the position in thousandths of a cell (fine steps make two independently
    drawn scenes practically never identical); `label` is a letter drawn on it."""

    shape: str
    colour: str
    size: str
    row: int
    col: int
    dx: int = 0
    dy: int = 0
    angle: int = 0
    label: str = ""

    @property
    def cell(self) -> tuple[int, int]:
        return (self.row, self.col)

    @property
    def combo(self) -> Combo:
        return (self.colour, self.shape)

    def name(self, with_size: bool = False) -> str:
        """"red circle" / "large red circle"."""
        return f"{self.size} {self.colour} {self.shape}" if with_size else f"{self.colour} {self.shape}"

    def where(self) -> str:
        return CELL_NAMES[self.cell]


Scene = tuple[Obj, ...]


@dataclass(frozen=True)
class Policy:
    """Which (colour, shape) pairs a split may draw: the key object of a hold-out item is a hold-out pair,
    every other object (and every object of the train and ordinary eval splits) an allowed pair."""

    holdout: bool = False

    def key_combo(self, rng: np.random.Generator) -> Combo:
        return pick(rng, HOLDOUT_COMBOS if self.holdout else ALLOWED_COMBOS)

    def admits(self, combos: Iterable[Combo]) -> bool:
        """Whether a derived scene (a negative, an edit) may show these pairs in this split."""
        return self.holdout or all(c in ALLOWED_COMBOS for c in combos)


def other_combo(rng: np.random.Generator) -> Combo:
    return pick(rng, ALLOWED_COMBOS)


def make_obj(rng: np.random.Generator, combo: Combo, cell: tuple[int, int], size: str | None = None,
             label: str = "") -> Obj:
    return Obj(shape=combo[1], colour=combo[0], size=size or pick(rng, SIZES), row=cell[0], col=cell[1],
               dx=int(rng.integers(-60, 61)), dy=int(rng.integers(-60, 61)), angle=int(rng.integers(-15, 16)),
               label=label)


def sample_scene(rng: np.random.Generator, n: int, key: Combo | None = None, *, label_prob: float = 0.0,
                 distinct: bool = False, unique_names: bool = False) -> Scene:
    """n objects in distinct random cells; object 0 has the `key` combo when given.

    `distinct` makes every (colour, shape, size) unique, so that every crop looks different;
    `unique_names` makes every (colour, shape) unique, so that "the red circle" names one object.
    Large objects carry a distinct letter with probability `label_prob`.
    """
    cells = sample(rng, CELLS, n)
    letters = sample(rng, LETTERS, n)
    objs: list[Obj] = []
    seen: list[tuple[str, str, str]] = []
    for i, cell in enumerate(cells):
        while True:
            combo = key if (i == 0 and key is not None) else other_combo(rng)
            size = pick(rng, SIZES)
            if distinct and (combo[0], combo[1], size) in seen:
                continue
            if unique_names and any(s[:2] == combo for s in seen):
                continue
            break
        seen.append((combo[0], combo[1], size))
        label = letters[i] if size == "large" and chance(rng, label_prob) else ""
        objs.append(make_obj(rng, combo, cell, size, label))
    return tuple(objs)


def unique_by_name(scene: Scene, obj: Obj) -> bool:
    """Whether "the <colour> <shape>" names exactly this object."""
    return sum(o.combo == obj.combo for o in scene) == 1


def free_cells(scene: Iterable[Obj]) -> list[tuple[int, int]]:
    taken = [o.cell for o in scene]
    return [c for c in CELLS if c not in taken]


def scene_spec(scene: Sequence[Obj]) -> dict[str, Any]:
    return {"objects": [asdict(o) for o in scene]}


def canonical(scene: Iterable[Obj]) -> tuple[tuple[Any, ...], ...]:
    """What a scene shows, ignoring jitter and object order: two scenes with equal keys look the same."""
    return tuple(sorted((o.row, o.col, o.shape, o.colour, o.size, o.label) for o in scene))


def reading_order(scene: Iterable[Obj]) -> list[Obj]:
    return sorted(scene, key=lambda o: (o.row, o.col))
