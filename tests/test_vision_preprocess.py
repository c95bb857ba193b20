"""ume's batches against UME-R1's own input pipeline (qwen-vl-utils, then the processor).

The reference side is built the way UME-R1's eval collator does it: chat messages whose content items
carry the image (a PIL image, or a base64 JPEG data URL for the text-only blank), `process_vision_info`,
the chat template and one processor call with the eval's min/max pixels. Video frame lists are checked
against golden frames written by qwen-vl-utils 0.0.11 itself (tests/golden), because the installed
0.0.14 resizes frame lists differently from the version UME-R1 ran.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from golden.make_qwen_vl_utils_golden import CASES, GOLDEN, describe, make_frames
from PIL import Image
from qwen_vl_utils import fetch_image, process_vision_info

from ume.batching import make_batch, preprocess_visuals, token_side, visual_tokens
from ume.inputs import InputLimits, Item, LoadedItem, load_image, load_item
from ume.recipe import GENERATION_PROMPT, SYSTEM_PROMPT, Recipe

MIN_PIXELS, MAX_PIXELS = 784, 2_359_296  # UME-R1 eval: resize_min_pixels / resize_max_pixels
SIZE = {"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS}


def noise(width: int, height: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def reference_blank() -> str:
    """The eval collator's blank: a white 28x28 RGB image saved as JPEG, as a base64 data URL."""
    buf = io.BytesIO()
    Image.new("RGB", (28, 28), (255, 255, 255)).save(buf, format="JPEG")
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def reference_batch(proc, samples: list[tuple[str, Image.Image | str]]) -> dict[str, torch.Tensor]:
    """UME-R1's pipeline for (text, image) samples: messages -> process_vision_info -> processor."""
    conversations = [[
        {"role": "system", "content": [{"type": "text", "text": SYSTEM_PROMPT}]},
        {"role": "user", "content": [{"type": "image", "image": image},
                                     {"type": "text", "text": text + "\n<disc_emb>\n" + GENERATION_PROMPT}]},
    ] for text, image in samples]
    images, videos = process_vision_info(conversations, image_patch_size=proc.image_processor.patch_size)
    assert videos is None
    texts = [proc.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in conversations]
    proc.tokenizer.padding_side = "left"
    return dict(proc(text=texts, images=images, padding=True, return_tensors="pt", images_kwargs={"size": SIZE}))


def assert_same_batch(ours: dict[str, torch.Tensor], ref: dict[str, torch.Tensor]) -> None:
    assert ours.keys() == ref.keys()
    for key in ours:
        if key == "pixel_values":
            assert ours[key].shape == ref[key].shape
            assert torch.allclose(ours[key], ref[key], atol=1e-6), (ours[key] - ref[key]).abs().max()
        else:
            assert torch.equal(ours[key], ref[key]), key


def image_pads(proc, batch: dict[str, torch.Tensor]) -> int:
    return int((batch["input_ids"] == proc.tokenizer.convert_tokens_to_ids("<|image_pad|>")).sum())


# --- images --------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"])
def test_text_only_blank_matches_reference(encoders, family):
    proc = encoders[family].backbone.processor
    ours = make_batch(proc, Recipe(), [LoadedItem("Find the red circle.", [], None)])
    assert_same_batch(ours, reference_batch(proc, [("Find the red circle.", reference_blank())]))
    assert image_pads(proc, ours) == 4  # qwen-vl-utils enlarges the 28x28 blank to its 4-token floor


def test_blank_jpeg_decodes_to_pure_white():
    decoded = fetch_image({"image": reference_blank()})
    assert decoded.size == (56, 56)
    assert np.all(np.asarray(decoded) == 255)


@pytest.mark.parametrize("size", [(20, 20), (30, 50), (300, 217), (3000, 2400), (2000, 12), (12, 2000)],
                         ids=["20x20", "30x50", "300x217", "3000x2400", "wide-166to1", "tall-1to166"])
def test_image_matches_reference(encoder, size):
    proc = encoder.backbone.processor
    image = noise(*size)
    ours = make_batch(proc, Recipe(), [LoadedItem("describe", [image], None)])
    assert_same_batch(ours, reference_batch(proc, [("describe", image)]))
    if size == (3000, 2400):  # capped by the processor's max after qwen-vl-utils' 28-rounding
        _, h, w = ours["image_grid_thw"][0].tolist()
        assert h * w * 14 * 14 <= MAX_PIXELS < 2996 * 2408


