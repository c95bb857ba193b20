"""Why gen scores what it scores, on MiniMMEB: answer accuracy and the gold-reasoning ceiling.

Retrieval alone cannot say whether a weak generative embedding comes from wrong reasoning or from a readout
that does not use it. MiniMMEB's generator knows, for every eval query, the reasoning and the answer it
should produce (the annotated `<think>…</think><answer>…</answer>` the SFT data is written with), so:

- **answer accuracy**: the share of queries whose *generated* `<answer>` states the gold one (clauses
  compared order-free: lower-cased, articles and punctuation dropped, split at ",", ";", ":", "?", "." and
  " and "; the multiset of clauses, each a sorted bag of words, must be equal, once the words both start
  with are dropped). For the four tasks whose
  query is text only (MiniCaps_t2i, MiniVidRet, MiniDocTable, MiniDocReport) the query answer restates the
  text, so the positive target's generated answer (the side that must be seen) is scored as well.
- **gold-reasoning ceiling**: the query's gen vector read at `<gen_emb>` after the annotated reasoning,
  teacher forced (the SFT readout), ranked against the same candidates' generated gen vectors: what gen
  would score if the query's reasoning were right.
- **per-query scores** from the eval's full-ranking prediction files, so that two runs on the same queries
  can be compared by the standard error of their paired difference.

Sits above `ume.evaluate` and `ume.train` (it uses the eval runner's cached vectors and the SFT readout).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ume.evaluate.report import standard_error
from ume.io import read_jsonl

TEXT_QUERY_TASKS = ("MiniCaps_t2i", "MiniVidRet", "MiniDocTable", "MiniDocReport")
_ARTICLES = {"a", "an", "the"}


# ---- gold answers from the generator ---------------------------------------------------------------------
def gold(task_name: str, seed: int, n: int) -> list[dict[str, str]]:
    """The annotated query response and answer, and the positive's answer, of the first n eval queries."""
    from ume.synth.registry import doc_groups, item_examples
    from ume.synth.tasks import TASKS_BY_NAME
    from ume.synth.train_writer import assistant_turn

    task = TASKS_BY_NAME[task_name]
    out: list[dict[str, str]] = []
    if task.modality == "visdoc":
        for _, group in doc_groups(task, task.split, seed, n):
            for q in group.queries:
                k = max(q.relevant, key=lambda j: (q.relevant[j], -j))
                out.append({"response": f"<think>{q.think}</think><answer>{q.answer}</answer><gen_emb>",
                            "answer": q.answer, "pos_answer": group.page_answer[k]})
        return out[:n]
    for _, ex in item_examples(task, task.split, seed, n):
        out.append({"response": assistant_turn(ex.query), "answer": ex.query.answer, "pos_answer": ex.positive.answer})
    return out


def answer_of(text: str | None) -> str | None:
    """The generated summary: between <answer> and </answer> (or <gen_emb>, or the end)."""
    if not text or "<answer>" not in text:
        return None
    rest = text.split("<answer>", 1)[1]
    return re.split(r"</answer>|<gen_emb>", rest, maxsplit=1)[0].strip()


def clauses(text: str) -> Counter:
    words = re.sub(r"[^a-z0-9,;:?.\s]", " ", text.lower())
    parts = re.split(r"[,;:?]|\.(?!\d)|\band\b", words)
    bags = [tuple(sorted(w for w in p.split() if w not in _ARTICLES)) for p in parts]
    return Counter(b for b in bags if b)


def same_answer(generated: str | None, gold_answer: str) -> bool:
    """Equal clause multisets, after dropping the words both answers start with ("An image with ...", which
    would otherwise stick to whichever clause comes first)."""
    if generated is None:
        return False
    a, b = generated.split(), gold_answer.split()
    k = 0
    while k < min(len(a), len(b)) - 1 and a[k].lower() == b[k].lower() and a[k][-1:].isalnum():
        k += 1
    return clauses(" ".join(a[k:])) == clauses(" ".join(b[k:]))


# ---- per-query scores from an eval run ---------------------------------------------------------------------
def per_query(run_dir: Path, label: str, task: str, modality: str, metric: str) -> list[float]:
    """The task's main metric per query, recomputed from the run's full-ranking `<task>_pred.jsonl`."""
    from ume.evaluate.metrics import query_metrics

    rows = read_jsonl(run_dir / "runs" / label / modality / f"{task}_pred.jsonl")
    return [query_metrics(r["prediction"], r["label"], r.get("rel_scores"))[metric] for r in rows]


def reasoning(run_dir: Path, task: str, modality: str) -> list[str | None]:
    return [r.get("reasoning") for r in read_jsonl(run_dir / "runs" / "gen-gen" / modality / f"{task}_pred.jsonl")]


def combine(task_values: dict[str, Sequence[float]]) -> dict[str, float]:
    """Task-weighted mean x100 and its standard error (per task over queries, in quadrature), as the report."""
    means = [100 * float(np.mean(v)) for v in task_values.values()]
    errors = [standard_error(v) for v in task_values.values()]
    return {"mean": float(np.mean(means)), "se": float(np.sqrt(sum(e**2 for e in errors)) / len(errors)),
            "n": len(task_values)}


