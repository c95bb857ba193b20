"""Items -> processor batches (left padded), and the length-aware order batches are formed in."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from ume.inputs import Item, LoadedItem
from ume.recipe import Recipe


def prompt_texts(processor: Any, recipe: Recipe, items: Sequence[LoadedItem],
                 responses: Sequence[str] | None = None) -> list[str]:
    """Chat-rendered prompts; with `responses`, the full conversation including the assistant turn."""
    if responses is None:
        return [processor.apply_chat_template(recipe.messages(it), tokenize=False, add_generation_prompt=True)
                for it in items]
    return [processor.apply_chat_template(recipe.messages(it, r), tokenize=False)
            for it, r in zip(items, responses, strict=True)]


def make_batch(processor: Any, recipe: Recipe, items: Sequence[LoadedItem],
               responses: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
    """One left-padded processor batch for `items` (the same call for inference and training)."""
    texts = prompt_texts(processor, recipe, items, responses)
    images: list[Image.Image] = []
    videos: list[list[Image.Image]] = []
    for it in items:
        imgs, video = recipe.visuals(it)
        images += imgs
        if video is not None:
            videos.append(video)
    size = {"shortest_edge": recipe.min_pixels, "longest_edge": recipe.max_pixels}
    kwargs: dict[str, Any] = {}
    if images:
        kwargs["images"] = images
        if recipe.min_pixels is not None and recipe.max_pixels is not None:
            kwargs["images_kwargs"] = {"size": size}
    if videos:
        kwargs["videos"] = videos
        kwargs["videos_kwargs"] = {"do_sample_frames": False}  # frames are already sampled (inputs.py)
    processor.tokenizer.padding_side = "left"
    batch = processor(text=texts, padding=True, return_tensors="pt", **kwargs)
    return dict(batch)


def length_hint(item: Item, recipe: Recipe) -> int:
    """A cheap estimate of an item's prompt length in tokens, for sorting only (reads image headers)."""
    tokens = len(item.text or "") // 3
    for src in item.images:
        tokens += _image_tokens(src, recipe)
    if item.video is not None:
        tokens += 64 * recipe.num_frames
    if not item.images and item.video is None:
        tokens += 1
    return tokens


def _image_tokens(src: Any, recipe: Recipe) -> int:
    try:
        if isinstance(src, Image.Image):
            w, h = src.size
        elif isinstance(src, (str, Path)):
            with Image.open(src) as img:
                w, h = img.size
        else:
            return 64
    except Exception:  # a broken file is reported later, when it is loaded for real
        return 0
    pixels = w * h
    if recipe.max_pixels is not None:
        pixels = min(pixels, recipe.max_pixels)
    if recipe.min_pixels is not None:
        pixels = max(pixels, recipe.min_pixels)
    return max(1, pixels // (28 * 28))


def length_order(items: Sequence[Item], recipe: Recipe) -> list[int]:
    """Indices sorted longest first (stable), so batches hold similar lengths and OOM shows early."""
    hints = [length_hint(it, recipe) for it in items]
    return sorted(range(len(items)), key=lambda i: -hints[i])