def test_mixed_batch_matches_reference(encoders):
    proc = encoders["qwen3_vl"].backbone.processor  # patch 16: fetch_image rounds to multiples of 32
    small, mid = noise(30, 50, seed=1), noise(300, 217, seed=2)
    ours = make_batch(proc, Recipe(), [LoadedItem("a", [], None), LoadedItem("bb", [small], None),
                                       LoadedItem("ccc ccc", [mid], None)])
    ref = reference_batch(proc, [("a", reference_blank()), ("bb", small), ("ccc ccc", mid)])
    assert_same_batch(ours, ref)


def test_rgba_image_matches_reference(encoder):
    """ume composites alpha on white while loading; the reference does it inside fetch_image."""
    proc = encoder.backbone.processor
    rgba = np.asarray(noise(90, 70, seed=3).convert("RGBA")).copy()
    rgba[:35, :, 3] = 0  # fully transparent top half
    rgba[35:, :45, 3] = 128  # half transparent bottom left
    image = Image.fromarray(rgba, "RGBA")
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    loaded = load_item(Item("describe", [buf.getvalue()]), 0, InputLimits())
    ours = make_batch(proc, Recipe(), [loaded])
    assert_same_batch(ours, reference_batch(proc, [("describe", image)]))


# --- alpha handling in load_image ----------------------------------------------------------------
def _alpha_images() -> dict[str, Image.Image]:
    rgba = np.asarray(noise(56, 56, seed=4).convert("RGBA")).copy()
    rgba[:20, :, 3] = 0
    rgba[20:40, :, 3] = 100
    base = Image.fromarray(rgba, "RGBA")
    palette = base.convert("RGB").quantize(16)
    palette.info["transparency"] = 0  # palette index 0 is transparent
    return {"RGBA": base, "LA": base.convert("LA"), "PA": base.convert("PA"), "P+transparency": palette}


@pytest.mark.parametrize("mode", ["RGBA", "LA", "PA", "P+transparency"])
def test_load_image_puts_alpha_on_white(mode):
    """Same pixels as qwen-vl-utils' RGBA path (56x56 is not resized by fetch_image)."""
    image = _alpha_images()[mode]
    expected = fetch_image({"image": image.convert("RGBA")})
    got = load_image(image, InputLimits())
    assert got.mode == "RGB" and got.size == expected.size == (56, 56)
    assert np.array_equal(np.asarray(got), np.asarray(expected))
    if mode != "P+transparency":  # the top rows are fully transparent: white, not black
        assert np.all(np.asarray(got)[:20] == 255)


def test_load_image_without_alpha_is_a_plain_conversion():
    image = noise(40, 30, seed=5).quantize(16)
    assert np.array_equal(np.asarray(load_image(image, InputLimits())), np.asarray(image.convert("RGB")))


# --- video frames (golden from qwen-vl-utils 0.0.11) ---------------------------------------------
GOLDEN_CASES = json.loads(Path(GOLDEN).read_text())["cases"]


def test_golden_file_matches_its_cases():
    assert json.loads(Path(GOLDEN).read_text())["qwen_vl_utils"] == "0.0.11"
    assert set(GOLDEN_CASES) == set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_video_frames_match_qwen_vl_utils_0_0_11(encoder, name):
    count, width, height = CASES[name]
    golden = GOLDEN_CASES[name]
    _, frames = preprocess_visuals(encoder.backbone.processor, Recipe(),
                                   LoadedItem("", [], make_frames(count, width, height)))
    assert frames is not None and len(frames) == golden["num_frames"] == count + count % 2
    assert [describe(f) for f in frames] == golden["frames"]


