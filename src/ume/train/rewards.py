"""UME-R1's RL reward: format + (positive ratio in top-G) × (mean similarity gap), per rollout.

Exactly the reference's (github.com/XMUDeepLIT/UME-R1 `src/r1-train/src/open_r1/grpo_embed.py`). For query
rollout i of pair g(i), against every gathered target rollout j (N pairs × G rollouts, across all ranks):

    rank_i = |Pos(i) ∩ top-G_j(s_ij)| / G          Pos(i) = the G target rollouts of the same pair
    gap_i  = mean_{j∈Pos(i)} s_ij − mean_{j∉Pos(i)} s_ij
    R_i    = R_format(o_i) + rank_i · gap_i

and the same for target rollouts against query rollouts. Ties in the top-G follow `torch.topk`.

Rewards are a registry (`REWARDS`, TRL's `reward_funcs` / `reward_weights` as names and weights in
`RLConfig`): each takes one side's rollouts (`RolloutGroup`) and returns its value per rollout plus the
terms it logs. A new reward is one function registered here and its name in the config.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

FORMAT_RE = re.compile(r"<think>.*?</think>.*?\s*<answer>.*?\s*<gen_emb>", re.DOTALL)


def format_reward(completions: Sequence[str], match: str = "search") -> torch.Tensor:
    """1.0 where the completion (decoded with skip_special_tokens=True) holds the format: anywhere in it, as
    the reference's `re.search` (default), or anchored at its start (`match="match"`, stricter: no leading
    whitespace or text before `<think>`). Anything may follow `<gen_emb>`."""
    if match not in ("search", "match"):
        raise ValueError(f"match must be 'search' or 'match', got {match!r}")
    find = FORMAT_RE.search if match == "search" else FORMAT_RE.match
    return torch.tensor([1.0 if find(c) else 0.0 for c in completions])


@dataclass
class EmbeddingReward:
    rank: torch.Tensor  # [M] share of the same pair's rollouts in the top-G
    gap: torch.Tensor  # [M] mean positive minus mean negative similarity

    @property
    def value(self) -> torch.Tensor:
        return self.rank * self.gap


def embedding_reward(anchors: torch.Tensor, others: torch.Tensor, anchor_pairs: torch.Tensor,
                     other_pairs: torch.Tensor, group_size: int) -> EmbeddingReward:
    """Reward of each anchor rollout against all rollouts of the other side.

    anchors [M, d], others [K, d] (L2-normalised); *_pairs give each rollout's pair id. Each anchor must
    have exactly `group_size` positives and at least one negative.
    """
    sims = anchors.float() @ others.float().T
    pos = anchor_pairs.view(-1, 1) == other_pairs.view(1, -1)
    n_pos = pos.sum(dim=1)
    if bool((n_pos != group_size).any()):
        raise ValueError(f"every rollout needs exactly G={group_size} positives on the other side")
    if bool((~pos).sum(dim=1).eq(0).any()):
        raise ValueError("the embedding reward needs at least 2 distinct pairs per reward group (no negatives)")
    top = sims.topk(group_size, dim=1).indices
    rank = pos.gather(1, top).float().sum(dim=1) / group_size
    mean_pos = (sims * pos).sum(dim=1) / n_pos
    mean_neg = (sims * ~pos).sum(dim=1) / (~pos).sum(dim=1)
    return EmbeddingReward(rank=rank, gap=mean_pos - mean_neg)


@dataclass
class RolloutGroup:
    """One side's rollouts on this rank and what a reward may compare them with."""

    texts: list[str]  # completions decoded with skip_special_tokens=True (what the reference's regex sees)
    vectors: torch.Tensor  # [M, d] their <gen_emb> vectors, detached
    pair_ids: torch.Tensor  # [M] the pair of each rollout
    other_vectors: torch.Tensor  # [K, d] the other side's rollouts, gathered from every rank
    other_pair_ids: torch.Tensor  # [K]
    group_size: int  # G


@dataclass
class RewardTerms:
    value: torch.Tensor  # [M] this reward's contribution per rollout (before its weight)
    logs: dict[str, torch.Tensor]  # per-rollout terms logged as <side>_<key> (means)


Reward = Callable[[RolloutGroup], RewardTerms]


def _format(match: str) -> Reward:
    def reward(group: RolloutGroup) -> RewardTerms:
        value = format_reward(group.texts, match).to(group.vectors.device)
        return RewardTerms(value, {"format" if match == "search" else "format_strict": value})
    return reward


def _embedding(group: RolloutGroup) -> RewardTerms:
    emb = embedding_reward(group.vectors, group.other_vectors, group.pair_ids, group.other_pair_ids,
                           group.group_size)
    return RewardTerms(emb.value, {"rank": emb.rank, "gap": emb.gap, "emb_reward": emb.value})


REWARDS: dict[str, Reward] = {
    "format": _format("search"),  # the reference's re.search: the format anywhere in the completion
    "format_strict": _format("match"),  # anchored at the completion's start (no text before <think>)
    "embedding": _embedding,  # rank x gap against the other side's rollouts (UME-R1 §7.1)
}


def total_reward(group: RolloutGroup, names: Sequence[str], weights: Sequence[float]
                 ) -> tuple[torch.Tensor, dict[str, float]]:
    """Sum of weight x reward over the configured rewards, and the mean of every logged term."""
    total = torch.zeros(len(group.texts), device=group.vectors.device)
    logs: dict[str, float] = {}
    for name, weight in zip(names, weights, strict=True):
        terms = REWARDS[name](group)
        total = total + weight * terms.value.to(total.device)
        logs.update({k: float(v.float().mean()) for k, v in terms.logs.items()})
    return total, logs
