"""The trained module: one teacher-forced forward over one side -> gen vector, disc vector, CE sum.

It wraps the stock transformers model so that DDP / DeepSpeed see a single `forward` (calling the inner
`model.model` directly would bypass DDP's gradient synchronisation). The vectors come from the shared
readout (`ume.readout`); the LM head is applied only at supervised positions, never over the whole
sequence, which saves the [B, L, vocab] logits tensor.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ume.families import LLM_LINEARS, MERGERS, family_of
from ume.readout import EmbeddingTokens, last_hidden, read_embedding
from ume.train.collate import IGNORE
from ume.train.config import SFTConfig


class SFTModel(nn.Module):
    """`forward(batch)` -> (gen [B, d], disc [B, d], CE sum over supervised tokens); vectors L2-normalised.

    The assistant span is the last `n` tokens of each (left-padded) row, n = supervised label count:
    <disc_emb> is read in the prompt before it, <gen_emb> inside it (the prompt itself holds a <gen_emb>).
    """

    def __init__(self, model: Any, gen_id: int, disc_id: int, with_ce: bool = True) -> None:
        super().__init__()
        self.model = model
        self.tokens, self.with_ce = EmbeddingTokens(disc=disc_id, gen=gen_id), with_ce

    def forward(self, batch: dict[str, torch.Tensor],
                ce: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`ce=False` skips the LM head (GradCache's no-grad pass needs the vectors only)."""
        labels = batch["labels"]
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        hidden = last_hidden(self.model, **inputs, use_cache=False).last_hidden_state
        ids = inputs["input_ids"]
        start = labels.shape[1] - (labels != IGNORE).sum(dim=1)
        disc = read_embedding(hidden, ids, "disc", self.tokens, start)
        gen = read_embedding(hidden, ids, "gen", self.tokens, start)
        if not (ce and self.with_ce):
            return gen, disc, hidden.new_zeros((), dtype=torch.float32)
        target = labels[:, 1:]
        keep = target != IGNORE
        logits = self.model.get_output_embeddings()(hidden[:, :-1][keep]).float()
        return gen, disc, F.cross_entropy(logits, target[keep], reduction="sum")


def set_trainable(model: Any, train_vision: bool, train_merger: bool, train_llm: bool) -> None:
    """Paper default: vision tower frozen, merger (vision -> LLM projector) and LLM (incl. head) trained."""
    model.requires_grad_(False)
    for name, p in model.model.visual.named_parameters():
        p.requires_grad_(train_merger if name.startswith(MERGERS) else train_vision)
    if train_llm:
        model.model.language_model.requires_grad_(True)
        model.get_output_embeddings().requires_grad_(True)


def add_lora(model: Any, cfg: SFTConfig) -> Any:
    """Wrap with peft LoRA on the linear layers of the trained towers; the merger is trained in full
    (`modules_to_save`). Returns the PeftModel; `model` itself gets the adapters injected in place."""
    from peft import LoraConfig, get_peft_model

    family = family_of(model.config.model_type)
    towers = [rf"{tower}\..*\.({'|'.join(linears)})" for tower, linears, on in (
        ("language_model", LLM_LINEARS, cfg.train_llm), ("visual\\.blocks", family.vision_linears, cfg.train_vision))
        if on]
    target = rf"model\.({'|'.join(towers)})"
    lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout, target_modules=target,
                      modules_to_save=_merger_modules(model, family.mergers) if cfg.train_merger else None, bias="none")
    return get_peft_model(model, lora)


def _merger_modules(model: Any, mergers: tuple[str, ...]) -> list[str]:
    """The family's merger modules as peft's `modules_to_save` names: a ModuleList (Qwen3-VL's deepstack
    mergers) as its members, which peft can wrap one by one."""
    names = []
    for name in mergers:
        module = getattr(model.model.visual, name, None)
        if isinstance(module, nn.ModuleList):
            names += [f"{name}.{i}" for i in range(len(module))]
        elif module is not None:
            names.append(name)
    return names


def tower_of(name: str) -> str:
    """The tower ("vision", "merger" or "llm") of a parameter of the stock model, peft-wrapped or not."""
    _, visual, rest = name.partition("visual.")
    if not visual:
        return "llm"
    return "merger" if rest.startswith(MERGERS) else "vision"


def param_groups(module: nn.Module, lr: float, weight_decay: float,
                 tower_lr: dict[str, float | None]) -> list[dict[str, Any]]:
    """AdamW groups of the trainable parameters: one per (tower, decay), each with the tower's own peak
    learning rate (`tower_lr`, None = `lr`). A freshly initialised projector or a vision tower that should
    move slowly are the usual reasons to set them apart. Matrices decay, vectors (norms, biases) do not."""
    groups: dict[tuple[str, bool], dict[str, Any]] = {}
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        tower, decay = tower_of(name), p.ndim >= 2
        group = groups.setdefault((tower, decay), {
            "params": [], "lr": tower_lr.get(tower) or lr, "weight_decay": weight_decay if decay else 0.0,
            "name": f"{tower}{'' if decay else '/no_decay'}"})
        group["params"].append(p)
    return list(groups.values())


def trainable_parameters(module: nn.Module) -> list[nn.Parameter]:
    return [p for p in module.parameters() if p.requires_grad]
