"""`PretrainConfig`: the knobs of the perception pre-training stage (`ume train pretrain`) on top of
`EngineConfig`; the engine fields whose default differs from SFT's are redeclared.

Kept apart from the trainer so that the CLI can build its options without importing torch models.
"""

from __future__ import annotations

from typing import ClassVar

from ume.synth.describe import DEFAULT_MIX, KINDS
from ume.train.engine_config import EngineConfig, knob, list_knob, stage_config


@stage_config
class PretrainConfig(EngineConfig):
    """Perception pre-training (`ume train pretrain`); every field is also a CLI option."""

    stage: ClassVar[str] = "pretrain"

    # --- engine fields with this stage's values
    max_steps: int = knob(2000, "Optimiser steps.")
    per_device_train_batch_size: int = knob(16, "Items per process per micro-batch.")
    gradient_accumulation_steps: int = knob(1, "Micro-batches per optimiser step.")
    learning_rate: float = knob(1e-3, "AdamW peak learning rate of the LLM.")
    seed: int = knob(0, "Seed of the item stream and the RNG.")
    train_vision: bool = knob(True, "Train the vision tower.")

    # --- the items
    mix: list[float] = list_knob(lambda: list(DEFAULT_MIX), "Weights of the item kinds scene, crop, video, page "
                                 "(ume.synth.describe.KINDS).", fixed=True)
    min_pixels: int | None = knob(None, "Image/frame floor in pixels written into the exported recipe (and used "
                                  "here): a larger floor upscales the 112 px scenes and 84 px frames into "
                                  "more visual tokens. Default: the model's recipe.", fixed=True)
    curriculum: int = knob(0, "Steps over which the items grow from crops alone to the full mix: at step s, "
                           "t = s / curriculum, the mix is scaled by t, crops take the remaining 1 - t and scenes "
                           "hold at most 1 + 8t objects (0 = the full mix from the start). Measured: from random "
                           "init the full mix stays image-blind for 600+ steps, crops alone are seen within 200.",
                           fixed=True)
    max_length: int = knob(4096, "Longest prompt + description in tokens.")
    num_workers: int = knob(1, "DataLoader processes that render items and run the processor ahead of the model.")
    eval_items: int = knob(48, "Held-out items per periodic perception eval (eval_steps).")

    def validate(self, world: int = 1) -> None:
        super().validate(world)
        if len(self.mix) != len(KINDS) or any(w < 0 for w in self.mix) or sum(self.mix) <= 0:
            raise ValueError(f"mix: {len(KINDS)} non-negative weights ({', '.join(KINDS)}) with a positive sum")
        if self.max_length < 1:
            raise ValueError("max_length must be >= 1")
        if self.curriculum < 0:
            raise ValueError("curriculum must be >= 0")
