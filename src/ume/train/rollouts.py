"""Rollouts behind a small interface, so a faster backend (e.g. vLLM on GPU) can plug in without
touching the trainer: it only needs the generated token ids of each completion.

The default backend is ume's own decoder over the live policy weights (`Encoder.encode(mode="gen")`),
seeded per (pair, side, sample) so that a rollout does not depend on which rank or batch produced it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from ume.encoder import Encoder
from ume.inputs import Item


@dataclass
class Completion:
    token_ids: list[int]  # generated ids; ends with <gen_emb> (appended when `forced`)
    forced: bool  # the model did not emit <gen_emb> itself within the budget


class RolloutBackend(Protocol):
    def generate(self, items: Sequence[Item], num_generations: int, seeds: Sequence[int], temperature: float,
                 top_p: float, max_new_tokens: int) -> list[list[Completion]]:
        """`num_generations` sampled completions per item, [item][sample]."""
        ...


class DecoderRollouts:
    """Rollouts with ume's continuous-batching decoder on the policy being trained."""

    def __init__(self, encoder: Encoder, batch_size: int = 8) -> None:
        self.encoder = encoder
        self.batch_size = batch_size

    def generate(self, items: Sequence[Item], num_generations: int, seeds: Sequence[int], temperature: float,
                 top_p: float, max_new_tokens: int) -> list[list[Completion]]:
        res = self.encoder.encode(list(items), mode="gen", num_samples=num_generations, temperature=temperature,
                                  top_p=top_p, max_new_tokens=max_new_tokens, seed=list(seeds),
                                  batch_size=self.batch_size, show_progress=False)
        assert res.token_ids is not None and res.forced is not None
        return [[Completion(res.token_ids[i][s], bool(res.forced[i, s])) for s in range(num_generations)]
                for i in range(len(items))]