def paired(a: dict[str, Sequence[float]], b: dict[str, Sequence[float]]) -> dict[str, float]:
    """a - b on the same queries: the difference of task-weighted means, and its paired standard error."""
    diff = {t: np.asarray(a[t], dtype=float) - np.asarray(b[t], dtype=float) for t in a if t in b}
    out = combine(diff)
    return {"diff": out["mean"], "se": out["se"], "z": out["mean"] / out["se"] if out["se"] else float("inf")}


# ---- the diagnosis of one model's eval run -------------------------------------------------------------------
def teacher_forced_gen(backbone: Any, items: Sequence[Any], responses: Sequence[str],
                       batch_size: int = 8) -> np.ndarray:
    """Gen vectors read at `<gen_emb>` after the given responses, teacher forced (the SFT readout)."""
    from ume.inputs import InputLimits, load_item
    from ume.train.collate import Collator
    from ume.train.model import SFTModel

    limits = InputLimits(num_frames=backbone.recipe.num_frames)
    collator = Collator(backbone.processor, backbone.recipe, max_length=1 << 16)
    module = SFTModel(backbone.model, backbone.gen_id, backbone.disc_id, with_ce=False)
    out = []
    for s in range(0, len(items), batch_size):
        loaded = [load_item(it, s + i, limits) for i, it in enumerate(items[s:s + batch_size])]
        batch, problems = collator.side(loaded, list(responses[s:s + batch_size]))
        if problems:
            raise ValueError(f"teacher forcing: {problems}")
        batch = {k: v.to(backbone.device) for k, v in batch.items()}
        with torch.no_grad():
            gen, _, _ = module(batch, ce=False)
        out.append(gen.float().cpu().numpy())
    return np.concatenate(out)


def diagnose(model: str, data_root: str, output: str, limit: int | None, pool_limit: int | None,
             max_new_tokens: int, batch_size: int = 16, seed: int = 0, benchmark: str = "minimmeb",
             ceiling: bool = True) -> dict[str, Any]:
    """Answer accuracy per task (query side, and positives of text-query tasks), the gold-reasoning ceiling
    and per-query scores, for a model whose gen-gen eval already ran into `output` (its cache is reused)."""
    from ume.evaluate.cache import item_key
    from ume.evaluate.loaders import load_task
    from ume.evaluate.metrics import query_metrics
    from ume.evaluate.runner import EvalConfig, Runner, limited
    from ume.evaluate.tasks import select_tasks

    cfg = EvalConfig(model=model, data_root=data_root, output=output, benchmark=benchmark, qry_mode="gen",
                     tgt_mode="gen", limit=limit, pool_limit=pool_limit, max_new_tokens=max_new_tokens,
                     batch_size=batch_size, pred_top_k=0, seed=seed)
    runner = Runner(cfg)
    out_dir = Path(output)
    tasks: dict[str, Any] = {}
    for task in select_tasks((), benchmark):
        data = limited(load_task(task, runner.context), limit, pool_limit)
        n = len(data.queries)
        golds = gold(task.name, seed, n)
        texts = reasoning(out_dir, task.name, task.modality)
        hits = [same_answer(answer_of(t), g["answer"]) for t, g in zip(texts, golds, strict=True)]
        row: dict[str, Any] = {"answer_accuracy": 100 * float(np.mean(hits)), "answer_se": standard_error(hits), "n": n,
                               "gen": per_query(out_dir, "gen-gen", task.name, task.modality, task.metric),
                               "disc": per_query(out_dir, "disc-disc", task.name, task.modality, task.metric)}
        citems = {item_key(it): it for it in data.pool.values()}
        tgt = runner.encode(task, "tgt", citems, ("gen",))["gen"]  # cached by the eval run
        if task.name in TEXT_QUERY_TASKS:
            pos = [item_key(data.pool[q.labels[0]]) for q in data.queries]
            pos_hits = [same_answer(answer_of(tgt.records.get(k, {}).get("text")), g["pos_answer"])
                        for k, g in zip(pos, golds, strict=True)]
            row["positive_answer_accuracy"] = 100 * float(np.mean(pos_hits))
        if ceiling:
            qvecs = teacher_forced_gen(runner.encoder.backbone, [q.item for q in data.queries],
                                       [g["response"] for g in golds], batch_size=8)
            cvecs = {name: tgt.vectors[item_key(it)] for name, it in data.pool.items()}
            preds = Runner.rankings(data, list(qvecs), cvecs, cfg.ties)
            row["ceiling"] = [query_metrics(p, q.labels, q.rel_scores)[task.metric]
                              for p, q in zip(preds, data.queries, strict=True)]
        row["examples"] = [{"generated": answer_of(t), "gold": g["answer"]} for t, g in zip(texts, golds,
                                                                                             strict=True)][:2]
        tasks[task.name] = row
        print(f"diagnose {model} {task.name}: answer {row['answer_accuracy']:.1f}"
              + (f", ceiling {100 * np.mean(row['ceiling']):.1f}" if ceiling else ""), flush=True)
    overall = {"answer_accuracy": float(np.mean([t["answer_accuracy"] for t in tasks.values()])),
               "gen": combine({k: t["gen"] for k, t in tasks.items()}),
               "disc": combine({k: t["disc"] for k, t in tasks.items()})}
    if ceiling:
        overall["ceiling"] = combine({k: t["ceiling"] for k, t in tasks.items()})
    return {"model": model, "limit": limit, "pool_limit": pool_limit, "tasks": tasks, "overall": overall,
            "config": {k: v for k, v in vars(cfg).items() if isinstance(v, (str, int, float, type(None)))}}
