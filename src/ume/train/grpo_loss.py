"""GRPO policy loss for one side (query or target), exactly the reference's
(github.com/XMUDeepLIT/UME-R1 `src/r1-train/src/open_r1/trainer/grpo_trainer.py`).

    A_i  = (R_i − mean_grp R) / (std_grp R + 1e-4)             group = the G rollouts of one prompt
    ρ_t  = exp(logp_t − logp_old_t)
    ℓ_t  = −min(ρ_t·A_i, clip(ρ_t, 1−ε_low, 1+ε_high)·A_i) + β·KL_t
    KL_t = exp(ref_t − logp_t) − (ref_t − logp_t) − 1            (k3 estimator)

Normalisers: "constant" (the reference: Σ_t ℓ / max_completion_length, mean over rollouts — TRL's
dr_grpo), "token" (DAPO: Σ ℓ / Σ mask over the batch), "sequence" (GRPO: mean over rollouts of the
per-rollout token mean). With one update per generation batch (μ = 1) logp_old = logp, so ρ ≡ 1 and the
clip never binds; it only acts for μ > 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

Normaliser = Literal["constant", "token", "sequence"]


def group_advantages(rewards: torch.Tensor, group_size: int, eps: float = 1e-4) -> torch.Tensor:
    """(R − group mean) / (group std + eps); rewards are laid out group by group (G consecutive)."""
    if rewards.numel() % group_size:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of {group_size}")
    grouped = rewards.view(-1, group_size).float()
    std = grouped.std(dim=1, keepdim=True) if group_size > 1 else torch.zeros_like(grouped[:, :1])
    return ((grouped - grouped.mean(dim=1, keepdim=True)) / (std + eps)).view(-1)


@dataclass
class PolicyLoss:
    loss: torch.Tensor
    kl: torch.Tensor  # mean k3 KL over completion tokens (0 when β = 0)
    clip_fraction: torch.Tensor  # share of tokens where the clipped branch was taken


def policy_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                eps_low: float = 0.2, eps_high: float = 0.28, beta: float = 0.04,
                ref_logp: torch.Tensor | None = None, normaliser: Normaliser = "constant",
                max_completion_length: int = 2048) -> PolicyLoss:
    """Clipped surrogate + β·KL over completion tokens; logp/old_logp/ref_logp/mask are [M, T]."""
    mask = mask.to(logp.dtype)
    ratio = torch.exp(logp - old_logp)
    adv = advantages.view(-1, 1)
    unclipped = ratio * adv
    clipped = ratio.clamp(1 - eps_low, 1 + eps_high) * adv
    per_token = -torch.min(unclipped, clipped)
    kl = torch.zeros_like(logp)
    if beta > 0:
        if ref_logp is None:
            raise ValueError("beta > 0 needs the reference model's log-probs")
        diff = ref_logp - logp
        kl = torch.exp(diff) - diff - 1
        per_token = per_token + beta * kl
    if normaliser == "constant":
        loss = ((per_token * mask).sum(dim=1) / max_completion_length).mean()
    elif normaliser == "token":
        loss = (per_token * mask).sum() / mask.sum().clamp(min=1)
    elif normaliser == "sequence":
        loss = ((per_token * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)).mean()
    else:
        raise ValueError(f"unknown normaliser {normaliser!r}; choose constant, token or sequence")
    tokens = mask.sum().clamp(min=1)
    taken = (clipped < unclipped).to(logp.dtype)  # -min(...) picked the clipped branch
    return PolicyLoss(loss=loss, kl=(kl * mask).sum() / tokens, clip_fraction=(taken * mask).sum() / tokens)
