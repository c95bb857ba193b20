"""Run SFT and keep the gradients each optimiser step applies (after DDP averaging and clipping).

`torchrun --nproc_per_node 2 tests/sft_ddp_probe.py CFG.json OUT.pt` saves them from rank 0; tests call
`run_with_grads(cfg)` in-process for the one-process reference.
"""

from __future__ import annotations

import sys

import torch

from ume.train.config import SFTConfig
from ume.train.sft import SFTTrainer


def run_with_grads(cfg: SFTConfig) -> tuple[SFTTrainer, list[dict[str, torch.Tensor]]]:
    trainer = SFTTrainer(cfg)
    seen: list[dict[str, torch.Tensor]] = []
    step = trainer.optimizer.step

    def recording_step(*args, **kwargs):
        seen.append({n.removeprefix("module."): p.grad.detach().clone()
                     for n, p in trainer.model.named_parameters() if p.grad is not None})
        return step(*args, **kwargs)

    trainer.optimizer.step = recording_step
    trainer.train()
    return trainer, seen


if __name__ == "__main__":
    trainer, grads = run_with_grads(SFTConfig.load(sys.argv[1]))
    if trainer.acc.is_main_process:
        torch.save(grads, sys.argv[2])
