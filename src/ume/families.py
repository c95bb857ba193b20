"""What differs between the supported Qwen-VL families, as data.

Both the tiny-checkpoint builder and the loader read this table, so the special-token layout a tiny
checkpoint is built with is the layout the loader expects of a real one.
"""

from __future__ import annotations

from dataclasses import dataclass

QWEN2_VL_SPECIALS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
)  # fmt: skip
# Qwen2.5 tokenizers add these after the Qwen2-VL specials (ids 151657.. on the real vocabulary).
QWEN2_5_EXTRA = (
    "<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>",
    "<|repo_name|>", "<|file_sep|>",
)  # fmt: skip
QWEN3_EXTRA = ("<tool_response>", "</tool_response>", "<think>", "</think>")
# Of the extra tokens, these are ordinary added tokens (not special) in the real tokenizers.
NON_SPECIAL = {"<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>", "<think>", "</think>"}


@dataclass(frozen=True)
class Family:
    """One Qwen-VL family: its model type, its tokens, and where the ume token rows come from."""

    name: str
    model_type: str
    tokens: tuple[str, ...]
    gen_init: str  # the existing token whose embedding row initialises <gen_emb>
    disc_init: str  # ... and <disc_emb>
    patch_size: int
    default_system: bool  # does the family's chat template insert a default system prompt?


FAMILIES: dict[str, Family] = {
    "qwen2_vl": Family("qwen2_vl", "qwen2_vl", QWEN2_VL_SPECIALS,
                       "<|object_ref_end|>", "<|object_ref_start|>", 14, True),
    "qwen2_5_vl": Family("qwen2_5_vl", "qwen2_5_vl", QWEN2_VL_SPECIALS + QWEN2_5_EXTRA,
                         "</tool_call>", "<tool_call>", 14, True),
    # Qwen3-VL keeps the Qwen2.5 layout and adds tool-response / think tokens; the reference does not
    # cover it, so we use the Qwen2.5 choice (documented in the README).
    "qwen3_vl": Family("qwen3_vl", "qwen3_vl", QWEN2_VL_SPECIALS + QWEN2_5_EXTRA + QWEN3_EXTRA,
                       "</tool_call>", "<tool_call>", 16, False),
}  # fmt: skip


def family_of(model_type: str) -> Family:
    """The family for a config's `model_type`, with a clear error for unsupported models."""
    for fam in FAMILIES.values():
        if fam.model_type == model_type:
            return fam
    supported = ", ".join(f.model_type for f in FAMILIES.values())
    raise ValueError(f"unsupported model_type {model_type!r}: ume supports {supported}")
