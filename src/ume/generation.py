"""The generation seam: one way to turn prompts into completions, for inference, evaluation and RL alike.

A `GenerationBackend` takes prompts (validated items, pulled lazily from a source so memory stays bounded)
and `GenerationSettings`, and returns one `Completion` per (item, sample): the generated token ids ending
with `<gen_emb>`, whether ume had to append it, and — when the backend gets it for free — the `<gen_emb>`
vector (and the `<disc_emb>` vector of the prompt). Where a backend returns no vector, the encoder reads it
with the one teacher-forced readout. Backends are chosen by name (`get_backend("hf" | "vllm")`; the names are
`ume.backends.BACKENDS`).

Settings follow transformers' own rules: the effective `GenerationConfig` is the user's values over the
checkpoint's `generation_config` over the library's defaults (what `generate()` does), and its logits
processors are transformers' public classes in `generate()`'s order. A field that would change the logits
and that ume does not apply is rejected by name, never ignored.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from transformers import GenerationConfig
from transformers.generation.logits_process import (
    EpsilonLogitsWarper,
    EtaLogitsWarper,
    LogitNormalization,
    LogitsProcessorList,
    MinPLogitsWarper,
    NoRepeatNGramLogitsProcessor,
    RepetitionPenaltyLogitsProcessor,
    SuppressTokensLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
    TypicalLogitsWarper,
)

from ume.inputs import LoadedItem

DEFAULT_BUDGET = 8192  # the reference eval's max_new_tokens
# transformers' defaults for the fields ume applies (GenerationConfig._get_default_generation_params; a test
# keeps them equal): what `generate()` fills in where neither the caller nor the checkpoint set a value.
DEFAULTS: dict[str, Any] = {"do_sample": False, "temperature": 1.0, "top_k": 50, "top_p": 1.0, "min_p": None,
                            "typical_p": 1.0, "epsilon_cutoff": 0.0, "eta_cutoff": 0.0, "repetition_penalty": 1.0,
                            "no_repeat_ngram_size": 0, "suppress_tokens": None, "renormalize_logits": False}
# Fields that change the next-token distribution which ume does not apply: set to anything but their
# default, they are an error (a checkpoint's settings are honoured or refused, never dropped).
UNSUPPORTED: dict[str, Any] = {"num_beams": 1, "penalty_alpha": None, "guidance_scale": None,
                               "sequence_bias": None, "bad_words_ids": None, "encoder_repetition_penalty": 1.0,
                               "encoder_no_repeat_ngram_size": 0, "min_length": 0, "min_new_tokens": None,
                               "forced_bos_token_id": None, "forced_eos_token_id": None,
                               "exponential_decay_length_penalty": None, "begin_suppress_tokens": None,
                               "top_h": None, "watermarking_config": None, "stop_strings": None,
                               "remove_invalid_values": False, "num_return_sequences": 1}


@dataclass(frozen=True)
class GenerationSettings:
    """The effective decoding settings of one run (the fields of `DEFAULTS`, resolved) and its budget."""

    do_sample: bool = False
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float = 1.0
    min_p: float | None = None
    typical_p: float = 1.0
    epsilon_cutoff: float = 0.0
    eta_cutoff: float = 0.0
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    suppress_tokens: tuple[int, ...] | None = None
    renormalize_logits: bool = False
    max_new_tokens: int = DEFAULT_BUDGET

    @classmethod
    def from_config(cls, model_config: GenerationConfig | None, max_new_tokens: int | None = None,
                    **overrides: Any) -> GenerationSettings:
        """What `generate()` would use: `overrides` (None = unset) over the checkpoint's config over the
        defaults. A greedy config keeps its sampling fields (they are inert, as in `generate()`)."""
        base = model_config.to_dict() if model_config is not None else {}
        bad = {k: base[k] for k, default in UNSUPPORTED.items() if base.get(k) is not None and base[k] != default}
        if bad:
            raise ValueError(f"generation_config sets {bad}, which ume's decoder does not apply; remove them from "
                             "the checkpoint's generation_config.json (or ask for support)")
        values = {k: next((v for v in (overrides.get(k), base.get(k)) if v is not None), default)
                  for k, default in DEFAULTS.items()}
        unknown = set(overrides) - set(DEFAULTS)
        if unknown:
            raise ValueError(f"unknown generation setting(s) {sorted(unknown)}; known: {sorted(DEFAULTS)}")
        if values["suppress_tokens"] is not None:
            values["suppress_tokens"] = tuple(values["suppress_tokens"])
        return cls(**values, max_new_tokens=max_new_tokens or DEFAULT_BUDGET).checked()

    @classmethod
    def sampling(cls, temperature: float | None = None, top_p: float | None = None, top_k: int | None = None,
                 repetition_penalty: float | None = None, max_new_tokens: int | None = None) -> GenerationSettings:
        """Plain sampling for pass@k and RL rollouts, as the reference's `GenerationConfig(do_sample=True,
        temperature=1)`: temperature 1, top_p 1, top_k off, no penalty unless told — never the checkpoint's
        near-greedy defaults (an Instruct config's top_k=1 would make every sample the same)."""
        return cls(do_sample=True, temperature=1.0 if temperature is None else temperature,
                   top_p=1.0 if top_p is None else top_p, top_k=top_k,
                   repetition_penalty=1.0 if repetition_penalty is None else repetition_penalty,
                   max_new_tokens=max_new_tokens or DEFAULT_BUDGET).checked()

    def checked(self) -> GenerationSettings:
        if self.do_sample and self.temperature <= 0:
            raise ValueError(f"temperature must be > 0 when sampling, got {self.temperature} (use greedy instead)")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        return self

    def describe(self) -> dict[str, Any]:
        """The settings written into every output (sampling fields only when sampling)."""
        keys = ["do_sample", "repetition_penalty", "no_repeat_ngram_size", "suppress_tokens", "max_new_tokens"]
        if self.do_sample:
            keys += ["temperature", "top_k", "top_p", "min_p", "typical_p", "epsilon_cutoff", "eta_cutoff"]
        return {k: list(v) if isinstance(v, tuple) else v for k, v in ((k, getattr(self, k)) for k in keys)}

    def processors(self, device: torch.device | str = "cpu") -> LogitsProcessorList:
        """transformers' processors for these settings, in `generate()`'s order (penalties, then the sampling
        warpers, `LogitNormalization` last)."""
        out = LogitsProcessorList()
        if self.repetition_penalty != 1.0:
            out.append(RepetitionPenaltyLogitsProcessor(self.repetition_penalty))
        if self.no_repeat_ngram_size > 0:
            out.append(NoRepeatNGramLogitsProcessor(self.no_repeat_ngram_size))
        if self.suppress_tokens is not None:
            out.append(SuppressTokensLogitsProcessor(list(self.suppress_tokens), device=device))
        if self.do_sample:
            if self.temperature != 1.0:
                out.append(TemperatureLogitsWarper(self.temperature))
            if self.top_k is not None and self.top_k != 0:
                out.append(TopKLogitsWarper(top_k=self.top_k))
            if self.top_p < 1.0:
                out.append(TopPLogitsWarper(top_p=self.top_p))
            if self.min_p is not None:
                out.append(MinPLogitsWarper(min_p=self.min_p))
            if self.typical_p < 1.0:
                out.append(TypicalLogitsWarper(mass=self.typical_p))
            if 0.0 < self.epsilon_cutoff < 1.0:
                out.append(EpsilonLogitsWarper(epsilon=self.epsilon_cutoff))
            if 0.0 < self.eta_cutoff < 1.0:
                out.append(EtaLogitsWarper(epsilon=self.eta_cutoff, device=device))
        if self.renormalize_logits:
            out.append(LogitNormalization())
        return out


@dataclass
class Completion:
    """One generated sequence: ids ending with `<gen_emb>`, and its vectors where the backend read them."""

    key: Any  # (item key, sample index)
    token_ids: list[int]
    forced: bool  # <gen_emb> was appended by ume (missing, or cut by max_new_tokens)
    eos_before_gen: bool = False  # the model ended its turn before emitting <gen_emb>
    vector: torch.Tensor | None = None  # [H] float32, L2-normalised, at the generated <gen_emb>
    disc_vector: torch.Tensor | None = None  # [H] at the prompt's <disc_emb> (from the prefill, when asked)


def finish(tokens: list[int], token: int, gen_id: int, eos_ids: set[int], max_new_tokens: int) -> tuple[int, bool]:
    """The end-of-completion rule every backend applies to a chosen token: an end-of-turn token or a full
    budget becomes an appended `<gen_emb>`. Returns (the token to record, forced)."""
    if token in eos_ids or len(tokens) >= max_new_tokens:
        return gen_id, True
    return token, False


def complete_ids(ids: list[int], gen_id: int, eos_ids: set[int], max_new_tokens: int) -> tuple[list[int], bool, bool]:
    """`finish` applied to a whole generated sequence (backends that return ids at once): the ids up to the
    first `<gen_emb>`, or — at an end-of-turn token or the budget — an appended one.
    Returns (ids ending with `<gen_emb>`, forced, ended its turn before `<gen_emb>`)."""
    tokens: list[int] = []
    for chosen in ids:
        token, forced = finish(tokens, chosen, gen_id, eos_ids, max_new_tokens)
        tokens.append(token)
        if token == gen_id:
            return tokens, forced, chosen in eos_ids
    tokens.append(gen_id)  # the sequence stopped short of both (a stop the backend applied): forced
    return tokens, True, False


@dataclass
class Prompt:
    """One item to complete `len(seeds)` times; `key` comes back in each Completion's key with the sample."""

    key: Any
    item: LoadedItem
    seeds: list[int | None] = field(default_factory=lambda: [None])


PromptSource = Callable[[int], list[Prompt] | None]  # up to n prompts, or None when there are no more
Reject = Callable[[Any, str], None]  # (prompt key, reason): a prompt the backend could not process


class GenerationBackend(Protocol):
    """What the encoder, the eval runner and the RL trainer generate with."""

    name: str

    def run(self, source: PromptSource, settings: GenerationSettings, on_done: Callable[[Completion], None],
            on_reject: Reject, max_rows: int, want_disc: bool = False,
            on_tokens: Callable[[int], None] | None = None) -> None:
        """Complete every prompt `source` yields; call `on_done` per (prompt, sample) as soon as it is done, and
        `on_tokens(n)` as tokens are generated (progress by tokens: one item can take hundreds of them)."""
        ...


def get_backend(name: str, backbone: Any, **options: Any) -> GenerationBackend:
    """A backend by its name in `ume.backends.BACKENDS` ("hf", "vllm"), built on `backbone` with `options`; an
    option the backend does not take is an error naming both (never silently dropped)."""
    import importlib
    import inspect

    from ume.backends import BACKENDS

    if name not in BACKENDS:
        raise ValueError(f"unknown generation backend {name!r}; choose from {', '.join(map(repr, BACKENDS))}")
    entry = BACKENDS[name]
    cls = getattr(importlib.import_module(entry.module), entry.cls)
    taken = inspect.signature(cls).parameters
    refused = sorted(k for k in options if k not in taken)
    if refused:
        raise ValueError(f"the {name!r} generation backend does not take {', '.join(refused)}")
    return cls(backbone, **options)


def row_seed(seed: int, *parts: int) -> int:
    """A well-mixed seed for (seed, item, sample): independent streams, stable across batchings."""
    return int(np.random.SeedSequence([seed, *parts]).generate_state(1, dtype=np.uint64)[0] >> 1)


def seeds_for(seed: int | Sequence[int] | None, index: int, samples: int) -> list[int | None]:
    """Per-sample seeds of item `index`: from one run seed (mixed with the index) or a per-item seed."""
    if seed is None:
        return [None] * samples
    if isinstance(seed, Sequence):
        return [row_seed(seed[index], s) for s in range(samples)]
    return [row_seed(seed, index, s) for s in range(samples)]
