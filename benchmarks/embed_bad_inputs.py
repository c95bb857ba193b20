"""`ume embed` on the 60-line fuzz corpus (tests/bad_corpus.py): peak RSS, wall time, and the cosine of every good
item's vector against the item embedded alone.

Each run is a child process under an address-space cap (`--cap-gb`) and a timeout, so a version that reads
/dev/zero or pads a million-character text fails instead of the machine. `--src DIR` runs another source tree on
the same corpus (e.g. `git archive HEAD src | tar -x -C /tmp/before`), also on `--subset` (the lines an older
version survives). Prints one JSON line per run and saves all.

    .venv/bin/python benchmarks/embed_bad_inputs.py [--src /tmp/before/src] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from bad_corpus import build_corpus  # noqa: E402

TINY = ROOT / "examples" / "tiny-qwen2-vl"
CHILD = """
import json, resource, sys, time
from pathlib import Path
from ume.embed.job import run_embed
t = time.perf_counter()
try:
    summary, crash = run_embed(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])), None
except BaseException as e:
    summary, crash = None, f"{type(e).__name__}: {str(e)[:160]}"
print(json.dumps({"summary": summary, "crash": crash, "seconds": round(time.perf_counter() - t, 1),
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}))
"""
# what an older ume cannot survive at all: it stops the whole run (decode error, TypeError, a hang, MemoryError)
FATAL_BEFORE = {"bad-utf8", "types-images", "types-video", "types-text", "types-text-list", "types-images-obj",
                "zero", "random", "fifo", "fifo-video", "zero-video", "\\ud800", "sur-text", "nan", "frames-bad",
                "both", "empty-path", "huge-text"}


def child(src: Path | None, items: Path, out: Path, cap: int, timeout: int) -> dict:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    env = {**os.environ, "TQDM_DISABLE": "1", "HF_HUB_OFFLINE": "1"}
    if src is not None:
        env["PYTHONPATH"] = str(src)
    try:
        res = subprocess.run([sys.executable, "-c", CHILD, str(TINY), str(items), str(out)], preexec_fn=limit,
                             env=env, capture_output=True, text=True, timeout=timeout, cwd=tempfile.gettempdir())
    except subprocess.TimeoutExpired:
        return {"crash": f"timed out after {timeout} s (hang)"}
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
    return json.loads(lines[-1]) if lines else {"crash": f"exit {res.returncode}: {res.stderr[-300:]}"}


def subset(items: Path) -> Path:
    keep = []
    for raw in items.read_bytes().split(b"\n"):
        text = raw.removeprefix(b"\xef\xbb\xbf").decode("utf-8", "replace")
        if not text.strip() or text.startswith("[[[") or '"id": [1]' in text:
            continue
        if any(f'"id": "{d}"' in text for d in FATAL_BEFORE):
            continue
        keep.append(raw.removeprefix(b"\xef\xbb\xbf"))
    path = items.with_name("subset.jsonl")
    path.write_bytes(b"\n".join(keep) + b"\n")
    return path


def cosines(items: Path, out: Path) -> dict:
    import ume
    from ume.embed.sources import read_items

    enc = ume.load(TINY, device="cpu")
    emb = np.load(out / "embeddings.npy")
    rows = read_items(items)
    cos = [float(enc.encode([r.item]).embeddings[0] @ emb[i]) for i, r in enumerate(rows)
           if r.item is not None and not np.isnan(emb[i]).any()]
    return {"good_items": len(cos), "min_cosine_vs_alone": round(min(cos), 6)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--src", type=Path, default=None, help="another ume source tree to run on the same corpus")
    ap.add_argument("--cap-gb", type=float, default=12.0)
    ap.add_argument("--timeout", type=int, default=600)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "embed_bad_inputs.json"))
    args = ap.parse_args()
    cap = int(args.cap_gb * 2**30)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        items, _ = build_corpus(Path(tmp) / "corpus")
        part = subset(items)
        for name, src in (("this tree", None), *((("--src", args.src),) if args.src else ())):
            for label, path in (("full corpus (60 lines)", items), ("survivable subset", part)):
                out = Path(tmp) / f"out-{len(results)}"
                r = {"run": name, "input": label, **child(src, path, out, cap, args.timeout)}
                if src is None and r.get("crash") is None:
                    r.update(cosines(path, out))
                results.append(r)
                print(json.dumps(r), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
