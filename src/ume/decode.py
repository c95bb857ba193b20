"""Generative readout: decode the reasoning, then read the state at the generated `<gen_emb>`.

Unlike `generate(..., output_hidden_states=True)`, which keeps every layer's state for every step
(memory linear in the generated length), this loop keeps one last-layer vector per sequence. It is a
small KV-cache decoding loop over the stock model with continuous batching: a sequence leaves the
running batch as soon as its vector is read, and a waiting prompt takes its slot, so a long
reasoning trace does not hold a whole batch hostage.

Position ids are passed explicitly (M-RoPE positions from the model's own `get_rope_index` for the
prompt, then +1 per generated token), so rows can join and leave the batch freely.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from transformers import DynamicCache

from ume.readout import last_hidden, normalize

# (row keys, tokens generated so far per row, logits [rows, vocab]) -> logits; like HF's LogitsProcessor,
# but per row, since rows of the running batch have different lengths.
LogitsHook = Callable[[list[Any], list[list[int]], torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Sampling:
    """Decoding settings. `do_sample=False` is greedy; otherwise temperature / top-p / top-k sampling."""

    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int | None = None
    max_new_tokens: int = 8192


@dataclass
class Request:
    """One sequence to decode: a prompt (prepared processor inputs for one item) and a sample index."""

    key: Any  # caller's handle, returned with the result
    seed: int | None = None


@dataclass
class Completion:
    """A decoded sequence and its embedding."""

    key: Any
    vector: torch.Tensor  # [H] float32, L2-normalised
    token_ids: list[int]  # generated ids, ending with <gen_emb>
    forced: bool  # True when <gen_emb> was appended by us (missing or cut by max_new_tokens)
    eos_before_gen: bool  # True when the model ended (<|im_end|>) before emitting <gen_emb>


@dataclass
class _Row:
    key: Any
    generator: torch.Generator | None
    tokens: list[int] = field(default_factory=list)
    forced: bool = False
    eos_before_gen: bool = False
    reading: bool = False  # the token just fed is <gen_emb>: the next hidden state is the embedding


def row_seed(seed: int, *parts: int) -> int:
    """A well-mixed seed for (seed, item, sample): independent streams, stable across batchings."""
    return int(np.random.SeedSequence([seed, *parts]).generate_state(1, dtype=np.uint64)[0] >> 1)


def prompt_positions(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """M-RoPE position ids [3, B, L] of a left-padded prompt batch, from the model's own rule."""
    ids, mask = batch["input_ids"], batch["attention_mask"]
    if batch.get("image_grid_thw") is None and batch.get("video_grid_thw") is None:
        pos = (mask.long().cumsum(-1) - 1).clamp(min=0)
        return pos.unsqueeze(0).expand(3, -1, -1).contiguous()
    rope = model.model.get_rope_index
    accepted = inspect.signature(rope).parameters
    kwargs = {k: v for k, v in batch.items() if k in accepted and k != "input_ids"}
    pos, _ = rope(ids, **kwargs)
    return pos


def _pad_left(t: torch.Tensor, length: int, dim: int) -> torch.Tensor:
    extra = length - t.shape[dim]
    if extra == 0:
        return t
    shape = list(t.shape)
    shape[dim] = extra
    return torch.cat([t.new_zeros(shape), t], dim=dim)


def _merge_caches(a: DynamicCache, b: DynamicCache) -> None:
    """Append b's rows to a, left-padding the shorter one (the attention mask hides the padding)."""
    length = max(a.get_seq_length(), b.get_seq_length())
    for la, lb in zip(a.layers, b.layers, strict=True):
        la.keys = torch.cat([_pad_left(la.keys, length, 2), _pad_left(lb.keys, length, 2)])
        la.values = torch.cat([_pad_left(la.values, length, 2), _pad_left(lb.values, length, 2)])


def _trim_left(cache: DynamicCache, mask: torch.Tensor) -> torch.Tensor:
    """Drop leading columns that are padding in every remaining row.

    Rows join with left padding up to the running cache length; without trimming, the cache (and the
    attention cost of every step) would keep growing for as long as the batch stays busy.
    """
    first = int(mask.any(dim=0).int().argmax())
    if first == 0:
        return mask
    for layer in cache.layers:
        layer.keys = layer.keys[:, :, first:]
        layer.values = layer.values[:, :, first:]
    return mask[:, first:]


