"""The generation seam: settings as transformers resolves them, HF `generate` parity with a real
Instruct-like config, rollouts that do not collapse, disc that stops at `<disc_emb>`, mode "both", the
format reward, and the vLLM backend's CPU-testable parts against a fake engine."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from reference_impl import reference_disc
from transformers import GenerationConfig
from transformers.generation.logits_process import LogitsProcessorList, SuppressTokensLogitsProcessor

import ume
from ume.batching import make_batch
from ume.generation import DEFAULTS, UNSUPPORTED, GenerationSettings, complete_ids, finish
from ume.generation_vllm import VLLMBackend, sampling_params
from ume.inputs import InputLimits, load_item
from ume.train.rewards import format_reward
from ume.train.rollouts import Rollouts

# Qwen2-VL-Instruct's generation_config.json (the fields that shape sampling), which UME-R1 checkpoints inherit
INSTRUCT = {"do_sample": True, "temperature": 0.1, "top_k": 1, "top_p": 0.001, "repetition_penalty": 1.05}


def cos(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


@pytest.fixture(scope="module")
def instruct(tiny_dirs):
    """A private copy of the tiny model whose generation_config is Qwen2-VL-Instruct's."""
    enc = ume.load(tiny_dirs["qwen2_vl"], device="cpu")
    for k, v in INSTRUCT.items():
        setattr(enc.model.generation_config, k, v)
    return enc


def test_defaults_are_transformers_own():
    theirs = GenerationConfig._get_default_generation_params()
    assert {k: theirs[k] for k in DEFAULTS if k in theirs} == {k: v for k, v in DEFAULTS.items() if k in theirs}
    assert {k for k in DEFAULTS if k not in theirs} == {"min_p", "renormalize_logits"}  # off when unset
    assert all(theirs.get(k, v) == v for k, v in UNSUPPORTED.items() if k in theirs)


def test_settings_resolve_as_generate_does():
    gc = GenerationConfig(**INSTRUCT)
    s = GenerationSettings.from_config(gc, max_new_tokens=32)
    assert (s.do_sample, s.temperature, s.top_k, s.top_p, s.repetition_penalty) == (True, 0.1, 1, 0.001, 1.05)
    assert GenerationSettings.from_config(GenerationConfig(), 5).top_k == 50  # transformers' own default
    over = GenerationSettings.from_config(gc, 8, temperature=0.7, repetition_penalty=1.0)
    assert (over.temperature, over.repetition_penalty, over.top_k) == (0.7, 1.0, 1)
    samp = GenerationSettings.sampling(max_new_tokens=8)  # pass@k / RL: the reference's fresh config
    assert (samp.do_sample, samp.temperature, samp.top_k, samp.top_p, samp.repetition_penalty) == (
        True, 1.0, None, 1.0, 1.0)
    assert samp.describe()["top_k"] is None and "temperature" not in GenerationSettings().describe()
    with pytest.raises(ValueError, match=r"no_repeat_ngram_size|num_beams"):
        GenerationSettings.from_config(GenerationConfig(num_beams=4))
    with pytest.raises(ValueError, match="bad_words_ids"):
        GenerationSettings.from_config(GenerationConfig(bad_words_ids=[[5]]))
    with pytest.raises(ValueError, match="unknown generation setting"):
        GenerationSettings.from_config(gc, tempreature=1.0)


@pytest.mark.parametrize("config", [INSTRUCT, {"do_sample": False, "repetition_penalty": 1.3},
                                    {"do_sample": False, "no_repeat_ngram_size": 2}])
def test_tokens_equal_hf_generate_with_the_checkpoint_config(instruct, config):
    enc = instruct
    gc = enc.model.generation_config
    saved = {k: getattr(gc, k) for k in (*INSTRUCT, "no_repeat_ngram_size")}
    try:
        for k, v in {**dict.fromkeys(saved), "top_k": None, **config}.items():
            setattr(gc, k, v)
        item = ume.Item("describe the colours of everything you can think of")
        ours = enc.encode([item], mode="gen", max_new_tokens=24)
        batch = make_batch(enc.backbone.processor, enc.recipe, [load_item(item, 0, InputLimits())])
        banned = LogitsProcessorList([SuppressTokensLogitsProcessor(enc.vision_ids())])  # ume never samples them
        ref = enc.model.generate(**batch, max_new_tokens=24, logits_processor=banned, generation_config=gc)
        ref_ids = ref[0, batch["input_ids"].shape[1]:].tolist()
        tokens = ours.token_ids[0]
        upto = len(tokens) - 1 if ours.forced[0] else len(tokens)  # an appended <gen_emb> is ume's own
        assert tokens[:upto] == ref_ids[:upto]
        assert upto >= 6  # the check compared real decoding, not an immediate stop
    finally:
        for k, v in saved.items():
            setattr(gc, k, v)


