"""Session-scoped tiny checkpoints: built once per test session, offline, with our own builder."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

FAMILIES = ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"]


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory):
    """One base checkpoint (no ume tokens yet) per family."""
    from ume.tiny import build_tiny

    root = tmp_path_factory.mktemp("tiny")
    return {fam: build_tiny(root / fam, family=fam, seed=0) for fam in FAMILIES}


@pytest.fixture(scope="session")
def encoders(tiny_dirs):
    import ume

    return {fam: ume.load(path, device="cpu") for fam, path in tiny_dirs.items()}


@pytest.fixture(scope="session")
def encoder(encoders):
    return encoders["qwen2_vl"]


@pytest.fixture(scope="session")
def media(tmp_path_factory):
    """Small images, a frame directory and an mp4 written once."""
    import av
    import numpy as np
    from PIL import Image, ImageDraw

    root = tmp_path_factory.mktemp("media")
    paths = {}
    for name, colour, size in [("red", (220, 30, 30), (64, 64)), ("blue", (30, 60, 220), (96, 48))]:
        img = Image.new("RGB", size, "white")
        ImageDraw.Draw(img).ellipse((8, 8, 40, 40), fill=colour)
        paths[name] = root / f"{name}.png"
        img.save(paths[name])
    frames = root / "frames"
    frames.mkdir()
    for t in range(12):
        Image.new("RGB", (56, 56), (t * 20, 100, 50)).save(frames / f"frame_{t}.jpg")
    paths["frames"] = frames
    mp4 = root / "clip.mp4"
    with av.open(str(mp4), "w") as out:
        stream = out.add_stream("mpeg4", rate=8)
        stream.width = stream.height = 64
        stream.pix_fmt = "yuv420p"
        for t in range(16):
            arr = np.full((64, 64, 3), t * 15, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    paths["mp4"] = mp4
    return paths


@pytest.fixture(scope="session")
def mmeb_root(tmp_path_factory):
    """Every MMEB-V2 task in its published repo layout (tests/mmeb_fixture.py), built once."""
    from mmeb_fixture import build_mmeb_tree

    return build_mmeb_tree(tmp_path_factory.mktemp("mmeb"))


@pytest.fixture(scope="session")
def minimmeb_root(tmp_path_factory):
    """A tiny-scale MiniMMEB build (a dozen queries per task)."""
    from ume.synth.build import build

    root = tmp_path_factory.mktemp("minimmeb") / "build"
    build(root, seed=0, scale="tiny", progress=False)
    return root
