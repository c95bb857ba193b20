"""Tiny, randomly initialised Qwen-VL checkpoints built offline with the real transformers classes.

They stand in for real checkpoints in tests, benchmarks and the built-in demo: real configs, a real
processor and a real (small) byte-level BPE tokenizer with the family's special tokens, saved with
`save_pretrained`, so everything that loads them also loads a hub checkpoint. Same seed, same bytes.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from ume.families import FAMILIES, NON_SPECIAL, Family
from ume.recipe import GENERATION_PROMPT, SYSTEM_PROMPT, Recipe

QWEN_PRETOKENIZE = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

# A reconstruction of the Qwen2-VL chat template (stack.md §4.2). Qwen3-VL's template differs only in
# not inserting a default system prompt; the recipe always sends one, so prompts render the same.
_TEMPLATE_HEAD = "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
_DEFAULT_SYSTEM = (
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\n"
    "You are a helpful assistant.<|im_end|>\n{% endif %}"
)
_TEMPLATE_BODY = (
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def chat_template(family: Family) -> str:
    system = _DEFAULT_SYSTEM if family.default_system else ""
    return _TEMPLATE_HEAD + "{% for message in messages %}" + system + _TEMPLATE_BODY


@dataclass(frozen=True)
class TinySize:
    """Dimensions of a tiny checkpoint (text decoder and vision tower)."""

    hidden: int = 64
    layers: int = 2
    heads: int = 4
    kv_heads: int = 2
    ffn: int = 128
    vision_depth: int = 2
    vision_dim: int = 32
    vocab: int = 1000  # BPE merges learned (before special tokens)


SIZES = {
    "tiny": TinySize(),
    "small": TinySize(hidden=128, layers=4, heads=4, kv_heads=2, ffn=256, vision_depth=2, vision_dim=64,
                      vocab=2000),
    # the demo's base (models/ume-demo-*): per step it learns to see ~2.5x faster than "small" (measured)
    "demo": TinySize(hidden=256, layers=6, heads=4, kv_heads=2, ffn=512, vision_depth=4, vision_dim=128,
                     vocab=2000),
    "mid": TinySize(hidden=512, layers=8, heads=8, kv_heads=4, ffn=1024, vision_depth=2, vision_dim=64,
                    vocab=2000),
}

_WORDS = tuple(
    (
        "the a an of and to in on with is are was were this that these those image images video videos text "
        "page document table chart bar title figure row column value number count left right top bottom "
        "middle above below next first second third last red green blue yellow orange purple black white gray "
        "pink brown circle square triangle star diamond hexagon small large big tiny object objects shape "
        "shapes colour color moves moved appears disappears changes frame frames question answer query target "
        "represent input embedding think summary because so therefore there how many which what where who "
        "when does do find retrieve match caption describe classify label class one two three four five six "
        "seven eight nine ten zero most least more less than equal total scene person dog cat car tree house "
        "sky water road sign word words read reading step steps "
    ).split()
)


def tokenizer_corpus(seed: int, n_sentences: int = 700) -> list[str]:
    """A deterministic English-like corpus with the prompt vocabulary, for BPE training."""
    rng = random.Random(seed)
    texts = [GENERATION_PROMPT, SYSTEM_PROMPT, "<think> </think> <answer> </answer>"] * 20
    for _ in range(n_sentences):
        words = [rng.choice(_WORDS) for _ in range(rng.randint(4, 14))]
        if rng.random() < 0.3:
            words.insert(rng.randrange(len(words)), str(rng.randint(0, 999)))
        sent = " ".join(words).capitalize() + rng.choice([".", "?", "!", ":", ","])
        if rng.random() < 0.2:
            sent = f"<think>{sent}</think><answer>{rng.choice(_WORDS)}</answer>"
        texts.append(sent)
    return texts


def _add_family_tokens(tok, family: Family) -> None:
    """Specials and plain added tokens one at a time, which keeps the real tokenizers' id order."""
    for t in family.tokens:
        if t in NON_SPECIAL:
            tok.add_tokens([t])
        else:
            tok.add_special_tokens({"additional_special_tokens": [t]}, replace_extra_special_tokens=False)
    tok.eos_token, tok.pad_token = "<|im_end|>", "<|endoftext|>"


def read_corpus(path: str | Path) -> list[str]:
    """Extra tokenizer training text: a text file (one document per line) or an SFT JSON file (all turns)."""
    path = Path(path)
    if path.suffix == ".json":
        records = json.loads(path.read_text(encoding="utf-8"))
        return [turn["value"] for rec in records for side in ("qry", "pos")
                for turn in rec.get(side, {}).get("conversations", [])]
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def build_tokenizer(family: Family, seed: int, vocab: int, with_ume_tokens: bool,
                    corpus: Sequence[str] = ()):
    """A byte-level BPE `Qwen2Tokenizer` with the family's special tokens in the real order."""
    from transformers import Qwen2Tokenizer

    bpe = Tokenizer(models.BPE())
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN_PRETOKENIZE), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator([*tokenizer_corpus(seed), *corpus], trainer)
    model = json.loads(bpe.to_str())["model"]
    merges = [tuple(m) for m in model["merges"]]  # tuples: lists raise "failed to extract enum PyMerges"
    tok = Qwen2Tokenizer(vocab=model["vocab"], merges=merges, unk_token=None, bos_token=None,
                         eos_token=None, pad_token=None)
    _add_family_tokens(tok, family)
    if with_ume_tokens:
        tok.add_tokens(["<gen_emb>", "<disc_emb>"])
    tok.chat_template = chat_template(family)
    return tok


