"""Loading a Qwen-VL checkpoint (hub id or local directory) as the stock transformers model.

We add the two embedding tokens the way the reference does and otherwise leave the model alone.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any

import torch

from ume.families import Family, family_of
from ume.readout import EmbeddingTokens
from ume.recipe import RECIPE_FILE, Recipe

UME_TOKENS = ("<gen_emb>", "<disc_emb>")  # order matters: gen first gives 151657 / 151658 on Qwen2-VL


@dataclass
class Backbone:
    """A loaded checkpoint: the stock model and processor, its family, recipe and token ids."""

    model: Any
    processor: Any
    family: Family
    recipe: Recipe
    gen_id: int
    disc_id: int
    eos_id: int
    pad_id: int
    source: str
    added_tokens: bool  # True when load() registered <gen_emb>/<disc_emb> itself

    @property
    def tokenizer(self) -> Any:
        return self.processor.tokenizer

    @property
    def tokens(self) -> EmbeddingTokens:
        """The ids `ume.readout` reads: `<disc_emb>` and `<gen_emb>`."""
        return EmbeddingTokens(disc=self.disc_id, gen=self.gen_id)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def save(self, out: str | Path) -> Path:
        """Save model, processor and recipe in the HF layout (loadable by plain transformers too)."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(out)
        self.processor.save_pretrained(out)
        self.recipe.save(out)
        return out


def init_ume_rows(model: Any, tokenizer: Any, family: Family) -> None:
    """Initialise the `<gen_emb>`/`<disc_emb>` rows from the family's designated source tokens.

    The reference copies the input-embedding row; when the output head is untied we copy its row from
    the same source token too (our choice; the reference only ties-2B, where it is the same tensor).
    """
    pairs = [(tokenizer.convert_tokens_to_ids(t), tokenizer.convert_tokens_to_ids(src))
             for t, src in zip(UME_TOKENS, (family.gen_init, family.disc_init), strict=True)]
    matrices = [model.get_input_embeddings().weight]
    out = model.get_output_embeddings()
    if out is not None and out.weight.data_ptr() != matrices[0].data_ptr():
        matrices.append(out.weight)
    with torch.no_grad():
        for w in matrices:
            for dst, src in pairs:
                w[dst] = w[src]


def register_ume_tokens(model: Any, tokenizer: Any, family: Family) -> bool:
    """Add the ume tokens if the tokenizer lacks them; resize only when the matrix has no room.

    A checkpoint that already has both tokens (e.g. a released UME-R1) is left untouched.
    """
    vocab = tokenizer.get_vocab()
    if all(t in vocab for t in UME_TOKENS):
        return False
    if any(t in vocab for t in UME_TOKENS):
        raise ValueError(f"tokenizer has only one of {UME_TOKENS}; refusing to guess the other's id")
    tokenizer.add_tokens(list(UME_TOKENS))  # ordinary added tokens, not special (as the reference)
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    init_ume_rows(model, tokenizer, family)
    return True


def find_recipe(source: str | Path) -> Recipe:
    """The checkpoint's `ume_recipe.json` — from a local directory, or the hub repo (or its cache offline) —
    else the reference recipe. Only an absent file falls back: a malformed one is an error, never ignored.
    Inference and both trainers resolve recipes through here."""
    source = resolve_source(source)
    local = Path(source)
    if local.is_dir():
        return Recipe.load(local)
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    try:
        path = hf_hub_download(str(source), RECIPE_FILE)
    except LocalEntryNotFoundError:  # (a subclass of EntryNotFoundError: caught first) offline, not cached
        warnings.warn(f"{source}: {RECIPE_FILE} is not in the hub cache and the hub is unreachable; using the "
                      "reference recipe (UME-R1's own checkpoints carry none)", stacklevel=2)
        return Recipe()
    except EntryNotFoundError:  # the repo has none (the released UME-R1 checkpoints): the reference recipe
        return Recipe()
    return Recipe.load(Path(path).parent)


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_device(device: str | torch.device | None) -> torch.device:
    """The device to run on (default: CUDA when present); an unusable CUDA device is a clear error now, not a
    stack trace from deep inside torch once the model is loaded."""
    dev = torch.device(device) if device is not None else default_device()
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r}: no CUDA device is visible (torch.cuda.is_available() is False); "
                         "use --device cpu, or leave it unset to use CUDA only when present")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"device {str(device)!r}: only {torch.cuda.device_count()} CUDA device(s) are visible")
    return dev


RUN_MODEL_DIR = "model"
"""Where `ume train ... --output DIR` puts the final model: DIR/model, with the run's own files beside it."""


