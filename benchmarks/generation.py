"""The generation seam on the CPU, against the reference method, measured in one run (JSON out).

Reference = HF `generate(output_hidden_states=True, return_dict_in_generate=True)` over fixed batches, the
vector at `hidden_states[j+1][-1]` (what UME-R1's eval does); disc reference = one forward over the whole
prompt. Ours = `Encoder.encode`: continuous batching, disc stopped at `<disc_emb>`, `mode="both"`, and k
samples sharing one prefill. Random-weight models get controlled reasoning lengths through the same
`ForceGenAt` rule on both sides, so both decode exactly the same tokens and their vectors must agree.

Reported per setting: wall time, tokens or items per second, the ratio to the reference, peak RSS growth and
the max cosine deviation; and the machine's physical bounds (measured matmul FLOP/s and copy bandwidth) with
how far each decode figure is from the bound they imply. The settings compared run in interleaved rounds and a
ratio is the median of the rounds' own ratios (each from two runs under the same load; all are kept), since
this machine's speed drifts by more than the differences measured. For gen, `row_step_ratio` is the most any
scheduler can save over fixed batches on these lengths: the reference's rows x steps over the tokens decoded.

    .venv/bin/python benchmarks/generation.py [--sizes mid,2b] [--batches 8,32,64] [--out FILE]

`2b` is a Qwen2-VL-2B-shaped random model (hidden 1536, 28 layers, 151,936-row vocabulary) with the real
Qwen2 tokenizer from qwen.tiktoken (the dashscope wheel, cached as the tests cache it); ~7 GB in fp32.
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
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from memory import PeakRSS

import ume
from ume.batching import make_batch
from ume.inputs import InputLimits, load_item
from ume.tiny import FAMILIES, TinySize, build_tiny, qwen2_tokenizer_from_tiktoken

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the reference readouts
from reference_impl import ForceGenAt, reference_disc, reference_gen

TWO_B = TinySize(hidden=1536, layers=28, heads=12, kv_heads=2, ffn=8960, vision_depth=2, vision_dim=64)


def items_for(n: int, seed: int) -> list[ume.Item]:
    rng = random.Random(seed)
    words = "red blue circle square moves left right count the objects in the scene and compare them".split()
    return [ume.Item(" ".join(rng.choice(words) for _ in range(rng.randint(4, 24)))) for _ in range(n)]


def timed(fn: Any) -> tuple[Any, float, float]:
    with PeakRSS() as mem:
        t = time.perf_counter()
        out = fn()
        wall = time.perf_counter() - t
    return out, wall, mem.growth / 2**20


def rounds(fns: list[Any], repeats: int) -> tuple[list[Any], list[list[float]], list[float]]:
    """Run the settings being compared side by side, `repeats` rounds, the order alternating each round, so a
    drift in this shared machine's speed falls on all of them: per setting its output, walls and peak growth."""
    outs: list[Any] = [None] * len(fns)
    walls: list[list[float]] = [[] for _ in fns]
    mems = [0.0] * len(fns)
    for r in range(repeats):
        for i in range(len(fns)) if r % 2 == 0 else reversed(range(len(fns))):
            outs[i], wall, mem = timed(fns[i])
            walls[i].append(wall)
            mems[i] = max(mems[i], mem)
    return outs, walls, mems


def per_round(num: list[float], den: list[float]) -> list[float]:
    """num / den round by round: each ratio compares two runs made under the same load."""
    return [a / b for a, b in zip(num, den, strict=True)]


def max_dev(a: np.ndarray, b: np.ndarray) -> float:
    a = a.reshape(-1, a.shape[-1]).astype(np.float64)
    b = b.reshape(-1, b.shape[-1]).astype(np.float64)
    return float(1 - np.min(np.sum(a * b, 1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)))


def banned(enc: ume.Encoder) -> list[int]:
    return sorted(enc.eos_ids()) + enc.vision_ids()


def ours_gen(enc: ume.Encoder, items: list[ume.Item], lengths: list[int], batch: int, mode: str = "gen",
             samples: int = 1) -> Any:
    hook = ForceGenAt(lengths, enc.backbone.gen_id, banned(enc)).hook
    return enc.encode(items, mode=mode, batch_size=batch, num_samples=samples, max_new_tokens=max(lengths) + 1,
                      logits_processor=hook, show_progress=False, seed=0 if samples > 1 else None)