def tiny_config(family: Family, size: TinySize, vocab_size: int, ids: dict[str, int]):
    import transformers as tf

    head_dim = size.hidden // size.heads
    third = head_dim // 2 // 3
    mrope = [head_dim // 2 - 2 * third, third, third]  # must sum to head_dim / 2
    text = dict(vocab_size=vocab_size, hidden_size=size.hidden, intermediate_size=size.ffn,
                num_hidden_layers=size.layers, num_attention_heads=size.heads,
                num_key_value_heads=size.kv_heads, max_position_embeddings=4096,
                bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"],
                pad_token_id=ids["<|endoftext|>"], tie_word_embeddings=True)
    common = dict(image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
                  vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"])
    text.update(family.text_extra(head_dim))
    text["rope_parameters"] = {"rope_type": "default", "rope_theta": 1e4, "mrope_section": mrope,
                               **({"mrope_interleaved": True} if family.mrope_interleaved else {})}
    vision = family.tiny_vision(size.vision_depth, size.vision_dim, size.hidden)
    return getattr(tf, family.config_class)(text_config=text, vision_config=vision, tie_word_embeddings=True,
                                            **common)


def _processor(family: Family, tok):
    import transformers as tf

    factor = family.patch_size * 2  # pixels per visual token side: patch x 2x2 merge
    image = tf.Qwen2VLImageProcessor(size={"shortest_edge": factor**2, "longest_edge": factor**2 * 64},
                                     patch_size=family.patch_size, temporal_patch_size=2, merge_size=2)
    video = getattr(tf, family.video_processor_class)(
        size={"shortest_edge": factor**2 * 4, "longest_edge": factor**2 * 256}, patch_size=family.patch_size,
        temporal_patch_size=2, merge_size=2, cap_pixels_per_frame=True)
    return getattr(tf, family.processor_class)(image_processor=image, tokenizer=tok, video_processor=video,
                                               chat_template=tok.chat_template)


def build_tiny(out: str | Path, family: str = "qwen2_vl", seed: int = 0, size: str | TinySize = "tiny",
               with_ume_tokens: bool = False, vocab_room: int = 64, corpus: Sequence[str] = ()) -> Path:
    """Write a tiny random checkpoint to `out` and return the path.

    By default it mimics a *base* Instruct checkpoint (no `<gen_emb>`/`<disc_emb>` yet, embedding matrix
    padded by `vocab_room` rows like Qwen2-VL's 151,936), so `ume.load` exercises token registration.
    `with_ume_tokens=True` mimics a released UME-R1 checkpoint instead. `vocab_room=0` forces a resize.
    `corpus` adds domain text to the tokenizer's training data (shorter sequences on that domain), the
    way a real model's vocabulary was trained on text like what it will read.
    """
    import transformers as tf

    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; choose from {sorted(FAMILIES)}")
    fam = FAMILIES[family]
    dims = SIZES[size] if isinstance(size, str) else size
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tok = build_tokenizer(fam, seed, dims.vocab, with_ume_tokens, corpus)
    ids = {t: tok.convert_tokens_to_ids(t) for t in fam.tokens}
    torch.manual_seed(seed)
    config = tiny_config(fam, dims, len(tok) + vocab_room, ids)
    model = tf.AutoModelForImageTextToText.from_config(config)
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.generation_config.bos_token_id = ids["<|endoftext|>"]
    if with_ume_tokens:
        from ume.backbone import init_ume_rows

        init_ume_rows(model, tok, fam)
    model.save_pretrained(out)
    _processor(fam, tok).save_pretrained(out)
    Recipe().save(out)
    return out


def qwen2_tokenizer_from_tiktoken(path: str | Path, family: str = "qwen2_vl"):
    """The real Qwen2 vocabulary (151,643 BPE ranks from a `qwen.tiktoken` file) as a `Qwen2Tokenizer`.

    With the family's specials added in their real order this reproduces the released tokenizer's ids
    (stack.md §9), which lets tests check token registration against the real numbers offline.
    Merges are derived with tiktoken semantics (the rank order of each token's best split).
    """
    import base64

    from transformers import Qwen2Tokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    ranks: dict[bytes, int] = {}
    for line in Path(path).read_bytes().splitlines():
        if line.strip():
            tok, rank = line.split()
            ranks[base64.b64decode(tok)] = int(rank)
    byte_map = bytes_to_unicode()

    def text(b: bytes) -> str:
        return "".join(byte_map[c] for c in b)

    merges = []
    for token, rank in ranks.items():
        if len(token) > 1:
            splits = [(token[:i], token[i:], rank) for i in range(1, len(token))
                      if token[:i] in ranks and token[i:] in ranks]
            merges += sorted(splits, key=lambda x: (ranks[x[0]], ranks[x[1]]))
    merges.sort(key=lambda x: x[2])
    tok = Qwen2Tokenizer(vocab={text(t): r for t, r in ranks.items()},
                         merges=[(text(a), text(b)) for a, b, _ in merges],
                         unk_token=None, bos_token=None, eos_token=None, pad_token=None)
    _add_family_tokens(tok, FAMILIES[family])
    return tok
