"""Evaluation throughput on MiniMMEB: items/s for disc and gen, encoder calls vs unique inputs, and the
time split (load / encode / score), measured by the runner itself. Prints one JSON line per mode.

    .venv/bin/python benchmarks/eval_throughput.py [--scale tiny|small] [--limit 50] [--max-new-tokens 32]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch

import ume
from ume.evaluate.runner import EvalConfig, Runner
from ume.synth.build import build
from ume.tiny import build_tiny


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", default="tiny")
    ap.add_argument("--limit", type=int, default=None, help="queries per task")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--out", default="benchmarks/results/eval_throughput.json")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "minimmeb"
        t = time.perf_counter()
        build(root, seed=0, scale=args.scale, progress=False)
        build_s = time.perf_counter() - t
        model = build_tiny(Path(tmp) / "tiny", seed=0)
        enc = ume.load(model, device="cpu")
        for mode in ("disc", "gen"):
            cfg = EvalConfig(model=str(model), data_root=str(root), output=str(Path(tmp) / f"out-{mode}"),
                             benchmark="minimmeb", qry_mode=mode, tgt_mode=mode, batch_size=args.batch_size,
                             max_new_tokens=args.max_new_tokens, limit=args.limit)
            t = time.perf_counter()
            summary = Runner(cfg, encoder=enc).run()
            wall = time.perf_counter() - t
            stats = [s for task in summary["encoding"].values() for s in task.values()]
            encoded = sum(s["encoded_now"] for s in stats)
            row = {"mode": mode, "scale": args.scale, "limit": args.limit, "max_new_tokens": args.max_new_tokens,
                   "tasks": len(summary["encoding"]), "unique_inputs": sum(s["unique_inputs"] for s in stats),
                   "encoder_items": encoded, "wall_s": wall, "items_per_s": encoded / summary["timings_s"]["encode"],
                   "timings_s": summary["timings_s"], "minimmeb_build_s": build_s,
                   "overall": summary["runs"][f"{mode}-{mode}"]["aggregate"]["overall"]["mean"]}
            print(json.dumps(row), flush=True)
            rows.append(row)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"torch": torch.__version__, "threads": torch.get_num_threads(), "cpu_count": os.cpu_count()}
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    print(f"saved {out}")


if __name__ == "__main__":
    main()