class Decoder:
    """Continuous-batching decoder over a stock Qwen-VL model; see the module docstring."""

    def __init__(self, model: Any, gen_id: int, eos_ids: set[int], sampling: Sampling,
                 logits_processor: LogitsHook | None = None, banned: Sequence[int] = ()) -> None:
        self.model = model
        self.gen_id = gen_id
        self.eos_ids = eos_ids
        self.sampling = sampling
        self.logits_processor = logits_processor
        self.banned = list(banned)  # ids never sampled (vision placeholders: a completion holds text only)

    def _choose(self, logits: torch.Tensor, rows: list[_Row]) -> list[int]:
        s = self.sampling
        if not s.do_sample:
            return logits.argmax(-1).tolist()
        logits = logits.float() / max(s.temperature, 1e-6)
        if s.top_k is not None and 0 < s.top_k < logits.shape[-1]:
            kth = logits.topk(s.top_k, dim=-1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        probs = logits.softmax(-1)
        if s.top_p < 1.0:
            sorted_p, order = probs.sort(dim=-1, descending=True)
            drop = sorted_p.cumsum(-1) - sorted_p > s.top_p
            sorted_p = sorted_p.masked_fill(drop, 0.0)
            probs = torch.zeros_like(probs).scatter(-1, order, sorted_p)
        return [int(torch.multinomial(probs[i], 1, generator=r.generator)) for i, r in enumerate(rows)]

    @torch.no_grad()
    def run(self, source: Callable[[int], tuple[list[Request], dict[str, torch.Tensor]] | None],
            max_rows: int, repeats: int = 1,
            on_done: Callable[[Completion], None] | None = None) -> list[Completion]:
        """Decode until `source` runs dry; `source(n)` returns up to n prompts or None when empty.

        A prompt is (requests, processor batch): with `repeats=k` each prompt row is prefilled once and
        its cache copied for k samples, so the requests are k per prompt row, in row-major order.
        """
        device = next(self.model.parameters()).device
        done: list[Completion] = []
        rows: list[_Row] = []
        cache: DynamicCache | None = None
        mask = pos = hidden = None
        exhausted = False
        while True:
            free = (max(max_rows, repeats) - len(rows)) // repeats
            got = None if exhausted or free <= 0 else source(free)
            exhausted = exhausted or (free > 0 and got is None)
            if got is not None:
                reqs, batch = got
                new_cache, new_mask, new_pos, new_hidden = self._prefill(batch, repeats, device)
                rows += [_Row(r.key, self._generator(r.seed, device)) for r in reqs]
                if cache is None:
                    cache, mask, pos, hidden = new_cache, new_mask, new_pos, new_hidden
                else:
                    _merge_caches(cache, new_cache)
                    length = max(mask.shape[1], new_mask.shape[1])
                    mask = torch.cat([_pad_left(mask, length, 1), _pad_left(new_mask, length, 1)])
                    pos, hidden = torch.cat([pos, new_pos]), torch.cat([hidden, new_hidden])
                continue  # fill every free slot before the next decoding step
            if not rows:
                return done
            keep = self._read_finished(rows, hidden, done, on_done)
            if len(keep) < len(rows):
                idx = torch.tensor(keep, dtype=torch.long, device=device)
                cache.batch_select_indices(idx)
                mask, pos, hidden, rows = mask[idx], pos[idx], hidden[idx], [rows[i] for i in keep]
                if rows:
                    mask = _trim_left(cache, mask)
            if not rows:
                cache = mask = pos = hidden = None
                continue
            logits = self.model.lm_head(hidden)
            if self.banned:
                logits[:, self.banned] = float("-inf")
            if self.logits_processor is not None:
                logits = self.logits_processor([r.key for r in rows], [r.tokens for r in rows], logits)
            chosen = self._choose(logits, rows)
            ids = torch.tensor([self._next_token(r, t) for r, t in zip(rows, chosen, strict=True)],
                               device=device).unsqueeze(1)
            mask = torch.cat([mask, mask.new_ones(len(rows), 1)], dim=1)
            out = last_hidden(self.model, input_ids=ids, attention_mask=mask,
                              position_ids=pos.view(1, -1, 1).expand(3, -1, -1), cache=cache, use_cache=True)
            hidden = out.last_hidden_state[:, -1]
            pos = pos + 1

    def _generator(self, seed: int | None, device: torch.device) -> torch.Generator | None:
        if not self.sampling.do_sample:
            return None
        g = torch.Generator(device=device)
        g.manual_seed(seed if seed is not None else int(torch.randint(0, 2**62, (1,))))
        return g

    def _prefill(self, batch: dict[str, torch.Tensor], repeats: int, device: torch.device):
        batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        positions = prompt_positions(self.model, batch)
        cache = DynamicCache(config=self.model.config)
        out = last_hidden(self.model, **batch, position_ids=positions, cache=cache, use_cache=True)
        hidden = out.last_hidden_state[:, -1]
        next_pos = positions.amax(dim=(0, 2)) + 1
        mask = batch["attention_mask"]
        if repeats > 1:
            cache.batch_repeat_interleave(repeats)
            hidden = hidden.repeat_interleave(repeats, dim=0)
            next_pos = next_pos.repeat_interleave(repeats, dim=0)
            mask = mask.repeat_interleave(repeats, dim=0)
        return cache, mask, next_pos, hidden

    def _read_finished(self, rows: list[_Row], hidden: torch.Tensor, done: list[Completion],
                       on_done: Callable[[Completion], None] | None) -> list[int]:
        keep = []
        for i, r in enumerate(rows):
            if not r.reading:
                keep.append(i)
                continue
            c = Completion(r.key, normalize(hidden[i]).cpu(), r.tokens, r.forced, r.eos_before_gen)
            done.append(c)
            if on_done is not None:
                on_done(c)
        return keep

    def _next_token(self, row: _Row, token: int) -> int:
        """Apply the end-of-completion rules to the chosen token and record it."""
        ended = token in self.eos_ids
        row.eos_before_gen = ended
        if ended or len(row.tokens) >= self.sampling.max_new_tokens:
            token, row.forced = self.gen_id, True
        row.tokens.append(token)
        row.reading = token == self.gen_id
        return token
