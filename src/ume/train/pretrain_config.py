"""`PretrainConfig`: every knob of the perception pre-training stage (`ume train pretrain`).

Kept apart from the trainer so that the CLI can build its options without importing torch models.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ume.synth.describe import DEFAULT_MIX, KINDS
from ume.train.config import JsonConfig, knob


@dataclass
class PretrainConfig(JsonConfig):
    """Perception pre-training (`ume train pretrain`); every field is also a CLI option."""

    model: str = knob("", "Initial checkpoint (a base VLM; the demo's is `ume tiny build` output).")
    output: str = knob("runs/pretrain", "Run directory: pretrain_config.json, train_log.jsonl, checkpoint-N/, "
                        "final model.")
    mix: list[float] = field(default_factory=lambda: list(DEFAULT_MIX), metadata={"help": (
        "Weights of the item kinds scene, crop, video, page (ume.synth.describe.KINDS).")})
    min_pixels: int | None = knob(None, "Image/frame floor in pixels written into the exported recipe (and used "
                                  "here): a larger floor upscales the 112 px scenes and 84 px frames into "
                                  "more visual tokens. Default: the model's recipe.")

    curriculum: int = knob(0, "Steps over which the items grow from crops alone to the full mix: at step s, "
                           "t = s / curriculum, the mix is scaled by t, crops take the remaining 1 - t and scenes "
                           "hold at most 1 + 8t objects (0 = the full mix from the start). Measured: from random "
                           "init the full mix stays image-blind for 600+ steps, crops alone are seen within 200.")
    max_steps: int = knob(2000, "Optimiser steps.")
    per_device_batch: int = knob(16, "Items per process per micro-batch.")
    grad_accum: int = knob(1, "Micro-batches per optimiser step.")
    learning_rate: float = knob(1e-3, "AdamW peak learning rate of the LLM.")
    vision_lr: float | None = knob(None, "Peak learning rate of the vision tower (default: learning_rate).")
    merger_lr: float | None = knob(None, "Peak learning rate of the merger (default: learning_rate).")
    lr_scheduler: str = knob("cosine", "Any transformers.get_scheduler name.")
    warmup_ratio: float = knob(0.03, "Warm-up steps as a fraction of max_steps, rounded up.")
    weight_decay: float = knob(0.0, "AdamW weight decay on matrices.")
    max_grad_norm: float = knob(1.0, "Gradient clipping norm, 0 = off.")
    seed: int = knob(0, "Seed of the item stream and the RNG.")
    max_length: int = knob(4096, "Longest prompt + description in tokens.")

    train_vision: bool = knob(True, "Train the vision tower.")
    train_merger: bool = knob(True, "Train the merger.")
    train_llm: bool = knob(True, "Train the language model and its head.")

    gradient_checkpointing: bool = knob(False, "Recompute activations in backward (use_reentrant=False).")
    bf16: str = knob("auto", "bf16 autocast: auto (on for CUDA, fp32 on CPU), true or false.")
    device: str | None = knob(None, "cpu to force the CPU; default: CUDA when present.")
    deepspeed: str | None = knob(None, "DeepSpeed JSON (as for SFT).")
    num_workers: int = knob(1, "DataLoader processes that render items and run the processor ahead of the model.")

    save_every: int = knob(500, "Write checkpoint-N every N steps; 0 = only at the end.")
    eval_every: int = knob(0, "Perception eval (held-out renders, greedy) every N steps; 0 = never.")
    eval_items: int = knob(48, "Held-out items per periodic perception eval.")
    resume: str | None = knob(None, "Checkpoint directory to resume from exactly, or 'latest'.")
    progress: bool = knob(True, "Show a progress bar on the main process.")

    def validate(self) -> None:
        if not self.model:
            raise ValueError("model: give the initial checkpoint")
        if len(self.mix) != len(KINDS) or any(w < 0 for w in self.mix) or sum(self.mix) <= 0:
            raise ValueError(f"mix: {len(KINDS)} non-negative weights ({', '.join(KINDS)}) with a positive sum")
        for name in ("max_steps", "per_device_batch", "grad_accum", "max_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        for name in ("learning_rate", "vision_lr", "merger_lr"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be > 0, got {value}")
        if self.curriculum < 0:
            raise ValueError("curriculum must be >= 0")
        if not (self.train_llm or self.train_vision or self.train_merger):
            raise ValueError("nothing to train: enable train_llm, train_merger or train_vision")
        if self.bf16 not in ("auto", "true", "false"):
            raise ValueError(f"bf16 must be auto, true or false, got {self.bf16!r}")
