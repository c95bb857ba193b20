"""Items -> processor batches (left padded), and the length-aware order batches are formed in.

`make_batch` is the one way ume builds processor inputs (inference, SFT collator, RL), and
`preprocess_visuals` the one place images and frames are prepared for it, per `Recipe.vision_preprocess`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from ume.inputs import Item, LoadedItem
from ume.recipe import Recipe, Visual

# qwen-vl-utils' frame factor: frame lists are padded with their last frame to a multiple of it.
FRAME_FACTOR = 2
# qwen-vl-utils' image floor: 4 tokens' worth of pixels at factor 28 (enlarges the 28x28 blank to 56x56).
QWEN_VL_UTILS_MIN_PIXELS = 4 * 28 * 28


def prompt_texts(processor: Any, recipe: Recipe, items: Sequence[LoadedItem],
                 responses: Sequence[str] | None = None) -> list[str]:
    """Chat-rendered prompts; with `responses`, the full conversation including the assistant turn."""
    if responses is None:
        return [processor.apply_chat_template(recipe.messages(it), tokenize=False, add_generation_prompt=True)
                for it in items]
    return [processor.apply_chat_template(recipe.messages(it, r), tokenize=False)
            for it, r in zip(items, responses, strict=True)]


def preprocess_visuals(processor: Any, recipe: Recipe, item: LoadedItem
                       ) -> tuple[list[Visual], list[Image.Image] | None]:
    """The images and video frames of one item exactly as the processor will receive them.

    With "qwen-vl-utils" each image and each frame goes through its public `fetch_image` (enlarged to
    its 3,136-pixel floor, rounded to multiples of 28, alpha on white) and frame lists are padded to an
    even count, as qwen-vl-utils 0.0.11 (UME-R1's pin) did; 0.0.14's `fetch_video` would resize frame
    lists differently, so it is not used. "processor" passes them through untouched.
    """
    images, video = recipe.visuals(item)
    if recipe.vision_preprocess == "processor":
        return images, video
    from qwen_vl_utils import fetch_image  # imported lazily: it imports torchvision

    patch = _image_patch_size(processor)
    fetched: list[Visual] = [fetch_image({"image": v}, image_patch_size=patch) for v in images]
    if video is None:
        return fetched, None
    frames = [fetch_image({"image": f}, image_patch_size=patch) for f in video]
    frames += frames[-1:] * (-len(frames) % FRAME_FACTOR)
    return fetched, frames


def _image_patch_size(processor: Any) -> int:
    """The patch size qwen-vl-utils must resize for; it assumes a 2x2 spatial merge, so check that."""
    ip = processor.image_processor
    if ip.merge_size != 2:
        raise ValueError(f"vision_preprocess='qwen-vl-utils' needs merge_size 2, the processor has {ip.merge_size}")
    return int(ip.patch_size)


def make_batch(processor: Any, recipe: Recipe, items: Sequence[LoadedItem],
               responses: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
    """One left-padded processor batch for `items` (the same call for inference and training)."""
    texts = prompt_texts(processor, recipe, items, responses)
    images: list[Visual] = []
    videos: list[list[Image.Image]] = []
    for it in items:
        imgs, video = preprocess_visuals(processor, recipe, it)
        images += imgs
        if video is not None:
            videos.append(video)
    limits = recipe.min_pixels is not None and recipe.max_pixels is not None
    size = {"shortest_edge": recipe.min_pixels, "longest_edge": recipe.max_pixels}
    kwargs: dict[str, Any] = {}
    if images:
        kwargs["images"] = images
        if limits:
            kwargs["images_kwargs"] = {"size": size}
    if videos:
        kwargs["videos"] = videos
        kwargs["videos_kwargs"] = {"do_sample_frames": False}  # frames are already sampled (inputs.py)
        if recipe.vision_preprocess == "qwen-vl-utils" and limits:
            # transformers 4.49 (the reference's) resized frames with the image limits and no total cap
            kwargs["videos_kwargs"].update(size=size, cap_pixels_per_frame=False)
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
        tokens += _pixel_tokens(recipe.blank_image_size ** 2, recipe)
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
    return _pixel_tokens(w * h, recipe)


def _pixel_tokens(pixels: int, recipe: Recipe) -> int:
    """Visual tokens of an image of `pixels` pixels after the recipe's floors and cap (28-pixel tokens)."""
    if recipe.vision_preprocess == "qwen-vl-utils":
        pixels = max(pixels, QWEN_VL_UTILS_MIN_PIXELS)
    if recipe.max_pixels is not None:
        pixels = min(pixels, recipe.max_pixels)
    if recipe.min_pixels is not None:
        pixels = max(pixels, recipe.min_pixels)
    return max(1, pixels // (28 * 28))


def length_order(items: Sequence[Item], recipe: Recipe) -> list[int]:
    """Indices sorted longest first (stable), so batches hold similar lengths and OOM shows early."""
    hints = [length_hint(it, recipe) for it in items]
    return sorted(range(len(items)), key=lambda i: -hints[i])
