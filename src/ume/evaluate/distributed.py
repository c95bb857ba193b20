"""Sharded evaluation under `torchrun`: each rank encodes a slice, results are merged on every rank.

gloo on CPU, nccl on GPU. Without torchrun's environment this is a one-process no-op.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    device: str | None = None

    @classmethod
    def from_env(cls) -> Dist:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        local = int(os.environ.get("LOCAL_RANK", "0"))
        cuda = torch.cuda.is_available()
        if not dist.is_initialized():
            dist.init_process_group("nccl" if cuda else "gloo")
        if cuda:
            torch.cuda.set_device(local)
        return cls(rank=dist.get_rank(), world=dist.get_world_size(), device=f"cuda:{local}" if cuda else "cpu")

    def merge(self, mapping: dict[str, Any]) -> dict[str, Any]:
        """Union of every rank's dict (ranks encode disjoint keys)."""
        parts: list[Any] = [None] * self.world
        dist.all_gather_object(parts, mapping)
        merged: dict[str, Any] = {}
        for part in parts:
            merged.update(part)
        return merged

    def merge_lists(self, items: list[Any]) -> list[Any]:
        parts: list[Any] = [None] * self.world
        dist.all_gather_object(parts, items)
        return [x for part in parts for x in part]

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()
