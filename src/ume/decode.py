"""The "hf" generation backend: ume's continuous-batching decoder over the stock transformers model.

Unlike `generate(..., output_hidden_states=True)`, which keeps every layer's state for every step (memory
linear in the generated length), this loop keeps one last-layer vector per sequence. It is a small KV-cache
decoding loop with continuous batching: a sequence leaves the running batch as soon as its `<gen_emb>` state
is read, and a waiting prompt takes its slot, so a long reasoning trace does not hold a whole batch hostage.
The cache is `ume.kv_cache`'s: a step writes its keys in place instead of copying every row's whole cache.
`k` samples of one prompt share its prefill (the cache is copied k times).

Position ids are passed explicitly (M-RoPE positions from the model's own `get_rope_index` for the prompt,
then +1 per generated token), so rows can join and leave the batch freely. Next tokens are chosen by
transformers' logits processors for the effective settings (`GenerationSettings.processors`), applied to
each row's own prompt + completion, so penalties see exactly what `generate()` would show them.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers.cache_utils import Cache

from ume.batching import batch_or_isolate
from ume.compat import cache_kwargs
from ume.generation import Completion, GenerationSettings, Prompt, PromptSource, Reject, finish
from ume.kv_cache import append_rows, decode_cache, drop_leading, keep_rows
from ume.readout import embedding_positions, last_hidden, read_embedding

# (row keys, tokens generated so far per row, logits [rows, vocab]) -> logits: a caller's own per-row edit
# of the next-token logits (e.g. tests forcing lengths), applied before the settings' processors.
LogitsHook = Callable[[list[Any], list[list[int]], torch.Tensor], torch.Tensor]


@dataclass
class _Row:
    key: Any
    generator: torch.Generator | None
    prompt: torch.Tensor  # the prompt's ids without padding (what penalties look at, as in generate())
    disc: torch.Tensor | None = None
    tokens: list[int] = field(default_factory=list)
    forced: bool = False
    eos_before_gen: bool = False


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


class HFBackend:
    """Continuous-batching decoding with the stock model; see the module docstring."""

    name = "hf"

    def __init__(self, backbone: Any, logits_hook: LogitsHook | None = None, banned: Sequence[int] = (),
                 eos_ids: set[int] | None = None) -> None:
        self.backbone = backbone
        self.model = backbone.model
        self.logits_hook = logits_hook
        self.banned = list(banned)  # ids never sampled (vision placeholders: a completion holds text only)
        self.eos_ids = eos_ids if eos_ids is not None else {backbone.eos_id}

    @torch.no_grad()
    def run(self, source: PromptSource, settings: GenerationSettings, on_done: Callable[[Completion], None],
            on_reject: Reject, max_rows: int, want_disc: bool = False,
            on_tokens: Callable[[int], None] | None = None) -> None:
        """Decode until `source` runs dry, keeping at most `max_rows` sequences in the running batch;
        `on_tokens(rows)` after every decoding step."""
        device = next(self.model.parameters()).device
        processors = settings.processors(device)
        rows: list[_Row] = []
        cache: Cache | None = None
        mask = pos = hidden = None
        exhausted = False
        while True:
            got = None
            if not exhausted:
                got = self._next_prompts(source, max_rows - len(rows), on_reject)
                exhausted = got is None
            if got:  # (prompts, batch) to prefill; [] when nothing fits in the free slots now
                prompts, batch = got
                new_cache, new_mask, new_pos, new_hidden, discs = self._prefill(batch, prompts, device, want_disc)
                rows += self._rows(prompts, batch, discs, settings, device)
                if cache is None:
                    cache, mask, pos, hidden = new_cache, new_mask, new_pos, new_hidden
                else:
                    append_rows(cache, new_cache)
                    length = max(mask.shape[1], new_mask.shape[1])
                    mask = torch.cat([_pad_left(mask, length, 1), _pad_left(new_mask, length, 1)])
                    pos, hidden = torch.cat([pos, new_pos]), torch.cat([hidden, new_hidden])
                continue  # fill every free slot before the next decoding step
            if not rows:
                return
            keep = self._read_finished(rows, hidden, on_done)
            if len(keep) < len(rows):
                idx = torch.tensor(keep, dtype=torch.long, device=device)
                keep_rows(cache, keep)
                mask, pos, hidden, rows = mask[idx], pos[idx], hidden[idx], [rows[i] for i in keep]
                if rows:  # drop leading columns that are padding in every remaining row: without this, the
                    # cache (and every step's attention) would grow for as long as the batch stays busy
                    first = int(mask.any(dim=0).int().argmax())
                    drop_leading(cache, first)
                    mask = mask[:, first:]
            if not rows:
                cache = mask = pos = hidden = None
                continue
            chosen = self._choose(self.model.lm_head(hidden).float(), rows, settings, processors)
            ids = torch.tensor([self._record(r, t, settings) for r, t in zip(rows, chosen, strict=True)],
                               device=device).unsqueeze(1)
            if on_tokens is not None:
                on_tokens(len(rows))
            mask = torch.cat([mask, mask.new_ones(len(rows), 1)], dim=1)
            out = last_hidden(self.model, input_ids=ids, attention_mask=mask,
                              position_ids=pos.view(1, -1, 1).expand(3, -1, -1), **cache_kwargs(self.model, cache))
            hidden = out.last_hidden_state[:, -1]
            pos = pos + 1

    def _next_prompts(self, source: PromptSource, free: int, on_reject: Reject
                      ) -> tuple[list[Prompt], dict[str, torch.Tensor]] | list[Any] | None:
        """The next prompts that fit in `free` sequence slots, as one processor batch; [] when none fit now,
        None when the source is exhausted. Prompts the processor rejects are reported and skipped."""
        while free > 0:
            prompts = source(free)
            if not prompts:
                return prompts
            ok, batch = batch_or_isolate(self.backbone.processor, self.backbone.recipe, [p.item for p in prompts],
                                         lambda i, reason, ps=prompts: on_reject(ps[i].key, reason))
            if batch is not None:
                return [prompts[i] for i in ok], batch
        return []

    def _rows(self, prompts: list[Prompt], batch: dict[str, torch.Tensor], discs: torch.Tensor | None,
              settings: GenerationSettings, device: torch.device) -> list[_Row]:
        rows = []
        for b, p in enumerate(prompts):
            prompt = batch["input_ids"][b][batch["attention_mask"][b].bool()].to(device)
            for s, seed in enumerate(p.seeds):
                gen = self._generator(seed, device) if settings.do_sample else None
                rows.append(_Row((p.key, s), gen, prompt, None if discs is None else discs[b]))
        return rows

    def _choose(self, logits: torch.Tensor, rows: list[_Row], settings: GenerationSettings,
                processors: Any) -> list[int]:
        if self.banned:
            logits[:, self.banned] = float("-inf")
        if self.logits_hook is not None:
            logits = self.logits_hook([r.key for r in rows], [r.tokens for r in rows], logits)
        if processors:
            if settings.repetition_penalty != 1.0 or settings.no_repeat_ngram_size > 0:  # these read each row's ids
                logits = torch.cat([processors(self._ids(r), logits[i:i + 1]) for i, r in enumerate(rows)])
            else:  # warpers only: they never look at the ids
                logits = processors(torch.empty((len(rows), 0), dtype=torch.long, device=logits.device), logits)
        if not settings.do_sample:
            return logits.argmax(-1).tolist()
        probs = logits.softmax(-1)
        return [int(torch.multinomial(probs[i], 1, generator=r.generator)) for i, r in enumerate(rows)]

    @staticmethod
    def _ids(row: _Row) -> torch.Tensor:
        generated = torch.tensor(row.tokens, dtype=row.prompt.dtype, device=row.prompt.device)
        return torch.cat([row.prompt, generated]).unsqueeze(0)

    @staticmethod
    def _generator(seed: int | None, device: torch.device) -> torch.Generator:
        g = torch.Generator(device=device)
        g.manual_seed(seed if seed is not None else int(torch.randint(0, 2**62, (1,))))
        return g

    def _prefill(self, batch: dict[str, torch.Tensor], prompts: list[Prompt], device: torch.device,
                 want_disc: bool) -> tuple[Cache, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        positions = prompt_positions(self.model, batch)
        cache = decode_cache(self.model)
        out = last_hidden(self.model, **batch, position_ids=positions, **cache_kwargs(self.model, cache))
        discs = None
        if want_disc:  # the prompt's <disc_emb> state is in this prefill already: disc comes for free
            discs = read_embedding(out.last_hidden_state, batch["input_ids"], "disc", self.backbone.tokens)
        hidden = out.last_hidden_state[:, -1]
        next_pos = positions.amax(dim=(0, 2)) + 1
        mask = batch["attention_mask"]
        repeats = torch.tensor([len(p.seeds) for p in prompts], device=device)
        if bool((repeats > 1).any()):
            if bool((repeats != repeats[0]).any()):
                raise ValueError("every prompt of one prefill must ask for the same number of samples")
            k = int(repeats[0])
            cache.batch_repeat_interleave(k)
            hidden, next_pos, mask = (t.repeat_interleave(k, dim=0) for t in (hidden, next_pos, mask))
        return cache, mask, next_pos, hidden, discs

    def _read_finished(self, rows: list[_Row], hidden: torch.Tensor, on_done: Callable[[Completion], None]
                       ) -> list[int]:
        """Hand over the rows whose just-fed token is their embedding token (the readout rule applied to that
        one position; `hidden` [rows, H] is its state); return the indices of the rows still decoding."""
        tokens = self.backbone.tokens
        fed = torch.tensor([[r.tokens[-1] if r.tokens else -1] for r in rows], device=hidden.device)
        done = embedding_positions(fed, "gen", tokens) >= 0
        if bool(done.any()):
            idx = done.nonzero().flatten()
            vectors = read_embedding(hidden[idx].unsqueeze(1), fed[idx], "gen", tokens).cpu()
            for i, v in zip(idx.tolist(), vectors, strict=True):
                r = rows[i]
                on_done(Completion(r.key, r.tokens, r.forced, r.eos_before_gen, v,
                                   None if r.disc is None else r.disc.cpu()))
        return (~done).nonzero().flatten().tolist()

    def _record(self, row: _Row, token: int, settings: GenerationSettings) -> int:
        """Apply the end-of-completion rule to the chosen token and record it."""
        row.eos_before_gen = token in self.eos_ids
        token, forced = finish(row.tokens, token, self.backbone.gen_id, self.eos_ids, settings.max_new_tokens)
        row.forced = row.forced or forced
        row.tokens.append(token)
        return token
