"""`RLConfig`: every knob of the RL stage (GRPO with the embedding reward), paper values as defaults.

Defaults follow `shared/spec/ume-r1.md` §7.3 (TRL `GRPOConfig` names where they exist); "our choice"
marks where the source is silent. The engine knobs (device, bf16, deepspeed, grad_accum,
max_grad_norm, per_device_batch) share their names and meaning with `SFTConfig`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ume.train.config import JsonConfig, knob


@dataclass
class RLConfig(JsonConfig):
    """RL stage of UME-R1 (`ume train rl`), started from an SFT checkpoint."""

    model: str = knob("", "SFT checkpoint (local dir or hub id); also the frozen KL reference when beta > 0.")
    data: list[str] = field(default_factory=list, metadata={"help": "RL pair files (reference RL JSON format)."})
    media_root: str | None = knob(None, "Root of the media paths (default: each file's directory; a MiniMMEB "
                                   "build needs its ROOT).")
    output: str = knob("runs/rl", "Run directory: rl_config.json, train_log.jsonl, checkpoint-N/, final model.")

    max_steps: int = knob(344, "Optimiser steps (paper: 1 epoch of ~11K pairs x 8 / 256 = ~344).")
    per_device_batch: int = knob(2, "Pairs per process per micro-step; each pair is rolled out G times per side.")
    grad_accum: int = knob(1, "Micro-steps per optimiser step (rollouts of each micro-step form one reward group "
                            "across all processes).")
    learning_rate: float = knob(1e-6, "AdamW learning rate (paper: 1e-6).")
    lr_scheduler: str = knob("constant", "transformers scheduler name (the reference uses TRL's default).")
    weight_decay: float = knob(0.0, "AdamW weight decay.")
    max_grad_norm: float = knob(1.0, "Gradient clipping norm, 0 = off.")
    seed: int = knob(42, "Seed of the pair order and of every rollout (data_seed 42 in the paper).")

    num_generations: int = knob(8, "G: completions per prompt, for the query and for the target side (paper: 8).")
    temperature: float = knob(1.0, "Rollout temperature (paper: 1.0).")
    top_p: float = knob(1.0, "Rollout nucleus sampling.")
    max_completion_length: int = knob(2048, "Rollout budget in tokens, and the constant loss normaliser "
                                       "(paper: 2048).")
    beta: float = knob(0.04, "k3 KL weight to the frozen reference (paper: 0.04); 0 loads no reference model.")
    epsilon: float = knob(0.2, "Lower clip epsilon (paper: 0.2).")
    epsilon_high: float = knob(0.28, "Upper clip epsilon (paper: 0.28, DAPO clip-higher).")
    num_iterations: int = knob(1, "mu: optimiser steps per generated batch (paper: 1, which makes the clip inert: "
                                "pi_old = pi, ratio 1). With mu > 1 the old log-probs are kept and the clip acts.")
    loss_normaliser: str = knob("constant", "constant (reference: sum / max_completion_length), token (DAPO) or "
                                 "sequence (GRPO).")
    rollout_batch_size: int = knob(8, "Sequences decoded at once by the rollouts.")
    reward_funcs: list[str] = field(default_factory=lambda: ["format", "embedding"], metadata={
        "help": "Rewards summed per rollout (names in ume.train.rewards.REWARDS): format (the reference's "
                "re.search), format_strict (anchored at the completion's start), embedding (rank x gap)."})
    reward_weights: list[float] | None = field(default=None, metadata={
        "help": "One weight per reward (default: all 1, the paper's R = format + rank x gap)."})

    train_vision: bool = knob(True, "Train the vision tower (paper RL: trainable, unlike SFT).")
    train_merger: bool = knob(True, "Train the merger.")
    train_llm: bool = knob(True, "Train the language model.")
    gradient_checkpointing: bool = knob(False, "Recompute activations in backward.")
    bf16: str = knob("auto", "bf16 autocast: auto (CUDA only), true or false.")
    device: str | None = knob(None, "cpu to force the CPU; default: CUDA when present.")
    deepspeed: str | None = knob(None, "DeepSpeed JSON (configs/ds_zero2.json, configs/ds_zero3.json).")

    skip_bad_rows: bool = knob(False, "Skip invalid rows (listed in bad_rows.jsonl) instead of stopping.")
    check_files: bool = knob(True, "Check before training that every media path exists.")
    save_every: int = knob(50, "Checkpoint every N steps (paper: 50); 0 = only at the end.")
    eval_every: int = knob(0, "Call the eval callback every N steps; 0 = never.")
    resume: str | None = knob(None, "Checkpoint to resume from exactly, or 'latest'.")
    progress: bool = knob(True, "Progress bar on the main process.")

    def validate(self, world: int = 1) -> None:
        if not self.model:
            raise ValueError("model: give the SFT checkpoint to start from")
        if not self.data:
            raise ValueError("data: give at least one RL pair file")
        if self.num_generations < 2:
            raise ValueError("num_generations must be >= 2 (group-normalised advantages need a group)")
        if self.per_device_batch * world < 2:
            raise ValueError("the reward needs >= 2 distinct pairs per reward group: raise per_device_batch "
                             "or the number of processes")
        if self.loss_normaliser not in ("constant", "token", "sequence"):
            raise ValueError(f"loss_normaliser {self.loss_normaliser!r}: choose constant, token or sequence")
        from ume.train.rewards import REWARDS

        unknown = [n for n in self.reward_funcs if n not in REWARDS]
        if unknown or not self.reward_funcs:
            raise ValueError(f"reward_funcs {self.reward_funcs}: choose from {sorted(REWARDS)}")
        if self.reward_weights is not None and len(self.reward_weights) != len(self.reward_funcs):
            raise ValueError(f"reward_weights: {len(self.reward_weights)} weights for {len(self.reward_funcs)} "
                             "reward_funcs")
        if self.num_iterations < 1:
            raise ValueError("num_iterations must be >= 1")
        if self.save_every % self.num_iterations:
            raise ValueError("save_every must be a multiple of num_iterations (resume restarts at a generation)")

    @property
    def weights(self) -> list[float]:
        return [1.0] * len(self.reward_funcs) if self.reward_weights is None else list(self.reward_weights)
