"""SFT step cost against batch size: plain, GradCache, gradient checkpointing, both.

Each setting runs in its own process (so peak memory is its own): a tiny-family checkpoint, synthetic
pairs with 112x112 images and ~200-token reasoning turns, `SFTTrainer` for `--steps` optimiser steps
(gradient_accumulation_steps 1). Reported per setting: median step time over the steps after the first two, tokens per
step (both sides, padding excluded), tokens/s, and peak memory during training (CUDA: max allocated;
CPU: peak RSS growth over the process's RSS before the first step). Prints one JSON line per setting
and saves them all. Never asserts on time.

    .venv/bin/python benchmarks/sft_step.py [--size mid] [--batches 2,4,8] [--steps 7] [--chunk 2] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from memory import PeakRSS
from PIL import Image, ImageDraw

VARIANTS = {"plain": (False, False), "grad_cache": (True, False), "checkpointing": (False, True),
            "grad_cache+checkpointing": (True, True)}
WORDS = "the image shows a red blue green circle square triangle on the left right top of a white page".split()


def write_data(root: Path, n: int, seed: int = 0) -> Path:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        img = Image.new("RGB", (112, 112), "white")
        ImageDraw.Draw(img).ellipse((10, 10, 90, 90), fill=(rng.randrange(256), rng.randrange(256), 90))
        img.save(root / f"{i}.png")

        def gpt() -> str:
            think = " ".join(rng.choice(WORDS) for _ in range(200))
            return f"<think>{think}</think><answer>{rng.choice(WORDS)}</answer><gen_emb>"

        rows.append({"qry": {"conversations": [{"from": "human", "value": "<image>\nDescribe the picture."},
                                               {"from": "gpt", "value": gpt()}], "image": f"{i}.png"},
                     "pos": {"conversations": [{"from": "human", "value": " ".join(rng.sample(WORDS, 12))},
                                               {"from": "gpt", "value": gpt()}]},
                     "source": "bench"})
    path = root / "sft.json"
    path.write_text(json.dumps(rows))
    return path


def run_one(spec: dict[str, Any]) -> dict[str, Any]:
    from ume.train.config import SFTConfig
    from ume.train.sft import SFTTrainer

    grad_cache, ckpt = VARIANTS[spec["variant"]]
    cfg = SFTConfig(model=spec["model"], data=[spec["data"]], output=spec["output"], max_steps=spec["steps"],
                    per_device_train_batch_size=spec["batch"], gradient_accumulation_steps=1, num_workers=0,
                    save_steps=0, progress=False,
                    grad_cache_chunk=spec["chunk"] if grad_cache else None, gradient_checkpointing=ckpt,
                    warmup_ratio=0.0)
    trainer = SFTTrainer(cfg)
    trainer.export = lambda directory: None  # measure steps, not the final save
    trainer.save_checkpoint = lambda: None
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    with PeakRSS() as mem:
        trainer.train()
    lines = [json.loads(x) for x in (Path(spec["output"]) / "train_log.jsonl").read_text().splitlines()]
    times = [x["step_time"] for x in lines[2:]]
    tokens = statistics.mean(x["tokens"] for x in lines)
    step = statistics.median(times)
    peak = torch.cuda.max_memory_allocated() if cuda else mem.peak - mem.base
    return {"size": spec["size"], "batch": spec["batch"], "variant": spec["variant"],
            "chunk": spec["chunk"] if grad_cache else None, "step_time_s": round(step, 4),
            "tokens_per_step": round(tokens), "tokens_per_s": round(tokens / step, 1),
            "peak_mem_mb": round(peak / 2**20, 1), "device": "cuda" if cuda else "cpu",
            "threads": torch.get_num_threads()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="mid", help="tiny | small | mid (ume.tiny sizes)")
    ap.add_argument("--batches", default="2,4,8")
    ap.add_argument("--steps", type=int, default=7)
    ap.add_argument("--chunk", type=int, default=2, help="GradCache chunk (pairs)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "sft_step.json"))
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one setting (JSON spec) and print it
    args = ap.parse_args()
    if args.one:
        print(json.dumps(run_one(json.loads(args.one))), flush=True)
        return
    from ume.tiny import build_tiny

    batches = [int(b) for b in args.batches.split(",")]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model = build_tiny(root / "model", size=args.size, seed=0)
        (root / "data").mkdir()
        data = write_data(root / "data", n=max(batches) * 4)
        for batch in batches:
            for variant in VARIANTS:
                spec = {"size": args.size, "model": str(model), "data": str(data), "batch": batch, "variant": variant,
                        "chunk": min(args.chunk, batch), "steps": args.steps,
                        "output": str(root / f"run_{batch}_{variant}")}
                done = subprocess.run([sys.executable, __file__, "--one", json.dumps(spec)], capture_output=True,
                                      text=True, env={**os.environ, "TRANSFORMERS_VERBOSITY": "error"})
                if done.returncode != 0:
                    raise RuntimeError(f"{variant} batch {batch} failed:\n{done.stderr[-3000:]}")
                line = json.loads(done.stdout.strip().splitlines()[-1])
                print(json.dumps(line), flush=True)
                results.append(line)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"settings": vars(args) | {"one": None}, "results": results}, indent=2) + "\n")
    print(f"saved {out}")


if __name__ == "__main__":
    main()
