"""A sentence-transformers-shaped `encode` over `Encoder.encode`, for code written against that API.

    from ume.integrations import SentenceTransformerLike
    model = SentenceTransformerLike(ume.load("models/ume-demo-rl"))
    emb = model.encode(["a red circle", "a blue square"], batch_size=16, convert_to_tensor=True)
    model.similarity(emb, emb)

Same arguments as `SentenceTransformer.encode` where they mean something here: `batch_size`,
`show_progress_bar`, `convert_to_numpy`, `convert_to_tensor`, `normalize_embeddings`, `device` (ignored: the
encoder's device). One string in gives one vector out ([d]); a list gives [n, d]. ume vectors are always unit
length, so `normalize_embeddings=False` returns them as they are (normalised). Items may be ume `Item`s or
dicts too; a failed item raises `ume.InputError` (sentence-transformers has no missing vectors).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


class SentenceTransformerLike:
    def __init__(self, encoder: Any, mode: str = "disc", max_new_tokens: int | None = None) -> None:
        self.encoder, self.mode, self.max_new_tokens = encoder, mode, max_new_tokens

    def get_sentence_embedding_dimension(self) -> int:
        return self.encoder.dim

    def encode(self, sentences: str | Any | Sequence[Any], batch_size: int = 32, show_progress_bar: bool | None = None,
               convert_to_numpy: bool = True, convert_to_tensor: bool = False, normalize_embeddings: bool = True,
               device: str | None = None, mode: str | None = None, **kwargs: Any) -> Any:
        single = isinstance(sentences, (str, dict)) or not isinstance(sentences, Sequence)
        items = [sentences] if single else list(sentences)
        mode = mode or self.mode
        kw: dict[str, Any] = {"mode": mode, "batch_size": batch_size, "show_progress": show_progress_bar,
                              "on_error": "raise", **kwargs}
        if mode != "disc" and "max_new_tokens" not in kw:
            kw["max_new_tokens"] = self.max_new_tokens
        emb = self.encoder.encode(items, **kw).embeddings if items else np.zeros((0, self.encoder.dim), np.float32)
        if normalize_embeddings:  # already unit length; kept for fp safety after any caller-side change
            emb = emb / np.maximum(np.linalg.norm(emb, axis=-1, keepdims=True), 1e-12)
        if single:
            emb = emb[0]
        if convert_to_tensor:
            import torch

            return torch.from_numpy(np.ascontiguousarray(emb))
        if not convert_to_numpy:
            import torch

            return list(torch.from_numpy(np.ascontiguousarray(np.atleast_2d(emb))))
        return emb

    @staticmethod
    def similarity(a: Any, b: Any) -> Any:
        """Cosine similarity matrix (inputs are unit vectors), as a torch tensor like sentence-transformers."""
        import torch

        a, b = torch.as_tensor(np.atleast_2d(np.asarray(a))), torch.as_tensor(np.atleast_2d(np.asarray(b)))
        return a @ b.T
