"""SFT pairs in the reference format: reading, up-front validation, and the seeded mixture plan.

Record (`data_qwen.py`): {"qry": side, "pos": side, "source": str}, side = {"conversations":
[{"from": "human", "value": "<image>\\n{text}"}, {"from": "gpt", "value": "<think>…</think><answer>…</answer>
<gen_emb>"}], "image": path | [paths] | "video": [frame paths] | dir}. Every row is checked before training
(fields, types, the <gen_emb> tag, files exist), so a bad row stops the run at once with its file, row and
field, or is skipped and reported, instead of crashing hours into an epoch.

Each side becomes an `ume.Item`, what inference would embed, and is decoded by `inputs.load_item` when its
batch is built: the size limits, file checks, image handling and frame sampling of inference apply to
training too.
"""

from __future__ import annotations

import json
import stat
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ume.inputs import InputError, Item, check_item
from ume.io import iter_json_lines
from ume.recipe import Recipe


class DataError(ValueError):
    """A bad SFT row; the message names the file, the row and the field."""


@dataclass(frozen=True)
class BadRow:
    """One rejected row, as written to bad_rows.jsonl."""

    file: str
    row: int
    field: str
    reason: str
    stage: str = "validate"  # validate | load (decoding, processor, length)

    def message(self) -> str:
        return f"{self.file}: row {self.row}: {self.field}: {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Pair:
    """One row: each side as the item inference would embed (user text with the prompt suffix cut, resolved
    media paths) and its annotated assistant turn, the training target."""

    qry: Item
    tgt: Item  # the record's "pos" side
    qry_response: str
    tgt_response: str
    source: str  # homogeneous batches are drawn per (file, source)
    file: str
    row: int


def user_text(value: str, recipe: Recipe) -> str:
    """The human value without the recipe's suffix: the released data already carries
    "\\n<disc_emb>\\n" + generation prompt, which the recipe adds again. Cut at the disc token so the
    RL spacing variant (" \\n<disc_emb>\\n") is cut too; the recipe strips placeholders and whitespace."""
    cut = value.find(recipe.disc_token)
    return value if cut < 0 else value[:cut]


SIDE_KEYS = frozenset({"conversations", "image", "video"})
RECORD_KEYS = frozenset({"qry", "pos", "source", "id"})


def unknown_keys(row: dict[str, Any], allowed: frozenset[str], where: str) -> None:
    """A key the format does not have (a typo such as `imgae`) is an error, never silently ignored."""
    extra = sorted(set(row) - allowed)
    if extra:
        raise DataError(f"{where}: unknown key(s) {extra}; expected {sorted(allowed)}")


