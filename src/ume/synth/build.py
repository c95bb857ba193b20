"""`ume synth build`: every eval and hold-out task, the training pairs, and ROOT/manifest.json.

Work is split into independent units (one eval task, or one source task of one training split), each
with its own seed streams and its own files, so running them in parallel changes nothing on disk.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ume.synth.eval_writer import write_task
from ume.synth.files import write_json
from ume.synth.tasks import BASE_TASKS, MINI_TASKS, TASKS_BY_NAME
from ume.synth.train_writer import train_unit, write_train_files
from ume.synth.vocab import HOLDOUT_COMBOS

MANIFEST = "manifest.json"
TRAIN_SPLITS = ("sft", "rl")


@dataclass(frozen=True)
class Scale:
    """Queries per eval task, and training pairs per source task (one source per base task)."""

    queries: int
    sft_per_source: int
    rl_per_source: int


SCALES: dict[str, Scale] = {
    "tiny": Scale(queries=12, sft_per_source=3, rl_per_source=1),  # unit tests: 39 SFT, 13 RL pairs
    "small": Scale(queries=200, sft_per_source=231, rl_per_source=39),  # ~3000 SFT, ~500 RL pairs
    "full": Scale(queries=1000, sft_per_source=1540, rl_per_source=231),  # ~20000 SFT, ~3000 RL pairs
}


def _prepare(out: Path, overwrite: bool) -> None:
    """Refuse to mix builds; only a directory holding a MiniMMEB manifest is ever deleted."""
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out} is not empty; use overwrite to replace a previous MiniMMEB build")
        if not (out / MANIFEST).is_file():
            raise FileExistsError(f"{out} is not empty and holds no {MANIFEST}; refusing to delete it")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def _eval_unit(out: Path, name: str, seed: int, n: int) -> int:
    return write_task(out, TASKS_BY_NAME[name], seed, n)


def _train_unit(out: Path, split: str, name: str, seed: int, n: int) -> tuple[list[Any], list[Any]]:
    return train_unit(out, split, TASKS_BY_NAME[name], seed, n)


def _run(units: list[tuple[Callable[..., Any], tuple[Any, ...]]], jobs: int, progress: bool) -> Iterator[Any]:
    """Results of the units in submission order, computed by `jobs` processes."""
    bar = tqdm(total=len(units), desc="MiniMMEB", unit="part", disable=not progress)
    if jobs <= 1:
        for fn, args in units:
            yield fn(*args)
            bar.update()
    else:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            for result in pool.map(_call, units):
                yield result
                bar.update()
    bar.close()


def _call(unit: tuple[Callable[..., Any], tuple[Any, ...]]) -> Any:
    fn, args = unit
    return fn(*args)


def build(out: str | Path, seed: int = 0, scale: str = "small", overwrite: bool = False, jobs: int | None = None,
          progress: bool = True) -> dict[str, Any]:
    """Build MiniMMEB into `out`; the same seed and scale give byte-identical files, whatever `jobs` is.

    Returns the manifest.
    """
    out = Path(out)
    sc = SCALES[scale]
    _prepare(out, overwrite)
    per_split = {"sft": sc.sft_per_source, "rl": sc.rl_per_source}
    units: list[tuple[Callable[..., Any], tuple[Any, ...]]] = [
        (_eval_unit, (out, t.name, seed, sc.queries)) for t in MINI_TASKS]
    train_keys = [(split, t.name) for split in TRAIN_SPLITS for t in BASE_TASKS]
    units += [(_train_unit, (out, split, name, seed, per_split[split])) for split, name in train_keys]
    results = list(_run(units, jobs or min(8, os.cpu_count() or 1), progress))
    counts = results[:len(MINI_TASKS)]
    records: dict[str, list[Any]] = {split: [] for split in TRAIN_SPLITS}
    scenes: list[Any] = []
    for (split, _), (recs, specs) in zip(train_keys, results[len(MINI_TASKS):], strict=True):
        records[split] += recs
        scenes += specs
    write_train_files(out, records["sft"], records["rl"], scenes)
    manifest = {
        "name": "MiniMMEB", "generator": "ume.synth", "seed": seed, "scale": scale,
        "tasks": [{
            "name": t.name, "modality": t.modality, "meta_task": t.meta_task, "loader": t.loader,
            "ranking": t.ranking, "metric": t.metric, "instruction": t.instruction, "split": t.split,
            "reasoning_heavy": t.reasoning_heavy, "n_queries": n, "mirrors": t.mirrors, "group": t.group,
            "holdout_of": t.holdout_of, "why": t.why, "seed": seed, "scale": scale,
        } for t, n in zip(MINI_TASKS, counts, strict=True)],
        "train": {"sft": {"path": "train/sft.json", "pairs": len(records["sft"])},
                  "rl": {"path": "train/rl.json", "pairs": len(records["rl"])}, "scenes": "train/scenes.jsonl"},
        "holdout_combos": [list(c) for c in HOLDOUT_COMBOS],
    }
    write_json(out / MANIFEST, manifest)
    return manifest