@pytest.mark.parametrize("name", sorted(CASES))
def test_video_frames_are_not_resized_again(encoder, name):
    """After qwen-vl-utils, the video processor leaves frames alone (as 4.49's image processor did)."""
    proc = encoder.backbone.processor
    count, width, height = CASES[name]
    item = LoadedItem("clip", [], make_frames(count, width, height))
    ours = make_batch(proc, Recipe(), [item])
    w, h = GOLDEN_CASES[name]["frames"][0]["size"]
    nframes = GOLDEN_CASES[name]["num_frames"]
    assert ours["video_grid_thw"].tolist() == [[nframes // 2, h // 14, w // 14]]
    pads = int((ours["input_ids"] == proc.tokenizer.convert_tokens_to_ids("<|video_pad|>")).sum())
    assert pads == nframes // 2 * (h // 28) * (w // 28)
    _, frames = preprocess_visuals(proc, Recipe(), item)
    unresized = proc.video_processor(videos=[frames], do_resize=False, do_sample_frames=False, return_tensors="pt")
    assert torch.equal(ours["pixel_values_videos"], unresized["pixel_values_videos"])


def test_large_video_frames_get_the_image_limits(encoder):
    """Frames above max_pixels are shrunk exactly as an image would be (4.49 used the image processor)."""
    proc = encoder.backbone.processor
    frame = noise(2000, 1600, seed=6)
    ours = make_batch(proc, Recipe(), [LoadedItem("clip", [], [frame, frame])])
    as_image = proc.image_processor(images=[fetch_image({"image": frame})], size=SIZE, return_tensors="pt")
    assert ours["video_grid_thw"].tolist() == as_image["image_grid_thw"].tolist()
    assert torch.equal(ours["pixel_values_videos"], as_image["pixel_values"])


# --- the "processor" mode and the sorting hint ---------------------------------------------------
def test_processor_mode_hands_images_over_untouched(encoder):
    proc = encoder.backbone.processor
    image = noise(30, 50)
    images, video = preprocess_visuals(proc, Recipe(vision_preprocess="processor"), LoadedItem("x", [image], None))
    assert images == [image] and video is None
    blank = make_batch(proc, Recipe(vision_preprocess="processor"), [LoadedItem("x", [], None)])
    assert blank["image_grid_thw"].tolist() == [[1, 2, 2]] and image_pads(proc, blank) == 1


def test_visual_token_estimates_count_the_enlarged_blank_at_the_familys_token_size(encoders):
    text_only = Item("hello")
    assert visual_tokens(text_only, Recipe(), 28) - visual_tokens(text_only, Recipe(vision_preprocess="processor"),
                                                                  28) == 3
    assert visual_tokens(Item("", [noise(20, 20)]), Recipe(), 28) == 4
    assert [token_side(e.backbone.processor) for e in encoders.values()] == [28, 28, 32]  # Qwen3-VL: 16 x 2
    image = noise(320, 240)
    for enc in encoders.values():  # the estimate follows each family's processor (28 on Qwen3-VL: 21% over)
        real = make_batch(enc.backbone.processor, Recipe(), [LoadedItem("", [image], None)])["image_grid_thw"]
        assert visual_tokens(Item("", [image]), Recipe(), token_side(enc.backbone.processor)) == pytest.approx(
            int(real.prod()) // 4, rel=0.1)


def test_loaded_mmeb_items_tokenise_as_the_reference_pipeline(encoder, mmeb_root):
    """From the published files to token ids: an image query, an image candidate, a text-only query and a
    document page (bytes from the parquet), each against UME-R1's pipeline fed the same file and text (the
    loader's text with the placeholder removed, ume-r1.md §3)."""
    from ume.evaluate.loaders import load_task
    from ume.evaluate.tasks import select_tasks

    proc = encoder.backbone.processor
    cases = []
    for name in ("ChartQA", "MSCOCO_t2i", "ViDoRe_arxivqa"):
        data = load_task(select_tasks([name])[0], mmeb_root)
        cases += [data.queries[0].item, data.pool[data.queries[0].labels[0]]]
    for item in cases:
        text = item.text.replace("<|image_pad|>", "").replace("<|video_pad|>", "").strip()
        if not item.images:
            image: Image.Image | str = reference_blank()
        elif isinstance(item.images[0], bytes):
            image = "data:image/png;base64," + base64.b64encode(item.images[0]).decode()
        else:
            image = item.images[0]  # a path, opened by qwen-vl-utils itself
        ours = make_batch(proc, Recipe(), [load_item(item, 0, InputLimits())])
        assert_same_batch(ours, reference_batch(proc, [(text, image)]))
