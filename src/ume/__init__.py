"""ume: reasoning-driven generative multimodal embeddings (UME-R1), disc and gen modes."""

from ume.encoder import Encoder, EncodeResult, ItemError, load
from ume.inputs import InputError, InputLimits, Item
from ume.recipe import Recipe

__all__ = ["EncodeResult", "Encoder", "InputError", "InputLimits", "Item", "ItemError", "Recipe", "load"]
__version__ = "0.1.0"