def reference_gen_all(enc: ume.Encoder, items: list[ume.Item], lengths: list[int], batch: int) -> np.ndarray:
    bb = enc.backbone
    loaded = [load_item(it, i, InputLimits()) for i, it in enumerate(items)]
    out = []
    for s in range(0, len(items), batch):
        b = make_batch(bb.processor, bb.recipe, loaded[s:s + batch])
        lens = lengths[s:s + batch]
        proc = ForceGenAt(lens, bb.gen_id, banned(enc), prompt_len=b["input_ids"].shape[1])
        out.append(reference_gen(enc.model, b, bb.gen_id, max_new_tokens=max(lens) + 2,
                                 logits_processor=proc).vectors.numpy())
    return np.concatenate(out)


def reference_disc_all(enc: ume.Encoder, items: list[ume.Item], batch: int) -> np.ndarray:
    bb = enc.backbone
    loaded = [load_item(it, i, InputLimits()) for i, it in enumerate(items)]
    return np.concatenate([reference_disc(enc.model, make_batch(bb.processor, bb.recipe, loaded[s:s + batch]),
                                          bb.disc_id).numpy() for s in range(0, len(items), batch)])


def physical_bounds() -> dict[str, float]:
    """Measured fp32 matmul FLOP/s and memory copy bandwidth of this machine (best of 3)."""
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    torch.mm(a, b)
    flops = max(2 * 2048**3 / timed(lambda: torch.mm(a, b))[1] for _ in range(3))
    x = torch.empty(64 * 2**20)  # 256 MB
    y = torch.empty_like(x)
    bw = max(2 * x.numel() * 4 / timed(lambda: y.copy_(x))[1] for _ in range(3))  # read + write
    return {"matmul_flops_per_s": flops, "copy_bytes_per_s": bw}


def decode_bound(params: int, batch: int, bounds: dict[str, float]) -> float:
    """Tokens/s no decoder can beat at this batch: each step reads every weight once (bandwidth) and does
    2 x params FLOPs per row (compute); attention and the KV cache are ignored, so the bound is generous."""
    step = max(params * 4 / bounds["copy_bytes_per_s"], 2 * params * batch / bounds["matmul_flops_per_s"])
    return batch / step


def two_b_checkpoint(root: Path) -> Path:
    """A Qwen2-VL-2B-shaped random checkpoint with the real tokenizer (stack.md §9)."""
    from transformers import AutoModelForImageTextToText

    from ume.tiny import _processor, chat_template, tiny_config

    cache = Path.home() / ".cache" / "ume-tests"
    tiktoken = cache / "qwen.tiktoken"
    if not tiktoken.exists():
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(cache),
                        "dashscope==2.0.2"], check=True)
        with zipfile.ZipFile(cache / "dashscope-2.0.2-py3-none-any.whl") as z:
            tiktoken.write_bytes(z.read("dashscope/resources/qwen.tiktoken"))
    fam = FAMILIES["qwen2_vl"]
    tok = qwen2_tokenizer_from_tiktoken(tiktoken)
    tok.chat_template = chat_template(fam)  # as build_tiny's tokenizers carry it
    ids = {t: tok.convert_tokens_to_ids(t) for t in fam.tokens}
    model = AutoModelForImageTextToText.from_config(tiny_config(fam, TWO_B, 151936, ids))
    out = root / "2b"
    model.save_pretrained(out)
    _processor(fam, tok).save_pretrained(out)
    return out


