"""RL pairs in the reference format (`grpo_embed.py`): {qry_text, qry_image | qry_video, pos_text,
pos_image | pos_video[, solution, source]}. Rows are validated up front, like SFT rows: a bad row stops
the run with its file, row and field, or is skipped and reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ume.inputs import Item
from ume.recipe import Recipe
from ume.train.data import BadRow, DataError, keep_or_raise, read_records, user_text


@dataclass(frozen=True)
class RLPair:
    qry: Item
    pos: Item
    source: str
    file: str
    row: int


def _side(row: dict[str, Any], side: str, root: Path, recipe: Recipe, check_files: bool) -> Item:
    text = row.get(f"{side}_text", "")
    if not isinstance(text, str):
        raise DataError(f"{side}_text: expected a string, got {type(text).__name__}")
    image, video = row.get(f"{side}_image"), row.get(f"{side}_video")
    if image is not None and video is not None:
        raise DataError(f"{side}_image/{side}_video: a side has an image or a video, not both")
    images = [] if image is None else [image] if isinstance(image, str) else image
    if not isinstance(images, list) or not all(isinstance(p, str) and p for p in images):
        raise DataError(f"{side}_image: expected a path or a list of paths")
    if video is not None and not (isinstance(video, str) or (isinstance(video, list) and video
                                                            and all(isinstance(p, str) for p in video))):
        raise DataError(f"{side}_video: expected a path or a non-empty list of frame paths")
    paths = [root / p for p in images]
    frames = None if video is None else (root / video if isinstance(video, str) else [root / p for p in video])
    if check_files:
        for p in [*paths, *([frames] if isinstance(frames, Path) else frames or [])]:
            if not p.exists():
                raise DataError(f"{side}_{'image' if p in paths else 'video'}: file not found: {p}")
    if not text.strip() and not paths and frames is None:
        raise DataError(f"{side}_text: empty side (no text, image or video)")
    return Item(text=user_text(text, recipe), images=[str(p) for p in paths],
                video=None if frames is None else str(frames) if isinstance(frames, Path) else [str(f) for f in frames])


def load_rl_pairs(files: list[str], media_root: str | None, recipe: Recipe, check_files: bool = True,
                  skip_bad_rows: bool = False) -> tuple[list[RLPair], list[BadRow]]:
    """All valid pairs of `files` (JSON lists or JSONL); bad rows raise or are returned when skipped."""
    pairs: list[RLPair] = []
    bad: list[BadRow] = []
    for name in files:
        path = Path(name)
        root = Path(media_root) if media_root else path.parent
        for i, row in enumerate(read_records(path)):
            try:
                if not isinstance(row, dict):
                    raise DataError(f"row: expected a JSON object, got {type(row).__name__}")
                pairs.append(RLPair(_side(row, "qry", root, recipe, check_files),
                                    _side(row, "pos", root, recipe, check_files),
                                    str(row.get("source", path.stem)), str(path), i))
            except DataError as e:
                keep_or_raise(bad, str(path), i, e, skip_bad_rows)
    if len(pairs) < 2:
        raise DataError(f"RL needs at least 2 valid pairs (the reward contrasts pairs); got {len(pairs)}")
    return pairs, bad


def pair_order(n: int, seed: int, epoch: int) -> list[int]:
    """The seeded shuffle of epoch `epoch` (a pure function of its arguments, so resume is exact)."""
    return np.random.default_rng([seed, epoch]).permutation(n).tolist()


def global_batch(n: int, seed: int, step: int, size: int) -> list[int]:
    """Pair indices of optimiser micro-step `step`: consecutive slices of the per-epoch shuffles."""
    per_epoch = n // size
    if per_epoch == 0:
        raise DataError(f"{n} pairs cannot fill one global batch of {size} pairs")
    epoch, k = divmod(step, per_epoch)
    return pair_order(n, seed, epoch)[k * size:(k + 1) * size]
