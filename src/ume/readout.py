"""The readout: which hidden state becomes an embedding. One place, used by every caller.

The embedding is the **last decoder layer's output after the final norm** (what transformers 4.49's
`hidden_states[-1]` was, and what the reference read) at the last occurrence of the embedding token
inside a span: the prompt for `<disc_emb>`, the completion for `<gen_emb>` (the instruction text of the
prompt itself contains one `<gen_emb>`, so the span matters).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F

Kind = Literal["disc", "gen"]


@dataclass(frozen=True)
class EmbeddingTokens:
    """The token ids read for each kind of embedding (the recipe's `disc_token` / `gen_token`)."""

    disc: int
    gen: int


def last_hidden(model: Any, **inputs: Any) -> Any:
    """Run the decoder stack without the LM head; `.last_hidden_state` is post-final-norm.

    Skipping the LM head saves the vocabulary projection over every position; the returned object also
    carries `.cache` when `use_cache=True` is passed.
    """
    return model.model(**inputs)


def last_positions(input_ids: torch.Tensor, token_id: int, start: torch.Tensor | int = 0,
                   end: torch.Tensor | int | None = None) -> torch.Tensor:
    """Per row, the last index `p` with `start <= p < end` and `input_ids[p] == token_id`, else -1."""
    n, length = input_ids.shape
    idx = torch.arange(length, device=input_ids.device).expand(n, length)
    start_t = torch.as_tensor(start, device=input_ids.device).reshape(-1, 1)
    end_t = torch.as_tensor(length if end is None else end, device=input_ids.device).reshape(-1, 1)
    hit = (input_ids == token_id) & (idx >= start_t) & (idx < end_t)
    return torch.where(hit, idx, torch.full_like(idx, -1)).amax(dim=1)


def embedding_positions(input_ids: torch.Tensor, kind: Kind, tokens: EmbeddingTokens,
                        prompt_len: torch.Tensor | int | None = None) -> torch.Tensor:
    """The readout rule, decided here only: per row, the last `kind` token inside its span, else -1.

    disc reads in the prompt (positions before `prompt_len`), gen in the completion (from `prompt_len`):
    the prompt's instruction text holds a `<gen_emb>` of its own. `prompt_len=None`: the rows are all prompt
    (disc) or all completion (gen; e.g. the one token a decoding step just fed)."""
    if kind == "disc":
        return last_positions(input_ids, tokens.disc, 0, prompt_len)
    if kind == "gen":
        return last_positions(input_ids, tokens.gen, 0 if prompt_len is None else prompt_len)
    raise ValueError(f"kind must be 'disc' or 'gen', got {kind!r}")


def read_embedding(hidden: torch.Tensor, input_ids: torch.Tensor, kind: Kind, tokens: EmbeddingTokens,
                   prompt_len: torch.Tensor | int | None = None) -> torch.Tensor:
    """The `kind` embedding of each row of `hidden` [B, L, H] (last-layer states over `input_ids` [B, L]):
    what inference, evaluation, SFT and RL all read. Raises if a row has no such token in its span."""
    return read_vectors(hidden, embedding_positions(input_ids, kind, tokens, prompt_len))


def read_vectors(hidden: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """The L2-normalised float32 vector at `positions[b]` of each row of `hidden` [B, L, H].

    Raises if any position is -1: callers decide (and report) what a missing token means.
    """
    if bool((positions < 0).any()):
        rows = (positions < 0).nonzero().flatten().tolist()
        raise ValueError(f"embedding token not found in rows {rows}")
    rows = torch.arange(hidden.shape[0], device=hidden.device)
    return normalize(hidden[rows, positions])


def normalize(vectors: torch.Tensor) -> torch.Tensor:
    """L2-normalise in float32 (bf16 norms are too coarse for cosine >= 0.9999 parity)."""
    return F.normalize(vectors.float(), dim=-1)