def resolve_source(source: str | Path) -> str:
    """The checkpoint a model argument names, checked (`check_source`): a hub id or a checkpoint directory as
    given; a ume run directory (no config.json of its own, a finished `model/` inside) as that final model."""
    source = str(source)
    check_source(source)
    local = Path(source).expanduser()
    if local.is_dir() and not (local / "config.json").is_file():
        if (local / RUN_MODEL_DIR / "config.json").is_file():
            return str(local / RUN_MODEL_DIR)
        done = sorted((p.name for p in local.glob("checkpoint-*") if (p / "config.json").is_file()),
                      key=lambda n: int(n[11:]) if n[11:].isdigit() else -1)
        hint = f"; its latest checkpoint is {local / done[-1]}" if done else ""
        raise FileNotFoundError(f"model {source!r}: the directory has no config.json (not a checkpoint) and no "
                                f"finished {RUN_MODEL_DIR}/ of a training run{hint}")
    return source


@cache
def check_source(source: str) -> None:
    """Fail at once, naming the cause, for a model that cannot be found: a path (absolute, ~ or . first, a
    backslash, or more than one '/') must exist locally; a hub id must be in the local hub cache or the hub must
    answer (else transformers would retry for most of a minute, then blame the network)."""
    if Path(source).expanduser().exists():
        return
    fix = "give a checkpoint directory (one holding config.json) or a hub id such as zhibinlan/UME-R1-2B"
    if Path(source).is_absolute() or source.startswith(("~", ".")) or "\\" in source or source.count("/") > 1:
        raise FileNotFoundError(f"model {source!r}: no such directory; {fix}")
    from huggingface_hub import constants, try_to_load_from_cache

    if isinstance(try_to_load_from_cache(source, "config.json"), str):
        return
    if constants.HF_HUB_OFFLINE or not _reachable(constants.ENDPOINT):
        why = "HF_HUB_OFFLINE is set" if constants.HF_HUB_OFFLINE else f"{constants.ENDPOINT} is unreachable"
        raise FileNotFoundError(f"model {source!r}: no such local directory, not in the Hugging Face cache, and "
                                f"{why}; {fix}")


def _reachable(url: str, timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the hub opens within `timeout` (one try; DNS failures answer at once)."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    try:
        socket.create_connection((parts.hostname or "", parts.port or 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """bf16 on GPU, fp32 on CPU, unless asked otherwise."""
    if dtype is None:
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    table = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
             "float16": torch.float16, "fp16": torch.float16}
    if dtype not in table:
        raise ValueError(f"unknown dtype {dtype!r}; choose from {sorted(table)}")
    return table[dtype]


def load_backbone(name_or_path: str | Path, device: str | torch.device | None = None,
                  dtype: str | torch.dtype | None = None, recipe: Recipe | None = None,
                  attn_implementation: str | None = None, min_pixels: int | None = None,
                  max_pixels: int | None = None) -> Backbone:
    """Load model + processor with the Auto classes and make them ready for ume.

    `attn_implementation` goes to transformers ("sdpa", "flash_attention_2", "eager"; default: its choice);
    `min_pixels` / `max_pixels` replace the recipe's per-image floor / cap (a lower cap bounds memory and time
    per image; it changes the vectors, and so the recipe digest that keys caches)."""
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

    source = resolve_source(name_or_path)
    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    config = AutoConfig.from_pretrained(source)
    family = family_of(config.model_type)
    processor = AutoProcessor.from_pretrained(source)
    processor.tokenizer.padding_side = "left"
    extra = {} if attn_implementation is None else {"attn_implementation": attn_implementation}
    model = AutoModelForImageTextToText.from_pretrained(source, dtype=torch_dtype, **extra)
    recipe = recipe or find_recipe(source)
    pixels = {k: v for k, v in (("min_pixels", min_pixels), ("max_pixels", max_pixels)) if v is not None}
    if pixels:
        recipe = replace(recipe, **pixels)
    added = register_ume_tokens(model, processor.tokenizer, family)
    model.to(dev).eval()
    tok = processor.tokenizer
    return Backbone(
        model=model, processor=processor, family=family, recipe=recipe,
        gen_id=tok.convert_tokens_to_ids(UME_TOKENS[0]), disc_id=tok.convert_tokens_to_ids(UME_TOKENS[1]),
        eos_id=tok.convert_tokens_to_ids("<|im_end|>"), pad_id=tok.pad_token_id, source=source,
        added_tokens=added,
    )
