"""`ume embed` at scale: items/s for one process vs 2 torchrun ranks vs 2 Ray actors on the same input (tiny and mid
model, disc and gen), and peak memory vs corpus size, measured in one run.

Every run is a whole `ume embed` command in a child process, timed from start to exit (model loads included: what a
user waits for), on a generated corpus of short texts with an image every fourth row. The engines get the same two
cores: one process runs 2 torch threads, each rank or actor 1. Each run's vectors are compared with the one-process
run's (the engines must agree bytewise at one thread; at two threads float sums may differ, so the cosine is
reported). Peak memory is the largest resident set of the run's process tree (`getrusage(RUSAGE_CHILDREN)` after
each child, a fresh interpreter per run), at two corpus sizes: flat in corpus size means the 20k run's peak is
the 1k run's.

    .venv/bin/python benchmarks/embed_scale.py [--items 64] [--sizes 1000 20000] [--out FILE]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "examples" / "tiny-qwen2-vl"
WORDS = "a red circle two blue squares a green triangle the chart where figs win a yellow diamond".split()
RAY_RUNNER = """
import sys, ray
from ume.cli import main
ray.init(num_cpus=2, include_dashboard=False, logging_level="warning")
main(sys.argv[1:])
"""


def corpus(root: Path, n: int) -> Path:
    """`n` rows: texts of 4-12 words, every fourth row with one of four small PNGs."""
    from PIL import Image

    media = root / "media"
    media.mkdir(parents=True, exist_ok=True)
    for i, colour in enumerate(["red", "green", "blue", "orange"]):
        buf = io.BytesIO()
        Image.new("RGB", (56, 56), colour).save(buf, "PNG")
        (media / f"{i}.png").write_bytes(buf.getvalue())
    rng = np.random.default_rng(0)
    path = root / f"items-{n}.jsonl"
    with path.open("w") as f:
        for i in range(n):
            row = {"id": f"r{i}", "text": " ".join(rng.choice(WORDS, size=4 + i % 9))}
            if i % 4 == 0:
                row["image"] = f"media/{i // 4 % 4}.png"
            f.write(json.dumps(row) + "\n")
    return path


def embed(engine: str, model: Path, items: Path, out: Path, mode: str, max_new_tokens: int, chunk: int) -> dict:
    """One whole `ume embed` run in a child process: wall seconds, peak RSS of the tree, exit status."""
    args = ["embed", "--model", str(model), "--input", str(items), "--output", str(out), "--mode", mode,
            "--batch-size", "8", "--chunk-size", str(chunk)]
    if mode != "disc":
        args += ["--max-new-tokens", str(max_new_tokens), "--seed", "0"]
    threads = "2" if engine == "1 process" else "1"
    if engine == "2 torchrun ranks":
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "ume",
               *args]
    elif engine == "2 ray actors":
        cmd = [sys.executable, "-c", RAY_RUNNER, *args, "--engine", "ray", "--workers", "2"]
    else:
        cmd = [sys.executable, "-m", "ume", *args]
    env = {**os.environ, "OMP_NUM_THREADS": threads, "TQDM_DISABLE": "1", "HF_HUB_OFFLINE": "1"}
    shutil.rmtree(out, ignore_errors=True)
    t = time.perf_counter()
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    last = (res.stdout.strip().splitlines() or [""])[-1]
    return {"wall_s": round(wall, 1), "rc": res.returncode, "last_line": last,
            "stderr_tail": res.stderr[-400:] if res.returncode else ""}


def peak_rss(model: Path, items: Path, out: Path) -> dict:
    """Peak RSS of one disc run in a fresh child (RUSAGE_CHILDREN of a wrapper process, so earlier runs don't count)."""
    code = ("import resource, subprocess, sys, json; r = subprocess.run(sys.argv[1:]); "
            "print(json.dumps({'rc': r.returncode, "
            "'peak_rss_mb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024}))")
    cmd = [sys.executable, "-c", code, sys.executable, "-m", "ume", "embed", "--model", str(model), "--input",
           str(items), "--output", str(out), "--batch-size", "16"]
    shutil.rmtree(out, ignore_errors=True)
    t = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1",
                                                                   "OMP_NUM_THREADS": "2", "HF_HUB_OFFLINE": "1"})
    got = json.loads(res.stdout.strip().splitlines()[-1])
    return {**got, "wall_s": round(time.perf_counter() - t, 1)}


def agreement(a: Path, b: Path) -> dict:
    x, y = np.load(a / "embeddings.npy"), np.load(b / "embeddings.npy")
    x, y = x.reshape(len(x), -1), y.reshape(len(y), -1)
    cos = (x * y).sum(-1) / np.linalg.norm(x, axis=-1) / np.linalg.norm(y, axis=-1)
    return {"identical": bool(np.array_equal(x, y)), "min_cosine": round(float(cos.min()), 6)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=256, help="corpus rows for the engine comparison")
    ap.add_argument("--chunk-size", type=int, default=32, help="rows per chunk: the unit ranks and actors share")
    ap.add_argument("--sizes", type=int, nargs="*", default=[1000, 20000], help="corpus rows for peak memory")
    ap.add_argument("--max-new-tokens", type=int, default=16)
    ap.add_argument("--models", nargs="*", default=["tiny", "mid"])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "embed_scale.json")
    args = ap.parse_args()

    from ume.tiny import build_tiny

    work = Path(tempfile.mkdtemp(prefix="ume-embed-scale-"))
    models = {"tiny": TINY}
    if "mid" in args.models:
        models["mid"] = work / "mid"
        build_tiny(models["mid"], size="mid", seed=0)
    items = corpus(work, args.items)
    runs, ratios = [], {}
    for name in args.models:
        for mode in ("disc", "gen"):
            one = None
            for engine in ("1 process", "2 torchrun ranks", "2 ray actors"):
                out = work / f"{name}-{mode}-{engine.replace(' ', '-')}"
                got = {"model": name, "mode": mode, "engine": engine, "items": args.items,
                       **embed(engine, models[name], items, out, mode, args.max_new_tokens, args.chunk_size)}
                got["items_per_s"] = round(args.items / got["wall_s"], 2)
                if one is None:
                    one = out
                elif got["rc"] == 0:
                    got["vs_1_process"] = agreement(one, out)
                runs.append(got)
                print(json.dumps(got), flush=True)
            base = next(r for r in runs if (r["model"], r["mode"], r["engine"]) == (name, mode, "1 process"))
            for r in runs:
                if (r["model"], r["mode"]) == (name, mode) and r is not base:
                    ratios[f"{name} {mode}: {r['engine']} / 1 process (items/s)"] = round(
                        r["items_per_s"] / base["items_per_s"], 2)
    memory = []
    for n in args.sizes:
        got = {"items": n, **peak_rss(TINY, corpus(work, n), work / f"rss-{n}")}
        memory.append(got)
        print(json.dumps(got), flush=True)
    if len(memory) >= 2:
        ratios[f"peak RSS {memory[-1]['items']} / {memory[0]['items']} items"] = round(
            memory[-1]["peak_rss_mb"] / memory[0]["peak_rss_mb"], 2)
    result = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "note": (
        "whole-process wall time incl. model load; 1 process = 2 torch threads, each rank/actor = 1"),
        "runs": runs, "memory": memory, "ratios": ratios}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(ratios, indent=1))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
