"""The checks that need a GPU, as one script that writes one JSON (run by scripts/gpu_check.sh).

1. vLLM vs the hf backend on the same checkpoint: completion ids and the teacher-forced vectors read after
   the same ids (cosine), tokens/s at batch 64, pass@8 through `n=8`, RL-style rollouts (G=4) distinct.
2. bf16 SFT and RL smoke runs with 1 and 2 processes (torchrun), losses finite and logged.
3. SFT under DeepSpeed ZeRO-2 and ZeRO-3 with the shipped configs: the loss of the first steps against the
   DDP run on the same batches.

Every part is timed and its failure recorded (the script goes on); the JSON says what ran and what failed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

OUT = Path(os.environ.get("OUT", "runs/gpu_check"))
RESULTS: dict[str, Any] = {"started": time.strftime("%Y-%m-%dT%H:%M:%S")}


def part(name: str):
    def wrap(fn):
        def run(*args: Any) -> None:
            t = time.perf_counter()
            try:
                RESULTS[name] = {"ok": True, **(fn(*args) or {})}
            except Exception as e:  # record and go on: one JSON says what failed
                RESULTS[name] = {"ok": False, "error": f"{type(e).__name__}: {e}",
                                 "trace": traceback.format_exc()[-4000:]}
            RESULTS[name]["seconds"] = time.perf_counter() - t
            (OUT / "gpu_check.json").write_text(json.dumps(RESULTS, indent=2) + "\n")
            print(name, json.dumps({k: v for k, v in RESULTS[name].items() if k != "trace"})[:2000], flush=True)
        return run
    return wrap


def checkpoint(size: str) -> Path:
    from ume.tiny import build_tiny

    path = OUT / f"ckpt-{size}"
    return path if (path / "config.json").exists() else build_tiny(path, size=size, seed=0, with_ume_tokens=True)


@part("vllm_parity_and_speed")
def vllm_check(size: str) -> dict[str, Any]:
    import ume

    ckpt = checkpoint(size)
    out: dict[str, Any] = {"size": size}
    words = "red blue circle square moves left right count the objects in the scene and compare them".split()
    rng = np.random.default_rng(0)
    items = [ume.Item(" ".join(rng.choice(words, rng.integers(4, 24)))) for _ in range(64)]
    for dtype in ("float32", "bfloat16"):
        hf = ume.load(ckpt, device="cuda", dtype=dtype)
        t = time.perf_counter()
        a = hf.encode(items, mode="gen", batch_size=64, max_new_tokens=64)
        hf_s = time.perf_counter() - t
        vl = ume.load(ckpt, device="cuda", dtype=dtype, backend="vllm")
        vl.encode(items[:2], mode="gen", max_new_tokens=4)  # engine start-up, not measured
        t = time.perf_counter()
        b = vl.encode(items, mode="gen", batch_size=64, max_new_tokens=64)
        vl_s = time.perf_counter() - t
        same = [i for i in range(len(items)) if a.token_ids[i] == b.token_ids[i]]
        cos = [float(np.dot(a.embeddings[i], b.embeddings[i])) for i in same]
        tokens = int(a.num_tokens.sum())
        out[dtype] = {"same_ids": len(same), "items": len(items), "min_cos_same_ids": min(cos) if cos else None,
                      "hf_tokens_per_s": tokens / hf_s, "vllm_tokens_per_s": int(b.num_tokens.sum()) / vl_s}
        p = vl.encode(items[:8], mode="gen", num_samples=8, max_new_tokens=32, seed=0)
        out[dtype]["passk8_distinct_per_item"] = [len({tuple(t) for t in p.token_ids[i]}) for i in range(8)]
        del hf, vl
    return out


def torchrun(n: int, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(n), "-m", "ume.train", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


def log_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (path / "train_log.jsonl").read_text().splitlines() if x.strip()]


@part("bf16_sft_rl_smoke")
def smoke() -> dict[str, Any]:
    from ume.synth.build import build

    data = OUT / "minimmeb"
    if not (data / "manifest.json").exists():
        build(data, seed=0, scale="tiny", progress=False)
    ckpt = checkpoint("tiny")
    out: dict[str, Any] = {}
    for n in (1, 2):
        sft = OUT / f"sft-bf16-{n}"
        p = torchrun(n, "sft", "--model", str(ckpt), "--data", str(data / "train/sft.json"), "--media-root",
                     str(data), "--output", str(sft), "--max-steps", "4", "--bf16", "true")
        out[f"sft_{n}"] = {"rc": p.returncode, "losses": [r.get("loss") for r in log_of(sft)] if p.returncode == 0
                           else p.stderr[-2000:]}
        rl = OUT / f"rl-bf16-{n}"
        p = torchrun(n, "rl", "--model", str(sft), "--data", str(data / "train/rl.json"), "--media-root", str(data),
                     "--output", str(rl), "--max-steps", "2", "--num-generations", "2", "--max-completion-length",
                     "16", "--per-device-train-batch-size", "2", "--bf16", "true")
        out[f"rl_{n}"] = {"rc": p.returncode, "rewards": [r.get("qry_reward") for r in log_of(rl)]
                          if p.returncode == 0 else p.stderr[-2000:]}
    return out


@part("deepspeed_sft")
def deepspeed() -> dict[str, Any]:
    data = OUT / "minimmeb"
    ckpt = checkpoint("tiny")
    runs = {}
    for name, extra in (("ddp", []), ("zero2", ["--deepspeed", "configs/ds_zero2.json"]),
                        ("zero3", ["--deepspeed", "configs/ds_zero3.json"])):
        run = OUT / f"sft-{name}"
        p = torchrun(2, "sft", "--model", str(ckpt), "--data", str(data / "train/sft.json"), "--media-root",
                     str(data), "--output", str(run), "--max-steps", "3", "--bf16", "false", *extra)
        runs[name] = [r.get("loss") for r in log_of(run)] if p.returncode == 0 else p.stderr[-2000:]
    ddp = runs["ddp"]
    return {"losses": runs, "max_abs_diff_vs_ddp": {
        k: float(np.max(np.abs(np.array(v) - np.array(ddp)))) for k, v in runs.items()
        if k != "ddp" and isinstance(v, list) and isinstance(ddp, list) and len(v) == len(ddp)}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", default="vllm,smoke,deepspeed",
                    help="comma-separated; the vLLM part runs in its own environment (see gpu_check.sh)")
    parts = ap.parse_args().parts.split(",")
    OUT.mkdir(parents=True, exist_ok=True)
    import torch

    if (OUT / "gpu_check.json").exists():  # one JSON for the whole check, across its environments
        RESULTS.update({k: v for k, v in json.loads((OUT / "gpu_check.json").read_text()).items() if k != "started"})
    RESULTS["device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no cuda"
    if "vllm" in parts:
        import transformers

        RESULTS["vllm_env"] = {"torch": torch.__version__, "transformers": transformers.__version__}
        for size in ("tiny", "mid"):
            vllm_check(size)
            RESULTS[f"vllm_parity_and_speed_{size}"] = RESULTS.pop("vllm_parity_and_speed")
    if "smoke" in parts:
        smoke()
    if "deepspeed" in parts:
        deepspeed()
    (OUT / "gpu_check.json").write_text(json.dumps(RESULTS, indent=2) + "\n")


if __name__ == "__main__":
    main()
