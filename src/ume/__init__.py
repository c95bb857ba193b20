"""ume: reasoning-driven generative multimodal embeddings (UME-R1), disc and gen modes.

Every public name is imported on first use, so `import ume` (and every `ume --help`) costs no torch,
transformers, faiss or mteb import until something needs them.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {  # public name -> the module that defines it
    "Encoder": "ume.encoder", "EncodeResult": "ume.encoder", "ItemError": "ume.encoder", "load": "ume.encoder",
    "InputError": "ume.inputs", "InputLimits": "ume.inputs", "Item": "ume.inputs",
    "Recipe": "ume.recipe",
    "Index": "ume.index",
    "open_embeddings": "ume.embed.chunks",
    "mteb_model": "ume.integrations",
}
__all__ = ["EncodeResult", "Encoder", "Index", "InputError", "InputLimits", "Item", "ItemError", "Recipe", "load",
           "mteb_model", "open_embeddings"]

if TYPE_CHECKING:
    from ume.embed.chunks import open_embeddings
    from ume.encoder import Encoder, EncodeResult, ItemError, load
    from ume.index import Index
    from ume.inputs import InputError, InputLimits, Item
    from ume.integrations import mteb_model
    from ume.recipe import Recipe


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ume' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
