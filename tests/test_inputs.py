import io
import re

import numpy as np
import pytest
from PIL import Image

from ume.inputs import InputError, InputLimits, Item, load_image, load_item, load_video, sample_indices

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


# --- pixels as they are shown (issue 13) ---------------------------------------------------------
def test_16_bit_greyscale_is_scaled_not_clipped(tmp_path):
    from bad_corpus import png16

    img = load_image(png16(tmp_path / "g16.png"), LIMITS)
    grey = np.asarray(img)[..., 0].ravel()
    ramp = np.linspace(0, 65535, 64 * 64).astype(np.uint16)
    assert np.array_equal(grey, (ramp >> 8).astype(np.uint8))  # the high byte, a full 0..255 ramp
    assert len(np.unique(grey)) == 256  # convert('RGB') keeps only a few dark levels, then white


def test_exif_orientation_is_applied(tmp_path):
    from bad_corpus import exif_jpeg

    img = load_image(exif_jpeg(tmp_path / "e.jpg"), LIMITS)  # stored 80x40, orientation 6 (90 degrees cw)
    assert img.size == (40, 80)
    top = np.asarray(img)[:10].reshape(-1, 3).mean(0)
    assert top[2] > 150 and top[0] < 100  # the stored left (blue) edge is now the top


def test_exif_orientation_1_and_missing_exif_leave_the_image(tmp_path):
    from bad_corpus import exif_jpeg

    img = load_image(exif_jpeg(tmp_path / "e.jpg", orientation=1), LIMITS)
    assert img.size == (80, 40)
    assert load_image(png_bytes((30, 20)), LIMITS).size == (30, 20)


def test_transparent_palette_is_on_white(tmp_path):
    from bad_corpus import transparent_palette_png

    img = np.asarray(load_image(transparent_palette_png(tmp_path / "p.png"), LIMITS))
    assert (img[:, :28] == 255).all()  # the transparent index is white, not its palette colour (black)
    assert tuple(img[0, 40]) == (200, 30, 30)


def test_la_image_transparent_pixels_are_white():
    la = Image.new("LA", (8, 8), (0, 0))  # black, fully transparent
    assert (np.asarray(load_image(la, LIMITS)) == 255).all()  # convert('RGB') would give black


# --- video files ---------------------------------------------------------------------------------
def _b_frame_clip(path):
    import av

    with av.open(str(path), "w") as out:
        s = out.add_stream("mpeg4", rate=25, options={"bf": "2", "g": "6"})
        s.width = s.height = 64
        s.pix_fmt = "yuv420p"
        for t in range(40):
            a = np.zeros((64, 64, 3), np.uint8)
            a[:, :, 0] = (t * 6) % 256
            a[t % 64, :, 1] = 255
            for p in s.encode(av.VideoFrame.from_ndarray(a, format="rgb24")):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    return path


def test_only_sampled_frames_are_kept_and_they_match_a_full_decode(tmp_path):
    import av

    clip = _b_frame_clip(tmp_path / "bf.mp4")  # B-frames: decode order differs from presentation order
    with av.open(str(clip)) as c:
        every = [f.to_image() for f in c.decode(video=0)]
    expected = [every[i] for i in sample_indices(len(every), 8)]
    got = load_video(clip, LIMITS)
    assert len(got) == 8
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(got, expected, strict=True))


def test_frames_over_the_pixel_limit_are_refused_before_decoding(tmp_path):
    from bad_corpus import write_video

    clip = write_video(tmp_path / "big.mp4", 4, size=(320, 240))
    with pytest.raises(InputError, match=r"frames of 320x240 = 76800 pixels exceed the limit of 50000"):
        load_video(clip, InputLimits(max_image_pixels=50_000))


def test_video_frame_count_limit(tmp_path):
    from bad_corpus import write_video

    with pytest.raises(InputError, match="more than 10 frames"):
        load_video(write_video(tmp_path / "v.mp4", 20), InputLimits(max_video_frames=10))