def test_repetition_penalty_of_the_checkpoint_is_applied(instruct):
    """A random tiny model's margins outweigh 1.05, so a strong penalty shows it is applied at all (the
    parity test above shows it is applied exactly as generate() does)."""
    item = [ume.Item("repeat repeat repeat repeat")]
    gc = instruct.model.generation_config
    assert instruct.encode(item, mode="gen", max_new_tokens=4).settings["repetition_penalty"] == 1.05
    runs = {}
    try:
        for penalty in (1.0, 3.0):
            gc.repetition_penalty = penalty
            runs[penalty] = instruct.encode(item, mode="gen", max_new_tokens=24).token_ids[0]
    finally:
        gc.repetition_penalty = INSTRUCT["repetition_penalty"]
    assert runs[1.0] != runs[3.0]
    assert len(set(runs[3.0])) > len(set(runs[1.0]))  # the penalty spreads the tokens


def test_rollouts_and_passk_samples_do_not_collapse_on_an_instruct_config(instruct):
    items = [ume.Item("a red circle above a blue square"), ume.Item("three green triangles")]
    groups = Rollouts(instruct, batch_size=4).generate(items, 4, seeds=[1, 2], temperature=1.0, top_p=1.0,
                                                       max_new_tokens=12)
    for group in groups:
        assert len({tuple(c.token_ids) for c in group}) == 4  # top_k=1 from the checkpoint would give 1
    res = instruct.encode(items, mode="gen", num_samples=4, max_new_tokens=12, seed=0)
    assert res.settings["top_k"] is None and res.settings["temperature"] == 1.0
    assert all(len({tuple(t) for t in res.token_ids[i]}) == 4 for i in range(2))
    greedy = instruct.encode(items[:1], mode="gen", max_new_tokens=12)  # one sequence: the checkpoint's config
    assert greedy.settings["top_k"] == 1


def test_disc_stops_at_its_token_and_equals_the_full_prompt(encoders, media):
    for enc in encoders.values():
        items = [ume.Item("a short text"), ume.Item("an image", images=[media["red"]]),
                 ume.Item("a video", video=media["frames"])]
        ours = enc.encode(items, mode="disc", batch_size=3).embeddings
        for i, item in enumerate(items):
            batch = make_batch(enc.backbone.processor, enc.recipe, [load_item(item, 0, InputLimits())])
            full = reference_disc(enc.model, batch, enc.backbone.disc_id)[0].numpy()
            assert cos(ours[i], full) >= 0.9999


def test_both_gives_the_disc_and_gen_vectors_of_the_separate_modes(encoder, media):
    items = [ume.Item("a short text"), ume.Item("an image", images=[media["red"]]), ume.Item("")]
    both = encoder.encode(items, mode="both", max_new_tokens=8, on_error="skip")
    disc = encoder.encode(items, mode="disc", on_error="skip")
    gen = encoder.encode(items, mode="gen", max_new_tokens=8, on_error="skip")
    assert [e.index for e in both.errors] == [2] and both.mode == "both"
    for i in range(2):
        assert cos(both.disc_embeddings[i], disc.embeddings[i]) >= 0.9999
        assert cos(both.embeddings[i], gen.embeddings[i]) >= 0.9999
        assert both.token_ids[i] == gen.token_ids[i]
    assert np.isnan(both.disc_embeddings[2]).all() and np.isnan(both.embeddings[2]).all()


PROBES = {  # completion text -> (reference re.search, anchored re.match)
    "<think>a</think><answer>b</answer><gen_emb>": (1, 1),
    " <think>a</think><answer>b</answer><gen_emb>": (1, 0),
    "\n<think>a</think><answer>b</answer><gen_emb>": (1, 0),
    "Sure. <think>a</think><answer>b</answer><gen_emb>": (1, 0),
    "<answer>x</answer><think>a</think><answer>b</answer><gen_emb>": (1, 0),
    "<think>a</think> <answer>b <gen_emb>": (1, 1),
    "<think>a</think><answer>b</answer>": (0, 0),
    "<think>a<answer>b</answer><gen_emb>": (0, 0),
    "<answer>b</answer><gen_emb>": (0, 0),
    "<think>a</think><gen_emb>": (0, 0),
    "<think>a</think><answer>b</answer><gen_emb> trailing": (1, 1),
}


def test_format_reward_follows_the_reference_search():
    texts = list(PROBES)
    assert format_reward(texts).tolist() == [float(v[0]) for v in PROBES.values()]
    assert format_reward(texts, "match").tolist() == [float(v[1]) for v in PROBES.values()]
    assert sum(a != b for a, b in PROBES.values()) == 4


def test_the_end_rule_is_the_same_token_by_token_and_on_a_whole_sequence():
    gen, eos = 7, {9}
    assert complete_ids([1, 2, 7, 3], gen, eos, 10) == ([1, 2, 7], False, False)
    assert complete_ids([1, 9, 3], gen, eos, 10) == ([1, 7], True, True)
    assert complete_ids([1, 2, 3, 4], gen, eos, 3) == ([1, 2, 3, 7], True, False)
    assert complete_ids([1, 2], gen, eos, 10) == ([1, 2, 7], True, False)  # stopped short by the backend
    tokens: list[int] = []
    for t in [1, 2, 3, 4]:
        t, _ = finish(tokens, t, gen, eos, 3)
        tokens.append(t)
        if t == gen:
            break
    assert tokens == [1, 2, 3, 7]


