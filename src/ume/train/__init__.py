"""Training: cold-start SFT (`ume train sft`). Never imports `ume.evaluate` (and vice versa)."""

from ume.train.config import SFTConfig

__all__ = ["SFTConfig"]
