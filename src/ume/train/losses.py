"""The SFT objective (the UME-R1 paper), in the style of open_clip's `ClipLoss`.

    L = w_g·InfoNCE(gen) + w_d·InfoNCE(disc) + w_q·CE(query turns) + w_t·CE(target turns)
    InfoNCE(Q, T) = ½ [CE(s·Q_r·T_allᵀ, y) + CE(s·T_r·Q_allᵀ, y)],  y_i = i + offset_r

Each rank scores its local rows against the columns of all ranks, gathered **with gradient**
(`local_loss` in open_clip's terms). Sums are divided by (global rows / world) and CE sums by (global
supervised tokens / world): DDP then averages gradients over ranks, and the result is exactly the
gradient of the one-process loss on the whole global batch, even when ranks hold different row counts.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.distributed.nn as dist_nn
import torch.nn.functional as F
from torch import nn


def distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if distributed() else 1


def all_reduce_sum(value: float, device: torch.device) -> float:
    """Sum of a scalar over ranks (no gradient)."""
    t = torch.tensor(float(value), device=device, dtype=torch.float64)
    if distributed():
        dist.all_reduce(t)
    return float(t)


def gather_with_grad(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Rows of every rank concatenated in rank order, and this rank's row offset.

    Gradients flow back into every rank's slice (`torch.distributed.nn.all_gather`, whose backward sums
    the contributions of all ranks). Ranks may hold different row counts: rows are padded to the
    largest count for the collective and the padding is cut off again.
    """
    if not distributed():
        return x, 0
    sizes_t = [torch.zeros(1, dtype=torch.long, device=x.device) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes_t, torch.tensor([x.shape[0]], device=x.device))
    sizes = [int(s) for s in sizes_t]
    padded = F.pad(x, (0, 0, 0, max(sizes) - x.shape[0]))
    parts = dist_nn.all_gather(padded)
    rank = dist.get_rank()
    return torch.cat([p[:n] for p, n in zip(parts, sizes, strict=True)]), sum(sizes[:rank])


class InfoNCE(nn.Module):
    """Symmetric in-batch InfoNCE with a fixed logit scale over L2-normalised vectors."""

    def __init__(self, logit_scale: float = 50.0) -> None:
        super().__init__()
        self.logit_scale = logit_scale

    def forward(self, q: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        q_all, offset = gather_with_grad(q)
        t_all, _ = gather_with_grad(t)
        labels = torch.arange(q.shape[0], device=q.device) + offset
        s = self.logit_scale
        total = F.cross_entropy(s * q @ t_all.T, labels, reduction="sum") + \
            F.cross_entropy(s * t @ q_all.T, labels, reduction="sum")
        return 0.5 * total / (q_all.shape[0] / world_size())


class SFTLoss(nn.Module):
    """The four weighted terms; a weight of 0 drops its term (DUME = disc InfoNCE only).

    `forward` takes the vectors of the local rows and the CE sums already divided by the global token
    normaliser (see `ce_normaliser`), and returns every term plus the weighted total under "loss".
    """

    def __init__(self, logit_scale: float = 50.0, w_gen: float = 1.0, w_disc: float = 1.0,
                 w_ce_qry: float = 1.0, w_ce_tgt: float = 1.0) -> None:
        super().__init__()
        self.infonce = InfoNCE(logit_scale)
        self.weights = {"gen": w_gen, "disc": w_disc, "ce_qry": w_ce_qry, "ce_tgt": w_ce_tgt}

    def contrastive(self, q_gen: torch.Tensor, p_gen: torch.Tensor, q_disc: torch.Tensor,
                    p_disc: torch.Tensor) -> dict[str, torch.Tensor]:
        terms = {}
        if self.weights["gen"]:
            terms["gen"] = self.infonce(q_gen, p_gen)
        if self.weights["disc"]:
            terms["disc"] = self.infonce(q_disc, p_disc)
        return terms

    def weighted(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        """The weighted sum of `terms` (which must not be empty)."""
        total = [self.weights[k] * v for k, v in terms.items()]
        return torch.stack(total).sum()

    def forward(self, q_gen: torch.Tensor, p_gen: torch.Tensor, q_disc: torch.Tensor, p_disc: torch.Tensor,
                ce_qry: torch.Tensor | None = None, ce_tgt: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        terms = self.contrastive(q_gen, p_gen, q_disc, p_disc)
        if self.weights["ce_qry"] and ce_qry is not None:
            terms["ce_qry"] = ce_qry
        if self.weights["ce_tgt"] and ce_tgt is not None:
            terms["ce_tgt"] = ce_tgt
        return {**terms, "loss": self.weighted(terms)}


def ce_normaliser(local_tokens: int, device: torch.device) -> float:
    """Global supervised-token count / world: CE sum / this = token mean whose DDP-averaged gradient
    equals the one-process token mean over the global batch."""
    return max(all_reduce_sum(local_tokens, device), 1.0) / world_size()
