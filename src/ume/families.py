"""What differs between the supported Qwen-VL families, as data: one record per family.

The loader, the tiny-checkpoint builder, the trainers (merger and LoRA module names) and the CLI (its family
choices) all read this table, so adding a family is adding its record here. The special-token layout a tiny
checkpoint is built with is the layout the loader expects of a real one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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


LLM_LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class Family:
    """One Qwen-VL family: its model type and transformers classes, its tokens, where the ume token rows come
    from, the names of its vision modules, and the shape of its tiny test checkpoint."""

    name: str
    model_type: str
    tokens: tuple[str, ...]
    gen_init: str  # the existing token whose embedding row initialises <gen_emb>
    disc_init: str  # ... and <disc_emb>
    patch_size: int
    default_system: bool  # does the family's chat template insert a default system prompt?
    config_class: str  # transformers class names
    processor_class: str
    video_processor_class: str
    mergers: tuple[str, ...]  # modules of the vision tower that project into the LLM (trained as "merger")
    vision_linears: tuple[str, ...]  # the vision blocks' linear layers (LoRA targets)
    # (depth, vision width, LLM width) -> the vision_config of a tiny checkpoint of this family
    tiny_vision: Callable[[int, int, int], dict[str, Any]]
    text_extra: Callable[[int], dict[str, Any]] = lambda head_dim: {}  # text_config keys beyond the common ones
    mrope_interleaved: bool = False


def _qwen2_vision(depth: int, dim: int, hidden: int) -> dict[str, Any]:
    return dict(depth=depth, embed_dim=dim, hidden_size=hidden, num_heads=2, mlp_ratio=2, patch_size=14,
                spatial_merge_size=2, temporal_patch_size=2)


def _qwen2_5_vision(depth: int, dim: int, hidden: int) -> dict[str, Any]:
    return dict(depth=depth, hidden_size=dim, intermediate_size=2 * dim, num_heads=2, out_hidden_size=hidden,
                patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=56,
                fullatt_block_indexes=[depth - 1])


def _qwen3_vision(depth: int, dim: int, hidden: int) -> dict[str, Any]:
    return dict(depth=depth, hidden_size=dim, intermediate_size=2 * dim, num_heads=2, out_hidden_size=hidden,
                patch_size=16, spatial_merge_size=2, temporal_patch_size=2, num_position_embeddings=256,
                deepstack_visual_indexes=[depth - 1])


FAMILIES: dict[str, Family] = {
    "qwen2_vl": Family("qwen2_vl", "qwen2_vl", QWEN2_VL_SPECIALS, "<|object_ref_end|>", "<|object_ref_start|>",
                       14, True, "Qwen2VLConfig", "Qwen2VLProcessor", "Qwen2VLVideoProcessor", ("merger",),
                       ("qkv", "proj", "fc1", "fc2"), _qwen2_vision),
    "qwen2_5_vl": Family("qwen2_5_vl", "qwen2_5_vl", QWEN2_VL_SPECIALS + QWEN2_5_EXTRA, "</tool_call>",
                         "<tool_call>", 14, True, "Qwen2_5_VLConfig", "Qwen2_5_VLProcessor", "Qwen2VLVideoProcessor",
                         ("merger",), ("qkv", "proj", "gate_proj", "up_proj", "down_proj"), _qwen2_5_vision),
    # Qwen3-VL keeps the Qwen2.5 layout and adds tool-response / think tokens; the reference does not
    # cover it, so we use the Qwen2.5 choice (documented in the README).
    "qwen3_vl": Family("qwen3_vl", "qwen3_vl", QWEN2_VL_SPECIALS + QWEN2_5_EXTRA + QWEN3_EXTRA, "</tool_call>",
                       "<tool_call>", 16, False, "Qwen3VLConfig", "Qwen3VLProcessor", "Qwen3VLVideoProcessor",
                       ("merger", "deepstack_merger_list"), ("qkv", "proj", "linear_fc1", "linear_fc2"),
                       _qwen3_vision, text_extra=lambda head_dim: {"head_dim": head_dim}, mrope_interleaved=True),
}  # fmt: skip
MERGERS = tuple(dict.fromkeys(m for f in FAMILIES.values() for m in f.mergers))  # every family's merger names


def family_of(model_type: str) -> Family:
    """The family for a config's `model_type`, with a clear error for unsupported models."""
    for fam in FAMILIES.values():
        if fam.model_type == model_type:
            return fam
    supported = ", ".join(f.model_type for f in FAMILIES.values())
    raise ValueError(f"unsupported model_type {model_type!r}: ume supports {supported}")
