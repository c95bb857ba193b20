"""`ume eval`: load each task, encode unique inputs once (cached, resumable, sharded), score, report.

Runs: the requested (query mode, target mode) pair; with `oracle`, also disc/disc and gen/gen and the
per-query oracle max(disc, gen) of the task's main metric; with `samples=k`, k sampled gen embeddings
per query against the target embeddings of the main run, for pass@k coverage. Always `chance`: the main
metric's expected value under a random ranking of the same candidates, the floor every score is read against.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ume.encoder import Encoder, load
from ume.evaluate.cache import EmbeddingCache, item_key, key_seed, model_fingerprint
from ume.evaluate.distributed import Dist
from ume.evaluate.loaders import LoadContext, LoaderError, Protocol, TaskData, load_task
from ume.evaluate.metrics import METRIC_KEYS, chance, mean_metrics, query_metrics, rank
from ume.evaluate.report import LeaderboardMeta, write_reports
from ume.evaluate.sources import Sources
from ume.evaluate.tasks import TaskMeta, select_tasks
from ume.inputs import Item
from ume.io import lock_dir, write_json, write_jsonl
from ume.progress import RunProgress

Mode = Literal["disc", "gen"]
CONFIG_FILE = "eval_config.json"
# settings that change a task's score: two runs that differ in one must not share an output folder
RESULT_SETTINGS = ("model", "data_root", "media_root", "protocol", "ties", "limit", "pool_limit", "max_new_tokens",
                   "backend", "seed", "min_pixels", "max_pixels")


class OutputConflict(ValueError):
    """The output folder holds another run's results (different settings)."""


@dataclass
class EvalConfig:
    """Everything `ume eval` takes; saved with the results."""

    model: str
    data_root: str | None  # a tree of <owner>/<repo> snapshots; None: the Hugging Face hub cache
    output: str
    tasks: tuple[str, ...] = ()
    benchmark: str | None = None
    modality: str | None = None
    meta_task: str | None = None
    qry_mode: Mode = "disc"
    tgt_mode: Mode = "disc"
    samples: int = 1  # >1: pass@k on the query side (gen, temperature 1)
    oracle: bool = False
    batch_size: int = 8
    max_new_tokens: int | None = None
    seed: int = 0
    pred_top_k: int = 10  # predictions kept per query in <task>_pred.jsonl (0 = full ranking)
    limit: int | None = None  # first N queries per task (smoke runs)
    pool_limit: int | None = None  # global tasks: keep the kept queries' positives + the first N others
    device: str | None = None
    dtype: str | None = None
    cache_dir: str | None = None  # default: <output>/cache
    chunk_size: int = 64  # items per cache chunk (what a crash can lose)
    media_root: str | None = None  # an unpacked TIGER-Lab/MMEB-V2 elsewhere (default: its snapshot)
    download: bool = False  # fetch missing repos from the hub (needs network)
    protocol: Protocol = "ume-r1"  # prompt set: UME-R1's own eval strings, or the VLM2Vec harness's
    ties: Literal["ume", "reference"] = "ume"  # ranking ties: rounded + stable, or the reference's raw argsort
    allow_missing: bool = False  # a task that cannot be loaded is reported, but does not fail the run
    fixed_page_names: bool = True  # leaderboard keys ViDoSeek-page-fixed / MMLongBench-page-fixed (current split)
    backend: str = "hf"  # generation backend of gen mode: hf (ume's decoder) or vllm (GPU)
    fail_fast: bool = False  # stop at the first bad row or item instead of reporting it and going on
    overwrite: bool = False  # reuse an output folder that holds results of different settings (its runs/ cleared)
    attn_implementation: str | None = None  # transformers' attention kernel (default: its own choice)
    min_pixels: int | None = None  # per-image floor / cap instead of the recipe's (they change the vectors)
    max_pixels: int | None = None


