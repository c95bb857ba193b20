"""What a task generator returns: a query, its positive, its negatives, and the ground truth behind them.

Media are rendered lazily (`Media.render`), so training, which needs only query and positive, never pays
for the negatives, and writers decide where files go.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import numpy as np
from PIL import Image

from ume.synth.rng import shuffled

T = TypeVar("T")


@dataclass(frozen=True)
class Media:
    """A picture (`kind="image"`) or a frame list (`"video"`); `name` is its stem within the example."""

    kind: Literal["image", "video"]
    name: str
    render: Callable[[], Image.Image | list[Image.Image]]


@dataclass
class Side:
    """One side of a pair. `inst` + `text` form the MMEB string without placeholder; `think`/`answer` are the
    assistant turn written from the ground truth (empty for negatives, which are never trained on)."""

    inst: str = ""
    text: str = ""
    media: Media | None = None
    think: str = ""
    answer: str = ""

    def prompt(self) -> str:
        return " ".join(p for p in (self.inst, self.text) if p)


@dataclass
class Example:
    """One query. `spec` is the JSON ground truth; `extra` holds loader-specific row fields."""

    spec: dict[str, Any]
    query: Side
    positive: Side
    negatives: list[Side] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


def pick_negatives(rng: np.random.Generator, truth: T, hard: Sequence[T], k: int,
                   fill: Callable[[], T] | None = None, key: Callable[[T], Hashable] = lambda x: x,
                   ok: Callable[[T], bool] = lambda x: True) -> list[T]:
    """Up to k distinct negatives: the hard ones first (in random order), then `fill()` draws.

    Two candidates with the same `key` count as the same candidate, and none may share the truth's key,
    so a negative can never be a second correct answer.
    """
    seen = {key(truth)}
    out: list[T] = []
    pending = iter(shuffled(rng, list(hard)))
    for _ in range(len(hard) + (200 if fill else 0)):
        if len(out) == k:
            break
        cand = next(pending, None)
        if cand is None:
            if fill is None:
                break
            cand = fill()
        if key(cand) not in seen and ok(cand):
            seen.add(key(cand))
            out.append(cand)
    return out
