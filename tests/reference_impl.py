"""The reference implementation's readouts, kept for parity tests and benchmarks.

`reference_gen` is what UME-R1's eval code does: `generate(..., output_hidden_states=True)` and the
state `hidden_states[j + 1][-1][b, -1]` for the generated `<gen_emb>` at index j. It holds every
layer's state for every step; ume's own path (`decode.py`) must give the same vectors without that.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from transformers import LogitsProcessor, LogitsProcessorList

from ume.readout import last_positions, normalize


@torch.no_grad()
def reference_disc(model: Any, batch: dict[str, torch.Tensor], disc_id: int) -> torch.Tensor:
    """`hidden_states[-1]` of the full model at the last `<disc_emb>` (the reference disc readout)."""
    out = model(**batch, output_hidden_states=True)
    pos = last_positions(batch["input_ids"], disc_id)
    return normalize(out.hidden_states[-1][torch.arange(len(pos)), pos])


@dataclass
class ReferenceGen:
    vectors: torch.Tensor  # [B, H]
    generated: torch.Tensor  # [B, T] generated ids (padded after eos)
    hidden_state_bytes: int  # bytes generate() held in out.hidden_states


@torch.no_grad()
def reference_gen(model: Any, batch: dict[str, torch.Tensor], gen_id: int, max_new_tokens: int,
                  logits_processor: LogitsProcessor | None = None) -> ReferenceGen:
    """Greedy HF generate with all hidden states, read at index j+1 of the last generated `<gen_emb>`.

    Rows without a generated `<gen_emb>` (or with it as the final token, whose state HF never
    produces) raise: the reference silently reads position -1 there, which we do not reproduce.
    """
    processors = LogitsProcessorList([logits_processor] if logits_processor is not None else [])
    out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False, output_hidden_states=True,
                         return_dict_in_generate=True, logits_processor=processors)
    prompt_len = batch["input_ids"].shape[1]
    generated = out.sequences[:, prompt_len:]
    held = sum(t.numel() * t.element_size() for step in out.hidden_states for t in step)
    vectors = []
    for b in range(generated.shape[0]):
        hits = (generated[b] == gen_id).nonzero().flatten()
        if len(hits) == 0 or int(hits[-1]) + 1 >= len(out.hidden_states):
            raise ValueError(f"row {b}: no readable generated <gen_emb> (reference would fall back to -1)")
        j = int(hits[-1])
        vectors.append(out.hidden_states[j + 1][-1][b, -1])
    return ReferenceGen(normalize(torch.stack(vectors)), generated, held)


class ForceGenAt(LogitsProcessor):
    """Make row b emit `<gen_emb>` exactly at generated index `lengths[b]`, then end of turn.

    Before that index, `<gen_emb>` and the `banned` ids (end-of-sequence) are excluded; after it, the
    row emits `banned[0]`, as a trained model ends with `<gen_emb><|im_end|>`.

    Used to give random-weight models controlled reasoning lengths, identically for HF `generate`
    (as a LogitsProcessor over a fixed batch) and for ume's decoder (as a per-row hook via `hook`).
    """

    def __init__(self, lengths: list[int], gen_id: int, banned: list[int], prompt_len: int = 0) -> None:
        self.lengths = lengths
        self.gen_id = gen_id
        self.banned = banned
        self.prompt_len = prompt_len  # HF form only: input_ids include the (padded) prompt

    def _apply(self, row_scores: torch.Tensor, step: int, length: int) -> torch.Tensor:
        row_scores = row_scores.clone()
        if step >= length:
            row_scores[:] = float("-inf")
            row_scores[self.gen_id if step == length else self.banned[0]] = 0.0
        else:
            row_scores[[self.gen_id, *self.banned]] = float("-inf")
        return row_scores

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        step = input_ids.shape[1] - self.prompt_len
        return torch.stack([self._apply(scores[b], step, self.lengths[b]) for b in range(scores.shape[0])])

    def hook(self, keys: list[Any], tokens: list[list[int]], logits: torch.Tensor) -> torch.Tensor:
        """ume decoder form; keys are (item index, sample index)."""
        return torch.stack([self._apply(logits[r], len(tokens[r]), self.lengths[keys[r][0]])
                            for r in range(logits.shape[0])])
