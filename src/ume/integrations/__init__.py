"""Adapters for the clients people already use: mteb / MIEB and sentence-transformers-shaped code.

Both import their heavy dependencies on first use, so `import ume.integrations` stays cheap.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SentenceTransformerLike", "mteb_model"]


def mteb_model(model: Any, mode: str = "disc", **kwargs: Any) -> Any:
    """A ume checkpoint as an mteb encoder (`pip install "ume[mteb]"`); see `ume.integrations.mteb`."""
    from ume.integrations.mteb import mteb_model as make

    return make(model, mode=mode, **kwargs)


def __getattr__(name: str) -> Any:
    if name == "SentenceTransformerLike":
        from ume.integrations.sentence_transformers import SentenceTransformerLike

        return SentenceTransformerLike
    raise AttributeError(f"module 'ume.integrations' has no attribute {name!r}")
