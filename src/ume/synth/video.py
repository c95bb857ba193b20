"""Videos: scene objects plus timed events (move, appear, disappear, recolour), and their frames.

A video is fully described by its initial objects and its events, so every frame, every event's wording
and every label follow from the spec. An object that appears later is listed with the others but is
invisible before its event; each object keeps its own cell, and move targets are cells nobody else uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from PIL import Image

from ume.synth.draw import FRAME_PX, Placed, render
from ume.synth.phrasing import a
from ume.synth.rng import pick
from ume.synth.scene import Obj, Policy
from ume.synth.vocab import ALLOWED_COMBOS, CELL_NAMES, CELLS, COLOUR_NAMES, DIRECTIONS

KINDS = ("move", "appear", "disappear", "recolour")
OPPOSITE = {"left": "right", "right": "left", "up": "down", "down": "up"}


@dataclass(frozen=True)
class Event:
    """`obj` indexes the video's objects; a move runs from frame `start` to `end`, other kinds switch at
    `start`. `to` is the destination cell of a move or the new colour of a recolour."""

    kind: str
    obj: int
    start: int
    end: int
    to: Any = None


@dataclass(frozen=True)
class Video:
    objects: tuple[Obj, ...]
    events: tuple[Event, ...]
    n_frames: int

    def spec(self) -> dict[str, Any]:
        return {"objects": [asdict(o) for o in self.objects], "events": [asdict(e) for e in self.events],
                "n_frames": self.n_frames}


def hidden_at_start(video: Video, i: int) -> bool:
    return any(e.obj == i and e.kind == "appear" for e in video.events)


def state_at(video: Video, t: int) -> list[Placed]:
    """The visible objects of frame t, with their position and colour at that moment."""
    out = []
    for i, o in enumerate(video.objects):
        visible, colour = not hidden_at_start(video, i), o.colour
        x, y = o.col + 0.5 + o.dx / 1000, o.row + 0.5 + o.dy / 1000
        for e in sorted((e for e in video.events if e.obj == i), key=lambda e: e.start):
            if e.kind == "appear" and t >= e.start:
                visible = True
            elif e.kind == "disappear" and t >= e.start:
                visible = False
            elif e.kind == "recolour" and t >= e.start:
                colour = e.to
            elif e.kind == "move":
                frac = min(1.0, max(0.0, (t - e.start) / (e.end - e.start)))
                tx, ty = e.to[1] + 0.5 + o.dx / 1000, e.to[0] + 0.5 + o.dy / 1000
                x, y = x + frac * (tx - x), y + frac * (ty - y)
        if visible:
            out.append(Placed(o, x, y, colour))
    return out


def render_video(video: Video, px: int = FRAME_PX) -> list[Image.Image]:
    return [render(state_at(video, t), px) for t in range(video.n_frames)]


def direction(src: Sequence[int], dst: Sequence[int]) -> str:
    dr, dc = dst[0] - src[0], dst[1] - src[1]
    return next(d for d, (r, c) in DIRECTIONS.items() if (r, c) == (int(np.sign(dr)), int(np.sign(dc))))


@dataclass(frozen=True)
class Happening:
    """What an observer of a clip sees: the subject as it looked when the event began, and the change."""

    kind: str
    colour: str
    shape: str
    detail: str = ""  # direction of a move, new colour of a recolour

    def text(self) -> str:
        name = f"{self.colour} {self.shape}"
        return {"move": f"the {name} moves {self.detail}", "appear": f"{a(name)} appears",
                "disappear": f"the {name} disappears", "recolour": f"the {name} turns {self.detail}"}[self.kind]

    def reversed(self) -> Happening:
        """The same clip played backwards."""
        if self.kind == "move":
            return Happening("move", self.colour, self.shape, OPPOSITE[self.detail])
        if self.kind == "recolour":
            return Happening("recolour", self.detail, self.shape, self.colour)
        return Happening("disappear" if self.kind == "appear" else "appear", self.colour, self.shape)


def before(video: Video, event: Event) -> tuple[str, tuple[int, int]]:
    """The colour and cell of the event's object just before it starts (after its earlier recolours and moves)."""
    o = video.objects[event.obj]
    colour, cell = o.colour, o.cell
    for e in sorted((e for e in video.events if e.obj == event.obj and e.start < event.start), key=lambda e: e.start):
        if e.kind == "recolour":
            colour = e.to
        elif e.kind == "move":
            cell = tuple(e.to)
    return colour, cell


def happening(video: Video, event: Event) -> Happening:
    o = video.objects[event.obj]
    colour, cell = before(video, event)
    if event.kind == "move":
        return Happening("move", colour, o.shape, direction(cell, event.to))
    return Happening(event.kind, colour, o.shape, event.to if event.kind == "recolour" else "")


def end_cell(video: Video, i: int) -> tuple[int, int]:
    moves = [e for e in video.events if e.obj == i and e.kind == "move"]
    return tuple(max(moves, key=lambda e: e.start).to) if moves else video.objects[i].cell


class EventPlanner:
    """Draws valid events one at a time, tracking cells, visibility and colours as the video unfolds."""

    def __init__(self, rng: np.random.Generator, objects: Sequence[Obj], hidden: Sequence[int] = ()) -> None:
        self.rng = rng
        self.objects = list(objects)
        self.cell = {i: o.cell for i, o in enumerate(objects)}
        self.colour = {i: o.colour for i, o in enumerate(objects)}
        self.visible = {i: i not in hidden for i in range(len(objects))}
        self.hidden = list(hidden)
        self.reserved = [o.cell for o in objects]

    def options(self, i: int) -> list[str]:
        """Kinds that can happen to object i now."""
        if not self.visible[i]:
            return ["appear"] if i in self.hidden else []
        kinds = ["disappear"]
        if self._recolours(i):
            kinds.append("recolour")
        if self._moves(i):
            kinds.append("move")
        return kinds

    def _recolours(self, i: int) -> list[str]:
        shape = self.objects[i].shape
        return [c for c in COLOUR_NAMES if c != self.colour[i] and (c, shape) in ALLOWED_COMBOS]

    def _moves(self, i: int) -> list[tuple[int, int]]:
        """Cells one or two steps away in a straight line, over free cells only."""
        r, c = self.cell[i]
        out = []
        for dr, dc in DIRECTIONS.values():
            for k in (1, 2):
                cell = (r + k * dr, c + k * dc)
                if cell not in CELLS or cell in self.reserved:
                    break
                out.append(cell)
        return out

    def make(self, i: int, kind: str, start: int, end: int) -> Event:
        if kind == "move":
            to = pick(self.rng, self._moves(i))
            self.reserved.append(to)
            self.cell[i] = to
            return Event(kind, i, start, end, list(to))
        if kind == "recolour":
            to = pick(self.rng, self._recolours(i))
            self.colour[i] = to
            return Event(kind, i, (start + end + 1) // 2, (start + end + 1) // 2, to)
        self.visible[i] = kind == "appear"
        return Event(kind, i, (start + end + 1) // 2, (start + end + 1) // 2)


def cell_name(cell: Sequence[int]) -> str:
    return CELL_NAMES[(cell[0], cell[1])]


def policy_ok(policy: Policy, video: Video) -> bool:
    """Every (colour, shape) pair the video ever shows must be allowed in the split."""
    combos = [o.combo for o in video.objects]
    combos += [(e.to, video.objects[e.obj].shape) for e in video.events if e.kind == "recolour"]
    return policy.admits(combos)