@dataclass
class Encoded:
    """Vectors for one (side, mode, samples) of a task, and how many were computed now."""

    vectors: dict[str, np.ndarray]
    records: dict[str, dict[str, Any]]
    unique: int
    encoded_now: int


@dataclass
class TaskResult:
    task: TaskMeta
    scores: dict[str, dict[str, Any]] = field(default_factory=dict)  # run label -> 26-key dict + meta
    per_query: dict[str, list[float]] = field(default_factory=dict)  # run label -> main metric per query
    passk: dict[int, float] | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    data: list[dict[str, Any]] = field(default_factory=list)  # what was read: repo, revision, files, rows


def run_labels(cfg: EvalConfig) -> list[tuple[str, str]]:
    runs = [(cfg.qry_mode, cfg.tgt_mode)]
    if cfg.oracle:
        runs += [m for m in (("disc", "disc"), ("gen", "gen")) if m not in runs]
    return runs


def limited(data: Any, limit: int | None, pool_limit: int | None) -> Any:
    """Cut a loaded task in place to its first `limit` queries (a local task keeps only their candidates) and, for
    a global task, the pool to the kept queries' positives + the first `pool_limit` others: a smaller, fixed
    distractor set, cheaper (and easier) than the full pool, reported in the results' settings."""
    if limit is not None:
        data.queries = data.queries[:limit]
        if data.task.ranking == "local":
            used = {n for q in data.queries for n in (q.cand_names or [])}
            data.pool = {n: it for n, it in data.pool.items() if n in used}
    if pool_limit is not None and data.task.ranking == "global":
        relevant = {n for q in data.queries for n in q.labels}
        others = [n for n in data.pool if n not in relevant][:pool_limit]
        keep = relevant | set(others)
        data.pool = {n: it for n, it in data.pool.items() if n in keep}
    return data


