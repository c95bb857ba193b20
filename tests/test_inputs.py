import io

import pytest
from PIL import Image

from ume.inputs import InputError, InputLimits, Item, load_item, load_video, sample_indices

LIMITS = InputLimits()


def png_bytes(size=(32, 32)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, "red").save(buf, format="PNG")
    return buf.getvalue()


def test_sources_load_as_rgb(media):
    item = Item("x", images=[media["red"], str(media["blue"]), png_bytes(), Image.new("L", (8, 8))])
    loaded = load_item(item, 0, LIMITS)
    assert [im.mode for im in loaded.images] == ["RGB"] * 4
    assert loaded.images[1].size == (96, 48)


@pytest.mark.parametrize(
    ("images", "video", "text", "reason"),
    [
        (["/nonexistent/a.png"], None, "x", "file not found"),
        ([b"not an image at all"], None, "x", "not a recognised image format"),
        ([png_bytes()[:60]], None, "x", "truncated or corrupt"),
        ([b""], None, "x", "empty file"),
        ([Image.new("RGB", (0, 5))], None, "x", "zero-size image"),
        ([], None, "   ", "empty item"),
        ([], [], "x", "empty frame list"),
    ],
)
def test_bad_inputs_name_item_and_reason(images, video, text, reason):
    with pytest.raises(InputError) as e:
        load_item(Item(text, images=images, video=video, id="q7"), 3, LIMITS)
    msg = str(e.value)
    assert msg.startswith("item 3 (id='q7'):"), msg
    assert reason in msg


def test_directory_is_not_an_image(tmp_path):
    with pytest.raises(InputError, match="is a directory"):
        load_item(Item("x", images=[tmp_path]), 0, LIMITS)


def test_pixel_limit_catches_decompression_bombs():
    big = png_bytes((400, 300))
    with pytest.raises(InputError, match="exceeds the limit of 100000"):
        load_item(Item("x", images=[big]), 0, InputLimits(max_image_pixels=100_000))
    assert load_item(Item("x", images=[big]), 0, InputLimits(max_image_pixels=120_000)).images


def test_undecodable_video(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 2048)
    with pytest.raises(InputError, match=r"undecodable|no video frames"):
        load_item(Item("x", video=bad), 0, LIMITS)


def test_video_file_sampled_uniformly(media):
    frames = load_video(media["mp4"], LIMITS)
    assert len(frames) == 8
    # frames are solid grey levels t*15: the chosen ones follow linspace(0, 15, 8).astype(int)
    levels = [round(f.getpixel((32, 32))[0] / 15) for f in frames]
    assert levels == sample_indices(16, 8) == [0, 2, 4, 6, 8, 10, 12, 15]


def test_frame_directory_natural_order(media):
    frames = load_video(media["frames"], LIMITS)  # frame_0 .. frame_11: natural, not lexical, order
    assert [f.getpixel((0, 0))[0] // 20 for f in frames] == sample_indices(12, 8)


def test_short_frame_lists_keep_all_frames():
    assert sample_indices(5, 8) == [0, 1, 2, 3, 4]
    frames = load_video([Image.new("RGB", (28, 28))] * 3, LIMITS)
    assert len(frames) == 3


def test_item_from_dict_rejects_unknown_fields():
    assert Item.from_dict({"text": "a", "image": "x.png"}).images == ["x.png"]
    with pytest.raises(InputError, match="unknown field"):
        Item.from_dict({"txt": "a"})
