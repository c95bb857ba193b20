"""Training: cold-start SFT (`ume train sft`) and RL (`ume train rl`) on a shared accelerate engine.
Never imports `ume.evaluate` (and vice versa)."""

from ume.train.config import SFTConfig
from ume.train.rl_config import RLConfig

__all__ = ["RLConfig", "SFTConfig"]
