"""`RLConfig`: the knobs of the RL stage (GRPO with the embedding reward) on top of `EngineConfig`.

Defaults follow the UME-R1 RL run (arXiv 2511.00405; github.com/XMUDeepLIT/UME-R1
`src/r1-train/src/open_r1/trainer/grpo_config.py`), with TRL `GRPOConfig` names and values where they exist
(`num_generations`, `beta`, `epsilon`, `loss_type`, ...); "our choice" marks where the source is silent. The
engine fields whose paper value differs from SFT's are redeclared with the RL default. One difference from
TRL: `per_device_train_batch_size` counts pairs here (each rolled out `num_generations` times per side),
where TRL counts completions.
"""

from __future__ import annotations

from typing import Any, ClassVar

from ume.train.engine_config import EngineConfig, PairDataConfig, Renamed, knob, list_knob, stage_config

NORMALISERS = {"dr_grpo": "constant", "bnpo": "token", "grpo": "sequence"}
"""TRL's `loss_type` -> `ume.train.grpo_loss` normaliser; the formulas are TRL's: dr_grpo sums over tokens and
divides by rollouts x max_completion_length, bnpo divides by the batch's completion tokens, grpo takes each
rollout's token mean and averages over rollouts."""


@stage_config
class RLConfig(PairDataConfig):
    """RL stage of UME-R1 (`ume train rl`), started from an SFT checkpoint."""

    stage: ClassVar[str] = "rl"
    RENAMED: ClassVar[dict[str, Renamed]] = {
        **EngineConfig.RENAMED,
        "loss_normaliser": Renamed("loss_type", {old: new for new, old in NORMALISERS.items()}),
    }

    # --- engine fields with the paper's RL values
    max_steps: int = knob(344, "Optimiser steps (paper: 1 epoch of ~11K pairs x 8 / 256 = ~344).")
    per_device_train_batch_size: int = knob(2, "Pairs per process per micro-step; each pair is rolled out "
                                            "num_generations times per side (TRL counts completions here).")
    gradient_accumulation_steps: int = knob(1, "Micro-steps per optimiser step (rollouts of each micro-step form "
                                            "one reward group across all processes).")
    learning_rate: float = knob(1e-6, "AdamW learning rate of the LLM (paper: 1e-6).")
    lr_scheduler: str = knob("constant", "transformers scheduler name (the reference uses TRL's default).")
    warmup_ratio: float = knob(0.0, "Warm-up steps as a fraction of max_steps, rounded up (the reference: none).")
    train_vision: bool = knob(True, "Train the vision tower (paper RL: trainable, unlike SFT).")
    save_steps: int = knob(50, "Checkpoint every N steps (paper: 50); 0 = only at the end.")

    # --- GRPO (the reference grpo_config.py / grpo_trainer.py)
    num_generations: int = knob(8, "G: completions per prompt, for the query and for the target side (paper: 8).",
                                fixed=True)
    temperature: float = knob(1.0, "Rollout temperature (paper: 1.0).", fixed=True)
    top_p: float = knob(1.0, "Rollout nucleus sampling.", fixed=True)
    max_completion_length: int = knob(2048, "Rollout budget in tokens, and dr_grpo's loss normaliser (paper: 2048).",
                                      fixed=True)
    beta: float = knob(0.04, "k3 KL weight to the frozen reference, a copy of the starting model (paper: 0.04); "
                       "0 loads no reference model.", fixed=True)
    epsilon: float = knob(0.2, "Lower clip epsilon (paper: 0.2).", fixed=True)
    epsilon_high: float = knob(0.28, "Upper clip epsilon (paper: 0.28, DAPO clip-higher).", fixed=True)
    num_iterations: int = knob(1, "mu: optimiser steps per generated batch (paper: 1, which makes the clip inert: "
                               "pi_old = pi, ratio 1). With mu > 1 the old log-probs are kept and the clip acts.",
                               fixed=True)
    loss_type: str = knob("dr_grpo", "TRL's loss_type: dr_grpo (the reference: token sum / max_completion_length), "
                          "bnpo (token mean over the micro-batch) or grpo (mean of each rollout's token mean).",
                          fixed=True)
    rollout_batch_size: int = knob(8, "Sequences decoded at once by the rollouts.")
    reward_funcs: list[str] = list_knob(lambda: ["format", "embedding"], "Rewards summed per rollout (names in "
                                        "ume.train.rewards.REWARDS): format (the reference's re.search), "
                                        "format_strict (anchored at the completion's start), embedding (rank x gap).",
                                        fixed=True)
    reward_weights: list[float] | None = knob(None, "One weight per reward (default: all 1, the paper's R = format + "
                                              "rank x gap).", fixed=True)

    def validate(self, world: int = 1) -> None:
        super().validate(world)
        if self.num_generations < 2:
            raise ValueError("num_generations must be >= 2 (group-normalised advantages need a group)")
        if self.per_device_train_batch_size * world < 2:
            raise ValueError("the reward needs >= 2 distinct pairs per reward group: raise "
                             "per_device_train_batch_size or the number of processes")
        if self.loss_type not in NORMALISERS:
            raise ValueError(f"loss_type {self.loss_type!r}: choose {', '.join(NORMALISERS)}")
        from ume.train.rewards import REWARDS

        unknown = [n for n in self.reward_funcs if n not in REWARDS]
        if unknown or not self.reward_funcs:
            raise ValueError(f"reward_funcs {self.reward_funcs}: choose from {sorted(REWARDS)}")
        if self.reward_weights is not None and len(self.reward_weights) != len(self.reward_funcs):
            raise ValueError(f"reward_weights: {len(self.reward_weights)} weights for {len(self.reward_funcs)} "
                             "reward_funcs")
        if self.num_iterations < 1:
            raise ValueError("num_iterations must be >= 1")
        if self.save_steps % self.num_iterations:
            raise ValueError("save_steps must be a multiple of num_iterations (resume restarts at a generation)")

    def run_identity(self, world: int) -> dict[str, Any]:
        """`EngineConfig.run_identity` plus the process count: rollouts replace bad pairs per rank."""
        return {**super().run_identity(world), "world": world}

    @property
    def normaliser(self) -> str:
        """`loss_type` as `ume.train.grpo_loss.policy_loss` names it."""
        return NORMALISERS[self.loss_type]

    @property
    def weights(self) -> list[float]:
        return [1.0] * len(self.reward_funcs) if self.reward_weights is None else list(self.reward_weights)
