"""Golden video frames from qwen-vl-utils 0.0.11, the version UME-R1 pinned.

0.0.11's `fetch_video` on a list of frames runs `fetch_image` on each frame (image limits, factor 28)
and pads to an even count with the last frame; later versions resize frame lists differently, so ume's
video preprocessing is checked against what 0.0.11 itself returned. Regenerate with

    PYTHONPATH=/tmp/qvu/q11 .venv/bin/python tests/golden/make_qwen_vl_utils_golden.py

(/tmp/qvu/q11 holds the unpacked 0.0.11 wheel). The frames are synthetic and deterministic; the test
imports `make_frames` from this file to rebuild them.
"""

from __future__ import annotations

import hashlib
import json
from importlib.metadata import version
from pathlib import Path

import numpy as np
from PIL import Image

GOLDEN = Path(__file__).with_name("qwen_vl_utils_0_0_11_video.json")
# name -> (frames, width, height)
CASES = {"8x64x64": (8, 64, 64), "5x500x300": (5, 500, 300)}
# (x, y) as fractions of the frame size, sampled into the golden file next to the checksum
PROBES = ((0.0, 0.0), (0.5, 0.5), (0.99, 0.01), (0.25, 0.75), (0.99, 0.99))


def make_frames(count: int, width: int, height: int) -> list[Image.Image]:
    """Frames with a different diagonal colour ramp each, so resizing and frame order both show."""
    y, x = np.mgrid[0:height, 0:width]
    return [Image.fromarray(np.stack([(7 * x + 3 * y + 31 * t) % 256, (2 * x + 11 * y + 17 * t) % 256,
                                      (x + y + 5 * t) % 256], axis=-1).astype(np.uint8))
            for t in range(count)]


def describe(frame: Image.Image) -> dict:
    """Size, checksum and a few pixels of one RGB frame."""
    w, h = frame.size
    probes = [[int(fx * (w - 1)), int(fy * (h - 1))] for fx, fy in PROBES]
    return {"size": [w, h], "mode": frame.mode,
            "sha256": hashlib.sha256(frame.tobytes()).hexdigest(),
            "pixels": [[px, py, list(frame.getpixel((px, py)))] for px, py in probes]}


def main() -> None:
    import PIL
    import qwen_vl_utils
    from qwen_vl_utils import fetch_video

    assert version("qwen-vl-utils") == "0.0.11", version("qwen-vl-utils")
    assert (Path(qwen_vl_utils.__file__).parents[1] / "qwen_vl_utils-0.0.11.dist-info").is_dir(), \
        f"not the 0.0.11 wheel: {qwen_vl_utils.__file__}"
    cases = {}
    for name, (count, width, height) in CASES.items():
        out = fetch_video({"type": "video", "video": make_frames(count, width, height)})
        cases[name] = {"input": {"frames": count, "width": width, "height": height},
                       "num_frames": len(out), "frames": [describe(f) for f in out]}
    # one frame per line, so a diff of the golden file shows which frame changed
    body = ",\n".join(f'  "{name}": {{"input": {json.dumps(c["input"])}, "num_frames": {c["num_frames"]}, '
                      '"frames": [\n' + ",\n".join("   " + json.dumps(f) for f in c["frames"]) + "]}"
                      for name, c in cases.items())
    GOLDEN.write_text(f'{{"qwen_vl_utils": "{version("qwen-vl-utils")}", "pillow": "{PIL.__version__}", '
                      f'"cases": {{\n{body}}}}}\n')
    print(f"wrote {GOLDEN}")


if __name__ == "__main__":
    main()
