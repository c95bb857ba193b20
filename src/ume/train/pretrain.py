"""Perception pre-training (`ume train pretrain`): next-token training on dense descriptions, before SFT.

UME-R1 starts from a pretrained Qwen2-VL, which has learned to see from captions. A randomly initialised
model meets images for the first time in SFT, and its reasoning then gets colours, counts and positions
wrong. This stage is the analogue of a VLM's caption pre-training: the base model is trained to describe
freshly generated MiniMMEB-world scenes, crops, videos and document pages (`ume.synth.describe`: every
object with size, colour, shape, letter and cell; the first frame and every change with its frame numbers;
every line and value of a page), generated on the fly from seed streams no eval, hold-out, SFT or RL item
uses. Vision tower, merger and LLM all train, each tower with its own peak learning rate.

The prompt is a plain chat turn (system, the visual, the instruction), without the embedding suffix: this
stage teaches seeing, not embedding. It shares the SFT engine (accelerate, checkpoints with exact resume,
the JSONL log, the eval hook); the data position is the step, because item g of the stream is a pure
function of (seed, g). The exported model is a base checkpoint for `ume train sft --model OUTPUT`.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from accelerate.utils import set_seed
from torch import nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from ume.backbone import find_recipe, load_backbone
from ume.inputs import LoadedItem
from ume.readout import last_hidden
from ume.recipe import _PLACEHOLDER_RE, Recipe
from ume.synth.describe import KINDS, Described, item
from ume.train.collate import IGNORE, Collator
from ume.train.engine import EvalFn, Trainer, make_accelerator, mean_over_ranks
from ume.train.losses import ce_normaliser
from ume.train.model import set_trainable, trainable_parameters
from ume.train.pretrain_config import PretrainConfig


class CaptionRecipe(Recipe):
    """The model's recipe with a plain user turn: the instruction alone, no `<disc_emb>` and no embedding
    prompt (images, frames, system prompt and preprocessing stay the recipe's)."""

    def prompt_text(self, text: str) -> str:
        return _PLACEHOLDER_RE.sub("", text).strip()


def caption_recipe(recipe: Recipe) -> CaptionRecipe:
    return CaptionRecipe(**recipe.to_dict())


def loaded(d: Described) -> LoadedItem:
    if d.kind == "video":
        return LoadedItem(text=d.prompt, images=[], video=list(d.visual))
    return LoadedItem(text=d.prompt, images=[d.visual], video=None)


class CaptionCollator:
    """Described items -> one processor batch with labels on the description (the assistant turn) only."""

    def __init__(self, processor: Any, recipe: Recipe, max_length: int) -> None:
        self.inner = Collator(processor, caption_recipe(recipe), max_length)

    def __call__(self, items: list[Described]) -> dict[str, Any]:
        batch, problems = self.inner.side([loaded(d) for d in items], [d.text for d in items])
        if problems:
            raise ValueError(f"pretrain batch: {problems}")
        batch["kinds"] = [d.kind for d in items]
        return batch


class StreamDataset(Dataset):
    """Micro-batch `start + i` of the item stream, this rank's share, collated."""

    def __init__(self, cfg: PretrainConfig, collator: CaptionCollator, rank: int, world: int, start: int,
                 count: int) -> None:
        self.cfg, self.collator, self.rank, self.world = cfg, collator, rank, world
        self.start, self.count = start, count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> dict[str, Any]:
        b, cfg = self.cfg.per_device_train_batch_size, self.cfg
        micro = self.start + i
        level = min(1.0, micro / (cfg.curriculum * cfg.gradient_accumulation_steps)) if cfg.curriculum else 1.0
        first = (micro * self.world + self.rank) * b
        return self.collator([item(cfg.seed, "train", g, tuple(cfg.mix), level=level) for g in range(first, first + b)])


class CaptionModel(nn.Module):
    """`forward(batch)` -> per-row CE sums over the supervised tokens and their counts."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        labels = batch["labels"]
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        hidden = last_hidden(self.model, **inputs, use_cache=False).last_hidden_state
        target = labels[:, 1:]
        keep = target != IGNORE
        logits = self.model.get_output_embeddings()(hidden[:, :-1][keep]).float()
        ce = F.cross_entropy(logits, target[keep], reduction="none")
        rows = torch.arange(labels.shape[0], device=labels.device).unsqueeze(1).expand_as(target)[keep]
        per_row = torch.zeros(labels.shape[0], device=ce.device, dtype=ce.dtype).index_add(0, rows, ce)
        return per_row, keep.sum(dim=1)


class PretrainTrainer(Trainer):
    stage = "pretrain"
    cfg: PretrainConfig

    def __init__(self, cfg: PretrainConfig, eval_fn: EvalFn | None = None) -> None:
        cfg.validate()
        self.cfg, self.eval_fn = cfg, eval_fn
        self.out = Path(cfg.output)
        self.acc = acc = make_accelerator(cfg, find_unused=False)
        base = find_recipe(cfg.model)
        recipe = replace(base, min_pixels=cfg.min_pixels) if cfg.min_pixels else base
        self.ckpt, state = self._find_resume()
        self._start_run()
        set_seed(cfg.seed)
        self.backbone = load_backbone(cfg.model, device=acc.device, dtype=torch.float32, recipe=recipe)
        hf = self.backbone.model
        hf.train()
        set_trainable(hf, cfg.train_vision, cfg.train_merger, cfg.train_llm)
        module = CaptionModel(hf)
        params = trainable_parameters(module)
        self._setup_optimisation(hf, module)
        self.collator = CaptionCollator(self.backbone.processor, recipe, cfg.max_length)
        self.step = 0
        if self.ckpt is not None:
            self._restore(self.ckpt, state)
        accum = cfg.gradient_accumulation_steps
        acc.print(f"trainable parameters: {sum(p.numel() for p in params):,}; processes: {acc.num_processes}; "
                  f"items per step: {cfg.per_device_train_batch_size * acc.num_processes * accum}; "
                  f"start step: {self.step}")

    def _micro(self, batch: dict[str, Any]) -> dict[str, float]:
        kinds = batch.pop("kinds")
        batch = {k: v.to(self.acc.device) for k, v in batch.items()}
        local = int((batch["labels"][:, 1:] != IGNORE).sum())
        norm = ce_normaliser(local, self.acc.device)
        per_row, counts = self.model(batch)
        loss = per_row.sum() / norm
        self.acc.backward(loss)
        out = {"loss": float(loss.detach())}
        for kind in KINDS:  # token-mean CE per item kind present in this micro-batch (this rank)
            rows = [i for i, k in enumerate(kinds) if k == kind]
            if rows:
                out[f"ce_{kind}"] = float(per_row.detach()[rows].sum() / counts[rows].sum().clamp(min=1))
        return out

    def train(self) -> Path:
        cfg, acc = self.cfg, self.acc
        remaining = cfg.max_steps - self.step
        accum = cfg.gradient_accumulation_steps
        data = StreamDataset(cfg, self.collator, acc.process_index, acc.num_processes, self.step * accum,
                             remaining * accum)
        loader = self._loader(data)
        bar = tqdm(total=cfg.max_steps, initial=self.step, desc="pretrain", unit="step",
                   disable=not (cfg.progress and acc.is_main_process))
        while self.step < cfg.max_steps:
            t0 = time.perf_counter()
            lrs = self._lrs()
            terms: dict[str, float] = {}
            seen: dict[str, int] = {}
            tokens = 0
            for _ in range(accum):
                batch = next(loader)
                tokens += int(batch["attention_mask"].sum())
                with acc.accumulate(self.model):
                    got = self._micro(batch)
                for k, v in got.items():
                    terms[k] = terms.get(k, 0.0) + v
                    seen[k] = seen.get(k, 0) + 1
            terms = {k: v / (accum if k == "loss" else seen[k]) for k, v in terms.items()}
            norm = self._optimiser_step()
            line = {"step": self.step, **lrs, **terms, **mean_over_ranks(acc, {"loss": terms["loss"]}),
                    "grad_norm": norm, "tokens": tokens, "step_time": time.perf_counter() - t0}
            self._end_step(line, bar, ("loss", *(f"ce_{k}" for k in KINDS)))
        bar.close()
        self.export_final()
        acc.wait_for_everyone()
        acc.end_training()
        return self.final


def train_pretrain(cfg: PretrainConfig, eval_fn: EvalFn | None = None) -> Path:
    """Run perception pre-training as configured; returns the final model's directory (`<output>/model`)."""
    if eval_fn is None and cfg.eval_steps:
        from ume.train.perception import perception_eval_fn

        eval_fn = perception_eval_fn(cfg.eval_items, cfg.seed)
    return PretrainTrainer(cfg, eval_fn).train()
