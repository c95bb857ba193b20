"""`SFTConfig`: the knobs of the cold-start SFT stage on top of `EngineConfig`, paper values as defaults.

Defaults follow the UME-R1 SFT run (arXiv 2511.00405; the reference's
`src/sft-train/qwenvl/train/train_qwen.py`); fields marked "our
choice" are where the source is silent. `EngineConfig`'s defaults are already SFT's, so this class declares
only SFT's own fields. The trainer reads only this object, never globals, so a run is fully described by
`output/sft_config.json`.
"""

from __future__ import annotations

from typing import ClassVar

from ume.train.engine_config import EngineConfig, PairDataConfig, Renamed, knob, stage_config


@stage_config
class SFTConfig(PairDataConfig):
    """Cold-start SFT of UME-R1 (`ume train sft`); every field is also a CLI option."""

    stage: ClassVar[str] = "sft"
    RENAMED: ClassVar[dict[str, Renamed]] = {**EngineConfig.RENAMED, "w_ce_pos": Renamed("w_ce_tgt")}

    data_weights: list[float] | None = knob(None, "One weight per data file: the file contributes round(rows x "
                                            "weight) draws per epoch (default 1 each; 0 leaves it out).", fixed=True)
    homogeneous_batches: bool = knob(True, "Every global micro-batch from one source, sources drawn in proportion "
                                     "to size x weight, rows shuffled within a source (our choice).", fixed=True)
    num_workers: int = knob(2, "DataLoader processes that decode media and run the processor ahead of the model.")
    max_length: int = knob(12288, "Longest prompt + response in tokens; longer rows are bad rows (paper: 12288).")

    # --- loss (the UME-R1 paper, SFT objective)
    logit_scale: float = knob(50.0, "Fixed InfoNCE scale s = 1/temperature (paper: 50, tau = 0.02).", fixed=True)
    w_gen: float = knob(1.0, "Weight of InfoNCE over the <gen_emb> states.", fixed=True)
    w_disc: float = knob(1.0, "Weight of InfoNCE over the <disc_emb> states.", fixed=True)
    w_ce_qry: float = knob(1.0, "Weight of next-token CE over the query sides' assistant turns.", fixed=True)
    w_ce_tgt: float = knob(1.0, "Weight of next-token CE over the target sides' assistant turns.", fixed=True)
    disc_only: bool = knob(False, "DUME baseline: only InfoNCE(disc) (sets the weights to gen 0, disc 1, CE 0).")

    # --- LoRA (paper: none)
    lora: bool = knob(False, "peft LoRA on the trained towers' linear layers instead of full weights; the merger "
                      "stays fully trained. Adapters are saved and merged into the exported weights.", fixed=True)
    lora_r: int = knob(16, "LoRA rank (our choice; the paper uses no LoRA).", fixed=True)
    lora_alpha: int = knob(32, "LoRA alpha.", fixed=True)
    lora_dropout: float = knob(0.05, "LoRA dropout.", fixed=True)

    grad_cache_chunk: int | None = knob(None, "GradCache: forward each micro-batch in chunks of this many pairs; "
                                        "same gradients, activation memory of one chunk (not in the paper).")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.disc_only:
            self.w_gen, self.w_disc, self.w_ce_qry, self.w_ce_tgt = 0.0, 1.0, 0.0, 0.0

    def validate(self, world: int = 1) -> None:
        super().validate(world)
        if self.data_weights is not None and len(self.data_weights) != len(self.data):
            raise ValueError(f"data_weights: {len(self.data_weights)} weights for {len(self.data)} files")
        if self.data_weights is not None and any(w < 0 for w in self.data_weights):
            raise ValueError("data_weights must be >= 0")
        if self.max_length < 1:
            raise ValueError("max_length must be >= 1")
        if self.grad_cache_chunk is not None and self.grad_cache_chunk < 1:
            raise ValueError("grad_cache_chunk must be >= 1")
        if self.grad_cache_chunk is not None and self.deepspeed:
            raise ValueError("grad_cache_chunk is not supported with DeepSpeed (several backward passes per "
                             "micro-batch); use DDP + GradCache, or DeepSpeed without it")
        if self.lora and not (self.train_llm or self.train_vision):
            raise ValueError("lora needs train_llm or train_vision: the adapters go on the trained towers")
        if max(self.w_gen, self.w_disc, self.w_ce_qry, self.w_ce_tgt) <= 0:
            raise ValueError("all loss weights are 0")