def check_media(path: Path, where: str, directory_ok: bool = False) -> None:
    """A media path must be a regular file (or, for a video, a frame directory): checked with `stat` only, so a
    FIFO or a device is refused without ever being opened."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise DataError(f"{where}: file not found: {path}") from None
    except (OSError, ValueError) as e:
        raise DataError(f"{where}: unreadable: {path} ({getattr(e, 'strerror', None) or e})") from None
    if stat.S_ISREG(mode) or (directory_ok and stat.S_ISDIR(mode)):
        return
    kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file (FIFO, device or socket)"
    raise DataError(f"{where}: {path} is {kind}")


def _paths(value: Any, where: str, root: Path) -> tuple[Path, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(p, str) and p for p in items):
        raise DataError(f"{where}: expected a path or a non-empty list of paths, got {type(value).__name__}")
    return tuple(root / p for p in items)


def parse_side(side: Any, name: str, root: Path, recipe: Recipe, check_files: bool) -> tuple[Item, str]:
    """Validate one side: its item and response; raises DataError whose message starts with the field name."""
    if not isinstance(side, dict):
        raise DataError(f"{name}: expected an object, got {type(side).__name__}")
    unknown_keys(side, SIDE_KEYS, name)
    conv = side.get("conversations")
    if not isinstance(conv, list) or len(conv) != 2:
        raise DataError(f"{name}.conversations: expected a list of exactly two turns [human, gpt]")
    for i, (turn, role) in enumerate(zip(conv, ("human", "gpt"), strict=True)):
        if not isinstance(turn, dict) or turn.get("from") != role or not isinstance(turn.get("value"), str):
            raise DataError(f"{name}.conversations[{i}]: expected {{'from': '{role}', 'value': str}}")
    response = conv[1]["value"]
    if recipe.gen_token not in response:
        raise DataError(f"{name}.conversations[1].value: response has no {recipe.gen_token} (nothing to read the "
                        "gen embedding from)")
    images = _paths(side["image"], f"{name}.image", root) if side.get("image") is not None else ()
    video: Path | tuple[Path, ...] | None = None
    if side.get("video") is not None:
        raw = side["video"]
        video = root / raw if isinstance(raw, str) and raw else _paths(raw, f"{name}.video", root)
    text = user_text(conv[0]["value"], recipe)
    if not text.strip() and not images and video is None:
        raise DataError(f"{name}.conversations[0].value: empty side (no text, image or video)")
    if check_files:
        for p in images:
            check_media(p, f"{name}.image")
        for p in video if isinstance(video, tuple) else () if video is None else (video,):
            check_media(p, f"{name}.video", directory_ok=not isinstance(video, tuple))
    item = Item(text=text, images=[str(p) for p in images],
                video=None if video is None else str(video) if isinstance(video, Path) else [str(p) for p in video])
    try:
        check_item(item)  # what load_item would refuse later (a NUL byte in a path, an unpaired surrogate)
    except InputError as e:
        raise DataError(f"{name}: {e}") from None
    return item, response


def keep_or_raise(bad: list[BadRow], file: str, row: int, error: DataError, skip: bool) -> None:
    """A row failed validation: raise with file, row and field, or record it when skipping bad rows."""
    field_name, _, reason = str(error).partition(": ")
    found = BadRow(file, row, field_name, reason)
    if not skip:
        raise DataError(found.message()) from None
    bad.append(found)


def read_records(path: Path) -> list[Any]:
    """A JSON list, or JSONL (one record per line) when the suffix is .jsonl. A parse error names the
    file's line (for JSONL, the record's line, not a line inside the record). Lines are split on "\\n" only
    and decoded one by one, so a bad byte names its line; a UTF-8 byte-order mark is ignored."""
    try:
        if path.suffix == ".jsonl":
            records = []
            for line in iter_json_lines(path):
                if line.error is not None:
                    raise DataError(f"{path}: not valid JSON (line {line.number}: {line.error})")
                records.append(line.value)
            return records
        text = path.read_bytes().decode("utf-8-sig")
        records = json.loads(text)
    except UnicodeDecodeError as e:
        line = path.read_bytes()[:e.start].count(b"\n") + 1
        raise DataError(f"{path}: not valid UTF-8 (line {line}, byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from e
    except (ValueError, RecursionError) as e:
        raise DataError(f"{path}: not valid JSON ({type(e).__name__}: {str(e)[:200]})") from None
    except OSError as e:
        raise DataError(f"{path}: unreadable ({e.strerror or e})") from e
    if not isinstance(records, list):
        raise DataError(f"{path}: expected a JSON list of records, got {type(records).__name__}")
    return records


def load_file(path: str | Path, media_root: str | Path | None, recipe: Recipe, check_files: bool = True,
              skip_bad_rows: bool = False) -> tuple[list[Pair], list[BadRow]]:
    """All valid pairs of one file, and the bad rows (raises on the first bad row unless skipping)."""
    path = Path(path)
    root = Path(media_root) if media_root is not None else path.parent
    pairs: list[Pair] = []
    bad: list[BadRow] = []
    for i, rec in enumerate(read_records(path)):
        try:
            if not isinstance(rec, dict):
                raise DataError(f"record: expected an object, got {type(rec).__name__}")
            unknown_keys(rec, RECORD_KEYS, "record")
            source = rec.get("source", path.stem)
            if not isinstance(source, str):
                raise DataError(f"source: expected a string, got {type(source).__name__}")
            qry, qry_response = parse_side(rec.get("qry"), "qry", root, recipe, check_files)
            tgt, tgt_response = parse_side(rec.get("pos"), "pos", root, recipe, check_files)
        except DataError as e:
            keep_or_raise(bad, str(path), i, e, skip_bad_rows)
            continue
        pairs.append(Pair(qry, tgt, qry_response, tgt_response, source, str(path), i))
    return pairs, bad


class Mixture:
    """Seeded, resumable order of global micro-batches over several files and sources.

    Per epoch, each group (file, source) contributes round(n x weight) draws (whole permutations, then
    a partial one), shuffled with seed (seed, epoch). Homogeneous: each group is cut into batches and
    the batches are shuffled, so the next batch comes from a group with probability proportional to
    size x weight. Mixed: all draws are shuffled together, then cut. Partial batches are dropped, so a
    batch index alone (`batch(k)`) is the data position.
    """

    def __init__(self, pairs: Sequence[Pair], weights: dict[str, float], batch_size: int, seed: int,
                 homogeneous: bool) -> None:
        self.pairs = list(pairs)
        self.batch_size, self.seed, self.homogeneous = batch_size, seed, homogeneous
        groups: dict[tuple[str, str], list[int]] = {}
        for i, p in enumerate(self.pairs):
            groups.setdefault((p.file, p.source), []).append(i)
        self.groups = [(np.asarray(rows), weights.get(f, 1.0)) for (f, _), rows in sorted(groups.items())]
        self._cached = (0, self._plan(0))
        self.per_epoch = len(self._cached[1])
        if self.per_epoch == 0:
            sizes = {f"{f}:{s}": len(r) for (f, s), r in sorted(groups.items())}
            how = "any source" if homogeneous else "the mixture"
            raise DataError(f"no full global batch of {batch_size} pairs from {how} (rows per source: {sizes}); "
                            "lower per_device_train_batch_size, use fewer processes, or disable homogeneous_batches")

    def _draws(self, rows: np.ndarray, weight: float, rng: np.random.Generator) -> np.ndarray:
        k = round(len(rows) * weight)
        reps = [rng.permutation(rows) for _ in range(-(-k // len(rows)))] if k else []
        return np.concatenate(reps)[:k] if reps else np.zeros(0, dtype=np.int64)

    def _plan(self, epoch: int) -> list[np.ndarray]:
        rng = np.random.default_rng([self.seed, epoch])
        draws = [self._draws(rows, w, rng) for rows, w in self.groups]
        b = self.batch_size
        if self.homogeneous:
            batches = [d[i:i + b] for d in draws for i in range(0, len(d) - b + 1, b)]
            return [batches[j] for j in rng.permutation(len(batches))]
        order = rng.permutation(np.concatenate(draws)) if draws else np.zeros(0, dtype=np.int64)
        return [order[i:i + b] for i in range(0, len(order) - b + 1, b)]

    def batch(self, k: int) -> list[Pair]:
        """The k-th global micro-batch (k counts from 0 across epochs)."""
        epoch, i = divmod(k, self.per_epoch)
        if self._cached[0] != epoch:
            self._cached = (epoch, self._plan(epoch))
        return [self.pairs[j] for j in self._cached[1][i]]


def load_mixture(files: Sequence[str], weights: Sequence[float] | None, media_root: str | None, recipe: Recipe,
                 batch_size: int, seed: int, homogeneous: bool, check_files: bool,
                 skip_bad_rows: bool) -> tuple[Mixture, list[BadRow]]:
    """Read and validate every file, then build the mixture; weight-0 files are not read."""
    ws = list(weights) if weights is not None else [1.0] * len(files)
    pairs: list[Pair] = []
    bad: list[BadRow] = []
    for f, w in zip(files, ws, strict=True):
        if w == 0:
            continue
        got, rejected = load_file(f, media_root, recipe, check_files, skip_bad_rows)
        if not got:
            raise DataError(f"{f}: no valid rows")
        pairs += got
        bad += rejected
    by_file = {str(Path(f)): w for f, w in zip(files, ws, strict=True)}
    return Mixture(pairs, by_file, batch_size, seed, homogeneous), bad
