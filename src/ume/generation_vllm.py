"""The "vllm" generation backend (GPU): vLLM writes the reasoning, ume's own model reads the vector.

Stock vLLM cannot return hidden states at generated tokens (vllm-project/vllm #4435, #6165), so — as the
UME-R1 maintainers advise (UME-R1 #11) — vLLM generates the completion ids and the encoder reads the
`<gen_emb>` state with its shared teacher-forced readout (one forward over prompt + ids). Prompts are the
recipe's chat text with the images and frames already prepared as the recipe says (qwen-vl-utils), and the
processor limits passed as `mm_processor_kwargs`, so vLLM's prompt tokens are the HF path's. The k samples of
one prompt are one request with `n=k` (vLLM's prefix cache shares the prompt), seeded by the first sample's
seed. Installed with `pip install "ume[vllm]"`; imported only when this backend is chosen.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ume.batching import preprocess_visuals
from ume.generation import Completion, GenerationSettings, Prompt, PromptSource, Reject, complete_ids

SLOTS_PER_CALL = 512  # sequences (prompts x samples) handed to vLLM per generate() call: it batches them itself
# Settings vLLM's sampler has no equivalent for (they would silently differ from the hf backend).
_NO_VLLM = ("typical_p", "epsilon_cutoff", "eta_cutoff", "no_repeat_ngram_size", "suppress_tokens",
            "renormalize_logits")


def _vllm() -> Any:
    try:
        import vllm
    except ImportError as e:
        raise ImportError("the 'vllm' backend needs vLLM on a CUDA machine: pip install 'ume[vllm]', best in "
                          "an environment of its own, as it pins torch 2.14.0 and transformers 5.20 "
                          f"(constraints-vllm.txt) (import failed: {e})") from None
    return vllm


def sampling_params(settings: GenerationSettings, n: int, seed: int | None, stop_ids: Sequence[int],
                    banned: Sequence[int], params_cls: Any) -> Any:
    """vLLM `SamplingParams` equivalent to `settings` (greedy = temperature 0), stopping at `<gen_emb>` or an
    end-of-turn token; a setting vLLM cannot apply is an error, not a silent difference."""
    unsupported = {k: getattr(settings, k) for k in _NO_VLLM
                   if getattr(settings, k) != getattr(GenerationSettings(), k)}
    if unsupported:
        raise ValueError(f"the vllm backend cannot apply {unsupported}; use --backend hf")
    return params_cls(
        n=n, seed=seed, max_tokens=settings.max_new_tokens, stop_token_ids=list(stop_ids),
        temperature=settings.temperature if settings.do_sample else 0.0,
        top_p=settings.top_p if settings.do_sample else 1.0,
        top_k=(settings.top_k or 0) if settings.do_sample else 0,
        min_p=(settings.min_p or 0.0) if settings.do_sample else 0.0,
        repetition_penalty=settings.repetition_penalty,
        logit_bias={int(t): -100.0 for t in banned} or None,
        detokenize=False, skip_special_tokens=False)


class VLLMBackend:
    """Completions from a vLLM engine over the same checkpoint; vectors come from the encoder's readout."""

    name = "vllm"

    def __init__(self, backbone: Any, llm: Any = None, params_cls: Callable[..., Any] | None = None,
                 eos_ids: set[int] | None = None, banned: Sequence[int] = (),
                 engine_kwargs: dict[str, Any] | None = None) -> None:
        """`llm` / `params_cls`: an engine and its `SamplingParams` class (default: vLLM's, on this checkpoint)."""
        self.backbone = backbone
        self.eos_ids = eos_ids if eos_ids is not None else {backbone.eos_id}
        self.banned = list(banned)
        self.params_cls = params_cls or (_vllm().SamplingParams if llm is None else dict)
        self.llm = llm if llm is not None else self._engine(engine_kwargs or {})

    def _engine(self, kwargs: dict[str, Any]) -> Any:
        vllm = _vllm()
        source = getattr(self.backbone, "source", None)
        if not source:
            raise ValueError("the vllm backend needs a checkpoint on disk or on the hub (backbone.source)")
        return vllm.LLM(model=str(source), enable_prefix_caching=True, limit_mm_per_prompt={"image": 8, "video": 1},
                        **kwargs)

    def request(self, prompt: Prompt) -> dict[str, Any]:
        """One vLLM prompt: the chat-rendered text, the prepared visuals and the processor's pixel limits."""
        proc, recipe = self.backbone.processor, self.backbone.recipe
        text = proc.apply_chat_template(recipe.messages(prompt.item), tokenize=False, add_generation_prompt=True)
        images, video = preprocess_visuals(proc, recipe, prompt.item)
        data: dict[str, Any] = {}
        if images:
            data["image"] = images
        if video is not None:
            data["video"] = video
        out: dict[str, Any] = {"prompt": text, "multi_modal_data": data}
        if recipe.min_pixels is not None and recipe.max_pixels is not None:
            out["mm_processor_kwargs"] = {"min_pixels": recipe.min_pixels, "max_pixels": recipe.max_pixels}
        return out

    def run(self, source: PromptSource, settings: GenerationSettings, on_done: Callable[[Completion], None],
            on_reject: Reject, max_rows: int, want_disc: bool = False,
            on_tokens: Callable[[int], None] | None = None) -> None:
        """Complete every prompt; `want_disc` is served by the encoder (vLLM does not run ume's readout)."""
        stop = [self.backbone.gen_id, *sorted(self.eos_ids)]
        while (prompts := source(SLOTS_PER_CALL)) is not None:
            requests, kept, params = [], [], []
            for p in prompts:
                try:
                    requests.append(self.request(p))
                except Exception as e:  # a prompt vLLM cannot be given is that item's error
                    on_reject(p.key, f"vllm prompt failed: {e}")
                    continue
                kept.append(p)
                params.append(sampling_params(settings, len(p.seeds), p.seeds[0], stop, self.banned, self.params_cls))
            if not requests:
                continue
            for p, out in zip(kept, self.llm.generate(requests, params, use_tqdm=False), strict=True):
                for s, o in enumerate(out.outputs[:len(p.seeds)]):
                    tokens, forced, eos = complete_ids(list(o.token_ids), self.backbone.gen_id, self.eos_ids,
                                                       settings.max_new_tokens)
                    if on_tokens is not None:
                        on_tokens(len(tokens))
                    on_done(Completion((p.key, s), tokens, forced, eos))