# --- vLLM backend, with a fake engine (vLLM itself needs a GPU) -----------------------------------------
@dataclass
class _Out:
    token_ids: list[int]


@dataclass
class _Request:
    outputs: list[_Out]


class FakeLLM:
    """vLLM's `LLM.generate(prompts, params, use_tqdm=...) -> [RequestOutput(outputs=[CompletionOutput])]`,
    answering with ids the test chooses."""

    def __init__(self, answers):
        self.answers, self.calls = answers, []

    def generate(self, prompts, params, use_tqdm=True):
        self.calls.append((prompts, params))
        return [_Request([_Out(ids) for ids in self.answers(p, q)]) for p, q in zip(prompts, params, strict=True)]


def test_vllm_prompts_params_and_readout_against_the_hf_backend(encoder, media):
    enc, bb = encoder, encoder.backbone
    items = [ume.Item("a short text"), ume.Item("an image", images=[media["red"]])]
    hf = enc.encode(items, mode="gen", max_new_tokens=10)
    by_text = {}
    for i, it in enumerate(items):
        text = bb.processor.apply_chat_template(enc.recipe.messages(load_item(it, i, InputLimits())), tokenize=False,
                                                add_generation_prompt=True)
        raw = list(hf.token_ids[i])  # what a vLLM run of the same model would return
        if hf.forced[i]:
            raw = raw[:-1]
        elif raw[-1] == bb.gen_id:
            raw += [bb.eos_id]  # vLLM stops at <gen_emb> too; extra ids after it are ignored
        by_text[text] = raw
    fake = FakeLLM(lambda p, q: [by_text[p["prompt"]]] * q["n"])
    backend = VLLMBackend(bb, llm=fake, eos_ids=enc.eos_ids(), banned=enc.vision_ids())
    v = enc.encode(items, mode="gen", max_new_tokens=10, backend=backend)
    assert v.settings["backend"] == "vllm"
    assert v.token_ids == hf.token_ids and (v.forced == hf.forced).all()
    for i in range(2):
        assert cos(v.embeddings[i], hf.embeddings[i]) >= 0.9999  # the shared teacher-forced readout
    prompts, params = fake.calls[0]
    assert prompts[1]["multi_modal_data"]["image"][0].size == (56, 56)  # prepared by qwen-vl-utils first
    assert prompts[0]["mm_processor_kwargs"] == {"min_pixels": 784, "max_pixels": 2_359_296}
    p = params[0]
    assert (p["temperature"], p["max_tokens"], p["n"], p["stop_token_ids"][0]) == (0.0, 10, 1, bb.gen_id)
    assert p["detokenize"] is False and set(p["logit_bias"]) == set(enc.vision_ids())


def test_vllm_sampling_params_map_every_setting_or_refuse():
    s = GenerationSettings.sampling(temperature=0.8, top_p=0.9, top_k=20, max_new_tokens=64)
    p = sampling_params(s, 8, 123, [5, 6], [], dict)
    assert (p["n"], p["seed"], p["temperature"], p["top_p"], p["top_k"], p["max_tokens"]) == (8, 123, 0.8, 0.9,
                                                                                               20, 64)
    assert p["logit_bias"] is None
    greedy = sampling_params(GenerationSettings(repetition_penalty=1.05), 1, None, [5], [], dict)
    assert (greedy["temperature"], greedy["top_k"], greedy["repetition_penalty"]) == (0.0, 0, 1.05)
    with pytest.raises(ValueError, match="no_repeat_ngram_size"):
        sampling_params(GenerationSettings(no_repeat_ngram_size=3), 1, None, [5], [], dict)


def test_vllm_missing_says_how_to_install(encoder, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_vllm(name, *args, **kwargs):
        if name == "vllm":
            raise ImportError("No module named 'vllm'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_vllm)
    with pytest.raises(ImportError, match=r"pip install 'ume\[vllm\]'"):
        encoder.encode(["x"], mode="gen", max_new_tokens=2, backend="vllm")
    torch.manual_seed(0)


def test_backends_come_from_one_registry(encoder):
    import importlib

    from ume.backends import BACKENDS
    from ume.cli import BackendOpt

    assert [b.value for b in BackendOpt] == list(BACKENDS) == ["hf", "vllm"]  # the CLI's choices are the registry
    for name, entry in BACKENDS.items():
        assert getattr(importlib.import_module(entry.module), entry.cls).name == name
    with pytest.raises(ValueError, match="unknown generation backend 'sglang'; choose from 'hf', 'vllm'"):
        encoder.encode(["x"], mode="gen", max_new_tokens=2, backend="sglang", show_progress=False)
    with pytest.raises(ValueError, match="the 'vllm' generation backend does not take logits_hook"):
        encoder.encode(["x"], mode="gen", max_new_tokens=2, backend="vllm", show_progress=False,
                       logits_processor=lambda ids, scores: scores)