@pytest.mark.parametrize("name", ["list.m3u8", "list.mp4", "list.bin"])
def test_hls_playlists_are_refused_not_followed(tmp_path, name):
    from bad_corpus import hls_playlist, write_video

    segment = write_video(tmp_path / "seg.ts", 16, fmt="mpegts")
    playlist = hls_playlist(tmp_path / name, segment)
    with pytest.raises(InputError, match="playlist"):
        load_video(playlist, LIMITS)

    import av

    from ume.inputs import _open_container

    if name.endswith(".m3u8"):
        with open(playlist, "rb") as f, av.open(f) as c:  # plain PyAV follows it to both segments
            assert sum(1 for _ in c.decode(video=0)) == 32
    with open(playlist, "rb") as f, pytest.raises(av.error.FFmpegError), _open_container(f) as c:
        list(c.decode(video=0))  # ume's demuxer whitelist (no hls, no nested protocols) does not


def test_plain_containers_still_decode(tmp_path):
    from bad_corpus import write_video

    assert len(load_video(write_video(tmp_path / "seg.ts", 16, fmt="mpegts"), LIMITS)) == 8
    assert len(load_video(write_video(tmp_path / "v.mkv", 12, fmt="matroska"), LIMITS)) == 8


# --- special files and field types ---------------------------------------------------------------
@pytest.mark.parametrize("target", ["/dev/zero", "/dev/urandom", "/dev/null"])
def test_symlinks_to_devices_are_refused_without_reading(tmp_path, target):
    link = tmp_path / "x.png"
    link.symlink_to(target)
    with pytest.raises(InputError, match="is a character device, not a regular file"):
        load_image(link, LIMITS)
    with pytest.raises(InputError, match="is a character device, not a regular file"):
        load_video(link, LIMITS)


def test_fifo_is_refused_without_blocking(tmp_path):
    import os

    fifo = tmp_path / "f.png"
    os.mkfifo(fifo)  # opening it for reading would block until a writer came
    with pytest.raises(InputError, match="is a FIFO"):
        load_image(fifo, LIMITS)
    with pytest.raises(InputError, match="is a FIFO"):
        load_video(fifo, LIMITS)
    frames = tmp_path / "frames"
    frames.mkdir()
    os.mkfifo(frames / "0.jpg")
    with pytest.raises(InputError, match="is a FIFO"):
        load_video(frames, LIMITS)


def test_file_size_limit(tmp_path):
    path = tmp_path / "a.png"
    path.write_bytes(png_bytes((64, 64)))
    with pytest.raises(InputError, match=r"bytes exceeds the limit of 100 bytes"):
        load_image(path, InputLimits(max_file_bytes=100))
    with pytest.raises(InputError, match="exceeds the limit of 100 bytes"):
        load_image(path.read_bytes(), InputLimits(max_file_bytes=100))


@pytest.mark.parametrize(("row", "reason"), [
    ({"images": 5}, "field 'images' should be a path or a list of paths, got int"),
    ({"video": 3}, "field 'video' should be a path or a list of paths, got int"),
    ({"text": 5}, "field 'text' should be a string, got int"),
    ({"text": ["a", "list"]}, "field 'text' should be a string, got a list"),
    ({"images": {"a": 1}}, "field 'images' should be a path or a list of paths, got an object"),
    ({"images": ["a.png", 7]}, "field 'images'[1] should be a non-empty path string"),
    ({"image": ["a.png"]}, "field 'image' should be a path string"),
    ({"id": {"x": 1}}, "field 'id' should be a string or an integer"),
    ({"id": True}, "field 'id' should be a string or an integer"),
    ({"text": "x", "id": "\ud800"}, "field 'id' is not valid Unicode"),
    ({"text": "bad \udc80"}, "field 'text' is not valid Unicode"),
    ({"image": "a\x00b.png"}, "contains a NUL byte"),
])
def test_field_types_are_checked_per_item(row, reason):
    with pytest.raises(InputError, match=re.escape(reason)):
        Item.from_dict(row)


def test_items_built_in_python_are_checked_when_loaded():
    with pytest.raises(InputError, match=r"item 2: field 'text' should be a string"):
        load_item(Item(text=5), 2, LIMITS)
    with pytest.raises(InputError, match=r"item 0: field 'images' should be a list"):
        load_item(Item("x", images="a.png"), 0, LIMITS)  # a bare string would be read letter by letter
    with pytest.raises(InputError, match=r"^items.jsonl:20 \(id='a'\): image .*file not found"):
        load_item(Item("x", images=["/nope.png"], id="a", source="items.jsonl:20"), 14, LIMITS)
