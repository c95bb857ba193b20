"""Which vector library backs `ume index`: faiss-cpu, usearch and hnswlib measured on the same vectors.

For each library: exact (brute-force inner product) search throughput, HNSW build time, HNSW recall@10 against
the exact answer and its query throughput, and save + load time. Vectors are unit vectors (clustered around 500
centres, or uniform: `--data`) at the demo model's width (128) and UME-R1-2B's (1536). Prints one JSON line per
(library, dim) and writes them all.

    .venv/bin/python benchmarks/index_libs.py [--n 50000] [--queries 200] [--out benchmarks/results/index_libs.json]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d), dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def clustered(rng: np.random.Generator, n: int, d: int, clusters: int = 500, spread: float = 0.5) -> np.ndarray:
    """Unit vectors around `clusters` random centres: closer to real embeddings than uniform noise, on which
    every HNSW does poorly (no neighbourhood structure to exploit)."""
    centres = unit(rng, clusters, d)
    x = centres[rng.integers(0, clusters, n)] + spread * unit(rng, n, d)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth, strict=True)]))


def timed(fn, repeat: int = 3):
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def bench_faiss(x, q, k, truth, tmp):
    import faiss

    flat = faiss.IndexIDMap(faiss.IndexFlatIP(x.shape[1]))
    flat.add_with_ids(x, np.arange(len(x), dtype=np.int64))
    exact_s, (_, ids) = timed(lambda: flat.search(q, k))
    t = time.perf_counter()
    hnsw = faiss.IndexHNSWFlat(x.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction = 128
    hnsw.add(x)
    build_s = time.perf_counter() - t
    hnsw.hnsw.efSearch = 64
    ann_s, (_, aids) = timed(lambda: hnsw.search(q, k))
    t = time.perf_counter()
    faiss.write_index(flat, str(tmp / "f.faiss"))
    faiss.read_index(str(tmp / "f.faiss"))
    io_s = time.perf_counter() - t
    return {"exact_recall": recall(ids, truth), "exact_qps": len(q) / exact_s, "hnsw_build_s": build_s,
            "hnsw_recall": recall(aids, truth), "hnsw_qps": len(q) / ann_s, "flat_save_load_s": io_s}


def bench_usearch(x, q, k, truth, tmp):
    from usearch.index import Index, search

    keys = np.arange(len(x), dtype=np.uint64)
    exact_s, m = timed(lambda: search(x, q, k, metric="ip", exact=True))
    t = time.perf_counter()
    idx = Index(ndim=x.shape[1], metric="ip", dtype="f32", connectivity=32, expansion_add=128, expansion_search=64)
    idx.add(keys, x)
    build_s = time.perf_counter() - t
    ann_s, am = timed(lambda: idx.search(q, k))
    t = time.perf_counter()
    idx.save(str(tmp / "u.usearch"))
    Index.restore(str(tmp / "u.usearch"))
    io_s = time.perf_counter() - t
    return {"exact_recall": recall(m.keys, truth), "exact_qps": len(q) / exact_s, "hnsw_build_s": build_s,
            "hnsw_recall": recall(am.keys, truth), "hnsw_qps": len(q) / ann_s, "hnsw_save_load_s": io_s}


def bench_hnswlib(x, q, k, truth, tmp):
    import hnswlib

    bf = hnswlib.BFIndex(space="ip", dim=x.shape[1])
    bf.init_index(max_elements=len(x))
    bf.add_items(x, np.arange(len(x)))
    exact_s, (ids, _) = timed(lambda: bf.knn_query(q, k))
    t = time.perf_counter()
    idx = hnswlib.Index(space="ip", dim=x.shape[1])
    idx.init_index(max_elements=len(x), M=32, ef_construction=128)
    idx.add_items(x, np.arange(len(x)))
    build_s = time.perf_counter() - t
    idx.set_ef(64)
    ann_s, (aids, _) = timed(lambda: idx.knn_query(q, k))
    t = time.perf_counter()
    idx.save_index(str(tmp / "h.bin"))
    h2 = hnswlib.Index(space="ip", dim=x.shape[1])
    h2.load_index(str(tmp / "h.bin"))
    io_s = time.perf_counter() - t
    return {"exact_recall": recall(ids, truth), "exact_qps": len(q) / exact_s, "hnsw_build_s": build_s,
            "hnsw_recall": recall(aids, truth), "hnsw_qps": len(q) / ann_s, "hnsw_save_load_s": io_s}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--data", choices=("clustered", "uniform"), default="clustered")
    ap.add_argument("--out", default="benchmarks/results/index_libs.json")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    rows = []
    for d in (128, 1536):
        n = args.n if d == 128 else args.n // 5
        make = clustered if args.data == "clustered" else unit
        both = make(rng, n + args.queries, d)
        x, q = both[:n], both[n:]
        numpy_s, truth = timed(lambda x=x, q=q: np.argsort(-(q @ x.T), axis=1, kind="stable")[:, : args.k])
        base = {"data": args.data, "dim": d, "n": n, "queries": args.queries, "k": args.k,
                "numpy_exact_qps": args.queries / numpy_s}
        for name, fn in (("faiss", bench_faiss), ("usearch", bench_usearch), ("hnswlib", bench_hnswlib)):
            with tempfile.TemporaryDirectory() as tmp:
                row = {"library": name, **base, **fn(x, q, args.k, truth, Path(tmp))}
            print(json.dumps(row), flush=True)
            rows.append(row)
    import faiss
    import hnswlib
    import usearch

    meta = {"cpu_count": os.cpu_count(), "faiss": faiss.__version__, "usearch": usearch.VERSION_MAJOR and
            f"{usearch.VERSION_MAJOR}.{usearch.VERSION_MINOR}.{usearch.VERSION_PATCH}",
            "hnswlib": getattr(hnswlib, "__version__", "0.8.0"), "numpy": np.__version__}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    print(f"saved {out}")


if __name__ == "__main__":
    main()
