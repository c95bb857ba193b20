"""What one decoding step of the stock model costs as the running batch grows (JSON out).

Continuous batching saves row-steps (rows x steps); it saves time only in the part of a step that grows with
the rows. This measures that split on the machine at hand: one step (the model's forward over one new token per
row against a cache of `--length` columns, plus the LM head over the rows) for 1 to 32 rows, median of 30.

    .venv/bin/python benchmarks/decode_step.py [--size mid] [--length 150] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

import ume
from ume.compat import cache_kwargs
from ume.kv_cache import decode_cache
from ume.readout import last_hidden
from ume.tiny import build_tiny


@torch.no_grad()
def step_ms(model: torch.nn.Module, rows: int, length: int, steps: int = 30) -> float:
    ids = torch.randint(10, 500, (rows, length))
    mask = torch.ones(rows, length, dtype=torch.long)
    cache = decode_cache(model)
    last_hidden(model, input_ids=ids, attention_mask=mask,
                position_ids=torch.arange(length).view(1, 1, -1).expand(3, rows, -1), **cache_kwargs(model, cache))
    times = []
    for s in range(steps):
        mask = torch.cat([mask, mask.new_ones(rows, 1)], dim=1)
        t = time.perf_counter()
        out = last_hidden(model, input_ids=ids[:, :1], attention_mask=mask,
                          position_ids=torch.full((3, rows, 1), length + s), **cache_kwargs(model, cache))
        model.lm_head(out.last_hidden_state[:, -1])
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="mid")
    ap.add_argument("--length", type=int, default=150)
    ap.add_argument("--out", default="benchmarks/results/decode_step.json")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = ume.load(build_tiny(Path(tmp) / args.size, size=args.size, seed=0), device="cpu").model
        rows = {}
        for n in (1, 2, 4, 8, 16, 32):
            rows[n] = step_ms(model, n, args.length)
            print(f"{n:2d} rows: {rows[n]:.1f} ms per step", flush=True)
    out = {"meta": {"size": args.size, "cache_length": args.length, "torch": torch.__version__,
                    "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "dtype": "float32"},
           "step_ms_by_rows": rows, "step_32_over_step_1": rows[32] / rows[1]}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"a 32-row step costs {rows[32] / rows[1]:.2f}x a 1-row step; saved {args.out}")


if __name__ == "__main__":
    main()