class Runner:
    def __init__(self, cfg: EvalConfig, encoder: Encoder | None = None, dist: Dist | None = None) -> None:
        if cfg.samples > 1 and cfg.qry_mode != "gen":
            raise ValueError("--samples > 1 needs --qry-mode gen (pass@k samples reasoning on the query side)")
        self.cfg = cfg
        self.dist = dist or Dist.from_env()
        self.encoder = encoder or load(cfg.model, device=cfg.device or self.dist.device, dtype=cfg.dtype,
                                       backend=cfg.backend, attn_implementation=cfg.attn_implementation,
                                       min_pixels=cfg.min_pixels, max_pixels=cfg.max_pixels)
        self.out = Path(cfg.output)
        self.progress = RunProgress(0, "eval", "task", enabled=False)  # run() shows one display for the run
        self.cache_root = Path(cfg.cache_dir) if cfg.cache_dir else self.out / "cache"
        self.fingerprint = model_fingerprint(cfg.model)
        self.context = LoadContext(Sources(None if cfg.data_root is None else Path(cfg.data_root),
                                           None if cfg.media_root is None else Path(cfg.media_root), cfg.download),
                                   cfg.protocol)
        self.errors: list[dict[str, Any]] = []
        self.missing: dict[str, str] = {}  # task -> why it could not be loaded
        self.timings = {"load": 0.0, "encode": 0.0, "score": 0.0}  # seconds, summed over tasks

    @contextmanager
    def _timed(self, phase: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[phase] += time.perf_counter() - start

    # --- encoding ------------------------------------------------------------------------------------
    def _settings(self, mode: str, samples: int) -> dict[str, Any]:
        if mode == "disc":
            return {"mode": "disc"}
        s = self.encoder.generation_settings(samples, max_new_tokens=self.cfg.max_new_tokens)
        backend = self.encoder.backend if isinstance(self.encoder.backend, str) else self.encoder.backend.name
        out = {"mode": "gen", "backend": backend, **s.describe(), "samples": samples}
        if samples > 1:
            out["seed"] = self.cfg.seed
        return out

    def _cache(self, task: TaskMeta, side: str, mode: str, samples: int) -> EmbeddingCache:
        settings = self._settings(mode, samples)
        digest = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]
        directory = (self.cache_root / self.fingerprint / self.encoder.recipe.digest() / task.name
                     / f"{side}-{mode}-k{samples}-{digest}")
        if self.dist.rank == 0:
            write_json(directory / "settings.json", settings)
        return EmbeddingCache(directory, tag=str(self.dist.rank))

    def encode(self, task: TaskMeta, side: str, items: dict[str, Item], modes: tuple[str, ...],
               samples: int = 1) -> dict[str, Encoded]:
        """Vectors of `items` in each of `modes` (cached per mode). When a side needs disc and gen, what gen
        must encode is encoded once in mode "both": its prefill yields the disc vector for free."""
        caches = {m: self._cache(task, side, m, samples) for m in modes}
        stored = {m: c.load() for m, c in caches.items()}
        for c in caches.values():
            self.errors += [{"task": task.name, "side": side, "reason": p} for p in c.problems]
        self.dist.barrier()  # no rank appends before every rank has read: all must agree on what is missing
        missing = {m: sorted(k for k in items if k not in stored[m][0]) for m in modes}
        if set(modes) == {"disc", "gen"} and samples == 1:
            jobs = [("both", missing["gen"]), ("disc", sorted(set(missing["disc"]) - set(missing["gen"])))]
        else:
            jobs = [(m, missing[m]) for m in modes]
        jobs = [(m, keys[self.dist.rank::self.dist.world]) for m, keys in jobs]
        total = sum(len(keys) for _, keys in jobs)
        desc = f"{task.name} {side} {'+'.join(modes)}" + (f" x{samples}" if samples > 1 else "")
        done = tokens = 0
        start_t = time.perf_counter()
        if total:
            self.progress.status(f"{desc}: 0/{total} items")
        for mode, mine in jobs:
            for start in range(0, len(mine), self.cfg.chunk_size):
                keys = mine[start:start + self.cfg.chunk_size]
                res = self.encoder.encode(
                    [items[k] for k in keys], mode=mode, batch_size=self.cfg.batch_size, num_samples=samples,
                    max_new_tokens=self.cfg.max_new_tokens, on_error="raise" if self.cfg.fail_fast else "skip",
                    show_progress=False,
                    seed=[key_seed(k, self.cfg.seed) for k in keys] if samples > 1 else None)
                recs = self._records(task, side, keys, res)
                outputs = {"disc": res.disc_embeddings, "gen": res.embeddings} if mode == "both" else \
                    {mode: res.embeddings}
                for m, vecs in outputs.items():
                    kept = recs if m == "gen" else [{k: r[k] for k in ("key", "error") if k in r} for r in recs]
                    caches[m].append(keys, vecs, kept)
                    stored[m][0].update(zip(keys, vecs, strict=True))
                    stored[m][1].update((r["key"], r) for r in kept)
                done += len(keys)
                tokens += 0 if res.num_tokens is None else int(res.num_tokens.sum())
                rate = f", {tokens / (time.perf_counter() - start_t):,.0f} tok/s" if tokens else ""
                self.progress.status(f"{desc}: {done}/{total} items{rate}")
        out = {}
        for m in modes:
            vectors, records = stored[m]
            if self.dist.world > 1:
                vectors, records = self.dist.merge(vectors), self.dist.merge(records)
            now = sum(len(keys) for job, keys in jobs if job == m or (job == "both" and m in ("disc", "gen")))
            out[m] = Encoded({k: vectors[k] for k in items}, records, unique=len(items), encoded_now=now)
        return out

    def _records(self, task: TaskMeta, side: str, keys: list[str], res: Any) -> list[dict[str, Any]]:
        errs = {e.index: e.reason for e in res.errors}
        recs = []
        for i, k in enumerate(keys):
            rec: dict[str, Any] = {"key": k}
            if res.mode in ("gen", "both"):
                got = res.samples
                rec.update(num_tokens=got.num_tokens[i].tolist(), forced=got.forced[i].tolist(),
                           text=got.texts[i][0])
            if i in errs:
                rec["error"] = errs[i]
                self.errors.append({"task": task.name, "side": side, "key": k, "reason": errs[i]})
            recs.append(rec)
        return recs

    # --- scoring -------------------------------------------------------------------------------------
    @staticmethod
    def rankings(data: TaskData, qvecs: list[np.ndarray], cvecs: dict[str, np.ndarray],
                 ties: Literal["ume", "reference"] = "ume") -> list[list[str]]:
        """Ranked candidate names per query: its own list (local) or the whole pool (global).

        Similarities are computed with the reference's own calls (eval.py / eval_twomode.py): one
        `np.dot(Q, C.T)` over the pool for global tasks, `np.dot(q, C_q.T)` per query for local ones, in
        float32 with the reference's ties and float64 otherwise."""
        names = list(data.pool)
        index = {n: i for i, n in enumerate(names)}
        dtype = np.float32 if ties == "reference" else np.float64
        cands = np.nan_to_num(np.stack([cvecs[n] for n in names]).astype(dtype), nan=0.0)  # failed: scores 0
        failed = [bool(np.isnan(qv).any()) for qv in qvecs]  # a failed query ranks nothing: every metric is 0
        is_global = [q.cand_names is None for q in data.queries]
        rows = {i: k for k, i in enumerate(i for i, g in enumerate(is_global) if g and not failed[i])}
        matrix = np.dot(np.stack([qvecs[i] for i in rows]).astype(dtype), cands.T) if rows else None
        out: list[list[str]] = []
        for i, (q, qv) in enumerate(zip(data.queries, qvecs, strict=True)):
            if failed[i]:
                out.append([])
            elif is_global[i]:
                out.append(rank(matrix[rows[i]], names, ties))
            else:
                subset = q.cand_names
                out.append(rank(np.dot(qv.astype(dtype), cands[[index[n] for n in subset]].T), subset, ties))
        return out

    def score(self, data: TaskData, qvecs: list[np.ndarray], cvecs: dict[str, np.ndarray]
              ) -> tuple[dict[str, Any], list[dict[str, float]], list[list[str]]]:
        preds = self.rankings(data, qvecs, cvecs, self.cfg.ties)
        per_query = [query_metrics(p, q.labels, q.rel_scores) for p, q in zip(preds, data.queries, strict=True)]
        return mean_metrics(per_query), per_query, preds

    # --- a task --------------------------------------------------------------------------------------
    def run_task(self, task: TaskMeta) -> TaskResult | None:
        try:
            with self._timed("load"):
                data = load_task(task, self.context)
        except LoaderError as e:
            self.missing[task.name] = str(e)
            self.errors.append({"task": task.name, "reason": str(e)})
            return None
        self.errors += data.errors
        if self.cfg.fail_fast and data.errors:
            raise LoaderError(data.errors[0]["reason"])
        limited(data, self.cfg.limit, self.cfg.pool_limit)
        if not data.queries:
            reason = f"task {task.name}: no loadable query ({len(data.errors)} row errors, see errors.jsonl)"
            self.missing[task.name] = reason
            self.errors.append({"task": task.name, "reason": reason})
            return None
        result = TaskResult(task, data=data.provenance)
        for q in data.queries:  # decode-stage errors name the task, row and side, not a cache key
            q.item = replace(q.item, source=f"task {task.name}: row {q.info.get('row', '?')}: qry")
        data.pool = {n: replace(it, source=f"task {task.name}: candidate {n!r}: tgt") for n, it in data.pool.items()}
        qkeys = [item_key(q.item) for q in data.queries]
        qitems = dict(zip(qkeys, (q.item for q in data.queries), strict=True))
        citems = {item_key(it): it for it in data.pool.values()}
        ckey = {n: item_key(it) for n, it in data.pool.items()}
        encoded: dict[tuple[str, str], Encoded] = {}
        labels = run_labels(self.cfg)
        for side, items, col in (("qry", qitems, 0), ("tgt", citems, 1)):
            modes = tuple(sorted({pair[col] for pair in labels}))
            with self._timed("encode"):
                encoded.update(((side, m), e) for m, e in self.encode(task, side, items, modes).items())
        for qmode, tmode in labels:
            q, c = encoded["qry", qmode], encoded["tgt", tmode]
            with self._timed("score"):
                metrics, per_query, preds = self.score(data, [q.vectors[k] for k in qkeys],
                                                       {n: c.vectors[ckey[n]] for n in data.pool})
            label = f"{qmode}-{tmode}"
            result.scores[label] = metrics
            result.per_query[label] = [m[task.metric] for m in per_query]
            if self.dist.rank == 0:
                self._write_run(label, data, metrics, preds, q, c, qkeys)
        if self.cfg.oracle:
            best = np.maximum(result.per_query["disc-disc"], result.per_query["gen-gen"])
            result.per_query["oracle"] = best.tolist()
            result.scores["oracle"] = {task.metric: float(best.mean()), "num_pred": len(best),
                                       "num_data": len(best)}
        floor = [chance(task.metric, q.cand_names if q.cand_names is not None else list(data.pool), q.labels,
                        q.rel_scores) for q in data.queries]
        result.per_query["chance"] = floor
        result.scores["chance"] = {task.metric: float(np.mean(floor)), "num_pred": len(floor),
                                   "num_data": len(floor)}
        if self.cfg.samples > 1:
            with self._timed("encode"):
                result.passk = self._passk(task, data, qitems, qkeys, encoded["tgt", self.cfg.tgt_mode], ckey)
        result.stats = {f"{s}-{m}": {"unique_inputs": e.unique, "encoded_now": e.encoded_now}
                        for (s, m), e in encoded.items()}
        return result

    def _passk(self, task: TaskMeta, data: TaskData, qitems: dict[str, Item], qkeys: list[str],
               tgt: Encoded, ckey: dict[str, str]) -> dict[int, float]:
        k = self.cfg.samples
        sampled = self.encode(task, "qry", qitems, ("gen",), samples=k)["gen"]
        cvecs = {n: tgt.vectors[ckey[n]] for n in data.pool}
        first_hit = np.zeros((len(qkeys), k), dtype=bool)
        for s in range(k):
            preds = self.rankings(data, [sampled.vectors[key][s] for key in qkeys], cvecs, self.cfg.ties)
            first_hit[:, s] = [bool(p) and p[0] in set(q.labels) for p, q in zip(preds, data.queries, strict=True)]
        ks = [2**i for i in range(k.bit_length()) if 2**i <= k]
        if ks[-1] != k:
            ks.append(k)
        return {j: float(first_hit[:, :j].any(axis=1).mean()) for j in ks}

    def _write_run(self, label: str, data: TaskData, metrics: dict[str, Any], preds: list[list[str]],
                   q: Encoded, c: Encoded, qkeys: list[str]) -> None:
        task = data.task
        base = self.out / "runs" / label / task.modality
        forced = [r for e in (q, c) for r in e.records.values() if any(r.get("forced", []))]
        failed_q = sum(bool(np.isnan(q.vectors[k]).any()) for k in dict.fromkeys(qkeys))
        failed_c = sum(bool(np.isnan(v).any()) for v in c.vectors.values())
        meta = {"task": asdict(task), "model": self.cfg.model, "model_fingerprint": self.fingerprint,
                "recipe": self.encoder.recipe.digest(), "run": label, "main_metric": task.metric,
                "num_queries": len(data.queries), "num_candidates": len(data.pool),
                "row_errors": len(data.errors), "forced_gen_emb": len(forced),
                "queries_failed": failed_q, "candidates_failed": failed_c,  # failed queries score 0
                "graded_ndcg": "aligned" if any(x.rel_scores for x in data.queries) else "binary",
                "protocol": self.cfg.protocol, "ties": self.cfg.ties,
                "limit": self.cfg.limit, "pool_limit": self.cfg.pool_limit if task.ranking == "global" else None,
                "reference_quirks": data.notes, "data": data.provenance,
                "settings": {side: self._settings(mode, 1)
                             for side, mode in zip(("qry", "tgt"), label.split("-"), strict=True)}}
        # the 26 reference keys alone, so the official report script ingests exactly what it expects
        write_json(base / f"{task.name}_score.json", {k: metrics[k] for k in (*METRIC_KEYS, "num_pred", "num_data")})
        write_json(base / f"{task.name}_meta.json", meta)
        top = self.cfg.pred_top_k or None
        rows = [{"query_key": key, "prediction": p[:top], "label": x.labels, "rel_scores": x.rel_scores,
                 **({"reasoning": q.records.get(key, {}).get("text")} if label.startswith("gen") else {})}
                for key, p, x in zip(qkeys, preds, data.queries, strict=True)]
        write_jsonl(base / f"{task.name}_pred.jsonl", rows)

    # --- everything ----------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Every selected task; rank 0 holds the output folder's lock for the whole run."""
        with lock_dir(self.out, "ume eval") if self.dist.rank == 0 else nullcontext():
            if self.dist.rank == 0:
                self._claim_folder()
            return self._run()

    def _claim_folder(self) -> None:
        """Refuse to mix this run's results with another run's of different settings in one folder."""
        mine = {k: getattr(self.cfg, k) for k in RESULT_SETTINGS}
        path = self.out / CONFIG_FILE
        if path.is_file():
            before = json.loads(path.read_text(encoding="utf-8"))
            diff = {k: (before.get(k), v) for k, v in mine.items() if before.get(k) != v}
            if diff and not self.cfg.overwrite:
                raise OutputConflict(f"{self.out} holds results of a run with other settings (before, now): {diff}; "
                                     "choose another --output, or --overwrite to replace those results")
            if diff:
                shutil.rmtree(self.out / "runs", ignore_errors=True)
        write_json(path, mine)

    def _run(self) -> dict[str, Any]:
        cfg = self.cfg
        tasks = select_tasks(cfg.tasks, cfg.benchmark, cfg.modality, cfg.meta_task)
        results: list[TaskResult] = []
        self.progress = RunProgress(len(tasks), "eval", "task", enabled=self.dist.rank == 0)
        try:
            for task in tasks:
                self.progress.status(task.name)
                res = self.run_task(task)
                if res is not None:
                    results.append(res)
                self.progress.update()
        finally:
            self.progress.close()
        if self.dist.world > 1:
            self.errors = self.dist.merge_lists(self.errors)
        summary: dict[str, Any] = {}
        if self.dist.rank == 0:
            write_jsonl(self.out / "errors.jsonl", self.errors)
            summary = write_reports(self.out, cfg, tasks, results, self.errors, self.timings,
                                    meta=self.leaderboard_meta(), missing=self.missing,
                                    fixed_page_names=cfg.fixed_page_names)
        self.dist.barrier()
        return summary

    def leaderboard_meta(self) -> LeaderboardMeta:
        """What the leaderboard asks about the model, from the checkpoint itself."""
        model = self.encoder.model
        params = sum(p.numel() for p in model.parameters())
        size = f"{params / 1e9:.1f}B parameters" if params >= 1e8 else f"{params / 1e6:.1f}M parameters"
        return LeaderboardMeta(model_name=Path(self.cfg.model.rstrip("/")).name or self.cfg.model,
                               model_backbone=model.config.model_type, model_size=size,
                               embedding_dimension=self.encoder.dim, url=None)


def run_eval(cfg: EvalConfig) -> dict[str, Any]:
    return Runner(cfg).run()
