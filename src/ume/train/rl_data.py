"""RL pairs in the reference format (`grpo_embed.py`): {qry_text, qry_image | qry_video, pos_text,
pos_image | pos_video[, solution, source, id]}. Rows are validated up front, like SFT rows: a bad row stops
the run with its file, row and field, or is skipped and reported; a key the format does not have (a typo such as
`qry_imgae`) is a row error. What only decoding can find (a truncated image, a corrupt frame) is caught per pair at
rollout time by `load_rl_batch`, which names the file, row, side and field and, when skipping, replaces the pair.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ume.inputs import InputError, InputLimits, Item, LoadedItem, load_item
from ume.recipe import Recipe
from ume.train.data import BadRow, DataError, check_media, keep_or_raise, read_records, unknown_keys, user_text

ROW_KEYS = frozenset({"qry_text", "qry_image", "qry_video", "pos_text", "pos_image", "pos_video", "solution",
                      "source", "id"})
# The row field (after the side's prefix) of the part of an item `load_item` names in InputError.field
# (None: the item as a whole).
_FIELDS = {None: "text", "images": "image", "video": "video"}


@dataclass(frozen=True)
class RLPair:
    qry: Item
    tgt: Item  # the row's pos_* fields
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
        for p in paths:
            check_media(p, f"{side}_image")
        for p in [frames] if isinstance(frames, Path) else frames or []:
            check_media(p, f"{side}_video", directory_ok=isinstance(frames, Path))
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
                unknown_keys(row, ROW_KEYS, "row")
                source = row.get("source", path.stem)
                if not isinstance(source, str):
                    raise DataError(f"source: expected a string, got {type(source).__name__}")
                pairs.append(RLPair(_side(row, "qry", root, recipe, check_files),
                                    _side(row, "pos", root, recipe, check_files),
                                    source, str(path), i))
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


def _load_side(item: Item, side: str, limits: InputLimits) -> LoadedItem:
    """Decode one side exactly as inference and SFT do (`inputs.load_item`); a failure raises DataError starting
    with the field (qry_image, pos_video, ...) and inference's reason: `side` is the row's field prefix, "qry" or
    "pos"."""
    try:
        return load_item(item, 0, limits)
    except InputError as e:
        raise DataError(f"{side}_{_FIELDS.get(e.field, 'text')}: {e.reason}") from None


def load_rl_batch(pairs: list[RLPair], indices: list[int], limits: InputLimits, skip_bad_rows: bool,
                  spares: Iterable[int] = (), known_bad: set[int] | None = None
                  ) -> tuple[list[int], dict[str, list[LoadedItem]], list[BadRow]]:
    """Decode both sides of the pairs `indices` before they are rolled out.

    A pair that fails (a truncated image, a corrupt frame) raises DataError naming its file, row, side and field,
    or, with `skip_bad_rows`, is reported as a BadRow (stage "load"), added to `known_bad` and replaced by the next
    usable index of `spares`, so every process keeps the same number of pairs (what the cross-process gather of
    the reward needs). Returns the indices used (in order), the decoded sides {"qry": [...], "tgt": [...]} and
    the rows rejected now. Pairs in `known_bad` are replaced without being decoded again."""
    known_bad = set() if known_bad is None else known_bad
    spare = iter(spares)
    used: list[int] = []
    loaded: dict[str, list[LoadedItem]] = {"qry": [], "tgt": []}
    bad: list[BadRow] = []
    taken = set(indices)
    for i in indices:
        while True:
            if i not in known_bad:
                p = pairs[i]
                try:
                    sides = {"qry": _load_side(p.qry, "qry", limits), "tgt": _load_side(p.tgt, "pos", limits)}
                except DataError as e:
                    field_name, _, reason = str(e).partition(": ")
                    row = BadRow(p.file, p.row, field_name, reason, stage="load")
                    if not skip_bad_rows:
                        raise DataError(row.message()) from None
                    bad.append(row)
                    known_bad.add(i)
                else:
                    used.append(i)
                    for s, it in sides.items():
                        loaded[s].append(it)
                    break
            i = next((j for j in spare if j not in taken and j not in known_bad), -1)
            if i < 0:
                raise DataError(f"no usable pair left to replace bad rows ({len(known_bad)} rows failed to load: "
                                + "; ".join(b.message() for b in bad[:3]) + ")")
            taken.add(i)
    return used, loaded, bad


def spare_indices(n: int, seed: int, step: int, size: int, rank: int = 0, world: int = 1) -> list[int]:
    """Replacements for rank `rank` at micro-step `step`: the epoch's order after this step's global batch (then
    from the start), strided by rank so two processes never pick the same spare."""
    per_epoch = n // size
    epoch, k = divmod(step, per_epoch)
    order = pair_order(n, seed, epoch)
    rest = order[(k + 1) * size:] + order[:k * size]
    return rest[rank::world]
