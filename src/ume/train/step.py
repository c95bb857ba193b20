"""One micro-batch: forward both sides, the SFT loss, backward. Full batch, or GradCache.

GradCache (Gao et al., 2021) decouples the contrastive batch from activation memory:
  1. forward every chunk without grad -> all vectors of the micro-batch;
  2. the contrastive loss on those cached vectors (gathered across ranks as usual) -> d loss / d vector;
  3. re-forward each chunk with grad and backpropagate <vectors, cached gradient> + that chunk's CE.
Step 3's parameter gradients sum to the full-batch gradient, because the loss depends on the parameters
only through the vectors and the per-chunk CE sums. The RNG state of each chunk's first forward is
replayed in its re-forward, so dropout masks match. Under DDP every re-forward but the last runs in
`no_sync`, so gradients are all-reduced once.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

import torch

from ume.train.collate import IGNORE, Batch, MicroBatch
from ume.train.losses import SFTLoss, ce_normaliser

SideForward = Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]]  # (batch, ce=True)
Backward = Callable[[torch.Tensor], None]


def supervised_tokens(chunks: list[Batch]) -> int:
    """Next-token targets of a side: every label but the first position's (nothing predicts it)."""
    return int(sum(int((c["labels"][:, 1:] != IGNORE).sum()) for c in chunks))


def ce_norms(mb: MicroBatch, device: torch.device) -> tuple[float, float]:
    """(query, target) CE normalisers; computed from the labels before any forward, as GradCache needs."""
    return ce_normaliser(supervised_tokens(mb.qry), device), ce_normaliser(supervised_tokens(mb.tgt), device)


def full_batch_step(forward: SideForward, mb: MicroBatch, loss_fn: SFTLoss, backward: Backward,
                    device: torch.device) -> dict[str, float]:
    """Forward all rows with grad (one chunk per side unless the collator chunked), one backward."""
    norm_q, norm_t = ce_norms(mb, device)
    q_gen, q_disc, q_ce = _joined([forward(c) for c in mb.qry])
    t_gen, t_disc, t_ce = _joined([forward(c) for c in mb.tgt])
    terms = loss_fn(q_gen, t_gen, q_disc, t_disc, q_ce / norm_q, t_ce / norm_t)
    backward(terms["loss"])
    return {k: float(v.detach()) for k, v in terms.items()}


def _joined(outs: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, ...]:
    """Chunk outputs -> (gen rows, disc rows, CE sum)."""
    return torch.cat([o[0] for o in outs]), torch.cat([o[1] for o in outs]), torch.stack([o[2] for o in outs]).sum()


class RandState:
    """CPU (and current CUDA device) RNG state, captured now and restorable later."""

    def __init__(self, device: torch.device) -> None:
        self.cpu = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
        self.device = device

    def restore(self) -> None:
        torch.set_rng_state(self.cpu)
        if self.cuda is not None:
            torch.cuda.set_rng_state(self.cuda, self.device)


def grad_cache_step(forward: SideForward, mb: MicroBatch, loss_fn: SFTLoss, backward: Backward,
                    no_sync: Callable[[], AbstractContextManager], device: torch.device) -> dict[str, float]:
    """The micro-batch's gradient, chunk by chunk; equals `full_batch_step`'s (see the module docstring)."""
    norm = dict(zip(("qry", "tgt"), ce_norms(mb, device), strict=True))
    w_ce = {"qry": loss_fn.weights["ce_qry"], "tgt": loss_fn.weights["ce_tgt"]}
    jobs = [(side, c) for side, chunks in (("qry", mb.qry), ("tgt", mb.tgt)) for c in chunks]
    states, gens, discs = [], {"qry": [], "tgt": []}, {"qry": [], "tgt": []}
    with torch.no_grad():
        for side, chunk in jobs:
            states.append(RandState(device))
            gen, disc, _ = forward(chunk, ce=False)
            gens[side].append(gen)
            discs[side].append(disc)
    leaves = [torch.cat(x[s]).requires_grad_() for x in (gens, discs) for s in ("qry", "tgt")]
    terms = loss_fn.contrastive(leaves[0], leaves[1], leaves[2], leaves[3])
    if terms:
        loss_fn.weighted(terms).backward()
    grads = [leaf.grad if leaf.grad is not None else torch.zeros_like(leaf) for leaf in leaves]
    grad = {"gen": {"qry": grads[0], "tgt": grads[1]}, "disc": {"qry": grads[2], "tgt": grads[3]}}
    ce = {"qry": 0.0, "tgt": 0.0}
    offset = {"qry": 0, "tgt": 0}
    for i, ((side, chunk), state) in enumerate(zip(jobs, states, strict=True)):
        rows = slice(offset[side], offset[side] + chunk["input_ids"].shape[0])
        offset[side] = rows.stop
        with no_sync() if i < len(jobs) - 1 else nullcontext():
            state.restore()
            gen, disc, ce_sum = forward(chunk)
            ce_part = ce_sum / norm[side]
            surrogate = (gen * grad["gen"][side][rows]).sum() + (disc * grad["disc"][side][rows]).sum() \
                + w_ce[side] * ce_part
            backward(surrogate)
        ce[side] += float(ce_part.detach())
    out = {k: float(v.detach()) for k, v in terms.items()}
    if w_ce["qry"]:
        out["ce_qry"] = ce["qry"]
    if w_ce["tgt"]:
        out["ce_tgt"] = ce["tgt"]
    out["loss"] = sum(loss_fn.weights[k] * v for k, v in out.items())
    return out
