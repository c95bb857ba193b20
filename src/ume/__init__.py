"""ume: reasoning-driven generative multimodal embeddings (UME-R1), disc and gen modes."""

from ume.encoder import Encoder, EncodeResult, ItemError, load
from ume.inputs import InputError, InputLimits, Item
from ume.recipe import Recipe

__all__ = ["EncodeResult", "Encoder", "InputError", "InputLimits", "Item", "ItemError", "Recipe", "load"]
__version__ = "0.1.0"


def __getattr__(name: str):  # lazy: `import ume` must not import faiss / mteb
    if name == "Index":
        from ume.index import Index

        return Index
    if name == "mteb_model":
        from ume.integrations import mteb_model

        return mteb_model
    raise AttributeError(f"module 'ume' has no attribute {name!r}")