def run_size(size: str, ckpt: Path, args: argparse.Namespace, bounds: dict[str, float]) -> list[dict[str, Any]]:
    enc = ume.load(ckpt, device="cpu")
    params = sum(p.numel() for p in enc.model.model.language_model.parameters())
    rows: list[dict[str, Any]] = []
    lo, hi = (16, 256) if size == "mid" else (8, 48)
    rep = args.repeats if size == "mid" else 1
    ours_gen(enc, items_for(2, 0), [3, 3], 2)  # warm-up

    def emit(row: dict[str, Any]) -> None:
        row = {"model": size, "lm_params": params, **row}
        print(json.dumps(row), flush=True)
        rows.append(row)

    for batch in args.batches:
        n = 2 * batch  # more items than slots: continuous batching has work to refill
        rng = random.Random(batch)
        lengths = [rng.randint(lo, hi) for _ in range(n)]
        items = items_for(n, batch)
        (ref, ours), (ref_walls, walls), (ref_mem, mem) = rounds(
            [lambda it=items, ln=lengths, b=batch: reference_gen_all(enc, it, ln, b),
             lambda it=items, ln=lengths, b=batch: ours_gen(enc, it, ln, b)], rep)
        ratios, ref_wall, wall = per_round(ref_walls, walls), min(ref_walls), min(walls)
        tokens = sum(x + 1 for x in lengths)
        # fixed batches decode every row until the batch's longest is done: the most continuous batching can save
        padded = sum(len(lengths[s:s + batch]) * (max(lengths[s:s + batch]) + 1) for s in range(0, n, batch))
        emit({"setting": f"gen_mixed_{lo}_{hi}", "batch": batch, "items": n, "tokens": tokens,
              "reference_row_steps": padded, "row_step_ratio": padded / tokens,
              "ours_tokens_per_s": tokens / wall, "reference_tokens_per_s": tokens / ref_wall,
              "ratio": statistics.median(ratios), "ratio_per_round": ratios, "ours_peak_mb": mem,
              "reference_peak_mb": ref_mem,
              "bound_tokens_per_s": decode_bound(params, batch, bounds),
              "ours_share_of_bound": tokens / wall / decode_bound(params, batch, bounds),
              "max_cosine_deviation": max_dev(ours.embeddings, ref)})
    batch = 8
    items = items_for(64 if size == "mid" else 16, 7)
    (ref, ours), (ref_walls, walls), _ = rounds(
        [lambda: reference_disc_all(enc, items, batch),
         lambda: enc.encode(items, mode="disc", batch_size=batch, show_progress=False)], rep)
    ratios = per_round(ref_walls, walls)
    emit({"setting": "disc_short_text", "batch": batch, "items": len(items),
          "ours_items_per_s": len(items) / min(walls), "reference_items_per_s": len(items) / min(ref_walls),
          "ratio": statistics.median(ratios), "ratio_per_round": ratios,
          "max_cosine_deviation": max_dev(ours.embeddings, ref)})
    rng = random.Random(3)
    items = items_for(16, 3)
    lengths = [rng.randint(lo, hi) for _ in items]
    (gen, disc, both), (gen_walls, disc_walls, both_walls), _ = rounds(
        [lambda: ours_gen(enc, items, lengths, 8),
         lambda: enc.encode(items, mode="disc", batch_size=8, show_progress=False),
         lambda: ours_gen(enc, items, lengths, 8, mode="both")], rep)
    separate = [g + d for g, d in zip(gen_walls, disc_walls, strict=True)]
    emit({"setting": "oracle_cost", "items": len(items), "separate_s": min(separate), "gen_s": min(gen_walls),
          "both_s": min(both_walls), "both_over_gen": statistics.median(per_round(both_walls, gen_walls)),
          "both_over_gen_per_round": per_round(both_walls, gen_walls),
          "ratio": statistics.median(per_round(separate, both_walls)),
          "max_cosine_deviation": max(max_dev(both.embeddings, gen.embeddings),
                                      max_dev(both.disc_embeddings, disc.embeddings))})
    k = 8
    items = items_for(4, 5)
    lengths = [rng.randint(lo, hi) for _ in items]
    repeated = [it for it in items for _ in range(k)]  # k prefills per item: each sample its own prompt
    rep_lengths = [n for n in lengths for _ in range(k)]
    _, (shared_walls, sep_walls), _ = rounds(
        [lambda: ours_gen(enc, items, lengths, 4, samples=k),
         lambda: ours_gen(enc, repeated, rep_lengths, 4 * k)], rep)
    ratios = per_round(sep_walls, shared_walls)
    emit({"setting": "passk_8", "items": len(items), "shared_prefill_s": min(shared_walls),
          "separate_prefills_s": min(sep_walls), "ratio": statistics.median(ratios), "ratio_per_round": ratios,
          "sequences": len(repeated)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="mid,2b")
    ap.add_argument("--batches", default="8,32,64", type=lambda s: [int(x) for x in s.split(",")])
    ap.add_argument("--repeats", type=int, default=3,
                    help="interleaved rounds (mid; the 2B-shaped model runs one): ratios are the median of the "
                         "rounds' ratios, rates the fastest round's")
    ap.add_argument("--out", default="benchmarks/results/generation.json")
    args = ap.parse_args()
    torch.manual_seed(0)
    load_start = os.getloadavg()
    bounds = physical_bounds()
    print(json.dumps({"bounds": bounds}), flush=True)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes.split(","):
            ckpt = two_b_checkpoint(Path(tmp)) if size == "2b" else build_tiny(Path(tmp) / size, size=size, seed=0)
            batches = args.batches if size == "mid" else [b for b in args.batches if b <= 8] or [8]
            rows += run_size(size, ckpt, argparse.Namespace(**{**vars(args), "batches": batches}), bounds)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"torch": torch.__version__, "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
            "device": "cpu", "dtype": "float32", "load_avg_1m_start_end": [load_start[0], os.getloadavg()[0]]}
    out.write_text(json.dumps({"meta": meta, "bounds": bounds, "rows": rows}, indent=2) + "\n")
    print(f"saved {out}")


if __name__ == "__main__":
    main()
