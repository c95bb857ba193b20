"""`SFTConfig`: every knob of the cold-start SFT stage, with the paper's value as the default.

Defaults follow `shared/spec/ume-r1.md` §6.3 (the reference `train_qwen.py` run); fields marked "our
choice" are where the source is silent. The trainer reads only this object, never globals, so a run is
fully described by `output/sft_config.json`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Self


def knob(default: Any, help: str) -> Any:
    """A config field with its help text (shown by `ume train sft|rl --help`)."""
    return field(default=default, metadata={"help": help})


class JsonConfig:
    """JSON persistence shared by the stage configs (dataclasses): a saved run config is a valid --config,
    and an unknown field is an error rather than silently ignored."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        unknown = sorted(set(data) - {f.name for f in fields(cls)})  # type: ignore[arg-type]
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown field(s) {unknown}")
        return cls(**data)

    @classmethod
    def load(cls, path: str | Path) -> Self:
        return cls.from_dict(json.loads(Path(path).read_text()))


@dataclass
class SFTConfig(JsonConfig):
    """Cold-start SFT of UME-R1 (`ume train sft`); every field is also a CLI option."""

    # --- model and data
    model: str = knob("", "Initial checkpoint (local dir or hub id); the paper starts from Qwen2-VL-{2B,7B}-Instruct.")
    data: list[str] = field(default_factory=list, metadata={"help": (
        "SFT file in the reference format (JSON list, or .jsonl one record per line); repeat for several files.")})
    data_weights: list[float] | None = field(default=None, metadata={"help": (
        "One weight per data file: the file contributes round(rows x weight) draws per epoch (default 1 each; "
        "0 leaves it out).")})
    media_root: str | None = knob(None, "Root that image/video paths are relative to (default: each file's "
                                   "directory; a MiniMMEB build needs its ROOT).")
    output: str = knob("runs/sft", "Run directory: sft_config.json, train_log.jsonl, bad_rows.jsonl, "
                        "checkpoint-N/, final model.")

    # --- optimisation (paper values, ume-r1.md §6.3)
    max_steps: int = knob(5000, "Optimiser steps (paper: 5000, about 3.5 passes over 1.46M pairs).")
    per_device_batch: int = knob(4, "Pairs per process per micro-batch (paper: 4 x 64 GPUs = 256 pairs per "
                                  "contrastive batch).")
    grad_accum: int = knob(4, "Micro-batches per optimiser step (paper: 4). It does NOT enlarge the negative "
                            "pool (each micro-batch is its own contrastive batch); grad_cache_chunk does.")
    learning_rate: float = knob(5e-5, "AdamW peak learning rate (paper: 5e-5).")
    vision_lr: float | None = knob(None, "Peak learning rate of the vision tower when it trains (default: "
                                    "learning_rate; our choice, the paper freezes it).")
    merger_lr: float | None = knob(None, "Peak learning rate of the merger (default: learning_rate).")
    lr_scheduler: str = knob("cosine", "Any transformers.get_scheduler name (paper: cosine).")
    warmup_ratio: float = knob(0.03, "Warm-up steps as a fraction of max_steps, rounded up (paper: 0.03).")
    weight_decay: float = knob(0.0, "AdamW weight decay on matrices (paper: 0).")
    max_grad_norm: float = knob(1.0, "Gradient clipping norm, 0 = off (paper: 1).")
    seed: int = knob(42, "Seed of the data order, LoRA init and RNG.")

    # --- loss (ume-r1.md §6.2)
    logit_scale: float = knob(50.0, "Fixed InfoNCE scale s = 1/temperature (paper: 50, tau = 0.02).")
    w_gen: float = knob(1.0, "Weight of InfoNCE over the <gen_emb> states.")
    w_disc: float = knob(1.0, "Weight of InfoNCE over the <disc_emb> states.")
    w_ce_qry: float = knob(1.0, "Weight of next-token CE over the query sides' assistant turns.")
    w_ce_pos: float = knob(1.0, "Weight of next-token CE over the target sides' assistant turns.")
    disc_only: bool = knob(False, "DUME baseline: only InfoNCE(disc) (sets the weights to gen 0, disc 1, CE 0).")
    max_length: int = knob(12288, "Longest prompt + response in tokens; longer rows are bad rows (paper: 12288).")

    # --- what trains (paper: vision frozen, merger + LLM trained, no LoRA)
    train_vision: bool = knob(False, "Train the vision tower (paper: frozen).")
    train_merger: bool = knob(True, "Train the merger, the vision-to-LLM projector (paper: trained).")
    train_llm: bool = knob(True, "Train the language model and its head (paper: trained).")
    lora: bool = knob(False, "peft LoRA on the trained towers' linear layers instead of full weights; the merger "
                       "stays fully trained. Adapters are saved and merged into the exported weights.")
    lora_r: int = knob(16, "LoRA rank (our choice; the paper uses no LoRA).")
    lora_alpha: int = knob(32, "LoRA alpha.")
    lora_dropout: float = knob(0.05, "LoRA dropout.")

    # --- engine
    grad_cache_chunk: int | None = knob(None, "GradCache: forward each micro-batch in chunks of this many pairs; "
                                         "same gradients, activation memory of one chunk (not in the paper).")
    gradient_checkpointing: bool = knob(False, "Recompute activations in backward (use_reentrant=False); the "
                                         "reference enables it on GPU.")
    bf16: str = knob("auto", "bf16 autocast: auto (on for CUDA, fp32 on CPU), true or false.")
    device: str | None = knob(None, "cpu to force the CPU; default: CUDA when present.")
    deepspeed: str | None = knob(None, "DeepSpeed JSON (configs/ds_zero2.json, configs/ds_zero3.json); batch, "
                                  "accumulation and clipping 'auto' fields come from this config.")
    num_workers: int = knob(2, "DataLoader processes that decode media and run the processor ahead of the model.")

    # --- data policy (our choices, ume-r1.md §6.3)
    homogeneous_batches: bool = knob(True, "Every global micro-batch from one source, sources drawn in "
                                      "proportion to size x weight, rows shuffled within a source.")
    skip_bad_rows: bool = knob(False, "Skip rows that fail validation or loading and list them in "
                                "bad_rows.jsonl, instead of stopping with the file, row and field.")
    check_files: bool = knob(True, "Check before training that every media path exists.")

    # --- checkpoints, logs, eval
    save_every: int = knob(500, "Write checkpoint-N (HF model + ume_recipe.json + exact-resume state) every N "
                            "steps; 0 = only at the end.")
    eval_every: int = knob(0, "Call the eval callback every N steps; 0 = never.")
    resume: str | None = knob(None, "Checkpoint directory to resume from exactly, or 'latest' (the highest "
                               "checkpoint-N under output; a fresh start when there is none).")
    progress: bool = knob(True, "Show a progress bar on the main process.")

    def __post_init__(self) -> None:
        if self.disc_only:
            self.w_gen, self.w_disc, self.w_ce_qry, self.w_ce_pos = 0.0, 1.0, 0.0, 0.0

    def validate(self) -> None:
        """Reject impossible settings before any model or data is loaded."""
        if not self.model:
            raise ValueError("model: give the initial checkpoint (local dir or hub id)")
        if not self.data:
            raise ValueError("data: give at least one SFT file")
        if self.data_weights is not None and len(self.data_weights) != len(self.data):
            raise ValueError(f"data_weights: {len(self.data_weights)} weights for {len(self.data)} files")
        if self.data_weights is not None and any(w < 0 for w in self.data_weights):
            raise ValueError("data_weights must be >= 0")
        for name in ("max_steps", "per_device_batch", "grad_accum", "max_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        for name in ("learning_rate", "vision_lr", "merger_lr"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be > 0, got {value}")
        if self.grad_cache_chunk is not None and self.grad_cache_chunk < 1:
            raise ValueError("grad_cache_chunk must be >= 1")
        if self.grad_cache_chunk is not None and self.deepspeed:
            raise ValueError("grad_cache_chunk is not supported with DeepSpeed (several backward passes per "
                             "micro-batch); use DDP + GradCache, or DeepSpeed without it")
        if self.lora and not (self.train_llm or self.train_vision):
            raise ValueError("lora needs train_llm or train_vision: the adapters go on the trained towers")
        if not (self.train_llm or self.train_vision or self.train_merger):
            raise ValueError("nothing to train: enable train_llm, train_merger or train_vision")
        if self.bf16 not in ("auto", "true", "false"):
            raise ValueError(f"bf16 must be auto, true or false, got {self.bf16!r}")
        if max(self.w_gen, self.w_disc, self.w_ce_qry, self.w_ce_pos) <= 0:
            raise ValueError("all loss weights are 0")
