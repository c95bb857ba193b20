"""Cold-start SFT (`ume train sft`): the trainer loop on accelerate.

accelerate gives one code path for one CPU process, torchrun + DDP (gloo on CPU, nccl on GPU) and
DeepSpeed ZeRO-2/3, plus bf16 autocast, `no_sync` for accumulation, gradient clipping and exact
save/load of model, optimizer, scheduler and RNG states. Launch on CPU with torchrun
(`accelerate launch --cpu` silently starts ONE process):

    torchrun --nproc_per_node 2 -m ume.train sft --config cfg.json

Layout of `output`: sft_config.json, train_log.jsonl (one line per optimiser step), bad_rows.jsonl,
checkpoint-N/ (HF weights + processor + ume_recipe.json, adapter/ with LoRA, training_state/ for exact
resume, trainer_state.json) and, at the end, model/: the final model in the HF layout, nothing else.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import torch
from accelerate.utils import set_seed
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from ume.backbone import Backbone, find_recipe, load_backbone
from ume.train.collate import Collator, MicroBatch
from ume.train.config import SFTConfig
from ume.train.data import Mixture, load_mixture
from ume.train.engine import BAD_ROWS, EvalFn, Trainer, make_accelerator, mean_over_ranks
from ume.train.losses import SFTLoss
from ume.train.model import SFTModel, add_lora, set_trainable, trainable_parameters
from ume.train.step import full_batch_step, grad_cache_step


class PlanDataset(Dataset):
    """Micro-batches `start`, `start+1`, … of the mixture, this rank's slice of each, collated.

    Indexable, so DataLoader workers prepare batches ahead; resuming is starting at another `start`.
    """

    def __init__(self, mixture: Mixture, collator: Collator, rank: int, per_device: int, start: int,
                 count: int) -> None:
        self.mixture, self.collator = mixture, collator
        self.rank, self.per_device, self.start, self.count = rank, per_device, start, count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> MicroBatch:
        rows = self.mixture.batch(self.start + i)
        return self.collator(rows[self.rank * self.per_device:(self.rank + 1) * self.per_device])


class SFTTrainer(Trainer):
    """Holds the accelerated model, optimiser, scheduler and data of one run; `train()` runs it."""

    stage = "sft"
    cfg: SFTConfig

    def __init__(self, cfg: SFTConfig, eval_fn: EvalFn | None = None) -> None:
        cfg.validate()
        self.cfg, self.eval_fn = cfg, eval_fn
        self.out = Path(cfg.output)
        with_ce = bool(cfg.w_ce_qry or cfg.w_ce_tgt)
        recipe = find_recipe(cfg.model)
        self.acc = make_accelerator(cfg, find_unused=not with_ce or recipe.blank_image == "never")
        acc = self.acc
        # data first: a bad row must stop the run before the model is loaded
        self.mixture, bad = load_mixture(cfg.data, cfg.data_weights, cfg.media_root, recipe,
                                         cfg.per_device_train_batch_size * acc.num_processes, cfg.seed,
                                         cfg.homogeneous_batches, cfg.check_files, cfg.skip_bad_rows)
        self.ckpt, state = self._find_resume()
        self._start_run(bad)
        if bad:
            acc.print(f"skipped {len(bad)} bad rows at validation (see {self.out / BAD_ROWS})")
        set_seed(cfg.seed)
        self.backbone = load_backbone(cfg.model, device=acc.device, dtype=torch.float32, recipe=recipe)
        hf = self.backbone.model
        hf.train()
        set_trainable(hf, cfg.train_vision, cfg.train_merger, cfg.train_llm)
        self.peft = add_lora(hf, cfg) if cfg.lora else None
        module = SFTModel(hf, self.backbone.gen_id, self.backbone.disc_id, with_ce=with_ce)
        params = trainable_parameters(module)
        self._setup_optimisation(hf, module)
        self.loss_fn = SFTLoss(cfg.logit_scale, cfg.w_gen, cfg.w_disc, cfg.w_ce_qry, cfg.w_ce_tgt)
        self.collator = Collator(self.backbone.processor, recipe, cfg.max_length, cfg.grad_cache_chunk,
                                 cfg.skip_bad_rows)
        self.step = 0
        if self.ckpt is not None:
            self._restore(self.ckpt, state)
        n_train = sum(p.numel() for p in params)
        acc.print(f"trainable parameters: {n_train:,}; processes: {acc.num_processes}; "
                  f"pairs per contrastive batch: {cfg.per_device_train_batch_size * acc.num_processes}; "
                  f"start step: {self.step}")

    # --- the loop -----------------------------------------------------------------------------------
    def train(self) -> Path:
        cfg, acc = self.cfg, self.acc
        remaining = cfg.max_steps - self.step
        accum = cfg.gradient_accumulation_steps
        data = PlanDataset(self.mixture, self.collator, acc.process_index, cfg.per_device_train_batch_size,
                           self.step * accum, remaining * accum)
        loader = self._loader(data)
        bar = tqdm(total=cfg.max_steps, initial=self.step, desc="sft", unit="step",
                   disable=not (cfg.progress and acc.is_main_process))
        while self.step < cfg.max_steps:
            t0 = time.perf_counter()
            lrs = self._lrs()
            terms: dict[str, float] = {}
            tokens = 0
            for _ in range(accum):
                mb = next(loader)
                self._report(mb.skipped)
                tokens += mb.tokens
                with acc.accumulate(self.model):
                    got = self._micro(mb)
                for k, v in got.items():
                    terms[k] = terms.get(k, 0.0) + v / accum
            norm = self._optimiser_step()
            line = {"step": self.step, **lrs, **mean_over_ranks(self.acc, terms), "grad_norm": norm,
                    "tokens": int(self._sum(tokens)), "step_time": time.perf_counter() - t0}
            self._end_step(line, bar, ("loss", "gen", "disc", "ce_qry", "ce_tgt"))
        bar.close()
        self.export_final()
        acc.wait_for_everyone()
        acc.end_training()
        return self.final

    def _micro(self, mb: MicroBatch) -> dict[str, float]:
        dev = self.acc.device
        mb.qry = [{k: v.to(dev) for k, v in c.items()} for c in mb.qry]
        mb.tgt = [{k: v.to(dev) for k, v in c.items()} for c in mb.tgt]
        if self.cfg.grad_cache_chunk:
            return grad_cache_step(self.model, mb, self.loss_fn, self.acc.backward,
                                   lambda: self.acc.no_sync(self.model), dev)
        return full_batch_step(self.model, mb, self.loss_fn, self.acc.backward, dev)

    # --- logs ---------------------------------------------------------------------------------------
    def _sum(self, value: float) -> float:
        t = torch.tensor(float(value), device=self.acc.device, dtype=torch.float64)
        return float(self.acc.reduce(t, reduction="sum")) if self.acc.num_processes > 1 else value

    # --- checkpoints --------------------------------------------------------------------------------
    def export(self, directory: Path) -> None:
        """The base export; with LoRA the adapter too, and the weights merged."""
        hf_state = self._hf_state()
        if self.acc.is_main_process:
            if self.peft is None:
                self._export_full(directory, hf_state)
            else:
                adapter = directory / "adapter"
                self.peft.save_pretrained(adapter, state_dict={f"base_model.model.{k}": v for k, v in hf_state.items()})
                merged_lora(self.cfg.model, adapter, self.backbone).save(directory)
                self._write_card(directory)
        self.acc.wait_for_everyone()


def merged_lora(base: str, adapter: Path, trained: Backbone) -> Backbone:
    """A fresh CPU copy of the base with the saved adapter merged in: the live model keeps its adapters,
    and the merge is exact (no merge/unmerge round trip on the training weights)."""
    from peft import PeftModel

    fresh = load_backbone(base, device="cpu", dtype=torch.float32, recipe=trained.recipe)
    merged = PeftModel.from_pretrained(fresh.model, str(adapter)).merge_and_unload()
    return dataclasses.replace(fresh, model=merged)


def train_sft(cfg: SFTConfig, eval_fn: EvalFn | None = None) -> Path:
    """Run cold-start SFT as configured; returns the final model's directory (`<output>/model`)."""
    return SFTTrainer(cfg, eval_fn).train()
