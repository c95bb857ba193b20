"""Items -> processor batches (left padded), and the length-aware order batches are formed in.

`make_batch` is the one way ume builds processor inputs (inference, SFT collator, RL), and
`preprocess_visuals` the one place images and frames are prepared for it, per `Recipe.vision_preprocess`.
"""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from ume.inputs import PIXEL_ERRORS, Item, LoadedItem
from ume.recipe import Recipe, Visual

# qwen-vl-utils' frame factor: frame lists are padded with their last frame to a multiple of it.
FRAME_FACTOR = 2
# qwen-vl-utils' image floor in visual tokens (at factor 28 it enlarges the 28x28 blank to 56x56).
QWEN_VL_UTILS_MIN_TOKENS = 4


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
               responses: Sequence[str] | None = None, texts: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
    """One left-padded processor batch for `items` (the same call for inference and training).

    `texts`: the items' conversations already rendered (`prompt_texts` + what follows), so a caller that also
    needs the prompts renders each item once; without it they are rendered here (with `responses`, if given).
    """
    if texts is None:
        texts = prompt_texts(processor, recipe, items, responses)
    elif responses is not None:
        raise ValueError("make_batch: give `texts` or `responses`, not both")
    elif len(texts) != len(items):
        raise ValueError(f"make_batch: {len(texts)} texts for {len(items)} items")
    texts = list(texts)
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


def completion_batch(processor: Any, recipe: Recipe, items: Sequence[LoadedItem], completions: Sequence[list[int]],
                     pad_id: int) -> tuple[dict[str, torch.Tensor], int, torch.Tensor, torch.Tensor]:
    """Left-padded prompts followed by right-padded completions, exactly the generated ids (re-tokenising
    decoded text would not reproduce them): the teacher-forced input of the gen readout and of RL.
    Returns the batch, the prompt length, the completion ids [M, T] and their mask [M, T]."""
    batch = make_batch(processor, recipe, items)
    width = max(len(c) for c in completions)
    ids = torch.full((len(completions), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(completions), width), dtype=torch.long)
    for i, c in enumerate(completions):
        ids[i, :len(c)] = torch.tensor(c, dtype=torch.long)
        mask[i, :len(c)] = 1
    prompt_len = batch["input_ids"].shape[1]
    batch["input_ids"] = torch.cat([batch["input_ids"], ids], dim=1)
    batch["attention_mask"] = torch.cat([batch["attention_mask"], mask], dim=1)
    if "mm_token_type_ids" in batch:
        batch["mm_token_type_ids"] = torch.cat([batch["mm_token_type_ids"], torch.zeros_like(ids)], dim=1)
    return batch, prompt_len, ids, mask


def batch_or_isolate(processor: Any, recipe: Recipe, items: Sequence[LoadedItem],
                     reject: Callable[[int, str], None]) -> tuple[list[int], dict[str, torch.Tensor] | None]:
    """`make_batch` for `items`; if the processor refuses the batch, find the items it refuses one by one,
    `reject(index, reason)` each, and batch the rest. Returns (indices batched, batch or None)."""
    try:
        return list(range(len(items))), make_batch(processor, recipe, items)
    except Exception:  # the processor's own error: attributed to the item(s) below, never lost
        pass
    good = []
    for i, item in enumerate(items):
        try:
            make_batch(processor, recipe, [item])
            good.append(i)
        except Exception as e:  # any processor failure is that item's error
            reject(i, f"processor failed: {e}")
    return good, make_batch(processor, recipe, [items[i] for i in good]) if good else None


def token_side(processor: Any) -> int:
    """Pixels per side of one visual token: the processor's patch x its spatial merge (28 on Qwen2/2.5-VL, 32
    on Qwen3-VL)."""
    ip = processor.image_processor
    return int(ip.patch_size) * int(ip.merge_size)


def _image_tokens(src: Any, recipe: Recipe, side: int, read_bytes: bool = False) -> int:
    """Visual tokens of one image from its header; a path that is not a regular file is never opened (a FIFO
    would block), and a broken file counts 0 (it is reported when loaded for real)."""
    try:
        if isinstance(src, Image.Image):
            w, h = src.size
        elif isinstance(src, (str, Path)):
            if not stat.S_ISREG(os.stat(src).st_mode):
                return 0
            with Image.open(src) as img:
                w, h = img.size
        elif read_bytes and isinstance(src, (bytes, bytearray)):
            with Image.open(io.BytesIO(src)) as img:
                w, h = img.size
        else:
            return 64
    except PIXEL_ERRORS:
        return 0
    return _pixel_tokens(w * h, recipe, side)


def _pixel_tokens(pixels: int, recipe: Recipe, side: int) -> int:
    """Visual tokens of an image of `pixels` pixels after the recipe's floors and cap (`side`-pixel tokens)."""
    if recipe.vision_preprocess == "qwen-vl-utils":
        pixels = max(pixels, QWEN_VL_UTILS_MIN_TOKENS * side * side)
    if recipe.max_pixels is not None:
        pixels = min(pixels, recipe.max_pixels)
    if recipe.min_pixels is not None:
        pixels = max(pixels, recipe.min_pixels)
    return max(1, pixels // (side * side))


# --- token budgets ---------------------------------------------------------------------------------------
def visual_tokens(item: Item, recipe: Recipe, side: int) -> int:
    """Estimated visual tokens of an item from its images' headers (bytes included), 64 per video frame, or
    the blank image of a text-only item; `side`: `token_side(processor)`."""
    tokens = sum(_image_tokens(src, recipe, side, read_bytes=True) for src in item.images)
    if item.video is not None:
        tokens += 64 * recipe.num_frames
    if not item.images and item.video is None:
        tokens += _pixel_tokens(recipe.blank_image_size ** 2, recipe, side)
    return tokens


def prompt_overhead(processor: Any, recipe: Recipe) -> int:
    """Tokens of the recipe's prompt around an item's own text and visuals (system turn, chat template,
    `<disc_emb>` and the generation prompt), counted once on an empty item."""
    text = prompt_texts(processor, recipe, [LoadedItem("", [], None)])[0]
    ids = processor.tokenizer(text, add_special_tokens=False)["input_ids"]
    pads = {processor.tokenizer.convert_tokens_to_ids(t) for t in ("<|image_pad|>", "<|video_pad|>")}
    return sum(1 for t in ids if t not in pads)


def estimate_tokens(item: Item, recipe: Recipe, processor: Any, overhead: int = 0) -> int:
    """An item's prompt length in tokens, for limits and budgets: its text tokenized for real, plus
    `visual_tokens` and the recipe's `overhead` (`prompt_overhead`). Within a few tokens of the processor's
    count for images; videos are estimated at 64 tokens per frame."""
    text = item.text or ""
    n_text = len(processor.tokenizer(text, add_special_tokens=False)["input_ids"]) if text else 0
    return overhead + n_text + visual_tokens(item, recipe, token_side(processor))


def token_batches(lengths: Sequence[int], max_items: int, max_tokens: int | None = None) -> list[list[int]]:
    """Indices of `lengths` grouped into batches, longest first (stable): each batch holds at most `max_items`
    items and, padded to its longest item, at most `max_tokens` tokens (items x longest), so one long item never
    pads many short ones into one huge allocation. An item longer than `max_tokens` forms a batch alone."""
    if max_items < 1:
        raise ValueError("max_items must be >= 1")
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:  # longest first: the first item of a batch is its longest
        if current and (len(current) >= max_items
                        or (max_tokens is not None and (len(current) + 1) * lengths[current[0]] > max_tokens)):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches
