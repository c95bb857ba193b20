"""What keying eval media by their content costs: `item_key` under each stamp mode vs the path-only key.

Measured in one run: every query and candidate of all 78 tasks of the MMEB fixture tree (tests/mmeb_fixture.py),
keyed as the runner keys them (queries once, the pool twice), with the page cache warm; then one large file
(`--large-mb`, default 1024), cold-ish (written just before) and warm. Prints one JSON line per setting and saves all.

    .venv/bin/python benchmarks/cache_keys.py [--large-mb 1024] [--out benchmarks/results/cache_keys.json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from mmeb_fixture import build_mmeb_tree

from ume.evaluate import cache
from ume.evaluate.loaders import LoadContext, load_task
from ume.evaluate.sources import Sources
from ume.evaluate.tasks import select_tasks
from ume.inputs import Item


def path_key(item: Item) -> str:
    """The key before issue 13: paths only (what a stale file was served under)."""
    video = item.video if item.video is None or isinstance(item.video, str) else [cache._media_key(v)
                                                                                   for v in item.video]
    blob = json.dumps({"text": item.text, "images": [cache._media_key(i) for i in item.images], "video": video},
                      sort_keys=True, ensure_ascii=False)
    return hashlib.sha1(blob.encode("utf-8", "surrogatepass")).hexdigest()


def timed(fn, items: list[Item]) -> float:
    start = time.perf_counter()
    for it in items:
        fn(it)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--large-mb", type=int, default=1024)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "cache_keys.json"))
    args = ap.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        root = build_mmeb_tree(Path(tmp) / "mmeb")
        ctx = LoadContext(Sources(root))
        items: list[Item] = []
        for t in select_tasks(benchmark="mmeb-v2"):
            data = load_task(t, ctx)
            items += [q.item for q in data.queries] + list(data.pool.values()) * 2
        refs = [p for it in items for p in cache._paths(it)]
        files = set(refs)
        timed(path_key, items)  # warm the page cache and imports
        base = timed(path_key, items)
        for mode in ("stat", "sample", "content"):
            cache._file_digest.cache_clear()
            cold = timed(lambda it, m=mode: cache.item_key(it, m), items)
            results.append({"setting": f"mmeb-fixture/{mode}", "items": len(items), "files": len(files),
                            "file_references": len(refs), "seconds": round(cold, 4), "path_key_seconds": round(base, 4),
                            "us_per_reference": round(1e6 * (cold - base) / max(len(refs), 1), 1),
                            "ratio_to_path_key": round(cold / base, 2)})
        big = Path(tmp) / "large.bin"
        with open(big, "wb") as f:
            for _ in range(args.large_mb):
                f.write(os.urandom(2**20))
        for mode in ("stat", "sample", "content"):
            for state in ("first", "warm"):
                cache._file_digest.cache_clear()
                start = time.perf_counter()
                cache.media_stamp(big, mode)
                results.append({"setting": f"large-{args.large_mb}MB/{mode}/{state}",
                                "seconds": round(time.perf_counter() - start, 5)})
    for r in results:
        print(json.dumps(r))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
