"""`Encoder.encode`: items in, L2-normalised embeddings out, in either mode.

- disc: one forward over the prompt; the state at the last `<disc_emb>` of the prompt.
- gen: decode the reasoning, then the state at the generated `<gen_emb>` (see `decode.py`).

Items are processed longest-first and results returned in the caller's order. A bad item never
shifts or loses another item's vector: with `on_error="skip"` its row is NaN and the reason is listed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from tqdm.auto import tqdm

from ume.backbone import Backbone, load_backbone
from ume.batching import length_order, make_batch
from ume.decode import Completion, Decoder, LogitsHook, Request, Sampling, row_seed
from ume.inputs import InputError, InputLimits, Item, LoadedItem, load_item
from ume.readout import last_hidden, last_positions, read_vectors
from ume.recipe import Recipe

Mode = Literal["disc", "gen"]
ItemLike = Item | str | dict[str, Any]


@dataclass
class ItemError:
    """Why one item produced no embedding."""

    index: int
    id: str | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "id": self.id, "reason": self.reason}


@dataclass
class EncodeResult:
    """Embeddings in the caller's order, plus what gen mode generated.

    `embeddings` is [n, d] (or [n, k, d] when `num_samples=k > 1`), float32, L2-normalised; rows of
    failed items are NaN and listed in `errors`. For gen mode, `texts`, `token_ids`, `num_tokens` and
    `forced` are indexed [item][sample].
    """

    embeddings: np.ndarray
    mode: Mode
    errors: list[ItemError] = field(default_factory=list)
    texts: list[list[str]] | None = None
    token_ids: list[list[list[int]]] | None = None
    num_tokens: np.ndarray | None = None
    forced: np.ndarray | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> np.ndarray:
        bad = {e.index for e in self.errors}
        return np.array([i not in bad for i in range(len(self.embeddings))], dtype=bool)


def as_item(x: ItemLike) -> Item:
    if isinstance(x, Item):
        return x
    if isinstance(x, str):
        return Item(text=x)
    if isinstance(x, dict):
        return Item.from_dict(x)
    raise InputError(f"cannot embed a {type(x).__name__}; pass ume.Item, str or dict")


class Encoder:
    """A loaded UME model that embeds items in disc or gen mode."""

    def __init__(self, backbone: Backbone, limits: InputLimits | None = None) -> None:
        self.backbone = backbone
        self.limits = limits or InputLimits(num_frames=backbone.recipe.num_frames)

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
               top_k: int | None = None, max_new_tokens: int | None = None,
               seed: int | Sequence[int] | None = None,
               on_error: Literal["raise", "skip"] = "raise", show_progress: bool | None = None,
               logits_processor: LogitsHook | None = None) -> EncodeResult:
        """Embed `items` (ume.Item, plain strings, or dicts with text/image(s)/video/id).

        Gen-mode decoding defaults to the checkpoint's `generation_config`; with `num_samples > 1` and
        no temperature given it samples at temperature 1.0, top_p 1.0 (the pass@k protocol).
        `seed` makes sampling reproducible per (item index, sample index), independent of batching; a
        sequence gives each item its own seed (e.g. derived from its content, so that results do not depend
        on the item's position in the call).
        `logits_processor(keys, tokens, logits)` may edit next-token logits per row (keys are
        (item index, sample index)), e.g. to ban tokens.
        """
        if mode not in ("disc", "gen"):
            raise ValueError(f"mode must be 'disc' or 'gen', got {mode!r}")
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
                self._fail(errors, i, None, str(e), on_error)
                parsed.append(None)
        progress = len(parsed) > batch_size if show_progress is None else show_progress
        if mode == "disc":
            return self._encode_disc(parsed, batch_size, errors, on_error, progress)
        sampling = self.sampling(num_samples, temperature, top_p, top_k, max_new_tokens)
        return self._encode_gen(parsed, batch_size, num_samples, sampling, seed, errors, on_error, progress,
                                logits_processor)

    def sampling(self, num_samples: int = 1, temperature: float | None = None, top_p: float | None = None,
                 top_k: int | None = None, max_new_tokens: int | None = None) -> Sampling:
        """Effective decoding settings: explicit arguments, else the checkpoint's generation_config."""
        gc = self.model.generation_config
        budget = max_new_tokens or 8192
        if num_samples > 1 and temperature is None:  # the pass@k protocol: plain sampling at temperature 1
            return Sampling(True, 1.0, 1.0 if top_p is None else top_p, top_k, budget)
        do_sample = temperature > 0 if temperature is not None else bool(getattr(gc, "do_sample", False))
        return Sampling(do_sample=do_sample,
                        temperature=float(temperature if temperature is not None else gc.temperature or 1.0),
                        top_p=float(top_p if top_p is not None else gc.top_p or 1.0),
                        top_k=(top_k if top_k is not None else gc.top_k if do_sample else None) or None,
                        max_new_tokens=budget)

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

    def _batch(self, loaded: list[tuple[int, LoadedItem]], parsed: list[Item | None], errors: list[ItemError],
               on_error: str) -> tuple[list[int], dict[str, torch.Tensor]] | None:
        """A processor batch; if the processor rejects it, isolate the offending items one by one."""
        proc, recipe = self.backbone.processor, self.recipe
        try:
            return [i for i, _ in loaded], make_batch(proc, recipe, [it for _, it in loaded])
        except Exception:
            if len(loaded) == 1 and on_error == "raise":
                raise
        good = []
        for i, it in loaded:
            try:
                make_batch(proc, recipe, [it])
                good.append((i, it))
            except Exception as e:  # the processor's own reason, attributed to the item
                item = parsed[i]
                label = f"item {i}" + (f" (id={item.id!r})" if item is not None and item.id else "")
                self._fail(errors, i, item.id if item else None, f"{label}: processor failed: {e}", on_error)
        if not good:
            return None
        return [i for i, _ in good], make_batch(proc, recipe, [it for _, it in good])

    def _order(self, parsed: list[Item | None]) -> list[int]:
        present = [i for i, p in enumerate(parsed) if p is not None]
        order = length_order([parsed[i] for i in present], self.recipe)
        return [present[j] for j in order]

    @torch.no_grad()
    def _encode_disc(self, parsed: list[Item | None], batch_size: int, errors: list[ItemError],
                     on_error: str, progress: bool) -> EncodeResult:
        out = np.full((len(parsed), self.dim), np.nan, dtype=np.float32)
        order = self._order(parsed)
        device = self.backbone.device
        with tqdm(total=len(order), desc="embed disc", unit="item", disable=not progress) as bar:
            for start in range(0, len(order), batch_size):
                chunk = order[start:start + batch_size]
                got = self._batch(self._load(chunk, parsed, errors, on_error), parsed, errors, on_error)
                bar.update(len(chunk))
                if got is None:
                    continue
                idx, batch = got
                batch = {k: v.to(device) for k, v in batch.items()}
                hidden = last_hidden(self.model, **batch, use_cache=False).last_hidden_state
                pos = last_positions(batch["input_ids"], self.backbone.disc_id)
                out[idx] = read_vectors(hidden, pos).cpu().numpy()
        return EncodeResult(out, "disc", sorted(errors, key=lambda e: e.index),
                            settings={"mode": "disc", "recipe": self.recipe.digest()})

    def _encode_gen(self, parsed: list[Item | None], batch_size: int, k: int, sampling: Sampling,
                    seed: int | Sequence[int] | None, errors: list[ItemError], on_error: str, progress: bool,
                    logits_processor: LogitsHook | None) -> EncodeResult:
        n = len(parsed)
        vecs = np.full((n, k, self.dim), np.nan, dtype=np.float32)
        texts = [[""] * k for _ in range(n)]
        token_ids: list[list[list[int]]] = [[[] for _ in range(k)] for _ in range(n)]
        forced = np.zeros((n, k), dtype=bool)
        order = self._order(parsed)
        cursor = 0
        if isinstance(seed, Sequence) and len(seed) != n:
            raise ValueError(f"seed: {len(seed)} per-item seeds for {n} items")

        def seed_of(i: int, s: int) -> int | None:
            if seed is None:
                return None
            return row_seed(seed[i], s) if isinstance(seed, Sequence) else row_seed(seed, i, s)

        def source(max_prompts: int) -> tuple[list[Request], dict[str, torch.Tensor]] | None:
            nonlocal cursor
            while cursor < len(order):
                chunk = order[cursor:cursor + min(max_prompts, batch_size)]
                cursor += len(chunk)
                got = self._batch(self._load(chunk, parsed, errors, on_error), parsed, errors, on_error)
                if got is None:
                    bar.update(len(chunk) * k)
                    continue
                idx, batch = got
                bar.update((len(chunk) - len(idx)) * k)  # failed items count as done
                reqs = [Request((i, s), seed_of(i, s)) for i in idx for s in range(k)]
                return reqs, batch
            return None

        tok = self.backbone.tokenizer
        policy_error = self.recipe.missing_gen_emb == "error"

        def on_done(c: Completion) -> None:
            i, s = c.key
            bar.update(1)
            token_ids[i][s] = c.token_ids
            texts[i][s] = tok.decode(c.token_ids, skip_special_tokens=False)
            forced[i, s] = c.forced
            if c.forced and policy_error:
                item = parsed[i]
                self._fail(errors, i, item.id if item else None,
                           f"item {i}: sample {s} produced no <gen_emb> within max_new_tokens="
                           f"{sampling.max_new_tokens} (recipe missing_gen_emb='error')", on_error)
                return
            vecs[i, s] = c.vector.numpy()

        decoder = Decoder(self.model, self.backbone.gen_id, self._eos_ids(), sampling, logits_processor,
                          banned=self.vision_ids())
        with tqdm(total=n * k, desc="embed gen", unit="seq", disable=not progress) as bar:
            decoder.run(source, max_rows=batch_size * k, repeats=k, on_done=on_done)
        failed = {e.index for e in errors}
        vecs[list(failed)] = np.nan
        num_tokens = np.array([[len(t) for t in row] for row in token_ids], dtype=np.int64)
        settings = {"mode": "gen", "recipe": self.recipe.digest(), "num_samples": k,
                    "seed": seed if seed is None or isinstance(seed, int) else "per-item",
                    **{f: getattr(sampling, f) for f in ("do_sample", "temperature", "top_p", "top_k",
                                                         "max_new_tokens")}}
        return EncodeResult(vecs[:, 0] if k == 1 else vecs, "gen", sorted(errors, key=lambda e: e.index),
                            texts=texts, token_ids=token_ids, num_tokens=num_tokens, forced=forced,
                            settings=settings)

    def vision_ids(self) -> list[int]:
        """Placeholder tokens a completion must never contain: teacher-forcing one would make the model
        look for an image that is not there."""
        cfg = self.model.config
        names = ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id")
        return [int(getattr(cfg, n)) for n in names if getattr(cfg, n, None) is not None]

    def _eos_ids(self) -> set[int]:
        eos = self.model.generation_config.eos_token_id
        ids = set(eos if isinstance(eos, list) else [] if eos is None else [eos])
        return ids | {self.backbone.eos_id}


def load(name_or_path: str | Path, device: str | torch.device | None = None,
         dtype: str | torch.dtype | None = None, recipe: Recipe | None = None) -> Encoder:
    """Load a Qwen2-VL / Qwen2.5-VL / Qwen3-VL checkpoint (hub id or local dir) as an `Encoder`."""
    return Encoder(load_backbone(name_or_path, device=device, dtype=dtype, recipe=recipe))
