"""`Encoder.encode`: items in, L2-normalised embeddings out, in either mode (or both at once).

- disc: one forward over the prompt up to its `<disc_emb>` (the tokens after it cannot change that state,
  causal attention), and the state there.
- gen: the generation backend decodes the reasoning (`ume.generation`), then the state at the generated
  `<gen_emb>`: read by the backend when it gets it for free, else by one teacher-forced forward.
- both: gen, plus the disc vector from the same prefill: both embeddings for the price of gen.

Items are processed longest-first and results returned in the caller's order. A bad item never shifts or
loses another item's vector: with `on_error="skip"` its row is NaN and the reason is listed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from tqdm.auto import tqdm

from ume.backbone import Backbone, load_backbone
from ume.batching import batch_or_isolate, completion_batch, estimate_tokens, prompt_overhead, token_batches
from ume.decode import LogitsHook
from ume.generation import Completion, GenerationBackend, GenerationSettings, Prompt, get_backend, seeds_for
from ume.inputs import InputError, InputLimits, Item, LoadedItem, item_label, load_item
from ume.readout import embedding_positions, last_hidden, read_embedding, read_vectors
from ume.recipe import Recipe

Mode = Literal["disc", "gen", "both"]
ItemLike = Item | str | dict[str, Any]


@dataclass
class ItemError:
    """Why one item produced no embedding."""

    index: int
    id: str | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "id": self.id, "reason": self.reason}


@dataclass(frozen=True)
class Samples:
    """What gen mode generated, always indexed [item][sample] (k = 1 included): for code written for any k."""

    texts: list[list[str]]
    token_ids: list[list[list[int]]]
    num_tokens: np.ndarray  # [n, k]
    forced: np.ndarray  # [n, k]


@dataclass
class EncodeResult:
    """Embeddings in the caller's order, plus what gen mode generated.

    `embeddings` is float32, L2-normalised: the disc vectors in disc mode, the gen vectors in gen and both
    modes; in both mode `disc_embeddings` [n, d] holds the disc vectors too. Rows of failed items are NaN and
    listed in `errors`. One shape rule, as in sentence-transformers: **every field has a sample axis exactly
    when `num_samples=k > 1`**. With one sample, `embeddings` is [n, d], `texts[i]` a str, `token_ids[i]` a
    list of ids, `num_tokens` and `forced` [n]; with k, [n, k, d], `texts[i][s]`, `token_ids[i][s]`, [n, k].
    `samples` gives the generated fields with the axis always there.
    """

    embeddings: np.ndarray
    mode: Mode
    errors: list[ItemError] = field(default_factory=list)
    texts: list[str] | list[list[str]] | None = None
    token_ids: list[list[int]] | list[list[list[int]]] | None = None
    num_tokens: np.ndarray | None = None
    forced: np.ndarray | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    disc_embeddings: np.ndarray | None = None

    @property
    def ok(self) -> np.ndarray:
        bad = {e.index for e in self.errors}
        return np.array([i not in bad for i in range(len(self.embeddings))], dtype=bool)

    @property
    def num_samples(self) -> int:
        return 1 if self.embeddings.ndim == 2 else int(self.embeddings.shape[1])

    @property
    def samples(self) -> Samples | None:
        """`texts`, `token_ids`, `num_tokens`, `forced` indexed [item][sample] whatever k; None in disc mode."""
        if self.texts is None:
            return None
        if self.num_samples > 1:
            return Samples(self.texts, self.token_ids, self.num_tokens, self.forced)
        return Samples([[t] for t in self.texts], [[t] for t in self.token_ids], self.num_tokens[:, None],
                       self.forced[:, None])


def as_item(x: ItemLike) -> Item:
    if isinstance(x, Item):
        return x
    if isinstance(x, str):
        return Item(text=x)
    if isinstance(x, dict):
        return Item.from_dict(x)
    raise InputError(f"cannot embed a {type(x).__name__}; pass ume.Item, str or dict")


class Encoder:
    """A loaded UME model that embeds items in disc mode, gen mode, or both."""

    def __init__(self, backbone: Backbone, limits: InputLimits | None = None,
                 backend: str | GenerationBackend = "hf") -> None:
        """`backend`: the generation backend of gen mode, by name ("hf", "vllm") or as a ready instance."""
        self.backbone = backbone
        self.limits = limits or InputLimits(num_frames=backbone.recipe.num_frames)
        self.backend = backend

    @property
    def recipe(self) -> Recipe:
        return self.backbone.recipe

    @property
    def model(self) -> Any:
        return self.backbone.model

    @property
    def dim(self) -> int:
        return int(self.model.get_input_embeddings().weight.shape[1])

    # --- public API -------------------------------------------------------------------------------
    def encode(self, items: Sequence[ItemLike], mode: Mode = "disc", batch_size: int = 8,
               num_samples: int = 1, temperature: float | None = None, top_p: float | None = None,
               top_k: int | None = None, repetition_penalty: float | None = None,
               max_new_tokens: int | None = None, seed: int | Sequence[int] | None = None,
               on_error: Literal["raise", "skip"] = "raise", show_progress: bool | None = None,
               logits_processor: LogitsHook | None = None,
               backend: str | GenerationBackend | None = None, max_item_tokens: int | None = None,
               max_batch_tokens: int | None = None) -> EncodeResult:
        """Embed `items` (ume.Item, plain strings, or dicts with text/image(s)/video/id).

        Decoding (gen, both) uses the checkpoint's `generation_config` as `generate()` would, every field
        honoured (or refused by name); `temperature`, `top_p`, `top_k`, `repetition_penalty` and
        `max_new_tokens` override it, `temperature=0` is greedy. With `num_samples > 1` it samples as the
        reference's pass@k / RL rollouts do: temperature 1 (or the one given), top_p 1, top_k off, no
        penalty unless given — the checkpoint's near-greedy defaults would make the k samples identical.
        `seed` makes sampling reproducible per (item index, sample index), independent of batching; a
        sequence gives each item its own seed (e.g. derived from its content). `logits_processor(keys,
        tokens, logits)` may edit next-token logits per row (keys are (item index, sample index)).
        `backend` picks the generation backend ("hf" or "vllm"; default: the encoder's).
        An item whose prompt is longer than `max_item_tokens` (default: the model's context) is that item's
        error; `max_batch_tokens` bounds each batch's padded prompt tokens (items x longest), so one long
        item never pads many short ones into one huge allocation (gen: each prefill).
        """
        if mode not in ("disc", "gen", "both"):
            raise ValueError(f"mode must be 'disc', 'gen' or 'both', got {mode!r}")
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        if num_samples < 1 or batch_size < 1:
            raise ValueError("num_samples and batch_size must be >= 1")
        if mode == "disc" and num_samples != 1:
            raise ValueError("num_samples > 1 needs mode='gen' (disc mode is deterministic)")
        errors: list[ItemError] = []
        parsed: list[Item | None] = []
        for i, x in enumerate(items):
            try:
                parsed.append(as_item(x))
            except InputError as e:
                self._fail(errors, i, None, f"item {i}: {e}", on_error)
                parsed.append(None)
        # gen decodes hundreds of tokens per item: its progress shows even for a few items
        progress = (mode != "disc" or len(parsed) > batch_size) if show_progress is None else show_progress
        batches = self._batches(parsed, batch_size, max_item_tokens, max_batch_tokens, errors, on_error,
                                weight=num_samples)
        if mode == "disc":
            return self._encode_disc(parsed, batches, errors, on_error, progress)
        settings = self.generation_settings(num_samples, temperature, top_p, top_k, repetition_penalty,
                                            max_new_tokens)
        return self._encode_gen(parsed, mode, batches, batch_size, num_samples, settings, seed, errors, on_error,
                                progress, logits_processor, backend or self.backend)

    def generation_settings(self, num_samples: int = 1, temperature: float | None = None,
                            top_p: float | None = None, top_k: int | None = None,
                            repetition_penalty: float | None = None,
                            max_new_tokens: int | None = None) -> GenerationSettings:
        """The effective decoding settings of an `encode` call with these arguments: k > 1 samples follow the
        reference's sampling protocol (never the checkpoint's near-greedy top_k); one sequence follows the
        checkpoint's generation_config, as `generate()` does."""
        if num_samples > 1:
            return GenerationSettings.sampling(temperature, top_p, top_k, repetition_penalty, max_new_tokens)
        overrides: dict[str, Any] = {"top_p": top_p, "top_k": top_k, "repetition_penalty": repetition_penalty}
        if temperature is not None:
            overrides.update(do_sample=temperature > 0, temperature=temperature if temperature > 0 else None)
        return GenerationSettings.from_config(self.model.generation_config, max_new_tokens, **overrides)

    # --- internals --------------------------------------------------------------------------------
    @staticmethod
    def _fail(errors: list[ItemError], index: int, item_id: str | None, reason: str, on_error: str) -> None:
        if on_error == "raise":
            raise InputError(reason)
        errors.append(ItemError(index, item_id, reason))

    def _load(self, indices: Sequence[int], parsed: list[Item | None], errors: list[ItemError],
              on_error: str) -> list[tuple[int, LoadedItem]]:
        out = []
        for i in indices:
            item = parsed[i]
            if item is None:
                continue
            try:
                out.append((i, load_item(item, i, self.limits)))
            except InputError as e:
                self._fail(errors, i, item.id, str(e), on_error)
        return out

    def _reject(self, parsed: list[Item | None], errors: list[ItemError], on_error: str, index: int,
                reason: str) -> None:
        item = parsed[index]
        self._fail(errors, index, item.id if item else None, f"{item_label(item, index)}: {reason}", on_error)

    def context_length(self) -> int | None:
        """The model's context (max_position_embeddings of its text config): the default per-item limit."""
        cfg = self.model.config
        text = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
        n = getattr(text, "max_position_embeddings", None)
        return int(n) if n else None

    def _batches(self, parsed: list[Item | None], batch_size: int, max_item_tokens: int | None,
                 max_batch_tokens: int | None, errors: list[ItemError], on_error: str, weight: int) -> list[list[int]]:
        """Item indices in batches, longest first: at most `batch_size` items and `max_batch_tokens` padded
        prompt tokens each (weighted by the samples each prompt becomes); over-long items fail here."""
        proc, recipe = self.backbone.processor, self.recipe
        overhead = prompt_overhead(proc, recipe)
        limit = max_item_tokens or self.context_length()
        present, lengths = [], []
        for i, item in enumerate(parsed):
            if item is None:
                continue
            n = estimate_tokens(item, recipe, proc, overhead)
            if limit is not None and n > limit:
                self._fail(errors, i, item.id, f"{item_label(item, i)}: about {n} prompt tokens exceeds the limit "
                           f"of {limit} tokens per item (max_item_tokens; default: the model's context)", on_error)
                continue
            present.append(i)
            lengths.append(n * weight)
        return [[present[j] for j in b] for b in token_batches(lengths, batch_size, max_batch_tokens)]

    @torch.no_grad()
    def _disc_vectors(self, loaded: list[tuple[int, LoadedItem]], parsed: list[Item | None],
                      errors: list[ItemError], on_error: str) -> tuple[list[int], torch.Tensor] | None:
        """One forward over the prompts up to their `<disc_emb>`: (item indices, vectors [n, d])."""
        ok, batch = batch_or_isolate(self.backbone.processor, self.recipe, [it for _, it in loaded],
                                     lambda j, reason: self._reject(parsed, errors, on_error, loaded[j][0], reason))
        if batch is None:
            return None
        device = self.backbone.device
        pos = embedding_positions(batch["input_ids"], "disc", self.backbone.tokens)
        cut = int(pos.max()) + 1  # causal attention: the tokens after <disc_emb> cannot change its state
        width = batch["input_ids"].shape[1]
        batch = {k: (v[:, :cut] if v.dim() == 2 and v.shape[1] == width and k != "image_grid_thw"
                     and k != "video_grid_thw" else v).to(device) for k, v in batch.items()}
        hidden = last_hidden(self.model, **batch, use_cache=False).last_hidden_state
        return [loaded[j][0] for j in ok], read_vectors(hidden, pos.to(device))

    def _encode_disc(self, parsed: list[Item | None], batches: list[list[int]], errors: list[ItemError],
                     on_error: str, progress: bool) -> EncodeResult:
        out = np.full((len(parsed), self.dim), np.nan, dtype=np.float32)
        with tqdm(total=sum(map(len, batches)), desc="embed disc", unit="item", disable=not progress) as bar:
            for chunk in batches:
                got = self._disc_vectors(self._load(chunk, parsed, errors, on_error), parsed, errors, on_error)
                bar.update(len(chunk))
                if got is not None:
                    out[got[0]] = got[1].cpu().numpy()
        return EncodeResult(out, "disc", sorted(errors, key=lambda e: e.index),
                            settings={"mode": "disc", "recipe": self.recipe.digest()})

    def _encode_gen(self, parsed: list[Item | None], mode: Mode, batches: list[list[int]], batch_size: int, k: int,
                    settings: GenerationSettings, seed: int | Sequence[int] | None, errors: list[ItemError],
                    on_error: str, progress: bool, logits_processor: LogitsHook | None,
                    backend_choice: str | GenerationBackend) -> EncodeResult:
        n = len(parsed)
        if isinstance(seed, Sequence) and len(seed) != n:
            raise ValueError(f"seed: {len(seed)} per-item seeds for {n} items")
        vecs = np.full((n, k, self.dim), np.nan, dtype=np.float32)
        discs = np.full((n, self.dim), np.nan, dtype=np.float32) if mode == "both" else None
        texts = [[""] * k for _ in range(n)]
        token_ids: list[list[list[int]]] = [[[] for _ in range(k)] for _ in range(n)]
        forced = np.zeros((n, k), dtype=bool)
        loaded: dict[int, LoadedItem] = {}  # items whose vectors a teacher-forced forward must still read
        unread: list[Completion] = []
        pending = [list(b) for b in batches]  # prefills never mix two budget batches

        def source(slots: int) -> list[Prompt] | None:
            while pending and not pending[0]:
                pending.pop(0)
            if not pending:
                return None
            chunk, pending[0] = pending[0][:slots // k], pending[0][slots // k:]
            got = self._load(chunk, parsed, errors, on_error)
            bar.update((len(chunk) - len(got)) * k)  # failed items count as done
            loaded.update(got)
            return [Prompt(i, it, seeds_for(seed, i, k)) for i, it in got]

        tok = self.backbone.tokenizer
        policy_error = self.recipe.missing_gen_emb == "error"

        def on_done(c: Completion) -> None:
            i, s = c.key
            bar.update(1)
            token_ids[i][s] = c.token_ids
            texts[i][s] = tok.decode(c.token_ids, skip_special_tokens=False)
            forced[i, s] = c.forced
            if discs is not None and c.disc_vector is not None:
                discs[i] = c.disc_vector.numpy()
            if c.forced and policy_error:
                self._fail(errors, i, parsed[i].id if parsed[i] else None,
                           f"item {i}: sample {s} produced no <gen_emb> within max_new_tokens="
                           f"{settings.max_new_tokens} (recipe missing_gen_emb='error')", on_error)
            elif c.vector is not None:
                vecs[i, s] = c.vector.numpy()
            else:
                unread.append(c)

        backend = backend_choice if not isinstance(backend_choice, str) else get_backend(
            backend_choice, self.backbone, **self._backend_options(logits_processor))
        generated = [0, time.perf_counter()]  # tokens so far, start

        def on_tokens(count: int) -> None:  # gen progress by tokens too: one sequence can take hundreds
            generated[0] += count
            bar.set_postfix_str(f"{generated[0]} tok, {generated[0] / (time.perf_counter() - generated[1]):.0f} tok/s",
                                refresh=False)

        with tqdm(total=sum(map(len, batches)) * k, desc=f"embed {mode}", unit="seq", disable=not progress) as bar:
            backend.run(source, settings, on_done, lambda i, reason: self._reject(parsed, errors, on_error, i, reason),
                        max_rows=batch_size * k, want_disc=discs is not None,
                        on_tokens=on_tokens if progress else None)
        self._read_unread(unread, loaded, vecs, batch_size)
        if discs is not None:  # backends that do not prefill with ume's model: one disc forward
            missing = [i for i in loaded if np.isnan(discs[i]).all()]
            for start in range(0, len(missing), batch_size):
                got = self._disc_vectors([(i, loaded[i]) for i in missing[start:start + batch_size]], parsed,
                                         errors, on_error)
                if got is not None:
                    discs[got[0]] = got[1].cpu().numpy()
        failed = sorted({e.index for e in errors})
        vecs[failed] = np.nan
        if discs is not None:
            discs[failed] = np.nan
        num_tokens = np.array([[len(t) for t in row] for row in token_ids], dtype=np.int64)
        out_settings = {"mode": mode, "recipe": self.recipe.digest(), "backend": backend.name, "num_samples": k,
                        "seed": seed if seed is None or isinstance(seed, int) else "per-item", **settings.describe()}
        if k == 1:  # no sample axis with one sample, in any field
            vecs, texts, token_ids = vecs[:, 0], [t[0] for t in texts], [t[0] for t in token_ids]
            num_tokens, forced = num_tokens[:, 0], forced[:, 0]
        return EncodeResult(vecs, mode, sorted(errors, key=lambda e: e.index), texts=texts, token_ids=token_ids,
                            num_tokens=num_tokens, forced=forced, settings=out_settings, disc_embeddings=discs)

    def _backend_options(self, logits_processor: LogitsHook | None) -> dict[str, Any]:
        """What every backend is built with; a logits hook only when given (not every backend runs one)."""
        hook = {} if logits_processor is None else {"logits_hook": logits_processor}
        return {"eos_ids": self.eos_ids(), "banned": self.vision_ids(), **hook}

    @torch.no_grad()
    def _read_unread(self, unread: list[Completion], loaded: dict[int, LoadedItem], vecs: np.ndarray,
                     batch_size: int) -> None:
        """The shared teacher-forced readout for completions a backend returned without a vector: one
        forward over prompt + generated ids, the state at the completion's last `<gen_emb>`."""
        device = self.backbone.device
        for start in range(0, len(unread), batch_size):
            chunk = unread[start:start + batch_size]
            batch, prompt_len, _, _ = completion_batch(self.backbone.processor, self.recipe,
                                                       [loaded[c.key[0]] for c in chunk],
                                                       [c.token_ids for c in chunk], self.backbone.pad_id)
            batch = {k: v.to(device) for k, v in batch.items()}
            hidden = last_hidden(self.model, **batch, use_cache=False).last_hidden_state
            got = read_embedding(hidden, batch["input_ids"], "gen", self.backbone.tokens, prompt_len)
            for c, v in zip(chunk, got.cpu().numpy(), strict=True):
                vecs[c.key[0], c.key[1]] = v

    def vision_ids(self) -> list[int]:
        """Placeholder tokens a completion must never contain: teacher-forcing one would make the model
        look for an image that is not there."""
        cfg = self.model.config
        names = ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id")
        return [int(getattr(cfg, n)) for n in names if getattr(cfg, n, None) is not None]

    def eos_ids(self) -> set[int]:
        eos = self.model.generation_config.eos_token_id
        ids = set(eos if isinstance(eos, list) else [] if eos is None else [eos])
        return ids | {self.backbone.eos_id}


def load(name_or_path: str | Path, device: str | torch.device | None = None,
         dtype: str | torch.dtype | None = None, recipe: Recipe | None = None, backend: str = "hf",
         attn_implementation: str | None = None, min_pixels: int | None = None,
         max_pixels: int | None = None) -> Encoder:
    """Load a Qwen2-VL / Qwen2.5-VL / Qwen3-VL checkpoint (hub id or local dir) as an `Encoder`; `backend`
    is the generation backend gen mode uses ("hf", or "vllm" on a GPU). `attn_implementation` goes to
    transformers ("flash_attention_2" on a GPU that has it: without it a large image costs seconds);
    `min_pixels` / `max_pixels` override the recipe's per-image floor / cap (a cap bounds memory)."""
    backbone = load_backbone(name_or_path, device=device, dtype=dtype, recipe=recipe,
                             attn_implementation=attn_implementation, min_pixels=min_pixels, max_pixels=max_pixels)
    return Encoder(backbone, backend=backend)
