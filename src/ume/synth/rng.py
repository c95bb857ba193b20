"""Per-item random streams: every item draws from its own `SeedSequence([seed, split, task, index])`.

Keying streams by split makes train and eval scenes come from disjoint seeds by construction, and keying
them by item index makes item i identical at every scale (a `small` build is a prefix of a `full` one).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import numpy as np

T = TypeVar("T")

SPLIT_IDS: dict[str, int] = {"eval": 0, "holdout": 1, "sft": 2, "rl": 3}


def item_rng(seed: int, split: str, task_id: int, index: int) -> np.random.Generator:
    """The generator for one item; `seed_key` gives the same key for the scene files."""
    return np.random.default_rng(np.random.SeedSequence(seed_key(seed, split, task_id, index)))


def seed_key(seed: int, split: str, task_id: int, index: int) -> list[int]:
    return [seed, SPLIT_IDS[split], task_id, index]


def pick(rng: np.random.Generator, seq: Sequence[T]) -> T:
    """One element (numpy's `choice` would turn strings into numpy scalars)."""
    return seq[int(rng.integers(len(seq)))]


def sample(rng: np.random.Generator, seq: Sequence[T], k: int) -> list[T]:
    """k distinct elements in random order."""
    return [seq[int(i)] for i in rng.choice(len(seq), size=k, replace=False)]


def shuffled(rng: np.random.Generator, seq: Sequence[T]) -> list[T]:
    return [seq[int(i)] for i in rng.permutation(len(seq))]


def chance(rng: np.random.Generator, p: float) -> bool:
    return bool(rng.random() < p)
