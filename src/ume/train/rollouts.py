"""RL rollouts through the core generation seam (`ume.generation`): the same backends as inference.

Rollouts sample as the reference's RL trainer does (`GenerationConfig(do_sample=True, temperature=1)`):
temperature and top_p from the RL config, top_k off, no penalty — never the checkpoint's near-greedy
`generation_config` (with an Instruct-like `top_k: 1` every rollout of a group would be the same and every
advantage 0). Seeded per (pair, side, sample), so a rollout does not depend on which rank or batch made it.
"""

from __future__ import annotations

from collections.abc import Sequence

from ume.encoder import Encoder
from ume.generation import Completion
from ume.inputs import Item


class Rollouts:
    """G sampled completions per item with the encoder's generation backend, on the live policy weights."""

    def __init__(self, encoder: Encoder, batch_size: int = 8) -> None:
        self.encoder = encoder
        self.batch_size = batch_size

    def generate(self, items: Sequence[Item], num_generations: int, seeds: Sequence[int], temperature: float,
                 top_p: float, max_new_tokens: int) -> list[list[Completion]]:
        """`num_generations` sampled completions per item, [item][sample]."""
        settings = self.encoder.generation_settings(num_generations, temperature, top_p, None, None, max_new_tokens)
        if not settings.do_sample or settings.top_k:
            raise AssertionError(f"rollouts must sample without top_k, got {settings}")
        res = self.encoder.encode(list(items), mode="gen", num_samples=num_generations, temperature=temperature,
                                  top_p=top_p, max_new_tokens=max_new_tokens, seed=list(seeds),
                                  batch_size=self.batch_size, show_progress=False)
        got = res.samples
        assert got is not None
        return [[Completion((i, s), got.token_ids[i][s], bool(got.forced[i, s])) for s in range(num_generations)]
                for i in range(len(items))]
